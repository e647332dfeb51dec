//! The HTTP API, driven over loopback against real nodes: a consultation
//! requested, answered and acknowledged through the API of both
//! organizations, and the API's refusals as RFC 9457 problem documents.
//!
//! Here: serving a node's API and a client that checks every response
//! against the OpenAPI document; one module per topic.

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

mod consultation;
mod https;
mod problems;
mod referral;
mod schemathesis;

const PATIENCE: Duration = Duration::from_secs(60);

/// A regional hospital and a federal cardiology center, started and with
/// each other's directory record, video on: the pair the API tests consult
/// between.
async fn regional_and_federal(
    dir: &std::path::Path,
    regional_name: &str,
) -> (Arc<NodeHandle>, Arc<NodeHandle>) {
    let mut fed = LocalFederation::new(dir, node::now());
    let r = fed.enrol(OrgSpec::new(
        regional_name,
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
    let with_video = |mut setup: node::NodeSetup| {
        setup.video = Some(konsilium_node::config::VideoConfig::on(
            "127.0.0.1:0".parse().unwrap(),
        ));
        setup
    };
    let regional = Arc::new(
        node::start(with_video(r.setup(vec![], vec![])))
            .await
            .unwrap(),
    );
    let ra = wait::listen_addr(&regional, PATIENCE).await.unwrap();
    let federal = Arc::new(
        node::start(with_video(f.setup(vec![ra], vec![])))
            .await
            .unwrap(),
    );
    wait::converged(&[&regional, &federal], 2, PATIENCE)
        .await
        .unwrap();
    (regional, federal)
}

/// Stops the nodes whose last handle this is.
async fn shut_down(nodes: impl IntoIterator<Item = Arc<NodeHandle>>) {
    for n in nodes {
        if let Ok(n) = Arc::try_unwrap(n) {
            n.shutdown().await;
        }
    }
}

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
        tls: None,
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
