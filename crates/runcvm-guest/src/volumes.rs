//! The container's volumes, mounted over NFS from 169.254.1.254 at their
//! container paths (troubleshooting.md, Volumes), with the kernel's NFS
//! client through mount(2): no mount helper in the image is needed.

use crate::outbound::ContainerNotes;
use nix::errno::Errno;
use nix::mount::{MsFlags, mount};
use runcvm_spec::GuestVolume;
use runcvm_spec::net::HOST_IDENTITY_IP;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long a mount is retried while the server is not answering yet.
const MOUNT_RETRY: Duration = Duration::from_secs(10);
/// Seconds attributes are cached: a change on the host is seen in the guest
/// within this time (kubelet's ConfigMap and Secret updates included).
pub const ATTRIBUTE_CACHE_SECS: u32 = 1;

/// The mount(2) data for one volume.
pub fn options(volume: &GuestVolume) -> String {
    let port = volume.port;
    format!(
        "vers=3,proto=tcp,nolock,port={port},mountport={port},mountproto=tcp,addr={HOST_IDENTITY_IP},\
         mountaddr={HOST_IDENTITY_IP},actimeo={ATTRIBUTE_CACHE_SECS},timeo=50,retrans=2"
    )
}

/// Mounts every volume; the first that fails ends the start with the guide's
/// line, so the workload never sees an empty folder where its data should be.
pub fn mount_all(volumes: &[GuestVolume], notes: &ContainerNotes) -> anyhow::Result<()> {
    use runcvm_log::LogLevel;
    for volume in volumes {
        match mount_one(volume) {
            Ok(()) => notes.note(LogLevel::Info, format_args!("✓ Mounted {} (NFS)", volume.path)),
            Err(cause) => {
                notes.note(
                    LogLevel::Error,
                    format_args!("✗ Failed to mount {} via NFS: {cause}", volume.path),
                );
                if !volume.optional {
                    anyhow::bail!(
                        "volume {} is not available, so the workload is not started (RUNCVM_VOLUME_FAILURE=continue starts it anyway)",
                        volume.path
                    );
                }
                notes.note(
                    LogLevel::Warn,
                    format_args!(
                        "starting the workload without {} (RUNCVM_VOLUME_FAILURE=continue)",
                        volume.path
                    ),
                );
            }
        }
    }
    Ok(())
}

fn mount_one(volume: &GuestVolume) -> Result<(), String> {
    std::fs::create_dir_all(&volume.path).map_err(|e| format!("cannot create the mount point: {e}"))?;
    let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if volume.read_only {
        flags |= MsFlags::MS_RDONLY;
    }
    mount_export(&volume.path, &volume.path, flags, &options(volume), volume.port)
}

/// Mounts the export `name` of the server on `port` at `target`, retrying
/// while the server does not answer yet; the error says why, with what a
/// direct connection to the server says.
pub fn mount_export(name: &str, target: &str, flags: MsFlags, data: &str, port: u16) -> Result<(), String> {
    let source = format!("{HOST_IDENTITY_IP}:{name}");
    runcvm_log::debug!("mount -t nfs -o {data} {source} {target}");
    let deadline = Instant::now() + MOUNT_RETRY;
    loop {
        match mount(Some(source.as_str()), target, Some("nfs"), flags, Some(data)) {
            Ok(()) => return Ok(()),
            Err(
                errno @ (Errno::ECONNREFUSED
                | Errno::ETIMEDOUT
                | Errno::EHOSTUNREACH
                | Errno::ENETUNREACH
                | Errno::EAGAIN),
            ) if Instant::now() < deadline => {
                runcvm_log::debug!("mount of {target} failed ({errno}); retrying");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(errno) => return Err(format!("{} ({})", errno.desc(), probe(port))),
        }
    }
}

/// What a direct connection to the server says, to tell a network problem
/// from a refused mount.
fn probe(port: u16) -> String {
    let server = SocketAddr::from((HOST_IDENTITY_IP, port));
    match TcpStream::connect_timeout(&server, Duration::from_secs(1)) {
        Ok(_) => format!("the server at {server} accepts connections"),
        Err(e) => format!("the server at {server} is unreachable: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_name_the_host_identity_and_one_port() {
        let volume = GuestVolume {
            path: "/data".into(),
            read_only: false,
            port: 20049,
            optional: false,
        };
        assert_eq!(
            options(&volume),
            "vers=3,proto=tcp,nolock,port=20049,mountport=20049,mountproto=tcp,addr=169.254.1.254,\
             mountaddr=169.254.1.254,actimeo=1,timeo=50,retrans=2"
        );
    }
}
