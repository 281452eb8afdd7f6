//! The output of a session's process (the workload's stdout and stderr, an
//! exec's), each stream pumped from its pipe into data frames on the
//! control channel, so the launcher passes them on apart and byte-exact
//! (Kubernetes records each line's stream). The serial console keeps the
//! kernel's and init's lines.
//!
//! A pump sends no more than its session's window allows (`flow`): when the
//! launcher's consumer of the session stops reading, the pump stops too,
//! the pipe fills, and the process blocks on its writes, as under runc; the
//! other sessions go on.

use crate::outbound::SharedWriter;
use runcvm_proto::flow::Window;
use runcvm_proto::{MAX_DATA, Stream};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Copies `pipe` to the control channel, within `window`, until every
/// writer has closed it or the session's window closes.
pub fn pump(pipe: OwnedFd, session: u32, stream: Stream, writer: SharedWriter, window: Arc<Window>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut pipe = std::fs::File::from(pipe);
        let mut buf = vec![0u8; MAX_DATA];
        loop {
            let n = match pipe.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            // Credit is taken for what was read, so an idle stream never
            // holds the window its session's other stream needs.
            let mut sent = 0;
            while sent < n {
                let Some(allowed) = window.take(n - sent) else { return };
                let Ok(mut port) = writer.lock() else { return };
                if runcvm_proto::write_data(&mut *port, session, stream, &buf[sent..sent + allowed]).is_err() {
                    return;
                }
                sent += allowed;
            }
        }
    })
}
