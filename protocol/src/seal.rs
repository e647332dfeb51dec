//! Sealed consultation packages: end-to-end encryption from the sending
//! organization to the consulting one.
//!
//! The body is sealed with Noise `X` (one-way: the sender's static key
//! travels encrypted and the recipient authenticates it), the envelope header
//! bound as the prologue, so a relay that holds the package learns only the
//! header and can change neither it nor the body without the recipient
//! noticing. Bodies of any size are split into Noise messages of at most
//! 64 KiB, each framed by a 2-byte length; a final empty message ends the
//! body, so a truncated package is detected (data chunks are never empty),
//! and Noise's nonces detect reordering. Encryption runs straight from the caller's buffer into the
//! output, with no copy, so sealing costs what the cipher costs.
//! Noise does not stop replays: the header's unique id and expiry, checked
//! against ids the caller has seen, do.

use crate::cert::{OrgLevel, RegionCode};
use crate::directory::Directory;
use crate::identity::{OrgId, SealingKey, SealingPublicKey};
use crate::specialty::Specialty;
use crate::time::Timestamp;
use crate::urgency::Urgency;
use serde::{Deserialize, Serialize};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use std::fmt;
use std::time::Duration;

pub const PACKAGE_VERSION: u8 = 1;
const NOISE_PARAMS: &str = "Noise_X_25519_ChaChaPoly_BLAKE2s";
const PROLOGUE_DOMAIN: &[u8] = b"konsilium/package/v1\0";
/// A Noise transport message is at most 65,535 bytes including the 16-byte tag.
pub const CHUNK_CIPHERTEXT_MAX: usize = 65_535;
const TAG_LEN: usize = 16;
/// Plaintext per full chunk.
pub const CHUNK_PLAINTEXT: usize = CHUNK_CIPHERTEXT_MAX - TAG_LEN;
/// Each chunk is preceded by its ciphertext length, little-endian u16.
const FRAME_LEN: usize = 2;
/// The `X` handshake message with an empty payload: e (32), encrypted s (32 + 16), tag (16).
pub const HANDSHAKE_LEN: usize = 32 + 32 + TAG_LEN + TAG_LEN;
/// Packages live at most this long; receivers remember seen ids for as long.
pub const MAX_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// Tolerated clock difference between sender and recipient.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// A package's unique id, drawn at random by the sender.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PackageId(pub [u8; 16]);

impl fmt::Display for PackageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for PackageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PackageId({self})")
    }
}

impl std::str::FromStr for PackageId {
    type Err = SealError;
    fn from_str(s: &str) -> Result<Self, SealError> {
        let bad = || SealError::BadPackageId(s.to_owned());
        let mut out = [0u8; 16];
        hex::decode_to_slice(s, &mut out).map_err(|_| bad())?;
        Ok(Self(out))
    }
}

/// A sealed attachment, by the BLAKE3 hash and size of its sealed bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BlobRef {
    pub hash: [u8; 32],
    pub size: u64,
}

impl BlobRef {
    pub fn hex(&self) -> String {
        hex::encode(self.hash)
    }
}

/// At most this many attachments per package.
pub const MAX_ATTACHMENTS: usize = 64;
/// The largest attachment a package may list: a whole-slide pathology
/// image or a CT study is some gigabytes. Bounded so the sizes a header
/// lists add up without overflow.
pub const MAX_ATTACHMENT_BYTES: u64 = 64 << 30;
const ATTACHMENT_DOMAIN: &[u8] = b"konsilium/attachment/v1\0";

/// What routing needs to know, and all a relay ever sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingHeader {
    pub specialty: Specialty,
    pub min_level: OrgLevel,
    pub urgency: Urgency,
    pub region: Option<RegionCode>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeHeader {
    pub version: u8,
    pub id: PackageId,
    pub sender: OrgId,
    pub recipient: OrgId,
    pub routing: RoutingHeader,
    pub created: Timestamp,
    pub expires: Timestamp,
    /// Attachments travel as separate sealed blobs, named here by content
    /// hash so any hop can fetch and check them without reading them; the
    /// body's authentication covers this list.
    pub attachments: Vec<BlobRef>,
}

impl EnvelopeHeader {
    fn prologue(&self) -> Vec<u8> {
        postcard::to_extend(self, PROLOGUE_DOMAIN.to_vec())
            .expect("encoding into a Vec cannot fail")
    }

    /// An attachment is bound to its package and position, not to the whole
    /// header: the header lists the attachment's hash, which depends on
    /// these bytes, so it cannot be part of them.
    fn attachment_prologue(&self, index: u32) -> Vec<u8> {
        postcard::to_extend(
            &(self.id, self.sender, self.recipient, index),
            ATTACHMENT_DOMAIN.to_vec(),
        )
        .expect("encoding into a Vec cannot fail")
    }

    /// Checks any holder can make, relays included: version, lifetime, expiry.
    pub fn check(&self, now: Timestamp) -> Result<(), SealError> {
        if self.version != PACKAGE_VERSION {
            return Err(SealError::UnsupportedVersion(self.version));
        }
        if self.expires <= self.created || self.expires.since(self.created) > MAX_LIFETIME {
            return Err(SealError::BadLifetime);
        }
        if now >= self.expires {
            return Err(SealError::Expired {
                expires: self.expires,
                now,
            });
        }
        if self.created > now.saturating_add(MAX_CLOCK_SKEW) {
            return Err(SealError::FromTheFuture {
                created: self.created,
                now,
            });
        }
        if self.attachments.len() > MAX_ATTACHMENTS {
            return Err(SealError::Malformed("more attachments than allowed"));
        }
        if (self.attachments.iter()).any(|b| b.size > MAX_ATTACHMENT_BYTES) {
            return Err(SealError::Malformed("an attachment larger than allowed"));
        }
        Ok(())
    }
}

/// A package as stored and forwarded: the header in clear, the body sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedPackage {
    pub header: EnvelopeHeader,
    /// The handshake message followed by the chunks.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("package version {0} is not supported (this node speaks version {PACKAGE_VERSION})")]
    UnsupportedVersion(u8),
    #[error("package lifetime must be positive and at most 30 days")]
    BadLifetime,
    #[error("package expired at {expires} (now {now})")]
    Expired { expires: Timestamp, now: Timestamp },
    #[error("package created at {created}, in the future (now {now}); check the sender's clock")]
    FromTheFuture { created: Timestamp, now: Timestamp },
    #[error("package is addressed to {recipient}, not to this organization")]
    NotForUs { recipient: OrgId },
    #[error("package {0} was already received (replay)")]
    Replay(PackageId),
    #[error("sender {0} is not in the directory, so its identity cannot be checked")]
    UnknownSender(OrgId),
    #[error(
        "package was sealed with a key that does not belong to the sender {0} named in its header"
    )]
    SenderKeyMismatch(OrgId),
    #[error(
        "package body failed authentication at chunk {chunk}: tampered, or not sealed to this key"
    )]
    Tampered { chunk: usize },
    #[error("package body ends without its final chunk (truncated)")]
    Truncated,
    #[error("package body continues after its final chunk")]
    TrailingData,
    #[error("package body: {0}")]
    Malformed(&'static str),
    #[error("{0:?} is not a package id (32 hex digits)")]
    BadPackageId(String),
    #[error("chunk plaintext of {0} bytes: must be 1 to {CHUNK_PLAINTEXT} bytes")]
    BadChunkSize(usize),
    #[error("sealing already finished with the last chunk")]
    AlreadyFinished,
    #[error("noise: {0}")]
    Noise(String),
    #[error(
        "package was sealed to this organization's sealing key {key:?}, retired at \
         {retired_at}: the sender's directory is out of date"
    )]
    RetiredKey {
        key: SealingPublicKey,
        retired_at: Timestamp,
    },
}

fn noise(e: snow::Error) -> SealError {
    SealError::Noise(e.to_string())
}

/// Snow's default primitives but X25519 (aws-lc's, see `x25519`), with the
/// ephemeral key drawn from a seed the caller provides: the protocol takes
/// randomness as input.
struct SeededResolver {
    seed: [u8; 32],
    /// The organization's key the handshake is built with.
    own: Option<x25519::Own>,
}

struct SeededRandom(blake3::OutputReader);

impl Random for SeededRandom {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.0.fill(dest);
        Ok(())
    }
}

impl CryptoResolver for SeededResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        let reader = blake3::Hasher::new_derive_key("konsilium package ephemeral v1")
            .update(&self.seed)
            .finalize_xof();
        Some(Box::new(SeededRandom(reader)))
    }
    fn resolve_dh(&self, choice: &snow::params::DHChoice) -> Option<Box<dyn Dh>> {
        match choice {
            snow::params::DHChoice::Curve25519 => {
                Some(Box::new(x25519::AwsLcX25519::with_own(self.own.clone())))
            }
            _ => DefaultResolver.resolve_dh(choice),
        }
    }
    fn resolve_hash(&self, choice: &snow::params::HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }
    fn resolve_cipher(&self, choice: &snow::params::CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

/// A handshake as `own`'s organization, with one of `peers`: the
/// recipient it seals to, or the keys the directory gives the sender.
fn builder<'b>(
    seed: [u8; 32],
    own: &'b SealingKey,
    peers: &[SealingPublicKey],
) -> Result<snow::Builder<'b>, snow::Error> {
    let params = NOISE_PARAMS.parse().expect("valid noise parameters");
    let resolver = SeededResolver {
        seed,
        own: Some(x25519::Own {
            key: own.clone(),
            peers: peers.to_vec(),
        }),
    };
    snow::Builder::with_resolver(params, Box::new(resolver)).local_private_key(own.secret_bytes())
}

/// Seals a body chunk by chunk, so attachments never need to be in memory whole.
pub struct Sealer {
    transport: snow::TransportState,
    finished: bool,
}

impl Sealer {
    /// Starts sealing; returns the sealer and the handshake message, which
    /// goes first in the body. `ephemeral_seed` must be fresh randomness.
    pub fn new(
        header: &EnvelopeHeader,
        sender: &SealingKey,
        recipient: &SealingPublicKey,
        ephemeral_seed: [u8; 32],
    ) -> Result<(Self, Vec<u8>), SealError> {
        Self::with_prologue(header.prologue(), sender, recipient, ephemeral_seed)
    }

    /// Seals attachment `index` of the package with this header.
    pub fn for_attachment(
        header: &EnvelopeHeader,
        index: u32,
        sender: &SealingKey,
        recipient: &SealingPublicKey,
        ephemeral_seed: [u8; 32],
    ) -> Result<(Self, Vec<u8>), SealError> {
        Self::with_prologue(
            header.attachment_prologue(index),
            sender,
            recipient,
            ephemeral_seed,
        )
    }

    fn with_prologue(
        prologue: Vec<u8>,
        sender: &SealingKey,
        recipient: &SealingPublicKey,
        ephemeral_seed: [u8; 32],
    ) -> Result<(Self, Vec<u8>), SealError> {
        let mut hs = builder(ephemeral_seed, sender, &[*recipient])
            .and_then(|b| b.remote_public_key(recipient.as_bytes()))
            .and_then(|b| b.prologue(&prologue))
            .and_then(|b| b.build_initiator())
            .map_err(noise)?;
        let mut msg = vec![0u8; HANDSHAKE_LEN];
        let n = hs.write_message(&[], &mut msg).map_err(noise)?;
        debug_assert_eq!(n, HANDSHAKE_LEN);
        let transport = hs.into_transport_mode().map_err(noise)?;
        Ok((
            Self {
                transport,
                finished: false,
            },
            msg,
        ))
    }

    /// Appends one framed, sealed data chunk (1 to [`CHUNK_PLAINTEXT`] bytes
    /// of plaintext) to `out`.
    pub fn seal_chunk(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), SealError> {
        if plaintext.is_empty() || plaintext.len() > CHUNK_PLAINTEXT {
            return Err(SealError::BadChunkSize(plaintext.len()));
        }
        self.write(plaintext, out)
    }

    /// Appends the end marker; nothing can be sealed after it.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), SealError> {
        self.write(&[], out)?;
        self.finished = true;
        Ok(())
    }

    fn write(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), SealError> {
        if self.finished {
            return Err(SealError::AlreadyFinished);
        }
        let len = plaintext.len() + TAG_LEN;
        out.extend_from_slice(&(len as u16).to_le_bytes());
        let start = out.len();
        out.resize(start + len, 0);
        let n = self
            .transport
            .write_message(plaintext, &mut out[start..])
            .map_err(noise)?;
        debug_assert_eq!(n, len);
        Ok(())
    }
}

/// Size of the sealed body for a plaintext of `len` bytes.
pub fn sealed_len(len: usize) -> usize {
    HANDSHAKE_LEN + len + (len.div_ceil(CHUNK_PLAINTEXT) + 1) * (FRAME_LEN + TAG_LEN)
}

/// Size of the plaintext a sealed body of `sealed` bytes holds: what a
/// recipient tells a user about a file before opening it. `None` when no
/// plaintext seals to that size.
pub fn plaintext_len(sealed: u64) -> Option<u64> {
    let per_frame = (FRAME_LEN + TAG_LEN) as u64;
    let x = sealed.checked_sub(HANDSHAKE_LEN as u64 + per_frame)?;
    let chunks = x.div_ceil(CHUNK_PLAINTEXT as u64 + per_frame);
    let len = x - chunks * per_frame;
    (sealed_len(usize::try_from(len).ok()?) as u64 == sealed).then_some(len)
}

/// Seals a whole body in memory.
pub fn seal(
    header: EnvelopeHeader,
    sender: &SealingKey,
    recipient: &SealingPublicKey,
    ephemeral_seed: [u8; 32],
    body: &[u8],
) -> Result<SealedPackage, SealError> {
    let mut out = Vec::new();
    seal_into(&header, sender, recipient, ephemeral_seed, body, &mut out)?;
    Ok(SealedPackage { header, body: out })
}

/// Seals a whole body into `out` (cleared first), reusing its allocation.
pub fn seal_into(
    header: &EnvelopeHeader,
    sender: &SealingKey,
    recipient: &SealingPublicKey,
    ephemeral_seed: [u8; 32],
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), SealError> {
    let (mut sealer, handshake) = Sealer::new(header, sender, recipient, ephemeral_seed)?;
    out.clear();
    out.reserve(sealed_len(body.len()));
    out.extend_from_slice(&handshake);
    for chunk in body.chunks(CHUNK_PLAINTEXT) {
        sealer.seal_chunk(chunk, out)?;
    }
    sealer.finish(out)
}

/// Opens a body chunk by chunk.
pub struct Opener {
    transport: snow::TransportState,
    chunks: usize,
    finished: bool,
}

impl Opener {
    /// Reads the handshake and checks that the sender's static key is one of
    /// `sender_keys` (from the directory).
    pub fn new(
        header: &EnvelopeHeader,
        recipient: &SealingKey,
        handshake: &[u8],
        sender_keys: &[SealingPublicKey],
    ) -> Result<Self, SealError> {
        Self::with_prologue(header, header.prologue(), recipient, handshake, sender_keys)
    }

    /// Opens attachment `index` of the package with this header.
    pub fn for_attachment(
        header: &EnvelopeHeader,
        index: u32,
        recipient: &SealingKey,
        handshake: &[u8],
        sender_keys: &[SealingPublicKey],
    ) -> Result<Self, SealError> {
        Self::with_prologue(
            header,
            header.attachment_prologue(index),
            recipient,
            handshake,
            sender_keys,
        )
    }

    fn with_prologue(
        header: &EnvelopeHeader,
        prologue: Vec<u8>,
        recipient: &SealingKey,
        handshake: &[u8],
        sender_keys: &[SealingPublicKey],
    ) -> Result<Self, SealError> {
        let mut hs = builder([0; 32], recipient, sender_keys)
            .and_then(|b| b.prologue(&prologue))
            .and_then(|b| b.build_responder())
            .map_err(noise)?;
        if handshake.len() != HANDSHAKE_LEN {
            return Err(SealError::Malformed("handshake has the wrong length"));
        }
        let mut payload = [0u8; 0];
        hs.read_message(handshake, &mut payload)
            .map_err(|_| SealError::Tampered { chunk: 0 })?;
        let remote = hs
            .get_remote_static()
            .ok_or(SealError::Malformed("no sender key in handshake"))?;
        if !sender_keys
            .iter()
            .any(|k| k.as_bytes().as_slice() == remote)
        {
            return Err(SealError::SenderKeyMismatch(header.sender));
        }
        let transport = hs.into_transport_mode().map_err(noise)?;
        Ok(Self {
            transport,
            chunks: 0,
            finished: false,
        })
    }

    /// Decrypts the framed chunk at the start of `framed`, appending its
    /// plaintext to `out`. Returns how many bytes of `framed` it used and
    /// whether the chunk was the end marker.
    pub fn open_chunk(
        &mut self,
        framed: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(usize, bool), SealError> {
        if self.finished {
            return Err(SealError::TrailingData);
        }
        let Some((len, rest)) = framed.split_first_chunk::<FRAME_LEN>() else {
            return Err(SealError::Truncated);
        };
        let len = usize::from(u16::from_le_bytes(*len));
        if len < TAG_LEN {
            return Err(SealError::Malformed(
                "chunk shorter than its authentication tag",
            ));
        }
        let ciphertext = rest.get(..len).ok_or(SealError::Truncated)?;
        self.chunks += 1;
        let start = out.len();
        out.resize(start + len - TAG_LEN, 0);
        let n = self
            .transport
            .read_message(ciphertext, &mut out[start..])
            .map_err(|_| SealError::Tampered { chunk: self.chunks })?;
        out.truncate(start + n);
        self.finished = n == 0;
        Ok((FRAME_LEN + len, self.finished))
    }

    /// Whether the end marker has been opened.
    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

/// Opens a whole package addressed to `me`: checks the header, the replay
/// guard (`seen` answers whether an id was already received; record the id
/// only after this succeeds), the sender's key against the directory, and
/// every chunk.
pub fn open(
    package: &SealedPackage,
    me: OrgId,
    my_key: &SealingKey,
    directory: &Directory,
    now: Timestamp,
    seen: impl FnOnce(&PackageId) -> bool,
) -> Result<Vec<u8>, SealError> {
    let sender_keys = check_header(&package.header, me, directory, now, seen)?;
    let mut out = Vec::new();
    open_body(
        &package.header,
        my_key,
        &sender_keys,
        &package.body,
        &mut out,
    )?;
    Ok(out)
}

/// The checks of [`open`] that need no cryptography: a header that is
/// current, addressed to `me`, not seen before and from a known sender.
/// Returns the sender's sealing keys, so the body can be opened with
/// [`open_body`] elsewhere (off a node's event loop) without the directory.
pub fn check_header(
    header: &EnvelopeHeader,
    me: OrgId,
    directory: &Directory,
    now: Timestamp,
    seen: impl FnOnce(&PackageId) -> bool,
) -> Result<Vec<SealingPublicKey>, SealError> {
    header.check(now)?;
    if header.recipient != me {
        return Err(SealError::NotForUs {
            recipient: header.recipient,
        });
    }
    if seen(&header.id) {
        return Err(SealError::Replay(header.id));
    }
    let sender = directory
        .get(&header.sender)
        .ok_or(SealError::UnknownSender(header.sender))?;
    Ok(sender.sealing_keys().to_vec())
}

/// Opens a sealed body into `out` (cleared first), reusing its allocation.
/// The header checks of [`open`] are the caller's.
pub fn open_body(
    header: &EnvelopeHeader,
    my_key: &SealingKey,
    sender_keys: &[SealingPublicKey],
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), SealError> {
    open_with(body, out, |handshake| {
        Opener::new(header, my_key, handshake, sender_keys)
    })
}

/// Opens a body with the opener `read` makes of its handshake.
fn open_with(
    body: &[u8],
    out: &mut Vec<u8>,
    read: impl FnOnce(&[u8]) -> Result<Opener, SealError>,
) -> Result<(), SealError> {
    if body.len() < HANDSHAKE_LEN {
        return Err(SealError::Truncated);
    }
    let (handshake, mut rest) = body.split_at(HANDSHAKE_LEN);
    let mut opener = read(handshake)?;
    out.clear();
    out.reserve(rest.len());
    loop {
        let (used, end) = opener.open_chunk(rest, out)?;
        rest = &rest[used..];
        if end {
            break;
        }
    }
    if !rest.is_empty() {
        return Err(SealError::TrailingData);
    }
    Ok(())
}

pub mod keyring;
#[cfg(test)]
mod tests;
mod x25519;
