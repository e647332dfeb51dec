//! Keys as operators copy them between machines: 64 hex characters.
//!
//! Keys travel by e-mail, chat and paper between a hospital, its regional
//! authority and the root, so a key that is cut short, has a stray character
//! or is simply the wrong kind must be refused with a message that says which
//! of these happened and where the key should have come from.

use konsilium_protocol::identity::{AuthorityKey, KeyError, SealingPublicKey};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyTextError {
    #[error(
        "{what}: expected 64 hex characters, found {found}; copy the whole key as {origin} printed it"
    )]
    Length {
        what: &'static str,
        found: usize,
        origin: &'static str,
    },
    #[error(
        "{what}: {ch:?} at position {position} is not a hex digit (0-9, a-f); copy the key as {origin} printed it"
    )]
    NotHex {
        what: &'static str,
        ch: char,
        position: usize,
        origin: &'static str,
    },
    #[error("{what}: {reason}; check it was copied completely from {origin}")]
    Unusable {
        what: &'static str,
        reason: KeyError,
        origin: &'static str,
    },
    #[error(
        "sealing key: all zeros is not a usable X25519 key; copy the sealing key `konsilium init` printed on the organization's node"
    )]
    ZeroSealingKey,
}

const AUTHORITY_ORIGIN: &str = "`konsilium-authority root init` or `regional init`";
const SEALING_ORIGIN: &str = "`konsilium init` on the organization's node";

fn decode(what: &'static str, text: &str, origin: &'static str) -> Result<[u8; 32], KeyTextError> {
    let text = text.trim();
    let found = text.chars().count();
    if found != 64 {
        return Err(KeyTextError::Length {
            what,
            found,
            origin,
        });
    }
    if let Some((position, ch)) = text
        .chars()
        .enumerate()
        .find(|(_, c)| !c.is_ascii_hexdigit())
    {
        return Err(KeyTextError::NotHex {
            what,
            ch,
            position,
            origin,
        });
    }
    let mut out = [0u8; 32];
    ::hex::decode_to_slice(text, &mut out).map_err(|_| KeyTextError::Length {
        what,
        found,
        origin,
    })?;
    Ok(out)
}

/// Parses a root or regional authority public key (what `root init` and
/// `regional init` print, and what nodes list in `federation.roots`).
pub fn parse_authority_key(text: &str) -> Result<AuthorityKey, KeyTextError> {
    const WHAT: &str = "authority key";
    let bytes = decode(WHAT, text, AUTHORITY_ORIGIN)?;
    AuthorityKey::from_bytes(bytes).map_err(|reason| KeyTextError::Unusable {
        what: WHAT,
        reason,
        origin: AUTHORITY_ORIGIN,
    })
}

/// Parses an organization's sealing public key: 64 hex characters of
/// `SealingPublicKey::as_bytes()`, as `konsilium init` prints it. The all-zero
/// key is refused because it is what an empty or wiped field looks like, and
/// sealing to it would protect nothing.
pub fn parse_sealing_key(text: &str) -> Result<SealingPublicKey, KeyTextError> {
    let bytes = decode("sealing key", text, SEALING_ORIGIN)?;
    if bytes == [0; 32] {
        return Err(KeyTextError::ZeroSealingKey);
    }
    Ok(SealingPublicKey::from_bytes(bytes))
}

/// The text form `parse_sealing_key` reads: 64 lowercase hex characters.
pub fn sealing_key_hex(key: &SealingPublicKey) -> String {
    to_hex(key.as_bytes())
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    ::hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use konsilium_protocol::identity::{IdentityKey, SealingKey};

    #[test]
    fn sealing_key_round_trips_and_accepts_uppercase() {
        let key = SealingKey::from_seed([4; 32]).public();
        let text = sealing_key_hex(&key);
        assert_eq!(text.len(), 64);
        assert_eq!(text, text.to_lowercase());
        assert_eq!(parse_sealing_key(&text), Ok(key));
        assert_eq!(
            parse_sealing_key(&format!(" {} ", text.to_uppercase())),
            Ok(key)
        );
    }

    #[test]
    fn bad_sealing_keys_say_what_is_wrong() {
        let e = parse_sealing_key("abcd").unwrap_err().to_string();
        assert!(e.contains("found 4") && e.contains("konsilium init"), "{e}");
        let mut text = "a".repeat(64);
        text.replace_range(10..11, "g");
        let e = parse_sealing_key(&text).unwrap_err().to_string();
        assert!(e.contains("'g' at position 10"), "{e}");
        assert_eq!(
            parse_sealing_key(&"0".repeat(64)),
            Err(KeyTextError::ZeroSealingKey)
        );
    }

    #[test]
    fn authority_keys_parse_and_bad_points_are_named() {
        let key = IdentityKey::from_seed([8; 32]).authority_key();
        assert_eq!(parse_authority_key(&key.to_string()), Ok(key));
        let off_curve = format!("02{}", "0".repeat(62));
        let e = parse_authority_key(&off_curve).unwrap_err().to_string();
        assert!(e.contains("not a valid ed25519 public key"), "{e}");
    }
}
