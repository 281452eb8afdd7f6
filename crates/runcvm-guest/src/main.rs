//! `runcvm-init`: PID 1 in the guest.
//!
//! It makes the guest look like a container's world (mounts, hostname, lo),
//! hands the console to the workload, runs `/.runcvm/entrypoint` through the
//! `[VM-START]` runner, reaps every zombie, reports the workload's exit status
//! over the control channel and reboots, which ends the VMM.

mod caps;
mod console;
mod control;
mod entry;
mod exec;
mod lookup;
mod mounts;
mod net;
mod output;
mod system;
mod volumes;

use runcvm_log::{Epoch, LogLevel};
use runcvm_proto::{ExitStatus, GuestMessage, HostMessage, WORKLOAD_SESSION};
use runcvm_spec::{LaunchPlan, PLAN_PATH};

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
    let status = match boot() {
        Ok(status) => status,
        Err(e) => {
            runcvm_log::error!("{e:#}");
            None
        }
    };
    system::power_off(status);
}

/// Everything between the console and the power-off; returns the status to
/// report, or `None` when none can be reported.
fn boot() -> anyhow::Result<Option<ExitStatus>> {
    mounts::mount_container_filesystems()?;
    runcvm_log::debug!(
        "kernel command line: {}",
        std::fs::read_to_string("/proc/cmdline").unwrap_or_default().trim()
    );
    let plan = read_plan()?;
    if let Some(hostname) = &plan.hostname {
        system::set_hostname(hostname)?;
    }
    system::bring_up_loopback()?;
    let mut control = control::ControlPort::open()?;
    exec::init(control.writer());
    control.send(&GuestMessage::Ready {
        version: runcvm_proto::PROTOCOL_VERSION,
    })?;
    let HostMessage::Start {
        network,
        files,
        volumes,
        stdin,
        terminal_size,
    } = control.receive()?
    else {
        anyhow::bail!("the launcher did not answer Ready with Start");
    };
    if let Some(network) = &network {
        net::configure(network)?;
    }
    volumes::mount_all(&volumes)?;
    for file in &files {
        system::write_file(&file.path, file.content.as_bytes())?;
    }
    let entrypoint = entry::load_entrypoint();
    if plan.read_only_root {
        // runc creates a missing working directory before the root turns
        // read-only.
        if let Ok(entrypoint) = &entrypoint {
            entry::create_cwd(entrypoint);
        }
        mounts::make_root_read_only()?;
    }
    let workload = match entrypoint {
        Ok(entrypoint) => entry::start_entrypoint(&entrypoint, stdin, terminal_size),
        Err(workload) => workload,
    };
    let status = match workload {
        entry::Workload::Ended(status) => status,
        entry::Workload::Running(started) => {
            let pid = started.pid;
            let pumps = exec::attach(WORKLOAD_SESSION, started);
            control.serve_launcher(Some(pid))?;
            let status = entry::wait_for(pid);
            // What the workload left running goes now (as a container's
            // processes do when its init ends), so the pipes reach EOF and
            // all output is sent before the exit status.
            system::kill_all();
            for pump in pumps {
                let _ = pump.join();
            }
            status
        }
        entry::Workload::Absent => {
            control.serve_launcher(None)?;
            entry::sleep_forever()
        }
    };
    runcvm_log::debug!("workload ended: {status:?}");
    control.send(&GuestMessage::Exit { status })?;
    Ok(Some(status))
}

fn read_plan() -> anyhow::Result<LaunchPlan> {
    use anyhow::Context;
    let bytes = std::fs::read(PLAN_PATH).with_context(|| format!("cannot read the launch plan {PLAN_PATH}"))?;
    runcvm_log::debug!("loaded launch plan {PLAN_PATH}");
    LaunchPlan::from_json(&bytes).with_context(|| format!("cannot use the launch plan {PLAN_PATH}"))
}
