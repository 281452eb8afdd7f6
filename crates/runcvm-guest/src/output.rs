//! The workload's stdout and stderr, each pumped from its pipe into data
//! frames on the control channel, so the launcher writes them to its own
//! stdout and stderr apart and byte-exact (Kubernetes records each line's
//! stream). The serial console keeps the kernel's and init's lines.

use crate::control::SharedWriter;
use runcvm_proto::{MAX_DATA, Stream};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::thread::JoinHandle;

/// Copies `pipe` to the control channel until every writer has closed it.
pub fn pump(pipe: OwnedFd, session: u32, stream: Stream, writer: SharedWriter) -> JoinHandle<()> {
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
            let Ok(mut port) = writer.lock() else { return };
            if runcvm_proto::write_data(&mut *port, session, stream, &buf[..n]).is_err() {
                return;
            }
        }
    })
}
