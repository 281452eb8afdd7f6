//! The container's shared mounts, served to the guest over NFS on the host
//! identity 169.254.1.254 (troubleshooting.md, Volumes).

use runcvm_nfs::{Export, NfsError};
use runcvm_spec::GuestVolume;
use runcvm_spec::net::HOST_IDENTITY_IP;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::mpsc::Receiver;

/// Why the volumes cannot be set up: a setting, a `--volume` list, a file
/// to copy in, or the NFS server. The causes follow the message on the log
/// line (`runcvm_log::error_chain`).
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// RUNCVM_VOLUME_FAILURE={value:?} is not fail or continue (the value
    /// lower-cased)
    #[error("{VOLUME_FAILURE_ENV}={value:?} is not fail or continue")]
    FailureSetting { value: String },
    /// two volumes at {path}: give each container path once
    #[error("two volumes at {path}: give each container path once")]
    SamePath { path: String },
    /// cannot read {host} to copy it to {path}
    #[error("cannot read {host} to copy it to {path}")]
    ReadCopied {
        host: PathBuf,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// {host} is too large to copy in at boot ({bytes} bytes; single files
    /// may hold MAX_COPIED_BYTES bytes in all): share its folder as a volume
    /// instead
    #[error(
        "{host} is too large to copy in at boot ({bytes} bytes; single files may hold {MAX_COPIED_BYTES} bytes in all): \
         share its folder as a volume instead"
    )]
    TooLargeToCopy { host: PathBuf, bytes: usize },
    /// cannot listen for NFS on 169.254.1.254 (troubleshooting.md, Volumes):
    /// is br-eth0 up?
    #[error("cannot listen for NFS on {HOST_IDENTITY_IP} (troubleshooting.md, Volumes): is br-eth0 up?")]
    Listen(#[source] std::io::Error),
    /// the NFS server did not start (its own message)
    #[error(transparent)]
    Serve(#[from] NfsError),
}

/// What the guest mounts, and the server's report should it stop.
#[derive(Debug, Default)]
pub struct Served {
    pub volumes: Vec<GuestVolume>,
    pub stopped: Option<Receiver<String>>,
}

/// `fail` (default) or `continue`: whether a volume the guest cannot mount
/// stops the start or is left empty with the failure logged.
pub const VOLUME_FAILURE_ENV: &str = "RUNCVM_VOLUME_FAILURE";

/// What `--volume` names: a shared folder, or a single file copied into the
/// guest at boot (changes to it on the host after the start are not seen);
/// a writable one is copied back when the workload ends (a termination
/// message file, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeSpec {
    Shared(Export),
    Copied {
        host: std::path::PathBuf,
        path: String,
        writable: bool,
    },
}

/// Whether a failed mount may be skipped, from the `RUNCVM_VOLUME_FAILURE`
/// value.
pub fn failure_is_optional(value: Option<&str>) -> Result<bool, VolumeError> {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("" | "fail") => Ok(false),
        Some("continue") => Ok(true),
        Some(other) => Err(VolumeError::FailureSetting {
            value: other.to_owned(),
        }),
    }
}

/// How much copied single files may hold in all: they travel in the start
/// message, whose frames hold at most 1 MiB (and bytes that are not UTF-8
/// take twice their size in it).
pub const MAX_COPIED_BYTES: usize = 400 << 10;

/// The folders to serve (outer before nested, so mounts stack as the paths
/// say), and the single files read now to be copied in.
pub fn split(specs: &[VolumeSpec]) -> Result<(Vec<Export>, Vec<runcvm_proto::GuestFile>), VolumeError> {
    let mut exports: Vec<Export> = Vec::new();
    let mut copies = Vec::new();
    let mut paths = std::collections::HashSet::new();
    let mut copied = 0;
    for spec in specs {
        let path = match spec {
            VolumeSpec::Shared(export) => export.name.as_str(),
            VolumeSpec::Copied { path, .. } => path.as_str(),
        };
        if !paths.insert(path.to_owned()) {
            return Err(VolumeError::SamePath { path: path.to_owned() });
        }
        match spec {
            VolumeSpec::Shared(export) => exports.push(export.clone()),
            VolumeSpec::Copied { host, path, writable } => {
                let content = std::fs::read(host).map_err(|source| VolumeError::ReadCopied {
                    host: host.clone(),
                    path: path.clone(),
                    source,
                })?;
                let mode = std::fs::metadata(host)
                    .ok()
                    .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777);
                copied += content.len();
                if copied > MAX_COPIED_BYTES {
                    return Err(VolumeError::TooLargeToCopy {
                        host: host.clone(),
                        bytes: content.len(),
                    });
                }
                copies.push(runcvm_proto::GuestFile {
                    path: path.clone(),
                    content: content.into(),
                    writable: *writable,
                    mode,
                });
            }
        }
    }
    exports.sort_by_key(|e| e.name.matches('/').count());
    Ok((exports, copies))
}

/// Starts the server for `exports` (none: no server). The port is chosen by
/// the kernel.
pub fn serve(
    exports: &[Export],
    optional: bool,
    guest: Option<&runcvm_spec::GuestNetwork>,
    ids: Option<runcvm_nfs::KnownIds>,
    id_map: Option<runcvm_nfs::IdMap>,
) -> Result<Served, VolumeError> {
    if exports.is_empty() {
        return Ok(Served::default());
    }
    let address = SocketAddr::from((HOST_IDENTITY_IP, 0));
    let listener = TcpListener::bind(address).map_err(VolumeError::Listen)?;
    let peers = runcvm_nfs::Peers {
        addresses: guest
            .map(|g| g.addresses.iter().map(|a| a.ip).collect())
            .unwrap_or_default(),
        privileged_port: true,
        ids,
        id_map,
    };
    let server = runcvm_nfs::serve(listener, exports.to_vec(), peers)?;
    runcvm_log::debug!("NFS server on {} for {} volumes", server.address, exports.len());
    let volumes = exports
        .iter()
        .map(|e| GuestVolume {
            path: e.name.clone(),
            read_only: e.read_only,
            port: server.address.port(),
            optional,
        })
        .collect();
    Ok(Served {
        volumes,
        stopped: Some(server.stopped),
    })
}

/// Serves `folder` as the container's root (the export `/`) on a server of
/// its own, and adds its report to `served`'s. Its callers are not
/// squashed: guest init sets the container up as root (mount points, the
/// pod's files), and what guest root writes reaches only this container's
/// writable layer (the image's layers are below the node's overlay, never
/// written). The ids pass as they are: in a pod with its own user
/// namespace the guest maps them, as it does for an image on a root disk.
pub fn serve_root(
    folder: &std::path::Path,
    guest: &runcvm_spec::GuestNetwork,
    served: &mut Served,
) -> Result<runcvm_spec::GuestRoot, VolumeError> {
    let listener = TcpListener::bind(SocketAddr::from((HOST_IDENTITY_IP, 0))).map_err(VolumeError::Listen)?;
    let peers = runcvm_nfs::Peers {
        addresses: guest.addresses.iter().map(|a| a.ip).collect(),
        privileged_port: true,
        ids: None,
        id_map: None,
    };
    let export = Export {
        name: "/".to_owned(),
        path: folder.to_owned(),
        read_only: false,
    };
    let server = runcvm_nfs::serve(listener, vec![export], peers)?;
    runcvm_log::debug!(
        "NFS server on {} for the container's root {}",
        server.address,
        folder.display()
    );
    served.stopped = Some(match served.stopped.take() {
        None => server.stopped,
        Some(volumes) => first_report(volumes, server.stopped),
    });
    Ok(runcvm_spec::GuestRoot {
        port: server.address.port(),
    })
}

/// One receiver for the first report of either server.
fn first_report(a: Receiver<String>, b: Receiver<String>) -> Receiver<String> {
    let (report, first) = std::sync::mpsc::channel();
    for source in [a, b] {
        let report = report.clone();
        let forwarded = std::thread::Builder::new().name("nfs-report".into()).spawn(move || {
            if let Ok(reason) = source.recv() {
                let _ = report.send(reason);
            }
        });
        if let Err(e) = forwarded {
            runcvm_log::warn!("cannot watch an NFS server: {e}");
        }
    }
    first
}

/// Writes the writable single files the guest sent back at its end to
/// their host files, where they changed. Only files named by `specs` are
/// written: the guest names paths, and the guest is not trusted to name
/// any other.
pub fn write_back(specs: &[VolumeSpec], files: &[runcvm_proto::GuestFile]) {
    for file in files {
        let host = specs.iter().find_map(|spec| match spec {
            VolumeSpec::Copied {
                host,
                path,
                writable: true,
            } if *path == file.path => Some(host),
            _ => None,
        });
        let Some(host) = host else {
            runcvm_log::warn!(
                "the guest sent back {}, which is no writable file volume: ignored",
                file.path
            );
            continue;
        };
        if std::fs::read(host).is_ok_and(|now| now == file.content.as_bytes()) {
            continue;
        }
        match std::fs::write(host, file.content.as_bytes()) {
            Ok(()) => runcvm_log::debug!("{} written back from the guest", host.display()),
            Err(e) => runcvm_log::warn!("cannot write {} back from the guest: {e}", host.display()),
        }
    }
}

/// The volumes' id mapping for a pod with its own user namespace: what an
/// id-mapped mount of the pod's would show (`runcvm_nfs::IdMap`).
pub fn id_map(userns: &runcvm_spec::UserNamespace) -> runcvm_nfs::IdMap {
    let ranges = |mappings: &[runcvm_spec::IdMapping]| {
        mappings
            .iter()
            .map(|m| runcvm_nfs::IdRange {
                node: m.container_id,
                client: m.host_id,
                size: m.size,
            })
            .collect()
    };
    runcvm_nfs::IdMap {
        uids: ranges(&userns.uid_mappings),
        gids: ranges(&userns.gid_mappings),
    }
}

/// Whether anything is mounted below `folder` in this mount namespace.
pub fn has_mounts_below(folder: &std::path::Path) -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mount_points_below(&mountinfo, folder)
}

fn mount_points_below(mountinfo: &str, folder: &std::path::Path) -> bool {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        // Octal escapes (a space is \040) do not matter for a prefix test
        // of a path that has none; a path with them compares unescaped.
        .map(|point| point.replace("\\040", " "))
        .any(|point| {
            let point = std::path::Path::new(&point);
            point != folder && point.starts_with(folder)
        })
}

/// Parses `HOST:GUEST[:ro]`; a host file (not a folder) is copied at boot.
pub fn parse_volume(spec: &str) -> Result<VolumeSpec, String> {
    let bad = || format!("--volume {spec:?} is not HOST_PATH:CONTAINER_PATH[:ro]");
    let mut parts = spec.split(':');
    let (host, guest) = (parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?);
    let read_only = match parts.next() {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(_) => return Err(bad()),
    };
    if parts.next().is_some() || !guest.starts_with('/') || guest == "/" || host.is_empty() {
        return Err(bad());
    }
    let path = std::path::PathBuf::from(host);
    if path.is_file() {
        // `runcvm run` hands a file in and never writes the host's back:
        // only a Kubernetes container's writable file volumes go back.
        return Ok(VolumeSpec::Copied {
            host: path,
            path: guest.to_owned(),
            writable: false,
        });
    }
    if !path.is_dir() {
        return Err(format!(
            "--volume {spec:?}: {host} is neither a folder nor a file on the host"
        ));
    }
    Ok(VolumeSpec::Shared(Export {
        name: guest.trim_end_matches('/').to_owned(),
        path,
        read_only,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_specs_parse_and_bad_ones_are_named() {
        let VolumeSpec::Shared(export) = parse_volume("/tmp:/data:ro").unwrap() else {
            panic!("a folder is shared")
        };
        assert_eq!((export.name.as_str(), export.read_only), ("/data", true));
        assert!(matches!(
            parse_volume("/tmp:/data").unwrap(),
            VolumeSpec::Shared(Export { read_only: false, .. })
        ));
        assert!(matches!(
            parse_volume("/etc/hostname:/etc/name").unwrap(),
            VolumeSpec::Copied { .. }
        ));
        for bad in ["/tmp", "/tmp:data", "/tmp:/", "/tmp:/d:rx", ":/d", "/tmp:/d:ro:x"] {
            assert!(parse_volume(bad).is_err(), "{bad}");
        }
        assert!(
            parse_volume("/nonexistent:/d")
                .unwrap_err()
                .contains("neither a folder nor a file")
        );
    }

    #[test]
    fn mounts_below_a_volume_are_found_and_the_volume_itself_is_not_one() {
        let mountinfo = "22 1 8:1 / / rw - ext4 /dev/vda rw\n\
                         30 22 0:40 / /mnt rw - tmpfs none rw\n\
                         31 30 0:41 / /mnt/tmpfs rw - tmpfs none rw\n\
                         32 22 0:42 / /mnt2 ro - tmpfs none rw\n";
        assert!(mount_points_below(mountinfo, std::path::Path::new("/mnt")));
        assert!(!mount_points_below(mountinfo, std::path::Path::new("/mnt2")));
        assert!(!mount_points_below(mountinfo, std::path::Path::new("/mnt/tmpfs")));
    }

    #[test]
    fn only_writable_file_volumes_are_written_back_and_only_when_changed() {
        let dir = tempfile::tempdir().unwrap();
        let (log, secret) = (dir.path().join("termination-log"), dir.path().join("token"));
        std::fs::write(&log, b"").unwrap();
        std::fs::write(&secret, b"s3cret").unwrap();
        let specs = [
            VolumeSpec::Copied {
                host: log.clone(),
                path: "/dev/termination-log".into(),
                writable: true,
            },
            VolumeSpec::Copied {
                host: secret.clone(),
                path: "/var/run/token".into(),
                writable: false,
            },
        ];
        let sent = |path: &str, content: &str| runcvm_proto::GuestFile {
            path: path.into(),
            content: content.as_bytes().to_vec().into(),
            writable: true,
            mode: None,
        };
        write_back(
            &specs,
            &[
                sent("/dev/termination-log", "done: 42 rows"),
                sent("/var/run/token", "forged"),
                sent("/etc/passwd", "forged"),
            ],
        );
        assert_eq!(std::fs::read(&log).unwrap(), b"done: 42 rows");
        assert_eq!(
            std::fs::read(&secret).unwrap(),
            b"s3cret",
            "a read-only volume is never written"
        );
    }

    #[test]
    fn single_files_too_large_to_copy_and_repeated_paths_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; MAX_COPIED_BYTES + 1]).unwrap();
        let err = split(&[VolumeSpec::Copied {
            host: big,
            path: "/big".into(),
            writable: false,
        }])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("too large to copy in at boot") && err.contains("share its folder"),
            "{err}"
        );
        let twice = [parse_volume("/tmp:/d").unwrap(), parse_volume("/tmp:/d:ro").unwrap()];
        assert!(split(&twice).unwrap_err().to_string().contains("two volumes at /d"));
    }

    #[test]
    fn errors_read_as_the_log_line_says_them() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        let err = split(&[VolumeSpec::Copied {
            host: gone.clone(),
            path: "/etc/gone".into(),
            writable: false,
        }])
        .unwrap_err();
        let cause = std::fs::read(&gone).unwrap_err();
        assert_eq!(
            runcvm_log::error_chain(&err),
            format!("cannot read {} to copy it to /etc/gone: {cause}", gone.display())
        );
        assert_eq!(
            failure_is_optional(Some(" Maybe ")).unwrap_err().to_string(),
            "RUNCVM_VOLUME_FAILURE=\"maybe\" is not fail or continue"
        );
        assert!(failure_is_optional(Some("CONTINUE")).unwrap());
        let listen = VolumeError::Listen(std::io::Error::from_raw_os_error(libc::EADDRNOTAVAIL));
        assert_eq!(
            runcvm_log::error_chain(&listen),
            format!(
                "cannot listen for NFS on 169.254.1.254 (troubleshooting.md, Volumes): is br-eth0 up?: {}",
                std::io::Error::from_raw_os_error(libc::EADDRNOTAVAIL)
            )
        );
    }
}
