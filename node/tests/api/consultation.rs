//! A planned consultation requested, answered and acknowledged through the
//! API of both organizations.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_consultation_runs_through_the_api_of_both_nodes() {
    let tmp = tempfile::tempdir().unwrap();
    let (regional, federal) = regional_and_federal(tmp.path(), "Regional hospital").await;

    let (base_r, task_r) = serve(
        &regional,
        vec![
            User::with_token("Dr. Ivanova", Role::Physician, "phys-r"),
            User::with_token("coordinator Orlova", Role::Coordinator, "coord-r"),
        ],
        &tmp.path().join("uploads-r"),
    )
    .await;
    let (base_f, task_f) = serve(
        &federal,
        vec![
            User::with_token("coordinator Sidorova", Role::Coordinator, "coord-f"),
            User::with_token("Prof. Petrov", Role::Consultant, "cons-f"),
            User::with_token("Dr. Smirnov", Role::Physician, "phys-f"),
        ],
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

    // Only a physician requests.
    let refused = at_r.post("/consultations", "coord-r", &new_request()).await;
    assert_problem(&refused, StatusCode::FORBIDDEN, "physician");

    let (status, _, created) = at_r.post("/consultations", "phys-r", &new_request()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["recipient"], federal.org().to_string());
    assert_eq!(created["package"].as_str().unwrap().len(), 32);

    // The requesting side lists it; the status filter works.
    let (_, _, list) = at_r.get("/consultations?status=requested", "coord-r").await;
    let items = list["consultations"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(items[0]["id"], id.as_str());
    assert_eq!(items[0]["counterpart"], federal.org().to_string());
    let (_, _, list) = at_r.get("/consultations?status=completed", "coord-r").await;
    assert_eq!(list["consultations"], json!([]));
    let bad = at_r.get("/consultations?status=done", "coord-r").await;
    assert_problem(&bad, StatusCode::BAD_REQUEST, "done");

    // The request reaches the federal center; its coordinator registers and accepts.
    let seen = at_f.wait_status(&id, "coord-f", "requested").await;
    assert_eq!(seen["side"], "consulting");
    assert_eq!(seen["extract"]["questions"], "Pacemaker indicated?");
    assert!(seen["deadline_due"].is_string(), "{seen}");
    assert!(seen["time_left_seconds"].as_u64().unwrap() > 0);

    // Either side opens the video session before any appointment; the
    // sites connect; a second opening finds it open.
    let video = format!("/consultations/{id}/video");
    let (status, _, opening) = at_r.post(&video, "phys-r", &json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{opening}");
    assert_eq!(opening["consultation"], id.as_str());
    let connected = tokio::time::timeout(PATIENCE, async {
        loop {
            let view = federal.inspect(node::Inspect::Sessions).await.unwrap();
            if view["sessions"][0]["state"] == "connected" {
                return view;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let view = connected.await.expect("the sites connect");
    assert_eq!(view["sessions"][0]["peer"], regional.org().to_string());
    let again = at_r.post(&video, "phys-r", &json!({})).await;
    assert_problem(&again, StatusCode::CONFLICT, "exists already");

    // A physician of the consulting side may not accept.
    let refused = at_f.act(&id, "phys-f", json!({"action": "accept"})).await;
    assert_problem(&refused, StatusCode::FORBIDDEN, "may not accept");
    // A consultant may not do the coordinator's registration.
    let refused = at_f.act(&id, "cons-f", json!({"action": "receive"})).await;
    assert_problem(
        &refused,
        StatusCode::FORBIDDEN,
        "consultant of the consulting organization may not receive",
    );

    for (token, action, want) in [
        ("coord-f", "receive", "received"),
        ("coord-f", "accept", "accepted"),
        ("cons-f", "start", "in-progress"),
    ] {
        let (status, _, body) = at_f.act(&id, token, json!({"action": action})).await;
        assert_eq!(status, StatusCode::OK, "{action}: {body}");
        assert_eq!(body["status"], want);
    }
    // Inviting a further organization names one the directory certifies,
    // not yet in the consultation.
    let uncertified = konsilium_protocol::identity::IdentityKey::from_seed([9; 32]).org_id();
    for (organization, status, mentions) in [
        (
            "not-a-peer".to_owned(),
            StatusCode::BAD_REQUEST,
            "not an organization id",
        ),
        (
            regional.org().to_string(),
            StatusCode::CONFLICT,
            "already takes part",
        ),
        (
            uncertified.to_string(),
            StatusCode::CONFLICT,
            "not in the directory",
        ),
    ] {
        let body = json!({"action": "invite", "organization": organization});
        let refused = at_f.act(&id, "cons-f", body).await;
        assert_problem(&refused, status, mentions);
        assert_eq!(refused.2["field"], "organization", "{}", refused.2);
    }
    // The coordinator passes it to the consultant of the right profile; a consultant may not.
    let (status, _, body) = at_f
        .act(
            &id,
            "coord-f",
            json!({"action": "assign", "consultant": "Prof. Petrov"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let refused = at_f
        .act(
            &id,
            "cons-f",
            json!({"action": "assign", "consultant": "Prof. Petrov"}),
        )
        .await;
    assert_problem(&refused, StatusCode::FORBIDDEN, "may not assign");
    // The conclusion, written by the consultant.
    let (status, _, body) = at_f
        .act(
            &id,
            "cons-f",
            json!({"action": "conclude", "conclusion": {
                "diagnosis": "Sick sinus syndrome",
                "recommendations": "Dual-chamber pacemaker",
                "treatment_plan": "Implantation within 2 weeks",
                "further_studies": "Holter monitoring after implantation"
            }}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "completed");
    // A step that no longer fits the state.
    let late = at_f.act(&id, "cons-f", json!({"action": "start"})).await;
    assert_problem(&late, StatusCode::CONFLICT, "completed");

    // The requesting physician reads the conclusion and acknowledges it.
    let done = at_r.wait_status(&id, "phys-r", "completed").await;
    assert_eq!(done["conclusion"]["diagnosis"], "Sick sinus syndrome");
    assert_eq!(done["conclusion"]["authors"], json!(["Prof. Petrov"]));
    let (status, _, body) = at_r
        .act(&id, "phys-r", json!({"action": "acknowledge"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Both sides end with the same, acknowledged, completed history.
    let acknowledged = tokio::time::timeout(PATIENCE, async {
        loop {
            let (_, _, v) = at_f.get(&format!("/consultations/{id}"), "cons-f").await;
            if v["acknowledged"] == true {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the acknowledgement reached the federal center");
    let (_, _, mine) = at_r.get(&format!("/consultations/{id}"), "phys-r").await;
    assert_eq!(mine["status"], "completed");
    assert_eq!(acknowledged["status"], "completed");
    assert_eq!(mine["history"], acknowledged["history"]);
    let steps: Vec<(&str, &str, &str)> = mine["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["action"].as_str().unwrap(),
                h["role"].as_str().unwrap(),
                h["user"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("receive", "coordinator", "coordinator Sidorova"),
            ("accept", "coordinator", "coordinator Sidorova"),
            ("start", "consultant", "Prof. Petrov"),
            ("assign", "coordinator", "coordinator Sidorova"),
            ("conclude", "consultant", "Prof. Petrov"),
            ("acknowledge", "physician", "Dr. Ivanova"),
        ]
    );
    assert_eq!(mine["history"][0]["seq"], 1);
    assert_eq!(mine["history"][0]["actor"], federal.org().to_string());

    // The FHIR export, from either side.
    for (api, token) in [(&at_r, "phys-r"), (&at_f, "coord-f")] {
        let (status, kind, bundle) = api.get(&format!("/consultations/{id}/fhir"), token).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(kind, "application/fhir+json");
        assert_eq!(bundle["resourceType"], "Bundle");
        assert!(
            bundle["entry"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["resource"]["resourceType"] == "Task"),
            "{bundle}"
        );
    }
    let missing = at_r
        .get(&format!("/consultations/{}/fhir", "0".repeat(32)), "phys-r")
        .await;
    assert_problem(&missing, StatusCode::NOT_FOUND, "not known");

    // A hospital system's FHIR request opens a consultation too: the export
    // of an open request names the same specialty, performer and consent.
    let (status, _, second) = at_r.post("/consultations", "phys-r", &new_request()).await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    let (_, _, bundle) = at_r
        .get(
            &format!("/consultations/{}/fhir", second["id"].as_str().unwrap()),
            "phys-r",
        )
        .await;
    let (status, _, imported) = at_r
        .post("/fhir/ServiceRequest?min_level=federal", "phys-r", &bundle)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{imported}");
    assert_eq!(imported["recipient"], federal.org().to_string());
    assert_ne!(imported["id"], second["id"]);
    let not_fhir = at_r
        .post(
            "/fhir/ServiceRequest",
            "phys-r",
            &json!({"resourceType": "Patient"}),
        )
        .await;
    assert_problem(&not_fhir, StatusCode::UNPROCESSABLE_ENTITY, "Bundle");

    // A request with an attachment, uploaded as multipart and streamed to a
    // temporary file, arrives sealed and opens intact at the consultant.
    let ecg: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let part = |name: &str, json: &Value| {
        (
            name.to_owned(),
            reqwest::multipart::Part::text(json.to_string())
                .mime_str("application/json")
                .unwrap(),
        )
    };
    let (name, request_part) = part("request", &new_request());
    let form = reqwest::multipart::Form::new()
        .part(name, request_part)
        .part(
            "attachment",
            reqwest::multipart::Part::bytes(ecg.clone()).file_name("ecg.bin"),
        );
    let url = format!("{}/consultations", at_r.base);
    let (status, _, uploaded) = at_r
        .send(at_r.client.post(&url).multipart(form), "phys-r")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{uploaded}");
    let upload_id = uploaded["id"].as_str().unwrap().to_owned();
    assert_eq!(
        std::fs::read_dir(tmp.path().join("uploads-r"))
            .unwrap()
            .count(),
        0,
        "the temporary file is gone once sealed"
    );
    at_f.wait_status(&upload_id, "coord-f", "requested").await;
    let package = uploaded["package"].as_str().unwrap();
    let mut id_bytes = [0u8; 16];
    for (i, b) in id_bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(&package[2 * i..2 * i + 2], 16).unwrap();
    }
    let out = tmp.path().join("ecg.bin");
    let opened = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Ok(n) = federal
                .open_attachment(PackageId(id_bytes), 0, out.clone())
                .await
            {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the attachment opens at the consultant");
    assert_eq!(opened, ecg.len() as u64);
    assert!(std::fs::read(&out).unwrap() == ecg);
    // A multipart body without its request part.
    let form = reqwest::multipart::Form::new()
        .part("attachment", reqwest::multipart::Part::bytes(vec![1, 2, 3]));
    let no_request = at_r
        .send(at_r.client.post(&url).multipart(form), "phys-r")
        .await;
    assert_problem(&no_request, StatusCode::BAD_REQUEST, "request");

    let (_, _, list) = at_r.get("/consultations", "phys-r").await;
    let all = list["consultations"].as_array().unwrap().clone();
    assert_eq!(all.len(), 4);
    assert_eq!(list["next"], Value::Null, "one page holds them");
    // A page at a time, newest first, each page starting after the last
    // (compared by id: the time left moves on between two listings).
    let ids = |page: &[Value]| -> Vec<String> {
        (page.iter())
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, _, first) = at_r.get("/consultations?limit=3", "phys-r").await;
    assert_eq!(
        ids(first["consultations"].as_array().unwrap()),
        ids(&all[..3])
    );
    let next = first["next"].as_str().unwrap();
    assert_eq!(next, all[2]["id"].as_str().unwrap());
    let (_, _, second) = at_r
        .get(&format!("/consultations?limit=3&after={next}"), "phys-r")
        .await;
    assert_eq!(
        ids(second["consultations"].as_array().unwrap()),
        ids(&all[3..])
    );
    assert_eq!(second["next"], Value::Null);
    let too_many = at_r.get("/consultations?limit=1001", "phys-r").await;
    assert_problem(&too_many, StatusCode::BAD_REQUEST, "between 1 and 1000");
    let unknown = (at_r.get(
        &format!("/consultations?after={}", "0".repeat(32)),
        "phys-r",
    ))
    .await;
    assert_problem(&unknown, StatusCode::BAD_REQUEST, "first page");
    // Every read of a consultation through the API is journaled with its reader.
    let (entries, _) = federal.journal().await.unwrap();
    assert!(
        entries.iter().any(|e| matches!(
            e.action,
            konsilium_protocol::journal::Action::Open { .. }
        ) && e.actor.is_some()),
        "reads journaled"
    );

    task_r.abort();
    task_f.abort();
    drop((at_r, at_f));
    shut_down([regional, federal]).await;
}
