//! The NFSv3 procedures (RFC 1813), each run with the caller's credentials.

use crate::attrs::{fattr, post_op, post_op_of, wcc};
use crate::creds::become_caller;
use crate::rpc::{Call, PackDyn, args};
use crate::tree::{Node, Tree, check_name, status};
use nfs3_types::nfs3::*;
use nfs3_types::xdr_codec::{List, Opaque, Void};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FchmodatFlags, FileStat, Mode, UtimensatFlags, fchmodat, fstatat, mkdirat, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, linkat, symlinkat, unlinkat};
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;

/// Largest READ and WRITE the server offers.
const MAX_IO: u32 = 1 << 20;
/// Changes with every server start, so clients re-send unstable writes.
fn write_verifier(tree: &Tree) -> writeverf3 {
    let mut verifier = *b"runcvm\0\0";
    verifier[4..].copy_from_slice(&tree.epoch().to_be_bytes());
    writeverf3(verifier)
}

/// What a procedure answers: a body to pack, or `None` for PROC_UNAVAIL.
pub type Answer = Option<Box<dyn PackDyn>>;

fn boxed<T: PackDyn + 'static>(value: T) -> Answer {
    Some(Box::new(value))
}

/// Runs one NFS call; `Err(())` means the arguments did not decode.
pub fn dispatch(tree: &Tree, call: &mut Call) -> Result<Answer, ()> {
    let Some(_as_caller) = become_caller(&call.caller) else {
        runcvm_log::warn!(
            "nfs: cannot act as uid {} gid {}; refusing the request",
            call.caller.uid,
            call.caller.gid
        );
        return Err(());
    };
    Ok(match call.procedure {
        0 => boxed(Void),
        1 => boxed(getattr(tree, args(call).ok_or(())?)),
        2 => boxed(setattr(tree, args(call).ok_or(())?)),
        3 => boxed(lookup(tree, args(call).ok_or(())?)),
        4 => boxed(access(tree, args(call).ok_or(())?)),
        5 => boxed(readlink(tree, args(call).ok_or(())?)),
        6 => boxed(read(tree, args(call).ok_or(())?)),
        7 => boxed(write(tree, args(call).ok_or(())?)),
        8 => boxed(create(tree, args(call).ok_or(())?)),
        9 => boxed(mkdir(tree, args(call).ok_or(())?)),
        10 => boxed(symlink(tree, args(call).ok_or(())?)),
        11 => boxed(MKNOD3res::Err((
            nfsstat3::NFS3ERR_NOTSUPP,
            MKNOD3resfail {
                dir_wcc: wcc_data::default(),
            },
        ))),
        12 => boxed(remove(tree, args(call).ok_or(())?, false)),
        13 => boxed(rmdir(tree, args(call).ok_or(())?)),
        14 => boxed(rename(tree, args(call).ok_or(())?)),
        15 => boxed(link(tree, args(call).ok_or(())?)),
        16 => boxed(readdir(tree, args(call).ok_or(())?)),
        17 => boxed(readdirplus(tree, args(call).ok_or(())?)),
        18 => boxed(fsstat(tree, args(call).ok_or(())?)),
        19 => boxed(fsinfo(tree, args(call).ok_or(())?)),
        20 => boxed(pathconf(tree, args(call).ok_or(())?)),
        21 => boxed(commit(tree, args(call).ok_or(())?)),
        _ => None,
    })
}

fn writable(tree: &Tree, node: &Node) -> Result<(), nfsstat3> {
    if tree.export(node.export).read_only {
        Err(nfsstat3::NFS3ERR_ROFS)
    } else {
        Ok(())
    }
}

/// Opens `node` for writing as the caller; the owner of a file may write it
/// whatever its mode (git makes objects 0444 and then writes them), as
/// knfsd lets them.
fn open_for_write(tree: &Tree, node: &Node) -> Result<OwnedFd, nfsstat3> {
    match tree.open(node, OFlag::O_WRONLY) {
        Err(nfsstat3::NFS3ERR_ACCES) => {
            let owner = tree.stat(node)?.st_uid;
            if crate::creds::caller_uid() != Some(owner) {
                return Err(nfsstat3::NFS3ERR_ACCES);
            }
            crate::creds::as_root(|| tree.open(node, OFlag::O_WRONLY))
        }
        other => other,
    }
}

fn is_dir(stat: &FileStat) -> bool {
    stat.st_mode & libc::S_IFMT == libc::S_IFDIR
}

fn getattr(tree: &Tree, args: GETATTR3args) -> GETATTR3res {
    match tree.resolve(&args.object) {
        Ok((_, stat)) => GETATTR3res::Ok(GETATTR3resok {
            obj_attributes: fattr(&stat),
        }),
        Err(e) => GETATTR3res::Err((e, Void)),
    }
}

fn setattr(tree: &Tree, args: SETATTR3args) -> SETATTR3res {
    let fail = |e, node: Option<&Node>, before: Option<&FileStat>| {
        let obj_wcc = node.map_or_else(wcc_data::default, |n| wcc(tree, n, before));
        SETATTR3res::Err((e, SETATTR3resfail { obj_wcc }))
    };
    let (node, before) = match tree.resolve(&args.object) {
        Ok(found) => found,
        Err(e) => return fail(e, None, None),
    };
    if let Err(e) = writable(tree, &node) {
        return fail(e, Some(&node), Some(&before));
    }
    if let Nfs3Option::Some(guard) = args.guard {
        let ctime = fattr(&before).ctime;
        if (guard.seconds, guard.nseconds) != (ctime.seconds, ctime.nseconds) {
            return fail(nfsstat3::NFS3ERR_NOT_SYNC, Some(&node), Some(&before));
        }
    }
    match apply_sattr(tree, &node, &args.new_attributes) {
        Ok(()) => SETATTR3res::Ok(SETATTR3resok {
            obj_wcc: wcc(tree, &node, Some(&before)),
        }),
        Err(e) => fail(e, Some(&node), Some(&before)),
    }
}

/// Applies size, owner, mode and times, in the order that keeps a set-uid
/// bit from being cleared by a later chown.
fn apply_sattr(tree: &Tree, node: &Node, attrs: &sattr3) -> Result<(), nfsstat3> {
    if let Nfs3Option::Some(size) = attrs.size {
        let file = open_for_write(tree, node)?;
        nix::unistd::ftruncate(&file, i64::try_from(size).map_err(|_| nfsstat3::NFS3ERR_FBIG)?).map_err(status)?;
    }
    let (uid, gid) = (attrs.uid, attrs.gid);
    if uid.is_some()
        || gid.is_some()
        || attrs.mode.is_some()
        || !matches!(attrs.atime, set_atime::DONT_CHANGE)
        || !matches!(attrs.mtime, set_mtime::DONT_CHANGE)
    {
        let Some((parent, name)) = node.split() else {
            return apply_at_root(tree, node, attrs);
        };
        let dir = tree.open(&parent, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
        let name = OsStr::from_bytes(&name);
        if uid.is_some() || gid.is_some() {
            let (uid, gid) = owner(attrs);
            fchownat(&dir, name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(status)?;
        }
        if let Nfs3Option::Some(mode) = attrs.mode {
            chmod_node(tree, node, mode)?;
        }
        set_times(&dir, name, attrs)?;
    }
    Ok(())
}

/// The owner a SETATTR asks for, in the node's ids (`idmap.rs`).
fn owner(attrs: &sattr3) -> (Option<Uid>, Option<Gid>) {
    let uid = match attrs.uid {
        Nfs3Option::Some(u) => Some(Uid::from_raw(crate::idmap::node_uid(u))),
        Nfs3Option::None => None,
    };
    let gid = match attrs.gid {
        Nfs3Option::Some(g) => Some(Gid::from_raw(crate::idmap::node_gid(g))),
        Nfs3Option::None => None,
    };
    (uid, gid)
}

/// chmod of the inode `node` names now, held open without following any
/// symlink: a name swapped for a symlink between a check and the chmod
/// cannot send it outside the export.
fn chmod_node(tree: &Tree, node: &Node, mode: u32) -> Result<(), nfsstat3> {
    let fd = tree.open(node, OFlag::O_PATH)?;
    let stat = fstatat(&fd, "", AtFlags::AT_EMPTY_PATH | AtFlags::AT_SYMLINK_NOFOLLOW).map_err(status)?;
    if stat.st_mode & libc::S_IFMT == libc::S_IFLNK {
        return Err(nfsstat3::NFS3ERR_INVAL);
    }
    // An O_PATH descriptor cannot be fchmod'ed; its /proc link reaches
    // exactly the inode it holds.
    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
    fchmodat(
        nix::fcntl::AT_FDCWD,
        path.as_str(),
        Mode::from_bits_truncate(mode & 0o7777),
        FchmodatFlags::FollowSymlink,
    )
    .map_err(status)
}

fn apply_at_root(tree: &Tree, node: &Node, attrs: &sattr3) -> Result<(), nfsstat3> {
    let root = tree.open(node, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
    let here = OsStr::new(".");
    let (uid, gid) = owner(attrs);
    if uid.is_some() || gid.is_some() {
        fchownat(&root, here, uid, gid, AtFlags::empty()).map_err(status)?;
    }
    if let Nfs3Option::Some(mode) = attrs.mode {
        chmod_node(tree, node, mode)?;
    }
    set_times(&root, here, attrs)
}

fn set_times(dir: &impl std::os::fd::AsFd, name: &OsStr, attrs: &sattr3) -> Result<(), nfsstat3> {
    let spec = |seconds: u32, nanos: u32| TimeSpec::new(i64::from(seconds), i64::from(nanos));
    let omit = TimeSpec::UTIME_OMIT;
    let now = TimeSpec::UTIME_NOW;
    let atime = match attrs.atime {
        set_atime::DONT_CHANGE => omit,
        set_atime::SET_TO_SERVER_TIME => now,
        set_atime::SET_TO_CLIENT_TIME(t) => spec(t.seconds, t.nseconds),
    };
    let mtime = match attrs.mtime {
        set_mtime::DONT_CHANGE => omit,
        set_mtime::SET_TO_SERVER_TIME => now,
        set_mtime::SET_TO_CLIENT_TIME(t) => spec(t.seconds, t.nseconds),
    };
    if atime == omit && mtime == omit {
        return Ok(());
    }
    utimensat(dir, name, &atime, &mtime, UtimensatFlags::NoFollowSymlink).map_err(status)
}

fn lookup(tree: &Tree, args: LOOKUP3args<'_>) -> LOOKUP3res {
    let (dir, _) = match tree.resolve(&args.what.dir) {
        Ok(found) => found,
        Err(e) => {
            return LOOKUP3res::Err((
                e,
                LOOKUP3resfail {
                    dir_attributes: post_op_attr::None,
                },
            ));
        }
    };
    let name = args.what.name.as_ref();
    let target = match name {
        b"." => Ok(dir.clone()),
        b".." => Ok(dir.split().map_or_else(|| dir.clone(), |(parent, _)| parent)),
        _ => check_name(name).map(|()| dir.child(name)),
    };
    let found = target.and_then(|node| tree.identify(&node).map(|(stat, identity)| (node, stat, identity)));
    match found {
        Ok((node, stat, identity)) => LOOKUP3res::Ok(LOOKUP3resok {
            object: tree.handle(&node, identity),
            obj_attributes: post_op(Some(&stat)),
            dir_attributes: post_op_of(tree, &dir),
        }),
        Err(e) => LOOKUP3res::Err((
            e,
            LOOKUP3resfail {
                dir_attributes: post_op_of(tree, &dir),
            },
        )),
    }
}

fn access(tree: &Tree, args: ACCESS3args) -> ACCESS3res {
    let (node, stat) = match tree.resolve(&args.object) {
        Ok(found) => found,
        Err(e) => {
            return ACCESS3res::Err((
                e,
                ACCESS3resfail {
                    obj_attributes: post_op_attr::None,
                },
            ));
        }
    };
    // Ask the kernel as the caller: AT_EACCESS checks with the thread's
    // current (fs) credentials; without it faccessat uses the real uid, root.
    let granted = |mode: nix::unistd::AccessFlags| {
        let flags = AtFlags::AT_SYMLINK_NOFOLLOW | AtFlags::AT_EACCESS;
        let checked = match node.split() {
            Some((parent, name)) => tree
                .open(&parent, OFlag::O_PATH | OFlag::O_DIRECTORY)
                .and_then(|dir| nix::unistd::faccessat(&dir, OsStr::from_bytes(&name), mode, flags).map_err(status)),
            // The export root: asked of the folder itself.
            None => tree
                .open(&node, OFlag::O_PATH | OFlag::O_DIRECTORY)
                .and_then(|dir| nix::unistd::faccessat(&dir, ".", mode, flags).map_err(status)),
        };
        checked.is_ok()
    };
    use nix::unistd::AccessFlags as A;
    let read_only = tree.export(node.export).read_only;
    let mut allowed = 0;
    if args.access & ACCESS3_READ != 0 && granted(A::R_OK) {
        allowed |= ACCESS3_READ;
    }
    if args.access & ACCESS3_LOOKUP != 0 && is_dir(&stat) && granted(A::X_OK) {
        allowed |= ACCESS3_LOOKUP;
    }
    if !read_only && granted(A::W_OK) {
        allowed |= args.access & (ACCESS3_MODIFY | ACCESS3_EXTEND | if is_dir(&stat) { ACCESS3_DELETE } else { 0 });
    }
    if args.access & ACCESS3_EXECUTE != 0 && !is_dir(&stat) && granted(A::X_OK) {
        allowed |= ACCESS3_EXECUTE;
    }
    ACCESS3res::Ok(ACCESS3resok {
        obj_attributes: post_op(Some(&stat)),
        access: allowed,
    })
}

fn readlink(tree: &Tree, args: READLINK3args) -> READLINK3res<'static> {
    let result = tree.resolve(&args.symlink).and_then(|(node, stat)| {
        let (parent, name) = node.split().ok_or(nfsstat3::NFS3ERR_INVAL)?;
        let dir = tree.open(&parent, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
        let target = nix::fcntl::readlinkat(&dir, OsStr::from_bytes(&name)).map_err(status)?;
        Ok((stat, target))
    });
    match result {
        Ok((stat, target)) => READLINK3res::Ok(READLINK3resok {
            symlink_attributes: post_op(Some(&stat)),
            data: nfspath3(Opaque::owned(target.as_bytes().to_vec())),
        }),
        Err(e) => READLINK3res::Err((
            e,
            READLINK3resfail {
                symlink_attributes: post_op_attr::None,
            },
        )),
    }
}

fn read(tree: &Tree, args: READ3args) -> READ3res<'static> {
    let result = tree.resolve(&args.file).and_then(|(node, stat)| {
        let file = tree.open(&node, OFlag::O_RDONLY)?;
        let count = args.count.min(MAX_IO) as usize;
        let mut data = vec![0u8; count];
        let mut filled = 0;
        while filled < count {
            let offset = i64::try_from(args.offset + filled as u64).map_err(|_| nfsstat3::NFS3ERR_INVAL)?;
            match nix::sys::uio::pread(&file, &mut data[filled..], offset) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(status(e)),
            }
        }
        data.truncate(filled);
        let size = u64::try_from(stat.st_size).unwrap_or(0);
        Ok((node, data, args.offset + filled as u64 >= size))
    });
    match result {
        Ok((node, data, eof)) => READ3res::Ok(READ3resok {
            file_attributes: post_op_of(tree, &node),
            count: u32::try_from(data.len()).unwrap_or(0),
            eof,
            data: Opaque::owned(data),
        }),
        Err(e) => READ3res::Err((
            e,
            READ3resfail {
                file_attributes: post_op_attr::None,
            },
        )),
    }
}

fn write(tree: &Tree, args: WRITE3args<'_>) -> WRITE3res {
    let (node, before) = match tree.resolve(&args.file) {
        Ok(found) => found,
        Err(e) => {
            return WRITE3res::Err((
                e,
                WRITE3resfail {
                    file_wcc: wcc_data::default(),
                },
            ));
        }
    };
    let result = writable(tree, &node).and_then(|()| {
        let file = open_for_write(tree, &node)?;
        let data = args.data.as_ref();
        let count = (args.count as usize).min(data.len());
        let mut written = 0;
        while written < count {
            let offset = i64::try_from(args.offset + written as u64).map_err(|_| nfsstat3::NFS3ERR_FBIG)?;
            match nix::sys::uio::pwrite(&file, &data[written..count], offset) {
                Ok(n) => written += n,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(status(e)),
            }
        }
        // FILE_SYNC and DATA_SYNC promise the data is on stable storage when
        // the reply arrives; UNSTABLE waits for COMMIT (the client's fsync or
        // close).
        if !matches!(args.stable, stable_how::UNSTABLE) {
            nix::unistd::fdatasync(&file).map_err(status)?;
        }
        Ok(written)
    });
    match result {
        Ok(written) => WRITE3res::Ok(WRITE3resok {
            file_wcc: wcc(tree, &node, Some(&before)),
            count: u32::try_from(written).unwrap_or(0),
            committed: if matches!(args.stable, stable_how::UNSTABLE) {
                stable_how::UNSTABLE
            } else {
                stable_how::FILE_SYNC
            },
            verf: write_verifier(tree),
        }),
        Err(e) => WRITE3res::Err((
            e,
            WRITE3resfail {
                file_wcc: wcc(tree, &node, Some(&before)),
            },
        )),
    }
}

/// A folder, its attributes before a change, and the entry's name in it.
type Entry = (Node, FileStat, Vec<u8>);

/// A change to a folder that was refused, with the folder if it was found
/// (its attributes go into the reply's wcc data).
struct Refused {
    code: nfsstat3,
    dir: Option<Box<(Node, FileStat)>>,
}

impl Refused {
    fn new(code: nfsstat3, dir: Option<(Node, FileStat)>) -> Self {
        Self {
            code,
            dir: dir.map(Box::new),
        }
    }

    fn dir_wcc(&self, tree: &Tree) -> wcc_data {
        self.dir
            .as_ref()
            .map_or_else(wcc_data::default, |found| wcc(tree, &found.0, Some(&found.1)))
    }
}

/// The folder and name of a new entry, checked and writable.
fn new_entry(tree: &Tree, where_: &diropargs3<'_>) -> Result<Entry, Refused> {
    let (dir, stat) = tree.resolve(&where_.dir).map_err(|e| Refused::new(e, None))?;
    let name = where_.name.as_ref().to_vec();
    if let Err(e) = check_name(&name).and_then(|()| writable(tree, &dir)) {
        return Err(Refused::new(e, Some((dir, stat))));
    }
    Ok((dir, stat, name))
}

/// The reply parts every creating procedure shares.
fn created(tree: &Tree, dir: &Node, before: &FileStat, name: &[u8]) -> (post_op_fh3, post_op_attr, wcc_data) {
    let node = dir.child(name);
    match tree.identify(&node) {
        Ok((stat, identity)) => (
            post_op_fh3::Some(tree.handle(&node, identity)),
            post_op(Some(&stat)),
            wcc(tree, dir, Some(before)),
        ),
        Err(_) => (post_op_fh3::None, post_op_attr::None, wcc(tree, dir, Some(before))),
    }
}

fn create(tree: &Tree, args: CREATE3args<'_>) -> CREATE3res {
    let (dir, before, name) = match new_entry(tree, &args.where_) {
        Ok(entry) => entry,
        Err(refused) => {
            return CREATE3res::Err((
                refused.code,
                CREATE3resfail {
                    dir_wcc: refused.dir_wcc(tree),
                },
            ));
        }
    };
    let (flags, attrs) = match &args.how {
        createhow3::UNCHECKED(attrs) => (OFlag::O_CREAT, Some(attrs)),
        createhow3::GUARDED(attrs) => (OFlag::O_CREAT | OFlag::O_EXCL, Some(attrs)),
        // The verifier is not stored: an exclusive create is a guarded one.
        createhow3::EXCLUSIVE(_) => (OFlag::O_CREAT | OFlag::O_EXCL, None),
    };
    let mode = attrs
        .and_then(|a| {
            if let Nfs3Option::Some(m) = a.mode {
                Some(m)
            } else {
                None
            }
        })
        .unwrap_or(0o644);
    let result = tree.open(&dir, OFlag::O_PATH | OFlag::O_DIRECTORY).and_then(|dirfd| {
        nix::fcntl::openat(
            &dirfd,
            OsStr::from_bytes(&name),
            flags | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode & 0o7777),
        )
        .map_err(status)
    });
    let result = result.and_then(|_file| {
        // The mode is applied again: the launcher's umask masked it at creation.
        let rest = attrs.cloned().unwrap_or_default();
        apply_sattr(tree, &dir.child(&name), &rest)
    });
    match result {
        Ok(()) => {
            let (obj, obj_attributes, dir_wcc) = created(tree, &dir, &before, &name);
            CREATE3res::Ok(CREATE3resok {
                obj,
                obj_attributes,
                dir_wcc,
            })
        }
        Err(e) => CREATE3res::Err((
            e,
            CREATE3resfail {
                dir_wcc: wcc(tree, &dir, Some(&before)),
            },
        )),
    }
}

fn mkdir(tree: &Tree, args: MKDIR3args<'_>) -> MKDIR3res {
    let (dir, before, name) = match new_entry(tree, &args.where_) {
        Ok(entry) => entry,
        Err(refused) => {
            return MKDIR3res::Err((
                refused.code,
                MKDIR3resfail {
                    dir_wcc: refused.dir_wcc(tree),
                },
            ));
        }
    };
    let mode = if let Nfs3Option::Some(m) = args.attributes.mode {
        m
    } else {
        0o755
    };
    let result = tree
        .open(&dir, OFlag::O_PATH | OFlag::O_DIRECTORY)
        .and_then(|dirfd| {
            mkdirat(
                &dirfd,
                OsStr::from_bytes(&name),
                Mode::from_bits_truncate(mode & 0o7777),
            )
            .map_err(status)
        })
        .and_then(|()| {
            // The mode is applied again: the launcher's umask masked it at creation.
            apply_sattr(tree, &dir.child(&name), &args.attributes)
        });
    match result {
        Ok(()) => {
            let (obj, obj_attributes, dir_wcc) = created(tree, &dir, &before, &name);
            MKDIR3res::Ok(MKDIR3resok {
                obj,
                obj_attributes,
                dir_wcc,
            })
        }
        Err(e) => MKDIR3res::Err((
            e,
            MKDIR3resfail {
                dir_wcc: wcc(tree, &dir, Some(&before)),
            },
        )),
    }
}

fn symlink(tree: &Tree, args: SYMLINK3args<'_>) -> SYMLINK3res {
    let (dir, before, name) = match new_entry(tree, &args.where_) {
        Ok(entry) => entry,
        Err(refused) => {
            return SYMLINK3res::Err((
                refused.code,
                SYMLINK3resfail {
                    dir_wcc: refused.dir_wcc(tree),
                },
            ));
        }
    };
    let target = OsStr::from_bytes(args.symlink.symlink_data.0.as_ref());
    let result = tree
        .open(&dir, OFlag::O_PATH | OFlag::O_DIRECTORY)
        .and_then(|dirfd| symlinkat(target, &dirfd, OsStr::from_bytes(&name)).map_err(status));
    match result {
        Ok(()) => {
            let (obj, obj_attributes, dir_wcc) = created(tree, &dir, &before, &name);
            SYMLINK3res::Ok(SYMLINK3resok {
                obj,
                obj_attributes,
                dir_wcc,
            })
        }
        Err(e) => SYMLINK3res::Err((
            e,
            SYMLINK3resfail {
                dir_wcc: wcc(tree, &dir, Some(&before)),
            },
        )),
    }
}

fn unlink(tree: &Tree, object: &diropargs3<'_>, dir_flag: UnlinkatFlags) -> Result<(Node, FileStat), Refused> {
    let (dir, before, name) = new_entry(tree, object)?;
    let done = tree
        .open(&dir, OFlag::O_PATH | OFlag::O_DIRECTORY)
        .and_then(|dirfd| unlinkat(&dirfd, OsStr::from_bytes(&name), dir_flag).map_err(status));
    match done {
        Ok(()) => Ok((dir, before)),
        Err(e) => Err(Refused::new(e, Some((dir, before)))),
    }
}

fn remove(tree: &Tree, args: REMOVE3args<'_>, _: bool) -> REMOVE3res {
    match unlink(tree, &args.object, UnlinkatFlags::NoRemoveDir) {
        Ok((dir, before)) => REMOVE3res::Ok(REMOVE3resok {
            dir_wcc: wcc(tree, &dir, Some(&before)),
        }),
        Err(refused) => REMOVE3res::Err((
            refused.code,
            REMOVE3resfail {
                dir_wcc: refused.dir_wcc(tree),
            },
        )),
    }
}

fn rmdir(tree: &Tree, args: RMDIR3args<'_>) -> RMDIR3res {
    match unlink(tree, &args.object, UnlinkatFlags::RemoveDir) {
        Ok((dir, before)) => RMDIR3res::Ok(RMDIR3resok {
            dir_wcc: wcc(tree, &dir, Some(&before)),
        }),
        Err(refused) => RMDIR3res::Err((
            refused.code,
            RMDIR3resfail {
                dir_wcc: refused.dir_wcc(tree),
            },
        )),
    }
}

fn rename(tree: &Tree, args: RENAME3args<'_, '_>) -> RENAME3res {
    let from = new_entry(tree, &args.from);
    let to = new_entry(tree, &args.to);
    let ((from_dir, from_before, from_name), (to_dir, to_before, to_name)) = match (from, to) {
        (Ok(from), Ok(to)) => (from, to),
        (from, to) => {
            let code = from
                .as_ref()
                .err()
                .or(to.as_ref().err())
                .map_or(nfsstat3::NFS3ERR_IO, |r| r.code);
            let side = |r: Result<Entry, Refused>| match r {
                Ok((d, s, _)) => wcc(tree, &d, Some(&s)),
                Err(refused) => refused.dir_wcc(tree),
            };
            return RENAME3res::Err((
                code,
                RENAME3resfail {
                    fromdir_wcc: side(from),
                    todir_wcc: side(to),
                },
            ));
        }
    };
    if from_dir.export != to_dir.export {
        return RENAME3res::Err((
            nfsstat3::NFS3ERR_XDEV,
            RENAME3resfail {
                fromdir_wcc: wcc(tree, &from_dir, Some(&from_before)),
                todir_wcc: wcc(tree, &to_dir, Some(&to_before)),
            },
        ));
    }
    let result = tree
        .open(&from_dir, OFlag::O_PATH | OFlag::O_DIRECTORY)
        .and_then(|old| {
            let new = tree.open(&to_dir, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
            nix::fcntl::renameat(&old, OsStr::from_bytes(&from_name), &new, OsStr::from_bytes(&to_name)).map_err(status)
        });
    let fromdir_wcc = wcc(tree, &from_dir, Some(&from_before));
    let todir_wcc = wcc(tree, &to_dir, Some(&to_before));
    match result {
        Ok(()) => {
            tree.renamed(&from_dir.child(&from_name), &to_dir.child(&to_name));
            RENAME3res::Ok(RENAME3resok { fromdir_wcc, todir_wcc })
        }
        Err(e) => RENAME3res::Err((e, RENAME3resfail { fromdir_wcc, todir_wcc })),
    }
}

fn link(tree: &Tree, args: LINK3args<'_>) -> LINK3res {
    let target = tree.resolve(&args.file);
    let entry = new_entry(tree, &args.link);
    let ((node, _), (dir, before, name)) = match (target, entry) {
        (Ok(t), Ok(e)) => (t, e),
        (t, e) => {
            let code = t
                .as_ref()
                .err()
                .copied()
                .or(e.as_ref().err().map(|r| r.code))
                .unwrap_or(nfsstat3::NFS3ERR_IO);
            let linkdir_wcc = match e {
                Ok((d, s, _)) => wcc(tree, &d, Some(&s)),
                Err(refused) => refused.dir_wcc(tree),
            };
            return LINK3res::Err((
                code,
                LINK3resfail {
                    file_attributes: post_op_attr::None,
                    linkdir_wcc,
                },
            ));
        }
    };
    let result = (|| {
        if node.export != dir.export {
            return Err(nfsstat3::NFS3ERR_XDEV);
        }
        let (source_dir, source_name) = node.split().ok_or(nfsstat3::NFS3ERR_INVAL)?;
        let old = tree.open(&source_dir, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
        let new = tree.open(&dir, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
        linkat(
            &old,
            OsStr::from_bytes(&source_name),
            &new,
            OsStr::from_bytes(&name),
            AtFlags::empty(),
        )
        .map_err(status)
    })();
    let linkdir_wcc = wcc(tree, &dir, Some(&before));
    match result {
        Ok(()) => LINK3res::Ok(LINK3resok {
            file_attributes: post_op_of(tree, &node),
            linkdir_wcc,
        }),
        Err(e) => LINK3res::Err((
            e,
            LINK3resfail {
                file_attributes: post_op_of(tree, &node),
                linkdir_wcc,
            },
        )),
    }
}

/// Every entry of a folder but `.` and `..`, with its cookie: a hash of
/// its name, so the place a listing resumes from does not move when
/// entries are added or removed between calls (as `rm -r` does while it
/// reads). Sorted by cookie; never 0, which means "from the start".
fn entries(tree: &Tree, dir: &Node) -> Result<Vec<(u64, Vec<u8>, u64)>, nfsstat3> {
    let fd = tree.open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
    let mut listing = nix::dir::Dir::from_fd(fd).map_err(status)?;
    let mut names: Vec<(u64, Vec<u8>, u64)> = listing
        .iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_bytes() != b"." && e.file_name().to_bytes() != b"..")
        .map(|e| {
            let name = e.file_name().to_bytes().to_vec();
            (name_cookie(&name), name, e.ino())
        })
        .collect();
    names.sort();
    Ok(names)
}

/// FNV-1a of the name, with the low bit set so it is never 0.
fn name_cookie(name: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash | 1
}

fn cookie_verifier(stat: &FileStat) -> cookieverf3 {
    let mtime = fattr(stat).mtime;
    let mut bytes = [0u8; 8];
    bytes[..4].copy_from_slice(&mtime.seconds.to_be_bytes());
    bytes[4..].copy_from_slice(&mtime.nseconds.to_be_bytes());
    cookieverf3(bytes)
}

fn readdir(tree: &Tree, args: READDIR3args) -> READDIR3res<'static> {
    let result = tree.resolve(&args.dir).and_then(|(dir, stat)| {
        let names = entries(tree, &dir)?;
        let mut budget = args.count.saturating_sub(128) as usize;
        let mut list = Vec::new();
        let mut eof = true;
        for (cookie, name, ino) in names.into_iter().filter(|(cookie, ..)| *cookie > args.cookie) {
            let size = 24 + name.len().div_ceil(4) * 4;
            if size > budget {
                eof = false;
                break;
            }
            budget -= size;
            list.push(entry3 {
                fileid: ino,
                name: filename3(Opaque::owned(name)),
                cookie,
            });
        }
        Ok((stat, list, eof))
    });
    match result {
        Ok((stat, list, eof)) => READDIR3res::Ok(READDIR3resok {
            dir_attributes: post_op(Some(&stat)),
            cookieverf: cookie_verifier(&stat),
            reply: dirlist3 {
                entries: List(list),
                eof,
            },
        }),
        Err(e) => READDIR3res::Err((
            e,
            READDIR3resfail {
                dir_attributes: post_op_attr::None,
            },
        )),
    }
}

fn readdirplus(tree: &Tree, args: READDIRPLUS3args) -> READDIRPLUS3res<'static> {
    let result = tree.resolve(&args.dir).and_then(|(dir, stat)| {
        let names = entries(tree, &dir)?;
        let mut budget = args.maxcount.saturating_sub(128) as usize;
        let mut list = Vec::new();
        let mut eof = true;
        for (cookie, name, ino) in names.into_iter().filter(|(cookie, ..)| *cookie > args.cookie) {
            let size = 24 + name.len().div_ceil(4) * 4 + 88 + 4 + 28;
            if size > budget {
                eof = false;
                break;
            }
            budget -= size;
            let node = dir.child(&name);
            let (attrs, handle) = match tree.identify(&node) {
                Ok((s, identity)) => (post_op(Some(&s)), post_op_fh3::Some(tree.handle(&node, identity))),
                Err(_) => (post_op_attr::None, post_op_fh3::None),
            };
            list.push(entryplus3 {
                fileid: ino,
                name: filename3(Opaque::owned(name)),
                cookie,
                name_attributes: attrs,
                name_handle: handle,
            });
        }
        Ok((stat, list, eof))
    });
    match result {
        Ok((stat, list, eof)) => READDIRPLUS3res::Ok(READDIRPLUS3resok {
            dir_attributes: post_op(Some(&stat)),
            cookieverf: cookie_verifier(&stat),
            reply: dirlistplus3 {
                entries: List(list),
                eof,
            },
        }),
        Err(e) => READDIRPLUS3res::Err((
            e,
            READDIRPLUS3resfail {
                dir_attributes: post_op_attr::None,
            },
        )),
    }
}

fn fsstat(tree: &Tree, args: FSSTAT3args) -> FSSTAT3res {
    let result = tree.resolve(&args.fsroot).and_then(|(node, stat)| {
        let fd = tree
            .open(&node, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
            .or_else(|_| tree.open(&node, OFlag::O_RDONLY))?;
        let fs = nix::sys::statvfs::fstatvfs(&fd).map_err(status)?;
        Ok((stat, fs))
    });
    match result {
        Ok((stat, fs)) => {
            let block = fs.fragment_size().max(1);
            FSSTAT3res::Ok(FSSTAT3resok {
                obj_attributes: post_op(Some(&stat)),
                tbytes: fs.blocks() * block,
                fbytes: fs.blocks_free() * block,
                abytes: fs.blocks_available() * block,
                tfiles: fs.files(),
                ffiles: fs.files_free(),
                afiles: fs.files_available(),
                invarsec: 0,
            })
        }
        Err(e) => FSSTAT3res::Err((
            e,
            FSSTAT3resfail {
                obj_attributes: post_op_attr::None,
            },
        )),
    }
}

fn fsinfo(tree: &Tree, args: FSINFO3args) -> FSINFO3res {
    match tree.resolve(&args.fsroot) {
        Ok((_, stat)) => FSINFO3res::Ok(FSINFO3resok {
            obj_attributes: post_op(Some(&stat)),
            rtmax: MAX_IO,
            rtpref: MAX_IO,
            rtmult: 4096,
            wtmax: MAX_IO,
            wtpref: MAX_IO,
            wtmult: 4096,
            dtpref: 64 * 1024,
            maxfilesize: u64::MAX >> 1,
            time_delta: nfstime3 {
                seconds: 0,
                nseconds: 1,
            },
            properties: FSF3_LINK | FSF3_SYMLINK | FSF3_HOMOGENEOUS | FSF3_CANSETTIME,
        }),
        Err(e) => FSINFO3res::Err((
            e,
            FSINFO3resfail {
                obj_attributes: post_op_attr::None,
            },
        )),
    }
}

fn pathconf(tree: &Tree, args: PATHCONF3args) -> PATHCONF3res {
    match tree.resolve(&args.object) {
        Ok((_, stat)) => PATHCONF3res::Ok(PATHCONF3resok {
            obj_attributes: post_op(Some(&stat)),
            linkmax: 65_000,
            name_max: 255,
            no_trunc: true,
            chown_restricted: true,
            case_insensitive: false,
            case_preserving: true,
        }),
        Err(e) => PATHCONF3res::Err((
            e,
            PATHCONF3resfail {
                obj_attributes: post_op_attr::None,
            },
        )),
    }
}

fn commit(tree: &Tree, args: COMMIT3args) -> COMMIT3res {
    let result = tree.resolve(&args.file).and_then(|(node, before)| {
        writable(tree, &node)?;
        let file = open_for_write(tree, &node)?;
        nix::unistd::fsync(&file).map_err(status)?;
        Ok((node, before))
    });
    match result {
        Ok((node, before)) => COMMIT3res::Ok(COMMIT3resok {
            file_wcc: wcc(tree, &node, Some(&before)),
            verf: write_verifier(tree),
        }),
        Err(e) => COMMIT3res::Err((
            e,
            COMMIT3resfail {
                file_wcc: wcc_data::default(),
            },
        )),
    }
}
