//! Tests of the FHIR mapping, one module per topic. Here: the fixtures they
//! share, a consultation to export and a request a hospital system sends.

use super::*;
use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::content::CaseExtract;
use konsilium_protocol::journal::{ConsultationRef, Journal};
use konsilium_protocol::seal::{BlobRef, PackageId};
use konsilium_protocol::testkit::{NOW, TestFederation, TestOrg};
use konsilium_protocol::urgency::Deadlines;
use konsilium_protocol::workflow::{self, ConsultationRequest};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

mod export;
mod import;
mod mapping;
mod round_trip;
mod validation;

use validation::{assert_valid, r4_errors};

// -- A consultation to export --------------------------------------------

const CID: ConsultationId = ConsultationId([0x42; 16]);

struct Case {
    district: TestOrg,
    federal: TestOrg,
    consultation: Consultation,
    deadline: Deadline,
    conclusion: Option<Signed<Conclusion>>,
    journal: Vec<Entry>,
    extract: CaseExtract,
}

impl Case {
    fn record(&self) -> ConsultationRecord<'_> {
        ConsultationRecord {
            consultation: &self.consultation,
            extract: &self.extract,
            requester_name: "Kirillov central district hospital",
            consultant_name: "Federal center of cardiology",
            deadline: Some(&self.deadline),
            conclusion: self.conclusion.as_ref(),
            journal: &self.journal,
            files: &[],
        }
    }

    fn export(&self) -> Value {
        export_bundle(&self.record())
    }

    fn step(&mut self, consulting: bool, role: Role, minutes: u64, action: Action) {
        let key = if consulting {
            &self.federal.identity
        } else {
            &self.district.identity
        };
        let user = match role {
            Role::Physician => "Dr. Anna Ivanova",
            Role::Coordinator => "coordinator Orlova",
            Role::Consultant => "Prof. Petrov",
            Role::Operator => "operator",
        };
        let step = self.consultation.step(key, role, user, at(minutes), action);
        self.consultation.apply(&step).expect("a valid step");
    }
}

fn at(minutes: u64) -> Timestamp {
    NOW.saturating_add(Duration::from_secs(minutes * 60))
}

fn slot(hours: u64) -> Slot {
    Slot {
        start: at(hours * 60),
        end: at(hours * 60 + 45),
    }
}

fn written_consent() -> Consent {
    Consent::Given {
        by: "Ivan Petrovich Sidorov".into(),
        at: NOW.saturating_sub(Duration::from_secs(600)),
        method: ConsentMethod::Written,
        document: Some([0xab; 32]),
    }
}

fn open(urgency: Urgency, consent: Consent) -> Case {
    let mut fed = TestFederation::new("fhir");
    let district = fed.org(1, OrgLevel::District, "RU-VLG", &[]);
    let federal = fed.org(2, OrgLevel::Federal, "RU-MOW", &[Specialty::Cardiology]);
    let request = ConsultationRequest {
        id: CID,
        requester: district.id(),
        consultant: federal.id(),
        specialty: Specialty::Cardiology,
        urgency,
        created: NOW,
        consent,
        physician: "Dr. Anna Ivanova".into(),
        escalated_from: Some(ConsultationId([0x41; 16])),
    };
    let signed = workflow::request(&district.identity, request).expect("request");
    let consultation = Consultation::open(&signed).expect("opens");
    let deadline = Deadline::compute(
        urgency,
        NOW,
        &federal.record(1).calendar,
        &Deadlines::default(),
    );
    Case {
        district,
        federal,
        consultation,
        deadline,
        conclusion: None,
        journal: Vec::new(),
        extract: CaseExtract {
            summary: "Syncope twice this month; bradycardia 38/min on Holter.".into(),
            questions: "Is a pacemaker indicated?".into(),
        },
    }
}

/// Request with consent; received, accepted, started; more examinations
/// asked and supplied; a video consilium proposed and confirmed; an oral
/// note; the signed conclusion; acknowledged. With its journal.
fn full_case() -> Case {
    use Role::*;
    let mut case = open(Urgency::Urgent, written_consent());
    case.step(true, Coordinator, 5, Action::Receive);
    case.step(true, Coordinator, 10, Action::Accept);
    case.step(true, Consultant, 20, Action::Start);
    case.step(
        true,
        Consultant,
        30,
        Action::AskMore {
            questions: "Echocardiography, please".into(),
        },
    );
    case.step(
        false,
        Physician,
        90,
        Action::Supply {
            note: "Echo attached: EF 35%".into(),
        },
    );
    case.step(
        true,
        Coordinator,
        100,
        Action::ProposeSlots {
            slots: vec![slot(4), slot(5)],
        },
    );
    case.step(false, Physician, 110, Action::ConfirmSlot { slot: slot(5) });
    case.step(
        true,
        Consultant,
        120,
        Action::Note {
            text: "Preliminary: no indication for emergency surgery".into(),
        },
    );
    let conclusion = Conclusion {
        consultation: CID,
        consultant_org: case.federal.id(),
        authors: vec!["Prof. Petrov".into(), "Dr. Smirnova".into()],
        diagnosis: "Ischemic cardiomyopathy, NYHA III".into(),
        recommendations: "CRT-D implantation".into(),
        treatment_plan: "Optimise heart failure therapy first".into(),
        further_studies: String::new(),
        attachments: vec![BlobRef {
            hash: [9; 32],
            size: 123_456,
        }],
        issued_at: at(360),
    }
    .sign(&case.federal.identity)
    .expect("signs");
    case.step(
        true,
        Consultant,
        360,
        Action::Conclude {
            conclusion: conclusion.content_hash(),
        },
    );
    case.step(false, Physician, 400, Action::Acknowledge);
    case.conclusion = Some(conclusion);
    let mut journal = Journal::new();
    let id = CID.0;
    let user = |s: &str| Some(s.to_owned());
    case.journal = vec![
        journal.append(
            NOW,
            user("dr.ivanova"),
            Some(Physician),
            JournalAction::Create(ConsultationRef {
                id,
                requester: case.district.id(),
                consultant: case.federal.id(),
                specialty: Specialty::Cardiology,
                urgency: Urgency::Urgent,
            }),
        ),
        journal.append(
            at(1),
            None,
            None,
            JournalAction::Send {
                consultation: id,
                package: PackageId([1; 16]),
            },
        ),
        journal.append(
            at(91),
            None,
            None,
            JournalAction::Receive {
                consultation: id,
                package: PackageId([2; 16]),
            },
        ),
        journal.append(
            at(95),
            user("prof.petrov"),
            Some(Consultant),
            JournalAction::Open { consultation: id },
        ),
        journal.append(
            at(360),
            None,
            None,
            JournalAction::Transition {
                consultation: id,
                from: "in-progress".into(),
                to: "completed".into(),
            },
        ),
        journal.append(
            at(361),
            None,
            None,
            JournalAction::Conclusion {
                consultation: id,
                deadline_met: false,
            },
        ),
        journal.append(
            at(2),
            None,
            None,
            JournalAction::Login {
                user: "dr.ivanova".into(),
            },
        ),
        // A user name typed by whoever tried, control characters included.
        journal.append(
            at(3),
            None,
            None,
            JournalAction::FailedLogin {
                user: "mallory\u{7}\u{1b}[2J".into(),
            },
        ),
        // About another consultation: not exported.
        journal.append(
            at(4),
            None,
            None,
            JournalAction::Open {
                consultation: [7; 16],
            },
        ),
    ];
    case
}

fn resources<'b>(bundle: &'b Value, rtype: &str) -> Vec<&'b Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == rtype)
        .collect()
}

fn one<'b>(bundle: &'b Value, rtype: &str) -> &'b Value {
    let found = resources(bundle, rtype);
    assert_eq!(found.len(), 1, "one {rtype}");
    found[0]
}

fn b64(v: &Value) -> Vec<u8> {
    BASE64
        .decode(v.as_str().expect("base64 string"))
        .expect("base64")
}

impl Case {
    fn clone_consultation(&self) -> Case {
        let mut fed = TestFederation::new("fhir");
        Case {
            district: fed.org(1, OrgLevel::District, "RU-VLG", &[]),
            federal: fed.org(2, OrgLevel::Federal, "RU-MOW", &[Specialty::Cardiology]),
            consultation: self.consultation.clone(),
            deadline: self.deadline,
            conclusion: self.conclusion.clone(),
            journal: self.journal.clone(),
            extract: self.extract.clone(),
        }
    }
}

// -- A request to import ---------------------------------------------------

/// A request as a hospital information system would write it: SNOMED CT
/// cardiology, priority stat, the physician and the patient as resources
/// referenced by `Type/id`, the target organization by its Konsilium id.
fn his_bundle(target: &OrgId) -> Value {
    super::example::referral(target)
}

fn target() -> OrgId {
    let mut fed = TestFederation::new("fhir-import");
    fed.org(2, OrgLevel::Federal, "RU-MOW", &[Specialty::Cardiology])
        .id()
}

#[track_caller]
fn import_error(bundle: &Value) -> FhirError {
    match import_service_request(bundle) {
        Ok(imported) => panic!("imported {imported:?}"),
        Err(e) => e,
    }
}
