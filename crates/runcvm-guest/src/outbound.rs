//! The control channel's writing half, shared by every thread that sends
//! (the control loop, exec sessions, output pumps): a leaf, so the modules
//! that send depend on it and not on one another.

use anyhow::Context;
use runcvm_proto::GuestMessage;
use std::fs::File;
use std::sync::{Arc, Mutex};

/// The port's writing half, shared: every frame is one write under the
/// lock, so messages and output data never interleave.
pub type SharedWriter = Arc<Mutex<File>>;

/// Sends one message under the writer's lock.
pub fn send_on(writer: &SharedWriter, message: &GuestMessage) -> anyhow::Result<()> {
    let mut file = writer
        .lock()
        .map_err(|_| anyhow::anyhow!("the control port's writer was poisoned"))?;
    runcvm_proto::write_message(&mut *file, message).context("cannot write to the control channel")
}
