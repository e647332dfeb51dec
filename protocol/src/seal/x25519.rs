//! X25519 for the Noise handshake, on aws-lc.
//!
//! The same function as snow's default (RFC 7748, the scalar clamped by the
//! function itself), so packages sealed either way open either way; aws-lc's
//! implementation takes half the time here, and a package's sealing and
//! opening are mostly their X25519 operations (two to seal and one to open,
//! once the organization's key holds its agreement with the other's: see
//! `identity::sealing`). A shared secret of all zeros (the other key a
//! small-order point) is refused rather than used.

use crate::identity::{self, SealingKey, SealingPublicKey};
use aws_lc_rs::agreement::{PrivateKey, X25519};
use snow::types::{Dh, Random};
use zeroize::Zeroize;

const LEN: usize = 32;

/// The organization's key a handshake is built with, and the other
/// organizations' keys it may agree with there: those agreements are
/// held. What else it agrees with (the other side's ephemeral key, or a
/// key no directory gave) is computed and let go, so a forged package
/// cannot fill the key's store.
#[derive(Clone)]
pub(super) struct Own {
    pub(super) key: SealingKey,
    pub(super) peers: Vec<SealingPublicKey>,
}

/// One of the handshake's two keys. Snow makes one for the organization's
/// own key and one for the ephemeral, and hands each its secret's bytes;
/// the one handed `own`'s secret uses `own`, whose public half and
/// agreements with peers are computed already.
#[derive(Default)]
pub(super) struct AwsLcX25519 {
    own: Option<Own>,
    key: Key,
}

#[derive(Default)]
enum Key {
    /// None set, or one aws-lc refuses: every exchange then fails instead
    /// of using a key nobody chose.
    #[default]
    None,
    Own(Own),
    Other {
        parsed: PrivateKey,
        secret: [u8; LEN],
        public: [u8; LEN],
    },
}

impl AwsLcX25519 {
    pub(super) fn with_own(own: Option<Own>) -> Self {
        Self {
            own,
            key: Key::None,
        }
    }
}

impl Drop for AwsLcX25519 {
    fn drop(&mut self) {
        if let Key::Other { secret, .. } = &mut self.key {
            secret.zeroize();
        }
    }
}

impl Dh for AwsLcX25519 {
    fn name(&self) -> &'static str {
        "25519"
    }

    fn pub_len(&self) -> usize {
        LEN
    }

    fn priv_len(&self) -> usize {
        LEN
    }

    fn set(&mut self, privkey: &[u8]) {
        self.key = Key::None;
        // Snow sets its own key's Dh once: the key moves in, not copied.
        if let Some(own) = self.own.take_if(|own| own.key.is(privkey)) {
            self.key = Key::Own(own);
            return;
        }
        let Ok(secret) = <[u8; LEN]>::try_from(privkey) else {
            return;
        };
        let Ok(parsed) = PrivateKey::from_private_key(&X25519, &secret) else {
            return;
        };
        let Ok(public) = parsed.compute_public_key() else {
            return;
        };
        let Ok(public) = <[u8; LEN]>::try_from(public.as_ref()) else {
            return;
        };
        self.key = Key::Other {
            parsed,
            secret,
            public,
        };
    }

    fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
        let mut secret = [0u8; LEN];
        rng.try_fill_bytes(&mut secret)?;
        self.set(&secret);
        secret.zeroize();
        Ok(())
    }

    fn pubkey(&self) -> &[u8] {
        match &self.key {
            Key::None => &[0; LEN],
            Key::Own(own) => own.key.public_bytes(),
            Key::Other { public, .. } => public,
        }
    }

    fn privkey(&self) -> &[u8] {
        match &self.key {
            Key::None => &[0; LEN],
            Key::Own(own) => own.key.secret_bytes(),
            Key::Other { secret, .. } => secret,
        }
    }

    /// Snow hands the other key in a buffer sized for its largest curve:
    /// the key is its first 32 bytes.
    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        let out = out.get_mut(..LEN).ok_or(snow::Error::Dh)?;
        let pubkey = pubkey.get(..LEN).ok_or(snow::Error::Dh)?;
        let shared = match &self.key {
            Key::None => None,
            Key::Own(own) => match own.peers.iter().find(|p| p.as_bytes() == pubkey) {
                Some(peer) => own.key.agree_held(peer.as_bytes()),
                None => own.key.agree(pubkey),
            },
            Key::Other { parsed, .. } => identity::x25519(parsed, pubkey),
        };
        out.copy_from_slice(shared.ok_or(snow::Error::Dh)?.as_slice());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use snow::params::DHChoice;
    use snow::resolvers::{CryptoResolver, DefaultResolver};

    fn ours(secret: &[u8]) -> AwsLcX25519 {
        let mut dh = AwsLcX25519::default();
        dh.set(secret);
        dh
    }

    fn exchange(dh: &dyn Dh, public: &[u8]) -> Result<[u8; LEN], snow::Error> {
        let mut out = [0u8; LEN];
        dh.dh(public, &mut out).map(|()| out)
    }

    /// RFC 7748, section 6.1.
    #[test]
    fn the_rfc_7748_exchange_gives_its_keys_and_secret() {
        let hex = |s: &str| hex::decode(s).unwrap();
        let alice = ours(&hex(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ));
        let bob = ours(&hex(
            "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
        ));
        assert_eq!(
            alice.pubkey(),
            hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
        assert_eq!(
            bob.pubkey(),
            hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
        );
        let shared = hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        assert_eq!(exchange(&alice, bob.pubkey()).unwrap().to_vec(), shared);
        assert_eq!(exchange(&bob, alice.pubkey()).unwrap().to_vec(), shared);
    }

    #[test]
    fn a_small_order_key_or_no_key_gives_no_secret() {
        let dh = ours(&[7; LEN]);
        assert!(exchange(&dh, &[0; LEN]).is_err(), "the all-zero point");
        let mut one = [0u8; LEN];
        one[0] = 1;
        assert!(exchange(&dh, &one).is_err(), "the point of order 1");
        assert!(exchange(&ours(&[7; 31]), &[9; LEN]).is_err(), "a short key");
        assert!(exchange(&dh, &[9; LEN - 1]).is_err(), "a short public key");
        assert!(
            exchange(&AwsLcX25519::default(), &[9; LEN]).is_err(),
            "no key"
        );
    }

    /// A Noise `X` handshake between a side on snow's own X25519 and a side
    /// on ours, each way round: what a node before this change seals, a
    /// node after it opens, and the other way. Ours both with the
    /// organization's key at hand (its agreement computed the first time,
    /// held the second) and without.
    #[test]
    fn a_handshake_with_snows_own_x25519_succeeds_both_ways() {
        let (sender, recipient) = ([3u8; LEN], [5u8; LEN]);
        let snows = || -> Box<dyn CryptoResolver + Send> { Box::new(DefaultResolver) };
        let [held_sender, held_recipient] = [sender, recipient].map(SealingKey::from_seed);
        let ours_with = |own: Option<&SealingKey>| -> Box<dyn CryptoResolver + Send> {
            let peers = vec![held_sender.public(), held_recipient.public()];
            Box::new(super::super::SeededResolver {
                seed: [1; LEN],
                own: own.map(|key| Own {
                    key: key.clone(),
                    peers,
                }),
            })
        };
        let mut pairs = Vec::new();
        for at_hand in [false, true, true] {
            let (s, r) = match at_hand {
                true => (Some(&held_sender), Some(&held_recipient)),
                false => (None, None),
            };
            pairs.push((snows(), ours_with(r)));
            pairs.push((ours_with(s), snows()));
        }
        for (initiator, responder) in pairs {
            let params: snow::params::NoiseParams = super::super::NOISE_PARAMS.parse().unwrap();
            let recipient_public = ours(&recipient).pubkey().to_vec();
            let mut i = snow::Builder::with_resolver(params.clone(), initiator)
                .local_private_key(&sender)
                .and_then(|b| b.remote_public_key(&recipient_public))
                .and_then(|b| b.build_initiator())
                .unwrap();
            let mut r = snow::Builder::with_resolver(params, responder)
                .local_private_key(&recipient)
                .and_then(|b| b.build_responder())
                .unwrap();
            let mut message = [0u8; 256];
            let n = i.write_message(b"case extract", &mut message).unwrap();
            let mut read = [0u8; 256];
            let m = r.read_message(&message[..n], &mut read).unwrap();
            assert_eq!(&read[..m], b"case extract");
            let sender_public = ours(&sender).pubkey().to_vec();
            assert_eq!(r.get_remote_static(), Some(sender_public.as_slice()));
        }
        // Each side holds its agreement with the other's key, and not the
        // responder's with the initiator's ephemeral keys.
        assert_eq!((held_sender.held(), held_recipient.held()), (1, 1));
    }

    proptest! {
        /// The same keys and secrets as snow's own X25519, so packages
        /// sealed by nodes before this change open, and theirs ours.
        #[test]
        fn keys_and_secrets_are_snows_own(a in any::<[u8; 32]>(), b in any::<[u8; 32]>()) {
            let theirs = |secret: &[u8]| {
                let mut dh = DefaultResolver.resolve_dh(&DHChoice::Curve25519).unwrap();
                dh.set(secret);
                dh
            };
            let (ours_a, theirs_a, theirs_b) = (ours(&a), theirs(&a), theirs(&b));
            prop_assert_eq!(ours_a.pubkey(), theirs_a.pubkey());
            prop_assert_eq!(
                exchange(&ours_a, theirs_b.pubkey()).unwrap(),
                exchange(theirs_a.as_ref(), theirs_b.pubkey()).unwrap()
            );
        }
    }
}
