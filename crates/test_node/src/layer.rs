//! One image layer: a folder packed as a tar stream (owners and modes kept,
//! times fixed so the same folder gives the same digest), optionally
//! gzip-compressed, with the two digests an image needs (the blob's, and the
//! `diff_id` of the uncompressed tar).

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Every entry's modification time (2023-11-14), so layers are reproducible.
const MTIME: u64 = 1_700_000_000;

/// How a layer blob is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Compression {
    /// `application/vnd.oci.image.layer.v1.tar`
    None,
    /// `application/vnd.oci.image.layer.v1.tar+gzip`
    Gzip,
}

impl Compression {
    pub fn media_type(self) -> &'static str {
        match self {
            Self::None => "application/vnd.oci.image.layer.v1.tar",
            Self::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        }
    }
}

/// A packed layer.
#[derive(Debug, Clone)]
pub struct Layer {
    pub blob: Vec<u8>,
    pub compression: Compression,
    /// `sha256:…` of `blob`.
    pub digest: String,
    /// `sha256:…` of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: String,
}

/// Packs `rootfs` (its contents, not the folder itself) as one layer.
pub fn pack(rootfs: &Path, compression: Compression) -> Result<Layer> {
    let tar = tar_folder(rootfs).with_context(|| format!("packing {}", rootfs.display()))?;
    let diff_id = sha256_digest(&tar);
    let blob = match compression {
        Compression::None => tar,
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(&tar)?;
            encoder.finish()?
        }
    };
    Ok(Layer {
        digest: sha256_digest(&blob),
        blob,
        compression,
        diff_id,
    })
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut out = String::with_capacity(71);
    out.push_str("sha256:");
    for byte in hash {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

fn tar_folder(root: &Path) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)?.collect::<std::io::Result<_>>()?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let path = entry.path();
            let name = path.strip_prefix(root)?;
            let meta = entry.path().symlink_metadata()?;
            let mut header = tar::Header::new_gnu();
            header.set_mode(meta.mode() & 0o7777);
            header.set_uid(u64::from(meta.uid()));
            header.set_gid(u64::from(meta.gid()));
            header.set_mtime(MTIME);
            let kind = meta.file_type();
            if kind.is_dir() {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                builder.append_data(&mut header, name, std::io::empty())?;
                pending.push(path);
            } else if kind.is_symlink() {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                builder.append_link(&mut header, name, std::fs::read_link(&path)?)?;
            } else if kind.is_file() {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(meta.len());
                builder.append_data(&mut header, name, std::fs::File::open(&path)?)?;
            } else {
                bail!("{}: only folders, files and symlinks go into a layer", path.display());
            }
        }
    }
    Ok(builder.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_packs_reproducibly_with_owners_modes_and_links() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("bin")).expect("mkdir");
        std::fs::write(dir.path().join("bin/tool"), b"#!/bin/sh\n").expect("write");
        std::fs::set_permissions(
            dir.path().join("bin/tool"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        std::os::unix::fs::symlink("tool", dir.path().join("bin/alias")).expect("symlink");

        let first = pack(dir.path(), Compression::None).expect("pack");
        let second = pack(dir.path(), Compression::None).expect("pack again");
        assert_eq!(first.digest, second.digest);
        assert_eq!(first.digest, first.diff_id);

        let mut archive = tar::Archive::new(first.blob.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().expect("entries") {
            let entry = entry.expect("entry");
            let header = entry.header();
            seen.push((
                entry.path().expect("path").display().to_string(),
                header.entry_type(),
                header.mode().expect("mode"),
                header.mtime().expect("mtime"),
            ));
        }
        assert_eq!(
            seen,
            vec![
                ("bin".to_owned(), tar::EntryType::Directory, 0o755, MTIME),
                ("bin/alias".to_owned(), tar::EntryType::Symlink, 0o777, MTIME),
                ("bin/tool".to_owned(), tar::EntryType::Regular, 0o755, MTIME),
            ]
        );

        let gzip = pack(dir.path(), Compression::Gzip).expect("gzip");
        assert_eq!(gzip.diff_id, first.diff_id);
        assert_ne!(gzip.digest, first.digest);
        assert!(gzip.blob.starts_with(&[0x1f, 0x8b]));
    }
}
