//! The HTTP API, driven over loopback against real nodes: a consultation
//! requested, answered and acknowledged through the API of both
//! organizations, and the API's refusals as RFC 9457 problem documents.

#![cfg(feature = "local-federation")]

use konsilium_node::federation::{LocalFederation, OrgSpec, wait};
use konsilium_node::http::{self as api, ApiConfig, User};
use konsilium_node::node::{self, NodeHandle};
use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::journal::Role;
use konsilium_protocol::seal::PackageId;
use konsilium_protocol::specialty::Specialty;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(60);

async fn serve(
    node: &Arc<NodeHandle>,
    users: Vec<User>,
    uploads: &std::path::Path,
) -> (String, tokio::task::JoinHandle<()>) {
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    std::fs::create_dir_all(uploads).unwrap();
    let config = ApiConfig {
        listen,
        users,
        upload_dir: Some(uploads.to_owned()),
    };
    let (addr, task) = api::serve(node.clone(), config).await.unwrap();
    assert!(addr.ip().is_loopback());
    (format!("http://{addr}"), task)
}

struct Api {
    client: Client,
    base: String,
}

/// Checks a response against the API's own OpenAPI document: the path,
/// method and status must be documented (an undocumented path must answer
/// with a problem document), and a JSON body must validate against the
/// schema documented for that status and media type.
fn check_against_document(method: &str, path: &str, status: StatusCode, kind: &str, body: &Value) {
    let doc = api::openapi_document();
    let media = kind.split(';').next().unwrap_or("").trim();
    let template = doc["paths"].as_object().unwrap().keys().find(|t| {
        let (a, b): (Vec<&str>, Vec<&str>) = (t.split('/').collect(), path.split('/').collect());
        a.len() == b.len()
            && a.iter()
                .zip(&b)
                .all(|(t, p)| (t.starts_with('{') && !p.is_empty()) || t == p)
    });
    let schema = match template {
        None => {
            assert_eq!(
                media, "application/problem+json",
                "{method} {path}: undocumented path"
            );
            json!({"$ref": "#/components/schemas/Problem"})
        }
        Some(template) => {
            let op = &doc["paths"][template][method.to_ascii_lowercase()];
            if op.is_null() {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {template} undocumented"
                );
                json!({"$ref": "#/components/schemas/Problem"})
            } else {
                let response = &op["responses"][status.as_str()];
                assert!(
                    !response.is_null(),
                    "{method} {template}: status {status} is not in the document"
                );
                if body.is_null() || !media.contains("json") {
                    return;
                }
                let schema = &response["content"][media]["schema"];
                assert!(
                    !schema.is_null(),
                    "{method} {template} {status}: media type {media} is not in the document"
                );
                schema.clone()
            }
        }
    };
    let mut root = schema;
    root["components"] = doc["components"].clone();
    let validator = jsonschema::draft202012::new(&root).expect("the document's schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {status}: the response contradicts the OpenAPI document:\n{}\n{body}",
        errors.join("\n")
    );
}

impl Api {
    async fn send(&self, req: reqwest::RequestBuilder, token: &str) -> (StatusCode, String, Value) {
        let request = req.bearer_auth(token).build().unwrap();
        let method = request.method().as_str().to_owned();
        let path = request.url().path().to_owned();
        let resp = self.client.execute(request).await.unwrap();
        let status = resp.status();
        let kind = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        check_against_document(&method, &path, status, &kind, &body);
        (status, kind, body)
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, String, Value) {
        self.send(self.client.get(format!("{}{path}", self.base)), token)
            .await
    }

    async fn post(&self, path: &str, token: &str, body: &Value) -> (StatusCode, String, Value) {
        self.send(
            self.client.post(format!("{}{path}", self.base)).json(body),
            token,
        )
        .await
    }

    async fn post_raw(&self, path: &str, token: &str, body: &str) -> (StatusCode, String, Value) {
        self.send(
            self.client
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/json")
                .body(body.to_owned()),
            token,
        )
        .await
    }

    async fn act(&self, id: &str, token: &str, body: Value) -> (StatusCode, String, Value) {
        self.post(&format!("/consultations/{id}/actions"), token, &body)
            .await
    }

    /// Polls until the consultation is known here with status `want`.
    async fn wait_status(&self, id: &str, token: &str, want: &str) -> Value {
        let path = format!("/consultations/{id}");
        let found = tokio::time::timeout(PATIENCE, async {
            loop {
                let (status, _, body) = self.get(&path, token).await;
                if status == StatusCode::OK && body["status"] == want {
                    return body;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("consultation {id} did not become {want} at {}", self.base))
    }
}

fn assert_problem(got: &(StatusCode, String, Value), status: StatusCode, mentions: &str) {
    let (code, kind, body) = got;
    assert_eq!(*code, status, "{body}");
    assert_eq!(kind, "application/problem+json", "{body}");
    assert_eq!(body["status"], status.as_u16(), "{body}");
    for member in ["type", "title", "detail"] {
        assert!(body[member].is_string(), "{member} in {body}");
    }
    assert!(
        body["detail"].as_str().unwrap().contains(mentions),
        "{mentions:?} in {body}"
    );
}

fn new_request() -> Value {
    json!({
        "specialty": "cardiology",
        "min_level": "federal",
        "urgency": "planned",
        "consent": {"by": "the patient", "method": "written"},
        "summary": "62-year-old, recurrent syncope",
        "questions": "Pacemaker indicated?"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_consultation_runs_through_the_api_of_both_nodes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let r = fed.enrol(OrgSpec::new(
        "Regional hospital",
        OrgLevel::Regional,
        "RU-VLG",
        &[],
    ));
    let f = fed.enrol(OrgSpec::new(
        "Federal cardiology center",
        OrgLevel::Federal,
        "RU-MOW",
        &[Specialty::Cardiology],
    ));
    let regional = Arc::new(node::start(r.setup(vec![], vec![])).await.unwrap());
    let ra = wait::listen_addr(&regional, PATIENCE).await.unwrap();
    let federal = Arc::new(node::start(f.setup(vec![ra], vec![])).await.unwrap());
    wait::converged(&[&regional, &federal], 2, PATIENCE)
        .await
        .unwrap();

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
    assert_eq!(list["consultations"].as_array().unwrap().len(), 4);
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
    for n in [regional, federal] {
        if let Ok(n) = Arc::try_unwrap(n) {
            n.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_with_problem_documents() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let m = fed.enrol(OrgSpec::new(
        "Regional hospital",
        OrgLevel::Regional,
        "RU-VLG",
        &[],
    ));
    let n = Arc::new(node::start(m.setup(vec![], vec![])).await.unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr, task) = api::serve_until(
        n.clone(),
        ApiConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            users: vec![User::with_token("Dr. Ivanova", Role::Physician, "phys")],
            upload_dir: None,
        },
        async {
            let _ = stopped.await;
        },
    )
    .await
    .unwrap();
    let base = format!("http://{addr}");
    let api = Api {
        client: Client::new(),
        base,
    };

    // No token, a wrong token, a wrong scheme.
    let resp = api
        .client
        .get(format!("{}/consultations", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().contains_key("www-authenticate"));
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("missing"),
        "{body}"
    );
    let wrong = api.get("/consultations", "not-a-token").await;
    assert_problem(&wrong, StatusCode::UNAUTHORIZED, "not valid");
    // The failed login is a security event in the journal.
    let (entries, _) = n.journal().await.unwrap();
    assert!(
        entries.iter().any(|e| matches!(
            e.action,
            konsilium_protocol::journal::Action::FailedLogin { .. }
        )),
        "failed login journaled"
    );
    let resp = api
        .client
        .get(format!("{}/consultations", api.base))
        .header("authorization", "Basic cGh5czpwaHlz")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");

    // Neither consent nor an emergency override.
    let mut body = new_request();
    body.as_object_mut().unwrap().remove("consent");
    let no_consent = api.post("/consultations", "phys", &body).await;
    assert_problem(&no_consent, StatusCode::UNPROCESSABLE_ENTITY, "consent");
    assert_eq!(no_consent.2["field"], "consent");
    // An override outside an emergency.
    body["emergency_override"] = json!({"reason": "unconscious"});
    let not_emergency = api.post("/consultations", "phys", &body).await;
    assert_problem(&not_emergency, StatusCode::UNPROCESSABLE_ENTITY, "emergenc");

    // Malformed JSON, unknown fields, wrong types, bad values.
    let malformed = api
        .post_raw("/consultations", "phys", r#"{"specialty": "cardiology", "#)
        .await;
    assert_problem(&malformed, StatusCode::BAD_REQUEST, "EOF");
    let mut extra = new_request();
    extra["patient_name"] = json!("Ivanov");
    let unknown = api.post("/consultations", "phys", &extra).await;
    assert_problem(&unknown, StatusCode::BAD_REQUEST, "patient_name");
    let mut typed = new_request();
    typed["consent"]["by"] = json!(42);
    let wrong_type = api.post("/consultations", "phys", &typed).await;
    assert_problem(&wrong_type, StatusCode::BAD_REQUEST, "consent.by");
    assert_eq!(wrong_type.2["field"], "consent.by");
    let mut named = new_request();
    named["consent"]["by"] = json!("Ivan Petrovich Sidorov");
    let named = api.post("/consultations", "phys", &named).await;
    assert_problem(&named, StatusCode::BAD_REQUEST, "never named");
    assert_eq!(named.2["field"], "consent.by");
    let mut slug = new_request();
    slug["specialty"] = json!("astrology");
    let bad_slug = api.post("/consultations", "phys", &slug).await;
    assert_problem(&bad_slug, StatusCode::BAD_REQUEST, "astrology");
    assert_eq!(bad_slug.2["field"], "specialty");
    let mut level = new_request();
    level["min_level"] = json!(9);
    assert_problem(
        &api.post("/consultations", "phys", &level).await,
        StatusCode::BAD_REQUEST,
        "min_level",
    );
    let mut target = new_request();
    target["target"] = json!("not-an-org");
    assert_problem(
        &api.post("/consultations", "phys", &target).await,
        StatusCode::BAD_REQUEST,
        "target",
    );

    // No one offers cardiology in a one-node federation.
    assert_problem(
        &api.post("/consultations", "phys", &new_request()).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "offers",
    );

    // Actions on unknown consultations, and malformed actions.
    let unknown_id = "ab".repeat(16);
    assert_problem(
        &api.act(&unknown_id, "phys", json!({"action": "acknowledge"}))
            .await,
        StatusCode::NOT_FOUND,
        "not known",
    );
    assert_problem(
        &api.get("/consultations/xyz", "phys").await,
        StatusCode::NOT_FOUND,
        "xyz",
    );
    assert_problem(
        &api.act(&unknown_id, "phys", json!({"action": "teleport"}))
            .await,
        StatusCode::BAD_REQUEST,
        "teleport",
    );
    let missing = api
        .act(&unknown_id, "phys", json!({"action": "cancel"}))
        .await;
    assert_problem(&missing, StatusCode::BAD_REQUEST, "reason");
    assert_eq!(missing.2["field"], "reason");
    assert_problem(
        &api.get("/nowhere", "phys").await,
        StatusCode::NOT_FOUND,
        "openapi",
    );
    let resp = api
        .client
        .delete(format!("{}/consultations", api.base))
        .bearer_auth("phys")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);

    // The OpenAPI description lists every path.
    let (status, _, doc) = api.get("/openapi.json", "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/consultations",
        "/consultations/{id}",
        "/consultations/{id}/actions",
        "/consultations/{id}/fhir",
        "/fhir/ServiceRequest",
        "/openapi.json",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} in the OpenAPI document"
        );
    }
    assert!(
        doc["paths"]["/consultations"]["post"]["requestBody"]["content"]["multipart/form-data"]
            .is_object()
    );
    assert_eq!(
        doc["components"]["schemas"]["ActionRequest"]["properties"]["action"]["enum"]
            .as_array()
            .unwrap()
            .len(),
        14
    );

    // A server without users would refuse everyone: it does not start.
    assert!(matches!(
        api::serve(n.clone(), ApiConfig::default()).await,
        Err(api::ApiError::NoUsers)
    ));
    // An empty bearer token is no token.
    let resp = api
        .client
        .get(format!("{}/consultations", api.base))
        .header("authorization", "Bearer ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // A graceful stop lets go of the node, which can then shut down.
    stop.send(()).unwrap();
    tokio::time::timeout(PATIENCE, task)
        .await
        .expect("the server stops")
        .unwrap();
    assert!(
        reqwest::get(format!("{}/openapi.json", api.base))
            .await
            .is_err(),
        "nothing listens any more"
    );
    let n = Arc::try_unwrap(n).unwrap_or_else(|_| panic!("the server let go of the node"));
    n.shutdown().await;
}

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
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let r = fed.enrol(OrgSpec::new(
        "Vologda regional hospital",
        OrgLevel::Regional,
        "RU-VLG",
        &[],
    ));
    let f = fed.enrol(OrgSpec::new(
        "Federal cardiology center",
        OrgLevel::Federal,
        "RU-MOW",
        &[Specialty::Cardiology],
    ));
    let regional = Arc::new(node::start(r.setup(vec![], vec![])).await.unwrap());
    let ra = wait::listen_addr(&regional, PATIENCE).await.unwrap();
    let federal = Arc::new(node::start(f.setup(vec![ra], vec![])).await.unwrap());
    wait::converged(&[&regional, &federal], 2, PATIENCE)
        .await
        .unwrap();
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
    for n in [regional, federal] {
        if let Ok(n) = Arc::try_unwrap(n) {
            n.shutdown().await;
        }
    }
    for needle in [patient, "Zhukovskaya", "Evdokiya"] {
        let found = files_containing(tmp.path(), needle.as_bytes());
        assert!(found.is_empty(), "{needle:?} stored in {found:?}");
    }
    // The search can fail: the physician's name, which is meant to be kept, is found.
    assert!(!files_containing(tmp.path(), b"Olga Belova").is_empty());
}
