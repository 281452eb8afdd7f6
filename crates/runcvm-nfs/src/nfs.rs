//! The NFSv3 procedures (RFC 1813), each run with the caller's credentials.

use crate::attrs::{fattr, post_op, post_op_of, wcc};
use crate::creds::become_caller;
use crate::listing::{after, name_cookie};
use crate::rpc::{Call, PackDyn, args};
use crate::tree::{Node, Tree, check_name, status};
use nfs3_types::nfs3::*;
use nfs3_types::xdr_codec::{List, Opaque, Void};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FchmodatFlags, FileStat, Mode, UtimensatFlags, fchmodat, mkdirat, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, linkat, symlinkat, unlinkat};
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;

/// Largest READ and WRITE the server offers.
const MAX_IO: u32 = 1 << 20;

fn write_verifier(tree: &Tree) -> writeverf3 {
    writeverf3(tree.writeback.verifier())
}

/// READ, WRITE, COMMIT and truncation are for regular files: a folder is
/// `NFS3ERR_ISDIR`, anything else `NFS3ERR_INVAL` (as knfsd; opening a FIFO
/// would wait for a writer for ever).
fn regular(stat: &FileStat) -> Result<(), nfsstat3> {
    match stat.st_mode & libc::S_IFMT {
        libc::S_IFREG => Ok(()),
        libc::S_IFDIR => Err(nfsstat3::NFS3ERR_ISDIR),
        _ => Err(nfsstat3::NFS3ERR_INVAL),
    }
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
/// knfsd lets them. The rule is checked and applied on the inode the
/// handle holds, so a rename on the host cannot point it at another file.
fn open_for_write(tree: &Tree, node: &Node) -> Result<OwnedFd, nfsstat3> {
    regular(&node.stat()?)?;
    match tree.reopen(node, OFlag::O_WRONLY) {
        Err(nfsstat3::NFS3ERR_ACCES) => {
            let stat = node.stat()?;
            if crate::creds::caller_uid() != Some(stat.st_uid) {
                return Err(nfsstat3::NFS3ERR_ACCES);
            }
            match crate::creds::as_root(|| tree.reopen(node, OFlag::O_WRONLY)) {
                // Root's open needs CAP_DAC_OVERRIDE, which a pod that
                // dropped its capabilities does not have.
                Err(nfsstat3::NFS3ERR_ACCES | nfsstat3::NFS3ERR_PERM) => owner_lends_itself_write(tree, node),
                other => other,
            }
        }
        other => other,
    }
}

/// The owner's override without CAP_DAC_OVERRIDE: as the owner, who may
/// chmod its own file, add u+w for the open and take it back. One at a
/// time, and never during a SETATTR's chmod, so no restore undoes another
/// mode change. (The kernel clears set-group-ID in an owner's chmod when
/// the owner is not in the file's group: such a file loses the bit here.)
fn owner_lends_itself_write(tree: &Tree, node: &Node) -> Result<OwnedFd, nfsstat3> {
    let _one_at_a_time = tree.owner_override.lock().map_err(|_| nfsstat3::NFS3ERR_SERVERFAULT)?;
    let mode = node.stat()?.st_mode & 0o7777;
    chmod_node(node, mode | 0o200)?;
    let opened = tree.reopen(node, OFlag::O_WRONLY);
    if let Err(e) = chmod_node(node, mode) {
        runcvm_log::warn!(
            "nfs: cannot restore mode {mode:o} of {} after its owner's write: {e:?}; it stays writable by its owner",
            node.rel.display()
        );
    }
    opened
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
        let obj_wcc = node.map_or_else(wcc_data::default, |n| wcc(n, before));
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
            obj_wcc: wcc(&node, Some(&before)),
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
    if attrs.uid.is_some() || attrs.gid.is_some() {
        let (uid, gid) = owner(attrs);
        fchownat(node.fd(), "", uid, gid, AtFlags::AT_EMPTY_PATH).map_err(status)?;
    }
    if let Nfs3Option::Some(mode) = attrs.mode {
        let _not_during_an_override = tree.owner_override.lock().map_err(|_| nfsstat3::NFS3ERR_SERVERFAULT)?;
        chmod_node(node, mode)?;
    }
    set_times(node, attrs)
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

/// chmod of the inode `node` holds.
fn chmod_node(node: &Node, mode: u32) -> Result<(), nfsstat3> {
    if node.stat()?.st_mode & libc::S_IFMT == libc::S_IFLNK {
        return Err(nfsstat3::NFS3ERR_INVAL);
    }
    // An O_PATH descriptor cannot be fchmod'ed; its /proc link reaches
    // exactly the inode it holds.
    fchmodat(
        nix::fcntl::AT_FDCWD,
        node.proc_path().as_str(),
        Mode::from_bits_truncate(mode & 0o7777),
        FchmodatFlags::FollowSymlink,
    )
    .map_err(status)
}

/// The attributes of a new object, less its mode: the serving thread's
/// umask is 0, so it was created with exactly the mode asked for, and a
/// chmod now would clear a set-group-ID bit inherited from its folder.
fn after_creation(attrs: &sattr3) -> sattr3 {
    sattr3 {
        mode: Nfs3Option::None,
        ..attrs.clone()
    }
}

fn set_times(node: &Node, attrs: &sattr3) -> Result<(), nfsstat3> {
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
    utimensat(
        nix::fcntl::AT_FDCWD,
        node.proc_path().as_str(),
        &atime,
        &mtime,
        UtimensatFlags::FollowSymlink,
    )
    .map_err(status)
}

fn lookup(tree: &Tree, args: LOOKUP3args<'_>) -> LOOKUP3res {
    let (dir, dir_stat) = match tree.resolve(&args.what.dir) {
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
    let found = match name {
        b"." => Ok((dir.clone(), dir_stat)),
        b".." => tree.parent(&dir),
        _ => check_name(name).and_then(|()| tree.lookup(&dir, name)),
    };
    match found {
        Ok((node, stat)) => LOOKUP3res::Ok(LOOKUP3resok {
            object: tree.handle(&node),
            obj_attributes: post_op(Some(&stat)),
            dir_attributes: post_op_of(&dir),
        }),
        Err(e) => LOOKUP3res::Err((
            e,
            LOOKUP3resfail {
                dir_attributes: post_op_of(&dir),
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
    // Ask the kernel as the caller, of the inode itself: AT_EACCESS checks
    // with the thread's current (fs) credentials; without it faccessat uses
    // the real uid, root.
    let path = node.proc_path();
    let granted = |mode: nix::unistd::AccessFlags| {
        nix::unistd::faccessat(nix::fcntl::AT_FDCWD, path.as_str(), mode, AtFlags::AT_EACCESS).is_ok()
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
        if stat.st_mode & libc::S_IFMT != libc::S_IFLNK {
            return Err(nfsstat3::NFS3ERR_INVAL);
        }
        let target = nix::fcntl::readlinkat(node.fd(), "").map_err(status)?;
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
        regular(&stat)?;
        let file = tree.reopen(&node, OFlag::O_RDONLY)?;
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
        let size = nix::sys::stat::fstat(&file).map_or(0, |s| u64::try_from(s.st_size).unwrap_or(0));
        Ok((node, data, args.offset + filled as u64 >= size))
    });
    match result {
        Ok((node, data, eof)) => READ3res::Ok(READ3resok {
            file_attributes: post_op_of(&node),
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
        // FILE_SYNC and DATA_SYNC promise the data (and for FILE_SYNC the
        // metadata) is on stable storage when the reply arrives; UNSTABLE
        // waits for COMMIT (the client's fsync or close). The reply says
        // what was done.
        let committed = tree.writeback.written(node.key(), file, args.stable)?;
        Ok((written, committed))
    });
    match result {
        Ok((written, committed)) => WRITE3res::Ok(WRITE3resok {
            file_wcc: wcc(&node, Some(&before)),
            count: u32::try_from(written).unwrap_or(0),
            committed,
            verf: write_verifier(tree),
        }),
        Err(e) => WRITE3res::Err((
            e,
            WRITE3resfail {
                file_wcc: wcc(&node, Some(&before)),
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

    fn dir_wcc(&self) -> wcc_data {
        self.dir
            .as_ref()
            .map_or_else(wcc_data::default, |found| wcc(&found.0, Some(&found.1)))
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
fn created(
    tree: &Tree,
    dir: &Node,
    before: &FileStat,
    new: Option<&(Node, FileStat)>,
) -> (post_op_fh3, post_op_attr, wcc_data) {
    match new {
        Some((node, stat)) => (
            post_op_fh3::Some(tree.handle(node)),
            post_op(Some(stat)),
            wcc(dir, Some(before)),
        ),
        None => (post_op_fh3::None, post_op_attr::None, wcc(dir, Some(before))),
    }
}

/// An EXCLUSIVE create's verifier as knfsd keeps it: in the new file's
/// mtime and atime seconds (high bits clear, which some file systems
/// cannot store), until the client's SETATTR that follows sets the real
/// ones. A retransmitted create finds it and succeeds.
fn verifier_times(verifier: &createverf3) -> (i64, i64) {
    let word = |at: usize| {
        let bytes: [u8; 4] = verifier.0[at..at + 4].try_into().unwrap_or_default();
        i64::from(u32::from_be_bytes(bytes) & 0x7fff_ffff)
    };
    (word(0), word(4))
}

/// The file an earlier EXCLUSIVE create with this verifier made, if the
/// existing `name` is it (as knfsd: its times hold the verifier and it is
/// still empty).
fn same_exclusive_create(tree: &Tree, dir: &Node, name: &[u8], verifier: &createverf3) -> Option<(Node, FileStat)> {
    let (node, stat) = tree.lookup(dir, name).ok()?;
    let (mtime, atime) = verifier_times(verifier);
    (stat.st_mode & libc::S_IFMT == libc::S_IFREG
        && stat.st_mtime == mtime
        && stat.st_atime == atime
        && stat.st_size == 0)
        .then_some((node, stat))
}

/// An UNCHECKED create of a name that exists: the file it is, with only the
/// size applied (as knfsd); anything but a regular file is `NFS3ERR_EXIST`.
fn existing_file(tree: &Tree, dir: &Node, name: &[u8], attrs: &sattr3) -> Result<(Node, FileStat), nfsstat3> {
    let (node, stat) = tree.lookup(dir, name)?;
    if stat.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(nfsstat3::NFS3ERR_EXIST);
    }
    let size_only = sattr3 {
        size: attrs.size,
        ..sattr3::default()
    };
    apply_sattr(tree, &node, &size_only)?;
    let stat = node.stat()?;
    Ok((node, stat))
}

/// A new file, made with `O_EXCL` (never opening what exists, which for a
/// FIFO would wait for a writer): its node, and its descriptor.
fn new_file(tree: &Tree, dir: &Node, name: &[u8], mode: u32) -> Result<(Node, OwnedFd), nfsstat3> {
    let file = nix::fcntl::openat(
        dir.fd(),
        OsStr::from_bytes(name),
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(mode & 0o7777),
    )
    .map_err(status)?;
    crate::creds::restore_mode(dir.fd(), OsStr::from_bytes(name), mode);
    let (node, _) = tree.lookup(dir, name)?;
    Ok((node, file))
}

fn create(tree: &Tree, args: CREATE3args<'_>) -> CREATE3res {
    let (dir, before, name) = match new_entry(tree, &args.where_) {
        Ok(entry) => entry,
        Err(refused) => {
            return CREATE3res::Err((
                refused.code,
                CREATE3resfail {
                    dir_wcc: refused.dir_wcc(),
                },
            ));
        }
    };
    let mode_of = |attrs: &sattr3| match attrs.mode {
        Nfs3Option::Some(m) => m,
        Nfs3Option::None => 0o644,
    };
    let result = match &args.how {
        createhow3::UNCHECKED(attrs) | createhow3::GUARDED(attrs) => {
            match new_file(tree, &dir, &name, mode_of(attrs)) {
                Ok((node, _)) => apply_sattr(tree, &node, &after_creation(attrs))
                    .and_then(|()| node.stat())
                    .map(|stat| (node, stat)),
                Err(nfsstat3::NFS3ERR_EXIST) if matches!(args.how, createhow3::UNCHECKED(_)) => {
                    existing_file(tree, &dir, &name, attrs)
                }
                Err(e) => Err(e),
            }
        }
        // As knfsd: no mode until the client's SETATTR, and the verifier in
        // the times until then.
        createhow3::EXCLUSIVE(verifier) => match new_file(tree, &dir, &name, 0) {
            Ok((node, file)) => {
                let (mtime, atime) = verifier_times(verifier);
                let stamped = nix::sys::stat::futimens(&file, &TimeSpec::new(atime, 0), &TimeSpec::new(mtime, 0));
                match stamped.map_err(status).and_then(|()| node.stat()) {
                    Ok(stat) => Ok((node, stat)),
                    Err(e) => {
                        // A file a retransmission could not recognise would
                        // answer every retry with NFS3ERR_EXIST.
                        let _ = unlinkat(dir.fd(), OsStr::from_bytes(&name), UnlinkatFlags::NoRemoveDir);
                        Err(e)
                    }
                }
            }
            Err(nfsstat3::NFS3ERR_EXIST) => {
                same_exclusive_create(tree, &dir, &name, verifier).ok_or(nfsstat3::NFS3ERR_EXIST)
            }
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(new) => {
            let (obj, obj_attributes, dir_wcc) = created(tree, &dir, &before, Some(&new));
            CREATE3res::Ok(CREATE3resok {
                obj,
                obj_attributes,
                dir_wcc,
            })
        }
        Err(e) => CREATE3res::Err((
            e,
            CREATE3resfail {
                dir_wcc: wcc(&dir, Some(&before)),
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
                    dir_wcc: refused.dir_wcc(),
                },
            ));
        }
    };
    let mode = if let Nfs3Option::Some(m) = args.attributes.mode {
        m
    } else {
        0o755
    };
    let result = mkdirat(
        dir.fd(),
        OsStr::from_bytes(&name),
        Mode::from_bits_truncate(mode & 0o7777),
    )
    .map(|()| crate::creds::restore_mode(dir.fd(), OsStr::from_bytes(&name), mode))
    .map_err(status)
    .and_then(|()| {
        let (node, _) = tree.lookup(&dir, &name)?;
        apply_sattr(tree, &node, &after_creation(&args.attributes))?;
        let stat = node.stat()?;
        Ok((node, stat))
    });
    match result {
        Ok(new) => {
            let (obj, obj_attributes, dir_wcc) = created(tree, &dir, &before, Some(&new));
            MKDIR3res::Ok(MKDIR3resok {
                obj,
                obj_attributes,
                dir_wcc,
            })
        }
        Err(e) => MKDIR3res::Err((
            e,
            MKDIR3resfail {
                dir_wcc: wcc(&dir, Some(&before)),
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
                    dir_wcc: refused.dir_wcc(),
                },
            ));
        }
    };
    let target = OsStr::from_bytes(args.symlink.symlink_data.0.as_ref());
    let result = symlinkat(target, dir.fd(), OsStr::from_bytes(&name)).map_err(status);
    match result {
        Ok(()) => {
            let new = tree.lookup(&dir, &name).ok();
            let (obj, obj_attributes, dir_wcc) = created(tree, &dir, &before, new.as_ref());
            SYMLINK3res::Ok(SYMLINK3resok {
                obj,
                obj_attributes,
                dir_wcc,
            })
        }
        Err(e) => SYMLINK3res::Err((
            e,
            SYMLINK3resfail {
                dir_wcc: wcc(&dir, Some(&before)),
            },
        )),
    }
}

fn unlink(tree: &Tree, object: &diropargs3<'_>, dir_flag: UnlinkatFlags) -> Result<(Node, FileStat), Refused> {
    let (dir, before, name) = new_entry(tree, object)?;
    // Held across the unlink, to forget it if that was its last name.
    let going = tree.lookup(&dir, &name).ok();
    match unlinkat(dir.fd(), OsStr::from_bytes(&name), dir_flag).map_err(status) {
        Ok(()) => {
            if let Some((node, _)) = going {
                tree.forget_if_deleted(&node);
            }
            Ok((dir, before))
        }
        Err(e) => Err(Refused::new(e, Some((dir, before)))),
    }
}

fn remove(tree: &Tree, args: REMOVE3args<'_>, _: bool) -> REMOVE3res {
    match unlink(tree, &args.object, UnlinkatFlags::NoRemoveDir) {
        Ok((dir, before)) => REMOVE3res::Ok(REMOVE3resok {
            dir_wcc: wcc(&dir, Some(&before)),
        }),
        Err(refused) => REMOVE3res::Err((
            refused.code,
            REMOVE3resfail {
                dir_wcc: refused.dir_wcc(),
            },
        )),
    }
}

fn rmdir(tree: &Tree, args: RMDIR3args<'_>) -> RMDIR3res {
    match unlink(tree, &args.object, UnlinkatFlags::RemoveDir) {
        Ok((dir, before)) => RMDIR3res::Ok(RMDIR3resok {
            dir_wcc: wcc(&dir, Some(&before)),
        }),
        Err(refused) => RMDIR3res::Err((
            refused.code,
            RMDIR3resfail {
                dir_wcc: refused.dir_wcc(),
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
                Ok((d, s, _)) => wcc(&d, Some(&s)),
                Err(refused) => refused.dir_wcc(),
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
                fromdir_wcc: wcc(&from_dir, Some(&from_before)),
                todir_wcc: wcc(&to_dir, Some(&to_before)),
            },
        ));
    }
    // What the rename replaces, to forget it if that was its last name.
    let replaced = tree.lookup(&to_dir, &to_name).ok();
    let result = nix::fcntl::renameat(
        from_dir.fd(),
        OsStr::from_bytes(&from_name),
        to_dir.fd(),
        OsStr::from_bytes(&to_name),
    )
    .map_err(status);
    let fromdir_wcc = wcc(&from_dir, Some(&from_before));
    let todir_wcc = wcc(&to_dir, Some(&to_before));
    match result {
        Ok(()) => {
            if let Some((node, _)) = replaced {
                tree.forget_if_deleted(&node);
            }
            let name = |bytes: &[u8]| std::path::PathBuf::from(OsStr::from_bytes(bytes));
            tree.renamed(
                from_dir.export,
                &from_dir.rel.join(name(&from_name)),
                &to_dir.rel.join(name(&to_name)),
            );
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
                Ok((d, s, _)) => wcc(&d, Some(&s)),
                Err(refused) => refused.dir_wcc(),
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
    let result = if node.export == dir.export {
        // The inode itself, through its /proc link: linkat's AT_EMPTY_PATH
        // would need CAP_DAC_READ_SEARCH.
        linkat(
            nix::fcntl::AT_FDCWD,
            node.proc_path().as_str(),
            dir.fd(),
            OsStr::from_bytes(&name),
            AtFlags::AT_SYMLINK_FOLLOW,
        )
        .map_err(status)
    } else {
        Err(nfsstat3::NFS3ERR_XDEV)
    };
    let linkdir_wcc = wcc(&dir, Some(&before));
    match result {
        Ok(()) => LINK3res::Ok(LINK3resok {
            file_attributes: post_op_of(&node),
            linkdir_wcc,
        }),
        Err(e) => LINK3res::Err((
            e,
            LINK3resfail {
                file_attributes: post_op_of(&node),
                linkdir_wcc,
            },
        )),
    }
}

/// Every entry of a folder but `.` and `..`, with its cookie (`listing.rs`),
/// sorted by cookie.
fn entries(tree: &Tree, dir: &Node, stat: &FileStat) -> Result<std::sync::Arc<Vec<crate::listing::Entry>>, nfsstat3> {
    let fd = tree.reopen(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
    tree.listings
        .get(stat, || {
            let mut listing = nix::dir::Dir::from_fd(fd)?;
            Ok(listing
                .iter()
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_bytes() != b"." && e.file_name().to_bytes() != b"..")
                .map(|e| {
                    let name = e.file_name().to_bytes().to_vec();
                    (name_cookie(&name), name, e.ino())
                })
                .collect())
        })
        .map_err(status)
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
        let names = entries(tree, &dir, &stat)?;
        let mut budget = args.count.min(MAX_IO).saturating_sub(128) as usize;
        let mut list = Vec::new();
        let mut eof = true;
        for (cookie, name, ino) in after(&names, args.cookie) {
            let size = 24 + name.len().div_ceil(4) * 4;
            if size > budget {
                eof = false;
                break;
            }
            budget -= size;
            list.push(entry3 {
                fileid: *ino,
                name: filename3(Opaque::owned(name.clone())),
                cookie: *cookie,
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
        let names = entries(tree, &dir, &stat)?;
        let mut budget = args.maxcount.min(MAX_IO).saturating_sub(128) as usize;
        let mut list = Vec::new();
        let mut eof = true;
        for (cookie, name, ino) in after(&names, args.cookie) {
            let size = 24 + name.len().div_ceil(4) * 4 + 88 + 4 + 28;
            if size > budget {
                eof = false;
                break;
            }
            budget -= size;
            let (attrs, handle) = match tree.lookup(&dir, name) {
                Ok((node, s)) => (post_op(Some(&s)), post_op_fh3::Some(tree.handle(&node))),
                Err(_) => (post_op_attr::None, post_op_fh3::None),
            };
            list.push(entryplus3 {
                fileid: *ino,
                name: filename3(Opaque::owned(name.clone())),
                cookie: *cookie,
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
        let fs = nix::sys::statvfs::fstatvfs(node.fd()).map_err(status)?;
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
        regular(&before)?;
        let verifier = tree.writeback.commit(node.key(), || open_for_write(tree, &node))?;
        Ok((node, before, verifier))
    });
    match result {
        Ok((node, before, verifier)) => COMMIT3res::Ok(COMMIT3resok {
            file_wcc: wcc(&node, Some(&before)),
            verf: writeverf3(verifier),
        }),
        Err(e) => COMMIT3res::Err((
            e,
            COMMIT3resfail {
                file_wcc: wcc_data::default(),
            },
        )),
    }
}
