//! The `[VM-START]` entry runner (the guide's `runcvm-vm-start`): loads
//! `/.runcvm/entrypoint` and starts it exactly as the container would have
//! run it, in the container's own world.

use crate::caps;
use crate::container::{Confinement, Container};
use crate::spawn::{self, RUNNER_FAILED, Started};
use runcvm_log::LogLevel;
use runcvm_proto::{ExitStatus, TerminalSize};
use runcvm_spec::{CapabilityMasks, ENTRYPOINT_PATH, Entrypoint, LaunchPlan, PLAN_PATH};

/// Where the pod's files are bound from when the root is served (`root.rs`).
pub const FILES_DIR: &str = "/.runcvm/files";

const RUNNER: &str = "[VM-START]";

macro_rules! vm_start {
    ($level:ident, $($arg:tt)*) => {
        runcvm_log::write_as(Some(RUNNER), LogLevel::$level, format_args!($($arg)*))
    };
}

/// What became of the entrypoint.
#[derive(Debug)]
pub enum Workload {
    Running(Started),
    /// It could not start; this is the status to report.
    Ended(ExitStatus),
    /// There is none: init sleeps so the pod stays up to be debugged.
    Absent,
}

/// Reads `/.runcvm/entrypoint`; when there is none, or it cannot be used,
/// what became of the workload instead.
pub fn load_entrypoint() -> Result<Entrypoint, Workload> {
    let bytes = match std::fs::read(ENTRYPOINT_PATH) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            vm_start!(Info, "No entrypoint found, sleeping");
            return Err(Workload::Absent);
        }
        Err(e) => {
            vm_start!(Error, "cannot read {ENTRYPOINT_PATH}: {e}");
            return Err(Workload::Ended(ExitStatus::Code(RUNNER_FAILED)));
        }
    };
    vm_start!(Debug, "runcvm-vm-start loaded {ENTRYPOINT_PATH}");
    Entrypoint::from_json(&bytes).map_err(|e| {
        vm_start!(Error, "cannot use {ENTRYPOINT_PATH}: {}", runcvm_log::error_chain(&e));
        Workload::Ended(ExitStatus::Code(RUNNER_FAILED))
    })
}

/// Writes what `Start` brought into `/.runcvm` (a tmpfs of init's): the
/// plan, the entrypoint when there is one (the runner loads it from there,
/// as the guide says), and the mount point of the pod's files.
pub fn write_guest_dir(plan: &LaunchPlan, entrypoint: Option<&Entrypoint>) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let write = |path: &str, bytes: &[u8]| {
        use std::io::Write;
        // Both carry the container's env, secrets included.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .and_then(|mut file| file.write_all(bytes))
            .with_context(|| format!("cannot write {path}"))
    };
    write(PLAN_PATH, &plan.to_json())?;
    if let Some(entrypoint) = entrypoint {
        write(ENTRYPOINT_PATH, &entrypoint.to_json())?;
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(FILES_DIR)
        .with_context(|| format!("cannot create {FILES_DIR}"))
}

/// Creates a missing working directory, as runc does rather than failing
/// (before a read-only root, too), owned by the container's root (`owner`
/// in a pod with a user namespace of its own). A failure shows when the
/// process enters it.
pub fn create_cwd(entrypoint: &Entrypoint, owner: Option<(u32, u32)>) {
    let cwd = std::path::Path::new(entrypoint.cwd.as_os_str());
    if cwd.exists() {
        return;
    }
    if std::fs::create_dir_all(cwd).is_ok()
        && let Some((uid, gid)) = owner
    {
        let _ = std::os::unix::fs::chown(cwd, Some(uid), Some(gid));
    }
}

/// The capability masks for a process, with a `[VM-START]` warning for what
/// is skipped; `None` keeps init's (a process without capabilities gets
/// none: the runtime always writes the object).
pub fn capability_masks(process: &Entrypoint) -> Option<CapabilityMasks> {
    process.capabilities.as_ref().map(|wanted| {
        let (masks, warnings) = caps::plan(wanted);
        for warning in warnings {
            vm_start!(Warn, "{warning}");
        }
        masks
    })
}

/// Starts the entrypoint in the container; its stdin comes from the
/// launcher if `with_stdin`.
pub fn start_entrypoint(
    entrypoint: &Entrypoint,
    container: &Container,
    with_stdin: bool,
    size: Option<TerminalSize>,
) -> Workload {
    for (i, arg) in entrypoint.args.iter().enumerate() {
        vm_start!(Debug, "argv[{i}] = \"{arg}\"");
    }
    vm_start!(
        Debug,
        "cwd {} uid {} gid {} groups {:?}, {} env entries",
        entrypoint.cwd,
        entrypoint.uid,
        entrypoint.gid,
        entrypoint.additional_gids,
        entrypoint.env.len()
    );
    if let Some(capabilities) = &entrypoint.capabilities {
        vm_start!(Debug, "capabilities {}", capabilities.to_flags().join(" "));
    }
    let owner = container.pod_root();
    if let Err(e) = container.in_root(|| create_cwd(entrypoint, owner)) {
        // The start that follows says what is wrong with the container.
        vm_start!(Debug, "{e:#}");
    }
    let started = spawn::start(&spawn::Spawn {
        process: entrypoint,
        with_stdin,
        terminal_size: size,
        capabilities: capability_masks(entrypoint),
        confinement: Confinement::Create(&container.setup),
        seccomp: container.seccomp.as_ref(),
        create_cwd: false,
    });
    match started {
        Ok(started) => {
            vm_start!(Debug, "running as pid {}", started.pid);
            container.started(started.pid);
            Workload::Running(started)
        }
        Err(failure) => {
            vm_start!(Error, "unable to start container process: {}", failure.message);
            Workload::Ended(ExitStatus::Code(failure.code))
        }
    }
}
