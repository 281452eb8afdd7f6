//! What the server remembers of the objects it has handed out handles for:
//! a bounded table, so a guest that creates and deletes files for ever
//! keeps the launcher at a flat size.
//!
//! Each object the guest has a handle for is kept by inode, with where it
//! was last seen (a hint) and, for the most recently used ones, a pinned
//! `O_PATH` descriptor: a pinned object is found wherever it moves (a
//! host-side rename, a hard link whose first name went) as long as its
//! inode lives. Past the pin budget the oldest descriptors are let go
//! (each one also pins the inode of a file deleted on the host, and the
//! launcher has only so many descriptors); past the table's size the
//! oldest entries are forgotten. The tree finds a forgotten object again by
//! its last path, or by searching its export. Paths are hints, and bounded
//! too: one longer than [`MAX_HINT`] is not kept (folders nest without
//! limit), and all of them together take at most `Bounds::path_bytes`.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `(export, dev, ino)`: one inode seen through one export.
pub type Key = (usize, u64, u64);

/// The longest path kept as a hint (`PATH_MAX`).
pub const MAX_HINT: usize = 4096;

/// The table's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Entries remembered at most.
    pub known: usize,
    /// Descriptors pinned at most.
    pub pinned: usize,
    /// Bytes of path hints kept at most.
    pub path_bytes: usize,
}

impl Bounds {
    /// Sized for the launcher: the table stays under a few MiB, and a
    /// quarter of the descriptors the process may open are pins (between
    /// 64 and 4096).
    pub fn for_this_process() -> Self {
        let mut limit = libc::rlimit {
            rlim_cur: 1024,
            rlim_max: 1024,
        };
        // SAFETY: getrlimit writes into `limit`, alive for the call.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
            limit.rlim_cur = 1024;
        }
        let quarter = usize::try_from(limit.rlim_cur / 4).unwrap_or(4096);
        Self {
            known: 65_536,
            pinned: quarter.clamp(64, 4096),
            path_bytes: 8 << 20,
        }
    }
}

/// One remembered object.
#[derive(Debug, Clone)]
pub struct Known {
    /// The birth time its handle carries.
    pub birth: u64,
    /// Where it was last seen, relative to its export's root.
    pub rel: PathBuf,
    /// The object itself, while pinned.
    pub fd: Option<Arc<OwnedFd>>,
    used: u64,
}

#[derive(Debug)]
pub struct Table {
    bounds: Bounds,
    map: HashMap<Key, Known>,
    pinned: usize,
    path_bytes: usize,
    clock: u64,
}

/// A path as a hint: none (empty) where it is too long to keep.
fn hint(rel: PathBuf) -> PathBuf {
    if rel.as_os_str().len() > MAX_HINT {
        PathBuf::new()
    } else {
        rel
    }
}

impl Table {
    pub fn new(bounds: Bounds) -> Self {
        Self {
            bounds,
            map: HashMap::new(),
            pinned: 0,
            path_bytes: 0,
            clock: 0,
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Remembers an object the guest now has a handle for, pinned.
    pub fn remember(&mut self, key: Key, birth: u64, rel: PathBuf, fd: Arc<OwnedFd>) {
        let used = self.tick();
        let known = Known {
            birth,
            rel: hint(rel),
            fd: Some(fd),
            used,
        };
        self.path_bytes += known.rel.as_os_str().len();
        if let Some(old) = self.map.insert(key, known) {
            self.let_go(&old);
        }
        self.pinned += 1;
        self.bound();
    }

    /// What is remembered of `key`, counted as a use.
    pub fn get(&mut self, key: &Key) -> Option<Known> {
        let used = self.tick();
        let known = self.map.get_mut(key)?;
        known.used = used;
        Some(known.clone())
    }

    /// The object is gone (deleted, or its handle is stale).
    pub fn forget(&mut self, key: &Key) {
        if let Some(old) = self.map.remove(key) {
            self.let_go(&old);
        }
    }

    /// Counts out what an entry held.
    fn let_go(&mut self, old: &Known) {
        if old.fd.is_some() {
            self.pinned -= 1;
        }
        self.path_bytes -= old.rel.as_os_str().len();
    }

    /// After a rename by the guest, every path under `from` is under `to`.
    pub fn renamed(&mut self, export: usize, from: &Path, to: &Path) {
        for known in self.map.iter_mut().filter(|(key, _)| key.0 == export).map(|(_, k)| k) {
            if let Ok(rest) = known.rel.strip_prefix(from) {
                let moved = hint(if rest.as_os_str().is_empty() {
                    to.to_owned()
                } else {
                    to.join(rest)
                });
                self.path_bytes = self.path_bytes - known.rel.as_os_str().len() + moved.as_os_str().len();
                known.rel = moved;
            }
        }
        self.bound();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    #[cfg(test)]
    pub fn pinned(&self) -> usize {
        self.pinned
    }

    /// Lets the least recently used quarter go, in one pass, when a bound
    /// is crossed: amortised, each remember costs O(log n).
    fn bound(&mut self) {
        if self.pinned > self.bounds.pinned {
            let mut by_age: Vec<(u64, Key)> = self
                .map
                .iter()
                .filter(|(_, k)| k.fd.is_some())
                .map(|(key, k)| (k.used, *key))
                .collect();
            by_age.sort_unstable();
            let excess = self.pinned - self.bounds.pinned + self.bounds.pinned / 4;
            for (_, key) in by_age.into_iter().take(excess) {
                if let Some(known) = self.map.get_mut(&key) {
                    known.fd = None;
                    self.pinned -= 1;
                }
            }
        }
        if self.map.len() > self.bounds.known || self.path_bytes > self.bounds.path_bytes {
            let mut by_age: Vec<(u64, Key)> = self.map.iter().map(|(key, k)| (k.used, *key)).collect();
            by_age.sort_unstable();
            let excess = self.map.len().saturating_sub(self.bounds.known) + self.bounds.known / 4;
            let (known, path_bytes) = (self.bounds.known, self.bounds.path_bytes);
            for (at, (_, key)) in by_age.into_iter().enumerate() {
                if at >= excess && self.path_bytes <= path_bytes * 3 / 4 && self.map.len() <= known {
                    break;
                }
                self.forget(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn null() -> Arc<OwnedFd> {
        Arc::new(std::fs::File::open("/dev/null").unwrap().into())
    }

    #[test]
    fn the_table_stays_within_its_bounds_and_keeps_the_recent() {
        let mut table = Table::new(Bounds {
            known: 100,
            pinned: 8,
            path_bytes: 1 << 20,
        });
        let fd = null();
        for ino in 0..10_000u64 {
            table.remember((0, 1, ino), 0, PathBuf::from(ino.to_string()), Arc::clone(&fd));
            assert!(
                table.len() <= 100 && table.pinned() <= 8,
                "{} {}",
                table.len(),
                table.pinned()
            );
        }
        // The most recent object is remembered and pinned; the first is not.
        assert!(table.get(&(0, 1, 9_999)).unwrap().fd.is_some());
        assert!(table.get(&(0, 1, 0)).is_none());
        let pinned = table.map.values().filter(|k| k.fd.is_some()).count();
        assert_eq!(pinned, table.pinned());
    }

    #[test]
    fn a_use_keeps_an_entry_from_being_let_go() {
        let mut table = Table::new(Bounds {
            known: 16,
            pinned: 4,
            path_bytes: 1 << 20,
        });
        let fd = null();
        table.remember((0, 1, 0), 0, PathBuf::from("kept"), Arc::clone(&fd));
        for ino in 1..100u64 {
            assert!(table.get(&(0, 1, 0)).is_some());
            table.remember((0, 1, ino), 0, PathBuf::new(), Arc::clone(&fd));
        }
        assert!(table.get(&(0, 1, 0)).unwrap().fd.is_some());
    }

    #[test]
    fn forgetting_and_remembering_again_keep_the_pin_count_true() {
        let mut table = Table::new(Bounds {
            known: 16,
            pinned: 16,
            path_bytes: 1 << 20,
        });
        let fd = null();
        table.remember((0, 1, 1), 0, PathBuf::from("a"), Arc::clone(&fd));
        table.remember((0, 1, 1), 0, PathBuf::from("b"), Arc::clone(&fd));
        assert_eq!(table.pinned(), 1);
        table.forget(&(0, 1, 1));
        table.forget(&(0, 1, 1));
        assert_eq!((table.len(), table.pinned()), (0, 0));
    }

    #[test]
    fn a_rename_moves_the_paths_beneath_it_and_only_in_its_export() {
        let mut table = Table::new(Bounds {
            known: 16,
            pinned: 16,
            path_bytes: 1 << 20,
        });
        let fd = null();
        table.remember((0, 1, 1), 0, PathBuf::from("a/b/c"), Arc::clone(&fd));
        table.remember((0, 1, 2), 0, PathBuf::from("ab"), Arc::clone(&fd));
        table.remember((1, 1, 3), 0, PathBuf::from("a/b"), Arc::clone(&fd));
        table.renamed(0, Path::new("a/b"), Path::new("x"));
        assert_eq!(table.get(&(0, 1, 1)).unwrap().rel, PathBuf::from("x/c"));
        assert_eq!(table.get(&(0, 1, 2)).unwrap().rel, PathBuf::from("ab"));
        assert_eq!(table.get(&(1, 1, 3)).unwrap().rel, PathBuf::from("a/b"));
    }

    #[test]
    fn long_paths_are_not_kept_and_all_paths_stay_within_their_budget() {
        let mut table = Table::new(Bounds {
            known: 1000,
            pinned: 1000,
            path_bytes: 64 * 1024,
        });
        let fd = null();
        let deep = PathBuf::from("d/".repeat(MAX_HINT));
        table.remember((0, 1, 0), 0, deep, Arc::clone(&fd));
        assert_eq!(table.get(&(0, 1, 0)).unwrap().rel, PathBuf::new());
        for ino in 1..1000u64 {
            let rel = PathBuf::from(format!("{ino}-{}", "x".repeat(1000)));
            table.remember((0, 1, ino), 0, rel, Arc::clone(&fd));
            assert!(table.path_bytes <= 64 * 1024, "{}", table.path_bytes);
        }
        let counted: usize = table.map.values().map(|k| k.rel.as_os_str().len()).sum();
        assert_eq!(counted, table.path_bytes);
        let last = PathBuf::from(format!("999-{}", "x".repeat(1000)));
        table.renamed(0, &last, Path::new("y"));
        assert_eq!(table.get(&(0, 1, 999)).unwrap().rel, PathBuf::from("y"));
        let counted: usize = table.map.values().map(|k| k.rel.as_os_str().len()).sum();
        assert_eq!(counted, table.path_bytes);
    }
}
