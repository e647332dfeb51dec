//! Who an organization (or a federation authority) is, in keys.
//!
//! An organization's id *is* its ed25519 public key, and the libp2p `PeerId` is
//! derived from the same key, so the peer a node is connected to and the
//! organization it claims to be cannot disagree. Sealing (encryption) uses a
//! separate X25519 key that the identity key signs, so it can rotate without
//! changing who the organization is.

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use ed25519_dalek::{Signature, VerifyingKey};
use libp2p_identity::PeerId;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use zeroize::Zeroizing;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a valid ed25519 public key (bytes do not decode to a curve point)")]
    InvalidPoint,
    #[error("weak ed25519 public key (small-order point) refused")]
    WeakKey,
    #[error(
        "{0:?} is not an organization id: expected a libp2p peer id (base58, starting 12D3KooW)"
    )]
    NotAPeerId(String),
    #[error(
        "peer id {0} does not embed an ed25519 key; Konsilium organizations use ed25519 identities"
    )]
    NotEd25519(String),
}

mod recent;
mod sealing;

pub use sealing::SealingKey;
pub(crate) use sealing::x25519;

/// Validates once at the edge so every `PublicKey` in the program is a usable key.
fn validate(bytes: [u8; 32]) -> Result<(), KeyError> {
    if RECENT.with_borrow_mut(|recent| recent.holds(&bytes)) {
        return Ok(());
    }
    point(&bytes)?;
    RECENT.with_borrow_mut(|recent| recent.insert(bytes));
    Ok(())
}

/// The key's point, if it is one and not of small order.
fn point(bytes: &[u8; 32]) -> Result<VerifyingKey, KeyError> {
    let key = VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::InvalidPoint)?;
    if key.is_weak() {
        return Err(KeyError::WeakKey);
    }
    Ok(key)
}

thread_local! {
    /// Without it, a national directory's every offer and record validated
    /// its ids' points again on decoding (see `recent`).
    static RECENT: std::cell::RefCell<recent::Recent> = std::cell::RefCell::default();
}

/// An organization's id: its ed25519 identity public key.
///
/// Checked to be a valid, non-weak curve point whenever it is decoded or
/// parsed, so converting it to a libp2p `PeerId` or a verifying key cannot
/// fail later.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "[u8; 32]", into = "[u8; 32]")]
pub struct OrgId([u8; 32]);

/// Lets maps keyed by id be searched by byte ranges (a directory's
/// buckets): an id compares, hashes and equals exactly as its bytes do.
impl std::borrow::Borrow<[u8; 32]> for OrgId {
    fn borrow(&self) -> &[u8; 32] {
        &self.0
    }
}

impl OrgId {
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, KeyError> {
        validate(bytes).map(|()| Self(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey::from_bytes(&self.0).expect("checked when the id was constructed")
    }

    /// The key as checked when the id was made.
    pub fn checked_key(&self) -> CheckedKey {
        CheckedKey(self.0)
    }
}

/// An ed25519 public key that decompressed to a point not of small order,
/// as every organization id and authority key is checked to be when it is
/// made. A batch of signature checks by such keys needs no weak-key test
/// of its own (one per check was near a tenth of a cold start).
///
/// Holds the key's bytes, not its point: a batch takes keys as bytes, and
/// a cold start queues 40,000 checks, whose points (160 bytes each) were
/// looked up only to be turned back into bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedKey([u8; 32]);

impl CheckedKey {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl TryFrom<[u8; 32]> for OrgId {
    type Error = KeyError;
    fn try_from(bytes: [u8; 32]) -> Result<Self, KeyError> {
        Self::from_bytes(bytes)
    }
}

impl From<OrgId> for [u8; 32] {
    fn from(k: OrgId) -> [u8; 32] {
        k.0
    }
}

/// A federation authority's (root or regional) ed25519 public key.
///
/// Kept as bytes and decompressed only when used: an authority key is first
/// looked up among the configured roots or a root-certified authority, and
/// an unknown one is refused without any curve arithmetic, so directory
/// ingest does not pay for a decompression per record.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AuthorityKey([u8; 32]);

impl AuthorityKey {
    /// Checked construction, for keys typed in by people or read from config.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, KeyError> {
        validate(bytes).map(|()| Self(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn verifying_key(&self) -> Result<VerifyingKey, KeyError> {
        point(&self.0)
    }

    pub fn checked_key(&self) -> Result<CheckedKey, KeyError> {
        validate(self.0).map(|()| CheckedKey(self.0))
    }
}

impl OrgId {
    /// Built from the key's bytes without decompressing its point again
    /// (libp2p's `PublicKey` would): the id was validated when it was made,
    /// and ids are shown in every log line and journal entry that names an
    /// organization. An ed25519 peer id is the identity multihash of the
    /// key's protobuf encoding (libp2p's peer-id specification): the
    /// key-type field (1, Ed25519), then the 32 bytes as field 2.
    pub fn to_peer_id(&self) -> PeerId {
        const ED25519_PROTOBUF: [u8; 4] = [0x08, 0x01, 0x12, 0x20];
        const IDENTITY: u64 = 0;
        let mut encoded = [0u8; 36];
        encoded[..4].copy_from_slice(&ED25519_PROTOBUF);
        encoded[4..].copy_from_slice(&self.0);
        let digest = multiaddr::multihash::Multihash::wrap(IDENTITY, &encoded)
            .expect("36 bytes fit an identity multihash");
        PeerId::from_multihash(digest).expect("an identity multihash of 36 bytes is a peer id")
    }

    /// Ed25519 peer ids embed the key itself (identity multihash), so the
    /// organization id is recoverable from a connection's peer id alone.
    pub fn from_peer_id(peer: &PeerId) -> Result<Self, KeyError> {
        let mh = peer.as_ref();
        if mh.code() != 0 {
            return Err(KeyError::NotEd25519(peer.to_string()));
        }
        let key = libp2p_identity::PublicKey::try_decode_protobuf(mh.digest())
            .map_err(|_| KeyError::NotEd25519(peer.to_string()))?
            .try_into_ed25519()
            .map_err(|_| KeyError::NotEd25519(peer.to_string()))?;
        Self::from_bytes(key.to_bytes())
    }
}

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_peer_id())
    }
}

impl fmt::Debug for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OrgId({})", self.to_peer_id())
    }
}

impl FromStr for OrgId {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        let peer = PeerId::from_str(s).map_err(|_| KeyError::NotAPeerId(s.to_owned()))?;
        Self::from_peer_id(&peer)
    }
}

/// Authorities are not network peers, so they print as plain hex.
impl fmt::Display for AuthorityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for AuthorityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthorityKey({self})")
    }
}

impl FromStr for AuthorityKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        let bytes = decode_hex32(s).ok_or(KeyError::InvalidPoint)?;
        Self::from_bytes(bytes)
    }
}

fn decode_hex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut out).ok()?;
    Some(out)
}

/// An ed25519 signing key: an organization's identity or an authority's key.
/// Created from a seed the caller draws, because the protocol takes randomness
/// as input.
///
/// Signatures are made by aws-lc: ed25519 signatures are deterministic
/// (RFC 8032), so they are the same bytes any implementation makes, and
/// aws-lc makes them in about 60% of ed25519-dalek's time here. Every step,
/// receipt and package a node sends is signed: with ed25519-dalek, signing
/// was 7% of the national model's year.
pub struct IdentityKey {
    seed: Zeroizing<[u8; 32]>,
    public: [u8; 32],
    /// Wiped by aws-lc when dropped.
    signer: Ed25519KeyPair,
}

impl IdentityKey {
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let signer = Ed25519KeyPair::from_seed_unchecked(&seed)
            .expect("every 32-byte seed is an ed25519 secret key");
        let public = signer
            .public_key()
            .as_ref()
            .try_into()
            .expect("an ed25519 public key is 32 bytes");
        Self {
            seed: Zeroizing::new(seed),
            public,
            signer,
        }
    }

    /// The seed, for storing the key in a 0600 file.
    pub fn to_seed(&self) -> Zeroizing<[u8; 32]> {
        self.seed.clone()
    }

    pub fn org_id(&self) -> OrgId {
        OrgId(self.public)
    }

    pub fn authority_key(&self) -> AuthorityKey {
        AuthorityKey(self.public)
    }

    /// The same key as a libp2p keypair: the node's transport identity.
    pub fn to_libp2p(&self) -> libp2p_identity::Keypair {
        libp2p_identity::Keypair::ed25519_from_bytes(*self.seed)
            .expect("32-byte seed is a valid ed25519 secret")
    }

    pub(crate) fn sign(&self, message: &[u8]) -> Signature {
        let signature = self.signer.sign(message);
        Signature::from_slice(signature.as_ref()).expect("an ed25519 signature is 64 bytes")
    }
}

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityKey({})", self.org_id())
    }
}

/// The public half of a sealing key, as published in certificates and directory records.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SealingPublicKey([u8; 32]);

impl SealingPublicKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SealingPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealingPublicKey(")?;
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_verifies_the_same_whether_this_thread_validated_it_lately_or_not() {
        let key = IdentityKey::from_seed([9; 32]);
        let signature = key.sign(b"checked");
        // Decoded on another thread: this one has never seen it.
        let bytes = *key.org_id().as_bytes();
        let org = std::thread::spawn(move || OrgId::from_bytes(bytes).unwrap())
            .join()
            .unwrap();
        assert!(RECENT.with_borrow(|r| !r.contains(&bytes)));
        assert!(
            org.verifying_key()
                .verify_strict(b"checked", &signature)
                .is_ok()
        );
        // Decoded here, it is held until many other keys pushed it out.
        let again = OrgId::from_bytes(bytes).unwrap();
        assert!(RECENT.with_borrow(|r| r.contains(&bytes)));
        for i in 0..4 * recent::CAPACITY as u32 {
            let mut seed = [1u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            let _ = OrgId::from_bytes(*IdentityKey::from_seed(seed).org_id().as_bytes());
        }
        assert!(RECENT.with_borrow(|r| !r.contains(&bytes) && r.len() <= recent::CAPACITY));
        // Not held, it is validated again, held again, and verifies as before.
        assert_eq!(OrgId::from_bytes(bytes).unwrap(), again);
        assert!(RECENT.with_borrow(|r| r.contains(&bytes)));
        assert_eq!(again.verifying_key(), org.verifying_key());
        assert!(
            again
                .verifying_key()
                .verify_strict(b"tampered", &signature)
                .is_err()
        );
    }

    #[test]
    fn keys_that_fail_validation_are_refused_each_time_and_never_held() {
        // All zeros: y = 0, a point of order 4. And a y with no point.
        let weak = [0u8; 32];
        let mut not_a_point = [0u8; 32];
        not_a_point[0] = 2;
        for _ in 0..2 {
            assert_eq!(OrgId::from_bytes(weak), Err(KeyError::WeakKey));
            assert_eq!(AuthorityKey(weak).checked_key(), Err(KeyError::WeakKey));
            assert_eq!(OrgId::from_bytes(not_a_point), Err(KeyError::InvalidPoint));
        }
        assert!(RECENT.with_borrow(|r| !r.contains(&weak) && !r.contains(&not_a_point)));
    }

    #[test]
    fn peer_ids_are_the_ones_libp2p_makes_from_the_key() {
        for i in 0..64u8 {
            let key = IdentityKey::from_seed([i; 32]);
            let theirs = key.to_libp2p().public().to_peer_id();
            assert_eq!(key.org_id().to_peer_id(), theirs, "seed {i}");
            assert_eq!(key.org_id().to_string(), theirs.to_string());
        }
    }

    #[test]
    fn org_id_and_peer_id_are_the_same_key() {
        let key = IdentityKey::from_seed([7; 32]);
        let org = key.org_id();
        let peer = key.to_libp2p().public().to_peer_id();
        assert_eq!(org.to_peer_id(), peer);
        assert_eq!(OrgId::from_peer_id(&peer).unwrap(), org);
        assert_eq!(org.to_string().parse::<OrgId>().unwrap(), org);
        assert!(org.to_string().starts_with("12D3KooW"));
    }

    /// aws-lc signs; the signatures must be the RFC's, byte for byte, as
    /// ed25519-dalek makes them, or records signed before would not be
    /// re-made the same.
    #[test]
    fn signatures_are_the_same_bytes_ed25519_dalek_makes() {
        use ed25519_dalek::Signer;
        for i in 0..64u8 {
            let seed = [i.wrapping_mul(37).wrapping_add(1); 32];
            let ours = IdentityKey::from_seed(seed);
            let dalek = ed25519_dalek::SigningKey::from_bytes(&seed);
            assert_eq!(ours.org_id().as_bytes(), dalek.verifying_key().as_bytes());
            assert_eq!(*ours.to_seed(), seed);
            let message = vec![i; usize::from(i) * 17];
            assert_eq!(ours.sign(&message), dalek.sign(&message), "seed {i}");
        }
    }

    #[test]
    fn libp2p_signatures_match_ours() {
        let key = IdentityKey::from_seed([9; 32]);
        let ours = key.sign(b"hello");
        let theirs = key.to_libp2p().sign(b"hello").unwrap();
        assert_eq!(ours.to_bytes().as_slice(), theirs.as_slice());
    }

    #[test]
    fn rejects_bad_text_and_non_ed25519_peers() {
        assert!(matches!(
            "hello".parse::<OrgId>(),
            Err(KeyError::NotAPeerId(_))
        ));
        // A peer id hashed with sha256 (as RSA keys are) carries no ed25519 key.
        let mh = libp2p_identity::PeerId::from_multihash(
            multiaddr::multihash::Multihash::wrap(0x12, &[1u8; 32]).unwrap(),
        )
        .unwrap();
        assert!(matches!(
            OrgId::from_peer_id(&mh),
            Err(KeyError::NotEd25519(_))
        ));
    }

    #[test]
    fn rejects_invalid_and_weak_points() {
        // The identity point (small order) is weak.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(OrgId::from_bytes(identity), Err(KeyError::WeakKey));
        // y = 2 is not on the curve.
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2;
        assert_eq!(OrgId::from_bytes(off_curve), Err(KeyError::InvalidPoint));
        let bytes = postcard::to_stdvec(&identity).unwrap();
        assert!(postcard::from_bytes::<OrgId>(&bytes).is_err());
    }

    #[test]
    fn authority_key_hex_round_trip() {
        let k = IdentityKey::from_seed([3; 32]).authority_key();
        assert_eq!(k.to_string().parse::<AuthorityKey>().unwrap(), k);
        assert!("zz".parse::<AuthorityKey>().is_err());
    }

    #[test]
    fn sealing_key_public_is_x25519_of_seed() {
        let a = SealingKey::from_seed([1; 32]);
        let b = SealingKey::from_seed([1; 32]);
        assert_eq!(a.public(), b.public());
        assert_ne!(a.public(), SealingKey::from_seed([2; 32]).public());
        assert_eq!(SealingKey::from_seed(*a.to_seed()).public(), a.public());
    }
}
