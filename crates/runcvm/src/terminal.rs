//! The launcher's own terminal, when the workload or an exec session has one
//! in the guest: its size travels to the guest, and it is put in raw mode so
//! keys reach the guest's terminal as typed (restored on drop).

use nix::sys::termios::{self, SetArg, Termios};
use std::os::fd::AsFd;

/// The size the guest's terminal gets when ours is not a terminal.
pub const DEFAULT_SIZE: (u16, u16) = (24, 80);

/// Rows and columns of stdin's terminal, if stdin is one.
pub fn stdin_size() -> Option<(u16, u16)> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes into the valid winsize above.
    let ok = unsafe { libc::ioctl(libc::STDIN_FILENO, libc::TIOCGWINSZ, &raw mut size) } == 0;
    (ok && size.ws_row > 0 && size.ws_col > 0).then_some((size.ws_row, size.ws_col))
}

/// Our terminal's size for the guest's, or the default.
pub fn current_size() -> runcvm_proto::TerminalSize {
    let (rows, cols) = stdin_size().unwrap_or(DEFAULT_SIZE);
    runcvm_proto::TerminalSize { rows, cols }
}

/// Raw mode on stdin while it lives.
#[derive(Debug)]
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// `None` when stdin is not a terminal (nothing to do).
    pub fn on_stdin() -> Option<Self> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(Self { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}
