//! Entry points for fuzzing the protocol's decoders, one per decoder family.
//!
//! Each function takes the bytes a node would receive from a peer or read
//! from a file and drives them through the same protocol calls the node
//! makes. The libFuzzer targets in `fuzz/` and the stable corpus replay in
//! `tests/tests/fuzz_corpus.rs` both call these functions, so what the fuzzer
//! explored is exactly what `cargo test` replays.
//!
//! They return whether the input was accepted by every check (used to prove
//! that the seeds reach past decoding), and panic only when the protocol
//! breaks one of its own promises: a panic here is a bug in the protocol.

use konsilium_protocol::cert::{CertChain, OrgLevel, RevocationNotice, Trust};
use konsilium_protocol::conclusion::{Conclusion, ConclusionFile};
use konsilium_protocol::content::{CaseExtract, PackageBody};
use konsilium_protocol::delivery::{self, Receipt};
use konsilium_protocol::directory::{Directory, Merge, SignedRecord, SyncOffer};
use konsilium_protocol::journal::{self, Checkpoint, Entry, Journal, Role};
use konsilium_protocol::rpc::{Hello, HelloAnswer, Refusal, Request, Response};
use konsilium_protocol::seal::{
    self, EnvelopeHeader, PACKAGE_VERSION, PackageId, RoutingHeader, SealedPackage,
};
use konsilium_protocol::signed::Signed;
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::testkit::{NOW, TestFederation, TestOrg};
use konsilium_protocol::urgency::Urgency;
use konsilium_protocol::wire::{
    self, MessageKind, RecordBatch, RecordRequest, SyncSummaries, WireMessage,
};
use konsilium_protocol::workflow::{
    self, Action, Consent, ConsentMethod, Consultation, ConsultationId, ConsultationRequest, Slot,
    Transition,
};
use std::sync::LazyLock;
use std::time::Duration;

/// A fixed federation: a district hospital asks a federal one; a regional
/// organization plays the outsider. Built once, since key derivation and
/// certification would otherwise dominate every execution.
pub struct World {
    pub fed: TestFederation,
    pub district: TestOrg,
    pub federal: TestOrg,
    pub outsider: TestOrg,
    /// The federal hospital's directory, knowing all three.
    pub directory: Directory,
    /// A package from the district to the federal hospital.
    pub package: SealedPackage,
    /// Consultations at several points of their life, so a step is checked
    /// against more than the first state.
    pub consultations: Vec<Consultation>,
    /// The federal hospital's journal and its last signed anchor.
    pub journal: Vec<Entry>,
    pub anchor: Signed<Checkpoint>,
}

pub static WORLD: LazyLock<World> = LazyLock::new(World::new);

fn header(from: &TestOrg, to: &TestOrg) -> EnvelopeHeader {
    EnvelopeHeader {
        version: PACKAGE_VERSION,
        id: PackageId([7; 16]),
        sender: from.id(),
        recipient: to.id(),
        routing: RoutingHeader {
            specialty: Specialty::Cardiology,
            min_level: OrgLevel::Federal,
            urgency: Urgency::Urgent,
            region: None,
        },
        created: NOW,
        expires: NOW.saturating_add(Duration::from_secs(7 * 86_400)),
        attachments: Vec::new(),
    }
}

fn request(from: &TestOrg, to: &TestOrg) -> Signed<ConsultationRequest> {
    workflow::request(
        &from.identity,
        ConsultationRequest {
            id: ConsultationId([9; 16]),
            requester: from.id(),
            consultant: to.id(),
            specialty: Specialty::Cardiology,
            urgency: Urgency::Urgent,
            created: NOW,
            consent: Consent::Given {
                by: "the patient".into(),
                at: NOW,
                method: ConsentMethod::Written,
                document: None,
            },
            physician: "Dr. Ivanova".into(),
            escalated_from: None,
        },
    )
    .expect("consent given")
}

fn at(minutes: u64) -> konsilium_protocol::time::Timestamp {
    NOW.saturating_add(Duration::from_secs(60 * minutes))
}

/// A step by `org` on `c`, applied, so the next consultation state exists.
fn advance(c: &mut Consultation, org: &TestOrg, role: Role, action: Action) {
    let step = c.step(
        &org.identity,
        role,
        "someone",
        at(c.history.len() as u64),
        action,
    );
    c.apply(&step).expect("a valid step");
}

impl World {
    fn new() -> Self {
        let mut fed = TestFederation::new("fuzz");
        let district = fed.org(1, OrgLevel::District, "RU-VLG", &[Specialty::Pediatrics]);
        let federal = fed.org(2, OrgLevel::Federal, "RU-MOW", &[Specialty::Cardiology]);
        let outsider = fed.org(3, OrgLevel::Regional, "RU-VLG", &[Specialty::Cardiology]);
        let mut directory = Directory::new();
        for o in [&district, &federal, &outsider] {
            directory
                .insert(o.signed_record(1), &fed.trust, NOW)
                .expect("a valid record");
        }
        let package = seal::seal(
            header(&district, &federal),
            &district.sealing,
            &federal.sealing.public(),
            [3; 32],
            b"ECG attached",
        )
        .expect("seals");

        let requested = Consultation::open(&request(&district, &federal)).expect("a valid request");
        let mut received = requested.clone();
        advance(&mut received, &federal, Role::Coordinator, Action::Receive);
        let mut proposed = received.clone();
        advance(&mut proposed, &federal, Role::Coordinator, Action::Accept);
        advance(&mut proposed, &federal, Role::Consultant, Action::Start);
        advance(
            &mut proposed,
            &federal,
            Role::Consultant,
            Action::ProposeSlots {
                slots: vec![Slot {
                    start: at(60),
                    end: at(90),
                }],
            },
        );
        let mut confirmed = proposed.clone();
        advance(
            &mut confirmed,
            &district,
            Role::Physician,
            Action::ConfirmSlot {
                slot: Slot {
                    start: at(60),
                    end: at(90),
                },
            },
        );
        let mut completed = confirmed.clone();
        advance(
            &mut completed,
            &federal,
            Role::Consultant,
            Action::Conclude {
                conclusion: [5; 32],
            },
        );

        let mut j = Journal::new();
        let journal: Vec<Entry> = (0..4)
            .map(|i| {
                j.append(
                    at(i),
                    Some("coordinator".into()),
                    Some(Role::Coordinator),
                    journal::Action::Open {
                        consultation: [9; 16],
                    },
                )
            })
            .collect();
        let anchor = j.checkpoint(&federal.identity, at(5));

        World {
            fed,
            district,
            federal,
            outsider,
            directory,
            package,
            consultations: vec![requested, received, proposed, confirmed, completed],
            journal,
            anchor,
        }
    }

    fn trust(&self) -> &Trust {
        &self.fed.trust
    }
}

/// Decodes, then checks that the value survives its own encoding: a decoder
/// that accepts what the encoder cannot reproduce would let two nodes
/// disagree about one message.
fn decode<M: WireMessage + PartialEq + std::fmt::Debug>(frame: &[u8]) -> Option<M> {
    match wire::decode::<M>(frame) {
        Ok(m) => {
            let again = wire::encode(&m).expect("a decoded value encodes within its limit");
            assert!(again.len() <= frame.len(), "re-encoding grew the frame");
            assert_eq!(wire::decode::<M>(&again).expect("re-decodes"), m);
            Some(m)
        }
        Err(e) => {
            // Errors are shown to operators; rendering must not panic either.
            let _ = e.to_string();
            None
        }
    }
}

/// Any frame, decoded as the kind it claims to be.
pub fn wire_frame(data: &[u8]) -> bool {
    let Ok(kind) = wire::peek_kind(data) else {
        return false;
    };
    fn show<T: std::fmt::Debug>(v: Option<T>) -> bool {
        v.map(|v| format!("{v:?}")).is_some()
    }
    match kind {
        MessageKind::DirectoryRecord => show(decode::<SignedRecord>(data)),
        MessageKind::RevocationNotice => show(decode::<RevocationNotice>(data)),
        MessageKind::CertChain => show(decode::<CertChain>(data)),
        MessageKind::SyncOffer => show(decode::<SyncOffer>(data)),
        MessageKind::SyncSummaries => show(decode::<SyncSummaries>(data)),
        MessageKind::RecordRequest => show(decode::<RecordRequest>(data)),
        MessageKind::RecordBatch => show(decode::<RecordBatch>(data)),
        MessageKind::EnvelopeHeader => show(decode::<EnvelopeHeader>(data)),
        MessageKind::SealedPackage => show(decode::<SealedPackage>(data)),
        MessageKind::Request => show(decode::<Request>(data)),
        MessageKind::Response => show(decode::<Response>(data).inspect(|r| {
            if let Response::Refused(refusal) = r {
                let _ = (refusal.to_string(), refusal.is_permanent());
            }
        })),
        MessageKind::PackageBody => show(decode::<PackageBody>(data)),
        MessageKind::ConclusionFile => show(decode::<ConclusionFile>(data)),
        MessageKind::Hello => show(decode::<Hello>(data)),
        MessageKind::HelloAnswer => show(decode::<HelloAnswer>(data)),
        MessageKind::JournalAnchor => show(decode::<Signed<Checkpoint>>(data)),
    }
}

/// A package delivered to the federal hospital, opened as the node opens it.
pub fn sealed_package(data: &[u8]) -> bool {
    let w = &*WORLD;
    let Some(package) = decode::<SealedPackage>(data) else {
        return false;
    };
    let _ = package.header.check(NOW).map_err(|e| e.to_string());
    // The body alone, as a relay-independent check of every chunk.
    let mut out = Vec::new();
    let sender_keys = w
        .directory
        .get(&w.district.id())
        .expect("known")
        .sealing_keys();
    let body_ok = seal::open_body(
        &package.header,
        &w.federal.sealing,
        &sender_keys,
        &package.body,
        &mut out,
    )
    .map_err(|e| Refusal::from(e).to_string())
    .is_ok();
    let opened = seal::open(
        &package,
        w.federal.id(),
        &w.federal.sealing,
        &w.directory,
        NOW,
        |_| false,
    );
    match opened {
        Ok(body) => {
            assert!(body_ok || package.header.sender != w.district.id());
            // A replayed id is refused whatever the body.
            assert!(matches!(
                seal::open(
                    &package,
                    w.federal.id(),
                    &w.federal.sealing,
                    &w.directory,
                    NOW,
                    |_| true
                ),
                Err(seal::SealError::Replay(_))
            ));
            let _ = package_body(&body);
            true
        }
        Err(e) => {
            let _ = Refusal::from(e).to_string();
            false
        }
    }
}

/// What the consulting node does with an opened body.
fn package_body(body: &[u8]) -> bool {
    let Some(content) = decode::<PackageBody>(body) else {
        return false;
    };
    match content {
        PackageBody::Consultation { request, .. } => Consultation::open(&request).is_ok(),
        PackageBody::Step { step, conclusion } => {
            let applied = apply_everywhere(&step);
            let concluded = conclusion.is_none_or(|c| c.verify(WORLD.trust(), NOW).is_ok());
            applied && concluded
        }
        PackageBody::Opaque(_) => true,
    }
}

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

/// Directory gossip: one record, a batch, or an anti-entropy step.
pub fn directory_record(data: &[u8]) -> bool {
    let w = &*WORLD;
    match wire::peek_kind(data) {
        Ok(MessageKind::RecordBatch) => {
            let Some(batch) = decode::<RecordBatch>(data) else {
                return false;
            };
            let mut dir = Directory::new();
            let n = batch.records.len();
            let results = dir.insert_many(batch.records, w.trust(), NOW);
            assert_eq!(results.len(), n, "one result per record");
            let _ = dir.digest();
            results.iter().all(Result::is_ok)
        }
        Ok(MessageKind::SyncOffer) => {
            let Some(offer) = decode::<SyncOffer>(data) else {
                return false;
            };
            match w.directory.differing_buckets(&offer) {
                Ok(buckets) => {
                    let summaries = w.directory.summaries(&buckets);
                    let plan = w.directory.reconcile(&buckets, &summaries);
                    assert!(plan.send.is_empty() && plan.want.is_empty());
                    true
                }
                Err(_) => false,
            }
        }
        Ok(MessageKind::SyncSummaries) => {
            let Some(s) = decode::<SyncSummaries>(data) else {
                return false;
            };
            let _ = w.directory.reconcile(&s.buckets, &s.summaries);
            true
        }
        _ => {
            let Some(record) = decode::<SignedRecord>(data) else {
                return false;
            };
            let mut dir = Directory::new();
            match dir.insert(record.clone(), w.trust(), NOW) {
                Ok(merge) => {
                    assert_eq!(merge, Merge::Added);
                    assert_eq!(dir.len(), 1);
                    assert_eq!(
                        dir.insert(record, w.trust(), NOW),
                        Ok(Merge::Unchanged),
                        "the same record twice changes nothing"
                    );
                    let _ = dir.sync_offer();
                    true
                }
                Err(e) => {
                    let _ = e.to_string();
                    assert!(dir.is_empty(), "a refused record is not stored");
                    false
                }
            }
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

/// A delivery receipt coming back in a request or response, checked against
/// the package the sender holds.
pub fn receipt(data: &[u8]) -> bool {
    let signed = match wire::peek_kind(data) {
        Ok(MessageKind::Response) => match decode::<Response>(data) {
            Some(Response::Receipt(r)) => r,
            _ => return false,
        },
        _ => match decode::<Request>(data) {
            Some(Request::Receipt(r)) => r,
            _ => return false,
        },
    };
    match delivery::check_receipt(&signed, &WORLD.package) {
        Ok(r) => {
            assert_eq!(r.package, WORLD.package.header.id);
            true
        }
        Err(e) => {
            let _ = e.to_string();
            false
        }
    }
}

/// Applies one step to every fixed consultation, checking that a refused
/// step changes nothing. True if any state accepted it.
fn apply_everywhere(step: &Signed<Transition>) -> bool {
    let mut any = false;
    for c in &WORLD.consultations {
        let mut after = c.clone();
        match after.apply(step) {
            Ok(status) => {
                assert_eq!(after.status, status);
                assert_eq!(after.history.len(), c.history.len() + 1);
                any = true;
            }
            Err(e) => {
                let _ = e.to_string();
                assert_eq!(&after, c, "a refused step changed the consultation");
            }
        }
    }
    any
}

/// A workflow step as it arrives in an opened package body (a `PackageBody`
/// frame). Also replays the step as a malicious party could send it: the
/// step's contents re-signed by the party it names and chained onto each
/// fixed consultation, so the state machine is explored past the signature
/// check, which a party to the consultation can always pass.
pub fn workflow_step(data: &[u8]) -> bool {
    let w = &*WORLD;
    let Some(content) = decode::<PackageBody>(data) else {
        return false;
    };
    let PackageBody::Step { step, conclusion } = content else {
        return package_body(data);
    };
    let concluded = conclusion.is_none_or(|c| c.verify(w.trust(), NOW).is_ok());
    let accepted = apply_everywhere(&step) && concluded;
    let Ok(t) = step.decode_unverified() else {
        return accepted;
    };
    let signer = if t.actor == w.district.id() {
        &w.district
    } else {
        &w.federal
    };
    for c in &w.consultations {
        let resigned = c.step(&signer.identity, t.role, &t.user, t.at, t.action.clone());
        let mut after = c.clone();
        match after.apply(&resigned) {
            Ok(status) => {
                assert_eq!(after.status, status);
                assert_eq!(after.history.last(), Some(&resigned));
            }
            Err(e) => {
                let _ = e.to_string();
                assert_eq!(&after, c, "a refused step changed the consultation");
            }
        }
    }
    accepted
}

/// A conclusion file as `konsilium verify` reads it.
pub fn conclusion_file(data: &[u8]) -> bool {
    let Some(file) = decode::<ConclusionFile>(data) else {
        return false;
    };
    match file.verify(WORLD.trust(), NOW) {
        Ok((conclusion, signer)) => {
            assert!(conclusion.check().is_ok());
            assert!(!signer.trim().is_empty());
            true
        }
        Err(e) => {
            let _ = e.to_string();
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

/// A journal anchor read from its file, checked against the fixed journal.
pub fn journal_anchor(data: &[u8]) -> bool {
    let w = &*WORLD;
    let Some(anchor) = decode::<Signed<Checkpoint>>(data) else {
        return false;
    };
    let org = w.federal.id();
    let result = journal::verify(&w.journal, std::slice::from_ref(&anchor), &org);
    // With the genuine anchor alongside, the verdict on the journal is the same
    // or the new anchor's fault.
    let both = journal::verify(&w.journal, &[w.anchor.clone(), anchor], &org);
    assert_eq!(result.is_ok(), both.is_ok());
    match result {
        Ok(v) => {
            assert_eq!(v.entries, w.journal.len() as u64);
            assert!(v.anchored <= v.entries);
            true
        }
        Err(e) => {
            let _ = e.to_string();
            false
        }
    }
}

/// A target's entry function: true when the input passed every check.
pub type Target = fn(&[u8]) -> bool;

/// Every target, by the name of its corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("wire_frame", wire_frame),
    ("sealed_package", sealed_package),
    ("cert_chain", cert_chain),
    ("directory_record", directory_record),
    ("revocation", revocation),
    ("receipt", receipt),
    ("workflow_step", workflow_step),
    ("conclusion_file", conclusion_file),
    ("hello", hello),
    ("journal_anchor", journal_anchor),
];

fn frame<M: WireMessage>(m: &M) -> Vec<u8> {
    wire::encode(m).expect("encodes within limits")
}

/// A seed input: its target, its name, its bytes.
pub type Seed = (&'static str, &'static str, Vec<u8>);

/// Valid inputs for every target, from the fixed world: starting points the
/// fuzzer mutates, each accepted by its target.
pub fn seeds() -> Vec<Seed> {
    let w = &*WORLD;
    let notice = w.fed.root.revoke(1, NOW, [999].into());
    let hello_msg = Hello {
        chain: w.district.chain.clone(),
        record: Some(w.district.signed_record(1)),
        revocations: vec![notice.clone()],
        time: NOW,
    };
    let receipt_msg = Signed::sign(&w.federal.identity, &Receipt::for_package(&w.package, NOW));
    let conclusion = ConclusionFile {
        conclusion: Conclusion {
            consultation: ConsultationId([9; 16]),
            consultant_org: w.federal.id(),
            authors: vec!["Prof. Petrov".into()],
            diagnosis: "Paroxysmal atrial fibrillation".into(),
            recommendations: "Anticoagulation; Holter in 1 month".into(),
            treatment_plan: "Apixaban 5 mg twice daily".into(),
            further_studies: "Echocardiography".into(),
            attachments: vec![],
            issued_at: NOW,
        }
        .sign(&w.federal.identity)
        .expect("a valid conclusion"),
        chain: w.federal.chain.clone(),
    };
    let proposed = &w.consultations[2];
    let confirm = proposed.step(
        &w.district.identity,
        Role::Physician,
        "Dr. Ivanova",
        at(30),
        Action::ConfirmSlot {
            slot: Slot {
                start: at(60),
                end: at(90),
            },
        },
    );
    let receive = w.consultations[0].step(
        &w.federal.identity,
        Role::Coordinator,
        "coordinator",
        at(1),
        Action::Receive,
    );
    let conclude = w.consultations[4].history[5].clone();
    let mut pkg_with_consultation = header(&w.district, &w.federal);
    pkg_with_consultation.id = PackageId([8; 16]);
    let consultation_body = frame(&PackageBody::Consultation {
        request: request(&w.district, &w.federal),
        extract: CaseExtract {
            summary: "Palpitations for two weeks".into(),
            questions: "Ablation or medication?".into(),
        },
        files: vec![konsilium_protocol::content::FileInfo {
            title: Some("Holter ECG".into()),
            content_type: "application/pdf".into(),
        }],
    });
    let consultation_package = seal::seal(
        pkg_with_consultation,
        &w.district.sealing,
        &w.federal.sealing.public(),
        [4; 32],
        &consultation_body,
    )
    .expect("seals");
    vec![
        (
            "wire_frame",
            "directory_record",
            frame(&w.district.signed_record(1)),
        ),
        ("wire_frame", "revocation_notice", frame(&notice)),
        ("wire_frame", "cert_chain", frame(&w.district.chain)),
        ("wire_frame", "sync_offer", frame(&w.directory.sync_offer())),
        (
            "wire_frame",
            "sync_summaries",
            frame(&SyncSummaries {
                buckets: vec![0, 1],
                summaries: w.directory.summaries(&[0, 1]),
            }),
        ),
        (
            "wire_frame",
            "record_request",
            frame(&RecordRequest {
                orgs: vec![w.district.id(), w.federal.id()],
            }),
        ),
        (
            "wire_frame",
            "record_batch",
            frame(&RecordBatch {
                records: vec![w.district.signed_record(1), w.federal.signed_record(2)],
            }),
        ),
        ("wire_frame", "envelope_header", frame(&w.package.header)),
        ("wire_frame", "sealed_package", frame(&w.package)),
        (
            "wire_frame",
            "request",
            frame(&Request::Deliver(w.package.clone())),
        ),
        (
            "wire_frame",
            "response",
            frame(&Response::Refused(Refusal::Invalid("expired".into()))),
        ),
        ("wire_frame", "package_body", consultation_body.clone()),
        ("wire_frame", "conclusion_file", frame(&conclusion)),
        ("wire_frame", "hello", frame(&hello_msg)),
        (
            "wire_frame",
            "hello_answer",
            frame(&HelloAnswer::Welcome(Box::new(hello_msg.clone()))),
        ),
        ("wire_frame", "journal_anchor", frame(&w.anchor)),
        ("sealed_package", "ecg", frame(&w.package)),
        (
            "sealed_package",
            "consultation",
            frame(&consultation_package),
        ),
        ("cert_chain", "regional", frame(&w.district.chain)),
        ("cert_chain", "federal", frame(&w.federal.chain)),
        (
            "directory_record",
            "record",
            frame(&w.district.signed_record(1)),
        ),
        (
            "directory_record",
            "batch",
            frame(&RecordBatch {
                records: vec![w.district.signed_record(1), w.federal.signed_record(2)],
            }),
        ),
        (
            "directory_record",
            "offer",
            frame(&w.directory.sync_offer()),
        ),
        (
            "directory_record",
            "summaries",
            frame(&SyncSummaries {
                buckets: vec![0, 1],
                summaries: w.directory.summaries(&[0, 1]),
            }),
        ),
        ("revocation", "root", frame(&notice)),
        (
            "revocation",
            "regional",
            frame(
                &w.fed
                    .regions
                    .values()
                    .next()
                    .expect("a region")
                    .revoke(1, NOW, [5, 6].into()),
            ),
        ),
        (
            "receipt",
            "request",
            frame(&Request::Receipt(receipt_msg.clone())),
        ),
        (
            "receipt",
            "response",
            frame(&Response::Receipt(receipt_msg)),
        ),
        (
            "workflow_step",
            "receive",
            frame(&PackageBody::Step {
                step: receive,
                conclusion: None,
            }),
        ),
        (
            "workflow_step",
            "confirm_slot",
            frame(&PackageBody::Step {
                step: confirm,
                conclusion: None,
            }),
        ),
        (
            "workflow_step",
            "conclude",
            frame(&PackageBody::Step {
                step: conclude,
                conclusion: Some(Box::new(conclusion.clone())),
            }),
        ),
        ("conclusion_file", "conclusion", frame(&conclusion)),
        ("hello", "hello", frame(&hello_msg)),
        (
            "hello",
            "welcome",
            frame(&HelloAnswer::Welcome(Box::new(hello_msg))),
        ),
        ("journal_anchor", "anchor", frame(&w.anchor)),
    ]
}
