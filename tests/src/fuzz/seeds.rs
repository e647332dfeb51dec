//! Valid inputs for every target, the starting points the fuzzer mutates.

use super::*;

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
    // A consultation's history, as a counterpart sends it to a node that
    // lost its own copy.
    let mut pkg_with_history = header(&w.district, &w.federal);
    pkg_with_history.id = PackageId([10; 16]);
    let history_body = frame(&PackageBody::History(Box::new(
        konsilium_protocol::content::SharedHistory {
            request: request(&w.district, &w.federal),
            extract: CaseExtract {
                summary: "Palpitations for two weeks".into(),
                questions: "Ablation or medication?".into(),
            },
            files: Vec::new(),
            steps: w.consultations[3].history.clone(),
            conclusion: None,
        },
    )));
    let history_package = seal::seal(
        pkg_with_history,
        &w.district.sealing,
        &w.federal.sealing.public(),
        [5; 32],
        &history_body,
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
        (
            "wire_frame",
            "sync_offer",
            frame(&w.directory.sync_offer(None)),
        ),
        (
            "wire_frame",
            "sync_summaries",
            frame(&SyncSummaries {
                buckets: vec![0, 1],
                summaries: w.directory.summaries(&[0, 1], None),
                region: None,
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
        (
            "wire_frame",
            "request_parcel",
            frame(&Request::DeliverMany(vec![
                w.package.clone(),
                w.package.clone(),
            ])),
        ),
        (
            "wire_frame",
            "response_answers",
            frame(&Response::Answers(vec![
                DeliveryAnswer::Receipt(receipt_msg.clone()),
                DeliveryAnswer::Refused(Refusal::Invalid("expired".into())),
            ])),
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
        ("sealed_package", "history", frame(&history_package)),
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
            frame(&w.directory.sync_offer(None)),
        ),
        (
            "directory_record",
            "regional_offer",
            frame(&w.directory.sync_offer(Some(&w.district.region))),
        ),
        (
            "directory_record",
            "summaries",
            frame(&SyncSummaries {
                buckets: vec![0, 1],
                summaries: w.directory.summaries(&[0, 1], None),
                region: None,
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
            "video_signal",
            "offer",
            frame(&Request::VideoOffer(super::video::signal(
                konsilium_protocol::video::Description::Offer(
                    "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n".into(),
                ),
            ))),
        ),
        (
            "video_signal",
            "answer",
            frame(&Response::VideoAnswer(super::video::signal(
                konsilium_protocol::video::Description::Answer(
                    "v=0\r\no=- 3 4 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n".into(),
                ),
            ))),
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
        (
            "journal_anchor",
            "slots",
            konsilium_node::storage::anchor::file_bytes(Some(&w.anchor))
                .expect("an anchor fits its slot"),
        ),
        (
            "config_file",
            "district",
            include_bytes!("../../../deploy/examples/district/node.toml").to_vec(),
        ),
        (
            "config_file",
            "federal",
            include_bytes!("../../../deploy/examples/federal/node.toml").to_vec(),
        ),
        (
            "fhir_referral",
            "emergency_cardiology",
            serde_json::to_vec_pretty(&konsilium_node::fhir::example::referral(&w.federal.id()))
                .expect("JSON"),
        ),
        ("journal_file", "federal", super::files::stored_journal()),
        (
            "stun_datagram",
            "binding",
            super::stun::binding_request(None),
        ),
        (
            "stun_datagram",
            "binding_software",
            super::stun::binding_request(Some("browser")),
        ),
        ("sdp_offer", "site", super::sdp::site_offer().into_bytes()),
        (
            "sdp_offer",
            "browser",
            super::sdp::browser_offer().into_bytes(),
        ),
    ]
}
