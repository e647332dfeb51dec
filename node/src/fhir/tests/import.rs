//! Import: hand-written requests, their variants, errors that name the
//! element, and input that is not a Bundle at all.

use super::*;

#[test]
fn imports_a_hand_written_request() {
    let target = target();
    let bundle = his_bundle(&target);
    // The fixture itself is valid FHIR R4, so the import is tested on
    // what a conformant system sends (and the validator accepts it).
    assert_valid(&bundle);

    let imported = import_service_request(&bundle).expect("imports");
    assert_eq!(
        imported,
        ImportedRequest {
            specialty: Specialty::Cardiology,
            urgency: Urgency::Emergency,
            target: Some(target),
            physician: "Dr. Anna Ivanova".into(),
            questions: "Is CRT-D indicated?\n\nWhich anticoagulation before the procedure?".into(),
            case_summary: "Heart failure NYHA III, EF 35% on echo\nAtrial fibrillation".into(),
            attachments: Vec::new(),
            identifier: Some("https://his.kirillov-crh.example/fhir/sid/order|42".into()),
            consent: Some(Consent::Given {
                // The Consent's performer is the Patient: not read.
                by: "the patient; recorded by Dr. Anna Ivanova".into(),
                at: Timestamp::from_unix_millis(
                    "2026-05-28T06:30:00Z"
                        .parse::<jiff::Timestamp>()
                        .unwrap()
                        .as_millisecond() as u64
                ),
                method: ConsentMethod::Electronic,
                document: None,
            }),
        }
    );
    let text = serde_json::to_string(&bundle).unwrap();
    assert_eq!(import_service_request_json(&text), Ok(imported));
}

#[test]
fn import_variants() {
    let target = target();
    // The Konsilium code alone; priority absent means routine; a
    // PractitionerRole with a display; no performer and no consent.
    let mut bundle = his_bundle(&target);
    let sr = bundle["entry"][0]["resource"].as_object_mut().unwrap();
    sr.insert(
        "code".into(),
        json!({"coding": [{"system": SPECIALTY_SYSTEM, "code": "neonatology"}]}),
    );
    sr.remove("priority");
    sr.remove("performer");
    sr.remove("supportingInfo");
    sr.insert(
        "requester".into(),
        json!({"reference": "#role", "display": "Dr. Olga Belova"}),
    );
    bundle["entry"].as_array_mut().unwrap().truncate(3);
    let imported = import_service_request(&bundle).expect("imports");
    assert_eq!(imported.specialty, Specialty::Neonatology);
    assert_eq!(imported.urgency, Urgency::Planned);
    assert_eq!(imported.target, None);
    assert_eq!(imported.physician, "Dr. Olga Belova");
    assert_eq!(imported.consent, None);

    // Contained PractitionerRole → contained Practitioner; performer as a
    // logical reference by identifier; priority asap.
    let mut bundle = his_bundle(&target);
    let sr = bundle["entry"][0]["resource"].as_object_mut().unwrap();
    sr.insert(
        "contained".into(),
        json!([
            {"resourceType": "Practitioner", "id": "p", "name": [{"text": "Dr. Ilya Orlov"}]},
            {"resourceType": "PractitionerRole", "id": "r", "practitioner": {"reference": "#p"}}
        ]),
    );
    sr.insert("requester".into(), json!({"reference": "#r"}));
    sr.insert(
        "performer".into(),
        json!([{"type": "Organization",
                "identifier": {"system": ORG_SYSTEM, "value": target.to_string()}}]),
    );
    sr.insert("priority".into(), json!("asap"));
    let imported = import_service_request(&bundle).expect("imports");
    assert_eq!(imported.physician, "Dr. Ilya Orlov");
    assert_eq!(imported.target, Some(target));
    assert_eq!(imported.urgency, Urgency::Emergency);

    // A date-only consent date counts from midnight UTC.
    let mut bundle = his_bundle(&target);
    bundle["entry"][4]["resource"]["dateTime"] = json!("2026-05-28");
    let Some(Consent::Given { at, .. }) = import_service_request(&bundle).unwrap().consent else {
        panic!("consent given")
    };
    assert_eq!(instant(at), "2026-05-28T00:00:00Z");
}

#[test]
fn import_errors_name_the_element() {
    let target = target();
    type Mutation = fn(&mut Value);
    let cases: &[(Mutation, &str, &str)] = &[
        (
            |b| {
                b["entry"][0]["resource"]
                    .as_object_mut()
                    .unwrap()
                    .remove("code");
            },
            "Bundle.entry[0].resource.code",
            "specialty",
        ),
        (
            |b| b["entry"][0]["resource"]["code"]["coding"][0]["code"] = json!("394582007x"),
            "Bundle.entry[0].resource.code.coding[0].code",
            "unknown code \"394582007x\"",
        ),
        (
            // Allergy and immunology exists, but not this SNOMED concept.
            |b| b["entry"][0]["resource"]["code"]["coding"][0]["code"] = json!("22298006"),
            "Bundle.entry[0].resource.code.coding[0].code",
            "SNOMED CT clinical specialty",
        ),
        (
            |b| {
                b["entry"][0]["resource"]["code"] = json!({"coding": [
                    {"system": "http://snomed.info/sct", "code": "394579002"},
                    {"system": SPECIALTY_SYSTEM, "code": "oncology"}
                ]})
            },
            "Bundle.entry[0].resource.code.coding[1]",
            "oncology",
        ),
        (
            |b| b["entry"][0]["resource"]["code"] = json!({"text": "cardiology"}),
            "Bundle.entry[0].resource.code.coding",
            "missing",
        ),
        (
            |b| b["entry"][0]["resource"]["priority"] = json!("high"),
            "Bundle.entry[0].resource.priority",
            "routine, urgent, asap or stat",
        ),
        (
            |b| b["entry"][0]["resource"]["priority"] = json!(3),
            "Bundle.entry[0].resource.priority",
            "expected a string",
        ),
        (
            |b| b["entry"][0]["resource"]["status"] = json!("revoked"),
            "Bundle.entry[0].resource.status",
            "active",
        ),
        (
            |b| {
                b["entry"][0]["resource"]
                    .as_object_mut()
                    .unwrap()
                    .remove("intent");
            },
            "Bundle.entry[0].resource.intent",
            "missing",
        ),
        (
            |b| {
                b["entry"][0]["resource"]
                    .as_object_mut()
                    .unwrap()
                    .remove("requester");
            },
            "Bundle.entry[0].resource.requester",
            "physician",
        ),
        (
            |b| b["entry"][0]["resource"]["requester"] = json!({"reference": "Organization/fcc"}),
            "Bundle.entry[0].resource.requester",
            "physician",
        ),
        (
            |b| b["entry"][3]["resource"]["identifier"][1]["value"] = json!("not-a-peer-id"),
            "Bundle.entry[3].resource.identifier[1].value",
            "not an organization id",
        ),
        (
            |b| {
                b["entry"][3]["resource"]["identifier"]
                    .as_array_mut()
                    .unwrap()
                    .remove(1);
            },
            "Bundle.entry[0].resource.performer",
            ORG_SYSTEM,
        ),
        (
            |b| b["entry"][4]["resource"]["status"] = json!("rejected"),
            "Bundle.entry[4].resource.status",
            "only an active consent",
        ),
        (
            |b| b["entry"][4]["resource"]["provision"]["type"] = json!("deny"),
            "Bundle.entry[4].resource.provision.type",
            "denied",
        ),
        (
            |b| {
                b["entry"][4]["resource"]
                    .as_object_mut()
                    .unwrap()
                    .remove("dateTime");
            },
            "Bundle.entry[4].resource.dateTime",
            "missing",
        ),
        (
            |b| b["entry"][4]["resource"]["dateTime"] = json!("28.05.2026"),
            "Bundle.entry[4].resource.dateTime",
            "not a FHIR dateTime",
        ),
        (
            |b| {
                b["entry"][4]["resource"]["extension"] =
                    json!([{"url": CONSENT_METHOD_EXTENSION, "valueCode": "telepathic"}])
            },
            "Bundle.entry[4].resource.extension[0].valueCode",
            "written, electronic or oral",
        ),
        (
            |b| {
                b["entry"][4]["resource"]["extension"] =
                    json!([{"url": OVERRIDE_REASON_EXTENSION, "valueString": "unconscious"}]);
                b["entry"][0]["resource"]["priority"] = json!("routine");
            },
            "Bundle.entry[0].resource.priority",
            "emergency override",
        ),
        (
            |b| {
                let second = b["entry"][0].clone();
                b["entry"].as_array_mut().unwrap().push(second);
            },
            "Bundle.entry[5].resource",
            "second ServiceRequest",
        ),
        (
            |b| {
                b["entry"].as_array_mut().unwrap().remove(0);
            },
            "Bundle.entry",
            "ServiceRequest",
        ),
        (
            |b| b["entry"][2]["resource"] = json!("Patient"),
            "Bundle.entry[2].resource",
            "expected an object",
        ),
    ];
    for (mutate, path, message) in cases {
        let mut bundle = his_bundle(&target);
        mutate(&mut bundle);
        let e = import_error(&bundle);
        assert_eq!(e.path(), *path, "{e}");
        let text = e.to_string();
        assert!(text.starts_with(path), "{text}");
        assert!(
            text.contains(message),
            "{text:?} does not mention {message:?}"
        );
    }
}

#[test]
fn import_refuses_non_bundles_and_garbage_without_panicking() {
    for garbage in [
        json!(null),
        json!(42),
        json!("Bundle"),
        json!([{"resourceType": "Bundle"}]),
        json!({}),
        json!({"resourceType": 7}),
        json!({"resourceType": "Patient", "id": "p"}),
        json!({"resourceType": "ServiceRequest", "status": "active"}),
    ] {
        assert!(
            matches!(import_error(&garbage), FhirError::NotABundle { .. }),
            "{garbage}"
        );
    }
    for text in ["", "{", "{\"resourceType\": \"Bundle\",}", "\u{0}", "[1, 2"] {
        assert!(matches!(
            import_service_request_json(text),
            Err(FhirError::NotJson(_))
        ));
    }
    assert!(matches!(
        import_error(&json!({"resourceType": "Bundle", "entry": 5})),
        FhirError::Invalid { .. }
    ));
    assert!(matches!(
        import_error(&json!({"resourceType": "Bundle", "type": "collection"})),
        FhirError::Missing { .. }
    ));
    // Every element of a valid request replaced by every kind of wrong
    // value: an error or a result, never a panic.
    let bundle = his_bundle(&target());
    let mut pointers = Vec::new();
    fn walk(v: &Value, at: String, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => m.iter().for_each(|(k, c)| {
                walk(c, format!("{at}/{k}"), out);
            }),
            Value::Array(a) => a.iter().enumerate().for_each(|(i, c)| {
                walk(c, format!("{at}/{i}"), out);
            }),
            _ => {}
        }
        out.push(at);
    }
    walk(&bundle, String::new(), &mut pointers);
    let replacements = [
        json!(null),
        json!(-1),
        json!(""),
        json!("#"),
        json!("urn:uuid:0"),
        json!([]),
        json!([null]),
        json!({}),
        json!({"reference": "#x"}),
    ];
    let mut outcomes = 0;
    for pointer in &pointers {
        for replacement in &replacements {
            let mut mutated = bundle.clone();
            match mutated.pointer_mut(pointer) {
                Some(slot) => *slot = replacement.clone(),
                None => continue,
            }
            let _ = import_service_request(&mutated);
            outcomes += 1;
        }
    }
    assert!(outcomes > 500, "{outcomes}");
}
