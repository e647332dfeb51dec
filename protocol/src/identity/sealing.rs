//! An organization's X25519 sealing key, parsed once, with what it agreed
//! with other organizations' keys.
//!
//! Sealing a package used to run four X25519 operations and opening one
//! three: our public key derived from the secret (snow asks for the secret
//! and derives it every time), an ephemeral key, the ephemeral-static
//! agreement and the static-static one. Two of them give the same answer
//! for every package between the same two organizations: our public key,
//! and the secret our key agrees with theirs. Kept here, sealing runs two
//! operations and opening one (WireGuard precomputes its static-static
//! secret per peer for the same reason). The package on the wire is the
//! same, byte for byte.
//!
//! A held secret is as sensitive as the key itself (with it, a party could
//! pass for that peer to us), lives beside it, and is wiped when dropped or
//! pushed out. Only agreements with keys the directory gives are held (the
//! sealing side names them, see `seal::x25519::Own`): not those with the
//! other side's ephemeral keys, which never come back, nor with whatever
//! key a forged package names. The number held is bounded all the same.

use super::SealingPublicKey;
use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
use hashlink::LruCache;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use zeroize::Zeroizing;

/// The organizations' keys whose agreed secrets one key holds: a federal
/// center hears from a few thousand organizations at most.
const AGREED: usize = 4096;

/// An X25519 secret used only to open packages sealed to this organization.
/// Clones share the key and what it agreed.
#[derive(Clone)]
pub struct SealingKey(Arc<Held>);

struct Held {
    secret: Zeroizing<[u8; 32]>,
    public: SealingPublicKey,
    /// `None` for a secret aws-lc refuses: every agreement then fails
    /// instead of using a key nobody chose.
    parsed: Option<PrivateKey>,
    agreed: Mutex<LruCache<[u8; 32], Zeroizing<[u8; 32]>>>,
}

impl SealingKey {
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(seed));
        Self(Arc::new(Held {
            secret: Zeroizing::new(seed),
            public: SealingPublicKey(public.to_bytes()),
            parsed: PrivateKey::from_private_key(&X25519, &seed).ok(),
            agreed: Mutex::new(LruCache::new(AGREED)),
        }))
    }

    pub fn to_seed(&self) -> Zeroizing<[u8; 32]> {
        self.0.secret.clone()
    }

    pub fn public(&self) -> SealingPublicKey {
        self.0.public
    }

    pub(crate) fn public_bytes(&self) -> &[u8; 32] {
        &self.0.public.0
    }

    pub(crate) fn secret_bytes(&self) -> &[u8; 32] {
        &self.0.secret
    }

    /// Whether `secret` is this key's: how the Noise handshake, which is
    /// handed the secret's bytes, finds the key it was built with. In
    /// constant time, as any comparison of secrets.
    pub(crate) fn is(&self, secret: &[u8]) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(self.0.secret.as_slice(), secret).is_ok()
    }

    /// The secret this key agrees with another organization's key,
    /// computed once and held. `None` when there is none: a key aws-lc
    /// refuses, or a peer key of small order (the agreement would be all
    /// zeros).
    pub(crate) fn agree_held(&self, peer: &[u8; 32]) -> Option<Zeroizing<[u8; 32]>> {
        let agreed = || self.0.agreed.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(secret) = agreed().get(peer) {
            return Some(secret.clone());
        }
        let secret = self.agree(peer)?;
        agreed().insert(*peer, secret.clone());
        Some(secret)
    }

    /// The secret this key agrees with `peer`, computed and not held: for
    /// an ephemeral key, which never comes back.
    pub(crate) fn agree(&self, peer: &[u8]) -> Option<Zeroizing<[u8; 32]>> {
        x25519(self.0.parsed.as_ref()?, peer)
    }

    /// How many peers' agreements are held.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.0.agreed.lock().map(|a| a.len()).unwrap_or(0)
    }
}

/// X25519 of `key` and `peer` on aws-lc; `None` for a peer key of small
/// order, which aws-lc refuses rather than giving all zeros.
pub(crate) fn x25519(key: &PrivateKey, peer: &[u8]) -> Option<Zeroizing<[u8; 32]>> {
    let peer = UnparsedPublicKey::new(&X25519, peer);
    agreement::agree(key, peer, (), |shared| {
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(shared.get(..32).ok_or(())?);
        Ok(out)
    })
    .ok()
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealingKey({:?})", self.public())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_agreement_is_the_one_computed_and_both_sides_agree() {
        let (a, b) = (
            SealingKey::from_seed([1; 32]),
            SealingKey::from_seed([2; 32]),
        );
        let first = a.agree_held(b.public().as_bytes()).expect("an agreement");
        assert_eq!(a.held(), 1);
        let again = a.agree_held(b.public().as_bytes()).expect("held");
        assert_eq!(*first, *again);
        assert_eq!(
            *first,
            *b.agree_held(a.public().as_bytes()).expect("theirs")
        );
        let dalek = x25519_dalek::StaticSecret::from([1; 32])
            .diffie_hellman(&x25519_dalek::PublicKey::from(*b.public().as_bytes()));
        assert_eq!(*first, dalek.to_bytes());
        // A clone shares what was agreed.
        assert_eq!(a.clone().held(), 1);
        // An agreement not to be held (with an ephemeral key) is the same
        // secret, and leaves nothing behind.
        let c = SealingKey::from_seed([3; 32]);
        assert_eq!(
            *a.agree(c.public().as_bytes()).expect("computed"),
            *c.agree_held(a.public().as_bytes()).expect("theirs")
        );
        assert_eq!(a.held(), 1);
    }

    #[test]
    fn a_small_order_key_agrees_nothing_and_is_not_held() {
        let a = SealingKey::from_seed([1; 32]);
        assert!(a.agree_held(&[0; 32]).is_none());
        let mut order_one = [0; 32];
        order_one[0] = 1;
        assert!(a.agree_held(&order_one).is_none());
        assert_eq!(a.held(), 0);
    }

    #[test]
    fn the_agreements_held_are_bounded() {
        let a = SealingKey::from_seed([1; 32]);
        for i in 0..AGREED as u32 + 100 {
            // Clear of the bits X25519 clamps: each seed a key of its own.
            let mut seed = [7; 32];
            seed[4..8].copy_from_slice(&i.to_le_bytes());
            let peer = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(seed));
            assert!(a.agree_held(peer.as_bytes()).is_some());
        }
        assert_eq!(a.held(), AGREED);
    }

    #[test]
    fn a_key_knows_its_own_secret_and_no_other() {
        let a = SealingKey::from_seed([1; 32]);
        assert!(a.is(&[1; 32]));
        assert!(!a.is(&[2; 32]));
        assert!(!a.is(&[1; 31]));
    }
}
