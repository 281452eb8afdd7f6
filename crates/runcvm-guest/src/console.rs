//! `/dev/ttyS0`: the guide's console, where the kernel's and init's lines go
//! (the workload's stdout and stderr travel over the control channel; what
//! it writes to `/dev/ttyS0` itself lands here too).

use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use nix::sys::termios::{self, OutputFlags, SetArg};
use runcvm_log::LogLevel;
use runcvm_spec::{CONSOLE_HANDBACK, CONSOLE_HANDOVER_LINE};
use std::io::Write;

pub const CONSOLE: &str = "/dev/ttyS0";

/// Opens the console as stdin/stdout/stderr of init (the kernel's own
/// `/dev/console` may not exist in an arbitrary image) and stops the tty
/// from rewriting `\n` as `\r\n`, so output reaches the host byte-exact.
pub fn take_over() {
    let Ok(fd) = open(
        CONSOLE,
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return;
    };
    if let Ok(mut attrs) = termios::tcgetattr(&fd) {
        attrs.output_flags.remove(OutputFlags::OPOST);
        let _ = termios::tcsetattr(&fd, SetArg::TCSANOW, &attrs);
    }
    let _ = nix::unistd::dup2_stdin(&fd);
    let _ = nix::unistd::dup2_stdout(&fd);
    let _ = nix::unistd::dup2_stderr(&fd);
}

/// Marks where the kernel's lines end; see [`CONSOLE_HANDOVER_LINE`].
/// Below DEBUG the kernel then keeps to errors and warnings on the console,
/// as `quiet` would, so its lines do not mix with init's own.
pub fn hand_over(level: LogLevel) {
    const KERN_WARNING_AND_ABOVE: libc::c_int = 5;
    if level < LogLevel::Debug {
        set_console_level(KERN_WARNING_AND_ABOVE);
    }
    let _ = writeln!(std::io::stderr().lock(), "\n{CONSOLE_HANDOVER_LINE}");
}

/// Below DEBUG, keeps the kernel's warnings off the console too, leaving
/// its errors: for a pod, whose log is the workload's (a TCG guest's clock
/// warnings would otherwise join it).
pub fn quiet_kernel(level: LogLevel) {
    const KERN_ERR_AND_ABOVE: libc::c_int = 4;
    if level < LogLevel::Debug {
        set_console_level(KERN_ERR_AND_ABOVE);
    }
}

/// The kernel prints on the console what is more urgent than `level`.
fn set_console_level(level: libc::c_int) {
    const SYSLOG_ACTION_CONSOLE_LEVEL: libc::c_int = 8;
    // SAFETY: this klogctl action reads no buffer; it only sets a level.
    unsafe {
        libc::klogctl(SYSLOG_ACTION_CONSOLE_LEVEL, std::ptr::null_mut(), level);
    }
}

/// Marks where init's lines end and the kernel's shutdown lines begin; see
/// [`CONSOLE_HANDBACK`].
pub fn hand_back() {
    let _ = std::io::stderr().lock().write_all(CONSOLE_HANDBACK.as_bytes());
}
