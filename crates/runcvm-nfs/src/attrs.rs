//! File attributes in NFS's terms.

use crate::tree::Node;
use nfs3_types::nfs3::{fattr3, ftype3, nfstime3, post_op_attr, pre_op_attr, specdata3, wcc_attr, wcc_data};
use nix::sys::stat::FileStat;

fn time(seconds: i64, nanos: i64) -> nfstime3 {
    nfstime3 {
        seconds: u32::try_from(seconds).unwrap_or(0),
        nseconds: u32::try_from(nanos).unwrap_or(0),
    }
}

pub fn fattr(stat: &FileStat) -> fattr3 {
    let kind = match stat.st_mode & libc::S_IFMT {
        libc::S_IFDIR => ftype3::NF3DIR,
        libc::S_IFLNK => ftype3::NF3LNK,
        libc::S_IFBLK => ftype3::NF3BLK,
        libc::S_IFCHR => ftype3::NF3CHR,
        libc::S_IFSOCK => ftype3::NF3SOCK,
        libc::S_IFIFO => ftype3::NF3FIFO,
        _ => ftype3::NF3REG,
    };
    fattr3 {
        type_: kind,
        mode: stat.st_mode & 0o7777,
        nlink: u32::try_from(stat.st_nlink).unwrap_or(u32::MAX),
        uid: crate::idmap::client_uid(stat.st_uid),
        gid: crate::idmap::client_gid(stat.st_gid),
        size: u64::try_from(stat.st_size).unwrap_or(0),
        used: u64::try_from(stat.st_blocks).unwrap_or(0) * 512,
        rdev: specdata3 {
            specdata1: libc::major(stat.st_rdev),
            specdata2: libc::minor(stat.st_rdev),
        },
        fsid: stat.st_dev,
        fileid: stat.st_ino,
        atime: time(stat.st_atime, stat.st_atime_nsec),
        mtime: time(stat.st_mtime, stat.st_mtime_nsec),
        ctime: time(stat.st_ctime, stat.st_ctime_nsec),
    }
}

pub fn post_op(stat: Option<&FileStat>) -> post_op_attr {
    stat.map_or(post_op_attr::None, |s| post_op_attr::Some(fattr(s)))
}

/// The attributes of `node` now, if it can be read.
pub fn post_op_of(node: &Node) -> post_op_attr {
    post_op(node.stat().ok().as_ref())
}

pub fn pre_op(stat: Option<&FileStat>) -> pre_op_attr {
    stat.map_or(pre_op_attr::None, |s| {
        let attr = fattr(s);
        pre_op_attr::Some(wcc_attr {
            size: attr.size,
            mtime: attr.mtime,
            ctime: attr.ctime,
        })
    })
}

/// Weak cache consistency data for `node` around a change.
pub fn wcc(node: &Node, before: Option<&FileStat>) -> wcc_data {
    wcc_data {
        before: pre_op(before),
        after: post_op_of(node),
    }
}
