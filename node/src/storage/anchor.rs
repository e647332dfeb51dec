//! The journal's anchor: the latest signed checkpoint, in a small file
//! beside the database.
//!
//! sled treats a checksum failure in its log tail as a torn write and drops
//! the rest silently, so a journal read back from sled can be shorter than
//! what was acknowledged and still chain perfectly. The anchor is written
//! after every flush that moved the journal, so it never claims more than
//! the database made durable; a journal that ends before the anchor, or
//! differs from it, fails verification.
//!
//! The anchor is written on the path of every acknowledged step, so it is
//! rewritten in place rather than replaced: the file holds two fixed slots,
//! each written whole with its length and BLAKE3 hash and synced with one
//! `fdatasync` (the file's size never changes, so nothing else needs
//! syncing). A write goes to the slot not holding the newest checkpoint;
//! torn by a crash, it leaves the newest whole, and the reader takes the
//! newest slot that checks. Replacing the file (temporary file, fsync,
//! rename, fsync of the directory) cost five times as much here, and is
//! done only to create the file or convert one written that way by an
//! older node.

use konsilium_protocol::journal::Checkpoint;
use konsilium_protocol::signed::Signed;
use konsilium_protocol::wire;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const FILE: &str = "journal.anchor";

/// One slot's bytes: a checkpoint's frame is about 150.
const SLOT: usize = 4096;
const MAGIC: &[u8; 4] = b"KSA2";
/// Magic, frame length (u32 LE), BLAKE3 of the frame.
const SLOT_HEADER: usize = 4 + 4 + 32;

#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not a journal anchor: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// The anchor of the node whose data directory this is, if it has one.
pub fn read(data_dir: &Path) -> Result<Option<Signed<Checkpoint>>, AnchorError> {
    let path = path(data_dir);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(AnchorError::Io { path, source }),
    };
    parse(&path, &bytes)
}

/// The newest checkpoint an anchor file's bytes hold (`path` names it in
/// errors).
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Option<Signed<Checkpoint>>, AnchorError> {
    newest(path, bytes).map(|found| found.map(|(_, checkpoint)| checkpoint))
}

/// A new anchor file's bytes: two slots, `checkpoint` (if any) in the
/// second, so that the first write after it goes to the first.
pub fn file_bytes(checkpoint: Option<&Signed<Checkpoint>>) -> Result<Vec<u8>, AnchorError> {
    let mut bytes = vec![0u8; 2 * SLOT];
    if let Some(checkpoint) = checkpoint {
        bytes[SLOT..].copy_from_slice(&slot_bytes(Path::new(FILE), checkpoint)?);
    }
    Ok(bytes)
}

/// The anchor's file held open by the node that writes it.
pub struct AnchorFile {
    path: PathBuf,
    file: fs::File,
    /// The slot the next checkpoint goes to: never the newest one's.
    next: usize,
}

impl AnchorFile {
    /// Opens the anchor for writing, creating it with two empty slots, or
    /// converting the single checkpoint an older node wrote, first.
    pub fn open(data_dir: &Path) -> Result<Self, AnchorError> {
        let path = path(data_dir);
        let io = |source| AnchorError::Io {
            path: path.clone(),
            source,
        };
        let found = match fs::read(&path) {
            Ok(bytes) => {
                let found = newest(&path, &bytes)?;
                if bytes.len() != 2 * SLOT {
                    replace(data_dir, &path, found.as_ref().map(|(_, c)| c))?;
                }
                found
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                replace(data_dir, &path, None)?;
                None
            }
            Err(source) => return Err(io(source)),
        };
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io)?;
        let next = found.map_or(0, |(slot, _)| 1 - slot);
        Ok(Self { path, file, next })
    }

    /// Writes `checkpoint` over the older slot; when this returns, it is on
    /// disk and is what `read` gives.
    pub fn write(&mut self, checkpoint: &Signed<Checkpoint>) -> Result<(), AnchorError> {
        let slot = slot_bytes(&self.path, checkpoint)?;
        let io = |source| AnchorError::Io {
            path: self.path.clone(),
            source,
        };
        (self.file.write_all_at(&slot, (self.next * SLOT) as u64)).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.next = 1 - self.next;
        Ok(())
    }
}

/// A new file of two slots (see [`file_bytes`]), put in place atomically:
/// temporary file, fsync, rename, fsync of the directory.
fn replace(
    data_dir: &Path,
    path: &Path,
    checkpoint: Option<&Signed<Checkpoint>>,
) -> Result<(), AnchorError> {
    let io = |source| AnchorError::Io {
        path: path.to_owned(),
        source,
    };
    let bytes = file_bytes(checkpoint)?;
    let tmp = data_dir.join(format!("{FILE}.tmp"));
    {
        let mut file = fs::File::create(&tmp).map_err(io)?;
        file.write_all(&bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    crate::storage::datadir::rename_durably(&tmp, path).map_err(io)
}

fn slot_bytes(path: &Path, checkpoint: &Signed<Checkpoint>) -> Result<Vec<u8>, AnchorError> {
    let corrupt = |reason: String| AnchorError::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let frame = wire::encode(checkpoint).map_err(|e| corrupt(e.to_string()))?;
    if frame.len() > SLOT - SLOT_HEADER {
        return Err(corrupt(format!(
            "a checkpoint of {} bytes does not fit a slot",
            frame.len()
        )));
    }
    let mut slot = vec![0u8; SLOT];
    slot[..4].copy_from_slice(MAGIC);
    slot[4..8].copy_from_slice(&(frame.len() as u32).to_le_bytes());
    slot[8..SLOT_HEADER].copy_from_slice(blake3::hash(&frame).as_bytes());
    slot[SLOT_HEADER..SLOT_HEADER + frame.len()].copy_from_slice(&frame);
    Ok(slot)
}

/// The checkpoint a slot holds whole, if it holds exactly what a write
/// put there (its frame, then zeros).
fn in_slot(slot: &[u8]) -> Option<Signed<Checkpoint>> {
    if slot.get(..4)? != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(slot.get(4..8)?.try_into().ok()?) as usize;
    let end = SLOT_HEADER.checked_add(len)?;
    let frame = slot.get(SLOT_HEADER..end)?;
    if blake3::hash(frame).as_bytes() != slot.get(8..SLOT_HEADER)?
        || slot.get(end..)?.iter().any(|b| *b != 0)
    {
        return None;
    }
    wire::decode(frame).ok()
}

/// The newest checkpoint in a file's bytes, and its slot: two slots, or
/// the single checkpoint of an older node's file (as if in the second).
fn newest(path: &Path, bytes: &[u8]) -> Result<Option<(usize, Signed<Checkpoint>)>, AnchorError> {
    if bytes.len() != 2 * SLOT {
        return wire::decode(bytes)
            .map(|checkpoint| Some((1, checkpoint)))
            .map_err(|e| AnchorError::Corrupt {
                path: path.to_owned(),
                reason: e.to_string(),
            });
    }
    let seq = |c: &Signed<Checkpoint>| c.decode_unverified().map(|c| c.seq).ok();
    let slots = bytes.chunks(SLOT).map(in_slot).enumerate();
    let newest = slots
        .filter_map(|(i, c)| Some((i, c?)))
        .max_by_key(|(_, c)| seq(c));
    if newest.is_none() && bytes.iter().any(|b| *b != 0) {
        return Err(AnchorError::Corrupt {
            path: path.to_owned(),
            reason: "neither of its two slots holds a whole checkpoint".into(),
        });
    }
    Ok(newest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use konsilium_protocol::identity::IdentityKey;
    use konsilium_protocol::journal::Journal;
    use konsilium_protocol::time::Timestamp;

    #[test]
    fn an_anchor_survives_a_round_trip_and_a_damaged_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).unwrap().is_none());
        let key = IdentityKey::from_seed([3; 32]);
        let mut journal = Journal::new();
        journal.append(Timestamp::from_unix_millis(1), None, None, sample_action());
        let checkpoint = journal.checkpoint(&key, Timestamp::from_unix_millis(2));
        AnchorFile::open(dir.path())
            .unwrap()
            .write(&checkpoint)
            .unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(checkpoint));
        fs::write(path(dir.path()), b"KS\x01\x10garbage").unwrap();
        let e = read(dir.path()).unwrap_err();
        assert!(e.to_string().contains(FILE), "{e}");
    }

    /// Checkpoints of a journal one entry longer each time.
    fn checkpoints(n: u64) -> Vec<Signed<Checkpoint>> {
        let key = IdentityKey::from_seed([4; 32]);
        let mut journal = Journal::new();
        (0..n)
            .map(|i| {
                journal.append(Timestamp::from_unix_millis(i), None, None, sample_action());
                journal.checkpoint(&key, Timestamp::from_unix_millis(i))
            })
            .collect()
    }

    #[test]
    fn each_write_is_read_back_and_the_file_keeps_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = AnchorFile::open(dir.path()).unwrap();
        assert_eq!(
            read(dir.path()).unwrap(),
            None,
            "a new file holds no checkpoint"
        );
        for checkpoint in checkpoints(5) {
            file.write(&checkpoint).unwrap();
            assert_eq!(read(dir.path()).unwrap(), Some(checkpoint));
            assert_eq!(
                fs::metadata(path(dir.path())).unwrap().len(),
                2 * SLOT as u64
            );
        }
    }

    #[test]
    fn a_torn_write_leaves_the_checkpoint_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let [first, second, third] = checkpoints(3).try_into().unwrap();
        let mut file = AnchorFile::open(dir.path()).unwrap();
        file.write(&first).unwrap();
        file.write(&second).unwrap();
        drop(file);
        // A crash halfway through the second slot's write.
        let mut bytes = fs::read(path(dir.path())).unwrap();
        bytes[SLOT + SLOT_HEADER + 10..2 * SLOT].fill(0);
        fs::write(path(dir.path()), &bytes).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(first.clone()));
        // Reopened, the node writes over the torn slot, not the whole one.
        let mut file = AnchorFile::open(dir.path()).unwrap();
        file.write(&third).unwrap();
        let bytes = fs::read(path(dir.path())).unwrap();
        assert_eq!(in_slot(&bytes[..SLOT]), Some(first));
        assert_eq!(in_slot(&bytes[SLOT..]), Some(third.clone()));
        assert_eq!(read(dir.path()).unwrap(), Some(third));
    }

    #[test]
    fn two_damaged_slots_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = AnchorFile::open(dir.path()).unwrap();
        for checkpoint in checkpoints(2) {
            file.write(&checkpoint).unwrap();
        }
        let mut bytes = fs::read(path(dir.path())).unwrap();
        bytes[SLOT_HEADER + 3] ^= 1;
        bytes[SLOT + SLOT_HEADER + 3] ^= 1;
        fs::write(path(dir.path()), &bytes).unwrap();
        let e = read(dir.path()).unwrap_err();
        assert!(e.to_string().contains(FILE), "{e}");
        assert!(e.to_string().contains("neither of its two slots"), "{e}");
        assert!(AnchorFile::open(dir.path()).is_err());
    }

    #[test]
    fn an_older_nodes_anchor_is_read_and_converted_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let [old, new] = checkpoints(2).try_into().unwrap();
        fs::write(path(dir.path()), wire::encode(&old).unwrap()).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(old.clone()));
        let mut file = AnchorFile::open(dir.path()).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(old), "conversion keeps it");
        assert_eq!(
            fs::metadata(path(dir.path())).unwrap().len(),
            2 * SLOT as u64
        );
        file.write(&new).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(new));
    }

    #[test]
    fn a_slot_with_anything_after_its_checkpoint_is_not_taken() {
        let [checkpoint] = checkpoints(1).try_into().unwrap();
        let whole = file_bytes(Some(&checkpoint)).unwrap();
        let at = Path::new(FILE);
        assert_eq!(parse(at, &whole).unwrap(), Some(checkpoint));
        let mut padded = whole.clone();
        padded[2 * SLOT - 1] = 1;
        assert!(
            parse(at, &padded).is_err(),
            "its only checkpoint's slot is damaged"
        );
        assert_eq!(parse(at, &file_bytes(None).unwrap()).unwrap(), None);
    }

    fn sample_action() -> konsilium_protocol::journal::Action {
        konsilium_protocol::journal::Action::FailedLogin {
            user: "someone".into(),
        }
    }
}
