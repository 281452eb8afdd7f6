//! A container's own world inside the pod's guest, as runc builds it on a
//! node: a cgroup that holds its process and its execs (its memory and CPU
//! limits, its OOM kills; its leftovers killed when its process ends), its
//! own mount namespace (a fresh `/proc` of its PID namespace, `/sys` and
//! `/sys/fs/cgroup` read-only unless privileged, the masked and read-only
//! paths, a read-only root), its own cgroup namespace, and a PID namespace:
//! its own in CRI's CONTAINER mode, the pod's in POD mode (PID 1 there is
//! the pod's pause process, `pause.rs`), or its target's for an
//! ephemeral container. Guest init stays outside all of it, so it keeps
//! writing sysctls, cgroup files and the root disk whatever the workload is
//! allowed, and no container sees init's processes.
//!
//! When the container's root is served, it has a mount namespace of its own
//! from the start (`root.rs` makes it: the root pivoted to, the volumes and
//! files on it), which the workload's child enters first; init itself stays
//! on the boot disk, outside every container's root. Work of init's on a
//! container's paths runs in that namespace ([`in_mount_namespace`]), so the
//! image's symlinks resolve in the container's root, never in the guest's.
//!
//! The workload's namespaces are made in its child ([`Confinement::Create`]);
//! exec sessions join them ([`Confinement::Join`]). A PID namespace can only
//! be entered by a new process, so the forking thread switches the PID
//! namespace its children get, forks, and switches back
//! ([`Confinement::fork_into_pid_namespace`]).

use anyhow::Context;
use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::unistd::{ForkResult, Pid};
use runcvm_spec::LaunchPlan;
use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Where init mounts the cgroup v2 hierarchy.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The containers' cgroups, by id, below the root.
const CONTAINERS_CGROUP: &str = "containers";
/// Controllers handed down to the containers' cgroups, where the kernel has
/// them.
const CONTROLLERS: [&str; 4] = ["memory", "pids", "cpu", "io"];
/// How often, and how far apart, a container's cgroup is looked at for
/// processes left once it has been killed.
const END_POLLS: u32 = 200;
const END_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// How a process is placed into the container.
#[derive(Debug)]
pub enum Confinement<'a> {
    /// Init's own world: an exec into a container that sleeps without an
    /// entrypoint.
    Guest,
    /// A container's process: its namespaces are made in its child.
    Create(&'a ContainerSetup),
    /// An exec session: its container's namespaces and cgroup, joined.
    Join(&'a Joined),
}

/// What the workload's child sets up, prepared before the fork.
#[derive(Debug)]
pub struct ContainerSetup {
    /// The mount namespace over the container's served root, entered
    /// first; `None`: the guest's root is the container's (`runcvm run`).
    pub root: Option<OwnedFd>,
    pub pid: PidPlacement,
    /// `cgroup.procs` of the workload's cgroup, when the guest has cgroups.
    pub cgroup_procs: Option<CString>,
    /// The container's mounts, in order, in its new mount namespace.
    pub mounts: Vec<MountOp>,
    /// The pod's user namespace, entered last, once the mounts are made.
    pub user_namespace: Option<OwnedFd>,
    /// Init's own PID namespace, to switch back to after a fork.
    init_pid_namespace: OwnedFd,
}

/// Which PID namespace a container's process is forked into.
#[derive(Debug)]
pub enum PidPlacement {
    /// A new one, the workload its PID 1 (CRI's CONTAINER mode).
    New,
    /// One that exists: the pod's (POD mode) or an ephemeral container's
    /// target's.
    Join(OwnedFd),
}

/// The running workload's namespaces, for exec sessions.
#[derive(Debug)]
pub struct Joined {
    pub pid: OwnedFd,
    pub mount: OwnedFd,
    pub cgroup: OwnedFd,
    pub cgroup_procs: Option<CString>,
    pub user_namespace: Option<OwnedFd>,
    init_pid_namespace: OwnedFd,
}

impl Confinement<'_> {
    /// The mount namespace where the process's paths are looked up (its
    /// program in `PATH`): the container's, when it is not init's.
    pub fn mount_namespace(&self) -> Option<&OwnedFd> {
        match self {
            Self::Guest => None,
            Self::Create(setup) => setup.root.as_ref(),
            Self::Join(joined) => Some(&joined.mount),
        }
    }

    /// Runs `fork` so that the child lands in the container's PID namespace
    /// (the workload's per its [`PidPlacement`], the workload's for an
    /// exec); the calling thread's own is untouched afterwards.
    pub fn fork_into_pid_namespace(&self, fork: impl FnOnce() -> nix::Result<ForkResult>) -> nix::Result<ForkResult> {
        match self {
            Self::Create(setup) => {
                let target = match &setup.pid {
                    PidPlacement::New => None,
                    PidPlacement::Join(pid) => Some(pid),
                };
                fork_switching_pid_namespace(target, &setup.init_pid_namespace, fork)
            }
            Self::Join(joined) => fork_switching_pid_namespace(Some(&joined.pid), &joined.init_pid_namespace, fork),
            Self::Guest => fork(),
        }
    }
}

/// Forks with the calling thread's children's PID namespace switched to
/// `target` (a new one when `None`), and switched `back` afterwards.
pub(crate) fn fork_switching_pid_namespace(
    target: Option<&OwnedFd>,
    back: &OwnedFd,
    fork: impl FnOnce() -> nix::Result<ForkResult>,
) -> nix::Result<ForkResult> {
    match target {
        None => nix::sched::unshare(CloneFlags::CLONE_NEWPID)?,
        Some(pid) => nix::sched::setns(pid, CloneFlags::CLONE_NEWPID)?,
    }
    let forked = fork();
    // The parent's thread gets its own back; the child's children belong
    // where the child is.
    if let Ok(ForkResult::Parent { child }) = forked
        && let Err(e) = nix::sched::setns(back, CloneFlags::CLONE_NEWPID)
    {
        // This thread could start no thread of its own any more (a new
        // thread must share its PID namespace for children): undo the fork
        // and fail.
        let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(child, None);
        return Err(e);
    }
    if forked.is_err() {
        let _ = nix::sched::setns(back, CloneFlags::CLONE_NEWPID);
    }
    forked
}

/// One mount of the container's view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountOp {
    /// Every mount private to the new namespace, so nothing done in it
    /// reaches init's (as runc makes the container's root `rslave`).
    Private,
    /// A `/proc` of the container's own PID namespace.
    Proc,
    /// The cgroup v2 hierarchy as seen from the container's cgroup namespace.
    Cgroup { read_only: bool },
    /// An existing mount made read-only (`/sys`, `/`).
    RemountReadOnly(CString),
    /// `maskedPaths`: a file becomes `/dev/null`, a folder an empty
    /// read-only tmpfs; a path that does not exist is skipped.
    Mask(CString),
    /// `readonlyPaths`: bound onto itself read-only; missing is skipped.
    ReadOnly(CString),
}

const HARDENED: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV).union(MsFlags::MS_NOEXEC);

impl MountOp {
    /// Applies the mount (in the child, between fork and exec).
    pub fn apply(&self) -> Result<(), Errno> {
        use nix::mount::mount;
        let none: Option<&str> = None;
        match self {
            Self::Private => mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none),
            Self::Proc => mount(Some("proc"), "/proc", Some("proc"), HARDENED, none),
            Self::Cgroup { read_only } => {
                let flags = if *read_only {
                    HARDENED | MsFlags::MS_RDONLY
                } else {
                    HARDENED
                };
                // Init's mount of the one cgroup2 superblock is in the way
                // (the kernel refuses a superblock on its own root): the
                // container's view replaces it.
                match nix::mount::umount2(CGROUP_ROOT, nix::mount::MntFlags::MNT_DETACH) {
                    Ok(()) | Err(Errno::EINVAL) => {}
                    Err(e) => return Err(e),
                }
                mount(Some("cgroup2"), CGROUP_ROOT, Some("cgroup2"), flags, none)
            }
            Self::RemountReadOnly(path) => remount_read_only(path),
            Self::Mask(path) => match mount(Some("/dev/null"), path.as_c_str(), none, MsFlags::MS_BIND, none) {
                Err(Errno::ENOENT) => Ok(()),
                Err(Errno::ENOTDIR) => mount(Some("tmpfs"), path.as_c_str(), Some("tmpfs"), MsFlags::MS_RDONLY, none),
                other => other,
            },
            Self::ReadOnly(path) => {
                let bind = MsFlags::MS_BIND | MsFlags::MS_REC;
                match mount(Some(path.as_c_str()), path.as_c_str(), none, bind, none) {
                    Err(Errno::ENOENT) => Ok(()),
                    Err(e) => Err(e),
                    Ok(()) => remount_read_only(path),
                }
            }
        }
    }

    /// The mount in a failure message.
    pub fn describe(&self) -> String {
        let text = |path: &CString| path.to_string_lossy().into_owned();
        match self {
            Self::Private => "making its mounts private".to_owned(),
            Self::Proc => "mounting /proc for its PID namespace".to_owned(),
            Self::Cgroup { .. } => format!("mounting cgroup2 on {CGROUP_ROOT}"),
            Self::RemountReadOnly(path) => format!("making {} read-only", text(path)),
            Self::Mask(path) => format!("masking {}", text(path)),
            Self::ReadOnly(path) => format!("making {} read-only (readonlyPaths)", text(path)),
        }
    }
}

/// Makes the mount at `path` read-only, keeping its nosuid, nodev and
/// noexec (a remount that dropped them would be refused where they are
/// locked, and would loosen them elsewhere).
pub fn remount_read_only(path: &CString) -> Result<(), Errno> {
    use nix::sys::statvfs::FsFlags;
    let kept = nix::sys::statvfs::statvfs(path.as_c_str())?.flags();
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    for (has, keep) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
    ] {
        if kept.contains(has) {
            flags |= keep;
        }
    }
    nix::mount::mount(None::<&str>, path.as_c_str(), None::<&str>, flags, None::<&str>)
}

/// The container's mounts for `plan`, in the order they are made.
pub fn mount_ops(plan: &LaunchPlan, cgroups: bool) -> anyhow::Result<Vec<MountOp>> {
    let path = |p: &str| CString::new(p).with_context(|| format!("the path {p:?} has a NUL byte"));
    // Never init's PID namespace: its own /proc always.
    let mut ops = vec![MountOp::Private, MountOp::Proc];
    if cgroups {
        ops.push(MountOp::Cgroup {
            read_only: plan.sys_read_only,
        });
    }
    if plan.sys_read_only {
        ops.push(MountOp::RemountReadOnly(path("/sys")?));
    }
    // runc's order: read-only paths, then masked ones.
    for read_only in &plan.readonly_paths {
        ops.push(MountOp::ReadOnly(path(read_only)?));
    }
    for masked in &plan.masked_paths {
        ops.push(MountOp::Mask(path(masked)?));
    }
    if plan.read_only_root {
        ops.push(MountOp::RemountReadOnly(path("/")?));
    }
    Ok(ops)
}

/// The container as init keeps it: what its processes are started with,
/// and once the workload runs, its namespaces.
#[derive(Debug)]
pub struct Container {
    pub setup: ContainerSetup,
    pub seccomp: Option<runcvm_seccomp::Filter>,
    cgroup: Option<PathBuf>,
    joined: Mutex<Option<Arc<Joined>>>,
    pod_root: Option<(u32, u32)>,
}

/// What a container shares with its pod.
#[derive(Debug)]
pub struct PodShare<'a> {
    /// The pod's user namespace, when it has its own.
    pub user_namespace: Option<&'a OwnedFd>,
    /// The pod's root as the guest kernel knows it, in that namespace.
    pub root: Option<(u32, u32)>,
}

impl Container {
    /// Makes container `id`'s cgroup (with its limits) and compiles its
    /// seccomp profile; the namespaces come with its process, the mount
    /// namespace over a served root (`root`) having been made before.
    pub fn prepare(
        id: u32,
        plan: &LaunchPlan,
        root: Option<OwnedFd>,
        pid: PidPlacement,
        pod: &PodShare<'_>,
    ) -> anyhow::Result<Self> {
        let seccomp = match &plan.seccomp {
            Some(profile) => {
                let filter = runcvm_seccomp::compile(profile).context("cannot use the container's seccomp profile")?;
                if !filter.skipped_names.is_empty() {
                    runcvm_log::debug!(
                        "seccomp: skipping calls x86_64 does not have: {}",
                        filter.skipped_names.join(", ")
                    );
                }
                Some(filter)
            }
            None => None,
        };
        let has_cgroups = has_cgroup_v2();
        let mounts = mount_ops(plan, has_cgroups)?;
        let user_namespace = match pod.user_namespace {
            Some(fd) => Some(fd.try_clone().context("cannot hold the pod's user namespace")?),
            None => None,
        };
        let init_pid_namespace = open_namespace(Path::new("/proc/self/ns/pid"))?;
        // Last: nothing that fails after it could leave it behind.
        let cgroup = make_container_cgroup(id, plan)?;
        let cgroup_procs = cgroup
            .as_ref()
            .and_then(|dir| CString::new(dir.join("cgroup.procs").as_os_str().as_encoded_bytes()).ok());
        Ok(Self {
            setup: ContainerSetup {
                root,
                pid,
                cgroup_procs,
                mounts,
                user_namespace,
                init_pid_namespace,
            },
            seccomp,
            cgroup,
            joined: Mutex::new(None),
            pod_root: pod.root,
        })
    }

    /// Records the running workload's namespaces for exec sessions.
    pub fn started(&self, workload: Pid) {
        let joined = (|| -> anyhow::Result<Joined> {
            let ns = |kind: &str| open_namespace(&PathBuf::from(format!("/proc/{workload}/ns/{kind}")));
            Ok(Joined {
                pid: ns("pid")?,
                mount: ns("mnt")?,
                cgroup: ns("cgroup")?,
                cgroup_procs: self.setup.cgroup_procs.clone(),
                user_namespace: match &self.setup.user_namespace {
                    Some(fd) => Some(fd.try_clone()?),
                    None => None,
                },
                init_pid_namespace: self.setup.init_pid_namespace.try_clone()?,
            })
        })();
        match joined {
            Ok(joined) => {
                if let Ok(mut slot) = self.joined.lock() {
                    *slot = Some(Arc::new(joined));
                }
            }
            // It ended at once: nothing can be exec'd into it anyway.
            Err(e) => runcvm_log::debug!("cannot record the workload's namespaces: {e:#}"),
        }
    }

    /// The running workload's namespaces, if it started.
    pub fn joined(&self) -> Option<Arc<Joined>> {
        self.joined.lock().ok().and_then(|slot| slot.clone())
    }

    /// The pod's root as the guest kernel knows it, in a pod with a user
    /// namespace of its own.
    pub fn pod_root(&self) -> Option<(u32, u32)> {
        self.pod_root
    }

    /// Runs `f` where the container's paths are: in the mount namespace over
    /// its served root, or here when the guest's root is the container's.
    pub fn in_root<T: Send>(&self, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
        match &self.setup.root {
            Some(root) => in_mount_namespace(root, f),
            None => Ok(f()),
        }
    }

    /// No exec joins the container from here on (call it between starts,
    /// so none is half done).
    pub fn close_to_execs(&self) {
        if let Ok(mut slot) = self.joined.lock() {
            *slot = None;
        }
    }

    /// Ends what the container's process left running (its orphans, its
    /// execs): everything in its cgroup is killed. Without cgroups the
    /// container's processes cannot be told from the pod's others, so every
    /// process of the guest is.
    pub fn kill_the_rest(&self) {
        let Some(dir) = &self.cgroup else {
            let _ = nix::sys::signal::kill(Pid::from_raw(-1), nix::sys::signal::Signal::SIGKILL);
            return;
        };
        // cgroup.kill (Linux 5.14) is one step that a fork cannot escape;
        // the loop is for kernels without it.
        let _ = std::fs::write(dir.join("cgroup.kill"), "1");
        for _ in 0..END_POLLS {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            if procs.trim().is_empty() {
                return;
            }
            for pid in procs.lines().filter_map(|line| line.trim().parse().ok()) {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
            std::thread::sleep(END_POLL);
        }
        runcvm_log::warn!("processes of the container outlived its end in {}", dir.display());
    }

    /// Removes the container's cgroup once it has ended.
    pub fn remove_cgroup(&self) {
        if let Some(dir) = &self.cgroup
            && let Err(e) = std::fs::remove_dir(dir)
        {
            runcvm_log::debug!("cannot remove {}: {e}", dir.display());
        }
    }

    /// How many processes the guest's OOM killer ended in the container.
    pub fn oom_kills(&self) -> u64 {
        let Some(dir) = &self.cgroup else { return 0 };
        std::fs::read_to_string(dir.join("memory.events"))
            .ok()
            .and_then(|events| oom_kills_in(&events))
            .unwrap_or(0)
    }
}

/// A user namespace with the pod's mappings, held by a descriptor: a child
/// makes it (`unshare`), init writes its maps (only a process outside may
/// map more than its own id), and the child ends; the descriptor keeps the
/// namespace for the workload and its execs to enter.
pub fn make_user_namespace(userns: &runcvm_spec::UserNamespace) -> anyhow::Result<OwnedFd> {
    use nix::unistd::{ForkResult, fork, pipe2, read, write};
    let flags = nix::fcntl::OFlag::O_CLOEXEC;
    let (made_read, made_write) = pipe2(flags).context("cannot create a pipe")?;
    let (done_read, done_write) = pipe2(flags).context("cannot create a pipe")?;
    // SAFETY: the child makes two system calls and exits; it allocates
    // nothing and touches nothing of the parent's.
    match unsafe { fork() }.context("cannot fork for the pod's user namespace")? {
        ForkResult::Child => {
            drop(made_read);
            drop(done_write);
            let errno = match nix::sched::unshare(CloneFlags::CLONE_NEWUSER) {
                Ok(()) => 0,
                Err(e) => e as i32,
            };
            let _ = write(&made_write, &errno.to_be_bytes());
            // Wait until init has what it needs (it closes its end).
            let _ = read(&done_read, &mut [0u8]);
            // SAFETY: _exit ends the child without the parent's destructors.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Parent { child } => {
            drop(made_write);
            drop(done_read);
            let mut errno = [0u8; 4];
            let made = read(&made_read, &mut errno);
            let result = (|| {
                match made {
                    Ok(4) if errno == [0; 4] => {}
                    Ok(4) => anyhow::bail!(
                        "cannot make the pod's user namespace: {}",
                        Errno::from_raw(i32::from_be_bytes(errno))
                    ),
                    _ => anyhow::bail!("cannot make the pod's user namespace: its maker ended"),
                }
                let lines =
                    |ranges: &[runcvm_spec::IdMapping]| ranges.iter().map(|r| r.map_line() + "\n").collect::<String>();
                for (file, ranges) in [("uid_map", &userns.uid_mappings), ("gid_map", &userns.gid_mappings)] {
                    let path = format!("/proc/{child}/{file}");
                    std::fs::write(&path, lines(ranges)).with_context(|| format!("cannot write {path}"))?;
                }
                open_namespace(&PathBuf::from(format!("/proc/{child}/ns/user")))
            })();
            drop(done_write);
            let _ = nix::sys::wait::waitpid(child, None);
            let fd = result?;
            runcvm_log::debug!(
                "the pod's user namespace: uid {}, gid {}",
                userns
                    .uid_mappings
                    .iter()
                    .map(|r| r.map_line())
                    .collect::<Vec<_>>()
                    .join(", "),
                userns
                    .gid_mappings
                    .iter()
                    .map(|r| r.map_line())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(fd)
        }
    }
}

/// Runs `f` inside the mount namespace `ns`, on a thread of its own.
pub fn in_mount_namespace<T: Send>(ns: &OwnedFd, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
    on_thread_of_its_own(|| {
        nix::sched::setns(ns, CloneFlags::CLONE_NEWNS).context("cannot enter the container's mount namespace")?;
        Ok(f())
    })
}

/// Runs `f` on a new thread with a root and working folder of its own.
/// Init's threads share one, which setns(2) and unshare(2) of a mount
/// namespace refuse to move for one of them, so the thread first takes
/// copies (`unshare(CLONE_FS)`); init's other threads stay where they are.
pub fn on_thread_of_its_own<T: Send>(f: impl FnOnce() -> anyhow::Result<T> + Send) -> anyhow::Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                nix::sched::unshare(CloneFlags::CLONE_FS).context("cannot give a thread a root of its own")?;
                f()
            })
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("a thread working on the container's paths panicked")))
    })
}

/// Opens a namespace file (`/proc/PID/ns/KIND`) to hold the namespace.
pub fn open_namespace(path: &Path) -> anyhow::Result<OwnedFd> {
    nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .with_context(|| format!("cannot open {}", path.display()))
}

/// The `oom_kill` count of a `memory.events` file.
fn oom_kills_in(events: &str) -> Option<u64> {
    events
        .lines()
        .find_map(|line| line.strip_prefix("oom_kill "))
        .and_then(|count| count.trim().parse().ok())
}

/// Whether the guest has the cgroup v2 hierarchy init mounts (a kernel
/// built without it has none).
fn has_cgroup_v2() -> bool {
    Path::new(CGROUP_ROOT).join("cgroup.subtree_control").exists()
}

/// Makes the folder holding every container's cgroup (`containers`, one
/// level below the root) if it is not there yet.
fn containers_cgroup_folder() -> anyhow::Result<PathBuf> {
    let parent = Path::new(CGROUP_ROOT).join(CONTAINERS_CGROUP);
    match std::fs::create_dir(&parent) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(e).with_context(|| format!("cannot create {}", parent.display()))
        }
        _ => Ok(parent),
    }
}

/// The cgroup v2 id of the folder holding every container's cgroup (its
/// inode number, which is what the kernel reports as a cgroup's id), made
/// if needed; `None` when the guest has no cgroup v2.
pub fn containers_cgroup_id() -> anyhow::Result<Option<u64>> {
    if !has_cgroup_v2() {
        return Ok(None);
    }
    let parent = containers_cgroup_folder()?;
    let meta = std::fs::metadata(&parent).with_context(|| format!("cannot read {}", parent.display()))?;
    Ok(Some(std::os::unix::fs::MetadataExt::ino(&meta)))
}

/// Makes container `id`'s cgroup under the cgroup v2 root init mounted
/// (`containers/ID`), hands it the controllers the kernel has, and sets its
/// memory and CPU limits and its CPU weight. `None` when the guest has no
/// cgroup v2 (a kernel built without it).
fn make_container_cgroup(id: u32, plan: &LaunchPlan) -> anyhow::Result<Option<PathBuf>> {
    let root = Path::new(CGROUP_ROOT);
    if !has_cgroup_v2() {
        runcvm_log::warn!("the guest kernel has no cgroup v2: the container's memory limit is the VM's size alone");
        return Ok(None);
    }
    let parent = containers_cgroup_folder()?;
    for level in [root, parent.as_path()] {
        for controller in CONTROLLERS {
            if let Err(e) = std::fs::write(level.join("cgroup.subtree_control"), format!("+{controller}")) {
                runcvm_log::debug!("cgroup controller {controller} is not available: {e}");
            }
        }
    }
    let dir = parent.join(id.to_string());
    match std::fs::create_dir(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(e).with_context(|| format!("cannot create the container's cgroup {}", dir.display()));
        }
        _ => {}
    }
    // A cgroup whose limits cannot be set goes again: the container does
    // not start.
    if let Err(e) = set_limits(&dir, plan) {
        let _ = std::fs::remove_dir(&dir);
        return Err(e);
    }
    Ok(Some(dir))
}

/// Writes a container's limits into its cgroup `dir`.
fn set_limits(dir: &Path, plan: &LaunchPlan) -> anyhow::Result<()> {
    if let Some(limit) = plan.memory_limit_bytes {
        std::fs::write(dir.join("memory.max"), limit.to_string())
            .with_context(|| format!("cannot set the container's memory limit in {}", dir.display()))?;
        runcvm_log::debug!("container memory limit {} MiB", limit >> 20);
    }
    if let Some(limit) = plan.cpu_limit {
        std::fs::write(dir.join("cpu.max"), limit.cpu_max_line())
            .with_context(|| format!("cannot set the container's CPU limit in {}", dir.display()))?;
        runcvm_log::debug!("container CPU limit {}", limit.cpu_max_line());
    }
    if let Some(weight) = plan.cpu_weight {
        std::fs::write(dir.join("cpu.weight"), weight.to_string())
            .with_context(|| format!("cannot set the container's CPU weight in {}", dir.display()))?;
    }
    if plan.memory_oom_group {
        std::fs::write(dir.join("memory.oom.group"), "1")
            .with_context(|| format!("cannot set memory.oom.group in {}", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mounts_follow_the_plan_in_order() {
        let plan = LaunchPlan {
            own_pid_namespace: true,
            sys_read_only: true,
            masked_paths: vec!["/proc/kcore".into()],
            readonly_paths: vec!["/proc/sys".into()],
            read_only_root: true,
            ..LaunchPlan::default()
        };
        let c = |p: &str| CString::new(p).unwrap();
        assert_eq!(
            mount_ops(&plan, true).unwrap(),
            vec![
                MountOp::Private,
                MountOp::Proc,
                MountOp::Cgroup { read_only: true },
                MountOp::RemountReadOnly(c("/sys")),
                MountOp::ReadOnly(c("/proc/sys")),
                MountOp::Mask(c("/proc/kcore")),
                MountOp::RemountReadOnly(c("/")),
            ]
        );
        assert_eq!(
            mount_ops(&LaunchPlan::default(), false).unwrap(),
            vec![MountOp::Private, MountOp::Proc],
            "a container shares no PID namespace with init, so it gets its own /proc in every mode"
        );
        assert_eq!(
            mount_ops(&LaunchPlan::default(), true).unwrap(),
            vec![MountOp::Private, MountOp::Proc, MountOp::Cgroup { read_only: false }],
            "a privileged container's cgroup is writable"
        );
    }

    #[test]
    fn oom_kills_are_read_from_memory_events() {
        let events = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(oom_kills_in(events), Some(1));
        assert_eq!(oom_kills_in("low 0\n"), None);
    }
}
