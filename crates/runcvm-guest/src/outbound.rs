//! The control channel's writing half, shared by every thread that sends
//! (the control loop, exec sessions, output pumps): a leaf, so the modules
//! that send depend on it and not on one another.

use anyhow::Context;
use runcvm_log::LogLevel;
use runcvm_proto::GuestMessage;
use runcvm_proto::flow::Window;
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
/// could not be made, the `[VM-START]` runner's): on the console at init's
/// level, as every line of init's; and, for a container other than the
/// launcher's own (container 0, whose launcher shows the console in its
/// log), on the container's own stderr too, where `kubectl logs` shows
/// them, at the container's own level (its `RUNCVM_LOG_LEVEL`, where it is
/// more than init's): a pod VM's console is the pod's, not the container's.
#[derive(Clone)]
pub struct ContainerNotes {
    writer: SharedWriter,
    /// The container's session and its window, which its notes take from
    /// as its output does (the launcher credits every byte it hands on).
    session: Option<(u32, Arc<Window>)>,
    /// The most the container's stderr gets.
    level: LogLevel,
}

/// The runner's name on its lines (the guide's `runcvm-vm-start`).
pub const RUNNER: &str = "[VM-START]";

impl ContainerNotes {
    /// Notes about `container`, whose session's window is `window`, at the
    /// level its own env asks for (`wanted`) or init's, whichever says more.
    pub fn for_container(writer: &SharedWriter, container: u32, window: Arc<Window>, wanted: Option<LogLevel>) -> Self {
        Self {
            writer: Arc::clone(writer),
            session: (container != runcvm_proto::WORKLOAD_SESSION).then_some((container, window)),
            level: wanted.map_or(runcvm_log::level(), |wanted| wanted.max(runcvm_log::level())),
        }
    }

    /// One of guest init's lines about the container.
    pub fn note(&self, level: LogLevel, message: std::fmt::Arguments<'_>) {
        self.note_as(None, level, message);
    }

    /// One of the `[VM-START]` runner's lines about the container.
    pub fn runner(&self, level: LogLevel, message: std::fmt::Arguments<'_>) {
        self.note_as(Some(RUNNER), level, message);
    }

    fn note_as(&self, component: Option<&str>, level: LogLevel, message: std::fmt::Arguments<'_>) {
        runcvm_log::write_as(component, level, message);
        let Some((session, window)) = self.session.as_ref().filter(|_| level <= self.level) else {
            return;
        };
        let line = runcvm_log::line_as(component, level, message);
        let mut needed = line.len();
        while needed > 0 {
            match window.take(needed) {
                Some(taken) => needed -= taken,
                // The session is over: nobody reads its stderr.
                None => return,
            }
        }
        if let Ok(mut port) = self.writer.lock() {
            let _ = runcvm_proto::write_data(&mut *port, *session, runcvm_proto::Stream::Stderr, line.as_bytes());
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
        let window = Arc::new(Window::default());
        let of = |container| ContainerNotes::for_container(&writer, container, Arc::clone(&window), None);
        of(runcvm_proto::WORKLOAD_SESSION).note(
            runcvm_log::LogLevel::Error,
            format_args!("✗ Failed to mount /a via NFS: x"),
        );
        of(3).note(
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

    #[test]
    fn a_container_at_debug_gets_the_runners_debug_lines_and_one_at_info_does_not() {
        let file = tempfile::tempfile().unwrap();
        let writer: SharedWriter = Arc::new(Mutex::new(file.try_clone().unwrap()));
        let window = Arc::new(Window::default());
        let loaded = format_args!("runcvm-vm-start loaded /.runcvm/entrypoint");
        ContainerNotes::for_container(&writer, 4, Arc::clone(&window), None).runner(LogLevel::Debug, loaded);
        ContainerNotes::for_container(&writer, 5, Arc::clone(&window), Some(LogLevel::Debug))
            .runner(LogLevel::Debug, loaded);
        let mut bytes = Vec::new();
        let mut read = file;
        read.rewind().unwrap();
        read.read_to_end(&mut bytes).unwrap();
        let mut reader = bytes.as_slice();
        let Some(runcvm_proto::Frame::Data { session, bytes, .. }) =
            runcvm_proto::read_frame::<runcvm_proto::HostMessage>(&mut reader).unwrap()
        else {
            panic!("a data frame");
        };
        assert_eq!(session, 5, "the container at INFO got nothing");
        assert!(
            String::from_utf8(bytes)
                .unwrap()
                .ends_with("[VM-START] DEBUG: runcvm-vm-start loaded /.runcvm/entrypoint\n")
        );
        assert!(reader.is_empty());
        assert_eq!(
            window.take(usize::MAX),
            Some(
                runcvm_proto::flow::WINDOW as usize
                    - "[VM-START] DEBUG: runcvm-vm-start loaded /.runcvm/entrypoint\n".len()
            ),
            "the line's bytes came out of the session's window"
        );
    }
}
