//! Backups of a running node, and restoring one into a fresh data directory.
//!
//! The database is copied logically (sled's export into a new database)
//! on the node's event loop, which is the only writer: the copy is one
//! moment of the node's state, with the journal's anchor written at that
//! same moment. Attachments are immutable files named by their hash, so
//! they are copied afterwards, off the loop; one deleted meanwhile was
//! delivered and no longer needed. The node's keys, configuration and
//! certificate files are copied too: a backup restores a node, and is as
//! secret as its data directory (files 0600, directories 0700).

use crate::storage::datadir::{self, DataDirError};
use crate::storage::store::{Store, StoreError};
use crate::storage::{anchor, blobs};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

/// What a backup holds, written beside it as `backup.json` and checked
/// again by a restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub org: String,
    pub taken_at: String,
    pub journal_entries: u64,
    pub journal_head: String,
    pub directory_digest: String,
    /// Ids of every consultation in the backup.
    pub consultations: Vec<String>,
    pub attachments: u64,
    pub attachment_bytes: u64,
}

pub const MANIFEST: &str = "backup.json";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error("{0} exists and is not empty: a backup or restore goes into a new directory")]
    NotEmpty(PathBuf),
    #[error("{path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("the restored database does not match the backup's manifest: {0}")]
    Mismatch(String),
}

/// Files of the data directory that are not part of a backup: the live
/// socket, scratch space and what is copied separately.
const SKIPPED: [&str; 6] = ["admin.sock", "db", "blobs", "uploads", "scratch", MANIFEST];

/// Makes `dest` a new, private, empty directory.
pub fn prepare(dest: &Path) -> Result<(), BackupError> {
    if fs::read_dir(dest).is_ok_and(|mut d| d.next().is_some()) {
        return Err(BackupError::NotEmpty(dest.to_owned()));
    }
    datadir::make_private(dest)?;
    Ok(())
}

/// The database and the small files beside it, at one moment: call it
/// where nothing writes to `store` meanwhile, after a flush.
pub fn snapshot(store: &Store, data_dir: &Path, dest: &Path) -> Result<(), BackupError> {
    store.export_into(&dest.join("db"))?;
    for entry in fs::read_dir(data_dir).map_err(|e| dir_error(data_dir, e))? {
        let entry = entry.map_err(|e| dir_error(data_dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let path = entry.path();
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if !is_file || SKIPPED.contains(&name.as_ref()) || name.ends_with(".tmp") {
            continue;
        }
        fs::copy(&path, dest.join(entry.file_name())).map_err(|e| dir_error(&path, e))?;
    }
    Ok(())
}

/// Copies every complete attachment; returns how many and their bytes.
pub fn copy_attachments(from: &Path, to: &Path) -> Result<(u64, u64), BackupError> {
    let to = to.join("blobs");
    fs::create_dir_all(&to).map_err(|e| dir_error(&to, e))?;
    let entries = match fs::read_dir(from) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(dir_error(from, e)),
    };
    let (mut count, mut bytes) = (0, 0);
    for entry in entries {
        let entry = entry.map_err(|e| dir_error(from, e))?;
        let name = entry.file_name();
        if !blobs::is_complete_blob_name(&name.to_string_lossy()) {
            continue;
        }
        match fs::copy(entry.path(), to.join(&name)) {
            Ok(n) => {
                count += 1;
                bytes += n;
            }
            // Delivered and deleted since the snapshot: nothing needs it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(dir_error(&entry.path(), e)),
        }
    }
    Ok((count, bytes))
}

pub fn write_manifest(dest: &Path, manifest: &Manifest) -> Result<(), BackupError> {
    let path = dest.join(MANIFEST);
    let text = serde_json::to_string_pretty(manifest).map_err(|e| BackupError::Manifest {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    fs::write(&path, text).map_err(|e| dir_error(&path, e))?;
    datadir::make_private(dest)?;
    Ok(())
}

pub fn read_manifest(backup: &Path) -> Result<Manifest, BackupError> {
    let path = backup.join(MANIFEST);
    let text = fs::read_to_string(&path).map_err(|e| BackupError::Manifest {
        path: path.clone(),
        reason: format!("{e} (is this a Konsilium backup?)"),
    })?;
    serde_json::from_str(&text).map_err(|e| BackupError::Manifest {
        path,
        reason: e.to_string(),
    })
}

/// Restores `backup` into the new data directory `dest`, and checks the
/// restored database against the manifest and the journal's anchor.
pub fn restore(backup: &Path, dest: &Path) -> Result<Manifest, BackupError> {
    let manifest = read_manifest(backup)?;
    prepare(dest)?;
    datadir::copy_tree(backup, dest)?;
    let _ = fs::remove_file(dest.join(MANIFEST));
    datadir::make_private(dest)?;
    let store = Store::open(&dest.join("db"))?;
    let (entries, head) = store.journal_head()?;
    let head = hex::encode(head);
    if (entries, head.as_str()) != (manifest.journal_entries, manifest.journal_head.as_str()) {
        return Err(BackupError::Mismatch(format!(
            "journal has {entries} entries ending {head}, the manifest says {} ending {}",
            manifest.journal_entries, manifest.journal_head
        )));
    }
    let anchor = anchor::read(dest).map_err(StoreError::from)?;
    let anchored = anchor
        .and_then(|a| a.decode_unverified().ok())
        .map(|c| (c.seq, hex::encode(c.head)));
    if anchored != Some((entries, head)) {
        return Err(BackupError::Mismatch(
            "the journal anchor in the backup is not the journal's head".into(),
        ));
    }
    Ok(manifest)
}

fn dir_error(path: &Path, source: std::io::Error) -> BackupError {
    BackupError::DataDir(DataDirError {
        path: path.to_owned(),
        source,
    })
}
