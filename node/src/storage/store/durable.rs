//! What sled's flush leaves undone. sled 0.34 ends a flush with
//! `sync_file_range(2)` over the log's new bytes: they reach the device,
//! but neither the file's metadata nor the device's write cache does, so a
//! power cut could still take back a package a receipt has vouched for.
//! Values too large for its log (over a quarter of a segment) sled writes
//! as files under `blobs/`, named by their log sequence number, and never
//! syncs at all.
//!
//! So after each of sled's flushes the store syncs the blob files written
//! since the last time and their directory, then the log (`fdatasync`), in
//! that order: a log that survives names only blobs that survive. On this
//! machine the log's sync added about 50 µs to a 1 KiB write's flush
//! (62-66 µs at the median without it, 105-129 µs with it).
//!
//! The directory is read at each flush while it holds few files (most
//! nodes keep no value that large, and reading an empty directory costs a
//! few microseconds). Reading 5,000 files took 2 ms here, too much for
//! every flush of a node that keeps many large packages: from
//! [`WATCH_FROM`] files on, an inotify watch names the new ones, and the
//! directory is read again only after its event queue overflowed. Where no
//! inotify instance is to be had (a user has 128 by default, and a
//! simulation holds a thousand stores), reading goes on.

use rustix::fs::inotify;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Files in `blobs/` from which a watch names the new ones.
const WATCH_FROM: usize = 64;

pub(super) struct Durable {
    log: File,
    blobs: PathBuf,
    state: Mutex<Blobs>,
}

struct Blobs {
    /// Names the blob files created since it was last read.
    watch: Option<OwnedFd>,
    /// No watch could be made: the directory is read at every flush.
    unwatchable: bool,
    /// Files the last reading of the directory found.
    files: usize,
    /// Every blob file present was synced, so the watch's news is enough.
    scanned: bool,
    /// The newest blob synced so far, by its sequence number.
    newest: Option<i64>,
    /// Times the directory was read, for the tests.
    scans: u64,
}

impl Durable {
    /// For the database sled opened at `dir` (which made `blobs/`).
    pub(super) fn open(dir: &Path) -> io::Result<Self> {
        Ok(Self {
            log: File::open(dir.join("db"))?,
            blobs: dir.join("blobs"),
            state: Mutex::new(Blobs {
                watch: None,
                unwatchable: false,
                files: 0,
                scanned: false,
                newest: None,
                scans: 0,
            }),
        })
    }

    /// Makes what sled's last flush wrote durable.
    pub(super) fn sync(&self) -> io::Result<()> {
        let mut state = (self.state.lock()).unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.watch.is_none() && !state.unwatchable && state.files >= WATCH_FROM {
            // Read once more below: what was created before the watch
            // it cannot name.
            match watch(&self.blobs) {
                Ok(fd) => state.watch = Some(fd),
                Err(e) => {
                    tracing::info!(dir = %self.blobs.display(), "no inotify watch, the directory is read at each flush: {e}");
                    state.unwatchable = true;
                }
            }
            state.scanned = false;
        }
        // Read before the directory is: what is created meanwhile comes
        // again with the next flush, and a file synced twice costs little.
        let news = match &state.watch {
            Some(fd) => created(fd),
            None => News::Overflowed,
        };
        let synced = match news {
            News::Created(names) if state.scanned => self.sync_named(&names, &mut state.newest),
            _ => {
                state.scans += 1;
                self.scan(&mut state.newest).map(|(files, synced)| {
                    state.files = files;
                    synced
                })
            }
        };
        let done = synced.and_then(|synced| match synced {
            0 => Ok(()),
            _ => crate::storage::datadir::sync_dir(&self.blobs),
        });
        // A failure forgets the names it was told: the next sync reads
        // the directory.
        state.scanned = done.is_ok();
        done?;
        self.log.sync_data()
    }

    /// Syncs the blob files the watch named; how many were synced.
    fn sync_named(&self, names: &[OsString], newest: &mut Option<i64>) -> io::Result<usize> {
        let mut synced = 0;
        for name in names.iter().filter(|n| lsn(n).is_some()) {
            synced += sync_blob(&self.blobs.join(name), name, newest)?;
        }
        Ok(synced)
    }

    /// Syncs every blob newer than the newest synced: how many files the
    /// directory holds, and how many were synced.
    fn scan(&self, newest: &mut Option<i64>) -> io::Result<(usize, usize)> {
        let entries = match fs::read_dir(&self.blobs) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, 0)),
            Err(e) => return Err(e),
        };
        let before = *newest;
        let (mut files, mut synced) = (0, 0);
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            files += 1;
            match lsn(&name) {
                Some(l) if before.is_none_or(|b| l > b) => {}
                // Synced before, or not sled's.
                _ => continue,
            }
            synced += sync_blob(&entry.path(), &name, newest)?;
        }
        Ok((files, synced))
    }
}

/// Syncs one blob file: 1 if it was there, 0 if sled removed it already
/// (it does once the page is rewritten elsewhere).
fn sync_blob(path: &Path, name: &OsStr, newest: &mut Option<i64>) -> io::Result<usize> {
    match File::open(path).and_then(|f| f.sync_all()) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        other => other?,
    }
    *newest = (*newest).max(lsn(name));
    Ok(1)
}

fn lsn(name: &OsStr) -> Option<i64> {
    name.to_str()?.parse().ok()
}

fn watch(dir: &Path) -> io::Result<OwnedFd> {
    use inotify::{CreateFlags, WatchFlags};
    let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)?;
    inotify::add_watch(&fd, dir, WatchFlags::CREATE | WatchFlags::MOVED_TO)?;
    Ok(fd)
}

enum News {
    Created(Vec<OsString>),
    /// Events were lost, or there is no watch: the directory must be read.
    Overflowed,
}

/// The files the watch saw created since it was last read.
fn created(fd: &OwnedFd) -> News {
    let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
    let mut reader = inotify::Reader::new(fd, &mut buf);
    let mut names = Vec::new();
    loop {
        match reader.next() {
            Ok(event) if event.events().contains(inotify::ReadFlags::QUEUE_OVERFLOW) => {
                return News::Overflowed;
            }
            Ok(event) => names
                .extend((event.file_name()).map(|n| OsStr::from_bytes(n.to_bytes()).to_owned())),
            Err(rustix::io::Errno::AGAIN) => return News::Created(names),
            Err(e) => {
                tracing::warn!("inotify on the database's blobs: {e}; reading the directory");
                return News::Overflowed;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Over a quarter of sled's default 512 KiB segment: a blob file.
    const LARGE: usize = 200 << 10;

    /// sled's blob files, by sequence number.
    fn blobs(dir: &Path) -> Vec<i64> {
        fs::read_dir(dir.join("blobs"))
            .unwrap()
            .filter_map(|e| lsn(&e.unwrap().file_name()))
            .collect()
    }

    fn seen(durable: &Durable) -> (Option<i64>, u64) {
        let state = durable.state.lock().unwrap();
        (state.newest, state.scans)
    }

    #[test]
    fn from_many_files_on_new_ones_are_synced_as_the_watch_names_them() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let durable = Durable::open(dir.path()).unwrap();
        durable.sync().unwrap();
        assert_eq!(seen(&durable), (None, 1), "one read of an empty directory");
        // Files that are not sled's count toward the watch, and are left alone.
        for i in 0..WATCH_FROM {
            fs::write(dir.path().join("blobs").join(format!("other-{i}")), b"").unwrap();
        }
        durable.sync().unwrap();
        assert_eq!(seen(&durable), (None, 2));
        assert!(durable.state.lock().unwrap().watch.is_none());
        durable.sync().unwrap();
        assert!(durable.state.lock().unwrap().watch.is_some());
        assert_eq!(
            seen(&durable),
            (None, 3),
            "read once more as the watch begins"
        );
        for round in 0..2u8 {
            db.insert([round], vec![round; LARGE]).unwrap();
            db.flush().unwrap();
            let written = blobs(dir.path());
            assert!(!written.is_empty(), "sled wrote the value as a blob file");
            durable.sync().unwrap();
            assert_eq!(seen(&durable), (written.iter().max().copied(), 3));
        }
        db.insert(b"small", vec![1u8; 1024]).unwrap();
        db.flush().unwrap();
        durable.sync().unwrap();
        assert_eq!(seen(&durable).1, 3, "the directory was not read again");
    }

    #[test]
    fn a_few_files_are_read_at_every_sync() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let durable = Durable::open(dir.path()).unwrap();
        db.insert(b"large", vec![7u8; LARGE]).unwrap();
        db.flush().unwrap();
        durable.sync().unwrap();
        durable.sync().unwrap();
        let written = blobs(dir.path());
        assert_eq!(seen(&durable), (written.iter().max().copied(), 2));
        assert!(durable.state.lock().unwrap().watch.is_none());
    }

    #[test]
    fn blobs_left_by_an_earlier_run_are_synced_at_the_first_flush() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::Config::new().path(dir.path()).open().unwrap();
            db.insert(b"large", vec![7u8; LARGE]).unwrap();
            db.flush().unwrap();
        }
        let written = blobs(dir.path());
        assert!(!written.is_empty());
        let _db = sled::Config::new().path(dir.path()).open().unwrap();
        let durable = Durable::open(dir.path()).unwrap();
        durable.sync().unwrap();
        assert_eq!(seen(&durable), (written.iter().max().copied(), 1));
    }

    #[test]
    fn a_database_without_its_log_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = Durable::open(dir.path()).err().expect("no log file");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }
}
