//! The exported folders and the file handles that name what is inside them.
//!
//! A handle is `[epoch u32][export u32][dev u64][ino u64][birth u64]` (32
//! bytes; the birth time tells a file from a later one that reuses its inode
//! number). A request works on the objects its handles name through `O_PATH`
//! descriptors of those very inodes ([`Node`]), never through a path walked
//! again: what a descriptor names cannot be swapped by a rename or a
//! symlink between a check and a use. Handles stay valid as long as their
//! inode lives and is in the export, wherever it moves (`handles.rs` keeps
//! the descriptors of recently used objects; a forgotten one is found again
//! by its last path, then by searching its export, as knfsd's
//! `no_subtree_check` finds an inode wherever it is).
//!
//! Names the guest gives are opened beneath their folder with `openat2`
//! (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), so nothing a guest names, and
//! no symlink the host swaps in, reaches outside the export. Handles from an
//! earlier server (another epoch) are stale.

use crate::handles::{Bounds, Key, Table};
use nfs3_types::nfs3::{nfs_fh3, nfsstat3};
use nfs3_types::xdr_codec::Opaque;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, fstat, fstatat};
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
fn birth_of(fd: BorrowedFd<'_>) -> u64 {
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

/// An object of an export, held open (`O_PATH`, a symlink not followed)
/// for the request that names it.
#[derive(Debug, Clone)]
pub struct Node {
    pub export: usize,
    /// Where it was last seen, relative to the export root (empty for the
    /// root): a hint, never trusted without the identity.
    pub rel: PathBuf,
    pub identity: Identity,
    fd: Arc<OwnedFd>,
}

impl Node {
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Its attributes now.
    pub fn stat(&self) -> Result<FileStat, nfsstat3> {
        fstat(self.fd.as_fd()).map_err(status)
    }

    /// The `/proc` link that reaches exactly this inode: for what an
    /// `O_PATH` descriptor cannot do itself (chmod, reopening for I/O).
    pub fn proc_path(&self) -> String {
        format!("/proc/self/fd/{}", self.fd.as_raw_fd())
    }

    pub fn key(&self) -> Key {
        (self.export, self.identity.dev, self.identity.ino)
    }
}

#[derive(Debug)]
struct Root {
    export: Export,
    fd: Arc<OwnedFd>,
    identity: Identity,
}

#[derive(Debug)]
pub struct Tree {
    roots: Vec<Root>,
    epoch: u32,
    /// Written data's durability and the write verifier.
    pub writeback: crate::writeback::Writeback,
    /// What the guest has handles for.
    known: Mutex<Table>,
    /// Handles a search did not find, and for whom: stale for good, and
    /// not worth another search of the export.
    missed: Mutex<std::collections::VecDeque<(u32, Key, u64)>>,
    /// Folder listings being paged through.
    pub listings: crate::listing::Listings,
    /// One owner's write override at a time (`nfs.rs`).
    pub owner_override: Mutex<()>,
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

/// Opens `path` beneath `dir` without following any symlink.
fn open_beneath(dir: BorrowedFd<'_>, path: &Path, flags: OFlag) -> Result<OwnedFd, nfsstat3> {
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
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
            dir.as_raw_fd(),
            path.as_ptr(),
            &raw const how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(match Errno::last() {
            // A symlink where none may be, or a path leaving the export:
            // the path does not name an object of the export.
            Errno::ELOOP | Errno::EXDEV => nfsstat3::NFS3ERR_STALE,
            other => status(other),
        });
    }
    // SAFETY: a fresh descriptor from the kernel, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(i32::try_from(fd).map_err(|_| nfsstat3::NFS3ERR_IO)?) })
}

/// The attributes and identity of what `fd` holds.
/// The folder holding the folder `fd`, held by an `O_PATH` descriptor.
fn open_parent(fd: BorrowedFd<'_>) -> Result<OwnedFd, nfsstat3> {
    nix::fcntl::openat(
        fd,
        "..",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(status)
}

fn identify(fd: BorrowedFd<'_>) -> Result<(FileStat, Identity), nfsstat3> {
    let stat = fstatat(fd, "", AtFlags::AT_EMPTY_PATH | AtFlags::AT_SYMLINK_NOFOLLOW).map_err(status)?;
    let identity = Identity {
        dev: stat.st_dev,
        ino: stat.st_ino,
        birth: birth_of(fd),
    };
    Ok((stat, identity))
}

/// Entries a search for a forgotten object looks at before it gives up.
const SEARCH_LIMIT: usize = 1 << 20;
/// Handles a search did not find, remembered.
const MISSES_KEPT: usize = 1024;
/// Folders between an object and its export's root, at most, for the check
/// that a `..` stays in the export.
const MAX_DEPTH: usize = 4096;

impl Tree {
    pub fn new(exports: Vec<Export>) -> std::io::Result<Self> {
        Self::with_bounds(exports, Bounds::for_this_process())
    }

    pub fn with_bounds(exports: Vec<Export>, bounds: Bounds) -> std::io::Result<Self> {
        let mut roots = Vec::new();
        for export in exports {
            let cannot = |e: &dyn std::fmt::Display| {
                std::io::Error::other(format!(
                    "cannot open the export {} ({}): {e}",
                    export.name,
                    export.path.display()
                ))
            };
            let fd = nix::fcntl::open(
                &export.path,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| cannot(&e))?;
            let (_, identity) = identify(fd.as_fd()).map_err(|e| cannot(&e))?;
            roots.push(Root {
                export,
                fd: Arc::new(fd),
                identity,
            });
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
            writeback: crate::writeback::Writeback::new(epoch),
            known: Mutex::new(Table::new(bounds)),
            missed: Mutex::new(std::collections::VecDeque::new()),
            listings: crate::listing::Listings::default(),
            owner_override: Mutex::new(()),
        })
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

    /// The root of an export.
    pub fn root(&self, export: usize) -> Result<Node, nfsstat3> {
        let root = self.roots.get(export).ok_or(nfsstat3::NFS3ERR_STALE)?;
        Ok(Node {
            export,
            rel: PathBuf::new(),
            identity: root.identity,
            fd: Arc::clone(&root.fd),
        })
    }

    pub fn is_root(&self, node: &Node) -> bool {
        self.roots.get(node.export).is_some_and(|r| r.identity == node.identity)
    }

    /// The entry `name` of the folder `dir` (checked by the caller).
    pub fn lookup(&self, dir: &Node, name: &[u8]) -> Result<(Node, FileStat), nfsstat3> {
        let rel = Path::new(std::ffi::OsStr::from_bytes(name));
        let fd = open_beneath(dir.fd(), rel, OFlag::O_PATH)?;
        let (stat, identity) = identify(fd.as_fd())?;
        let node = Node {
            export: dir.export,
            rel: dir.rel.join(rel),
            identity,
            fd: Arc::new(fd),
        };
        Ok((node, stat))
    }

    /// The folder holding `dir`; an export's root is its own parent.
    pub fn parent(&self, dir: &Node) -> Result<(Node, FileStat), nfsstat3> {
        if self.is_root(dir) {
            return Ok((dir.clone(), dir.stat()?));
        }
        let fd = open_parent(dir.fd())?;
        if !self.within_export(dir.export, fd.as_fd())? {
            return Err(nfsstat3::NFS3ERR_ACCES);
        }
        let (stat, identity) = identify(fd.as_fd())?;
        let node = Node {
            export: dir.export,
            rel: dir.rel.parent().unwrap_or(Path::new("")).to_owned(),
            identity,
            fd: Arc::new(fd),
        };
        Ok((node, stat))
    }

    /// Whether the folder `fd` is the export's root or beneath it, walking up
    /// by `..`: a folder the handle follows may have been moved out of its
    /// export (by the host, or through another export it is also under),
    /// and a `..` from there must not climb to the host's folders.
    fn within_export(&self, export: usize, fd: BorrowedFd<'_>) -> Result<bool, nfsstat3> {
        let root = self.roots.get(export).ok_or(nfsstat3::NFS3ERR_STALE)?;
        let mut here = fd.try_clone_to_owned().map_err(|_| nfsstat3::NFS3ERR_IO)?;
        for _ in 0..MAX_DEPTH {
            let (_, identity) = identify(here.as_fd())?;
            if identity == root.identity {
                return Ok(true);
            }
            let up = open_parent(here.as_fd())?;
            if identify(up.as_fd())?.1 == identity {
                // The top of the file system: the export's root was not on the way.
                return Ok(false);
            }
            here = up;
        }
        Ok(false)
    }

    /// Opens the very inode `node` holds for I/O, with the thread's (the
    /// caller's) credentials checked as for any open.
    pub fn reopen(&self, node: &Node, flags: OFlag) -> Result<OwnedFd, nfsstat3> {
        // No O_NOFOLLOW: the /proc link is what is followed, to the inode.
        nix::fcntl::open(
            node.proc_path().as_str(),
            (flags | OFlag::O_CLOEXEC) & !OFlag::O_NOFOLLOW,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(status)
    }

    /// Remembers `node` and returns its handle.
    pub fn handle(&self, node: &Node) -> nfs_fh3 {
        let Identity { dev, ino, birth } = node.identity;
        if let Ok(mut known) = self.known.lock() {
            known.remember(node.key(), birth, node.rel.clone(), Arc::clone(&node.fd));
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
        let export = usize::try_from(word(4)).map_err(|_| nfsstat3::NFS3ERR_STALE)?;
        let root = self.roots.get(export).ok_or(nfsstat3::NFS3ERR_STALE)?;
        let wanted = Identity {
            dev: long(8),
            ino: long(16),
            birth: long(24),
        };
        if wanted == root.identity {
            let node = self.root(export)?;
            let stat = node.stat()?;
            return Ok((node, stat));
        }
        let key = (export, wanted.dev, wanted.ino);
        let known = self
            .known
            .lock()
            .map_err(|_| nfsstat3::NFS3ERR_SERVERFAULT)?
            .get(&key)
            .filter(|k| k.birth == wanted.birth);
        // Held: the inode itself, wherever it is now, unless it was deleted.
        if let Some(fd) = known.as_ref().and_then(|k| k.fd.clone()) {
            let (stat, identity) = identify(fd.as_fd())?;
            if stat.st_nlink > 0 && identity == wanted {
                let rel = known.map(|k| k.rel).unwrap_or_default();
                return Ok((
                    Node {
                        export,
                        rel,
                        identity,
                        fd,
                    },
                    stat,
                ));
            }
            self.forget(&key);
            return Err(nfsstat3::NFS3ERR_STALE);
        }
        // Let go: where it was last seen, else wherever it is in the export.
        let at_last_path = known.and_then(|k| {
            let fd = open_beneath(root.fd.as_fd(), &k.rel, OFlag::O_PATH).ok()?;
            let (stat, identity) = identify(fd.as_fd()).ok()?;
            (identity == wanted).then_some((k.rel, fd, stat))
        });
        let (rel, fd, stat) = match at_last_path {
            Some(found) => found,
            None => self.search_once(export, wanted)?,
        };
        let node = Node {
            export,
            rel,
            identity: wanted,
            fd: Arc::new(fd),
        };
        if let Ok(mut known) = self.known.lock() {
            known.remember(key, wanted.birth, node.rel.clone(), Arc::clone(&node.fd));
        }
        Ok((node, stat))
    }

    /// [`Tree::search`], with the caller's credentials (so it enters only
    /// the folders the caller may search), once per handle and caller: a
    /// miss is remembered, so a forged or stale handle sent again costs
    /// nothing.
    fn search_once(&self, export: usize, wanted: Identity) -> Result<(PathBuf, OwnedFd, FileStat), nfsstat3> {
        let key = (export, wanted.dev, wanted.ino);
        let miss = (crate::creds::caller_uid().unwrap_or(u32::MAX), key, wanted.birth);
        let missed = |m: &std::collections::VecDeque<_>| m.contains(&miss);
        if self.missed.lock().is_ok_and(|m| missed(&m)) {
            return Err(nfsstat3::NFS3ERR_STALE);
        }
        self.search(export, wanted).ok_or_else(|| {
            self.forget(&key);
            if let Ok(mut m) = self.missed.lock() {
                if m.len() >= MISSES_KEPT {
                    m.pop_front();
                }
                m.push_back(miss);
            }
            nfsstat3::NFS3ERR_STALE
        })
    }

    /// Looks through an export, folder by folder, for the object with
    /// `wanted`'s identity; bounded by [`SEARCH_LIMIT`] entries.
    fn search(&self, export: usize, wanted: Identity) -> Option<(PathBuf, OwnedFd, FileStat)> {
        let root = self.roots.get(export)?;
        let mut folders = std::collections::VecDeque::from([PathBuf::new()]);
        let mut seen = 0usize;
        while let Some(folder) = folders.pop_front() {
            let Ok(fd) = open_beneath(root.fd.as_fd(), &folder, OFlag::O_RDONLY | OFlag::O_DIRECTORY) else {
                continue;
            };
            let Ok(mut listing) = nix::dir::Dir::from_fd(fd) else {
                continue;
            };
            for entry in listing.iter().filter_map(Result::ok) {
                let name = entry.file_name().to_bytes();
                if name == b"." || name == b".." {
                    continue;
                }
                seen += 1;
                if seen > SEARCH_LIMIT {
                    return None;
                }
                let rel = folder.join(std::ffi::OsStr::from_bytes(name));
                if entry.ino() == wanted.ino {
                    if let Ok(fd) = open_beneath(root.fd.as_fd(), &rel, OFlag::O_PATH) {
                        if let Ok((stat, identity)) = identify(fd.as_fd()) {
                            if identity == wanted {
                                return Some((rel, fd, stat));
                            }
                        }
                    }
                }
                let is_folder = match entry.file_type() {
                    Some(kind) => kind == nix::dir::Type::Directory,
                    None => open_beneath(root.fd.as_fd(), &rel, OFlag::O_PATH)
                        .and_then(|fd| identify(fd.as_fd()))
                        .is_ok_and(|(s, _)| s.st_mode & libc::S_IFMT == libc::S_IFDIR),
                };
                if is_folder {
                    folders.push_back(rel);
                }
            }
        }
        None
    }

    /// Forgets an object whose last name went (REMOVE, RMDIR, a rename
    /// over it), so its descriptor does not keep a deleted inode alive.
    pub fn forget_if_deleted(&self, node: &Node) {
        if node.stat().is_ok_and(|s| s.st_nlink == 0) {
            self.forget(&node.key());
        }
    }

    fn forget(&self, key: &Key) {
        if let Ok(mut known) = self.known.lock() {
            known.forget(key);
        }
    }

    /// After a rename by the guest, what was seen under `from` is under `to`.
    pub fn renamed(&self, export: usize, from: &Path, to: &Path) {
        if let Ok(mut known) = self.known.lock() {
            known.renamed(export, from, to);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn tree_of(dir: &Path, bounds: Bounds) -> Tree {
        let export = Export {
            name: "/data".into(),
            path: dir.to_owned(),
            read_only: false,
        };
        Tree::with_bounds(vec![export], bounds).unwrap()
    }

    /// Past every bound the table let the object go; the handle still finds
    /// it, moved on the host, by searching the export.
    #[test]
    fn a_forgotten_object_is_found_again_wherever_it_moved() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        for name in ["first", "second", "third"] {
            std::fs::write(dir.path().join(name), name).unwrap();
        }
        let tree = tree_of(
            dir.path(),
            Bounds {
                known: 1,
                pinned: 1,
                path_bytes: 1 << 20,
            },
        );
        let root = tree.root(0).unwrap();
        let handles: Vec<_> = ["first", "second", "third"]
            .iter()
            .map(|name| tree.handle(&tree.lookup(&root, name.as_bytes()).unwrap().0))
            .collect();
        std::fs::rename(dir.path().join("first"), dir.path().join("a/b/moved")).unwrap();
        let (node, stat) = tree.resolve(&handles[0]).unwrap();
        assert_eq!(node.rel, PathBuf::from("a/b/moved"));
        assert_eq!(stat.st_size, 5);
        std::fs::remove_file(dir.path().join("a/b/moved")).unwrap();
        assert_eq!(tree.resolve(&handles[0]).err(), Some(nfsstat3::NFS3ERR_STALE));
        assert!(tree.resolve(&handles[2]).is_ok());
    }

    /// A held object deleted on the host is stale, and let go.
    #[test]
    fn a_held_object_whose_last_name_went_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"").unwrap();
        let tree = tree_of(dir.path(), Bounds::for_this_process());
        let root = tree.root(0).unwrap();
        let handle = tree.handle(&tree.lookup(&root, b"f").unwrap().0);
        std::fs::remove_file(dir.path().join("f")).unwrap();
        assert_eq!(tree.resolve(&handle).err(), Some(nfsstat3::NFS3ERR_STALE));
        assert_eq!(tree.known.lock().unwrap().len(), 0);
    }

    #[test]
    fn the_root_is_its_own_parent_and_names_stay_beneath_it() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("out")).unwrap();
        let tree = tree_of(dir.path(), Bounds::for_this_process());
        let root = tree.root(0).unwrap();
        assert_eq!(tree.parent(&root).unwrap().0.identity, root.identity);
        let (link, _) = tree.lookup(&root, b"out").unwrap();
        assert_eq!(tree.lookup(&link, b"passwd").err(), Some(nfsstat3::NFS3ERR_NOTDIR));
    }

    /// A folder moved out of its export (here by the host; through an
    /// outer export the guest can do it too) keeps its handle, but `..`
    /// from it does not climb into the host's folders.
    #[test]
    fn dot_dot_never_leaves_the_export() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("export/d")).unwrap();
        let tree = tree_of(&dir.path().join("export"), Bounds::for_this_process());
        let root = tree.root(0).unwrap();
        let (d, _) = tree.lookup(&root, b"d").unwrap();
        assert_eq!(tree.parent(&d).unwrap().0.identity, root.identity);
        std::fs::rename(dir.path().join("export/d"), dir.path().join("d")).unwrap();
        assert_eq!(tree.parent(&d).err(), Some(nfsstat3::NFS3ERR_ACCES));
    }

    /// A handle nobody can find is searched for once.
    #[test]
    fn a_missing_handle_is_searched_for_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"").unwrap();
        let tree = tree_of(dir.path(), Bounds::for_this_process());
        let root = tree.root(0).unwrap();
        let (f, _) = tree.lookup(&root, b"f").unwrap();
        let mut forged = f.identity;
        forged.ino += 1_000_000;
        assert_eq!(tree.search_once(0, forged).err(), Some(nfsstat3::NFS3ERR_STALE));
        assert_eq!(tree.missed.lock().unwrap().len(), 1);
        assert_eq!(tree.search_once(0, forged).err(), Some(nfsstat3::NFS3ERR_STALE));
        assert_eq!(tree.missed.lock().unwrap().len(), 1);
        assert!(tree.search_once(0, f.identity).is_ok());
    }
}
