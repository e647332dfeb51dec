//! Export: every resource valid R4, statuses, priorities and appointments
//! mapped, odd values and unverified conclusions handled.

use super::*;

#[test]
fn full_consultation_exports_as_valid_fhir_r4() {
    let case = full_case();
    let bundle = case.export();
    assert_valid(&bundle);
    assert_eq!(bundle["type"], "collection");
    assert_eq!(bundle, case.export(), "the export is deterministic");

    let count = |t| resources(&bundle, t).len();
    assert_eq!(count("Organization"), 2);
    assert_eq!(count("ServiceRequest"), 1);
    assert_eq!(count("Task"), 1);
    assert_eq!(count("Appointment"), 1);
    assert_eq!(count("Communication"), 1);
    assert_eq!(count("DiagnosticReport"), 1);
    assert_eq!(count("Consent"), 1);
    // One per signed step, and one for the conclusion.
    assert_eq!(count("Provenance"), case.consultation.history.len() + 1);
    // The entry about another consultation is left out.
    assert_eq!(count("AuditEvent"), case.journal.len() - 1);

    let sr = one(&bundle, "ServiceRequest");
    assert_eq!(sr["intent"], "order");
    assert_eq!(sr["status"], "completed");
    assert_eq!(sr["code"]["coding"][0]["system"], SNOMED);
    assert_eq!(sr["code"]["coding"][0]["code"], "394579002");
    assert_eq!(sr["code"]["coding"][1]["system"], SPECIALTY_SYSTEM);
    assert_eq!(sr["code"]["coding"][1]["code"], "cardiology");
    assert_eq!(sr["replaces"][0]["identifier"]["value"], "41".repeat(16));

    let task = one(&bundle, "Task");
    assert_eq!(task["status"], "completed");
    assert_eq!(task["intent"], "order");
    assert_eq!(task["priority"], "urgent");
    assert_eq!(
        task["focus"]["reference"],
        json!(urn(sr["id"].as_str().unwrap()))
    );
    assert_eq!(
        task["restriction"]["period"]["end"],
        json!(instant(case.deadline.due))
    );
    assert_eq!(task["executionPeriod"]["start"], json!(instant(at(20))));
    assert_eq!(task["executionPeriod"]["end"], json!(instant(at(360))));
    assert_eq!(task["businessStatus"]["coding"][0]["code"], "acknowledge");
    let notes: Vec<&str> = task["note"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        notes,
        [
            "More examinations requested: Echocardiography, please",
            "More materials supplied: Echo attached: EF 35%"
        ]
    );
    let orgs: Vec<&Value> = resources(&bundle, "Organization");
    let requester = orgs
        .iter()
        .find(|o| o["identifier"][0]["value"] == case.district.id().to_string())
        .expect("requesting organization");
    assert_eq!(requester["identifier"][0]["system"], ORG_SYSTEM);
    assert_eq!(
        task["requester"]["reference"],
        json!(urn(requester["id"].as_str().unwrap()))
    );

    let appointment = one(&bundle, "Appointment");
    assert_eq!(appointment["status"], "booked");
    assert_eq!(appointment["start"], json!(instant(slot(5).start)));

    let report = one(&bundle, "DiagnosticReport");
    assert_eq!(report["status"], "final");
    let text = report["conclusion"].as_str().unwrap();
    assert!(
        text.contains("Diagnosis:\nIschemic cardiomyopathy, NYHA III"),
        "{text}"
    );
    assert!(
        text.contains("Recommendations:\nCRT-D implantation"),
        "{text}"
    );
    assert!(
        !text.contains("Further studies"),
        "empty sections are left out"
    );
    let form = String::from_utf8(b64(&report["presentedForm"][0]["data"])).unwrap();
    assert!(form.contains("Prof. Petrov, Dr. Smirnova"), "{form}");

    // The conclusion's Provenance carries its exact signature and bytes.
    let signed = case.conclusion.as_ref().unwrap();
    let report_ref = json!(urn(report["id"].as_str().unwrap()));
    let provenance = resources(&bundle, "Provenance")
        .into_iter()
        .find(|p| p["target"][0]["reference"] == report_ref)
        .expect("the conclusion's provenance");
    let sig = &provenance["signature"][0];
    assert_eq!(sig["type"][0]["code"], AUTHORS_SIGNATURE);
    assert_eq!(sig["sigFormat"], SIG_FORMAT);
    assert_eq!(b64(&sig["data"]), signed.signature().to_bytes());
    assert_eq!(
        b64(&sig["extension"][0]["valueBase64Binary"]),
        signed.signed_bytes()
    );
    let consultant_ref = json!(urn(orgs
        .iter()
        .find(|o| o["identifier"][0]["value"] == case.federal.id().to_string())
        .unwrap()["id"]
        .as_str()
        .unwrap()));
    assert_eq!(sig["who"]["reference"], consultant_ref);

    // Journal entries: types, times, and no control characters.
    let audits = resources(&bundle, "AuditEvent");
    assert_eq!(audits[0]["recorded"], json!(instant(NOW)));
    assert_eq!(audits[0]["type"]["code"], "110110");
    assert_eq!(audits[0]["action"], "C");
    let failed = audits
        .iter()
        .find(|a| a["outcome"] == "4")
        .expect("the failed login");
    assert_eq!(failed["subtype"][0]["code"], "110122");
    let name = failed["agent"][0]["name"].as_str().unwrap();
    assert!(!name.chars().any(|c| c.is_control()), "{name:?}");

    let consent = one(&bundle, "Consent");
    assert_eq!(consent["scope"]["coding"][0]["code"], "patient-privacy");
    assert_eq!(consent["provision"]["type"], "permit");
    assert_eq!(consent["extension"][0]["valueCode"], "written");
}

/// The validation is real: breaking one element of one resource fails it.
#[test]
fn validation_catches_broken_resources() {
    let bundle = full_case().export();
    assert_valid(&bundle);
    type Mutation = fn(&mut Map<String, Value>);
    let cases: &[(&str, &str, Mutation)] = &[
        ("Task", "Task.intent removed", |r| {
            r.remove("intent");
        }),
        ("Task", "Task.status removed", |r| {
            r.remove("status");
        }),
        ("Task", "Task.priority high", |r| {
            r.insert("priority".into(), json!("high"));
        }),
        ("ServiceRequest", "ServiceRequest.priority high", |r| {
            r.insert("priority".into(), json!("high"));
        }),
        ("ServiceRequest", "ServiceRequest.intent removed", |r| {
            r.remove("intent");
        }),
        ("ServiceRequest", "ServiceRequest.subject removed", |r| {
            r.remove("subject");
        }),
        ("Appointment", "Appointment.status confirmed", |r| {
            r.insert("status".into(), json!("confirmed"));
        }),
        (
            "Appointment",
            "Appointment.participant.status removed",
            |r| {
                if let Some(p) = r["participant"][0].as_object_mut() {
                    p.remove("status");
                }
            },
        ),
        ("AuditEvent", "AuditEvent.recorded not an instant", |r| {
            r.insert("recorded".into(), json!("yesterday"));
        }),
        ("AuditEvent", "AuditEvent.agent.requestor removed", |r| {
            if let Some(a) = r["agent"][0].as_object_mut() {
                a.remove("requestor");
            }
        }),
        ("Provenance", "Provenance.signature.type removed", |r| {
            if let Some(s) = r["signature"][0].as_object_mut() {
                s.remove("type");
            }
        }),
        ("Provenance", "Provenance.target removed", |r| {
            r.remove("target");
        }),
        ("DiagnosticReport", "DiagnosticReport.status done", |r| {
            r.insert("status".into(), json!("done"));
        }),
        ("Consent", "Consent.scope removed", |r| {
            r.remove("scope");
        }),
        ("Appointment", "an Organization as a participant", |r| {
            r.insert(
                "participant".into(),
                json!([{
                    "actor": {"type": "Organization", "display": "Federal center"},
                    "status": "accepted",
                }]),
            );
        }),
        ("Task", "Task.owner pointing at the ServiceRequest", |r| {
            let focus = r["focus"].clone();
            r.insert("owner".into(), focus);
        }),
        ("Organization", "an element R4 does not have", |r| {
            r.insert("nickname".into(), json!("the district"));
        }),
        ("Communication", "Communication.sent a date in words", |r| {
            r.insert("sent".into(), json!("28 May 2026"));
        }),
    ];
    for (rtype, what, mutate) in cases {
        let mut broken = bundle.clone();
        let entry = broken["entry"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|e| e["resource"]["resourceType"] == *rtype)
            .unwrap();
        mutate(entry["resource"].as_object_mut().unwrap());
        let errors = r4_errors(&broken);
        assert!(!errors.is_empty(), "{what}: accepted as valid");
        assert!(
            errors.iter().any(|e| e.contains(rtype)),
            "{what}: errors do not name {rtype}: {errors:?}"
        );
    }
    let mut broken = bundle.clone();
    broken["type"] = json!("pile");
    assert!(!r4_errors(&broken).is_empty(), "Bundle.type pile");
    let mut dangling = bundle;
    dangling["entry"].as_array_mut().unwrap().remove(0);
    assert!(
        r4_errors(&dangling)
            .iter()
            .any(|e| e.contains("does not resolve")),
        "a reference to a removed Organization"
    );
}

#[test]
fn priority_follows_urgency() {
    for (urgency, code) in [
        (Urgency::Planned, "routine"),
        (Urgency::Urgent, "urgent"),
        (Urgency::Emergency, "stat"),
    ] {
        assert_eq!(priority_code(urgency), code);
        assert_eq!(urgency_from_priority(code), Some(urgency));
        let bundle = open(urgency, written_consent()).export();
        assert_valid(&bundle);
        assert_eq!(one(&bundle, "ServiceRequest")["priority"], code);
        assert_eq!(one(&bundle, "Task")["priority"], code);
    }
    assert_eq!(urgency_from_priority("asap"), Some(Urgency::Emergency));
    assert_eq!(urgency_from_priority("high"), None);
    assert_eq!(
        urgency_from_priority("STAT"),
        None,
        "FHIR codes are case-sensitive"
    );
}

#[test]
fn task_status_follows_the_workflow() {
    use Role::*;
    type Steps = fn(&mut Case);
    let scenarios: &[(Steps, &str, &str)] = &[
        (|_| {}, "requested", "active"),
        (
            |c| c.step(true, Coordinator, 1, Action::Receive),
            "received",
            "active",
        ),
        (
            |c| c.step(true, Coordinator, 1, Action::Accept),
            "accepted",
            "active",
        ),
        (
            |c| {
                c.step(true, Coordinator, 1, Action::Accept);
                c.step(true, Consultant, 2, Action::Start);
            },
            "in-progress",
            "active",
        ),
        (
            |c| {
                c.step(true, Coordinator, 1, Action::Accept);
                c.step(
                    true,
                    Consultant,
                    2,
                    Action::AskMore {
                        questions: "MRI".into(),
                    },
                );
            },
            "on-hold",
            "on-hold",
        ),
        (
            |c| {
                c.step(true, Coordinator, 1, Action::Accept);
                c.step(
                    true,
                    Consultant,
                    2,
                    Action::Conclude {
                        conclusion: [1; 32],
                    },
                );
            },
            "completed",
            "completed",
        ),
        (
            |c| {
                c.step(
                    true,
                    Coordinator,
                    1,
                    Action::Reject {
                        reason: "no capacity this week".into(),
                        forward: true,
                    },
                )
            },
            "rejected",
            "revoked",
        ),
        (
            |c| {
                c.step(
                    false,
                    Physician,
                    1,
                    Action::Cancel {
                        reason: "transferred".into(),
                    },
                )
            },
            "cancelled",
            "revoked",
        ),
        (
            |c| {
                c.step(
                    false,
                    Operator,
                    1,
                    Action::Fail {
                        reason: "deadline missed".into(),
                    },
                )
            },
            "failed",
            "revoked",
        ),
    ];
    for (steps, task_status, request_status) in scenarios {
        let mut case = open(Urgency::Planned, written_consent());
        steps(&mut case);
        assert_eq!(case.consultation.status.fhir_code(), *task_status);
        let bundle = case.export();
        assert_valid(&bundle);
        let task = one(&bundle, "Task");
        assert_eq!(task["status"], *task_status);
        assert_eq!(one(&bundle, "ServiceRequest")["status"], *request_status);
        if *task_status == "rejected" {
            assert_eq!(task["statusReason"]["text"], "no capacity this week");
            assert_eq!(task["executionPeriod"]["end"], json!(instant(at(1))));
        }
    }
    // A conclusion hash without the signed conclusion: no report, no output.
    let mut case = open(Urgency::Planned, written_consent());
    case.step(true, Coordinator, 1, Action::Accept);
    case.step(
        true,
        Consultant,
        2,
        Action::Conclude {
            conclusion: [1; 32],
        },
    );
    let bundle = case.export();
    assert!(resources(&bundle, "DiagnosticReport").is_empty());
    assert!(one(&bundle, "Task").get("output").is_none());
}

/// Empty and control-character strings and the largest timestamps still
/// give valid FHIR (FHIR strings are never empty and hold no controls).
#[test]
fn odd_values_still_export_valid_fhir() {
    let mut fed = TestFederation::new("fhir-odd");
    let district = fed.org(1, OrgLevel::District, "RU-VLG", &[]);
    let federal = fed.org(2, OrgLevel::Federal, "RU-MOW", &[]);
    let far = Timestamp::from_unix_millis(u64::MAX - 1);
    let farthest = Timestamp::from_unix_millis(u64::MAX);
    let request = ConsultationRequest {
        id: CID,
        requester: district.id(),
        consultant: federal.id(),
        specialty: Specialty::ALL[Specialty::ALL.len() - 1],
        urgency: Urgency::Emergency,
        created: far,
        consent: Consent::Given {
            by: " \u{0} ".into(),
            at: far,
            method: ConsentMethod::Oral {
                witness: String::new(),
            },
            document: None,
        },
        physician: "\u{1b}[31m".into(),
        escalated_from: None,
    };
    let mut consultation =
        Consultation::open(&workflow::request(&district.identity, request).unwrap()).unwrap();
    for (key, role, action) in [
        (&federal.identity, Role::Consultant, Action::Accept),
        (
            &federal.identity,
            Role::Consultant,
            Action::Note { text: "\n".into() },
        ),
        (
            &federal.identity,
            Role::Coordinator,
            Action::ProposeSlots {
                slots: vec![Slot {
                    start: far,
                    end: farthest,
                }],
            },
        ),
        (
            &district.identity,
            Role::Physician,
            Action::CancelAppointment {
                reason: "\t".into(),
            },
        ),
    ] {
        let step = consultation.step(key, role, "", far, action);
        consultation.apply(&step).unwrap();
    }
    let deadline = Deadline::compute(
        Urgency::Emergency,
        far,
        &federal.record(1).calendar,
        &Deadlines::default(),
    );
    let journal = vec![Journal::new().append(
        far,
        Some("\u{7}".into()),
        None,
        JournalAction::FailedLogin {
            user: String::new(),
        },
    )];
    let bundle = export_bundle(&ConsultationRecord {
        consultation: &consultation,
        extract: &CaseExtract {
            summary: " \u{0}\u{1b} ".into(),
            questions: "\t\u{7}?".into(),
        },
        requester_name: "",
        consultant_name: "\u{0}",
        deadline: Some(&deadline),
        conclusion: None,
        journal: &journal,
        files: &[],
    });
    assert_valid(&bundle);
    assert_eq!(
        one(&bundle, "Task")["authoredOn"],
        json!(jiff::Timestamp::MAX.to_string())
    );
}

#[test]
fn a_conclusion_that_does_not_verify_is_not_exported() {
    let mut case = full_case();
    // Signed by the requesting organization, not the consulting one.
    let forged = Signed::sign(
        &case.district.identity,
        &case
            .conclusion
            .as_ref()
            .unwrap()
            .decode_unverified()
            .unwrap(),
    );
    case.conclusion = Some(forged);
    let bundle = case.export();
    assert_valid(&bundle);
    assert!(resources(&bundle, "DiagnosticReport").is_empty());
}

#[test]
fn appointment_status_mapping() {
    use Role::*;
    let none = open(Urgency::Urgent, written_consent());
    assert!(resources(&none.export(), "Appointment").is_empty());

    let mut case = open(Urgency::Urgent, written_consent());
    case.step(true, Coordinator, 1, Action::Accept);
    case.step(
        true,
        Coordinator,
        2,
        Action::ProposeSlots {
            slots: vec![slot(3), slot(4)],
        },
    );
    let bundle = case.export();
    assert_valid(&bundle);
    let a = one(&bundle, "Appointment");
    assert_eq!(a["status"], "proposed");
    assert!(a.get("start").is_none());
    assert_eq!(a["requestedPeriod"].as_array().unwrap().len(), 2);
    assert_eq!(
        a["requestedPeriod"][1]["start"],
        json!(instant(slot(4).start))
    );
    assert_eq!(a["participant"][1]["status"], "needs-action");
    assert_eq!(a["created"], json!(instant(at(2))));

    case.step(false, Physician, 3, Action::ConfirmSlot { slot: slot(4) });
    let bundle = case.export();
    assert_valid(&bundle);
    let a = one(&bundle, "Appointment");
    assert_eq!(a["status"], "booked");
    assert_eq!(a["start"], json!(instant(slot(4).start)));
    assert_eq!(a["end"], json!(instant(slot(4).end)));
    assert_eq!(a["participant"][1]["status"], "accepted");

    let mut ended = case.clone_consultation();
    ended.step(
        false,
        Physician,
        4,
        Action::Cancel {
            reason: "transferred".into(),
        },
    );
    let bundle = ended.export();
    assert_valid(&bundle);
    let a = one(&bundle, "Appointment");
    assert_eq!(a["status"], "cancelled", "the consultation ended");
    assert_eq!(a["cancelationReason"]["text"], "transferred");

    case.step(
        false,
        Physician,
        4,
        Action::CancelAppointment {
            reason: "patient too ill to travel".into(),
        },
    );
    let bundle = case.export();
    assert_valid(&bundle);
    let a = one(&bundle, "Appointment");
    assert_eq!(a["status"], "cancelled");
    assert_eq!(a["cancelationReason"]["text"], "patient too ill to travel");
    assert_eq!(
        a["start"],
        json!(instant(slot(4).start)),
        "the booked time stays"
    );
    assert_eq!(a["participant"][1]["status"], "declined");

    for (appointment, status, expected) in [
        (Appointment::None, Status::InProgress, None),
        (
            Appointment::Proposed(vec![slot(1)]),
            Status::Accepted,
            Some("proposed"),
        ),
        (
            Appointment::Confirmed(slot(1)),
            Status::InProgress,
            Some("booked"),
        ),
        (
            Appointment::Confirmed(slot(1)),
            Status::Completed,
            Some("booked"),
        ),
        (
            Appointment::Cancelled,
            Status::InProgress,
            Some("cancelled"),
        ),
        (
            Appointment::Confirmed(slot(1)),
            Status::Failed,
            Some("cancelled"),
        ),
    ] {
        assert_eq!(appointment_status(&appointment, status), expected);
    }
}
