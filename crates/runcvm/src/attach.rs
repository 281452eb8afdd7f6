//! `runcvm attach`: one more container in the VM of a running launcher,
//! made while the VM and its other containers go on. Run in the pod's
//! network namespace, it serves the container's root (and its shared
//! folders) over NFS on `169.254.1.254` from ports of its own, asks the
//! launcher to create the container in the guest, relays its stdio and
//! signals, and exits with its status: the proxy a Kubernetes container
//! becomes once the pod's sandbox owns the VM (`docs/pods.md`).

use crate::exec::{ExecClientError, SessionEnd};
use crate::volumes::{VolumeError, VolumeSpec};
use runcvm_proto::HostMessage;
use runcvm_spec::launch::{CONTAINER_POD_DIR, CONTAINER_ROOT_DIR, ContainerLaunch};
use runcvm_spec::{Entrypoint, LaunchPlan};
use std::path::{Path, PathBuf};

/// A container to attach.
#[derive(Debug, Clone)]
pub struct AttachRequest {
    /// The launcher: its pid or run folder, as `runcvm exec` names it.
    pub target: String,
    /// The folder served as the container's root.
    pub rootfs: PathBuf,
    pub entrypoint: Entrypoint,
    pub plan: LaunchPlan,
    /// Host folders shared over NFS, and single files copied in.
    pub volumes: Vec<VolumeSpec>,
    /// Pass this process's stdin to the container.
    pub interactive: bool,
    /// The container's name in the VM, which `runcvm exec --container`
    /// gives.
    pub name: Option<String>,
    /// The pod VM's console and launcher lines to this process's stderr
    /// too (a Kubernetes container at DEBUG).
    pub follow_console: bool,
}

/// Why a container could not be attached, or was lost.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// no pod network taken over in this namespace
    #[error(
        "no runcvm VM has taken over this network namespace's eth0 (no {bridge} record): run `runcvm attach` in the \
         namespace of a `runcvm run --network pod`, whose guest it serves the container's root to"
    )]
    NoPodNetwork { bridge: &'static str },
    /// the pod network's record cannot be read
    #[error("cannot read the pod network's record")]
    PodNetwork(#[source] runcvm_net::NetError),
    /// netlink cannot be opened
    #[error("cannot open a netlink socket to read the pod network's record")]
    Netlink(#[source] runcvm_netlink::NetlinkError),
    /// the root or a volume cannot be served (the volume error's message)
    #[error(transparent)]
    Serve(#[from] VolumeError),
    /// the session failed (the client error's message)
    #[error(transparent)]
    Client(#[from] ExecClientError),
}

/// Attaches the container and returns the exit code for this process: the
/// container's, or 125 after logging why it could not run.
pub fn attach(request: &AttachRequest, settings: &crate::settings::Settings) -> i32 {
    match try_attach(request, settings) {
        Ok(end) => {
            if end.oom_killed {
                runcvm_log::debug!("the container was OOM-killed in the guest");
            }
            end.status.container_code()
        }
        Err(e) => {
            runcvm_log::error!("{}", runcvm_log::error_chain(&e));
            crate::RUNTIME_FAILURE
        }
    }
}

/// A Kubernetes container in its pod's VM (`docs/pods.md`): this launcher
/// is its proxy. It attaches the container its launch file describes to the
/// pod's VM, through the pod's socket the runtime bound at
/// [`CONTAINER_POD_DIR`], named `name` (its CRI id, which `exec` names);
/// then, as a container's own launcher does, it writes the writable single
/// files back (the termination message among them) and mirrors an OOM kill
/// in the container's cgroup, and exits with the container's code.
pub fn in_pod_vm(state_dir: &Path, launch: &ContainerLaunch, name: &str, settings: &crate::settings::Settings) -> i32 {
    let _held = match crate::launch::hold_the_folder(state_dir) {
        Ok(held) => held,
        Err(e) => {
            runcvm_log::error!("{}", runcvm_log::error_chain(&e));
            return crate::RUNTIME_FAILURE;
        }
    };
    let volumes: Vec<VolumeSpec> = launch.volumes.iter().map(crate::launch::volume_spec).collect();
    let request = AttachRequest {
        target: CONTAINER_POD_DIR.to_owned(),
        rootfs: PathBuf::from(CONTAINER_ROOT_DIR),
        entrypoint: launch.process.clone(),
        plan: launch.plan.clone(),
        volumes: volumes.clone(),
        // The container's stdin is the workload's: a closed one reaches the
        // guest as end of file, as under runc.
        interactive: true,
        name: Some(name.to_owned()),
        follow_console: runcvm_log::enabled(runcvm_log::LogLevel::Debug),
    };
    let end = match try_attach(&request, settings) {
        Ok(end) => end,
        Err(e) => {
            runcvm_log::error!("{}", runcvm_log::error_chain(&e));
            return crate::RUNTIME_FAILURE;
        }
    };
    crate::volumes::write_back(&volumes, &end.files);
    if end.oom_killed {
        let reported = crate::resources::current_limits()
            .memory_bytes
            .is_some_and(crate::oom::mirror_in_cgroup);
        if !reported {
            crate::launch::note_unmirrored_oom_kill(launch);
        }
    }
    end.status.container_code()
}

fn try_attach(request: &AttachRequest, settings: &crate::settings::Settings) -> Result<SessionEnd, AttachError> {
    let socket = crate::exec::locate_socket(&request.target, &settings.state_dir())?;
    // The pod's launcher may still be taking over the network: its socket
    // appears once it has, with the record read below.
    crate::exec::wait_for_socket(&socket)?;
    let optional = crate::volumes::failure_is_optional(settings.volume_failure.as_deref())?;
    let mut netlink = runcvm_netlink::NetlinkSocket::route().map_err(AttachError::Netlink)?;
    let guest = runcvm_net::recorded_guest(&mut netlink)
        .map_err(AttachError::PodNetwork)?
        .ok_or(AttachError::NoPodNetwork {
            bridge: runcvm_spec::net::BRIDGE_NAME,
        })?;
    let (exports, copies) = crate::volumes::split(&request.volumes)?;
    // Both servers run on threads of this process for as long as it runs:
    // the container's life.
    let mut served = crate::volumes::serve(
        &exports,
        optional,
        Some(&guest),
        crate::run::workload_ids(&request.entrypoint),
        request.plan.user_namespace.as_ref().map(crate::volumes::id_map),
    )?;
    let root = crate::volumes::serve_root(&request.rootfs, &guest, &mut served)?;
    if let Some(stopped) = served.stopped.take() {
        // The guest would hang on its mounts: this process ends, and with
        // its connection the launcher kills the container.
        std::thread::spawn(move || {
            if let Ok(reason) = stopped.recv() {
                runcvm_log::error!(
                    "the NFS server for the container's root or volumes stopped ({reason}); the container ends rather \
                     than hang (troubleshooting.md, Volumes)"
                );
                std::process::exit(crate::RUNTIME_FAILURE);
            }
        });
    }
    let create = HostMessage::CreateContainer {
        container: 0,
        name: request.name.clone(),
        plan: Box::new(request.plan.clone()),
        entrypoint: Some(request.entrypoint.clone()),
        files: copies,
        root: Some(root),
        volumes: served.volumes,
        stdin: request.interactive,
        terminal_size: request.entrypoint.terminal.then(crate::terminal::current_size),
    };
    Ok(crate::exec::run_session(
        &socket,
        create,
        request.interactive,
        request.follow_console,
    )?)
}
