//! The `[VM-START]` entry runner (the guide's `runcvm-vm-start`): runs `/.runcvm/entrypoint` exactly as the
//! container would have run it, and waits for it while reaping orphans.

use crate::caps;
use crate::lookup;
use nix::errno::Errno;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Pid, Uid};
use runcvm_log::LogLevel;
use runcvm_proto::{ExitStatus, TerminalSize};
use runcvm_spec::{CapabilityMasks, ENTRYPOINT_PATH, Entrypoint};
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

const RUNNER: &str = "[VM-START]";

/// Exit code when the runner itself cannot use the entrypoint file, as a
/// container runtime's own failures are reported (docker's 125).
const RUNNER_FAILED: i32 = 125;

macro_rules! vm_start {
    ($level:ident, $($arg:tt)*) => {
        runcvm_log::write_as(Some(RUNNER), LogLevel::$level, format_args!($($arg)*))
    };
}

/// A started workload: its pid and the read ends of its stdout and stderr.
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
        vm_start!(Error, "cannot use {ENTRYPOINT_PATH}: {}", chain(&e));
        Workload::Ended(ExitStatus::Code(RUNNER_FAILED))
    })
}

/// Creates a missing working directory, as runc does rather than failing
/// (before a read-only root, too). A failure shows when the process enters it.
pub fn create_cwd(entrypoint: &Entrypoint) {
    let _ = std::fs::create_dir_all(entrypoint.cwd.as_os_str());
}

/// Starts the entrypoint; its stdin comes from the launcher if `with_stdin`.
pub fn start_entrypoint(entrypoint: &Entrypoint, with_stdin: bool, size: Option<TerminalSize>) -> Workload {
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
    match start(entrypoint, with_stdin, size) {
        Ok(started) => Workload::Running(started),
        Err(failure) => {
            vm_start!(Error, "unable to start container process: {}", failure.message);
            Workload::Ended(ExitStatus::Code(failure.code))
        }
    }
}

fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Why a process did not start, and the code runc would exit with.
#[derive(Debug)]
pub struct StartFailure {
    pub code: i32,
    pub message: String,
}

/// The step of the child's set-up that failed, reported over the pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Step {
    Session = 1,
    Stdio,
    Groups,
    Gid,
    Uid,
    Cwd,
    Exec,
    CapBounding,
    CapKeep,
    CapSets,
    CapAmbient,
    NoNewPrivileges,
}

impl Step {
    fn from_u8(value: u8) -> Option<Self> {
        [
            Self::Session,
            Self::Stdio,
            Self::Groups,
            Self::Gid,
            Self::Uid,
            Self::Cwd,
            Self::Exec,
            Self::CapBounding,
            Self::CapKeep,
            Self::CapSets,
            Self::CapAmbient,
            Self::NoNewPrivileges,
        ]
        .into_iter()
        .find(|s| *s as u8 == value)
    }
}

fn cstrings(items: &[runcvm_spec::ByteString]) -> Result<Vec<CString>, StartFailure> {
    items
        .iter()
        .map(|item| {
            CString::new(item.as_bytes()).map_err(|_| StartFailure {
                code: RUNNER_FAILED,
                message: format!("\"{item}\" contains a NUL byte"),
            })
        })
        .collect()
}

/// Starts `entrypoint` with its stdout and stderr on pipes, and its stdin on
/// a pipe too if `with_stdin`.
pub fn start(entrypoint: &Entrypoint, with_stdin: bool, size: Option<TerminalSize>) -> Result<Started, StartFailure> {
    let name = entrypoint.args[0].as_bytes();
    let cwd_path = std::path::Path::new(entrypoint.cwd.as_os_str());
    let program = lookup::find_program(name, entrypoint.path_var(), cwd_path).map_err(|e| StartFailure {
        code: 127,
        message: e.to_string(),
    })?;
    vm_start!(Debug, "running {}", program.display());
    let program_c = CString::new(program.as_os_str().as_encoded_bytes()).map_err(|_| StartFailure {
        code: RUNNER_FAILED,
        message: "program path contains a NUL byte".into(),
    })?;
    let argv = cstrings(&entrypoint.args)?;
    let envp = cstrings(&entrypoint.env)?;
    let cwd = CString::new(entrypoint.cwd.as_bytes()).map_err(|_| StartFailure {
        code: RUNNER_FAILED,
        message: "cwd contains a NUL byte".into(),
    })?;
    create_cwd(entrypoint);
    let groups: Vec<Gid> = entrypoint.additional_gids.iter().map(|g| Gid::from_raw(*g)).collect();
    let capabilities = entrypoint.capabilities.as_ref().map(|wanted| {
        let (masks, warnings) = caps::plan(wanted);
        for warning in warnings {
            vm_start!(Warn, "{warning}");
        }
        masks
    });
    // stdout and stderr leave the guest over the control channel, apart;
    // or, when the process wants a terminal, all three are one pty.
    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| StartFailure {
            code: RUNNER_FAILED,
            message: format!("cannot create an output pipe: {e}"),
        })
    };
    let io = if entrypoint.terminal {
        ChildIo::terminal(size)?
    } else {
        ChildIo::pipes(with_stdin, pipe)?
    };
    let (report_read, report_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| StartFailure {
        code: RUNNER_FAILED,
        message: format!("cannot create a pipe: {e}"),
    })?;

    // SAFETY: init has threads (pumps, the launcher's reader), so the child
    // keeps to what glibc makes safe after fork: its own system calls, and
    // memory allocation, whose locks glibc resets in the child. Everything
    // else was prepared before the fork.
    match unsafe { nix::unistd::fork() } {
        Err(e) => Err(StartFailure {
            code: RUNNER_FAILED,
            message: format!("cannot fork: {e}"),
        }),
        Ok(ForkResult::Child) => {
            drop(report_read);
            let (step, errno) = exec_child(ChildSetup {
                program: &program_c,
                argv: &argv,
                envp: &envp,
                cwd: &cwd,
                uid: Uid::from_raw(entrypoint.uid),
                gid: Gid::from_raw(entrypoint.gid),
                groups: &groups,
                no_new_privileges: entrypoint.no_new_privileges,
                capabilities,
                io: &io.child,
            });
            let mut report = [0u8; 5];
            report[0] = step as u8;
            report[1..].copy_from_slice(&(errno as i32).to_be_bytes());
            let _ = nix::unistd::write(&report_write, &report);
            // SAFETY: _exit is always safe; it skips Rust destructors that
            // belong to the parent's copy of the state.
            unsafe { libc::_exit(127) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(report_write);
            // Only the process holds the child's ends now, so EOF on ours
            // means every writer is gone.
            let ChildIo { child: ends, parent } = io;
            drop(ends);
            match read_report(&report_read) {
                None => Ok(Started {
                    pid: child,
                    stdout: parent.stdout,
                    stderr: parent.stderr,
                    stdin: parent.stdin,
                    terminal: parent.terminal,
                }),
                Some((step, errno)) => {
                    let _ = waitpid(child, None);
                    Err(describe_failure(step, errno, &entrypoint.args[0], &program, entrypoint))
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
            );
            (null.ok(), None)
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
        let failed = |what: &str, e: Errno| StartFailure {
            code: RUNNER_FAILED,
            message: format!("cannot {what}: {e}"),
        };
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
}

/// In the child: the container's session, stdio, credentials and cwd, then
/// exec. Returns only on failure, with the step that failed.
fn exec_child(setup: ChildSetup<'_>) -> (Step, Errno) {
    if let Err(e) = nix::unistd::setsid() {
        return (Step::Session, e);
    }
    let ends = setup.io;
    if ends.terminal {
        // SAFETY: TIOCSCTTY takes an int; the descriptor is the pty's slave
        // side, which becomes the new session's controlling terminal.
        if unsafe { libc::ioctl(ends.stdout.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
            return (Step::Stdio, Errno::last());
        }
    }
    if let Some(stdin) = &ends.stdin {
        if let Err(e) = nix::unistd::dup2_stdin(stdin.as_fd()) {
            return (Step::Stdio, e);
        }
    }
    if let Err(e) =
        nix::unistd::dup2_stdout(ends.stdout.as_fd()).and_then(|()| nix::unistd::dup2_stderr(ends.stderr.as_fd()))
    {
        return (Step::Stdio, e);
    }
    // As runc: the working directory first as root, which may enter where
    // the user may not; again after the user change if that failed.
    let entered = nix::unistd::chdir(setup.cwd.as_c_str()).is_ok();
    if let Some(masks) = &setup.capabilities {
        if let Err(failed) = caps::before_user_change(masks) {
            return failed;
        }
    }
    if let Err(e) = nix::unistd::setgroups(setup.groups) {
        return (Step::Groups, e);
    }
    if let Err(e) = nix::unistd::setgid(setup.gid) {
        return (Step::Gid, e);
    }
    if let Err(e) = nix::unistd::setuid(setup.uid) {
        return (Step::Uid, e);
    }
    if let Some(masks) = &setup.capabilities {
        if let Err(failed) = caps::after_user_change(masks) {
            return failed;
        }
    }
    if !entered {
        if let Err(e) = nix::unistd::chdir(setup.cwd.as_c_str()) {
            return (Step::Cwd, e);
        }
    }
    if setup.no_new_privileges {
        if let Err(e) = runcvm_spec::caps::sys::set_no_new_privileges() {
            return (Step::NoNewPrivileges, Errno::from_raw(e));
        }
    }
    match nix::unistd::execve(setup.program, setup.argv, setup.envp) {
        Err(e) => (Step::Exec, e),
        Ok(never) => match never {},
    }
}

fn read_report(pipe: &OwnedFd) -> Option<(Step, Errno)> {
    let mut report = [0u8; 5];
    let mut filled = 0;
    while filled < report.len() {
        match nix::unistd::read(pipe, &mut report[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(Errno::EINTR) => {}
            Err(_) => break,
        }
    }
    if filled < report.len() {
        // The pipe closed on exec: the workload is running.
        return None;
    }
    let errno = i32::from_be_bytes([report[1], report[2], report[3], report[4]]);
    Some((Step::from_u8(report[0]).unwrap_or(Step::Exec), Errno::from_raw(errno)))
}

/// runc's wording and exit codes: 127 when the program is missing, 126 when
/// it is there but cannot be run.
fn describe_failure(
    step: Step,
    errno: Errno,
    name: &runcvm_spec::ByteString,
    program: &std::path::Path,
    entrypoint: &Entrypoint,
) -> StartFailure {
    let reason = errno.desc().to_lowercase();
    let (code, message) = match step {
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
        Step::CapBounding => (
            RUNNER_FAILED,
            format!("applying the process's capabilities: dropping from the bounding set: {reason}"),
        ),
        Step::CapKeep => (
            RUNNER_FAILED,
            format!("applying the process's capabilities: keeping them across the user change: {reason}"),
        ),
        Step::CapSets => (
            RUNNER_FAILED,
            format!(
                "applying the process's capabilities: setting the effective, permitted and inheritable sets \
                 (effective must be within permitted, inheritable within the bounding set): {reason}"
            ),
        ),
        Step::CapAmbient => (
            RUNNER_FAILED,
            format!("applying the process's capabilities: raising an ambient capability: {reason}"),
        ),
        Step::NoNewPrivileges => (RUNNER_FAILED, format!("setting no_new_privs: {reason}")),
        Step::Session => (RUNNER_FAILED, format!("setsid: {reason}")),
    };
    StartFailure { code, message }
}

/// Reaps every child until the workload ends; returns how it ended.
pub fn wait_for(workload: Pid) -> ExitStatus {
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == workload => return ExitStatus::Code(code),
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == workload => return ExitStatus::Signal(signal as i32),
            Ok(other) => dispatch(other),
            Err(Errno::EINTR) => {}
            Err(e) => {
                vm_start!(Error, "lost track of the workload: {e}");
                return ExitStatus::Code(RUNNER_FAILED);
            }
        }
    }
}

/// Reaps until no child is left.
pub fn reap_all() {
    loop {
        match waitpid(None, None) {
            Ok(other) => dispatch(other),
            Err(Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// Hands an exec session's exit to the session; others are orphans.
fn dispatch(status: WaitStatus) {
    match status {
        WaitStatus::Exited(pid, code) => crate::exec::reaped(pid, ExitStatus::Code(code)),
        WaitStatus::Signaled(pid, signal, _) => crate::exec::reaped(pid, ExitStatus::Signal(signal as i32)),
        _ => {}
    }
}

/// Reaps for ever: exec sessions into a sleeping guest still end.
pub fn sleep_forever() -> ! {
    loop {
        reap_all();
        // No child right now; an exec may start one at any moment.
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
