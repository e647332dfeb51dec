//! Round trips: export then import gives the request back, and an
//! export of the import equals the first export, for generated requests.

use super::*;

#[test]
fn emergency_override_exports_and_imports() {
    let reason = "unconscious, no relatives reachable";
    let mut case = open(
        Urgency::Emergency,
        Consent::EmergencyOverride {
            reason: reason.into(),
        },
    );
    case.step(true, Role::Consultant, 1, Action::Accept);
    case.step(
        true,
        Role::Consultant,
        4,
        Action::Note {
            text: "Oral conclusion: thrombolysis now".into(),
        },
    );
    let mut journal = Journal::new();
    case.journal = vec![journal.append(
        NOW,
        Some("dr.ivanova".into()),
        Some(Role::Physician),
        JournalAction::ConsentOverride {
            consultation: CID.0,
            reason: reason.into(),
        },
    )];
    let bundle = case.export();
    assert_valid(&bundle);
    let consent = one(&bundle, "Consent");
    assert_eq!(consent["extension"][0]["url"], OVERRIDE_REASON_EXTENSION);
    assert_eq!(consent["extension"][0]["valueString"], reason);
    assert_eq!(consent["provision"]["purpose"][0]["code"], "ETREAT");
    let task = one(&bundle, "Task");
    assert_eq!(task["priority"], "stat");
    assert_eq!(
        task["input"][0]["valueInstant"],
        json!(instant(case.deadline.first_response_due.unwrap()))
    );
    let note = one(&bundle, "Communication");
    assert_eq!(
        note["payload"][0]["contentString"],
        "Oral conclusion: thrombolysis now"
    );
    assert_eq!(
        task["output"][0]["valueReference"]["reference"],
        json!(urn(note["id"].as_str().unwrap()))
    );
    let audit = one(&bundle, "AuditEvent");
    assert_eq!(audit["type"]["code"], "110113");
    assert_eq!(audit["subtype"][0]["code"], "110127");
    assert_eq!(audit["entity"][0]["detail"][0]["valueString"], reason);

    // The request as exported before anyone answered imports back.
    let fresh = open(
        Urgency::Emergency,
        Consent::EmergencyOverride {
            reason: reason.into(),
        },
    );
    let imported = import_service_request(&fresh.export()).expect("imports");
    assert_eq!(imported.urgency, Urgency::Emergency);
    assert_eq!(
        imported.consent,
        Some(Consent::EmergencyOverride {
            reason: reason.into()
        })
    );
}

#[test]
fn export_round_trips_through_import() {
    let physician = "Dr. Anna Ivanova";
    for consent in [
        Consent::Given {
            by: consent_given_by(&Giver::Patient, physician),
            at: NOW.saturating_sub(Duration::from_secs(600)),
            method: ConsentMethod::Written,
            document: Some([0xab; 32]),
        },
        Consent::Given {
            by: consent_given_by(&Giver::Representative, physician),
            at: at(1),
            method: ConsentMethod::Oral {
                witness: "nurse Kuznetsova".into(),
            },
            document: None,
        },
        Consent::Given {
            by: consent_given_by(&Giver::Patient, physician),
            at: Timestamp::from_unix_millis(1_780_000_000_123),
            method: ConsentMethod::Electronic,
            document: None,
        },
    ] {
        let case = open(Urgency::Urgent, consent.clone());
        let bundle = case.export();
        assert_valid(&bundle);
        let imported = import_service_request(&bundle).expect("imports");
        assert_eq!(
            imported,
            ImportedRequest {
                specialty: Specialty::Cardiology,
                urgency: Urgency::Urgent,
                target: Some(case.federal.id()),
                physician: physician.into(),
                questions: case.extract.questions.clone(),
                case_summary: case.extract.summary.clone(),
                attachments: Vec::new(),
                identifier: Some(format!("{CONSULTATION_SYSTEM}|{CID}")),
                consent: Some(consent),
            }
        );
    }
}

/// One consultation's request as the generator draws it.
#[derive(Debug, Clone)]
struct Drawn {
    specialty: Specialty,
    urgency: Urgency,
    physician: String,
    consent: Consent,
    extract: CaseExtract,
    files: Vec<(FileInfo, Vec<u8>)>,
}

/// A FHIR `string` as an export leaves it: not blank, no surrounding
/// whitespace. Latin and Cyrillic, several lines.
fn fhir_text() -> impl proptest::strategy::Strategy<Value = String> {
    "[A-Za-zА-Яа-я0-9][A-Za-zА-Яа-я0-9 ,.:;%/()?\n-]{0,120}[A-Za-zА-Яа-я0-9.?)]"
}

fn optional_text() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    prop_oneof![1 => Just(String::new()), 4 => fhir_text()]
}

fn drawn() -> impl proptest::strategy::Strategy<Value = Drawn> {
    use proptest::prelude::*;
    let name = "(Dr\\. |Prof\\. )?[A-ZА-Я][a-zа-я]{1,10}( [A-ZА-Я][a-zа-я]{1,12}){0,2}";
    let method = prop_oneof![
        Just(ConsentMethod::Written),
        Just(ConsentMethod::Electronic),
        name.prop_map(|witness| ConsentMethod::Oral { witness }),
    ];
    let giver = prop_oneof![Just(Giver::Patient), Just(Giver::Representative)];
    // Any millisecond from 1970 to the end of year 9999 (FHIR's range).
    let given = (
        giver,
        0u64..253_402_300_799_999,
        method,
        proptest::option::of(any::<[u8; 32]>()),
    );
    let urgency = prop_oneof![
        Just(Urgency::Planned),
        Just(Urgency::Urgent),
        Just(Urgency::Emergency)
    ];
    (
        proptest::sample::select(Specialty::ALL.to_vec()),
        urgency,
        name,
        given,
        proptest::option::of(fhir_text()),
        optional_text(),
        optional_text(),
        proptest::collection::vec(case_file(), 0..3),
    )
        .prop_map(
            |(specialty, urgency, physician, given, override_reason, summary, questions, files)| {
                let (giver, ms, method, document) = given;
                let consent = match override_reason {
                    Some(reason) if urgency == Urgency::Emergency => {
                        Consent::EmergencyOverride { reason }
                    }
                    _ => Consent::Given {
                        by: consent_given_by(&giver, &physician),
                        at: Timestamp::from_unix_millis(ms),
                        method,
                        document,
                    },
                };
                Drawn {
                    specialty,
                    urgency,
                    physician,
                    consent,
                    extract: CaseExtract { summary, questions },
                    files,
                }
            },
        )
}

/// A file of a case extract: a one-line title or none, a media type, bytes.
fn case_file() -> impl proptest::strategy::Strategy<Value = (FileInfo, Vec<u8>)> {
    use proptest::prelude::*;
    let content_type = proptest::sample::select(vec![
        "application/pdf",
        "application/dicom",
        "image/jpeg",
        "application/octet-stream",
    ]);
    (
        proptest::option::of("[A-Za-zА-Яа-я0-9][A-Za-zА-Яа-я0-9 .()-]{0,40}[A-Za-z0-9)]"),
        content_type,
        proptest::collection::vec(any::<u8>(), 1..512),
    )
        .prop_map(|(title, content_type, data)| {
            let info = FileInfo {
                title,
                content_type: content_type.into(),
            };
            (info, data)
        })
}

/// The export of a newly opened consultation with `drawn`'s content.
fn export_drawn(district: &TestOrg, consultant: OrgId, drawn: &Drawn) -> Value {
    let request = ConsultationRequest {
        id: CID,
        requester: district.id(),
        consultant,
        specialty: drawn.specialty,
        urgency: drawn.urgency,
        created: NOW,
        consent: drawn.consent.clone(),
        physician: drawn.physician.clone(),
        escalated_from: None,
    };
    let signed = workflow::request(&district.identity, request).expect("a valid request");
    let consultation = Consultation::open(&signed).expect("opens");
    let files: Vec<ExportedFile> = drawn
        .files
        .iter()
        .enumerate()
        .map(|(i, (info, data))| ExportedFile {
            info: info.clone(),
            // Standing in for the sealed blob: the same bytes give the same reference.
            blob: BlobRef {
                hash: *blake3::hash(data).as_bytes(),
                size: konsilium_protocol::seal::sealed_len(data.len()) as u64,
            },
            url: format!("/consultations/{CID}/files/{i}"),
            data: Some(data.clone()),
        })
        .collect();
    export_bundle(&ConsultationRecord {
        consultation: &consultation,
        extract: &drawn.extract,
        requester_name: "Kirillov central district hospital",
        consultant_name: "Federal center of cardiology",
        deadline: None,
        conclusion: None,
        journal: &[],
        files: &files,
    })
}

#[test]
fn export_import_export_is_stable() {
    use proptest::test_runner::{Config, TestRunner};
    let mut fed = TestFederation::new("fhir-roundtrip");
    let district = fed.org(1, OrgLevel::District, "RU-VLG", &[]);
    let federal = fed.org(2, OrgLevel::Federal, "RU-MOW", &[Specialty::Cardiology]);
    let mut runner = TestRunner::new(Config {
        cases: 64,
        ..Config::default()
    });
    runner
        .run(&drawn(), |drawn| {
            let first = export_drawn(&district, federal.id(), &drawn);
            assert_valid(&first);
            let imported = import_service_request(&first)
                .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            // Each part lands where it came from.
            proptest::prop_assert_eq!(imported.specialty, drawn.specialty);
            proptest::prop_assert_eq!(imported.urgency, drawn.urgency);
            proptest::prop_assert_eq!(&imported.physician, &drawn.physician);
            proptest::prop_assert_eq!(&imported.case_summary, &drawn.extract.summary);
            proptest::prop_assert_eq!(&imported.questions, &drawn.extract.questions);
            proptest::prop_assert_eq!(imported.consent.as_ref(), Some(&drawn.consent));
            proptest::prop_assert_eq!(imported.target, Some(federal.id()));
            let files: Vec<(FileInfo, Vec<u8>)> = imported
                .attachments
                .iter()
                .map(|a| {
                    let info = FileInfo {
                        title: a.title.clone(),
                        content_type: a.content_type.clone(),
                    };
                    (info, a.data.clone())
                })
                .collect();
            proptest::prop_assert_eq!(&files, &drawn.files);
            // And what the import opens exports to the same Bundle.
            let again = Drawn {
                specialty: imported.specialty,
                urgency: imported.urgency,
                physician: imported.physician.clone(),
                consent: imported.consent.clone().expect("consent"),
                extract: CaseExtract {
                    summary: imported.case_summary.clone(),
                    questions: imported.questions.clone(),
                },
                files,
            };
            let target = imported.target.expect("a performer");
            let second = export_drawn(&district, target, &again);
            proptest::prop_assert_eq!(&first, &second);
            Ok(())
        })
        .unwrap();
}
