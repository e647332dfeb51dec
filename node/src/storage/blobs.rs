//! Sealed attachments as content-addressed files beside the database.
//!
//! Attachments (CT series, DICOM, ECG) reach hundreds of megabytes, which
//! sled handles badly, so each lives in `blobs/<blake3 of the sealed bytes>`.
//! A blob being received grows in `<hash>.partial`, always as a contiguous
//! prefix, so a transfer interrupted by a crash resumes from the file's
//! length; it becomes a blob only after its hash checks out.

use super::datadir;
use super::writeback::Writeback;
use konsilium_protocol::identity::{SealingKey, SealingPublicKey};
use konsilium_protocol::seal::keyring::{Keyring, Purpose};
use konsilium_protocol::seal::{self, BlobRef, EnvelopeHeader, Sealer};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("attachment store {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("attachment {hash}: piece at offset {offset} does not continue the {have} bytes held")]
    OutOfOrder {
        hash: String,
        offset: u64,
        have: u64,
    },
    #[error("attachment {hash}: {got} bytes would exceed its size of {size}")]
    TooLong { hash: String, got: u64, size: u64 },
    #[error("attachment {hash}: received bytes do not match its content hash; discarded")]
    HashMismatch { hash: String },
    #[error("attachment {0} is not held here")]
    Missing(String),
    #[error("attachment: {0}")]
    Seal(#[from] seal::SealError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BlobError + '_ {
    move |source| BlobError::Io {
        path: path.to_owned(),
        source,
    }
}

fn hex(hash: &[u8; 32]) -> String {
    hex::encode(hash)
}

#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    /// Opens the store, removing what an interrupted operation left: the
    /// plaintext scratch directory and half-sealed attachments.
    pub fn open(dir: &Path) -> Result<Self, BlobError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let scratch = dir.join("tmp");
        crate::storage::datadir::sweep(&scratch).map_err(|e| BlobError::Io {
            path: e.path,
            source: e.source,
        })?;
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let path = entry.map_err(io_err(dir))?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                fs::remove_file(&path).map_err(io_err(&path))?;
            }
        }
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    fn path(&self, hash: &[u8; 32]) -> PathBuf {
        self.dir.join(hex(hash))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn partial_path(&self, hash: &[u8; 32]) -> PathBuf {
        self.dir.join(format!("{}.partial", hex(hash)))
    }

    pub fn has(&self, blob: &BlobRef) -> bool {
        fs::metadata(self.path(&blob.hash)).is_ok_and(|m| m.len() == blob.size)
    }

    /// Bytes of a blob received so far (its full size once complete).
    pub fn received(&self, blob: &BlobRef) -> u64 {
        if self.has(blob) {
            return blob.size;
        }
        fs::metadata(self.partial_path(&blob.hash))
            .map(|m| m.len().min(blob.size))
            .unwrap_or(0)
    }

    pub fn read(&self, hash: &[u8; 32], offset: u64, len: u32) -> Result<Vec<u8>, BlobError> {
        read_piece(&self.reader(hash)?, &self.path(hash), offset, len)
    }

    /// Opens (or resumes) receiving a blob. What is already in the partial
    /// file is hashed once here, so completion needs no second pass.
    pub fn begin(&self, blob: &BlobRef) -> Result<PartialBlob, BlobError> {
        let path = self.partial_path(&blob.hash);
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let mut hasher = blake3::Hasher::new();
        let mut held = 0u64;
        {
            let mut reader = BufReader::with_capacity(1 << 20, (&mut file).take(blob.size));
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = reader.read(&mut buf).map_err(io_err(&path))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                held += n as u64;
            }
        }
        if held < fs::metadata(&path).map_err(io_err(&path))?.len() {
            // Longer than the blob can be: start over.
            file.set_len(0).map_err(io_err(&path))?;
            return self.begin(blob);
        }
        Ok(PartialBlob {
            blob: *blob,
            path,
            file,
            hasher,
            written: held,
            writeback: Writeback::starting_at(held),
            done: self.path(&blob.hash),
        })
    }

    /// A directory beside the blobs for plaintext passing through briefly
    /// (re-sealing on escalation), on the same protected volume.
    pub fn scratch(&self) -> Result<PathBuf, BlobError> {
        let dir = self.dir.join("tmp");
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(dir)
    }

    /// Deletes a complete blob (its package was delivered); a missing one
    /// is not an error.
    pub fn remove(&self, hash: &[u8; 32]) -> Result<(), BlobError> {
        let path = self.path(hash);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Opens a complete blob for serving pieces of it.
    pub fn reader(&self, hash: &[u8; 32]) -> Result<File, BlobError> {
        File::open(self.path(hash)).map_err(|_| BlobError::Missing(hex(hash)))
    }

    /// Seals attachment `index` of a package from `source` into a new blob,
    /// streaming: the attachment is never whole in memory.
    pub fn seal_attachment(
        &self,
        header: &EnvelopeHeader,
        index: u32,
        sender: &SealingKey,
        recipient: &SealingPublicKey,
        ephemeral_seed: [u8; 32],
        source: &mut dyn Read,
    ) -> Result<BlobRef, BlobError> {
        let tmp = self.dir.join(format!("sealing-{}-{index}.tmp", header.id));
        let file = File::create(&tmp).map_err(io_err(&tmp))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut hasher = blake3::Hasher::new();
        let mut size = 0u64;
        let mut writeback = Writeback::starting_at(0);
        let mut emit = |bytes: &[u8], out: &mut BufWriter<File>| -> Result<(), BlobError> {
            hasher.update(bytes);
            size += bytes.len() as u64;
            out.write_all(bytes).map_err(io_err(&tmp))?;
            // What the buffer holds is not in the file yet.
            writeback.wrote(out.get_ref(), size - out.buffer().len() as u64);
            Ok(())
        };
        let (mut sealer, handshake) =
            Sealer::for_attachment(header, index, sender, recipient, ephemeral_seed)?;
        emit(&handshake, &mut out)?;
        let mut plain = vec![0u8; seal::CHUNK_PLAINTEXT];
        let mut sealed = Vec::with_capacity(seal::CHUNK_CIPHERTEXT_MAX + 2);
        loop {
            let n = read_full(source, &mut plain).map_err(io_err(&tmp))?;
            if n == 0 {
                break;
            }
            sealed.clear();
            sealer.seal_chunk(&plain[..n], &mut sealed)?;
            emit(&sealed, &mut out)?;
        }
        sealed.clear();
        sealer.finish(&mut sealed)?;
        emit(&sealed, &mut out)?;
        let file = out.into_inner().map_err(|e| BlobError::Io {
            path: tmp.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io_err(&tmp))?;
        let blob = BlobRef {
            hash: *hasher.finalize().as_bytes(),
            size,
        };
        let done = self.path(&blob.hash);
        datadir::rename_durably(&tmp, &done).map_err(io_err(&done))?;
        Ok(blob)
    }

    /// Opens attachment `index` of a package this node holds into `dest`,
    /// streaming, with whichever of its sealing keys it was sealed to.
    pub fn open_attachment(
        &self,
        header: &EnvelopeHeader,
        index: u32,
        keyring: &Keyring,
        sender_keys: &[SealingPublicKey],
        dest: &mut dyn Write,
    ) -> Result<u64, BlobError> {
        let blob = header
            .attachments
            .get(index as usize)
            .ok_or_else(|| BlobError::Missing(format!("#{index}")))?;
        let path = self.path(&blob.hash);
        let file = File::open(&path).map_err(|_| BlobError::Missing(hex(&blob.hash)))?;
        let mut input = BufReader::with_capacity(1 << 20, file);
        let mut handshake = [0u8; seal::HANDSHAKE_LEN];
        input.read_exact(&mut handshake).map_err(io_err(&path))?;
        let mut opener =
            keyring.attachment_opener(header, index, &handshake, sender_keys, Purpose::Held)?;
        let mut frame = Vec::with_capacity(seal::CHUNK_CIPHERTEXT_MAX + 2);
        let mut plain = Vec::with_capacity(seal::CHUNK_PLAINTEXT);
        let mut written = 0u64;
        while !opener.is_finished() {
            let mut len = [0u8; 2];
            input
                .read_exact(&mut len)
                .map_err(|_| seal::SealError::Truncated)?;
            frame.clear();
            frame.extend_from_slice(&len);
            frame.resize(2 + usize::from(u16::from_le_bytes(len)), 0);
            input
                .read_exact(&mut frame[2..])
                .map_err(|_| seal::SealError::Truncated)?;
            plain.clear();
            opener.open_chunk(&frame, &mut plain)?;
            dest.write_all(&plain).map_err(io_err(&path))?;
            written += plain.len() as u64;
        }
        Ok(written)
    }
}

/// A piece of an open blob, read without moving a shared cursor, straight
/// into the piece's memory: zeroing each megabyte before reading over it
/// was memory traffic a transfer paid for nothing.
pub fn read_piece(file: &File, path: &Path, offset: u64, len: u32) -> Result<Vec<u8>, BlobError> {
    let size = file.metadata().map_err(io_err(path))?.len();
    let len = u64::from(len).min(size.saturating_sub(offset)) as usize;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let at = offset + out.len() as u64;
        let read = rustix::io::pread(file, rustix::buffer::spare_capacity(&mut out), at)
            .map_err(|e| io_err(path)(io::Error::from(e)))?;
        if read == 0 {
            return Err(io_err(path)(io::ErrorKind::UnexpectedEof.into()));
        }
    }
    // The allocator may have given room for more than was asked.
    out.truncate(len);
    Ok(out)
}

/// A blob being received: an open partial file, hashed as it grows.
pub struct PartialBlob {
    blob: BlobRef,
    path: PathBuf,
    file: File,
    hasher: blake3::Hasher,
    written: u64,
    writeback: Writeback,
    done: PathBuf,
}

impl PartialBlob {
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends the next piece; returns the new length.
    pub fn append(&mut self, offset: u64, bytes: &[u8]) -> Result<u64, BlobError> {
        if offset != self.written {
            return Err(BlobError::OutOfOrder {
                hash: hex(&self.blob.hash),
                offset,
                have: self.written,
            });
        }
        let got = self.written + bytes.len() as u64;
        if got > self.blob.size {
            return Err(BlobError::TooLong {
                hash: hex(&self.blob.hash),
                got,
                size: self.blob.size,
            });
        }
        self.file.write_all(bytes).map_err(io_err(&self.path))?;
        self.hasher.update(bytes);
        self.written = got;
        self.writeback.wrote(&self.file, got);
        Ok(got)
    }

    /// Checks the hash, makes the bytes durable and turns them into a blob.
    /// A mismatch discards the partial file, so a retry starts over.
    pub fn complete(self) -> Result<(), BlobError> {
        if *self.hasher.finalize().as_bytes() != self.blob.hash || self.written != self.blob.size {
            drop(self.file);
            let _ = fs::remove_file(&self.path);
            return Err(BlobError::HashMismatch {
                hash: hex(&self.blob.hash),
            });
        }
        self.file.sync_all().map_err(io_err(&self.path))?;
        datadir::rename_durably(&self.path, &self.done).map_err(io_err(&self.done))
    }
}

fn read_full(source: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Whether a file in the blob directory is a complete blob: its name is
/// the 64 hex digits of its hash (partial and temporary files have a suffix).
pub fn is_complete_blob_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(key: &SealingKey) -> Keyring {
        Keyring::new(key.clone(), Vec::new())
    }
    use konsilium_protocol::cert::OrgLevel;
    use konsilium_protocol::identity::IdentityKey;
    use konsilium_protocol::seal::{PACKAGE_VERSION, PackageId, RoutingHeader};
    use konsilium_protocol::specialty::Specialty;
    use konsilium_protocol::time::Timestamp;
    use konsilium_protocol::urgency::Urgency;

    fn header() -> EnvelopeHeader {
        EnvelopeHeader {
            version: PACKAGE_VERSION,
            id: PackageId([3; 16]),
            sender: IdentityKey::from_seed([1; 32]).org_id(),
            recipient: IdentityKey::from_seed([2; 32]).org_id(),
            routing: RoutingHeader {
                specialty: Specialty::Radiology,
                min_level: OrgLevel::Regional,
                urgency: Urgency::Planned,
                region: None,
            },
            created: Timestamp::from_unix_millis(1),
            expires: Timestamp::from_unix_millis(2),
            attachments: Vec::new(),
        }
    }

    #[test]
    fn seal_transfer_in_pieces_resume_and_open() {
        let tmp = tempfile::tempdir().unwrap();
        let sender_store = BlobStore::open(&tmp.path().join("a")).unwrap();
        let receiver_store = BlobStore::open(&tmp.path().join("b")).unwrap();
        let (sender, recipient) = (
            SealingKey::from_seed([5; 32]),
            SealingKey::from_seed([6; 32]),
        );
        let plain: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let h = header();
        let blob = sender_store
            .seal_attachment(
                &h,
                0,
                &sender,
                &recipient.public(),
                [7; 32],
                &mut plain.as_slice(),
            )
            .unwrap();
        assert!(sender_store.has(&blob));
        assert!(!receiver_store.has(&blob));

        // Transfer in 1 MiB pieces, "crash" after the first, resume from what is on disk.
        let first = sender_store.read(&blob.hash, 0, 1 << 20).unwrap();
        let mut partial = receiver_store.begin(&blob).unwrap();
        partial.append(0, &first).unwrap();
        assert!(
            matches!(partial.append(5, b"x"), Err(BlobError::OutOfOrder { have, .. }) if have == 1 << 20)
        );
        drop(partial);
        let resumed_at = receiver_store.received(&blob);
        assert_eq!(resumed_at, 1 << 20);
        let mut partial = receiver_store.begin(&blob).unwrap();
        assert_eq!(
            partial.written(),
            resumed_at,
            "resumes after the bytes on disk"
        );
        let mut offset = resumed_at;
        while offset < blob.size {
            let piece = sender_store.read(&blob.hash, offset, 1 << 20).unwrap();
            offset = partial.append(offset, &piece).unwrap();
        }
        partial.complete().unwrap();
        assert!(receiver_store.has(&blob));

        let mut h2 = h.clone();
        h2.attachments = vec![blob];
        let mut out = Vec::new();
        let n = receiver_store
            .open_attachment(&h2, 0, &ring(&recipient), &[sender.public()], &mut out)
            .unwrap();
        assert_eq!(n as usize, plain.len());
        assert_eq!(out, plain);
        // The wrong recipient key cannot open it.
        assert!(
            receiver_store
                .open_attachment(&h2, 0, &ring(&sender), &[sender.public()], &mut Vec::new())
                .is_err()
        );
    }

    #[test]
    fn corrupted_transfer_is_discarded() {
        let tmp = tempfile::tempdir().unwrap();
        let store = BlobStore::open(tmp.path()).unwrap();
        let blob = BlobRef {
            hash: *blake3::hash(b"hello").as_bytes(),
            size: 5,
        };
        let mut partial = store.begin(&blob).unwrap();
        partial.append(0, b"hellO").unwrap();
        assert!(matches!(
            partial.complete(),
            Err(BlobError::HashMismatch { .. })
        ));
        assert_eq!(
            store.received(&blob),
            0,
            "the bad bytes are gone; a retry starts over"
        );
        let mut partial = store.begin(&blob).unwrap();
        assert!(matches!(
            partial.append(0, b"hello!"),
            Err(BlobError::TooLong { .. })
        ));
        partial.append(0, b"hello").unwrap();
        partial.complete().unwrap();
        assert_eq!(store.read(&blob.hash, 1, 3).unwrap(), b"ell");
        assert_eq!(
            store.read(&blob.hash, 3, 1 << 20).unwrap(),
            b"lo",
            "cut at the end"
        );
        assert!(
            store.read(&blob.hash, 9, 4).unwrap().is_empty(),
            "past the end"
        );
    }
}
