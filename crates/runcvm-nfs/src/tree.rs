//! The exported folders and the file handles that name what is inside them.
//!
//! A handle is `[epoch u32][export u32][dev u64][ino u64][birth u64]` (32
//! bytes; the birth time tells a file from a later one that reuses its inode
//! number); the
//! server remembers, for each `(dev, ino)` it has handed out, the path
//! relative to its export where it was last seen. Every use reopens that
//! path beneath the export root with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)`, so nothing a guest names, and no symlink the host
//! swaps in, reaches outside the export; and checks the inode, so a path that
//! now holds another file answers "stale", as NFS requires. Handles from an
//! earlier server (another epoch) are stale too.

use nfs3_types::nfs3::{nfs_fh3, nfsstat3};
use nfs3_types::xdr_codec::Opaque;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, fstatat};
use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// `[epoch u32][export u32][dev u64][ino u64][birth u64]`.
const HANDLE_LEN: usize = 32;

/// What tells one file from another, including a later file that reuses
/// an inode number after the first was deleted: its birth time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub dev: u64,
    pub ino: u64,
    /// Nanoseconds since the epoch; 0 where the file system keeps none.
    pub birth: u64,
}

/// The birth time of the inode `fd` holds, from statx.
fn birth_of(fd: &OwnedFd) -> u64 {
    // SAFETY: statx is plain data; all-zero is a valid value.
    let mut buf: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: statx reads the empty C string and writes into `buf`, both
    // alive for the call; AT_EMPTY_PATH makes it describe `fd` itself.
    let rc = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_BTIME,
            &raw mut buf,
        )
    };
    if rc != 0 || buf.stx_mask & libc::STATX_BTIME == 0 {
        return 0;
    }
    u64::try_from(buf.stx_btime.tv_sec)
        .unwrap_or(0)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(u64::from(buf.stx_btime.tv_nsec))
}

/// One exported host folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// The name the guest mounts (`169.254.1.254:/data`): the container path.
    pub name: String,
    pub path: PathBuf,
    pub read_only: bool,
}

/// Where an object was last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub export: usize,
    /// Relative to the export root; empty for the root itself.
    pub rel: PathBuf,
}

impl Node {
    pub fn child(&self, name: &[u8]) -> Node {
        Node {
            export: self.export,
            rel: self.rel.join(std::ffi::OsStr::from_bytes(name)),
        }
    }

    /// The parent folder and the name in it; `None` for an export root.
    pub fn split(&self) -> Option<(Node, Vec<u8>)> {
        let name = self.rel.file_name()?.as_bytes().to_vec();
        let parent = self.rel.parent().unwrap_or(Path::new("")).to_owned();
        Some((
            Node {
                export: self.export,
                rel: parent,
            },
            name,
        ))
    }
}

#[derive(Debug)]
struct Root {
    export: Export,
    fd: OwnedFd,
}

#[derive(Debug)]
pub struct Tree {
    roots: Vec<Root>,
    epoch: u32,
    /// Where each handed-out object was last seen, per export: one inode can
    /// be reached through several exports (nested or repeated volumes).
    seen: Mutex<HashMap<(usize, u64, u64), Node>>,
}

/// An errno as the NFS status a client understands.
pub fn status(errno: Errno) -> nfsstat3 {
    match errno {
        Errno::EPERM => nfsstat3::NFS3ERR_PERM,
        Errno::ENOENT => nfsstat3::NFS3ERR_NOENT,
        Errno::EACCES => nfsstat3::NFS3ERR_ACCES,
        Errno::EEXIST => nfsstat3::NFS3ERR_EXIST,
        Errno::EXDEV => nfsstat3::NFS3ERR_XDEV,
        Errno::ENOTDIR => nfsstat3::NFS3ERR_NOTDIR,
        Errno::EISDIR => nfsstat3::NFS3ERR_ISDIR,
        Errno::EINVAL => nfsstat3::NFS3ERR_INVAL,
        Errno::EFBIG => nfsstat3::NFS3ERR_FBIG,
        Errno::ENOSPC => nfsstat3::NFS3ERR_NOSPC,
        Errno::EROFS => nfsstat3::NFS3ERR_ROFS,
        Errno::EMLINK => nfsstat3::NFS3ERR_MLINK,
        Errno::ENAMETOOLONG => nfsstat3::NFS3ERR_NAMETOOLONG,
        Errno::ENOTEMPTY => nfsstat3::NFS3ERR_NOTEMPTY,
        Errno::EDQUOT => nfsstat3::NFS3ERR_DQUOT,
        Errno::ENOTSUP => nfsstat3::NFS3ERR_NOTSUPP,
        Errno::ESTALE => nfsstat3::NFS3ERR_STALE,
        _ => nfsstat3::NFS3ERR_IO,
    }
}

/// A name the guest may use in a folder: no slash, not `.` or `..`.
pub fn check_name(name: &[u8]) -> Result<(), nfsstat3> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0) {
        return Err(nfsstat3::NFS3ERR_INVAL);
    }
    if name.len() > 255 {
        return Err(nfsstat3::NFS3ERR_NAMETOOLONG);
    }
    Ok(())
}

impl Tree {
    pub fn new(exports: Vec<Export>) -> std::io::Result<Self> {
        let mut roots = Vec::new();
        for export in exports {
            let fd = nix::fcntl::open(
                &export.path,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| {
                std::io::Error::other(format!(
                    "cannot open the export {} ({}): {e}",
                    export.name,
                    export.path.display()
                ))
            })?;
            roots.push(Root { export, fd });
        }
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| {
                d.subsec_nanos() ^ u32::try_from(d.as_secs() & 0xffff_ffff).unwrap_or(0)
            })
            | 1;
        Ok(Self {
            roots,
            epoch,
            seen: Mutex::new(HashMap::new()),
        })
    }

    /// Changes with every server start.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    pub fn export(&self, index: usize) -> &Export {
        &self.roots[index].export
    }

    pub fn has_export(&self, index: usize) -> bool {
        index < self.roots.len()
    }

    /// The export mounted under `name`.
    pub fn find_export(&self, name: &[u8]) -> Option<usize> {
        let name = std::str::from_utf8(name).ok()?.trim_end_matches('/');
        self.roots
            .iter()
            .position(|r| r.export.name.trim_end_matches('/') == name)
    }

    /// Opens `node` beneath its export without following any symlink.
    pub fn open(&self, node: &Node, flags: OFlag) -> Result<OwnedFd, nfsstat3> {
        let root = self.roots.get(node.export).ok_or(nfsstat3::NFS3ERR_STALE)?;
        let path = if node.rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            node.rel.as_path()
        };
        let path = CString::new(path.as_os_str().as_bytes()).map_err(|_| nfsstat3::NFS3ERR_INVAL)?;
        // SAFETY: open_how is plain data; all-zero is valid (no flags).
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = u64::try_from((flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW).bits()).unwrap_or(0);
        how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
        // SAFETY: openat2 reads the NUL-terminated path and `how` (of the
        // size passed), both alive for the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root.fd.as_raw_fd(),
                path.as_ptr(),
                &raw const how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd < 0 {
            return Err(match Errno::last() {
                // A symlink where none may be, or a path leaving the export:
                // the path no longer names the object the handle stood for.
                Errno::ELOOP | Errno::EXDEV => nfsstat3::NFS3ERR_STALE,
                other => status(other),
            });
        }
        // SAFETY: a fresh descriptor from the kernel, owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(i32::try_from(fd).map_err(|_| nfsstat3::NFS3ERR_IO)?) })
    }

    /// The attributes of `node` itself (a symlink is not followed).
    pub fn stat(&self, node: &Node) -> Result<FileStat, nfsstat3> {
        let fd = self.open(node, OFlag::O_PATH)?;
        fstatat(&fd, "", AtFlags::AT_EMPTY_PATH | AtFlags::AT_SYMLINK_NOFOLLOW).map_err(status)
    }

    /// The attributes of `node` and its identity for a handle.
    pub fn identify(&self, node: &Node) -> Result<(FileStat, Identity), nfsstat3> {
        let fd = self.open(node, OFlag::O_PATH)?;
        let stat = fstatat(&fd, "", AtFlags::AT_EMPTY_PATH | AtFlags::AT_SYMLINK_NOFOLLOW).map_err(status)?;
        let identity = Identity {
            dev: stat.st_dev,
            ino: stat.st_ino,
            birth: birth_of(&fd),
        };
        Ok((stat, identity))
    }

    /// Remembers `node` and returns its handle.
    pub fn handle(&self, node: &Node, identity: Identity) -> nfs_fh3 {
        let Identity { dev, ino, birth } = identity;
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert((node.export, dev, ino), node.clone());
        }
        let mut bytes = Vec::with_capacity(HANDLE_LEN);
        bytes.extend_from_slice(&self.epoch.to_be_bytes());
        bytes.extend_from_slice(&u32::try_from(node.export).unwrap_or(u32::MAX).to_be_bytes());
        bytes.extend_from_slice(&dev.to_be_bytes());
        bytes.extend_from_slice(&ino.to_be_bytes());
        bytes.extend_from_slice(&birth.to_be_bytes());
        nfs_fh3 {
            data: Opaque::owned(bytes),
        }
    }

    /// The node a handle names, with its current attributes.
    pub fn resolve(&self, handle: &nfs_fh3) -> Result<(Node, FileStat), nfsstat3> {
        let bytes = handle.data.as_ref();
        if bytes.len() != HANDLE_LEN {
            return Err(nfsstat3::NFS3ERR_BADHANDLE);
        }
        let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap_or_default());
        let long = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap_or_default());
        if word(0) != self.epoch {
            return Err(nfsstat3::NFS3ERR_STALE);
        }
        let (export, dev, ino, birth) = (word(4) as usize, long(8), long(16), long(24));
        let node = {
            let seen = self.seen.lock().map_err(|_| nfsstat3::NFS3ERR_SERVERFAULT)?;
            seen.get(&(export, dev, ino)).cloned()
        }
        .filter(|n| n.export == export)
        .ok_or(nfsstat3::NFS3ERR_STALE)?;
        // Gone from where it was last seen: the handle no longer names it.
        let (stat, identity) = self.identify(&node).map_err(|e| {
            if e == nfsstat3::NFS3ERR_NOENT {
                nfsstat3::NFS3ERR_STALE
            } else {
                e
            }
        })?;
        // Another inode at the path, or the same number reused by a newer
        // file: the handle does not name it.
        if identity != (Identity { dev, ino, birth }) {
            return Err(nfsstat3::NFS3ERR_STALE);
        }
        Ok((node, stat))
    }

    /// The root of an export and its identity.
    pub fn root(&self, export: usize) -> Result<(Node, Identity), nfsstat3> {
        let node = Node {
            export,
            rel: PathBuf::new(),
        };
        let (_, identity) = self.identify(&node)?;
        Ok((node, identity))
    }

    /// After a rename, everything remembered under `from` lives under `to`.
    pub fn renamed(&self, from: &Node, to: &Node) {
        if let Ok(mut seen) = self.seen.lock() {
            for node in seen.values_mut() {
                if node.export == from.export {
                    if let Ok(rest) = node.rel.strip_prefix(&from.rel) {
                        node.rel = if rest.as_os_str().is_empty() {
                            to.rel.clone()
                        } else {
                            to.rel.join(rest)
                        };
                    }
                }
            }
        }
    }
}
