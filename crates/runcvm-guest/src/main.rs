//! `runcvm-init`: PID 1 in the guest.
//!
//! It makes the guest look like a container's world (mounts, hostname, lo,
//! sysctls, the container's mount namespace over its root when it is
//! served, while init stays on the boot disk), with the container that
//! arrives in `Start`; hands the console to the workload, runs
//! `/.runcvm/entrypoint`
//! through the `[VM-START]` runner in the container's own namespaces and
//! cgroup, reaps every zombie, reports the workload's exit status over the
//! control channel and reboots, which ends the VMM.
//!
//! Module graph, one way: `main` owns the control port, the container and
//! the sessions; `control` feeds the sessions; `sessions` and `entry` start
//! processes through `spawn`, a leaf that knows `container` (the
//! namespaces and mounts a process is put into) and `caps`; `reaper` hands
//! statuses to whoever `main` names; `root` makes a container's mount
//! namespace on a thread of `container`'s.

mod caps;
mod console;
mod container;
mod control;
mod entry;
mod forward;
mod lookup;
mod mounts;
mod net;
mod outbound;
mod output;
mod reaper;
mod relay;
mod root;
mod sessions;
mod spawn;
mod system;
mod volumes;

use container::Container;
use runcvm_log::{Epoch, LogLevel};
use runcvm_proto::{ExitStatus, GuestMessage, HostMessage, WORKLOAD_SESSION};
use sessions::Sessions;
use std::sync::Arc;

fn main() {
    let level = LogLevel::from_env();
    runcvm_log::init_with_epoch("runcvm-init", level.clone().unwrap_or_default(), Epoch::Boot);
    if std::process::id() != 1 {
        runcvm_log::error!("runcvm-init runs only as PID 1 inside a runcvm guest");
        std::process::exit(2);
    }
    // The console needs /dev; nothing can be logged before both exist.
    let dev_mounted = mounts::mount_dev();
    console::take_over();
    console::hand_over(runcvm_log::level());
    if let Err(e) = level {
        runcvm_log::warn!("{e}; using INFO");
    }
    if let Err(e) = dev_mounted {
        runcvm_log::error!("{e:#}");
    }
    let mut sessions = None;
    let status = match boot(&mut sessions) {
        Ok(status) => status,
        Err(e) => {
            runcvm_log::error!("{e:#}");
            None
        }
    };
    system::power_off(status, sessions.as_deref());
}

/// Everything between the console and the power-off; returns the status to
/// report, or `None` when none can be reported. `sessions` is where the
/// sessions end up, so the power-off can close them.
fn boot(sessions_slot: &mut Option<Arc<Sessions>>) -> anyhow::Result<Option<ExitStatus>> {
    mounts::mount_container_filesystems()?;
    runcvm_log::debug!(
        "kernel command line: {}",
        std::fs::read_to_string("/proc/cmdline").unwrap_or_default().trim()
    );
    system::bring_up_loopback()?;
    let mut control = control::ControlPort::open()?;
    control.send(&GuestMessage::Ready {
        version: runcvm_proto::PROTOCOL_VERSION,
    })?;
    // Everything of the container arrives here, after boot: the boot disk
    // is the same for every VM.
    let HostMessage::Start {
        plan,
        entrypoint,
        network,
        files,
        root,
        volumes,
        stdin,
        terminal_size,
    } = control.receive()?
    else {
        anyhow::bail!("the launcher did not answer Ready with Start");
    };
    if plan.quiet_kernel {
        console::quiet_kernel(runcvm_log::level());
    }
    if let Some(hostname) = &plan.hostname {
        system::set_hostname(hostname)?;
    }
    mounts::mount_guest_dir()?;
    entry::write_guest_dir(&plan, entrypoint.as_ref())?;
    mounts::seal_guest_dir()?;
    if let Some(network) = &network {
        net::configure(network)?;
    }
    // As on a node, where CNI has set the namespace up before the sandbox's
    // sysctls apply (a sysctl may turn off what the network needs).
    system::set_sysctls(&plan.sysctls)?;
    // In a pod with its own user namespace, the pod's files belong to its
    // root, as id-mapped mounts of them would under runc.
    let owner = plan
        .user_namespace
        .as_ref()
        .and_then(runcvm_spec::UserNamespace::root_outside);
    if let Some(owner) = owner {
        // init's tmpfs mounts, which the pod's root must be able to use.
        system::give_to(mounts::POD_WRITABLE, owner)?;
    }
    let entrypoint = entry::load_entrypoint();
    // The container's paths: in a mount namespace over its served root, or
    // the guest's own root (`runcvm run`).
    let container_root = match &root {
        Some(root) => {
            if entrypoint.is_err() {
                anyhow::bail!("the launcher served a container root without an entrypoint to run on it");
            }
            Some(root::make(root, || {
                volumes::mount_all(&volumes)?;
                for (index, file) in files.iter().enumerate() {
                    root::bind_file(file, index, owner)?;
                }
                Ok(())
            })?)
        }
        None => {
            volumes::mount_all(&volumes)?;
            for file in &files {
                system::write_file(&file.path, file.content.as_bytes(), file.mode, owner)?;
            }
            None
        }
    };
    // Where each writable file is read back from when the workload ends.
    let writable: Vec<(&str, String)> = files
        .iter()
        .enumerate()
        .filter(|(_, f)| f.writable)
        .map(|(index, f)| {
            let from = if root.is_some() {
                root::file_copy(index)
            } else {
                f.path.clone()
            };
            (f.path.as_str(), from)
        })
        .collect();
    let (workload, container) = match entrypoint {
        Ok(entrypoint) => {
            let container = Arc::new(Container::prepare(&plan, container_root)?);
            let workload = entry::start_entrypoint(&entrypoint, &container, stdin, terminal_size);
            (workload, Some(container))
        }
        Err(workload) => {
            if plan.read_only_root {
                mounts::make_root_read_only()?;
            }
            (workload, None)
        }
    };
    let sessions = Sessions::new(control.writer(), container.clone());
    *sessions_slot = Some(Arc::clone(&sessions));
    let status = match workload {
        entry::Workload::Ended(status) => status,
        entry::Workload::Running(started) => {
            let pid = started.pid;
            let pumps = sessions.attach(WORKLOAD_SESSION, started);
            control.serve_launcher(Arc::clone(&sessions), Some(pid))?;
            let status = reaper::wait_for(pid, |pid, status| sessions.reaped(pid, status))
                .unwrap_or(ExitStatus::Code(spawn::RUNNER_FAILED));
            // What the workload left running goes now (as a container's
            // processes do when its init ends), so the pipes reach EOF and
            // all output is sent before the exit status.
            system::kill_all(Some(&sessions));
            for pump in pumps {
                let _ = pump.join();
            }
            status
        }
        entry::Workload::Absent => {
            control.serve_launcher(Arc::clone(&sessions), None)?;
            sleep_forever(&sessions)
        }
    };
    let oom_killed = container.as_ref().is_some_and(|c| c.oom_kills() > 0);
    runcvm_log::debug!(
        "workload ended: {status:?}{}",
        if oom_killed { ", OOM-killed" } else { "" }
    );
    control.send(&GuestMessage::Exit {
        status,
        oom_killed,
        files: relay::read_back(&writable),
    })?;
    Ok(Some(status))
}

/// Reaps for ever: exec sessions into a sleeping guest still end.
fn sleep_forever(sessions: &Sessions) -> ! {
    loop {
        reaper::reap_all(|pid, status| sessions.reaped(pid, status));
        // No child right now; an exec may start one at any moment.
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
