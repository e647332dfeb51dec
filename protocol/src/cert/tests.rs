use super::*;
use crate::identity::SealingKey;
use proptest::prelude::*;

pub const DAY: u64 = 86_400_000;
pub const NOW: Timestamp = Timestamp::from_unix_millis(1_780_000_000_000);

pub fn year() -> Validity {
    Validity {
        from: Timestamp::from_unix_millis(NOW.unix_millis() - DAY),
        until: Timestamp::from_unix_millis(NOW.unix_millis() + 365 * DAY),
    }
}

pub fn grant(seed: u8, level: OrgLevel, region: &str, serial: u64) -> OrgGrant {
    OrgGrant {
        org: IdentityKey::from_seed([seed; 32]).org_id(),
        name: format!("Hospital {seed}"),
        level,
        region: RegionCode::new(region).unwrap(),
        sealing_key: SealingKey::from_seed([seed.wrapping_add(100); 32]).public(),
        validity: year(),
        serial,
    }
}

/// A root, and a regional authority for RU-VLG that may certify up to regional level.
pub fn federation() -> (Issuer, Issuer, Trust) {
    let root = Issuer::root(IdentityKey::from_seed([200; 32]));
    let regional_key = IdentityKey::from_seed([201; 32]);
    let authority_cert = root
        .certify_authority(AuthorityGrant {
            authority: regional_key.authority_key(),
            name: "Vologda regional telemedicine center".into(),
            scope: AuthorityScope {
                region: RegionCode::new("RU-VLG").unwrap(),
                max_level: OrgLevel::Regional,
            },
            validity: Validity {
                from: Timestamp::from_unix_millis(NOW.unix_millis() - 10 * DAY),
                until: Timestamp::from_unix_millis(NOW.unix_millis() + 1000 * DAY),
            },
            serial: 1,
        })
        .unwrap();
    let regional = Issuer::regional(regional_key, authority_cert).unwrap();
    let trust = Trust::new([root.key()]);
    (root, regional, trust)
}

#[test]
fn root_and_regional_chains_verify() {
    let (root, regional, trust) = federation();
    let federal = root
        .certify_org(grant(1, OrgLevel::Federal, "RU-MOW", 10))
        .unwrap();
    let district = regional
        .certify_org(grant(2, OrgLevel::District, "RU-VLG", 10))
        .unwrap();
    let v = trust.verify_chain(&federal, NOW).unwrap();
    assert_eq!(v.cert.level, OrgLevel::Federal);
    assert!(v.authority.is_none());
    let v = trust.verify_chain(&district, NOW).unwrap();
    assert_eq!(v.authority.unwrap().scope.region.as_str(), "RU-VLG");
}

#[test]
fn regional_authority_cannot_exceed_scope() {
    let (root, regional, trust) = federation();
    assert!(matches!(
        regional.certify_org(grant(3, OrgLevel::District, "RU-ARK", 11)),
        Err(CertError::OutsideRegion { .. })
    ));
    assert!(matches!(
        regional.certify_org(grant(3, OrgLevel::Federal, "RU-VLG", 11)),
        Err(CertError::LevelTooHigh {
            granted: OrgLevel::Federal,
            max: OrgLevel::Regional
        })
    ));
    assert_eq!(
        regional.certify_authority(AuthorityGrant {
            authority: IdentityKey::from_seed([9; 32]).authority_key(),
            name: "x".into(),
            scope: AuthorityScope {
                region: RegionCode::new("RU-VLG").unwrap(),
                max_level: OrgLevel::District
            },
            validity: year(),
            serial: 2,
        }),
        Err(CertError::NotARoot)
    );
    // A rogue authority that signs out of scope anyway is caught at verification.
    let rogue_cert = OrgCert {
        org: IdentityKey::from_seed([4; 32]).org_id(),
        name: "Rogue".into(),
        level: OrgLevel::Federal,
        region: RegionCode::new("RU-VLG").unwrap(),
        sealing_key: SealingKey::from_seed([4; 32]).public(),
        validity: year(),
        serial: 99,
        issuer: regional.key(),
    };
    let chain = CertChain {
        authority: regional.cert.as_ref().map(|(s, _)| s.clone()),
        org: Signed::sign(&regional.key, &rogue_cert),
    };
    assert!(matches!(
        trust.verify_chain(&chain, NOW),
        Err(CertError::LevelTooHigh { .. })
    ));
    let mut out_of_region = rogue_cert;
    out_of_region.level = OrgLevel::District;
    out_of_region.region = RegionCode::new("RU-ARK").unwrap();
    let chain = CertChain {
        authority: regional.cert.as_ref().map(|(s, _)| s.clone()),
        org: Signed::sign(&regional.key, &out_of_region),
    };
    assert!(matches!(
        trust.verify_chain(&chain, NOW),
        Err(CertError::OutsideRegion { .. })
    ));
    drop(root);
}

#[test]
fn self_signed_and_foreign_roots_fail() {
    let (_, _, trust) = federation();
    let impostor = Issuer::root(IdentityKey::from_seed([66; 32]));
    let chain = impostor
        .certify_org(grant(5, OrgLevel::Federal, "RU-MOW", 1))
        .unwrap();
    assert!(matches!(
        trust.verify_chain(&chain, NOW),
        Err(CertError::UnknownRoot { .. })
    ));
    // Claiming a real root as issuer without its signature fails the signature check.
    let (root, _, _) = federation();
    let mut cert = chain.org.decode_unverified().unwrap();
    cert.issuer = root.key();
    let forged = CertChain {
        authority: None,
        org: Signed::sign(&impostor.key, &cert),
    };
    assert!(matches!(
        trust.verify_chain(&forged, NOW),
        Err(CertError::Signed(SignedError::BadSignature { .. }))
    ));
}

#[test]
fn expiry_and_not_yet_valid() {
    let (root, _, trust) = federation();
    let chain = root
        .certify_org(grant(1, OrgLevel::Federal, "RU-MOW", 10))
        .unwrap();
    let v = year();
    assert!(matches!(
        trust.verify_chain(&chain, v.until),
        Err(CertError::Expired { .. })
    ));
    assert!(matches!(
        trust.verify_chain(
            &chain,
            Timestamp::from_unix_millis(v.from.unix_millis() - 1)
        ),
        Err(CertError::NotYetValid { .. })
    ));
    assert!(trust.verify_chain(&chain, v.from).is_ok());
}

/// What a refusal says about a certificate (expired, not yet valid,
/// revoked, beyond its authority's scope, naming another issuer) is said
/// only of certificates their issuers signed: nodes remember organizations
/// refused so, and stop sending them packages. The same certificates
/// signed by a stranger's key are refused for their signatures, from a
/// root or through a regional authority, alone or in a batch.
#[test]
fn only_signed_certificates_are_refused_for_their_dates_scope_or_revocation() {
    let (root, regional, mut trust) = federation();
    trust
        .apply_revocations(&regional.revoke(1, NOW, [13].into()), NOW)
        .unwrap();
    let days = |from: i64, until: i64| Validity {
        from: Timestamp::from_unix_millis(NOW.unix_millis().strict_add_signed(from * DAY as i64)),
        until: Timestamp::from_unix_millis(NOW.unix_millis().strict_add_signed(until * DAY as i64)),
    };
    let cert = |serial: u64, level, region: &str, validity, issuer| OrgCert {
        org: IdentityKey::from_seed([serial as u8; 32]).org_id(),
        name: format!("Hospital {serial}"),
        level,
        region: RegionCode::new(region).unwrap(),
        sealing_key: SealingKey::from_seed([serial as u8; 32]).public(),
        validity,
        serial,
        issuer,
    };
    let (district, federal) = (OrgLevel::District, OrgLevel::Federal);
    let authority = regional.cert.as_ref().map(|(s, _)| s.clone());
    type Says = fn(&CertError) -> bool;
    let cases: [(OrgCert, Option<Signed<AuthorityCert>>, &IdentityKey, Says); 7] = [
        (
            cert(10, federal, "RU-MOW", days(-30, -1), root.key()),
            None,
            &root.key,
            |e| matches!(e, CertError::Expired { .. }),
        ),
        (
            cert(11, federal, "RU-MOW", days(1, 30), root.key()),
            None,
            &root.key,
            |e| matches!(e, CertError::NotYetValid { .. }),
        ),
        (
            cert(12, district, "RU-VLG", days(-9, -1), regional.key()),
            authority.clone(),
            &regional.key,
            |e| matches!(e, CertError::Expired { .. }),
        ),
        (
            cert(13, district, "RU-VLG", year(), regional.key()),
            authority.clone(),
            &regional.key,
            |e| matches!(e, CertError::Revoked { serial: 13, .. }),
        ),
        (
            cert(14, federal, "RU-VLG", year(), regional.key()),
            authority.clone(),
            &regional.key,
            |e| matches!(e, CertError::LevelTooHigh { .. }),
        ),
        (
            cert(15, district, "RU-ARK", year(), regional.key()),
            authority.clone(),
            &regional.key,
            |e| matches!(e, CertError::OutsideRegion { .. }),
        ),
        (
            cert(16, district, "RU-VLG", year(), root.key()),
            authority.clone(),
            &regional.key,
            |e| matches!(e, CertError::IssuerMismatch { .. }),
        ),
    ];
    let stranger = IdentityKey::from_seed([66; 32]);
    for (cert, authority, issuer, says) in cases {
        let signed_by = |key| CertChain {
            authority: authority.clone(),
            org: Signed::sign(key, &cert),
        };
        let (genuine, forged) = (signed_by(issuer), signed_by(&stranger));
        let error = trust.verify_chain(&genuine, NOW).unwrap_err();
        assert!(says(&error), "{} signed by its issuer: {error}", cert.name);
        let error = trust.verify_chain(&forged, NOW).unwrap_err();
        let forged_signature =
            |e: &CertError| matches!(e, CertError::Signed(SignedError::BadSignature { .. }));
        assert!(
            forged_signature(&error),
            "{} by a stranger: {error}",
            cert.name
        );
        let (mut checks, mut cache) = (Vec::new(), AuthorityCache::default());
        let error =
            (trust.verify_chain_deferred(&forged, NOW, &mut checks, &mut cache)).unwrap_err();
        assert!(
            forged_signature(&error),
            "{} in a batch: {error}",
            cert.name
        );
    }
}

#[test]
fn revocation_of_org_and_of_authority() {
    let (root, regional, mut trust) = federation();
    let a = regional
        .certify_org(grant(1, OrgLevel::District, "RU-VLG", 10))
        .unwrap();
    let b = regional
        .certify_org(grant(2, OrgLevel::District, "RU-VLG", 11))
        .unwrap();
    trust
        .apply_revocations(&regional.revoke(1, NOW, [10].into()), NOW)
        .unwrap();
    assert!(matches!(
        trust.verify_chain(&a, NOW),
        Err(CertError::Revoked { serial: 10, .. })
    ));
    assert!(trust.verify_chain(&b, NOW).is_ok());
    // Same or older sequence is refused and changes nothing.
    assert!(matches!(
        trust.apply_revocations(&regional.revoke(1, NOW, BTreeSet::new()), NOW),
        Err(CertError::StaleRevocations {
            have: 1,
            got: 1,
            ..
        })
    ));
    assert!(trust.verify_chain(&a, NOW).is_err());
    // The root revokes the regional authority itself: everything it issued fails.
    trust
        .apply_revocations(&root.revoke(1, NOW, [1].into()), NOW)
        .unwrap();
    assert!(matches!(
        trust.verify_chain(&b, NOW),
        Err(CertError::Revoked {
            what: "authority certificate",
            ..
        })
    ));
    // ...and its revocation lists are no longer accepted.
    assert!(
        trust
            .apply_revocations(&regional.revoke(2, NOW, BTreeSet::new()), NOW)
            .is_err()
    );
    assert_eq!(trust.revocation_notices().count(), 2);
}

#[test]
fn revocations_from_strangers_refused() {
    let (_, _, mut trust) = federation();
    let stranger = Issuer::root(IdentityKey::from_seed([77; 32]));
    assert!(matches!(
        trust.apply_revocations(&stranger.revoke(1, NOW, [1].into()), NOW),
        Err(CertError::UnknownRoot { .. })
    ));
}

#[test]
fn an_unsigned_list_is_refused_before_its_serials_are_decoded() {
    let (root, _, mut trust) = federation();
    // A stranger's list claiming the root as issuer, its serial set cut
    // off mid-way: decoding it whole would fail as malformed, so a
    // signature error shows the set was never built.
    let stranger = IdentityKey::from_seed([77; 32]);
    let list = RevocationList {
        issuer: root.key(),
        sequence: 9,
        issued_at: NOW,
        revoked: (0..100_000).collect(),
    };
    let notice = RevocationNotice {
        authority: None,
        list: Signed::sign(&stranger, &list),
    };
    let signed_len = notice.list.signed_bytes().len();
    let body = &notice.list.signed_bytes()[..signed_len - 1000];
    let forged: Signed<RevocationList> =
        postcard::from_bytes(&postcard::to_stdvec(&(body, notice.list.signature())).unwrap())
            .unwrap();
    assert!(matches!(
        forged.decode_unverified(),
        Err(SignedError::Malformed { .. })
    ));
    let notice = RevocationNotice {
        authority: None,
        list: forged,
    };
    assert!(matches!(
        trust.apply_revocations(&notice, NOW),
        Err(CertError::Signed(SignedError::BadSignature { .. }))
    ));
    // A replayed older list is refused as stale, also before decoding.
    trust
        .apply_revocations(&root.revoke(5, NOW, BTreeSet::new()), NOW)
        .unwrap();
    let mut old = root.revoke(4, NOW, (0..1000).collect());
    let old_len = old.list.signed_bytes().len();
    old.list = postcard::from_bytes(
        &postcard::to_stdvec(&(
            &old.list.signed_bytes()[..old_len - 100],
            old.list.signature(),
        ))
        .unwrap(),
    )
    .unwrap();
    assert!(matches!(
        trust.apply_revocations(&old, NOW),
        Err(CertError::StaleRevocations {
            have: 5,
            got: 4,
            ..
        })
    ));
}

#[test]
fn level_and_region_parsing() {
    assert_eq!("Federal".parse::<OrgLevel>().unwrap(), OrgLevel::Federal);
    assert_eq!("2".parse::<OrgLevel>().unwrap(), OrgLevel::Regional);
    assert!(
        "4".parse::<OrgLevel>()
            .unwrap_err()
            .to_string()
            .contains("district|regional|federal")
    );
    assert!(postcard::from_bytes::<OrgLevel>(&[4]).is_err());
    assert!(RegionCode::new("ru-vlg").is_err());
    assert!(RegionCode::new("R").is_err());
    assert!(RegionCode::new("9X").is_err());
    assert_eq!(OrgLevel::District.above(), Some(OrgLevel::Regional));
    assert_eq!(OrgLevel::Federal.above(), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Any altered byte of an encoded chain makes it fail to decode or to verify.
    #[test]
    fn altered_chain_bytes_fail(pos in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let (_, regional, trust) = federation();
        let chain = regional.certify_org(grant(1, OrgLevel::District, "RU-VLG", 10)).unwrap();
        let mut bytes = postcard::to_stdvec(&chain).unwrap();
        let i = pos.index(bytes.len());
        bytes[i] ^= flip;
        if let Ok(altered) = postcard::from_bytes::<CertChain>(&bytes) {
            prop_assert!(trust.verify_chain(&altered, NOW).is_err(), "byte {} accepted", i);
        }
    }
}

/// A regional authority's key is replaced with an overlap: the root
/// certifies the new key for the same region while the old one is still
/// valid, organizations are re-certified one at a time (both chains verify
/// meanwhile, for the same organization too), then the root revokes the old
/// authority certificate and only organizations still on it are refused.
#[test]
fn a_regional_authority_key_rotates_with_an_overlap() {
    let (root, old, mut trust) = federation();
    let new_key = IdentityKey::from_seed([202; 32]);
    let new_cert = root
        .certify_authority(AuthorityGrant {
            authority: new_key.authority_key(),
            name: "Vologda regional telemedicine center (key of 2027)".into(),
            scope: AuthorityScope {
                region: RegionCode::new("RU-VLG").unwrap(),
                max_level: OrgLevel::Regional,
            },
            validity: year(),
            serial: 2,
        })
        .unwrap();
    let new = Issuer::regional(new_key, new_cert).unwrap();
    let moved_old = old
        .certify_org(grant(1, OrgLevel::District, "RU-VLG", 10))
        .unwrap();
    let moved_new = new
        .certify_org(grant(1, OrgLevel::District, "RU-VLG", 1))
        .unwrap();
    let left_behind = old
        .certify_org(grant(2, OrgLevel::District, "RU-VLG", 11))
        .unwrap();
    for chain in [&moved_old, &moved_new, &left_behind] {
        assert!(trust.verify_chain(chain, NOW).is_ok(), "during the overlap");
    }
    assert_eq!(
        trust.verify_chain(&moved_old, NOW).unwrap().cert.org,
        trust.verify_chain(&moved_new, NOW).unwrap().cert.org
    );

    // The overlap ends: the root revokes the old authority certificate.
    trust
        .apply_revocations(&root.revoke(1, NOW, [1].into()), NOW)
        .unwrap();
    assert!(trust.verify_chain(&moved_new, NOW).is_ok());
    for chain in [&moved_old, &left_behind] {
        assert!(matches!(
            trust.verify_chain(chain, NOW),
            Err(CertError::Revoked {
                what: "authority certificate",
                ..
            })
        ));
    }
    // The new authority's own revocations count; the old one's no longer.
    assert!(
        trust
            .apply_revocations(&old.revoke(1, NOW, [10, 11].into()), NOW)
            .is_err()
    );
    trust
        .apply_revocations(&new.revoke(1, NOW, [1].into()), NOW)
        .unwrap();
    assert!(matches!(
        trust.verify_chain(&moved_new, NOW),
        Err(CertError::Revoked { serial: 1, .. })
    ));
}
