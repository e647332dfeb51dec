//! The files the authority tooling reads and writes.
//!
//! Chains and revocation notices are wire frames, exactly what a node's
//! configuration loads, so no conversion step can go wrong between the
//! authority and the hospital. A regional authority's own certificate has no
//! wire message kind (it only ever travels inside a chain or a notice), so it
//! gets a small file format of its own: a magic and version header, then the
//! postcard encoding of the signed certificate.

use crate::BootstrapError;
use konsilium_protocol::cert::{AuthorityCert, CertChain, RevocationNotice};
use konsilium_protocol::signed::Signed;
use konsilium_protocol::wire::{self, MessageKind};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// `KS` like every Konsilium frame, then what the file is and its format version.
pub const AUTHORITY_CERT_MAGIC: &[u8; 8] = b"KSAUTH1\0";
/// Shared by all versions of the format, to tell "newer format" from "not a certificate".
const AUTHORITY_CERT_FAMILY: &[u8; 6] = b"KSAUTH";
/// An authority certificate is a few hundred bytes; anything far larger is
/// not one, and is refused before decoding.
const AUTHORITY_CERT_MAX_LEN: usize = 16 * 1024;

/// What an authority-tooling file holds, decided by its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorityFile {
    AuthorityCert(Signed<AuthorityCert>),
    CertChain(CertChain),
    RevocationNotice(RevocationNotice),
}

pub fn encode_authority_cert(cert: &Signed<AuthorityCert>) -> Vec<u8> {
    postcard::to_extend(cert, AUTHORITY_CERT_MAGIC.to_vec())
        .expect("encoding into a Vec cannot fail")
}

/// Decodes an authority certificate file and checks that it is intact: the
/// body decodes and its signature matches the issuer it names. That is an
/// integrity check, not trust (the issuer is checked against a root by
/// `inspect --root` and by every node), but it turns a damaged copy into an
/// error here rather than into certificates that every node later refuses.
pub fn decode_authority_cert(
    path: &Path,
    bytes: &[u8],
) -> Result<Signed<AuthorityCert>, BootstrapError> {
    let bad = |reason: String| BootstrapError::BadAuthorityCert {
        path: path.to_owned(),
        reason,
    };
    if bytes.len() > AUTHORITY_CERT_MAX_LEN {
        return Err(bad(format!(
            "{} bytes, far more than an authority certificate ever takes; this is some other file",
            bytes.len()
        )));
    }
    let Some(body) = bytes.strip_prefix(AUTHORITY_CERT_MAGIC) else {
        if bytes.starts_with(AUTHORITY_CERT_FAMILY) && bytes.len() >= 8 {
            return Err(bad(format!(
                "written in authority certificate format {:?}, which this version of \
                 konsilium-authority does not read; upgrade konsilium-authority",
                String::from_utf8_lossy(&bytes[6..7])
            )));
        }
        if let Ok(kind) = wire::peek_kind(bytes) {
            return Err(bad(format!(
                "this is a {kind} file; pass the .cert file that `konsilium-authority root \
                 certify-authority` wrote for this authority"
            )));
        }
        return Err(bad(
            "it does not start with the authority certificate header; pass the .cert file \
             that `konsilium-authority root certify-authority` wrote"
                .into(),
        ));
    };
    let damaged = |detail: String| {
        bad(format!(
            "damaged ({detail}); ask the root authority for a fresh copy"
        ))
    };
    let (signed, rest) = postcard::take_from_bytes::<Signed<AuthorityCert>>(body)
        .map_err(|e| damaged(e.to_string()))?;
    if !rest.is_empty() {
        return Err(damaged(format!("{} bytes after its end", rest.len())));
    }
    let cert = signed
        .decode_unverified()
        .map_err(|e| damaged(e.to_string()))?;
    let issuer = cert
        .issuer
        .verifying_key()
        .map_err(|e| damaged(format!("issuer key: {e}")))?;
    signed
        .verify(&issuer)
        .map_err(|_| damaged("its signature does not match the issuer it names".into()))?;
    Ok(signed)
}

pub fn read_authority_cert(path: &Path) -> Result<Signed<AuthorityCert>, BootstrapError> {
    let bytes = read(path)?;
    decode_authority_cert(path, &bytes)
}

/// Reads any of the three kinds of file, for `inspect`.
pub fn read_authority_file(path: &Path) -> Result<AuthorityFile, BootstrapError> {
    let bytes = read(path)?;
    if bytes.starts_with(AUTHORITY_CERT_FAMILY) {
        return decode_authority_cert(path, &bytes).map(AuthorityFile::AuthorityCert);
    }
    let kind = wire::peek_kind(&bytes).map_err(|_| BootstrapError::UnknownFile {
        path: path.to_owned(),
    })?;
    let wire_err = |what: &'static str| {
        let path = path.to_owned();
        move |source| BootstrapError::Wire { path, what, source }
    };
    match kind {
        MessageKind::CertChain => wire::decode(&bytes)
            .map(AuthorityFile::CertChain)
            .map_err(wire_err("certificate chain")),
        MessageKind::RevocationNotice => wire::decode(&bytes)
            .map(AuthorityFile::RevocationNotice)
            .map_err(wire_err("revocation notice")),
        other => Err(BootstrapError::NotAnAuthorityFile {
            path: path.to_owned(),
            kind: other,
        }),
    }
}

/// Reads a revocation notice this tooling wrote earlier.
pub fn read_notice(path: &Path) -> Result<RevocationNotice, BootstrapError> {
    let bytes = read(path)?;
    wire::decode(&bytes).map_err(|source| BootstrapError::Wire {
        path: path.to_owned(),
        what: "revocation notice",
        source,
    })
}

pub fn read(path: &Path) -> Result<Vec<u8>, BootstrapError> {
    fs::read(path).map_err(BootstrapError::io("cannot read", path))
}

/// Fails early, before a serial is spent, when the output is already there
/// or its directory is missing.
pub fn check_output_free(path: &Path) -> Result<(), BootstrapError> {
    if fs::symlink_metadata(path).is_ok() {
        return Err(BootstrapError::OutputExists {
            path: path.to_owned(),
        });
    }
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => Err(BootstrapError::Io {
            path: path.to_owned(),
            action: "cannot create",
            source: io::Error::new(
                io::ErrorKind::NotFound,
                format!("directory {} does not exist", dir.display()),
            ),
        }),
        _ => Ok(()),
    }
}

/// Writes a new public file (certificates and notices are meant to be
/// handed out, so 0644) and never replaces one: an earlier certificate that
/// is silently overwritten is one the authority can no longer show it issued.
/// A half-written file is removed again.
pub fn write_new(path: &Path, bytes: &[u8]) -> Result<(), BootstrapError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => BootstrapError::OutputExists {
                path: path.to_owned(),
            },
            _ => BootstrapError::io("cannot create", path)(e),
        })?;
    if let Err(e) = file.write_all(bytes).and_then(|()| file.sync_all()) {
        let _ = fs::remove_file(path);
        return Err(BootstrapError::io("cannot write", path)(e));
    }
    Ok(())
}

/// Replaces a state file all at once (write aside, sync, rename, sync the
/// directory), so a crash leaves either the old or the new content.
pub fn replace_atomically(path: &Path, bytes: &[u8]) -> Result<(), BootstrapError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let result = File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| fs::rename(&tmp, path))
        .and_then(|()| File::open(dir)?.sync_all());
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(BootstrapError::io("cannot write", path)(e));
    }
    Ok(())
}
