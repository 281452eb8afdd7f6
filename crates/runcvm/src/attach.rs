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
use runcvm_spec::{Entrypoint, LaunchPlan};
use std::path::PathBuf;

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

fn try_attach(request: &AttachRequest, settings: &crate::settings::Settings) -> Result<SessionEnd, AttachError> {
    let socket = crate::exec::locate_socket(&request.target, &settings.state_dir())?;
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
        None,
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
    Ok(crate::exec::run_session(&socket, create, request.interactive)?)
}
