//! A hospital information system's FHIR referral: idempotent, complete,
//! and no patient name kept.

use super::*;
use konsilium_protocol::journal::Action as JournalAction;
use konsilium_protocol::workflow::ConsultationId;

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                found.push(path);
            }
        }
    }
    found
}

/// A referral as an independently written hospital information system
/// sends it: a FHIR R4 transaction Bundle with the reason for referral in
/// `reasonCode`, the question in `note`, the echo report as a PDF in a
/// DocumentReference under `supportingInfo`, and the Patient (named) as the
/// one who consented.
fn referral(target: &str, pdf: &[u8], patient: &str, question: &str) -> Value {
    use base64::Engine as _;
    let pdf = base64::engine::general_purpose::STANDARD.encode(pdf);
    let (given, family) = patient.split_once(' ').unwrap();
    let post = |url: &str| json!({"method": "POST", "url": url});
    json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:0d7a6f43-3c5e-4f8e-9a0b-2c1d3e4f5a61",
                "resource": {
                    "resourceType": "ServiceRequest",
                    "identifier": [{"system": "urn:oid:1.2.643.5.1.13.13.12.2.35.3391", "value": "REF-2026-0117"}],
                    "status": "active",
                    "intent": "order",
                    "priority": "urgent",
                    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "394579002"}]},
                    "subject": {"reference": "urn:uuid:6a1f0c55-8d2b-4b3e-9f7a-1e2d3c4b5a69"},
                    "requester": {"reference": "urn:uuid:9b8c7d6e-5f4a-4b3c-8d2e-1f0a9b8c7d6e"},
                    "performer": [{"type": "Organization",
                                   "identifier": {"system": "urn:konsilium:org", "value": target}}],
                    "reasonCode": [{"text": "Recurrent syncope, sinus pauses up to 4 s on Holter"}],
                    "note": [{"text": question}],
                    "supportingInfo": [
                        {"reference": "urn:uuid:4c3b2a19-0f8e-4d7c-9b6a-5f4e3d2c1b0a"},
                        {"reference": "urn:uuid:1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"}
                    ]
                },
                "request": post("ServiceRequest")
            },
            {
                "fullUrl": "urn:uuid:9b8c7d6e-5f4a-4b3c-8d2e-1f0a9b8c7d6e",
                "resource": {
                    "resourceType": "PractitionerRole",
                    "practitioner": {"reference": "urn:uuid:7e6d5c4b-3a29-4817-9605-f4e3d2c1b0a9"},
                    "code": [{"text": "Attending physician"}]
                },
                "request": post("PractitionerRole")
            },
            {
                "fullUrl": "urn:uuid:7e6d5c4b-3a29-4817-9605-f4e3d2c1b0a9",
                "resource": {
                    "resourceType": "Practitioner",
                    "name": [{"family": "Belova", "given": ["Olga"], "prefix": ["Dr."]}]
                },
                "request": post("Practitioner")
            },
            {
                "fullUrl": "urn:uuid:6a1f0c55-8d2b-4b3e-9f7a-1e2d3c4b5a69",
                "resource": {
                    "resourceType": "Patient",
                    "name": [{"family": family, "given": [given]}],
                    "gender": "female",
                    "birthDate": "1951-03-08"
                },
                "request": post("Patient")
            },
            {
                "fullUrl": "urn:uuid:4c3b2a19-0f8e-4d7c-9b6a-5f4e3d2c1b0a",
                "resource": {
                    "resourceType": "DocumentReference",
                    "status": "current",
                    "description": "Echocardiography report",
                    "subject": {"reference": "urn:uuid:6a1f0c55-8d2b-4b3e-9f7a-1e2d3c4b5a69"},
                    "content": [{"attachment": {"contentType": "application/pdf", "data": pdf}}]
                },
                "request": post("DocumentReference")
            },
            {
                "fullUrl": "urn:uuid:1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
                "resource": {
                    "resourceType": "Consent",
                    "status": "active",
                    "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                          "code": "patient-privacy"}]},
                    "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
                    "patient": {"reference": "urn:uuid:6a1f0c55-8d2b-4b3e-9f7a-1e2d3c4b5a69"},
                    "dateTime": "2026-06-02T08:15:00+03:00",
                    "performer": [{"reference": "urn:uuid:6a1f0c55-8d2b-4b3e-9f7a-1e2d3c4b5a69",
                                   "display": patient}],
                    "provision": {"type": "permit"}
                },
                "request": post("Consent")
            }
        ]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_his_referral_is_idempotent_complete_and_names_no_patient() {
    let tmp = tempfile::tempdir().unwrap();
    let (regional, federal) = regional_and_federal(tmp.path(), "Vologda regional hospital").await;
    let (base_r, task_r) = serve(
        &regional,
        vec![User::with_token("his-gateway", Role::Physician, "his")],
        &tmp.path().join("uploads-r"),
    )
    .await;
    let (base_f, task_f) = serve(
        &federal,
        vec![User::with_token(
            "coordinator Sidorova",
            Role::Coordinator,
            "coord-f",
        )],
        &tmp.path().join("uploads-f"),
    )
    .await;
    let client = Client::new();
    let at_r = Api {
        client: client.clone(),
        base: base_r,
    };
    let at_f = Api {
        client,
        base: base_f,
    };

    let patient = "Evdokiya Zhukovskaya-Trubetskaya";
    let question = "Is a dual-chamber pacemaker indicated, or an ILR first?";
    let pdf: Vec<u8> = b"%PDF-1.4\n% echo report: LVEF 55%, no structural disease\n"
        .iter()
        .copied()
        .chain((0..20_000u32).map(|i| (i % 241) as u8))
        .collect();
    let target = federal.org().to_string();
    let bundle = referral(&target, &pdf, patient, question);

    // Three identical posts (a HIS retrying after timeouts): one consultation.
    let url = format!("{}/fhir/ServiceRequest", at_r.base);
    let mut ids = Vec::new();
    let mut package = None;
    for attempt in 0..3 {
        let resp = at_r
            .client
            .post(&url)
            .bearer_auth("his")
            .json(&bundle)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let location = resp
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        let body: Value = resp.json().await.unwrap();
        let want = if attempt == 0 {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        assert_eq!(status, want, "attempt {attempt}: {body}");
        let id = body["id"].as_str().unwrap().to_owned();
        assert_eq!(location, Some(format!("/consultations/{id}")));
        if attempt == 0 {
            package = Some(body["package"].as_str().unwrap().to_owned());
        }
        ids.push(id);
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let id = ids[0].clone();
    // FHIR conditional create finds it too.
    let mut unidentified = bundle.clone();
    unidentified["entry"][0]["resource"]
        .as_object_mut()
        .unwrap()
        .remove("identifier");
    let resp = at_r
        .client
        .post(&url)
        .bearer_auth("his")
        .header(
            "If-None-Exist",
            "identifier=urn:oid:1.2.643.5.1.13.13.12.2.35.3391%7CREF-2026-0117",
        )
        .json(&unidentified)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["id"], id.as_str());
    // A different request under the same identifier is refused.
    let changed = referral(&target, &pdf, patient, "Is an ILR enough?");
    let refused = at_r.post("/fhir/ServiceRequest", "his", &changed).await;
    assert_problem(&refused, StatusCode::CONFLICT, &id);
    // Consent dated later than now (a wrong year) is refused, naming it.
    let mut future = referral(&target, &pdf, patient, "Is an ILR enough?");
    future["entry"][0]["resource"]["identifier"][0]["value"] = json!("REF-2026-0118");
    future["entry"][5]["resource"]["dateTime"] = json!("2062-06-02T08:15:00+03:00");
    let refused = at_r.post("/fhir/ServiceRequest", "his", &future).await;
    assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY, "2062-06-02");
    assert_eq!(refused.2["field"], "Consent.dateTime");
    let (_, _, list) = at_r.get("/consultations", "his").await;
    assert_eq!(list["consultations"].as_array().unwrap().len(), 1, "{list}");

    // The JSON API honours an Idempotency-Key header, or the body's field.
    let keyed = |key: &str| {
        at_r.client
            .post(format!("{}/consultations", at_r.base))
            .bearer_auth("his")
            .header("Idempotency-Key", key)
            .json(&new_request())
    };
    let mut json_ids = Vec::new();
    for attempt in 0..3 {
        let (status, _, body) = at_r.send(keyed("k-0001"), "his").await;
        let want = if attempt == 0 {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        assert_eq!(status, want, "{body}");
        json_ids.push(body["id"].as_str().unwrap().to_owned());
    }
    assert!(json_ids.iter().all(|i| *i == json_ids[0]), "{json_ids:?}");
    assert_ne!(json_ids[0], id);
    let mut other = new_request();
    other["questions"] = json!("Or an event recorder?");
    let refused = at_r
        .send(
            at_r.client
                .post(format!("{}/consultations", at_r.base))
                .bearer_auth("his")
                .header("Idempotency-Key", "k-0001")
                .json(&other),
            "his",
        )
        .await;
    assert_problem(&refused, StatusCode::CONFLICT, &json_ids[0]);
    let mut in_body = new_request();
    in_body["idempotency_key"] = json!("k-0001");
    let (status, _, body) = at_r.post("/consultations", "his", &in_body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], json_ids[0].as_str());
    let (_, _, list) = at_r.get("/consultations", "his").await;
    assert_eq!(list["consultations"].as_array().unwrap().len(), 2, "{list}");
    // Consent through the JSON API is recorded the same way: a role, and who recorded it.
    let (_, _, view) = at_r
        .get(&format!("/consultations/{}", json_ids[0]), "his")
        .await;
    assert_eq!(
        view["consent"]["by"],
        "the patient; recorded by his-gateway"
    );

    // At the consultant, each part is where it belongs.
    let seen = at_f.wait_status(&id, "coord-f", "requested").await;
    assert_eq!(
        seen["extract"]["summary"],
        "Recurrent syncope, sinus pauses up to 4 s on Holter"
    );
    assert_eq!(seen["extract"]["questions"], question);
    assert_eq!(seen["physician"], "Dr. Olga Belova");
    // The requester's journal names who entered it, not whom it names.
    let (entries, _) = regional.journal().await.unwrap();
    let created: Vec<_> = (entries.iter())
        .filter(|e| {
            matches!(&e.action,
            JournalAction::Create(c) if ConsultationId(c.id).to_string() == id)
        })
        .map(|e| (e.actor.as_deref(), e.role))
        .collect();
    assert_eq!(created, vec![(Some("his-gateway"), Some(Role::Physician))]);
    assert_eq!(
        seen["consent"]["by"],
        "the patient; recorded by Dr. Olga Belova"
    );
    assert_eq!(seen["consent"]["at"], "2026-06-02T05:15:00Z");
    // The PDF is a case file on both sides, downloadable as what it is.
    let listed = &seen["files"];
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{seen}");
    assert_eq!(listed[0]["title"], "Echocardiography report");
    assert_eq!(listed[0]["content_type"], "application/pdf");
    assert_eq!(listed[0]["size"], pdf.len());
    let href = listed[0]["href"].as_str().unwrap().to_owned();
    assert_eq!(href, format!("/consultations/{id}/files/0"));
    for (api, token) in [(&at_f, "coord-f"), (&at_r, "his")] {
        let resp = api
            .client
            .get(format!("{}{href}", api.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "application/pdf");
        assert!(resp.bytes().await.unwrap() == pdf, "the PDF intact");
    }
    let missing = at_f
        .get(&format!("/consultations/{id}/files/1"), "coord-f")
        .await;
    assert_problem(&missing, StatusCode::NOT_FOUND, "no file 1");
    let _ = package;
    // The consultant's export carries the request back, without the patient.
    let (status, _, exported) = at_f
        .get(&format!("/consultations/{id}/fhir"), "coord-f")
        .await;
    assert_eq!(status, StatusCode::OK);
    let text = exported.to_string();
    assert!(!text.contains("Zhukovskaya"), "{text}");
    let sr = exported["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["resourceType"] == "ServiceRequest")
        .unwrap();
    assert_eq!(sr["note"][0]["text"], question);
    assert_eq!(
        sr["reasonCode"][0]["text"],
        "Recurrent syncope, sinus pauses up to 4 s on Holter"
    );
    // Imported again, the export opens the same request with the same file.
    let (status, _, again) = at_r.post("/fhir/ServiceRequest", "his", &exported).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    let again_id = again["id"].as_str().unwrap().to_owned();
    assert_ne!(again_id, id);
    let (_, _, second) = at_r.get(&format!("/consultations/{again_id}"), "his").await;
    assert_eq!(second["extract"], seen["extract"]);
    assert_eq!(second["physician"], seen["physician"]);
    for key in ["title", "content_type", "size"] {
        assert_eq!(second["files"][0][key], seen["files"][0][key], "{key}");
    }
    let (status, _, second_export) = at_r
        .get(&format!("/consultations/{again_id}/fhir"), "his")
        .await;
    assert_eq!(status, StatusCode::OK);
    let document = |bundle: &Value| {
        bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"].clone())
            .find(|r| r["resourceType"] == "DocumentReference")
            .unwrap()["content"][0]["attachment"]["data"]
            .clone()
    };
    assert_eq!(document(&second_export), document(&exported));

    // Nothing either node stored names the patient.
    task_r.abort();
    task_f.abort();
    drop((at_r, at_f));
    shut_down([regional, federal]).await;
    for needle in [patient, "Zhukovskaya", "Evdokiya"] {
        let found = files_containing(tmp.path(), needle.as_bytes());
        assert!(found.is_empty(), "{needle:?} stored in {found:?}");
    }
    // The search can fail: the physician's name, which is meant to be kept, is found.
    assert!(!files_containing(tmp.path(), b"Olga Belova").is_empty());
}
