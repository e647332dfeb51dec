//! The journal's anchor: the latest signed checkpoint, in a small file
//! beside the database.
//!
//! sled treats a checksum failure in its log tail as a torn write and drops
//! the rest silently, so a journal read back from sled can be shorter than
//! what was acknowledged and still chain perfectly. The anchor is written
//! after every flush that moved the journal, atomically (temporary file,
//! fsync, rename, fsync of the directory), so it never claims more than the
//! database made durable; a journal that ends before the anchor, or differs
//! from it, fails verification.

use konsilium_protocol::journal::Checkpoint;
use konsilium_protocol::signed::Signed;
use konsilium_protocol::wire;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub const FILE: &str = "journal.anchor";

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
    wire::decode(&bytes)
        .map(Some)
        .map_err(|e| AnchorError::Corrupt {
            path,
            reason: e.to_string(),
        })
}

/// Replaces the anchor; when this returns, the new one is on disk.
pub fn write(data_dir: &Path, checkpoint: &Signed<Checkpoint>) -> Result<(), AnchorError> {
    let path = path(data_dir);
    let io = |source| AnchorError::Io {
        path: path.clone(),
        source,
    };
    let frame = wire::encode(checkpoint).map_err(|e| AnchorError::Corrupt {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let tmp = data_dir.join(format!("{FILE}.tmp"));
    {
        let mut file = fs::File::create(&tmp).map_err(io)?;
        file.write_all(&frame).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    fs::rename(&tmp, &path).map_err(io)?;
    fs::File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(io)
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
        write(dir.path(), &checkpoint).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(checkpoint));
        fs::write(path(dir.path()), b"KS\x01\x10garbage").unwrap();
        let e = read(dir.path()).unwrap_err();
        assert!(e.to_string().contains(FILE), "{e}");
    }

    fn sample_action() -> konsilium_protocol::journal::Action {
        konsilium_protocol::journal::Action::FailedLogin {
            user: "someone".into(),
        }
    }
}
