//! What the server promises about written data, and the write verifier
//! that lets a client know when a promise was broken (RFC 1813, 3.3.7).
//!
//! An UNSTABLE write is in the host's page cache when the reply goes; the
//! client keeps its copy until a COMMIT says it is on disk. A write-back
//! error in between must reach that COMMIT. Linux reports a write-back
//! error to each open file description once, and only to those opened
//! before it happened (errseq): a descriptor opened afresh for the COMMIT
//! would never see it. So the descriptor of a file's first unstable write
//! is kept until the file's COMMIT, which syncs through it, as knfsd keeps
//! its open files. Every failed sync changes the verifier, so clients send
//! again what they wrote unstably; the sync and the change happen under one
//! lock, so no COMMIT can answer with the old verifier after a failure
//! another request saw.

use crate::handles::Key;
use nfs3_types::nfs3::{nfsstat3, stable_how};
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// Files with unstable writes waiting for their COMMIT, at most; past it
/// the oldest is synced at once (a failure changes the verifier).
const PENDING: usize = 1024;

#[derive(Debug)]
pub struct Writeback {
    epoch: u32,
    failures: AtomicU32,
    /// Held while a sync runs and its outcome is counted.
    syncing: Mutex<()>,
    /// The descriptor of each file's first unstable write since its COMMIT.
    pending: Mutex<Pending>,
}

/// Held descriptors by file, each with the order it came in, and the count.
#[derive(Debug, Default)]
struct Pending {
    files: HashMap<Key, (u64, OwnedFd)>,
    clock: u64,
}

impl Writeback {
    pub fn new(epoch: u32) -> Self {
        Self {
            epoch,
            failures: AtomicU32::new(0),
            syncing: Mutex::new(()),
            pending: Mutex::new(Pending::default()),
        }
    }

    /// The server's epoch and its count of failed syncs.
    pub fn verifier(&self) -> [u8; 8] {
        let mut verifier = [0u8; 8];
        verifier[..4].copy_from_slice(&self.epoch.to_be_bytes());
        verifier[4..].copy_from_slice(&self.failures.load(Ordering::SeqCst).to_be_bytes());
        verifier
    }

    /// Makes what was written through `file` durable as `stable` asks and
    /// says what was done; an UNSTABLE write's descriptor is kept for the
    /// file's COMMIT if it is the first since the last one.
    pub fn written(&self, key: Key, file: OwnedFd, stable: stable_how) -> Result<stable_how, nfsstat3> {
        match stable {
            stable_how::UNSTABLE => {
                self.keep(key, file);
                Ok(stable_how::UNSTABLE)
            }
            stable_how::DATA_SYNC => self.sync(&file, false).map(|()| stable_how::DATA_SYNC),
            stable_how::FILE_SYNC => self.sync(&file, true).map(|()| stable_how::FILE_SYNC),
        }
    }

    /// COMMIT: syncs the file through the descriptor of its first unstable
    /// write (or `open`'s, if it has none pending) and returns the verifier
    /// as of the sync's outcome.
    pub fn commit(&self, key: Key, open: impl FnOnce() -> Result<OwnedFd, nfsstat3>) -> Result<[u8; 8], nfsstat3> {
        let held = self
            .pending
            .lock()
            .ok()
            .and_then(|mut p| p.files.remove(&key))
            .map(|(_, fd)| fd);
        let file = match held {
            Some(fd) => fd,
            None => open()?,
        };
        let _one_at_a_time = self.syncing.lock().map_err(|_| nfsstat3::NFS3ERR_SERVERFAULT)?;
        self.sync_locked(&file, true)?;
        Ok(self.verifier())
    }

    fn keep(&self, key: Key, file: OwnedFd) {
        let evicted = {
            let Ok(mut pending) = self.pending.lock() else { return };
            let Pending { files, clock } = &mut *pending;
            if files.contains_key(&key) {
                return;
            }
            *clock += 1;
            files.insert(key, (*clock, file));
            if files.len() > PENDING {
                let oldest = files.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| *k);
                oldest.and_then(|k| files.remove(&k))
            } else {
                None
            }
        };
        if let Some((_, fd)) = evicted {
            let _ = self.sync(&fd, true);
        }
    }

    fn sync(&self, file: &OwnedFd, whole_file: bool) -> Result<(), nfsstat3> {
        let _one_at_a_time = self.syncing.lock().map_err(|_| nfsstat3::NFS3ERR_SERVERFAULT)?;
        self.sync_locked(file, whole_file)
    }

    fn sync_locked(&self, file: &OwnedFd, whole_file: bool) -> Result<(), nfsstat3> {
        let synced = if whole_file {
            nix::unistd::fsync(file)
        } else {
            nix::unistd::fdatasync(file)
        };
        synced.map_err(|e| {
            self.failures.fetch_add(1, Ordering::SeqCst);
            crate::tree::status(e)
        })
    }

    /// A sync failed outside this module's knowledge (tests).
    #[cfg(test)]
    pub fn failed(&self) {
        self.failures.fetch_add(1, Ordering::SeqCst);
    }

    #[cfg(test)]
    fn pending(&self) -> usize {
        self.pending.lock().map_or(0, |p| p.files.len())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn file(dir: &std::path::Path, name: &str) -> OwnedFd {
        std::fs::File::create(dir.join(name)).unwrap().into()
    }

    #[test]
    fn a_failed_sync_changes_the_verifier() {
        let writeback = Writeback::new(7);
        let before = writeback.verifier();
        assert_eq!(&before[..4], &7u32.to_be_bytes());
        writeback.failed();
        assert_ne!(before, writeback.verifier());
    }

    #[test]
    fn the_first_unstable_write_is_held_until_its_commit() {
        let dir = tempfile::tempdir().unwrap();
        let writeback = Writeback::new(1);
        let key = (0, 1, 2);
        let first = file(dir.path(), "f");
        assert_eq!(
            writeback.written(key, first, stable_how::UNSTABLE).unwrap(),
            stable_how::UNSTABLE
        );
        writeback
            .written(key, file(dir.path(), "f"), stable_how::UNSTABLE)
            .unwrap();
        assert_eq!(writeback.pending(), 1);
        let opened = std::cell::Cell::new(false);
        let verifier = writeback
            .commit(key, || {
                opened.set(true);
                Ok(file(dir.path(), "f"))
            })
            .unwrap();
        assert!(!opened.get(), "the commit synced through the held descriptor");
        assert_eq!(verifier, writeback.verifier());
        assert_eq!(writeback.pending(), 0);
        assert_eq!(
            writeback
                .written(key, file(dir.path(), "f"), stable_how::DATA_SYNC)
                .unwrap(),
            stable_how::DATA_SYNC
        );
        assert_eq!(writeback.pending(), 0);
    }

    #[test]
    fn pending_files_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let writeback = Writeback::new(1);
        for ino in 0..PENDING as u64 + 10 {
            writeback
                .written((0, 1, ino), file(dir.path(), "f"), stable_how::UNSTABLE)
                .unwrap();
        }
        assert_eq!(writeback.pending(), PENDING);
    }
}
