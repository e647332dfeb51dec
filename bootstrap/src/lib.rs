//! Federation authority tooling behind `konsilium-authority`.
//!
//! A Konsilium federation is anchored in root authority keys that every node
//! lists in `federation.roots`. A root certifies regional authorities (a
//! region and a highest level they may grant) and organizations; a regional
//! authority certifies organizations of its region. This crate is what the
//! people holding those keys run, usually on an offline machine: it creates
//! the keys, issues certificate chains in the exact form a node's
//! `organization.certificate` loads, and signs revocation notices for
//! `federation.revocations`.
//!
//! Each authority lives in its own directory: its key (`root.key` or
//! `regional.key`, 0600, never overwritten), the `serials` register of every
//! serial it has issued (revocation names serials, so they must be unique per
//! issuer), and `latest.notice`, the last revocation list it signed (a new
//! list replaces the old one on every node, so it must repeat what the old
//! one revoked).
//!
//! Everything here takes `now` as an argument; only the binary reads the clock.

mod authority;
mod files;
mod hex;
mod inspect;

pub use authority::{
    AuthorityRequest, BACKDATE, LATEST_NOTICE_FILE, OrgRequest, REGIONAL_KEY_FILE, ROOT_KEY_FILE,
    Revocation, Role, SERIALS_FILE, certify_authority, certify_org, init_authority, public_key,
    revoke,
};
pub use files::{
    AUTHORITY_CERT_MAGIC, AuthorityFile, decode_authority_cert, encode_authority_cert,
    read_authority_cert, read_authority_file,
};
pub use hex::{KeyTextError, parse_authority_key, parse_sealing_key, sealing_key_hex};
pub use inspect::{Inspection, inspect, inspect_file};

use konsilium_keyfile::KeyFileError;
use konsilium_protocol::cert::CertError;
use konsilium_protocol::time::Timestamp;
use konsilium_protocol::wire::{MessageKind, WireError};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    KeyText(#[from] KeyTextError),
    #[error(
        "{}: no {role} authority key here; create one with `konsilium-authority {role} init --dir {}`, \
         or point the option at the directory that holds {}",
        .path.display(),
        .path.parent().unwrap_or(Path::new(".")).display(),
        .role.key_file()
    )]
    NoKey { path: PathBuf, role: Role },
    #[error(
        "{}: already holds {file}; refusing to create another authority there, because a key \
         that is replaced is an authority lost (move the directory away first if you really \
         mean to start over)",
        .dir.display()
    )]
    AlreadyInitialized { dir: PathBuf, file: &'static str },
    #[error("{}: holds a {found} authority key, not a {wanted} one; {hint}", .dir.display())]
    WrongRole {
        dir: PathBuf,
        found: Role,
        wanted: Role,
        hint: &'static str,
    },
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    #[error("{}: {action}: {source}", .path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(
        "{}: already exists; refusing to overwrite it: choose another --out or move the existing file away",
        .path.display()
    )]
    OutputExists { path: PathBuf },
    #[error("{}: not a usable authority certificate: {reason}", .path.display())]
    BadAuthorityCert { path: PathBuf, reason: String },
    #[error("{}: not a valid {what} file: {source}", .path.display())]
    Wire {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: WireError,
    },
    #[error(
        "{}: not a Konsilium authority certificate (.cert), certificate chain (.chain) or \
         revocation notice (.notice)",
        .path.display()
    )]
    UnknownFile { path: PathBuf },
    #[error(
        "{}: a Konsilium {kind} frame, not something an authority issues; inspect takes .cert, \
         .chain and .notice files",
        .path.display()
    )]
    NotAnAuthorityFile { path: PathBuf, kind: MessageKind },
    #[error(
        "{}: certifies authority key {cert_key}, but the key in {} is {dir_key}; pass the \
         certificate the root issued to this authority",
        .cert.display(),
        .dir.display()
    )]
    IssuerCertMismatch {
        cert: PathBuf,
        dir: PathBuf,
        cert_key: String,
        dir_key: String,
    },
    #[error(
        "{}: this authority's certificate cannot issue now: {reason}; ask the root authority for \
         a new certificate",
        .path.display()
    )]
    IssuerCertNotValid { path: PathBuf, reason: CertError },
    #[error("--days must be at least 1: a certificate needs a validity period")]
    ZeroDays,
    #[error(
        "--days {days} would make the certificate valid until {until}, after the issuing \
         authority's own certificate ends at {authority_until}; use --days {max_days} or less, \
         or have the root renew the authority's certificate first"
    )]
    OutlivesAuthority {
        days: u32,
        until: Timestamp,
        authority_until: Timestamp,
        max_days: u64,
    },
    #[error(
        "{}: the serials register is missing; it records every serial this authority has issued \
         so none is reused: restore it from the backup of this authority directory (only if this \
         authority has never issued anything, create it as an empty file)",
        .path.display()
    )]
    SerialsMissing { path: PathBuf },
    #[error(
        "{} line {line}: {text:?} does not start with a serial number; the register is damaged: \
         restore it from a backup rather than risk reusing a serial",
        .path.display()
    )]
    SerialsDamaged {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error(
        "serial {serial} was already issued by this authority ({}: {entry}); serials must be \
         unique per issuer because revocation lists name them; use an unused one such as {next_free}",
        .path.display()
    )]
    SerialUsed {
        serial: u64,
        path: PathBuf,
        entry: String,
        next_free: u64,
    },
    #[error(
        "serial {serial} was never issued by this authority (not in {}); check the number with \
         `konsilium-authority inspect <file>` on the certificate you mean to revoke",
        .path.display()
    )]
    UnknownSerial { serial: u64, path: PathBuf },
    #[error(
        "--sequence {sequence} is not above {previous}, the sequence of this authority's last \
         revocation list ({}); nodes keep the higher one, so use --sequence {}",
        .path.display(),
        .previous + 1
    )]
    StaleSequence {
        sequence: u64,
        previous: u64,
        path: PathBuf,
    },
    #[error(
        "{}: was signed by {found}, not by this authority ({expected}); it does not belong in \
         this directory: move it away",
        .path.display()
    )]
    ForeignNotice {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error(transparent)]
    Cert(#[from] CertError),
}

impl BootstrapError {
    fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BootstrapError {
        let path = path.to_owned();
        move |source| BootstrapError::Io {
            path,
            action,
            source,
        }
    }
}

/// The clock reading the binary passes in. A clock before 1970 reads as the
/// epoch, which makes every certificate look not yet valid instead of failing
/// somewhere less obvious.
pub fn timestamp(time: SystemTime) -> Timestamp {
    let ms = time
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    Timestamp::from_unix_millis(ms)
}
