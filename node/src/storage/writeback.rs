//! Large files handed to the disk while they are written, so the fsync
//! that makes them durable finds little left to do.
//!
//! Left alone, the kernel keeps a file's written pages in memory until the
//! fsync: on a machine with gigabytes free, background writeback starts
//! only after 30 s or once a tenth of memory is dirty. A 256 MiB
//! attachment's closing fsync then wrote all of it after its last byte
//! had arrived, a third of the transfer's time and none of it beside the
//! network's. Every [`CHUNK`] written is now handed to the disk at once,
//! and the chunk before it waited for: the disk works while the data
//! still arrives, and the writer goes at the disk's pace with at most two
//! chunks in flight instead of filling memory (the streaming recipe of
//! Linux's `sync_file_range(2)`, as RocksDB's `bytes_per_sync` uses it).
//!
//! It is only a hint: it makes nothing durable (no metadata, no device
//! cache flush), the caller's fsync still does, and a file system that
//! refuses it costs nothing but the overlap.

use std::fs::File;
use std::os::fd::AsRawFd;

/// Large enough that each call costs little, small enough that the last
/// chunk's fsync is short.
pub const CHUNK: u64 = 8 << 20;

/// Where a file being written stands with the disk.
#[derive(Debug)]
pub struct Writeback {
    /// The end of the last chunk handed to the disk.
    handed: u64,
    /// The file system refused: written pages are left to the fsync.
    refused: bool,
}

impl Writeback {
    /// A file whose first `written` bytes were written before (a resumed
    /// transfer): those are left to the closing fsync.
    pub fn starting_at(written: u64) -> Self {
        Self {
            handed: written,
            refused: false,
        }
    }

    /// The file now holds `len` bytes: each whole chunk since the last
    /// call is handed to the disk, and the one before it waited for.
    pub fn wrote(&mut self, file: &File, len: u64) {
        while !self.refused && len >= self.handed + CHUNK {
            let (previous, start) = (self.handed.checked_sub(CHUNK), self.handed);
            self.refused = !sync_range(file, start, CHUNK, libc::SYNC_FILE_RANGE_WRITE);
            if let Some(previous) = previous
                && !self.refused
            {
                let wait = libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER;
                self.refused = !sync_range(file, previous, CHUNK, wait);
            }
            self.handed += CHUNK;
        }
    }
}

/// `sync_file_range(2)` over `len` bytes from `start`; false when the
/// kernel refused (said in the debug log: the fsync still follows).
fn sync_range(file: &File, start: u64, len: u64, flags: libc::c_uint) -> bool {
    let (Ok(start), Ok(len)) = (libc::off64_t::try_from(start), libc::off64_t::try_from(len))
    else {
        return false;
    };
    // SAFETY: the descriptor is the open file borrowed for the call; the
    // call reads no memory of ours.
    let r = unsafe { libc::sync_file_range(file.as_raw_fd(), start, len, flags) };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        tracing::debug!("writeback left to the fsync: sync_file_range refused: {e}");
    }
    r == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// What the kernel reports dirty or under writeback of a file cannot
    /// be read from here; what can fail is the bookkeeping: every whole
    /// chunk handed once, in order, nothing before a resumed file's start.
    #[test]
    fn each_whole_chunk_is_handed_once_from_where_the_file_began() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = File::create(dir.path().join("f")).unwrap();
        let mut writeback = Writeback::starting_at(CHUNK / 2);
        let piece = vec![7u8; (CHUNK / 4) as usize];
        let mut len = CHUNK / 2;
        file.write_all(&vec![0u8; len as usize]).unwrap();
        let mut handed = Vec::new();
        for _ in 0..14 {
            file.write_all(&piece).unwrap();
            len += piece.len() as u64;
            writeback.wrote(&file, len);
            handed.push(writeback.handed);
            assert!(!writeback.refused, "a regular file on a local disk");
        }
        // 4 MiB resumed + 14 × 2 MiB = 32 MiB: chunks end at 12, 20, 28.
        let ends: Vec<u64> = (handed.iter().copied())
            .filter(|&h| h > CHUNK / 2)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(
            ends,
            [
                CHUNK / 2 + CHUNK,
                CHUNK / 2 + 2 * CHUNK,
                CHUNK / 2 + 3 * CHUNK
            ]
        );
        assert!(handed.windows(2).all(|w| w[0] <= w[1]));
        assert!(*handed.last().unwrap() <= len);
    }

    #[test]
    fn a_file_the_kernel_cannot_sync_stops_asking() {
        // A pipe is no file: sync_file_range refuses it (ESPIPE).
        let (reader, _writer) = std::io::pipe().unwrap();
        let file = File::from(std::os::fd::OwnedFd::from(reader));
        let mut writeback = Writeback::starting_at(0);
        writeback.wrote(&file, 3 * CHUNK);
        assert!(writeback.refused);
        assert_eq!(writeback.handed, CHUNK, "stops at the first refusal");
    }
}
