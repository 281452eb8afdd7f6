//! How big the image must be for a rootfs.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

const BLOCK: u64 = 4096;
const MIB: u64 = 1 << 20;
/// ext4 keeps an inode for every file; the table is sized at mkfs time.
const INODE_SIZE: u64 = 256;
/// Superblocks, group descriptors, bitmaps and reserved blocks of a small
/// ext4 without a journal stay well under this.
const FIXED_OVERHEAD_MIB: u64 = 16;

/// The blocks and inodes a tree needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContentSize {
    pub bytes: u64,
    pub inodes: u64,
}

impl ContentSize {
    pub fn add_file(&mut self, len: u64) {
        self.bytes += len.div_ceil(BLOCK) * BLOCK;
        self.inodes += 1;
    }
}

/// The image to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSize {
    pub mib: u64,
    pub inodes: u64,
}

impl DiskSize {
    /// Content plus a tenth for metadata growth, fixed overhead, the inode
    /// table, and `headroom_mib` of free space for the workload.
    pub fn for_content(content: ContentSize, headroom_mib: u64) -> Self {
        // Room for as many new files as an ordinary ext4 would give the
        // headroom (one inode per 16 KiB), on top of the existing ones.
        let inodes = (content.inodes + content.inodes / 4 + headroom_mib * MIB / 16384).max(4096);
        let bytes = content.bytes + content.bytes / 10 + inodes * INODE_SIZE;
        Self {
            mib: bytes.div_ceil(MIB) + FIXED_OVERHEAD_MIB + headroom_mib,
            inodes,
        }
    }

    pub fn bytes(self) -> u64 {
        self.mib * MIB
    }
}

/// Walks `root` without following symlinks, counting every entry.
pub fn measure_tree(root: &Path) -> std::io::Result<ContentSize> {
    let mut size = ContentSize::default();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        size.add_file(BLOCK);
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.is_file() {
                // Hard links share blocks but each name still costs an entry;
                // counting the blocks again only adds safe slack.
                size.add_file(meta.len().max(meta.blocks() * 512));
            } else {
                // Symlinks (short ones live in the inode), devices, fifos.
                size.add_file(meta.len().min(BLOCK));
            }
        }
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_to_blocks_and_add_headroom() {
        let mut content = ContentSize::default();
        content.add_file(1);
        content.add_file(4097);
        assert_eq!(content.bytes, 3 * BLOCK);
        assert_eq!(content.inodes, 2);
        let disk = DiskSize::for_content(content, 64);
        // Two files, plus one inode per 16 KiB of the 64 MiB headroom.
        assert_eq!(disk.inodes, 2 + 4096);
        // 12 KiB of blocks and 1 MiB of inode table round up to 2 MiB.
        assert_eq!(disk.mib, 2 + FIXED_OVERHEAD_MIB + 64);
    }

    #[test]
    fn large_trees_get_proportionally_more() {
        let content = ContentSize {
            bytes: 1000 * MIB,
            inodes: 100_000,
        };
        let disk = DiskSize::for_content(content, 0);
        assert!(disk.mib >= 1100, "{disk:?}");
        assert_eq!(disk.inodes, 125_000);
    }

    #[test]
    fn measures_a_tree() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/f"), vec![0u8; 10_000]).unwrap();
        std::os::unix::fs::symlink("sub/f", dir.path().join("link")).unwrap();
        let size = measure_tree(dir.path()).unwrap();
        assert_eq!(size.inodes, 4);
        assert!(size.bytes >= 2 * BLOCK + 3 * BLOCK, "{size:?}");
    }
}
