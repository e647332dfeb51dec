//! The node's secret keys on disk.
//!
//! The identity key *is* the organization (its id, its peer id, what its
//! certificate names), so losing it means re-enrolling with the federation
//! and leaking it lets anyone act as the hospital. Hence: files only the node's
//! user can read, never overwritten once written, and refused at start when
//! someone has loosened their permissions, so a mistake is noticed before a
//! node runs for months with a world-readable key.

use konsilium_protocol::identity::{IdentityKey, SealingKey};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Seed length of both keys: an ed25519 secret and an X25519 secret.
const SEED_LEN: usize = 32;

const KEYS_DIR: &str = "keys";
const IDENTITY_FILE: &str = "identity.key";
const SEALING_FILE: &str = "sealing.key";
/// Sealing keys rotated away from, as `sealing-<unix ms retired>.key`.
const RETIRED_DIR: &str = "retired";
/// A new sealing key between being written and taking the current one's place.
const STAGED_SEALING: &str = "sealing.key.new";

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot draw random bytes from the operating system: {0}")]
    Random(getrandom::Error),
    #[error(
        "{}: key file not found: run `konsilium init` to create this node's keys, \
         or set organization.data_dir to the directory that holds keys/",
        .path.display()
    )]
    Missing { path: PathBuf },
    #[error(
        "{}: a key already exists there; refusing to overwrite it, because it is this \
         organization's identity (move it away first if you really mean to replace it)",
        .path.display()
    )]
    Exists { path: PathBuf },
    #[error(
        "{}: readable by group or others (mode {mode:03o}); run `chmod 600 {}` \
         and check who may have copied it",
        .path.display(),
        .path.display()
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error(
        "{}: {len} bytes, but a key file holds exactly {SEED_LEN}; it is damaged or \
         not a Konsilium key, restore it from a backup",
        .path.display()
    )]
    Length { path: PathBuf, len: u64 },
    #[error("{}: not a regular file", .path.display())]
    NotAFile { path: PathBuf },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl KeyFileError {
    fn io(path: &Path) -> impl FnOnce(io::Error) -> KeyFileError + '_ {
        move |source| KeyFileError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// The organization's two secrets: the identity key signs (records,
/// conclusions) and is the libp2p transport identity; the sealing key only
/// opens packages, so it can rotate without re-certification.
#[derive(Debug)]
pub struct NodeKeys {
    pub identity: IdentityKey,
    pub sealing: SealingKey,
    /// Sealing keys rotated away from, newest first: what was sealed to
    /// them still opens.
    pub retired: Vec<RetiredKey>,
}

#[derive(Debug)]
pub struct RetiredKey {
    pub key: SealingKey,
    pub retired_at_ms: u64,
}

/// Where `NodeKeys` lives under a data directory, for messages and backups.
pub fn keys_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(KEYS_DIR)
}

/// 32 bytes from the operating system's RNG: the one source of randomness
/// the node hands to the deterministic protocol (key seeds, package ids,
/// ephemeral sealing seeds).
pub fn random_seed() -> Result<[u8; 32], KeyFileError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(KeyFileError::Random)?;
    Ok(seed)
}

impl NodeKeys {
    /// Takes the seeds and wipes them once the keys hold them.
    fn from_seeds(mut identity: [u8; 32], mut sealing: [u8; 32]) -> Self {
        let keys = NodeKeys {
            identity: IdentityKey::from_seed(identity),
            sealing: SealingKey::from_seed(sealing),
            retired: Vec::new(),
        };
        wipe(&mut identity);
        wipe(&mut sealing);
        keys
    }

    pub fn generate() -> Result<Self, KeyFileError> {
        Ok(Self::from_seeds(random_seed()?, random_seed()?))
    }

    /// Generates and writes new keys. Fails if either file exists, so running
    /// `init` twice cannot silently give the hospital a new identity.
    pub fn create(data_dir: &Path) -> Result<Self, KeyFileError> {
        let keys = Self::generate()?;
        keys.write(data_dir)?;
        Ok(keys)
    }

    pub fn load(data_dir: &Path) -> Result<Self, KeyFileError> {
        let dir = keys_dir(data_dir);
        finish_rotation(&dir)?;
        let mut keys = Self::from_seeds(
            read_key_file(&dir.join(IDENTITY_FILE))?,
            read_key_file(&dir.join(SEALING_FILE))?,
        );
        keys.retired = load_retired(&dir)?;
        Ok(keys)
    }

    /// Writes both key files, or neither: if the second cannot be created,
    /// the first is removed again, so a half-initialised node cannot start
    /// with a sealing key that belongs to no published record.
    pub fn write(&self, data_dir: &Path) -> Result<(), KeyFileError> {
        let dir = keys_dir(data_dir);
        let identity_path = dir.join(IDENTITY_FILE);
        let sealing_path = dir.join(SEALING_FILE);
        // Checked up front so the common mistake (init twice) fails before
        // anything is created; `create_new` below still closes the race.
        for path in [&identity_path, &sealing_path] {
            if fs::symlink_metadata(path).is_ok() {
                return Err(KeyFileError::Exists {
                    path: path.to_owned(),
                });
            }
        }
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(KeyFileError::io(&dir))?;
        write_key_file(&identity_path, &self.identity.to_seed())?;
        if let Err(e) = write_key_file(&sealing_path, &self.sealing.to_seed()) {
            let _ = fs::remove_file(&identity_path);
            return Err(e);
        }
        // Make the new directory entries durable too: a key that vanishes
        // after a power cut is a new organization.
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(KeyFileError::io(&dir))
    }
}

/// Replaces the sealing key with a new one and keeps the old one under
/// `keys/retired/`, retired at `now_ms`. Never overwrites a key: the new one
/// is written beside the current one first and renamed into place after
/// the old one moved away, so a crash in between leaves both on disk and
/// the next [`NodeKeys::load`] finishes the rotation.
pub fn rotate_sealing(data_dir: &Path, now_ms: u64) -> Result<SealingKey, KeyFileError> {
    let dir = keys_dir(data_dir);
    finish_rotation(&dir)?;
    let retired = dir.join(RETIRED_DIR);
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&retired)
        .map_err(KeyFileError::io(&retired))?;
    let mut seed = random_seed()?;
    let staged = dir.join(STAGED_SEALING);
    write_key_file(&staged, &seed)?;
    let key = SealingKey::from_seed(seed);
    wipe(&mut seed);
    let current = dir.join(SEALING_FILE);
    let old = retired.join(format!("sealing-{now_ms}.key"));
    if fs::symlink_metadata(&old).is_ok() {
        let _ = fs::remove_file(&staged);
        return Err(KeyFileError::Exists { path: old });
    }
    fs::rename(&current, &old).map_err(KeyFileError::io(&current))?;
    fs::rename(&staged, &current).map_err(KeyFileError::io(&staged))?;
    for d in [&retired, &dir] {
        File::open(d)
            .and_then(|f| f.sync_all())
            .map_err(KeyFileError::io(d))?;
    }
    Ok(key)
}

/// A rotation cut short after the old key moved away: the staged key
/// becomes the current one.
fn finish_rotation(dir: &Path) -> Result<(), KeyFileError> {
    let staged = dir.join(STAGED_SEALING);
    let current = dir.join(SEALING_FILE);
    if fs::symlink_metadata(&staged).is_err() {
        return Ok(());
    }
    if fs::symlink_metadata(&current).is_ok() {
        // Cut short before the old key moved: the rotation never happened.
        return fs::remove_file(&staged).map_err(KeyFileError::io(&staged));
    }
    fs::rename(&staged, &current).map_err(KeyFileError::io(&staged))
}

fn load_retired(dir: &Path) -> Result<Vec<RetiredKey>, KeyFileError> {
    let retired = dir.join(RETIRED_DIR);
    let entries = match fs::read_dir(&retired) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(KeyFileError::io(&retired)(e)),
    };
    let mut keys = Vec::new();
    for entry in entries {
        let path = entry.map_err(KeyFileError::io(&retired))?.path();
        let at = (path.file_name().and_then(|n| n.to_str()))
            .and_then(|n| n.strip_prefix("sealing-")?.strip_suffix(".key"))
            .and_then(|ms| ms.parse::<u64>().ok());
        let Some(retired_at_ms) = at else {
            return Err(KeyFileError::NotAFile { path });
        };
        let mut seed = read_key_file(&path)?;
        keys.push(RetiredKey {
            key: SealingKey::from_seed(seed),
            retired_at_ms,
        });
        wipe(&mut seed);
    }
    keys.sort_by_key(|k| std::cmp::Reverse(k.retired_at_ms));
    Ok(keys)
}

/// Writes one 32-byte secret seed to a new file readable only by its owner
/// (0600), synced to disk. Never replaces an existing file: a key that is
/// overwritten is an identity (or a federation authority) lost for good.
/// Shared with the authority tooling so every Konsilium secret on disk
/// follows the same rules.
pub fn write_key_file(path: &Path, seed: &[u8; SEED_LEN]) -> Result<(), KeyFileError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => KeyFileError::Exists {
                path: path.to_owned(),
            },
            _ => KeyFileError::io(path)(e),
        })?;
    file.write_all(seed)
        .and_then(|()| file.sync_all())
        .map_err(KeyFileError::io(path))
}

/// Reads one 32-byte secret seed, refusing a file that group or others can
/// read (so a loosened key is noticed before it is used again), that is not a
/// regular file, or that has the wrong length. The caller should wipe the
/// returned seed once it has built the key from it.
pub fn read_key_file(path: &Path) -> Result<[u8; SEED_LEN], KeyFileError> {
    let mut file = File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => KeyFileError::Missing {
            path: path.to_owned(),
        },
        _ => KeyFileError::io(path)(e),
    })?;
    // The open file's metadata, not the path's: what we check is what we read.
    let meta = file.metadata().map_err(KeyFileError::io(path))?;
    if !meta.is_file() {
        return Err(KeyFileError::NotAFile {
            path: path.to_owned(),
        });
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    if meta.len() != SEED_LEN as u64 {
        return Err(KeyFileError::Length {
            path: path.to_owned(),
            len: meta.len(),
        });
    }
    let mut seed = [0u8; SEED_LEN];
    file.read_exact(&mut seed).map_err(KeyFileError::io(path))?;
    Ok(seed)
}

/// Best effort at not leaving seeds in freed stack memory; `black_box` keeps
/// the compiler from dropping the writes as dead stores.
fn wipe(seed: &mut [u8; SEED_LEN]) {
    seed.fill(0);
    std::hint::black_box(seed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::Permissions;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn create_then_load_is_the_same_organization() {
        let dir = tempfile::tempdir().unwrap();
        let created = NodeKeys::create(dir.path()).unwrap();
        let loaded = NodeKeys::load(dir.path()).unwrap();
        assert_eq!(loaded.identity.org_id(), created.identity.org_id());
        assert_eq!(loaded.sealing.public(), created.sealing.public());
        assert_ne!(
            NodeKeys::generate().unwrap().identity.org_id(),
            created.identity.org_id()
        );
    }

    #[test]
    fn files_are_private_to_the_node_user() {
        let dir = tempfile::tempdir().unwrap();
        NodeKeys::create(dir.path()).unwrap();
        let keys = keys_dir(dir.path());
        assert_eq!(mode(&keys), 0o700);
        for file in [IDENTITY_FILE, SEALING_FILE] {
            let path = keys.join(file);
            assert_eq!(mode(&path), 0o600, "{file}");
            assert_eq!(fs::metadata(&path).unwrap().len(), 32);
        }
    }

    #[test]
    fn group_readable_key_is_refused_with_chmod_advice() {
        let dir = tempfile::tempdir().unwrap();
        NodeKeys::create(dir.path()).unwrap();
        let path = keys_dir(dir.path()).join(IDENTITY_FILE);
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        let e = NodeKeys::load(dir.path()).unwrap_err();
        assert!(matches!(e, KeyFileError::Permissions { mode: 0o644, .. }));
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("chmod 600 {}", path.display())),
            "{msg}"
        );
        fs::set_permissions(&path, Permissions::from_mode(0o600)).unwrap();
        assert!(NodeKeys::load(dir.path()).is_ok());
    }

    #[test]
    fn truncated_key_is_refused_naming_file_and_length() {
        let dir = tempfile::tempdir().unwrap();
        NodeKeys::create(dir.path()).unwrap();
        let path = keys_dir(dir.path()).join(SEALING_FILE);
        let mut bytes = fs::read(&path).unwrap();
        bytes.truncate(20);
        fs::write(&path, &bytes).unwrap();
        let e = NodeKeys::load(dir.path()).unwrap_err();
        assert!(matches!(e, KeyFileError::Length { len: 20, .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("20 bytes"), "{msg}");
    }

    #[test]
    fn missing_key_names_the_file_and_init() {
        let dir = tempfile::tempdir().unwrap();
        let e = NodeKeys::load(dir.path()).unwrap_err();
        assert!(matches!(e, KeyFileError::Missing { .. }));
        let msg = e.to_string();
        assert!(
            msg.contains(IDENTITY_FILE) && msg.contains("konsilium init"),
            "{msg}"
        );
    }

    #[test]
    fn creating_twice_fails_and_keeps_the_first_keys() {
        let dir = tempfile::tempdir().unwrap();
        let first = NodeKeys::create(dir.path()).unwrap();
        let before: Vec<_> = [IDENTITY_FILE, SEALING_FILE]
            .map(|f| fs::read(keys_dir(dir.path()).join(f)).unwrap())
            .into();
        let e = NodeKeys::create(dir.path()).unwrap_err();
        assert!(matches!(e, KeyFileError::Exists { .. }), "{e}");
        assert!(e.to_string().contains(IDENTITY_FILE), "{e}");
        let after: Vec<_> = [IDENTITY_FILE, SEALING_FILE]
            .map(|f| fs::read(keys_dir(dir.path()).join(f)).unwrap())
            .into();
        assert_eq!(before, after);
        assert_eq!(
            NodeKeys::load(dir.path()).unwrap().identity.org_id(),
            first.identity.org_id()
        );
    }

    #[test]
    fn a_failed_write_leaves_no_half_identity() {
        let dir = tempfile::tempdir().unwrap();
        let keys_path = keys_dir(dir.path());
        fs::create_dir_all(&keys_path).unwrap();
        // A stray sealing key without an identity: refused before anything is written.
        fs::write(keys_path.join(SEALING_FILE), [0u8; 32]).unwrap();
        let e = NodeKeys::create(dir.path()).unwrap_err();
        assert!(e.to_string().contains(SEALING_FILE), "{e}");
        assert!(!keys_path.join(IDENTITY_FILE).exists());
    }

    #[test]
    fn random_seeds_differ() {
        assert_ne!(random_seed().unwrap(), random_seed().unwrap());
    }

    #[test]
    fn a_rotation_keeps_the_old_sealing_key_and_survives_a_crash_halfway() {
        let dir = tempfile::tempdir().unwrap();
        let first = NodeKeys::create(dir.path()).unwrap();
        let second = rotate_sealing(dir.path(), 1_000).unwrap();
        let third = rotate_sealing(dir.path(), 2_000).unwrap();
        let loaded = NodeKeys::load(dir.path()).unwrap();
        assert_eq!(loaded.sealing.public(), third.public());
        assert_eq!(loaded.identity.org_id(), first.identity.org_id());
        let retired: Vec<_> = (loaded.retired.iter())
            .map(|r| (r.key.public(), r.retired_at_ms))
            .collect();
        assert_eq!(
            retired,
            [(second.public(), 2_000), (first.sealing.public(), 1_000)]
        );
        let old = keys_dir(dir.path())
            .join(RETIRED_DIR)
            .join("sealing-1000.key");
        assert_eq!(mode(&old), 0o600);

        // The crash: the current key moved away, the staged one not yet in place.
        let keys = keys_dir(dir.path());
        fs::rename(
            keys.join(SEALING_FILE),
            keys.join(RETIRED_DIR).join("sealing-3000.key"),
        )
        .unwrap();
        write_key_file(&keys.join(STAGED_SEALING), &[7; 32]).unwrap();
        let loaded = NodeKeys::load(dir.path()).unwrap();
        assert_eq!(
            loaded.sealing.public(),
            SealingKey::from_seed([7; 32]).public()
        );
        assert_eq!(loaded.retired.len(), 3);
        assert!(!keys.join(STAGED_SEALING).exists());

        // A stray file among the retired keys is named, not skipped.
        fs::write(keys.join(RETIRED_DIR).join("notes.txt"), b"x").unwrap();
        let e = NodeKeys::load(dir.path()).unwrap_err();
        assert!(e.to_string().contains("notes.txt"), "{e}");
    }
}
