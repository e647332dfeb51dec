use super::*;
use crate::testkit::{NOW, TestFederation, TestOrg};
use proptest::prelude::*;

struct Setup {
    district: TestOrg,
    federal: TestOrg,
    other: TestOrg,
    dir: Directory,
}

fn setup() -> Setup {
    let mut fed = TestFederation::new("seal");
    let district = fed.org(1, OrgLevel::District, "RU-VLG", &[Specialty::Pediatrics]);
    let federal = fed.org(2, OrgLevel::Federal, "RU-MOW", &[Specialty::Oncology]);
    let other = fed.org(3, OrgLevel::Regional, "RU-VLG", &[Specialty::Oncology]);
    let mut dir = Directory::new();
    for o in [&district, &federal, &other] {
        dir.insert(o.signed_record(1), &fed.trust, NOW).unwrap();
    }
    Setup {
        district,
        federal,
        other,
        dir,
    }
}

fn header(from: &TestOrg, to: &TestOrg, id: u8) -> EnvelopeHeader {
    EnvelopeHeader {
        version: PACKAGE_VERSION,
        id: PackageId([id; 16]),
        sender: from.id(),
        recipient: to.id(),
        routing: RoutingHeader {
            specialty: Specialty::Oncology,
            min_level: OrgLevel::Federal,
            urgency: Urgency::Urgent,
            region: None,
        },
        created: NOW,
        expires: NOW.saturating_add(Duration::from_secs(7 * 86_400)),
        attachments: Vec::new(),
    }
}

fn body(len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(b"body")
        .finalize_xof()
        .fill(&mut out);
    out
}

fn seal_to(s: &Setup, to: &TestOrg, plain: &[u8]) -> SealedPackage {
    seal(
        header(&s.district, to, 1),
        &s.district.sealing,
        &to.sealing.public(),
        [42; 32],
        plain,
    )
    .unwrap()
}

fn open_as(s: &Setup, who: &TestOrg, p: &SealedPackage) -> Result<Vec<u8>, SealError> {
    open(p, who.id(), &who.sealing, &s.dir, NOW, |_| false)
}

#[test]
fn round_trips_at_chunk_boundaries() {
    let s = setup();
    for len in [
        0,
        1,
        CHUNK_PLAINTEXT - 1,
        CHUNK_PLAINTEXT,
        CHUNK_PLAINTEXT + 1,
        3 * CHUNK_PLAINTEXT,
    ] {
        let plain = body(len);
        let p = seal_to(&s, &s.federal, &plain);
        assert_eq!(p.body.len(), sealed_len(len), "len {len}");
        assert_eq!(plaintext_len(p.body.len() as u64), Some(len as u64));
        assert_eq!(open_as(&s, &s.federal, &p).unwrap(), plain, "len {len}");
    }
}

#[test]
fn plaintext_len_inverts_sealed_len() {
    for len in (0..5 * CHUNK_PLAINTEXT)
        .step_by(997)
        .chain([CHUNK_PLAINTEXT, 1 << 30])
    {
        assert_eq!(plaintext_len(sealed_len(len) as u64), Some(len as u64));
    }
    // Past a full chunk the next byte costs a whole frame: the sizes
    // in between hold no plaintext.
    assert_eq!(plaintext_len(sealed_len(CHUNK_PLAINTEXT) as u64 + 1), None);
    assert_eq!(plaintext_len(sealed_len(10) as u64 + 1), Some(11));
    assert_eq!(plaintext_len(3), None);
}

#[test]
fn fifty_megabytes_round_trip() {
    let s = setup();
    let plain = body(50 * 1024 * 1024);
    let p = seal_to(&s, &s.federal, &plain);
    assert_eq!(open_as(&s, &s.federal, &p).unwrap(), plain);
}

#[test]
fn only_the_recipient_can_open() {
    let s = setup();
    let plain = b"extract of case history: ...".to_vec();
    let p = seal_to(&s, &s.federal, &plain);
    // The third organization is not the addressee...
    assert!(matches!(
        open_as(&s, &s.other, &p),
        Err(SealError::NotForUs { .. })
    ));
    // ...and pretending to be does not help: its key cannot complete the handshake.
    assert!(matches!(
        open(&p, s.federal.id(), &s.other.sealing, &s.dir, NOW, |_| false),
        Err(SealError::Tampered { chunk: 0 })
    ));
    // A relay holding the package sees no plaintext.
    assert!(!p.body.windows(12).any(|w| w == &plain[..12]));
}

#[test]
fn header_is_bound_to_the_body() {
    let s = setup();
    let p = seal_to(&s, &s.federal, b"questions");
    let mut downgraded = p.clone();
    downgraded.header.routing.urgency = Urgency::Planned;
    assert!(matches!(
        open_as(&s, &s.federal, &downgraded),
        Err(SealError::Tampered { chunk: 0 })
    ));
    let mut extended = p.clone();
    extended.header.expires = extended
        .header
        .expires
        .saturating_add(Duration::from_secs(60));
    assert!(matches!(
        open_as(&s, &s.federal, &extended),
        Err(SealError::Tampered { chunk: 0 })
    ));
}

#[test]
fn sender_is_checked_against_the_directory() {
    let s = setup();
    // Sealed by `other` but claiming to come from the district hospital.
    let forged = seal(
        header(&s.district, &s.federal, 2),
        &s.other.sealing,
        &s.federal.sealing.public(),
        [1; 32],
        b"x",
    )
    .unwrap();
    assert_eq!(
        open_as(&s, &s.federal, &forged),
        Err(SealError::SenderKeyMismatch(s.district.id()))
    );
    let mut fed2 = TestFederation::new("elsewhere");
    let stranger = fed2.org(9, OrgLevel::District, "RU-VLG", &[]);
    let p = seal(
        header(&stranger, &s.federal, 3),
        &stranger.sealing,
        &s.federal.sealing.public(),
        [1; 32],
        b"x",
    )
    .unwrap();
    assert_eq!(
        open_as(&s, &s.federal, &p),
        Err(SealError::UnknownSender(stranger.id()))
    );
}

#[test]
fn replay_expiry_and_version() {
    let s = setup();
    let p = seal_to(&s, &s.federal, b"x");
    assert_eq!(
        open(
            &p,
            s.federal.id(),
            &s.federal.sealing,
            &s.dir,
            NOW,
            |id| *id == PackageId([1; 16])
        ),
        Err(SealError::Replay(PackageId([1; 16])))
    );
    let late = p.header.expires;
    assert!(matches!(
        open(&p, s.federal.id(), &s.federal.sealing, &s.dir, late, |_| {
            false
        }),
        Err(SealError::Expired { .. })
    ));
    let early = NOW.saturating_sub(Duration::from_secs(3600));
    assert!(matches!(
        open(
            &p,
            s.federal.id(),
            &s.federal.sealing,
            &s.dir,
            early,
            |_| false
        ),
        Err(SealError::FromTheFuture { .. })
    ));
    let mut h = header(&s.district, &s.federal, 4);
    h.version = 2;
    assert_eq!(h.check(NOW), Err(SealError::UnsupportedVersion(2)));
    h.version = PACKAGE_VERSION;
    h.expires = NOW.saturating_add(MAX_LIFETIME + Duration::from_secs(1));
    assert_eq!(h.check(NOW), Err(SealError::BadLifetime));
}

#[test]
fn truncation_reordering_and_trailing_data_fail() {
    let s = setup();
    let plain = body(3 * CHUNK_PLAINTEXT + 10);
    let p = seal_to(&s, &s.federal, &plain);
    let chunk = |i: usize| HANDSHAKE_LEN + i * (FRAME_LEN + CHUNK_CIPHERTEXT_MAX);
    // Cut at a chunk boundary, in a chunk, or just the end marker.
    for len in [
        chunk(3),
        chunk(1) + 100,
        p.body.len() - (FRAME_LEN + TAG_LEN),
        p.body.len() - 1,
        10,
    ] {
        let mut cut = p.clone();
        cut.body.truncate(len);
        assert_eq!(
            open_as(&s, &s.federal, &cut),
            Err(SealError::Truncated),
            "cut to {len}"
        );
    }
    let mut swapped = p.clone();
    let (a, b) = (chunk(0), chunk(1));
    let first: Vec<u8> = swapped.body[a..b].to_vec();
    let second: Vec<u8> = swapped.body[b..chunk(2)].to_vec();
    swapped.body[a..b].copy_from_slice(&second);
    swapped.body[b..chunk(2)].copy_from_slice(&first);
    assert_eq!(
        open_as(&s, &s.federal, &swapped),
        Err(SealError::Tampered { chunk: 1 })
    );
    let mut extra = p.clone();
    extra.body.extend_from_slice(&p.body[chunk(3)..]);
    assert_eq!(
        open_as(&s, &s.federal, &extra),
        Err(SealError::TrailingData)
    );
    // A relay dropping a whole middle chunk is caught by the nonce sequence.
    let mut dropped = p.clone();
    dropped.body.drain(chunk(1)..chunk(2));
    assert_eq!(
        open_as(&s, &s.federal, &dropped),
        Err(SealError::Tampered { chunk: 2 })
    );
}

/// Each side holds what its key agreed with the other's after the first
/// package; every later one must be the same bytes as a key fresh from its
/// seed would seal, and open alike.
#[test]
fn a_package_is_the_same_whether_the_agreement_was_held_or_computed() {
    let s = setup();
    let plain = body(300);
    let fresh = |org: &TestOrg| SealingKey::from_seed(*org.sealing.to_seed());
    let h = header(&s.district, &s.federal, 1);
    let to = s.federal.sealing.public();
    let first = seal(h.clone(), &s.district.sealing, &to, [42; 32], &plain).unwrap();
    let held = seal(h.clone(), &s.district.sealing, &to, [42; 32], &plain).unwrap();
    let computed = seal(h, &fresh(&s.district), &to, [42; 32], &plain).unwrap();
    assert_eq!(held.body, first.body);
    assert_eq!(held.body, computed.body);
    let keys = [s.district.sealing.public()];
    let mut opened = Vec::new();
    for recipient in [&s.federal.sealing, &s.federal.sealing, &fresh(&s.federal)] {
        open_body(&held.header, recipient, &keys, &held.body, &mut opened).unwrap();
        assert_eq!(opened, plain);
    }
    // Each holds its agreement with the other's key, and the recipient
    // none with the packages' ephemeral keys.
    assert_eq!(s.district.sealing.held(), 1);
    assert_eq!(s.federal.sealing.held(), 1);
    // A package from a key the directory does not give its sender is
    // refused, and its key's agreement is not held.
    let forged = seal(
        header(&s.district, &s.federal, 3),
        &s.other.sealing,
        &to,
        [44; 32],
        &plain,
    )
    .unwrap();
    assert_eq!(
        open_body(
            &forged.header,
            &s.federal.sealing,
            &keys,
            &forged.body,
            &mut opened
        ),
        Err(SealError::SenderKeyMismatch(s.district.id()))
    );
    assert_eq!(s.federal.sealing.held(), 1);
    // A key that holds an agreement with the sender opens nothing sealed
    // to another organization.
    let other = seal(
        header(&s.district, &s.other, 2),
        &s.district.sealing,
        &s.other.sealing.public(),
        [43; 32],
        &plain,
    )
    .unwrap();
    assert_eq!(
        open_body(
            &other.header,
            &s.federal.sealing,
            &keys,
            &other.body,
            &mut opened
        ),
        Err(SealError::Tampered { chunk: 0 })
    );
}

#[test]
fn streaming_equals_whole_and_is_deterministic() {
    let s = setup();
    let plain = body(2 * CHUNK_PLAINTEXT + 5);
    let h = header(&s.district, &s.federal, 1);
    let whole = seal(
        h.clone(),
        &s.district.sealing,
        &s.federal.sealing.public(),
        [42; 32],
        &plain,
    )
    .unwrap();
    let (mut sealer, mut out) = Sealer::new(
        &h,
        &s.district.sealing,
        &s.federal.sealing.public(),
        [42; 32],
    )
    .unwrap();
    for part in plain.chunks(CHUNK_PLAINTEXT) {
        sealer.seal_chunk(part, &mut out).unwrap();
    }
    sealer.finish(&mut out).unwrap();
    assert_eq!(out, whole.body);
    assert_eq!(
        sealer.seal_chunk(b"more", &mut out),
        Err(SealError::AlreadyFinished)
    );
    let (mut fresh, _) = Sealer::new(
        &h,
        &s.district.sealing,
        &s.federal.sealing.public(),
        [43; 32],
    )
    .unwrap();
    assert_eq!(
        fresh.seal_chunk(&vec![0; CHUNK_PLAINTEXT + 1], &mut Vec::new()),
        Err(SealError::BadChunkSize(CHUNK_PLAINTEXT + 1))
    );
    assert_eq!(
        fresh.seal_chunk(&[], &mut Vec::new()),
        Err(SealError::BadChunkSize(0))
    );
    let other_seed = seal(
        h.clone(),
        &s.district.sealing,
        &s.federal.sealing.public(),
        [43; 32],
        &plain,
    )
    .unwrap();
    assert_ne!(
        other_seed.body[..32],
        whole.body[..32],
        "fresh ephemeral key per seed"
    );
    // The streaming opener reads the same framing chunk by chunk.
    let keys = [s.district.sealing.public()];
    let mut opener =
        Opener::new(&h, &s.federal.sealing, &whole.body[..HANDSHAKE_LEN], &keys).unwrap();
    let (mut rest, mut opened) = (&whole.body[HANDSHAKE_LEN..], Vec::new());
    while !opener.is_finished() {
        let (used, _) = opener.open_chunk(rest, &mut opened).unwrap();
        rest = &rest[used..];
    }
    assert!(rest.is_empty());
    assert_eq!(opened, plain);
}

#[test]
fn attachments_are_bound_to_their_package_and_position() {
    let s = setup();
    let plain = body(CHUNK_PLAINTEXT + 77);
    let h = header(&s.district, &s.federal, 1);
    let (mut sealer, mut blob) = Sealer::for_attachment(
        &h,
        2,
        &s.district.sealing,
        &s.federal.sealing.public(),
        [8; 32],
    )
    .unwrap();
    for part in plain.chunks(CHUNK_PLAINTEXT) {
        sealer.seal_chunk(part, &mut blob).unwrap();
    }
    sealer.finish(&mut blob).unwrap();
    let keys = [s.district.sealing.public()];
    let open_as = |h: &EnvelopeHeader, index: u32| -> Result<Vec<u8>, SealError> {
        let mut opener =
            Opener::for_attachment(h, index, &s.federal.sealing, &blob[..HANDSHAKE_LEN], &keys)?;
        let (mut rest, mut out) = (&blob[HANDSHAKE_LEN..], Vec::new());
        while !opener.is_finished() {
            let (used, _) = opener.open_chunk(rest, &mut out)?;
            rest = &rest[used..];
        }
        Ok(out)
    };
    assert_eq!(open_as(&h, 2).unwrap(), plain);
    assert!(open_as(&h, 1).is_err(), "moved to another position");
    assert!(
        open_as(&header(&s.district, &s.federal, 9), 2).is_err(),
        "moved to another package"
    );
    // The body's opener does not accept an attachment in its place.
    assert!(Opener::new(&h, &s.federal.sealing, &blob[..HANDSHAKE_LEN], &keys).is_err());
    let mut many = h.clone();
    many.attachments = vec![
        BlobRef {
            hash: [0; 32],
            size: 1
        };
        MAX_ATTACHMENTS + 1
    ];
    assert!(many.check(NOW).is_err());
    // Sizes a receiver adds up: each bounded, so their sum cannot overflow.
    let mut large = h.clone();
    let listed = |size| BlobRef {
        hash: [0; 32],
        size,
    };
    large.attachments = vec![listed(MAX_ATTACHMENT_BYTES); MAX_ATTACHMENTS];
    assert!(large.check(NOW).is_ok());
    large.attachments[0] = listed(MAX_ATTACHMENT_BYTES + 1);
    assert_eq!(
        large.check(NOW),
        Err(SealError::Malformed("an attachment larger than allowed"))
    );
}

#[test]
fn package_id_text() {
    let id = PackageId([0xab; 16]);
    assert_eq!(id.to_string().parse::<PackageId>().unwrap(), id);
    assert!("xyz".parse::<PackageId>().is_err());
    // `u8::from_str_radix` takes a sign: "+a" is 10. Ids never do.
    let signed = "+a".repeat(16);
    assert!(signed.parse::<PackageId>().is_err(), "{signed}");
    assert!(signed.parse::<crate::workflow::ConsultationId>().is_err());
    let signed_key = "+a".repeat(32);
    assert!(signed_key.parse::<crate::identity::AuthorityKey>().is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_flipped_byte_is_rejected(pos in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let s = setup();
        let mut p = seal_to(&s, &s.federal, &body(CHUNK_PLAINTEXT + 300));
        let i = pos.index(p.body.len());
        p.body[i] ^= flip;
        prop_assert!(open_as(&s, &s.federal, &p).is_err());
    }
}
