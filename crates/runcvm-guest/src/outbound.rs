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

/// Guest init's lines about one container (its volumes' ✓ and ✗, why it
/// could not be made): on the console, as every line of init's; and, for a
/// container other than the launcher's own (container 0, whose launcher
/// shows the console in its log), on the container's own stderr too, where
/// `kubectl logs` shows them: a pod VM's console is the pod's, not the
/// container's.
#[derive(Clone)]
pub struct ContainerNotes {
    writer: SharedWriter,
    session: Option<u32>,
}

impl ContainerNotes {
    pub fn for_container(writer: &SharedWriter, container: u32) -> Self {
        Self {
            writer: Arc::clone(writer),
            session: (container != runcvm_proto::WORKLOAD_SESSION).then_some(container),
        }
    }

    pub fn note(&self, level: runcvm_log::LogLevel, message: std::fmt::Arguments<'_>) {
        runcvm_log::write(level, message);
        if let (Some(session), true) = (self.session, runcvm_log::enabled(level)) {
            let line = runcvm_log::line(level, message);
            if let Ok(mut port) = self.writer.lock() {
                // Outside the session's window, as a refusal's line: a few
                // lines before its process starts.
                let _ = runcvm_proto::write_data(&mut *port, session, runcvm_proto::Stream::Stderr, line.as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek};

    #[test]
    fn an_attached_containers_notes_reach_its_stderr_and_container_0s_stay_on_the_console() {
        let file = tempfile::tempfile().unwrap();
        let writer: SharedWriter = Arc::new(Mutex::new(file.try_clone().unwrap()));
        ContainerNotes::for_container(&writer, runcvm_proto::WORKLOAD_SESSION).note(
            runcvm_log::LogLevel::Error,
            format_args!("✗ Failed to mount /a via NFS: x"),
        );
        ContainerNotes::for_container(&writer, 3).note(
            runcvm_log::LogLevel::Error,
            format_args!("✗ Failed to mount /b via NFS: y"),
        );
        let mut bytes = Vec::new();
        let mut read = file;
        read.rewind().unwrap();
        read.read_to_end(&mut bytes).unwrap();
        let mut reader = bytes.as_slice();
        let Some(runcvm_proto::Frame::Data { session, stream, bytes }) =
            runcvm_proto::read_frame::<runcvm_proto::HostMessage>(&mut reader).unwrap()
        else {
            panic!("a data frame");
        };
        assert_eq!((session, stream), (3, runcvm_proto::Stream::Stderr));
        assert!(
            String::from_utf8(bytes)
                .unwrap()
                .ends_with("✗ Failed to mount /b via NFS: y\n")
        );
        assert!(reader.is_empty(), "container 0's line went to the console alone");
    }
}
