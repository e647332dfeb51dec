//! What a peer presents to be admitted: certificate chains, revocation
//! notices, and the Hello that carries both.

use super::*;

/// A certificate chain from a peer, verified against the fixed root.
pub fn cert_chain(data: &[u8]) -> bool {
    let w = &*WORLD;
    let Some(chain) = decode::<CertChain>(data) else {
        return false;
    };
    match w.trust().verify_chain(&chain, NOW) {
        Ok(org) => {
            assert!(w.trust().still_valid(&org, NOW).is_ok());
            // Display goes through the peer id conversion, which must not fail.
            let _ = org.cert.org.to_string();
            true
        }
        Err(e) => {
            let _ = e.to_string();
            false
        }
    }
}

/// A revocation notice from gossip, adopted into the fixed trust.
pub fn revocation(data: &[u8]) -> bool {
    let w = &*WORLD;
    let Some(notice) = decode::<RevocationNotice>(data) else {
        return false;
    };
    let mut trust = w.trust().clone();
    match trust.apply_revocations(&notice, NOW) {
        Ok(issuer) => {
            assert!(trust.revocation_sequence(&issuer).is_some());
            assert!(
                matches!(
                    trust.apply_revocations(&notice, NOW),
                    Err(konsilium_protocol::cert::CertError::StaleRevocations { .. })
                ),
                "the same list twice is stale"
            );
            for e in w.directory.entries() {
                let _ = trust.still_valid(e.verified(), NOW);
            }
            true
        }
        Err(e) => {
            let _ = e.to_string();
            assert_eq!(trust.revocation_notices().count(), 0, "nothing adopted");
            false
        }
    }
}

/// A Hello (or the answer to ours) from a peer not yet admitted, handled as
/// the node's admission does: revocations first, then the chain, then the
/// record.
pub fn hello(data: &[u8]) -> bool {
    let hello = match wire::peek_kind(data) {
        Ok(MessageKind::HelloAnswer) => match decode::<HelloAnswer>(data) {
            Some(HelloAnswer::Welcome(h)) => *h,
            _ => return false,
        },
        _ => match decode::<Hello>(data) {
            Some(h) => h,
            None => return false,
        },
    };
    let mut trust = WORLD.trust().clone();
    for notice in &hello.revocations {
        let _ = trust.apply_revocations(notice, NOW);
    }
    let Ok(org) = trust.verify_chain(&hello.chain, NOW) else {
        return false;
    };
    let _ = org.cert.org.to_peer_id();
    match hello.record {
        Some(record) => Directory::new().insert(record, &trust, NOW).is_ok(),
        None => true,
    }
}
