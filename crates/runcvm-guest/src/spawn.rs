//! Starting one process of the container exactly as runc would: fork, then
//! in the child the container's cgroup and namespaces, its stdio, mounts,
//! credentials, capabilities, seccomp filter and working directory, then
//! `execve` with the exact argv and env. A leaf: it knows nothing of exec
//! sessions or the control channel (only the reaper's registry, where the
//! child is put the moment it exists); what goes wrong comes back as the exit
//! code and message runc would give.

use crate::caps::{self, CapStep};
use crate::container::{Confinement, MountOp};
use crate::lookup;
use crate::reaper::Waiters;
use nix::errno::Errno;
use nix::unistd::{ForkResult, Gid, Pid, Uid};
use runcvm_proto::{ExitStatus, TerminalSize};
use runcvm_seccomp::Filter;
use runcvm_spec::{CapabilityMasks, Entrypoint};
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::mpsc::Receiver;

/// Exit code when the runner itself fails, as a container runtime's own
/// failures are reported (docker's 125).
pub const RUNNER_FAILED: i32 = 125;

/// A started process: its pid and init's ends of its stdio.
#[derive(Debug)]
pub struct Started {
    pub pid: Pid,
    /// Its stdout, or with a terminal, the terminal's master side.
    pub stdout: OwnedFd,
    /// None with a terminal: stderr goes to the terminal too.
    pub stderr: Option<OwnedFd>,
    /// The write end of its stdin, when it has one (with a terminal, the
    /// master side again).
    pub stdin: Option<OwnedFd>,
    /// The terminal's master side, for window sizes.
    pub terminal: Option<OwnedFd>,
}

/// Why a process did not start, and the code runc would exit with.
#[derive(Debug)]
pub struct StartFailure {
    pub code: i32,
    pub message: String,
}

impl StartFailure {
    fn runner(message: String) -> Self {
        Self {
            code: RUNNER_FAILED,
            message,
        }
    }
}

/// The step of the child's set-up that failed, reported over the pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Step {
    Session = 1,
    Stdio,
    Groups,
    Gid,
    Uid,
    Cwd,
    Exec,
    Cap(CapStep),
    NoNewPrivileges,
    Cgroup,
    Namespaces,
    /// A mount of the container's view; the report names which.
    Mount,
    Seccomp,
}

impl Step {
    const ALL: [Self; 16] = [
        Self::Session,
        Self::Stdio,
        Self::Groups,
        Self::Gid,
        Self::Uid,
        Self::Cwd,
        Self::Exec,
        Self::Cap(CapStep::Bounding),
        Self::Cap(CapStep::Keep),
        Self::Cap(CapStep::Sets),
        Self::Cap(CapStep::Ambient),
        Self::NoNewPrivileges,
        Self::Cgroup,
        Self::Namespaces,
        Self::Mount,
        Self::Seccomp,
    ];

    fn code(self) -> u8 {
        let at = Self::ALL.iter().position(|s| *s == self).expect("every step is in ALL");
        u8::try_from(at + 1).expect("fewer than 255 steps")
    }

    fn from_code(value: u8) -> Self {
        Self::ALL
            .get(usize::from(value).wrapping_sub(1))
            .copied()
            .unwrap_or(Self::Exec)
    }
}

/// What the child reports when its set-up fails: the step, the errno, and
/// for [`Step::Mount`] which mount.
#[derive(Debug, Clone, Copy)]
struct Report {
    step: Step,
    errno: Errno,
    index: u16,
}

impl Report {
    const LEN: usize = 7;

    fn new(step: Step, errno: Errno) -> Self {
        Self { step, errno, index: 0 }
    }

    fn encode(self) -> [u8; Self::LEN] {
        let mut bytes = [0u8; Self::LEN];
        bytes[0] = self.step.code();
        bytes[1..5].copy_from_slice(&(self.errno as i32).to_be_bytes());
        bytes[5..].copy_from_slice(&self.index.to_be_bytes());
        bytes
    }

    fn decode(bytes: [u8; Self::LEN]) -> Self {
        Self {
            step: Step::from_code(bytes[0]),
            errno: Errno::from_raw(i32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]])),
            index: u16::from_be_bytes([bytes[5], bytes[6]]),
        }
    }
}

fn cstrings(items: &[runcvm_spec::ByteString]) -> Result<Vec<CString>, StartFailure> {
    items
        .iter()
        .map(|item| {
            CString::new(item.as_bytes()).map_err(|_| StartFailure::runner(format!("\"{item}\" contains a NUL byte")))
        })
        .collect()
}

/// How a process is started.
#[derive(Debug)]
pub struct Spawn<'a> {
    pub process: &'a Entrypoint,
    /// Its stdin is a pipe from init; otherwise /dev/null.
    pub with_stdin: bool,
    pub terminal_size: Option<TerminalSize>,
    /// The capability masks worked out for it (`caps::plan`).
    pub capabilities: Option<CapabilityMasks>,
    pub confinement: Confinement<'a>,
    pub seccomp: Option<&'a Filter>,
    /// Creates a missing working directory in the container's view (an
    /// exec's: the workload's is made before the root turns read-only).
    pub create_cwd: bool,
}

/// Starts the process with its stdout and stderr on pipes (or one pty),
/// registered with `waiters` between its fork and anything it could end
/// by; its status comes on the channel returned.
pub fn start(spawn: &Spawn<'_>, waiters: &Waiters) -> Result<(Started, Receiver<ExitStatus>), StartFailure> {
    let entrypoint = spawn.process;
    let name = entrypoint.args[0].as_bytes();
    let cwd_path = std::path::Path::new(entrypoint.cwd.as_os_str());
    let find = || lookup::find_program(name, entrypoint.path_var(), cwd_path);
    let found = match spawn.confinement.mount_namespace() {
        // In the container's root: the image's PATH folders, and their
        // symlinks resolved there.
        Some(ns) => crate::container::in_mount_namespace(ns, find)
            .map_err(|e| StartFailure::runner(format!("cannot look up {}: {e:#}", entrypoint.args[0])))?,
        None => find(),
    };
    let program = found.map_err(|e| StartFailure {
        code: 127,
        message: e.to_string(),
    })?;
    let program_c = CString::new(program.as_os_str().as_encoded_bytes())
        .map_err(|_| StartFailure::runner("program path contains a NUL byte".into()))?;
    let argv = cstrings(&entrypoint.args)?;
    let envp = cstrings(&entrypoint.env)?;
    let cwd =
        CString::new(entrypoint.cwd.as_bytes()).map_err(|_| StartFailure::runner("cwd contains a NUL byte".into()))?;
    let groups: Vec<Gid> = entrypoint.additional_gids.iter().map(|g| Gid::from_raw(*g)).collect();
    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| StartFailure::runner(format!("cannot create an output pipe: {e}")))
    };
    let io = if entrypoint.terminal {
        ChildIo::terminal(spawn.terminal_size)?
    } else {
        ChildIo::pipes(spawn.with_stdin, pipe)?
    };
    let (report_read, report_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| StartFailure::runner(format!("cannot create a pipe: {e}")))?;
    let setup = ChildSetup {
        program: &program_c,
        argv: &argv,
        envp: &envp,
        cwd: &cwd,
        uid: Uid::from_raw(entrypoint.uid),
        gid: Gid::from_raw(entrypoint.gid),
        groups: &groups,
        no_new_privileges: entrypoint.no_new_privileges,
        capabilities: spawn.capabilities,
        io: &io.child,
        confinement: &spawn.confinement,
        seccomp: spawn.seccomp,
        create_cwd: spawn.create_cwd,
    };
    let slot = waiters
        .lock_for_fork()
        .ok_or_else(|| StartFailure::runner("the VM is stopping".into()))?;
    let forked = spawn.confinement.fork_into_pid_namespace(|| {
        // SAFETY: init has threads (pumps, the launcher's reader), so the
        // child keeps to what glibc makes safe after fork: its own system
        // calls, and memory allocation, whose locks glibc resets in the
        // child. Everything else was prepared before the fork.
        unsafe { nix::unistd::fork() }
    });
    match forked {
        Err(e) => Err(StartFailure::runner(format!("cannot fork: {e}"))),
        Ok(ForkResult::Child) => {
            drop(report_read);
            let report = exec_child(&setup);
            let _ = nix::unistd::write(&report_write, &report.encode());
            // SAFETY: _exit is always safe; it skips Rust destructors that
            // belong to the parent's copy of the state.
            unsafe { libc::_exit(127) }
        }
        Ok(ForkResult::Parent { child }) => {
            let exit = slot.register(child);
            drop(report_write);
            // Only the process holds the child's ends now, so EOF on ours
            // means every writer is gone.
            let ChildIo { child: ends, parent } = io;
            drop(ends);
            match read_report(&report_read) {
                None => Ok((
                    Started {
                        pid: child,
                        stdout: parent.stdout,
                        stderr: parent.stderr,
                        stdin: parent.stdin,
                        terminal: parent.terminal,
                    },
                    exit,
                )),
                Some(report) => {
                    // It ends at once; the reaper takes its status.
                    let _ = exit.recv();
                    Err(describe_failure(report, &entrypoint.args[0], &program, spawn))
                }
            }
        }
    }
}

/// The child's ends of its stdio.
#[derive(Debug)]
struct ChildEnds {
    stdin: Option<OwnedFd>,
    stdout: OwnedFd,
    stderr: OwnedFd,
    /// The three are a pty's slave side, to become the controlling terminal.
    terminal: bool,
}

/// Init's ends.
#[derive(Debug)]
struct ParentEnds {
    stdout: OwnedFd,
    stderr: Option<OwnedFd>,
    stdin: Option<OwnedFd>,
    terminal: Option<OwnedFd>,
}

#[derive(Debug)]
struct ChildIo {
    child: ChildEnds,
    parent: ParentEnds,
}

impl ChildIo {
    /// Pipes for stdout and stderr, and stdin a pipe or /dev/null.
    fn pipes(
        with_stdin: bool,
        pipe: impl Fn() -> Result<(OwnedFd, OwnedFd), StartFailure>,
    ) -> Result<Self, StartFailure> {
        let (stdout_read, stdout_write) = pipe()?;
        let (stderr_read, stderr_write) = pipe()?;
        let (stdin, stdin_write) = if with_stdin {
            let (read, write) = pipe()?;
            (Some(read), Some(write))
        } else {
            let null = nix::fcntl::open(
                "/dev/null",
                nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            // Else the process would read init's console.
            .map_err(|e| StartFailure::runner(format!("cannot open /dev/null for stdin: {e}")))?;
            (Some(null), None)
        };
        Ok(Self {
            child: ChildEnds {
                stdin,
                stdout: stdout_write,
                stderr: stderr_write,
                terminal: false,
            },
            parent: ParentEnds {
                stdout: stdout_read,
                stderr: Some(stderr_read),
                stdin: stdin_write,
                terminal: None,
            },
        })
    }

    /// One pty for all three; init keeps the master side.
    fn terminal(size: Option<TerminalSize>) -> Result<Self, StartFailure> {
        let failed = |what: &str, e: Errno| StartFailure::runner(format!("cannot {what}: {e}"));
        // Sized before the process starts, so its first look is right.
        let size = size.map(|s| nix::pty::Winsize {
            ws_row: s.rows,
            ws_col: s.cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        });
        let pty = nix::pty::openpty(size.as_ref(), None).map_err(|e| failed("open a terminal", e))?;
        let master = pty.master;
        // Neither side may leak into the process beyond its stdio: a
        // daemon it leaves behind would keep the terminal (and the
        // session) open.
        for side in [&master, &pty.slave] {
            nix::fcntl::fcntl(side, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))
                .map_err(|e| failed("keep the terminal from the process", e))?;
        }
        let dup = |fd: &OwnedFd| {
            fd.try_clone()
                .map_err(|e| failed("share the terminal", Errno::from_raw(e.raw_os_error().unwrap_or(0))))
        };
        let (slave_in, slave_err) = (dup(&pty.slave)?, dup(&pty.slave)?);
        let (master_out, master_size) = (dup(&master)?, dup(&master)?);
        Ok(Self {
            child: ChildEnds {
                stdin: Some(slave_in),
                stdout: pty.slave,
                stderr: slave_err,
                terminal: true,
            },
            parent: ParentEnds {
                stdout: master_out,
                stderr: None,
                stdin: Some(master),
                terminal: Some(master_size),
            },
        })
    }
}

struct ChildSetup<'a> {
    program: &'a CString,
    argv: &'a [CString],
    envp: &'a [CString],
    cwd: &'a CString,
    uid: Uid,
    gid: Gid,
    groups: &'a [Gid],
    no_new_privileges: bool,
    /// The process's capabilities; None keeps init's.
    capabilities: Option<CapabilityMasks>,
    io: &'a ChildEnds,
    confinement: &'a Confinement<'a>,
    seccomp: Option<&'a Filter>,
    create_cwd: bool,
}

/// In the child: the container's cgroup and namespaces, stdio, mounts,
/// credentials and cwd, then exec. Returns only on failure, with the step
/// that failed.
fn exec_child(setup: &ChildSetup<'_>) -> Report {
    let failed = |step| move |e: Errno| Report::new(step, e);
    if let Err(e) = nix::unistd::setsid() {
        return Report::new(Step::Session, e);
    }
    let ends = setup.io;
    if ends.terminal {
        // SAFETY: TIOCSCTTY takes an int; the descriptor is the pty's slave
        // side, which becomes the new session's controlling terminal.
        if unsafe { libc::ioctl(ends.stdout.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
            return Report::new(Step::Stdio, Errno::last());
        }
    }
    if let Some(stdin) = &ends.stdin
        && let Err(e) = nix::unistd::dup2_stdin(stdin.as_fd())
    {
        return Report::new(Step::Stdio, e);
    }
    if let Err(e) =
        nix::unistd::dup2_stdout(ends.stdout.as_fd()).and_then(|()| nix::unistd::dup2_stderr(ends.stderr.as_fd()))
    {
        return Report::new(Step::Stdio, e);
    }
    if let Err(report) = enter_container(setup.confinement) {
        return report;
    }
    if setup.create_cwd {
        // Where the container's view allows it: not on a read-only root or
        // under a read-only path; a failure shows at chdir.
        let _ = std::fs::create_dir_all(std::ffi::OsStr::from_bytes(setup.cwd.as_bytes()));
    }
    // As runc: the working directory first as root, which may enter where
    // the user may not; again after the user change if that failed.
    let entered = nix::unistd::chdir(setup.cwd.as_c_str()).is_ok();
    // Without no_new_privs, installing a filter needs CAP_SYS_ADMIN, which
    // only lasts until the user changes; with it, as late as possible.
    if let (Some(filter), false) = (setup.seccomp, setup.no_new_privileges)
        && let Err(e) = runcvm_seccomp::install(filter)
    {
        return Report::new(Step::Seccomp, Errno::from_raw(e));
    }
    let cap = |(step, errno): (CapStep, i32)| Report::new(Step::Cap(step), Errno::from_raw(errno));
    if let Some(masks) = &setup.capabilities
        && let Err(failure) = caps::before_user_change(masks)
    {
        return cap(failure);
    }
    if let Err(e) = nix::unistd::setgroups(setup.groups) {
        return Report::new(Step::Groups, e);
    }
    if let Err(e) = nix::unistd::setgid(setup.gid) {
        return Report::new(Step::Gid, e);
    }
    if let Err(e) = nix::unistd::setuid(setup.uid) {
        return Report::new(Step::Uid, e);
    }
    if let Some(masks) = &setup.capabilities
        && let Err(failure) = caps::after_user_change(masks)
    {
        return cap(failure);
    }
    if !entered && let Err(e) = nix::unistd::chdir(setup.cwd.as_c_str()) {
        return Report::new(Step::Cwd, e);
    }
    if setup.no_new_privileges {
        if let Err(e) = runcvm_caps::sys::set_no_new_privileges() {
            return Report::new(Step::NoNewPrivileges, Errno::from_raw(e));
        }
        if let Some(filter) = setup.seccomp
            && let Err(e) = runcvm_seccomp::install(filter)
        {
            return Report::new(Step::Seccomp, Errno::from_raw(e));
        }
    }
    match nix::unistd::execve(setup.program, setup.argv, setup.envp).map_err(failed(Step::Exec)) {
        Err(report) => report,
        Ok(never) => match never {},
    }
}

/// In the child, before anything of the process's own: the container's
/// cgroup, namespaces and mounts.
fn enter_container(confinement: &Confinement<'_>) -> Result<(), Report> {
    match confinement {
        Confinement::Guest => Ok(()),
        Confinement::Create(setup) => {
            if let Some(procs) = &setup.cgroup_procs {
                join_cgroup(procs)?;
            }
            // The container's root first; its own copy of that namespace
            // below takes the mounts only the workload and its execs see.
            if let Some(root) = &setup.root {
                nix::sched::setns(root, nix::sched::CloneFlags::CLONE_NEWNS)
                    .map_err(|e| Report::new(Step::Namespaces, e))?;
            }
            let flags = nix::sched::CloneFlags::CLONE_NEWNS | nix::sched::CloneFlags::CLONE_NEWCGROUP;
            nix::sched::unshare(flags).map_err(|e| Report::new(Step::Namespaces, e))?;
            for (index, op) in setup.mounts.iter().enumerate() {
                op.apply().map_err(|errno| Report {
                    step: Step::Mount,
                    errno,
                    index: u16::try_from(index).unwrap_or(u16::MAX),
                })?;
            }
            // Last: the mounts above need the node's root, which a user
            // namespace's root is not.
            if let Some(userns) = &setup.user_namespace {
                nix::sched::setns(userns, nix::sched::CloneFlags::CLONE_NEWUSER)
                    .map_err(|e| Report::new(Step::Namespaces, e))?;
            }
            Ok(())
        }
        Confinement::Join(joined) => {
            if let Some(procs) = &joined.cgroup_procs {
                join_cgroup(procs)?;
            }
            let namespaces = [
                (&joined.cgroup, nix::sched::CloneFlags::CLONE_NEWCGROUP),
                (&joined.mount, nix::sched::CloneFlags::CLONE_NEWNS),
            ];
            for (fd, kind) in namespaces {
                nix::sched::setns(fd, kind).map_err(|e| Report::new(Step::Namespaces, e))?;
            }
            if let Some(userns) = &joined.user_namespace {
                nix::sched::setns(userns, nix::sched::CloneFlags::CLONE_NEWUSER)
                    .map_err(|e| Report::new(Step::Namespaces, e))?;
            }
            Ok(())
        }
    }
}

/// Moves the calling process into the cgroup whose `cgroup.procs` this is.
fn join_cgroup(procs: &CString) -> Result<(), Report> {
    let fd = nix::fcntl::open(
        procs.as_c_str(),
        nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Report::new(Step::Cgroup, e))?;
    nix::unistd::write(&fd, b"0").map_err(|e| Report::new(Step::Cgroup, e))?;
    Ok(())
}

fn read_report(pipe: &OwnedFd) -> Option<Report> {
    let mut bytes = [0u8; Report::LEN];
    let mut filled = 0;
    while filled < bytes.len() {
        match nix::unistd::read(pipe, &mut bytes[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(Errno::EINTR) => {}
            Err(_) => break,
        }
    }
    // A short report: the pipe closed on exec, so the process is running.
    (filled == bytes.len()).then(|| Report::decode(bytes))
}

/// runc's wording and exit codes: 127 when the program is missing, 126 when
/// it is there but cannot be run.
fn describe_failure(
    report: Report,
    name: &runcvm_spec::ByteString,
    program: &std::path::Path,
    spawn: &Spawn<'_>,
) -> StartFailure {
    let entrypoint = spawn.process;
    let errno = report.errno;
    let reason = errno.desc().to_lowercase();
    let (code, message) = match report.step {
        Step::Exec if errno == Errno::ENOENT => {
            (127, format!("exec: \"{name}\": stat {}: {reason}", program.display()))
        }
        Step::Exec => (126, format!("exec: \"{name}\": {reason}")),
        Step::Cwd => (
            RUNNER_FAILED,
            format!("chdir to cwd (\"{}\") failed: {reason}", entrypoint.cwd),
        ),
        Step::Uid => (RUNNER_FAILED, format!("setuid {}: {reason}", entrypoint.uid)),
        Step::Gid => (RUNNER_FAILED, format!("setgid {}: {reason}", entrypoint.gid)),
        Step::Groups => (
            RUNNER_FAILED,
            format!("setgroups {:?}: {reason}", entrypoint.additional_gids),
        ),
        Step::Stdio => (RUNNER_FAILED, format!("cannot set up stdio: {reason}")),
        Step::Cap(step) => (
            RUNNER_FAILED,
            format!("applying the process's capabilities: {}: {reason}", step.describe()),
        ),
        Step::NoNewPrivileges => (RUNNER_FAILED, format!("setting no_new_privs: {reason}")),
        Step::Session => (RUNNER_FAILED, format!("setsid: {reason}")),
        Step::Cgroup => (RUNNER_FAILED, format!("joining the container's cgroup: {reason}")),
        Step::Namespaces => (RUNNER_FAILED, format!("entering the container's namespaces: {reason}")),
        Step::Mount => {
            let what = match &spawn.confinement {
                Confinement::Create(setup) => setup
                    .mounts
                    .get(usize::from(report.index))
                    .map_or_else(|| "a mount".to_owned(), MountOp::describe),
                _ => "a mount".to_owned(),
            };
            (
                RUNNER_FAILED,
                format!("setting up the container's mounts: {what}: {reason}"),
            )
        }
        Step::Seccomp => (
            RUNNER_FAILED,
            format!("installing the container's seccomp profile: {reason}"),
        ),
    };
    StartFailure { code, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_survives_the_report_pipe() {
        for step in Step::ALL {
            let report = Report {
                step,
                errno: Errno::EACCES,
                index: 513,
            };
            let back = Report::decode(report.encode());
            assert_eq!(back.step, step);
            assert_eq!(back.errno, Errno::EACCES);
            assert_eq!(back.index, 513);
        }
    }
}
