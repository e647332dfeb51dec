//! Where the elements of a request land: reason, questions and documents,
//! who consented (never by name), practitioners, the request fingerprint.

use super::*;

#[test]
fn import_reads_reason_questions_and_documents_where_fhir_puts_them() {
    let target = target();
    let pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n".to_vec();
    let mut bundle = his_bundle(&target);
    bundle["entry"][0]["resource"]["supportingInfo"] = json!([
        {"reference": "Consent/consent-7"},
        {"reference": "DocumentReference/echo", "type": "DocumentReference"},
        {"reference": "Binary/ecg"},
        {"reference": "Observation/bp"}
    ]);
    bundle["entry"][0]["resource"]["reasonReference"] =
        json!([{"reference": "Condition/hf"}, {"display": "Syncope"}]);
    let entries = bundle["entry"].as_array_mut().unwrap();
    entries.push(json!({
        "fullUrl": "https://his.kirillov-crh.example/fhir/DocumentReference/echo",
        "resource": {
            "resourceType": "DocumentReference",
            "id": "echo",
            "status": "current",
            "description": "Echocardiography report",
            "content": [{"attachment": {
                "contentType": "application/pdf",
                "data": BASE64.encode(&pdf),
            }}]
        }
    }));
    entries.push(json!({
        "fullUrl": "https://his.kirillov-crh.example/fhir/Binary/ecg",
        "resource": {"resourceType": "Binary", "id": "ecg",
                     "contentType": "application/octet-stream", "data": BASE64.encode([1u8, 2, 3])}
    }));
    entries.push(json!({
        "fullUrl": "https://his.kirillov-crh.example/fhir/Condition/hf",
        "resource": {"resourceType": "Condition", "id": "hf",
                     "code": {"text": "Chronic heart failure"},
                     "subject": {"reference": "Patient/p-7"}}
    }));
    entries.push(json!({
        "fullUrl": "https://his.kirillov-crh.example/fhir/Observation/bp",
        "resource": {"resourceType": "Observation", "id": "bp", "status": "final",
                     "code": {"text": "Blood pressure"}}
    }));
    assert_valid(&bundle);
    let imported = import_service_request(&bundle).expect("imports");
    assert_eq!(
        imported.case_summary,
        "Heart failure NYHA III, EF 35% on echo\nAtrial fibrillation\n\
         Chronic heart failure\nSyncope"
    );
    assert_eq!(
        imported.questions,
        "Is CRT-D indicated?\n\nWhich anticoagulation before the procedure?"
    );
    assert_eq!(
        imported.attachments,
        vec![
            ImportedAttachment {
                title: Some("Echocardiography report".into()),
                content_type: "application/pdf".into(),
                data: pdf,
            },
            ImportedAttachment {
                title: None,
                content_type: "application/octet-stream".into(),
                data: vec![1, 2, 3],
            },
        ]
    );

    // The explicit extension wins over note.
    bundle["entry"][0]["resource"]["extension"] =
        json!([{"url": QUESTIONS_EXTENSION, "valueString": "CRT-D: yes or no?"}]);
    assert_eq!(
        import_service_request(&bundle).unwrap().questions,
        "CRT-D: yes or no?"
    );

    // The specialty may come from performerType alone.
    let sr = bundle["entry"][0]["resource"].as_object_mut().unwrap();
    sr.remove("code");
    sr.insert(
        "performerType".into(),
        json!({"coding": [{"system": SNOMED, "code": "394579002"}]}),
    );
    assert_eq!(
        import_service_request(&bundle).unwrap().specialty,
        Specialty::Cardiology
    );

    // A document whose bytes are not in the Bundle cannot be sealed.
    bundle["entry"][5]["resource"]["content"][0]["attachment"] =
        json!({"contentType": "application/pdf", "url": "https://his.example/docs/1.pdf"});
    let e = import_error(&bundle);
    assert_eq!(
        e.path(),
        "Bundle.entry[5].resource.content[0].attachment.data",
        "{e}"
    );
    bundle["entry"][5]["resource"]["content"][0]["attachment"]["data"] = json!("not base64!");
    let e = import_error(&bundle);
    assert!(
        matches!(&e, FhirError::Invalid { path, .. } if path.ends_with("attachment.data")),
        "{e}"
    );
    bundle["entry"][0]["resource"]["supportingInfo"][1] =
        json!({"reference": "DocumentReference/missing", "type": "DocumentReference"});
    let e = import_error(&bundle);
    assert_eq!(
        e.path(),
        "Bundle.entry[0].resource.supportingInfo[1].reference",
        "{e}"
    );
}

#[test]
fn a_consent_given_by_the_patient_records_no_name() {
    let target = target();
    let mut bundle = his_bundle(&target);
    // The Patient named by reference, by display, and by contained resource.
    for performer in [
        json!({"reference": "Patient/p-7"}),
        json!({"reference": "Patient/p-7", "display": "Ivan Petrovich Sidorov"}),
        json!({"type": "Patient", "display": "Ivan Petrovich Sidorov"}),
        json!({"display": "Ivan Petrovich Sidorov"}),
        Value::Null,
    ] {
        // Null: no performer at all (it is optional in R4).
        bundle["entry"][4]["resource"]["performer"] = json!([performer]);
        if performer.is_null() {
            let consent = bundle["entry"][4]["resource"].as_object_mut().unwrap();
            consent.remove("performer");
        }
        let imported = import_service_request(&bundle).expect("imports");
        let Some(Consent::Given { by, .. }) = &imported.consent else {
            panic!("consent given")
        };
        assert_eq!(by, "the patient; recorded by Dr. Anna Ivanova");
        assert!(!format!("{imported:?}").contains("Sidorov"), "{imported:?}");
    }
    // A representative is recorded as one, and exported as one.
    bundle["entry"][4]["resource"]["performer"] =
        json!([{"type": "RelatedPerson", "display": "Maria Sidorova (daughter)"}]);
    let imported = import_service_request(&bundle).expect("imports");
    let consent = imported.consent.clone().unwrap();
    let Consent::Given { by, .. } = &consent else {
        panic!("consent given")
    };
    assert_eq!(
        by,
        "the patient's legal representative; recorded by Dr. Anna Ivanova"
    );
    let case = open(Urgency::Urgent, consent.clone());
    let exported = case.export();
    assert_valid(&exported);
    assert_eq!(
        one(&exported, "Consent")["performer"][0]["type"],
        "RelatedPerson"
    );
    assert_eq!(
        import_service_request(&exported).unwrap().consent,
        Some(consent)
    );

    // The Patient is never taken for the requesting physician.
    bundle["entry"][0]["resource"]["requester"] =
        json!({"reference": "Patient/p-7", "display": "Dr. Who"});
    let e = import_error(&bundle);
    assert_eq!(e.path(), "Bundle.entry[0].resource.requester", "{e}");
    assert!(e.to_string().contains("Patient"), "{e}");
}

#[test]
fn who_asked_and_who_answered_are_practitioners_with_roles() {
    let case = full_case();
    let bundle = case.export();
    assert_valid(&bundle);
    let resources: Vec<&Value> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .collect();
    let by_url: HashMap<String, &Value> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["fullUrl"].as_str().unwrap().to_owned(), &e["resource"]))
        .collect();
    let roles: Vec<(String, String, String)> = resources
        .iter()
        .filter(|r| r["resourceType"] == "PractitionerRole")
        .map(|r| {
            let practitioner = by_url[r["practitioner"]["reference"].as_str().unwrap()];
            let org = by_url[r["organization"]["reference"].as_str().unwrap()];
            (
                practitioner["name"][0]["text"].as_str().unwrap().to_owned(),
                r["code"][0]["coding"][0]["code"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                org["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for want in [
        (
            "Dr. Anna Ivanova",
            "physician",
            "Kirillov central district hospital",
        ),
        ("Prof. Petrov", "consultant", "Federal center of cardiology"),
        (
            "coordinator Orlova",
            "coordinator",
            "Federal center of cardiology",
        ),
    ] {
        assert!(
            roles
                .iter()
                .any(|(n, r, o)| (n.as_str(), r.as_str(), o.as_str()) == want),
            "{want:?} in {roles:?}"
        );
    }
    // The conclusion names its authors by their PractitionerRole.
    let report = one(&bundle, "DiagnosticReport");
    let interpreter = report["resultsInterpreter"][0]["reference"]
        .as_str()
        .unwrap();
    assert_eq!(by_url[interpreter]["resourceType"], "PractitionerRole");
    // Every signed step of the consulting side names its signer's PractitionerRole.
    for provenance in resources
        .iter()
        .filter(|r| r["resourceType"] == "Provenance")
    {
        let who = &provenance["agent"][0]["who"];
        if let Some(reference) = who["reference"].as_str()
            && who["type"] == "PractitionerRole"
        {
            assert_eq!(by_url[reference]["resourceType"], "PractitionerRole");
        }
    }
    assert!(
        resources.iter().any(|r| r["resourceType"] == "Provenance"
            && r["agent"][0]["who"]["type"] == "PractitionerRole"
            && r["agent"][0]["who"]["display"] == "Prof. Petrov"),
        "the consultant's steps name their PractitionerRole"
    );
    // The requester reads back through PractitionerRole → Practitioner, even
    // without the display.
    let mut stripped = open(Urgency::Urgent, written_consent()).export();
    for entry in stripped["entry"].as_array_mut().unwrap() {
        let r = &mut entry["resource"];
        if r["resourceType"] == "ServiceRequest" {
            r["requester"].as_object_mut().unwrap().remove("display");
        }
        if r["resourceType"] == "PractitionerRole" {
            r["practitioner"].as_object_mut().unwrap().remove("display");
        }
    }
    assert_eq!(
        import_service_request(&stripped).unwrap().physician,
        "Dr. Anna Ivanova"
    );
}

#[test]
fn the_fingerprint_is_the_request_content_not_its_wrapping() {
    let target = target();
    let bundle = his_bundle(&target);
    let first = import_service_request(&bundle).unwrap();
    let mut rewrapped = bundle.clone();
    rewrapped["id"] = json!("another-bundle-id");
    rewrapped["timestamp"] = json!("2026-05-28T10:00:00+03:00");
    rewrapped["entry"].as_array_mut().unwrap().swap(1, 3);
    assert_eq!(
        import_service_request(&rewrapped).unwrap().fingerprint(),
        first.fingerprint()
    );
    let mut changed = bundle.clone();
    changed["entry"][0]["resource"]["note"][0]["text"] = json!("Is CRT-P enough?");
    let changed = import_service_request(&changed).unwrap();
    assert_eq!(changed.identifier, first.identifier);
    assert_ne!(changed.fingerprint(), first.fingerprint());
}
