//! The guest end of the control channel: under QEMU the virtio-serial port
//! named `runcvm.ctl`, found by name because port numbers depend on device
//! order; under Firecracker, which has no virtio-serial, a vsock connection
//! to the host (CID 2) on port 1024.

use crate::outbound::{SharedWriter, send_on};
use crate::pod::{NewContainer, Pod};
use anyhow::Context;
use runcvm_proto::{Frame, GuestMessage, HostMessage, Stream};
use runcvm_spec::{CONTROL_PORT_NAME, CONTROL_VSOCK_PORT};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

const PORTS: &str = "/sys/class/virtio-ports";

#[derive(Debug)]
pub struct ControlPort {
    file: File,
    writer: SharedWriter,
}

impl ControlPort {
    pub fn open() -> anyhow::Result<Self> {
        let file = match find_port(Path::new(PORTS)) {
            Ok(device) => {
                runcvm_log::debug!("control channel on {}", device.display());
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&device)
                    .with_context(|| format!("cannot open the control port {}", device.display()))?
            }
            Err(serial) => {
                let socket = connect_to_host().map_err(|vsock| {
                    anyhow::anyhow!(
                        "the VMM attached no control channel: {serial:#}; and no vsock connection to the host on port {CONTROL_VSOCK_PORT} ({vsock})"
                    )
                })?;
                runcvm_log::debug!("control channel on vsock port {CONTROL_VSOCK_PORT}");
                socket
            }
        };
        let writer = Arc::new(Mutex::new(file.try_clone().context("cannot share the control port")?));
        Ok(Self { file, writer })
    }

    pub fn send(&self, message: &GuestMessage) -> anyhow::Result<()> {
        send_on(&self.writer, message)
    }

    /// The writing half, for threads that send output.
    pub fn writer(&self) -> SharedWriter {
        Arc::clone(&self.writer)
    }

    /// Serves the launcher from a thread of its own once the pod is set
    /// up: containers are created, signals go to a container's or an exec's
    /// process, exec sessions and port-forward connections start, their
    /// input is fed, and the VM powers off when the launcher says, or when
    /// it is gone.
    pub fn serve_launcher(&self, pod: Arc<Pod>) -> anyhow::Result<()> {
        let mut reader = self.file.try_clone().context("cannot share the control port")?;
        std::thread::Builder::new().name("launcher".into()).spawn(move || {
            let sessions = pod.sessions();
            loop {
                let message = match runcvm_proto::read_frame::<HostMessage>(&mut reader) {
                    Ok(Some(Frame::Message(message))) => message,
                    Ok(Some(Frame::Data {
                        session,
                        stream: Stream::Stdin,
                        bytes,
                    })) => {
                        sessions.stdin(session, bytes);
                        continue;
                    }
                    Ok(Some(other)) => {
                        runcvm_log::warn!("unexpected control frame {other:?}");
                        continue;
                    }
                    Ok(None) => {
                        runcvm_log::error!("the launcher closed the control channel; powering off");
                        pod.power_off();
                    }
                    Err(e) => {
                        runcvm_log::error!("{:#}; powering off", anyhow::Error::from(e));
                        pod.power_off();
                    }
                };
                match message {
                    HostMessage::CreateContainer {
                        container,
                        name,
                        plan,
                        entrypoint,
                        files,
                        root,
                        volumes,
                        stdin,
                        terminal_size,
                    } => pod.create(NewContainer {
                        id: container,
                        name,
                        plan,
                        entrypoint,
                        files,
                        root,
                        volumes,
                        stdin,
                        terminal_size,
                    }),
                    HostMessage::PowerOff => pod.power_off(),
                    HostMessage::Signal { signal, session } => match nix::sys::signal::Signal::try_from(signal) {
                        Ok(signal) => pod.signal(session, signal),
                        Err(_) => runcvm_log::warn!("the launcher sent unknown signal {signal}"),
                    },
                    HostMessage::KillSession { session } => pod.kill_session(session),
                    // The launcher resolves a client's container name.
                    HostMessage::Exec {
                        session,
                        container,
                        process,
                        terminal_size,
                        ..
                    } => pod.exec(session, container, process, terminal_size),
                    HostMessage::Connect { session, port, ipv6 } => sessions.connect(session, port, ipv6),
                    HostMessage::CloseStdin { session } => sessions.close_stdin(session),
                    HostMessage::Credit { session, bytes } => sessions.credit(session, bytes),
                    HostMessage::Resize { session, rows, cols } => sessions.resize(session, rows, cols),
                    HostMessage::Start { .. } => runcvm_log::warn!("the launcher sent Start twice"),
                    HostMessage::FollowConsole => runcvm_log::warn!("the launcher passed on a client's FollowConsole"),
                }
            }
        })?;
        Ok(())
    }

    /// Waits for the launcher's next message.
    pub fn receive(&mut self) -> anyhow::Result<HostMessage> {
        // Only `Start` comes first: the launcher sends nothing else before
        // it (signals before then stop the VM on the host side).
        runcvm_proto::read_message(&mut self.file)
            .context("cannot read from the control channel")?
            .context("the launcher closed the control channel")
    }
}

/// A stream to the host's end of vsock (Firecracker's hybrid vsock hands
/// it to the launcher as a Unix connection).
fn connect_to_host() -> nix::Result<File> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, VsockAddr, connect, socket};
    /// The host's context id in every vsock.
    const HOST_CID: u32 = 2;
    let socket = socket(AddressFamily::Vsock, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    connect(
        std::os::fd::AsRawFd::as_raw_fd(&socket),
        &VsockAddr::new(HOST_CID, CONTROL_VSOCK_PORT),
    )?;
    Ok(File::from(socket))
}

/// The `/dev` node of the port whose `name` is [`CONTROL_PORT_NAME`].
fn find_port(sysfs: &Path) -> anyhow::Result<PathBuf> {
    let entries = std::fs::read_dir(sysfs).with_context(|| {
        format!(
            "no virtio-serial ports at {} (is CONFIG_VIRTIO_CONSOLE built in?)",
            sysfs.display()
        )
    })?;
    for entry in entries.flatten() {
        let name = std::fs::read_to_string(entry.path().join("name")).unwrap_or_default();
        if name.trim() == CONTROL_PORT_NAME {
            return Ok(Path::new("/dev").join(entry.file_name()));
        }
    }
    anyhow::bail!(
        "no virtio-serial port named {CONTROL_PORT_NAME} under {}: the VMM did not attach the control channel",
        sysfs.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_port_by_name_not_number() {
        let sysfs = tempfile::tempdir().unwrap();
        for (dir, name) in [("vport0p0", ""), ("vport0p1", "other"), ("vport1p1", CONTROL_PORT_NAME)] {
            std::fs::create_dir(sysfs.path().join(dir)).unwrap();
            std::fs::write(sysfs.path().join(dir).join("name"), format!("{name}\n")).unwrap();
        }
        assert_eq!(find_port(sysfs.path()).unwrap(), Path::new("/dev/vport1p1"));
        std::fs::write(sysfs.path().join("vport1p1/name"), "x\n").unwrap();
        let err = find_port(sysfs.path()).unwrap_err().to_string();
        assert!(err.contains("no virtio-serial port named runcvm.ctl"), "{err}");
    }
}
