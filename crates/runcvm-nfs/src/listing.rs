//! Folder listings as READDIR pages them: every entry with a cookie that is
//! a hash of its name, sorted by cookie, so the place a listing resumes
//! from does not move when entries come and go between calls (as `rm -r`
//! does while it reads).
//!
//! A folder of n entries is read in n / page calls; reading and sorting it
//! again for each would make listing it quadratic. So the sorted listing of
//! a folder that has not changed lately is kept and each page is found in
//! it by binary search. "Lately" because a folder's mtime is the only sign
//! of change and it ticks coarsely (the kernel's clock tick): a listing
//! taken within [`SETTLED`] of the folder's last change might miss a change
//! made in the same tick, so such a folder is read anew for every page.

use nix::sys::stat::FileStat;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// One entry: `(cookie, name, inode number)`.
pub type Entry = (u64, Vec<u8>, u64);

/// How long after its last change a folder's listing may be kept.
const SETTLED: Duration = Duration::from_secs(1);
/// Listings kept at most (the folders being read right now)...
const KEPT: usize = 16;
/// ...and the bytes they take at most; a folder whose listing would take
/// more than half of it is read anew for every page.
const KEPT_BYTES: usize = 16 << 20;

/// Which folder, as of which change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Version {
    dev: u64,
    ino: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Version {
    fn of(stat: &FileStat) -> Self {
        Self {
            dev: stat.st_dev,
            ino: stat.st_ino,
            mtime: (stat.st_mtime, stat.st_mtime_nsec),
            ctime: (stat.st_ctime, stat.st_ctime_nsec),
        }
    }

    fn settled(&self, now: SystemTime) -> bool {
        let changed = |(seconds, nanos): (i64, i64)| {
            let seconds = u64::try_from(seconds).unwrap_or(0);
            let nanos = u32::try_from(nanos).unwrap_or(0);
            SystemTime::UNIX_EPOCH + Duration::new(seconds, nanos)
        };
        now.duration_since(changed(self.mtime).max(changed(self.ctime)))
            .is_ok_and(|age| age >= SETTLED)
    }
}

/// The listings kept, most recently used last.
#[derive(Debug, Default)]
pub struct Listings {
    kept: Mutex<Vec<(Version, Arc<Vec<Entry>>)>>,
}

impl Listings {
    /// The sorted listing of the folder whose attributes are `stat`, kept
    /// or read now with `read`.
    pub fn get(
        &self,
        stat: &FileStat,
        read: impl FnOnce() -> Result<Vec<Entry>, nix::errno::Errno>,
    ) -> Result<Arc<Vec<Entry>>, nix::errno::Errno> {
        self.get_as_of(SystemTime::now(), stat, read)
    }

    fn get_as_of(
        &self,
        now: SystemTime,
        stat: &FileStat,
        read: impl FnOnce() -> Result<Vec<Entry>, nix::errno::Errno>,
    ) -> Result<Arc<Vec<Entry>>, nix::errno::Errno> {
        let version = Version::of(stat);
        if let Ok(mut kept) = self.kept.lock() {
            if let Some(at) = kept.iter().position(|(v, _)| *v == version) {
                let found = kept.remove(at);
                let listing = Arc::clone(&found.1);
                kept.push(found);
                return Ok(listing);
            }
        }
        let mut entries = read()?;
        entries.sort_unstable();
        let listing = Arc::new(entries);
        if version.settled(now) && bytes(&listing) <= KEPT_BYTES / 2 {
            if let Ok(mut kept) = self.kept.lock() {
                kept.retain(|(v, _)| (v.dev, v.ino) != (version.dev, version.ino));
                while kept.len() >= KEPT
                    || kept.iter().map(|(_, l)| bytes(l)).sum::<usize>() + bytes(&listing) > KEPT_BYTES
                {
                    kept.remove(0);
                }
                kept.push((version, Arc::clone(&listing)));
            }
        }
        Ok(listing)
    }
}

/// What a listing takes in memory, about.
fn bytes(listing: &[Entry]) -> usize {
    listing.iter().map(|(_, name, _)| name.len() + 48).sum()
}

/// The entries after `cookie` (0: from the start).
pub fn after(listing: &[Entry], cookie: u64) -> &[Entry] {
    &listing[listing.partition_point(|(c, ..)| *c <= cookie)..]
}

/// FNV-1a of the name, with the low bit set so it is never 0.
pub fn name_cookie(name: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash | 1
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn stat_of(path: &std::path::Path) -> FileStat {
        nix::sys::stat::stat(path).unwrap()
    }

    #[test]
    fn a_settled_folder_is_read_once_and_a_changed_one_again() {
        let dir = tempfile::tempdir().unwrap();
        let listings = Listings::default();
        let reads = std::cell::Cell::new(0);
        let read = || {
            reads.set(reads.get() + 1);
            Ok(vec![(3, b"c".to_vec(), 1), (1, b"a".to_vec(), 2)])
        };
        let stat = stat_of(dir.path());
        let changed = SystemTime::UNIX_EPOCH
            + Duration::new(
                u64::try_from(stat.st_ctime).unwrap(),
                u32::try_from(stat.st_ctime_nsec).unwrap(),
            );
        // Changed half a second ago: read for every page.
        let recently = changed + SETTLED / 2;
        listings.get_as_of(recently, &stat, read).unwrap();
        listings.get_as_of(recently, &stat, read).unwrap();
        assert_eq!(reads.get(), 2);
        // Settled: read once, then kept.
        let later = changed + SETTLED * 2;
        let first = listings.get_as_of(later, &stat, read).unwrap();
        assert_eq!(first.iter().map(|e| e.0).collect::<Vec<_>>(), vec![1, 3]);
        listings.get_as_of(later, &stat, read).unwrap();
        assert_eq!(reads.get(), 3, "a settled folder's listing is kept");
        // Changed since: its mtime and ctime moved, so it is read again.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(dir.path().join("new"), b"").unwrap();
        listings
            .get_as_of(later + SETTLED * 2, &stat_of(dir.path()), read)
            .unwrap();
        assert_eq!(reads.get(), 4, "a changed folder is read again");
    }

    #[test]
    fn a_page_starts_after_its_cookie() {
        let listing = vec![(1, b"a".to_vec(), 0), (5, b"b".to_vec(), 0), (9, b"c".to_vec(), 0)];
        assert_eq!(after(&listing, 0).len(), 3);
        assert_eq!(after(&listing, 5)[0].0, 9);
        // A cookie whose entry went: the page starts where it would be.
        assert_eq!(after(&listing, 6)[0].0, 9);
        assert!(after(&listing, 9).is_empty());
    }
}
