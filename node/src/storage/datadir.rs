//! The node's data directory holds case extracts, attachments and keys: it
//! is private to the node's user whatever umask the node was started with,
//! and plaintext that passed through it briefly does not survive a crash.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct DataDirError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> DataDirError + '_ {
    move |source| DataDirError {
        path: path.to_owned(),
        source,
    }
}

/// Renames `from` to `to` and syncs the directory holding `to`, so the new
/// name survives a power cut: a file synced and renamed is otherwise only
/// as durable as the directory's next write-back.
pub fn rename_durably(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    let dir = to.parent().filter(|d| !d.as_os_str().is_empty());
    sync_dir(dir.unwrap_or(Path::new(".")))
}

/// Makes the names in `dir` (files created, renamed or removed) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Creates the directory if needed and makes it and everything in it
/// private: directories 0700, files 0600. Symbolic links are left alone
/// (an operator may point `blobs/` at another volume; its target is theirs).
pub fn make_private(dir: &Path) -> Result<(), DataDirError> {
    fs::create_dir_all(dir).map_err(at(dir))?;
    restrict(dir)
}

fn restrict(path: &Path) -> Result<(), DataDirError> {
    let meta = fs::symlink_metadata(path).map_err(at(path))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = if meta.is_dir() { 0o700 } else { 0o600 };
    // Sockets and other special files keep theirs: the admin socket is
    // created private already, and chmod on it would race a live node.
    if (meta.is_dir() || meta.is_file()) && meta.permissions().mode() & 0o777 != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(at(path))?;
    }
    if meta.is_dir() {
        for entry in fs::read_dir(path).map_err(at(path))? {
            restrict(&entry.map_err(at(path))?.path())?;
        }
    }
    Ok(())
}

/// Removes what a crashed operation left in a scratch directory (uploads
/// being received, attachments being re-sealed): plaintext must not outlive
/// the operation that needed it. Returns how many files were removed.
pub fn sweep(dir: &Path) -> Result<usize, DataDirError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(at(dir)(e)),
    };
    let mut removed = 0;
    for entry in entries {
        let path = entry.map_err(at(dir))?.path();
        let meta = fs::symlink_metadata(&path).map_err(at(&path))?;
        if meta.is_dir() {
            fs::remove_dir_all(&path).map_err(at(&path))?;
        } else {
            fs::remove_file(&path).map_err(at(&path))?;
        }
        removed += 1;
    }
    Ok(removed)
}

/// Copies a directory tree, for checks that must not write to what they
/// check (sled writes as it opens).
pub fn copy_tree(from: &Path, to: &Path) -> Result<(), DataDirError> {
    fs::create_dir_all(to).map_err(at(to))?;
    for entry in fs::read_dir(from).map_err(at(from))? {
        let entry = entry.map_err(at(from))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type().map_err(at(&src))?.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            fs::copy(&src, &dst).map_err(at(&src))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_durable_rename_moves_the_file_and_a_missing_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("partial"), dir.path().join("done"));
        fs::write(&from, b"bytes").unwrap();
        rename_durably(&from, &to).unwrap();
        assert!(!from.exists());
        assert_eq!(fs::read(&to).unwrap(), b"bytes");
        let e = rename_durably(&from, &to).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn everything_in_the_data_directory_becomes_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        fs::create_dir_all(dir.join("db/blobs")).unwrap();
        fs::write(dir.join("db/conf"), b"x").unwrap();
        fs::write(dir.join("db/blobs/1"), b"case extract").unwrap();
        for p in [&dir, &dir.join("db"), &dir.join("db/blobs")] {
            fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
        }
        for f in ["db/conf", "db/blobs/1"] {
            fs::set_permissions(dir.join(f), fs::Permissions::from_mode(0o644)).unwrap();
        }
        make_private(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("db")), 0o700);
        assert_eq!(mode(&dir.join("db/blobs")), 0o700);
        assert_eq!(mode(&dir.join("db/conf")), 0o600);
        assert_eq!(mode(&dir.join("db/blobs/1")), 0o600);
    }

    #[test]
    fn a_sweep_removes_leftovers_and_tolerates_a_missing_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("uploads");
        assert_eq!(sweep(&dir).unwrap(), 0);
        fs::create_dir_all(dir.join("nested")).unwrap();
        fs::write(dir.join(".upload-abc"), b"plaintext").unwrap();
        fs::write(dir.join("nested/x"), b"plaintext").unwrap();
        assert_eq!(sweep(&dir).unwrap(), 2);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
    }

    #[test]
    fn errors_name_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("not-a-dir");
        fs::write(&file, b"").unwrap();
        let e = make_private(&file.join("data")).unwrap_err();
        assert!(e.to_string().contains("not-a-dir"), "{e}");
    }
}
