//! The `[VM-START]` entry runner (the guide's `runcvm-vm-start`): loads a
//! container's `/.runcvm/entrypoint` and starts it exactly as the container
//! would have run it, in the container's own world.

use crate::caps;
use crate::container::{Confinement, Container};
use crate::outbound::ContainerNotes;
use crate::reaper::Waiters;
use crate::spawn::{self, RUNNER_FAILED, Started};
use runcvm_log::LogLevel;
use runcvm_proto::{ExitStatus, TerminalSize};
use runcvm_spec::{CapabilityMasks, ENTRYPOINT_PATH, Entrypoint, LaunchPlan};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;

/// The names in a container's `/.runcvm`: its entrypoint (the guide's
/// `/.runcvm/entrypoint`), its plan, its files' folder.
const ENTRYPOINT_FILE: &str = "entrypoint";
const PLAN_FILE: &str = "plan.json";
pub const FILES_NAME: &str = "files";

/// Where a container's files are bound from when its root is served
/// (`root.rs`), in its own view; in init's, under its folder.
pub const FILES_DIR: &str = "/.runcvm/files";
/// Where init keeps each container's `/.runcvm` (entrypoint, plan, files),
/// by id, when its root is served.
pub const CONTAINERS_DIR: &str = "/.runcvm/containers";

/// A `[VM-START]` line about the container, to `$notes`.
macro_rules! vm_start {
    ($notes:expr, $level:ident, $($arg:tt)*) => {
        $notes.runner(LogLevel::$level, format_args!($($arg)*))
    };
}

/// Why a container has no process.
#[derive(Debug)]
pub enum NotStarted {
    /// It could not start; this is the status to report.
    Ended(ExitStatus),
    /// There is none: init sleeps so the pod stays up to be debugged.
    Absent,
}

/// Reads a container's `/.runcvm/entrypoint` from `dir`, its `/.runcvm` in
/// init's view; when there is none, or it cannot be used, why not.
pub fn load_entrypoint(dir: &Path, notes: &ContainerNotes) -> Result<Entrypoint, NotStarted> {
    let bytes = match std::fs::read(dir.join(ENTRYPOINT_FILE)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            vm_start!(notes, Info, "No entrypoint found, sleeping");
            return Err(NotStarted::Absent);
        }
        Err(e) => {
            vm_start!(notes, Error, "cannot read {ENTRYPOINT_PATH}: {e}");
            return Err(NotStarted::Ended(ExitStatus::Code(RUNNER_FAILED)));
        }
    };
    vm_start!(notes, Debug, "runcvm-vm-start loaded {ENTRYPOINT_PATH}");
    Entrypoint::from_json(&bytes).map_err(|e| {
        vm_start!(
            notes,
            Error,
            "cannot use {ENTRYPOINT_PATH}: {}",
            runcvm_log::error_chain(&e)
        );
        NotStarted::Ended(ExitStatus::Code(RUNNER_FAILED))
    })
}

/// Writes what `CreateContainer` brought into `dir`, the container's
/// `/.runcvm` on a tmpfs of init's: the plan, the entrypoint when there is
/// one (the runner loads it from there, as the guide says), and the folder
/// of the container's files.
pub fn write_container_dir(dir: &Path, plan: &LaunchPlan, entrypoint: Option<&Entrypoint>) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        use std::io::Write;
        // Both carry the container's env, secrets included.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut file| file.write_all(bytes))
            .with_context(|| format!("cannot write {}", path.display()))
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    write(PLAN_FILE, &plan.to_json())?;
    if let Some(entrypoint) = entrypoint {
        write(ENTRYPOINT_FILE, &entrypoint.to_json())?;
    }
    let files = dir.join(FILES_NAME);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&files)
        .with_context(|| format!("cannot create {}", files.display()))
}

/// A container's `/.runcvm` in init's view: the guest's own for the
/// container whose root is the guest's, a folder of its own otherwise.
pub fn container_dir(container: u32, served: bool) -> PathBuf {
    if served {
        Path::new(CONTAINERS_DIR).join(container.to_string())
    } else {
        PathBuf::from(runcvm_spec::GUEST_DIR)
    }
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

/// The capability masks for a process, each warning about what is skipped
/// to `warn`; `None` keeps init's (a process without capabilities gets
/// none: the runtime always writes the object).
pub fn capability_masks(process: &Entrypoint, warn: impl Fn(&str)) -> Option<CapabilityMasks> {
    process.capabilities.as_ref().map(|wanted| {
        let (masks, warnings) = caps::plan(wanted);
        for warning in warnings {
            warn(&warning);
        }
        masks
    })
}

/// Starts the entrypoint in the container; its stdin comes from the
/// launcher if `with_stdin`; its status will come on the channel returned.
/// A failure is the status to report.
pub fn start_entrypoint(
    entrypoint: &Entrypoint,
    container: &Container,
    with_stdin: bool,
    size: Option<TerminalSize>,
    waiters: &Waiters,
    notes: &ContainerNotes,
) -> Result<(Started, Receiver<ExitStatus>), ExitStatus> {
    for (i, arg) in entrypoint.args.iter().enumerate() {
        vm_start!(notes, Debug, "argv[{i}] = \"{arg}\"");
    }
    vm_start!(
        notes,
        Debug,
        "cwd {} uid {} gid {} groups {:?}, {} env entries",
        entrypoint.cwd,
        entrypoint.uid,
        entrypoint.gid,
        entrypoint.additional_gids,
        entrypoint.env.len()
    );
    if let Some(capabilities) = &entrypoint.capabilities {
        vm_start!(notes, Debug, "capabilities {}", capabilities.to_flags().join(" "));
    }
    let owner = container.pod_root();
    if let Err(e) = container.in_root(|| create_cwd(entrypoint, owner)) {
        // The start that follows says what is wrong with the container.
        vm_start!(notes, Debug, "{e:#}");
    }
    let started = spawn::start(
        &spawn::Spawn {
            process: entrypoint,
            with_stdin,
            terminal_size: size,
            capabilities: capability_masks(entrypoint, |warning| vm_start!(notes, Warn, "{warning}")),
            confinement: Confinement::Create(&container.setup),
            seccomp: container.seccomp.as_ref(),
            create_cwd: false,
        },
        waiters,
    );
    match started {
        Ok((started, exit)) => {
            vm_start!(notes, Debug, "running as pid {}", started.pid);
            container.started(started.pid);
            Ok((started, exit))
        }
        Err(failure) => {
            vm_start!(notes, Error, "unable to start container process: {}", failure.message);
            Err(ExitStatus::Code(failure.code))
        }
    }
}
