//! The node's HTTP API for hospital information systems and the staff's
//! desktop: consultations as JSON, the FHIR Bundle export and import, and an
//! OpenAPI description of it all.
//!
//! Every request carries `Authorization: Bearer <token>`; the token names a
//! user with one role, and the role is what the workflow checks each step
//! against. Tokens are kept only as BLAKE3 hashes and compared in constant
//! time. Every error is an RFC 9457 problem document
//! (`application/problem+json`) that names what is wrong.
//!
//! The server binds to loopback by default and speaks plain HTTP: put it
//! behind a TLS-terminating proxy before exposing it beyond the host.

use crate::fhir::{self, ConsultationRecord, FhirError};
use crate::node::{
    ActRequest, Attachment, CaseFile, ConclusionText, ConsultationView, Intake, IntakeKey,
    NewConsultation, NodeError, NodeHandle, Sent, Target,
};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::content::{CaseExtract, FileInfo};
use konsilium_protocol::deadline::DeadlineState;
use konsilium_protocol::identity::OrgId;
use konsilium_protocol::journal::Role;
use konsilium_protocol::seal;
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::time::Timestamp;
use konsilium_protocol::urgency::Urgency;
use konsilium_protocol::workflow::{
    Action, ActionKind, Appointment, Consent, ConsentMethod, ConsultationId, Side, Slot, Status,
    WorkflowError,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use strum::IntoEnumIterator as _;
use subtle::ConstantTimeEq;
use tokio::task::JoinHandle;

/// The most a multipart request (a consultation with its attachments) may carry.
pub const MAX_UPLOAD: usize = 4 << 30;

/// The largest JSON body accepted (a FHIR Bundle with a long case extract fits).
pub const MAX_BODY: usize = 4 << 20;

/// Where the API listens unless told otherwise: loopback only.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_PORT);
pub const DEFAULT_PORT: u16 = 7480;

const PROBLEM_JSON: &str = "application/problem+json";
const FHIR_JSON: &str = "application/fhir+json";
const PROBLEM_BASE: &str = "urn:konsilium:problem:";

/// The API's settings.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    pub users: Vec<User>,
    /// Where uploaded attachments wait (mode 0600) until they are sealed;
    /// `None` is the system's temporary directory. Use a directory on the
    /// node's own (encrypted) volume, e.g. `<data_dir>/uploads`.
    pub upload_dir: Option<PathBuf>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN,
            users: Vec::new(),
            upload_dir: None,
        }
    }
}

/// One person (or system) allowed to use the API, with one role.
#[derive(Clone)]
pub struct User {
    pub name: String,
    pub role: Role,
    /// BLAKE3 of the bearer token; the token itself is never kept.
    pub token_hash: [u8; 32],
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl User {
    /// A user whose token is `token` (hashed here).
    pub fn with_token(name: impl Into<String>, role: Role, token: &str) -> Self {
        Self {
            name: name.into(),
            role,
            token_hash: token_hash(token),
        }
    }
}

impl User {
    /// A user whose token hash is given as 64 hexadecimal digits (as a
    /// config file keeps it; see [`token_hash_hex`]).
    pub fn with_token_hash_hex(
        name: impl Into<String>,
        role: Role,
        hash_hex: &str,
    ) -> Result<Self, ApiError> {
        let text = hash_hex.trim();
        let bad = || ApiError::TokenHash(text.chars().take(80).collect());
        let mut token_hash = [0u8; 32];
        hex::decode_to_slice(text, &mut token_hash).map_err(|_| bad())?;
        Ok(Self {
            name: name.into(),
            role,
            token_hash,
        })
    }
}

/// The hash of `token` as 64 hexadecimal digits, for a config file.
pub fn token_hash_hex(token: &str) -> String {
    hex(&token_hash(token))
}

/// The hash a user's token is stored as.
pub fn token_hash(token: &str) -> [u8; 32] {
    *blake3::hash(token.as_bytes()).as_bytes()
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the API has no users: every request would be refused")]
    NoUsers,
    #[error("{0:?} is not a token hash: expected 64 hexadecimal digits (BLAKE3 of the token)")]
    TokenHash(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

struct AppState {
    node: Arc<NodeHandle>,
    users: Vec<User>,
    upload_dir: Option<PathBuf>,
}

/// Starts serving the API for `handle`. Returns the address it listens on
/// (useful with port 0) and the server task; abort the task to stop it, or
/// use [`serve_until`] to stop gracefully.
pub async fn serve(
    handle: Arc<NodeHandle>,
    config: ApiConfig,
) -> Result<(SocketAddr, JoinHandle<()>), ApiError> {
    serve_until(handle, config, std::future::pending()).await
}

/// Like [`serve`], but stops when `shutdown` completes: no new connections
/// are taken, requests under way finish, and the task ends once every
/// connection has closed. After that the server holds no clone of `handle`,
/// so the caller can `Arc::try_unwrap` it and shut the node down.
pub async fn serve_until(
    handle: Arc<NodeHandle>,
    config: ApiConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, JoinHandle<()>), ApiError> {
    if config.users.is_empty() {
        return Err(ApiError::NoUsers);
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ApiError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ApiError::Bind {
        addr: config.listen,
        source,
    })?;
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "the HTTP API listens beyond loopback without TLS: put a TLS proxy in front");
    }
    let app = router(handle, config.users, config.upload_dir);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!("HTTP API stopped: {e}");
        }
    });
    tracing::info!(%addr, "HTTP API listening");
    Ok((addr, task))
}

/// The API as a router, for embedding in another server.
pub fn router(handle: Arc<NodeHandle>, users: Vec<User>, upload_dir: Option<PathBuf>) -> Router {
    let state = Arc::new(AppState {
        node: handle,
        users,
        upload_dir,
    });
    Router::new()
        .route(
            "/consultations",
            get(list_consultations).post(create_consultation).layer(
                // JSON bodies are capped by `read_body`; this caps multipart uploads.
                axum::extract::DefaultBodyLimit::max(MAX_UPLOAD),
            ),
        )
        .route("/consultations/{id}", get(get_consultation))
        .route("/consultations/{id}/actions", post(act))
        .route("/consultations/{id}/fhir", get(fhir_bundle))
        .route("/consultations/{id}/files/{index}", get(get_file))
        .route("/fhir/ServiceRequest", post(import_fhir))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

// ---------------------------------------------------------------------------
// Problems (RFC 9457)
// ---------------------------------------------------------------------------

/// An RFC 9457 problem document.
#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    kind: &'static str,
    title: &'static str,
    detail: String,
    field: Option<String>,
}

impl Problem {
    fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            title,
            detail: detail.into(),
            field: None,
        }
    }

    fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    fn invalid(field: &str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-field",
            "A field has an invalid value",
            detail,
        )
        .field(field)
    }

    fn missing(field: &str, why: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "missing-field",
            "A required field is missing",
            format!("{field} is required {why}"),
        )
        .field(field)
    }

    fn unauthorized(detail: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication required",
            detail,
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = json!({
            "type": format!("{PROBLEM_BASE}{}", self.kind),
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        if let (Some(field), Some(obj)) = (self.field, body.as_object_mut()) {
            obj.insert("field".into(), Value::String(field));
        }
        let mut response = (self.status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"konsilium\""),
            );
        }
        response
    }
}

fn node_problem(e: NodeError) -> Problem {
    use StatusCode as S;
    match e {
        NodeError::UnknownConsultation(id) => Problem::new(
            S::NOT_FOUND,
            "unknown-consultation",
            "No such consultation",
            format!("consultation {id} is not known here"),
        ),
        NodeError::Workflow(w) => workflow_problem(w),
        NodeError::NoRoute(what) => Problem::new(
            S::UNPROCESSABLE_ENTITY,
            "no-route",
            "No organization offers this",
            format!("no organization in the directory offers this: {what}"),
        ),
        NodeError::UnknownOrg(org) => Problem::new(
            S::UNPROCESSABLE_ENTITY,
            "unknown-organization",
            "The target organization is not in the directory",
            format!("organization {org} is not in the directory"),
        )
        .field("target"),
        NodeError::Conclusion(reason) => Problem::new(
            S::UNPROCESSABLE_ENTITY,
            "invalid-conclusion",
            "The conclusion cannot be signed",
            reason,
        )
        .field("conclusion"),
        NodeError::Journal(reason) => Problem::new(
            S::SERVICE_UNAVAILABLE,
            "journal-unavailable",
            "The journal cannot be written",
            format!("nothing was done or returned, because it could not be journaled: {reason}"),
        ),
        NodeError::IntakeConflict(id) => Problem::new(
            S::CONFLICT,
            "idempotency-conflict",
            "The identifier was used for a different request",
            format!(
                "this identifier already opened consultation {id} with a different request; \
                 a new request needs a new identifier"
            ),
        ),
        NodeError::Stopped => Problem::new(
            S::SERVICE_UNAVAILABLE,
            "node-stopped",
            "The node has stopped",
            "the node has stopped",
        ),
        NodeError::Timeout(what) => Problem::new(
            S::GATEWAY_TIMEOUT,
            "timeout",
            "The node timed out",
            format!("timed out waiting for {what}"),
        ),
        other => {
            tracing::error!("HTTP API: {other}");
            Problem::new(
                S::INTERNAL_SERVER_ERROR,
                "node-error",
                "The node could not do this",
                other.to_string(),
            )
        }
    }
}

fn workflow_problem(w: WorkflowError) -> Problem {
    use StatusCode as S;
    let detail = w.to_string();
    match w {
        WorkflowError::NotPermitted { .. } => Problem::new(
            S::FORBIDDEN,
            "not-permitted",
            "This role may not take this step",
            detail,
        ),
        WorkflowError::WrongState { .. } => Problem::new(
            S::CONFLICT,
            "wrong-state",
            "The consultation is not in a state that allows this step",
            detail,
        ),
        WorkflowError::Appointment { .. } => Problem::new(
            S::CONFLICT,
            "appointment",
            "The video consilium's schedule does not allow this step",
            detail,
        ),
        WorkflowError::ConsentRequired => Problem::new(
            S::UNPROCESSABLE_ENTITY,
            "consent-required",
            "Patient consent is required",
            detail,
        )
        .field("consent"),
        _ => Problem::new(
            S::CONFLICT,
            "workflow",
            "The step does not fit the consultation",
            detail,
        ),
    }
}

async fn not_found() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "No such resource",
        "no such resource; see /openapi.json for the paths",
    )
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "this path does not take this method; see /openapi.json",
    )
}

// ---------------------------------------------------------------------------
// Authentication, bodies, parameters
// ---------------------------------------------------------------------------

impl AppState {
    /// The user the bearer token names, if their role is one of `allowed`
    /// (all roles when empty).
    async fn authenticate(&self, headers: &HeaderMap, allowed: &[Role]) -> Result<&User, Problem> {
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| Problem::unauthorized("the Authorization header is missing"))?;
        let value = value
            .to_str()
            .map_err(|_| Problem::unauthorized("the Authorization header is not text"))?;
        let token = match value.split_once(' ') {
            Some((scheme, token))
                if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
            {
                token.trim()
            }
            _ => {
                return Err(Problem::unauthorized(
                    "the Authorization header must be \"Bearer <token>\"",
                ));
            }
        };
        let presented = token_hash(token);
        // Look at every user, so the time taken does not tell which matched.
        let mut found = None;
        for user in &self.users {
            if bool::from(user.token_hash.ct_eq(&presented)) && found.is_none() {
                found = Some(user);
            }
        }
        let Some(user) = found else {
            // A security event: journaled, without the token itself.
            // Refused either way; a journal that cannot take the event is
            // the node's problem to report, not the caller's.
            if let Err(e) = self
                .node
                .record(
                    Some("unknown token".into()),
                    None,
                    konsilium_protocol::journal::Action::FailedLogin {
                        user: "unknown token".into(),
                    },
                )
                .await
            {
                tracing::error!("failed login not journaled: {e}");
            }
            return Err(Problem::unauthorized("the token is not valid"));
        };
        if !allowed.is_empty() && !allowed.contains(&user.role) {
            let names: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "role-not-allowed",
                "This role may not do this",
                format!(
                    "{} is a {}; this needs a {}",
                    user.name,
                    user.role,
                    names.join(" or ")
                ),
            ));
        }
        Ok(user)
    }
}

async fn read_body(body: Body) -> Result<Bytes, Problem> {
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "The request body is too large or broken",
            format!("the body could not be read (at most {MAX_BODY} bytes): {e}"),
        )
    })
}

/// Decodes a JSON body; the problem names the offending field.
fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let syntax = inner.is_syntax() || inner.is_eof();
        let mut p = Problem::new(
            StatusCode::BAD_REQUEST,
            if syntax {
                "malformed-json"
            } else {
                "invalid-body"
            },
            if syntax {
                "The body is not valid JSON"
            } else {
                "The body does not match the expected fields"
            },
            if path == "." || path.is_empty() {
                inner.to_string()
            } else {
                format!("{path}: {inner}")
            },
        );
        if !syntax && path != "." && !path.is_empty() {
            p = p.field(path);
        }
        p
    })?;
    de.end().map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed-json",
            "The body is not valid JSON",
            format!("trailing characters after the JSON value: {e}"),
        )
    })?;
    Ok(value)
}

fn parse_id(text: &str) -> Result<ConsultationId, Problem> {
    text.parse().map_err(|_| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "unknown-consultation",
            "No such consultation",
            format!("{text:?} is not a consultation id (32 hexadecimal digits)"),
        )
    })
}

fn parse_time(field: &str, text: &str) -> Result<Timestamp, Problem> {
    let ts: jiff::Timestamp = text.parse().map_err(|e| {
        Problem::invalid(
            field,
            format!("{field}: {text:?} is not an RFC 3339 time: {e}"),
        )
    })?;
    let ms = u64::try_from(ts.as_millisecond())
        .map_err(|_| Problem::invalid(field, format!("{field}: {text:?} is before 1970")))?;
    Ok(Timestamp::from_unix_millis(ms))
}

fn parse_level(value: &Option<Value>) -> Result<OrgLevel, Problem> {
    let bad = |shown: String| {
        Problem::invalid(
            "min_level",
            format!("min_level: {shown} is not a level: use district|regional|federal or 1|2|3"),
        )
    };
    match value {
        None | Some(Value::Null) => Ok(OrgLevel::District),
        Some(Value::String(s)) => s.parse().map_err(|_| bad(format!("{s:?}"))),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .and_then(|n| OrgLevel::try_from(n).ok())
            .ok_or_else(|| bad(n.to_string())),
        Some(other) => Err(bad(other.to_string())),
    }
}

fn not_blank(field: &str, text: &str) -> Result<(), Problem> {
    if text.trim().is_empty() {
        return Err(Problem::invalid(
            field,
            format!("{field} must not be empty"),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

fn rfc3339(t: Timestamp) -> String {
    t.to_string()
}

fn id_text(id: &ConsultationId) -> String {
    id.to_string()
}

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Requesting => "requesting",
        Side::Consulting => "consulting",
    }
}

fn slot_json(slot: &Slot) -> Value {
    json!({"start": rfc3339(slot.start), "end": rfc3339(slot.end)})
}

fn action_details(action: &Action) -> Value {
    match action {
        Action::Reject { reason, forward } => json!({"reason": reason, "forward": forward}),
        Action::AskMore { questions } => json!({"questions": questions}),
        Action::Supply { note } => json!({"note": note}),
        Action::ProposeSlots { slots } => {
            json!({"slots": slots.iter().map(slot_json).collect::<Vec<_>>()})
        }
        Action::ConfirmSlot { slot } => json!({"slot": slot_json(slot)}),
        Action::CancelAppointment { reason }
        | Action::Cancel { reason }
        | Action::Fail { reason } => json!({"reason": reason}),
        Action::Note { text } => json!({"text": text}),
        Action::Assign { consultant } => json!({"consultant": consultant}),
        Action::Conclude { conclusion } => json!({"conclusion_hash": hex(conclusion)}),
        Action::Receive | Action::Accept | Action::Start | Action::Acknowledge => json!({}),
    }
}

fn summary_json(view: &ConsultationView, now: Timestamp) -> Value {
    let c = &view.consultation;
    let deadline = view.deadline.as_ref();
    json!({
        "id": id_text(&c.request.id),
        "status": c.status.fhir_code(),
        "urgency": c.request.urgency.to_string(),
        "specialty": c.request.specialty.slug(),
        "side": side_name(view.side),
        "counterpart": view.counterpart.to_string(),
        "created": rfc3339(c.request.created),
        "deadline_due": deadline.map(|d| rfc3339(d.due)),
        "time_left_seconds": deadline.map(|d| d.time_left(now).as_secs()),
        "deadline_state": deadline.map(|d| d.state(now).as_str()),
        "acknowledged": c.acknowledged,
    })
}

/// The case extract's files as the API lists them, each with where to
/// download it.
fn files_json(view: &ConsultationView) -> Vec<Value> {
    let id = id_text(&view.consultation.id());
    view.files
        .iter()
        .enumerate()
        .map(|(i, (info, blob))| {
            json!({
                "title": info.title,
                "content_type": info.content_type,
                "size": seal::plaintext_len(blob.size),
                "blake3": blob.hex(),
                "href": format!("/consultations/{id}/files/{i}"),
            })
        })
        .collect()
}

fn view_json(view: &ConsultationView, now: Timestamp) -> Value {
    let c = &view.consultation;
    let mut out = summary_json(view, now);
    let consent = match &c.request.consent {
        Consent::Given { by, at, method, .. } => {
            let (method, witness) = match method {
                ConsentMethod::Written => ("written", None),
                ConsentMethod::Electronic => ("electronic", None),
                ConsentMethod::Oral { witness } => ("oral", Some(witness.clone())),
            };
            json!({"given": true, "by": by, "at": rfc3339(*at), "method": method, "witness": witness})
        }
        Consent::EmergencyOverride { reason } => {
            json!({"given": false, "emergency_override": {"reason": reason}})
        }
    };
    let appointment = match &c.appointment {
        Appointment::None => json!({"state": "none"}),
        Appointment::Proposed(slots) => {
            json!({"state": "proposed", "slots": slots.iter().map(slot_json).collect::<Vec<_>>()})
        }
        Appointment::Confirmed(slot) => json!({"state": "confirmed", "slot": slot_json(slot)}),
        Appointment::Cancelled => json!({"state": "cancelled"}),
    };
    let history: Vec<Value> = c
        .history
        .iter()
        .filter_map(|s| s.decode_unverified().ok())
        .map(|t| {
            json!({
                "seq": t.seq,
                "actor": t.actor.to_string(),
                "role": t.role.as_str(),
                "user": t.user,
                "at": rfc3339(t.at),
                "action": t.action.name(),
                "details": action_details(&t.action),
            })
        })
        .collect();
    let conclusion = view
        .conclusion
        .as_ref()
        .and_then(|f| f.conclusion.decode_unverified().ok())
        .map(|k| {
            json!({
                "authors": k.authors,
                "diagnosis": k.diagnosis,
                "recommendations": k.recommendations,
                "treatment_plan": k.treatment_plan,
                "further_studies": k.further_studies,
                "issued_at": rfc3339(k.issued_at),
            })
        });
    let deadline = view.deadline.as_ref().map(|d| {
        json!({
            "requested": rfc3339(d.requested),
            "due": rfc3339(d.due),
            "first_response_due": d.first_response_due.map(rfc3339),
            "at_risk_from": rfc3339(d.at_risk_from),
            "state": d.state(now).as_str(),
            "first_response_state": d
                .first_response_state(now, c.first_response)
                .map(DeadlineState::as_str),
        })
    });
    if let Some(obj) = out.as_object_mut() {
        let extra = json!({
            "requester": c.request.requester.to_string(),
            "consultant": c.request.consultant.to_string(),
            "physician": c.request.physician,
            "consent": consent,
            "escalated_from": c.request.escalated_from.as_ref().map(id_text),
            "appointment": appointment,
            "first_response": c.first_response.map(rfc3339),
            "deadline": deadline,
            "extract": {"summary": view.extract.summary, "questions": view.extract.questions},
            "files": files_json(view),
            "conclusion": conclusion,
            "history": history,
        });
        if let Value::Object(extra) = extra {
            obj.extend(extra);
        }
    }
    out
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    let mut r = (status, value.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn created(id: ConsultationId, sent: &Sent) -> Response {
    let body = json!({
        "id": id_text(&id),
        "recipient": sent.recipient.to_string(),
        "recipient_name": sent.recipient_name,
        "next_hop": sent.next_hop.to_string(),
        "package": hex(&sent.id.0),
    });
    let mut r = json_response(StatusCode::CREATED, &body);
    if let Ok(location) = HeaderValue::from_str(&format!("/consultations/{id}")) {
        r.headers_mut().insert(header::LOCATION, location);
    }
    r
}

/// 200 with the consultation an identifier already opened.
fn existing(id: ConsultationId) -> Response {
    let mut r = json_response(
        StatusCode::OK,
        &json!({"id": id_text(&id), "existing": true}),
    );
    if let Ok(location) = HeaderValue::from_str(&format!("/consultations/{id}")) {
        r.headers_mut().insert(header::LOCATION, location);
    }
    r
}

fn intake_response(intake: Intake) -> Response {
    match intake {
        Intake::Opened(id, sent) => created(id, &sent),
        Intake::Existing(id) => existing(id),
    }
}

/// The longest client identifier kept (an idempotency key, or a FHIR
/// `system|value`): enough for any URI system with a UUID value.
pub const MAX_IDENTIFIER: usize = 512;

fn check_identifier(field: &str, identifier: &str) -> Result<(), Problem> {
    if identifier.trim().is_empty() {
        return Err(Problem::invalid(field, format!("{field} is empty")));
    }
    if identifier.len() > MAX_IDENTIFIER {
        return Err(Problem::invalid(
            field,
            format!("{field} is longer than {MAX_IDENTIFIER} bytes"),
        ));
    }
    Ok(())
}

/// The idempotency key of a JSON request: the `Idempotency-Key` header or
/// the body's `idempotency_key` (the same value if both are given).
fn idempotency_key(headers: &HeaderMap, field: Option<&str>) -> Result<Option<String>, Problem> {
    let header = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| Problem::invalid("Idempotency-Key", "Idempotency-Key is not text"))?
                .trim()
                .to_owned(),
        ),
    };
    let key = match (header, field) {
        (Some(h), Some(f)) if h != f.trim() => {
            return Err(Problem::invalid(
                "idempotency_key",
                "the Idempotency-Key header and idempotency_key differ; give one, or the same",
            ));
        }
        (Some(h), _) => Some(h),
        (None, Some(f)) => Some(f.trim().to_owned()),
        (None, None) => None,
    };
    if let Some(k) = &key {
        check_identifier("Idempotency-Key", k)?;
    }
    Ok(key)
}

/// What decides whether a JSON request under a used idempotency key is the
/// same request: BLAKE3 over the body as canonical JSON (object keys sorted,
/// no whitespace, `idempotency_key` left out) followed by each attachment's
/// BLAKE3 hash in order. Values the node fills in when absent (the consent
/// time, the physician) are hashed as the client sent them, so a retry is
/// the same even though "now" has moved.
fn json_fingerprint(body: &[u8], files: &[Upload]) -> Result<[u8; 32], Problem> {
    let mut value: Value = serde_json::from_slice(body)
        .map_err(|e| Problem::invalid("request", format!("the body is not JSON: {e}")))?;
    if let Some(obj) = value.as_object_mut() {
        obj.remove("idempotency_key");
    }
    value.sort_all_objects();
    let mut h = blake3::Hasher::new();
    h.update(b"konsilium/json-intake/v1\0");
    h.update(value.to_string().as_bytes());
    for (i, upload) in files.iter().enumerate() {
        let mut part = blake3::Hasher::new();
        part.update(upload.info.title.as_deref().unwrap_or("").as_bytes());
        part.update(&[0]);
        part.update(upload.info.content_type.as_bytes());
        part.update(&[0]);
        let mut reader = upload.file.reopen().map_err(|e| {
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "upload-storage",
                "The attachment could not be read",
                format!("attachment {i} could not be read back: {e}"),
            )
        })?;
        std::io::copy(&mut reader, &mut part).map_err(|e| {
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "upload-storage",
                "The attachment could not be read",
                format!("attachment {i} could not be read back: {e}"),
            )
        })?;
        h.update(part.finalize().as_bytes());
    }
    Ok(*h.finalize().as_bytes())
}

// ---------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewConsultationBody {
    specialty: String,
    #[serde(default)]
    min_level: Option<Value>,
    urgency: String,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    consent: Option<ConsentBody>,
    #[serde(default)]
    emergency_override: Option<OverrideBody>,
    #[serde(default)]
    physician: Option<String>,
    summary: String,
    questions: String,
    /// The client's identifier of this request, as the `Idempotency-Key`
    /// header is (for clients that cannot set headers).
    #[serde(default)]
    idempotency_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsentBody {
    /// Who gave consent, as a role: `patient` (the default) or
    /// `representative`. Never a name: the record must not identify the patient.
    #[serde(default)]
    by: Option<String>,
    method: String,
    #[serde(default)]
    witness: Option<String>,
    #[serde(default)]
    at: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideBody {
    reason: String,
}

fn consent_required(detail: &str) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "consent-required",
        "Patient consent is required",
        detail,
    )
    .field("consent")
}

/// The consent as recorded: who gave it is a role, with the physician who
/// recorded it (see [`fhir::consent_given_by`]).
fn consent_of(
    consent: Option<ConsentBody>,
    emergency: Option<OverrideBody>,
    urgency: Urgency,
    physician: &str,
    now: Timestamp,
) -> Result<Consent, Problem> {
    match (consent, emergency) {
        (Some(_), Some(_)) => Err(Problem::invalid(
            "emergency_override",
            "give either consent or emergency_override, not both",
        )),
        (None, None) => Err(consent_required(
            "the patient's consent (consent: {by, method}) is required; only an emergency may go out with emergency_override: {reason}",
        )),
        (None, Some(o)) => {
            if urgency != Urgency::Emergency {
                return Err(consent_required(
                    "emergency_override is only for emergencies (urgency \"emergency\"); give the patient's consent",
                ));
            }
            if o.reason.trim().is_empty() {
                return Err(consent_required(
                    "emergency_override.reason must say why consent could not be obtained",
                ));
            }
            Ok(Consent::EmergencyOverride { reason: o.reason })
        }
        (Some(c), None) => {
            let giver = match c.by.as_deref().map(|b| b.trim().to_lowercase()).as_deref() {
                None | Some("patient" | "the patient") => fhir::Giver::Patient,
                Some("representative" | "the patient's legal representative") => {
                    fhir::Giver::Representative
                }
                Some(_) => {
                    return Err(Problem::invalid(
                        "consent.by",
                        "consent.by: say who gave consent as \"patient\" or \"representative\"; \
                         the patient is never named in a consultation record",
                    ));
                }
            };
            let method = match c.method.to_ascii_lowercase().as_str() {
                "written" => ConsentMethod::Written,
                "electronic" => ConsentMethod::Electronic,
                "oral" => {
                    let witness = c.witness.clone().unwrap_or_default();
                    if witness.trim().is_empty() {
                        return Err(Problem::missing("consent.witness", "for oral consent"));
                    }
                    ConsentMethod::Oral { witness }
                }
                other => {
                    return Err(Problem::invalid(
                        "consent.method",
                        format!(
                            "consent.method: {other:?} is not a method: use written|electronic|oral"
                        ),
                    ));
                }
            };
            if c.witness.is_some() && !matches!(method, ConsentMethod::Oral { .. }) {
                return Err(Problem::invalid(
                    "consent.witness",
                    "consent.witness applies to oral consent only",
                ));
            }
            let at = match &c.at {
                Some(t) => parse_time("consent.at", t)?,
                None => now,
            };
            Ok(Consent::Given {
                by: fhir::consent_given_by(&giver, physician),
                at,
                method,
                document: None,
            })
        }
    }
}

fn parse_target(target: Option<&str>) -> Result<Target, Problem> {
    match target {
        None => Ok(Target::Best),
        Some(t) => t
            .trim()
            .parse::<OrgId>()
            .map(Target::Org)
            .map_err(|e| Problem::invalid("target", format!("target: {e}"))),
    }
}

/// Reads a `multipart/form-data` request: the JSON part `request` and any
/// number of `attachment` parts, each streamed to a temporary file.
/// An attachment part as it arrived: its bytes in a temporary file
/// (deleted on drop), and its title and media type from the part's headers.
struct Upload {
    file: tempfile::NamedTempFile,
    info: FileInfo,
}

async fn read_multipart(
    request: axum::extract::Request,
    upload_dir: Option<&std::path::Path>,
) -> Result<(Bytes, Vec<Upload>), Problem> {
    use axum::extract::FromRequest;
    use tokio::io::AsyncWriteExt;
    let bad = |detail: String| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-multipart",
            "The multipart body is not valid",
            detail,
        )
    };
    let mut form = axum::extract::Multipart::from_request(request, &())
        .await
        .map_err(|e| bad(e.body_text()))?;
    let mut json = None;
    let mut files = Vec::new();
    while let Some(mut field) = form.next_field().await.map_err(|e| bad(e.body_text()))? {
        match field.name().unwrap_or("") {
            "request" => {
                if json.is_some() {
                    return Err(Problem::invalid(
                        "request",
                        "only one request part may be given",
                    ));
                }
                let mut bytes = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(|e| bad(e.body_text()))? {
                    if bytes.len() + chunk.len() > MAX_BODY {
                        return Err(Problem::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "body-too-large",
                            "The request part is too large",
                            format!("the request part may hold at most {MAX_BODY} bytes"),
                        ));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                json = Some(Bytes::from(bytes));
            }
            "attachment" => {
                let index = files.len();
                let info = FileInfo {
                    title: field.file_name().map(str::to_owned),
                    content_type: field
                        .content_type()
                        .map_or_else(|| FileInfo::default().content_type, str::to_owned),
                };
                let failed = |e: std::io::Error| {
                    tracing::error!("HTTP API: temporary file for an attachment: {e}");
                    Problem::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "upload-storage",
                        "The attachment could not be stored",
                        format!("attachment {index} could not be stored: {e}"),
                    )
                };
                let tmp = match upload_dir {
                    Some(dir) => tempfile::Builder::new().prefix(".upload-").tempfile_in(dir),
                    None => tempfile::Builder::new()
                        .prefix("konsilium-upload-")
                        .tempfile(),
                }
                .map_err(failed)?;
                let mut out = tokio::fs::File::from_std(tmp.reopen().map_err(failed)?);
                while let Some(chunk) = field
                    .chunk()
                    .await
                    .map_err(|e| bad(format!("attachment {index}: {}", e.body_text())))?
                {
                    out.write_all(&chunk).await.map_err(failed)?;
                }
                out.flush().await.map_err(failed)?;
                files.push(Upload { file: tmp, info });
            }
            other => {
                return Err(Problem::invalid(
                    other,
                    format!(
                        "unknown part {other:?}: a multipart request has one \"request\" part (JSON) and \"attachment\" parts"
                    ),
                ));
            }
        }
    }
    let json = json.ok_or_else(|| Problem::missing("request", "as a multipart part (JSON)"))?;
    Ok((json, files))
}

async fn create_consultation(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
) -> Result<Response, Problem> {
    let user = state
        .authenticate(request.headers(), &[Role::Physician])
        .await?;
    let headers = request.headers().clone();
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        });
    let (bytes, files) = if multipart {
        read_multipart(request, state.upload_dir.as_deref()).await?
    } else {
        (read_body(request.into_body()).await?, Vec::new())
    };
    let b: NewConsultationBody = decode(&bytes)?;
    let key = idempotency_key(&headers, b.idempotency_key.as_deref())?;
    let specialty = Specialty::from_slug(b.specialty.trim()).ok_or_else(|| {
        Problem::invalid(
            "specialty",
            format!("specialty: {:?} is not a known specialty slug", b.specialty),
        )
    })?;
    let min_level = parse_level(&b.min_level)?;
    let urgency: Urgency = b
        .urgency
        .parse()
        .map_err(|e| Problem::invalid("urgency", format!("urgency: {e}")))?;
    let target = parse_target(b.target.as_deref())?;
    let region = match b.region {
        None => None,
        Some(r) => Some(
            r.parse()
                .map_err(|e| Problem::invalid("region", format!("region: {e}")))?,
        ),
    };
    not_blank("summary", &b.summary)?;
    let physician = match b.physician {
        Some(p) if !p.trim().is_empty() => p,
        _ => user.name.clone(),
    };
    let consent = consent_of(
        b.consent,
        b.emergency_override,
        urgency,
        &physician,
        state.node.now(),
    )?;
    let new = NewConsultation {
        target,
        specialty,
        min_level,
        urgency,
        region,
        consent,
        physician,
        extract: CaseExtract {
            summary: b.summary,
            questions: b.questions,
        },
        escalated_from: None,
    };
    let attachments = files
        .iter()
        .map(|u| CaseFile {
            info: u.info.clone(),
            content: Attachment::File(u.file.path().to_owned()),
        })
        .collect();
    // The files are sealed before this returns; they are deleted on drop.
    let response = match key {
        Some(key) => {
            let key = IntakeKey {
                identifier: format!("json:{key}"),
                fingerprint: json_fingerprint(&bytes, &files)?,
            };
            let intake = state
                .node
                .request_consultation_once(new, attachments, key)
                .await
                .map_err(node_problem)?;
            intake_response(intake)
        }
        None => {
            let (id, sent) = state
                .node
                .request_consultation(new, attachments)
                .await
                .map_err(node_problem)?;
            created(id, &sent)
        }
    };
    drop(files);
    Ok(response)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    status: Option<String>,
}

async fn list_consultations(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    state.authenticate(&headers, &[]).await?;
    let Query(query) = query.map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-query",
            "The query string is not valid",
            e.body_text(),
        )
    })?;
    let want = match query.status.as_deref() {
        None => None,
        Some(code) => Some(Status::from_fhir_code(code).ok_or_else(|| {
            Problem::invalid(
                "status",
                format!(
                    "status: {code:?} is not a FHIR Task.status this API uses (requested, received, accepted, rejected, in-progress, on-hold, completed, cancelled, failed)"
                ),
            )
        })?),
    };
    let now = state.node.now();
    let mut items = Vec::new();
    for id in state.node.consultations().await.map_err(node_problem)? {
        let view = match state.node.consultation(id).await {
            Ok(v) => v,
            Err(NodeError::UnknownConsultation(_)) => continue,
            Err(e) => return Err(node_problem(e)),
        };
        if want.is_some_and(|w| w != view.consultation.status) {
            continue;
        }
        items.push((view.consultation.request.created, summary_json(&view, now)));
    }
    items.sort_by_key(|item| std::cmp::Reverse(item.0));
    let items: Vec<Value> = items.into_iter().map(|(_, v)| v).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"consultations": items}),
    ))
}

/// Reads a consultation for a signed-in user. Reading is an access to
/// health data, so it is journaled.
async fn read_consultation(
    state: &AppState,
    headers: &HeaderMap,
    id: &str,
) -> Result<ConsultationView, Problem> {
    let user = state.authenticate(headers, &[]).await?;
    let id = parse_id(id)?;
    let view = state.node.consultation(id).await.map_err(node_problem)?;
    // Journaled before it is returned: a read that cannot be journaled
    // does not happen.
    state
        .node
        .record(
            Some(user.name.clone()),
            Some(user.role),
            konsilium_protocol::journal::Action::Open { consultation: id.0 },
        )
        .await
        .map_err(node_problem)?;
    Ok(view)
}

async fn get_consultation(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let view = read_consultation(&state, &headers, &id).await?;
    Ok(json_response(
        StatusCode::OK,
        &view_json(&view, state.node.now()),
    ))
}

/// One file of the case extract, decrypted on the way out. The plaintext
/// passes through a temporary file that is unlinked before the first byte
/// is sent, so nothing readable outlives the request.
async fn get_file(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((id, index)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let index: u32 = index.parse().map_err(|_| {
        Problem::invalid(
            "index",
            format!("file index {index:?} is not a non-negative number"),
        )
    })?;
    let view = read_consultation(&state, &headers, &id).await?;
    let Some((info, _)) = view.files.get(index as usize) else {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "unknown-file",
            "No such file",
            format!(
                "consultation {id} has {} files; there is no file {index}",
                view.files.len()
            ),
        ));
    };
    let content_type = HeaderValue::from_str(&info.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let (file, size) = open_case_file(&state, view.consultation.id(), index).await?;
    let mut r = Body::from_stream(tokio_util::io::ReaderStream::new(file)).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    Ok(r)
}

/// Decrypts a case file into a temporary file in the upload directory and
/// returns it open and already unlinked.
async fn open_case_file(
    state: &AppState,
    id: ConsultationId,
    index: u32,
) -> Result<(tokio::fs::File, u64), Problem> {
    let failed = |e: std::io::Error| {
        tracing::error!("HTTP API: temporary file for a case file: {e}");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "file-unavailable",
            "The file could not be opened",
            format!("file {index} of consultation {}: {e}", id_text(&id)),
        )
    };
    let plain = match &state.upload_dir {
        Some(dir) => tempfile::NamedTempFile::new_in(dir),
        None => tempfile::NamedTempFile::new(),
    }
    .map_err(failed)?;
    let (_, size) = state
        .node
        .open_case_file(id, index, plain.path().to_owned())
        .await
        .map_err(node_problem)?;
    // Reopened before the name is removed: the open handle is all that remains.
    let file = plain.reopen().map_err(failed)?;
    drop(plain);
    Ok((tokio::fs::File::from_std(file), size))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    action: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    forward: Option<bool>,
    #[serde(default)]
    questions: Option<String>,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    slots: Option<Vec<SlotBody>>,
    #[serde(default)]
    slot: Option<SlotBody>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    consultant: Option<String>,
    #[serde(default)]
    conclusion: Option<ConclusionBody>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlotBody {
    start: String,
    end: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConclusionBody {
    #[serde(default)]
    authors: Option<Vec<String>>,
    diagnosis: String,
    recommendations: String,
    #[serde(default)]
    treatment_plan: String,
    #[serde(default)]
    further_studies: String,
}

/// The actions a user may ask for: every kind but `fail`, which only the
/// node takes (an escalation with no one left).
fn user_actions() -> impl Iterator<Item = ActionKind> {
    ActionKind::iter().filter(|k| *k != ActionKind::Fail)
}

fn slot_of(field: &str, s: &SlotBody) -> Result<Slot, Problem> {
    let start = parse_time(&format!("{field}.start"), &s.start)?;
    let end = parse_time(&format!("{field}.end"), &s.end)?;
    if end <= start {
        return Err(Problem::invalid(
            &format!("{field}.end"),
            format!("{field}.end must be after {field}.start"),
        ));
    }
    Ok(Slot { start, end })
}

/// The workflow action a body asks for, and the conclusion text with it.
fn action_of(b: ActionBody, user: &User) -> Result<(Action, Option<ConclusionText>), Problem> {
    let name = b.action.as_str();
    let Some(kind) = name
        .parse::<ActionKind>()
        .ok()
        .filter(|k| *k != ActionKind::Fail)
    else {
        let names: Vec<&str> = user_actions().map(ActionKind::name).collect();
        return Err(Problem::invalid(
            "action",
            format!("action: {name:?} is not an action: use {}", names.join("|")),
        ));
    };
    // Which fields each action takes; any other given field is refused.
    let uses: &[&str] = match kind {
        ActionKind::Reject => &["reason", "forward"],
        ActionKind::AskMore => &["questions"],
        ActionKind::Supply => &["note"],
        ActionKind::ProposeSlots => &["slots"],
        ActionKind::ConfirmSlot => &["slot"],
        ActionKind::CancelAppointment | ActionKind::Cancel => &["reason"],
        ActionKind::Note => &["text"],
        ActionKind::Assign => &["consultant"],
        ActionKind::Conclude => &["conclusion"],
        _ => &[],
    };
    let given = [
        ("reason", b.reason.is_some()),
        ("forward", b.forward.is_some()),
        ("questions", b.questions.is_some()),
        ("consultant", b.consultant.is_some()),
        ("note", b.note.is_some()),
        ("slots", b.slots.is_some()),
        ("slot", b.slot.is_some()),
        ("text", b.text.is_some()),
        ("conclusion", b.conclusion.is_some()),
    ];
    if let Some((field, _)) = given.iter().find(|(f, g)| *g && !uses.contains(f)) {
        return Err(Problem::invalid(
            field,
            format!("{field} does not apply to the action {name:?}"),
        ));
    }
    let why = format!("for the action {name:?}");
    let need = |v: Option<String>, field: &str| -> Result<String, Problem> {
        let v = v.ok_or_else(|| Problem::missing(field, &why))?;
        not_blank(field, &v)?;
        Ok(v)
    };
    let action = match kind {
        ActionKind::Receive => Action::Receive,
        ActionKind::Accept => Action::Accept,
        ActionKind::Assign => Action::Assign {
            consultant: need(b.consultant, "consultant")?,
        },
        ActionKind::Reject => Action::Reject {
            reason: need(b.reason, "reason")?,
            forward: b.forward.unwrap_or(false),
        },
        ActionKind::Start => Action::Start,
        ActionKind::AskMore => Action::AskMore {
            questions: need(b.questions, "questions")?,
        },
        ActionKind::Supply => Action::Supply {
            note: need(b.note, "note")?,
        },
        ActionKind::ProposeSlots => {
            let slots = b.slots.ok_or_else(|| Problem::missing("slots", &why))?;
            if slots.is_empty() {
                return Err(Problem::invalid(
                    "slots",
                    "slots must name at least one time",
                ));
            }
            let slots = slots
                .iter()
                .enumerate()
                .map(|(i, s)| slot_of(&format!("slots[{i}]"), s))
                .collect::<Result<Vec<_>, _>>()?;
            Action::ProposeSlots { slots }
        }
        ActionKind::ConfirmSlot => {
            let slot = b.slot.ok_or_else(|| Problem::missing("slot", &why))?;
            Action::ConfirmSlot {
                slot: slot_of("slot", &slot)?,
            }
        }
        ActionKind::CancelAppointment => Action::CancelAppointment {
            reason: need(b.reason, "reason")?,
        },
        ActionKind::Note => Action::Note {
            text: need(b.text, "text")?,
        },
        ActionKind::Conclude => {
            let c = b
                .conclusion
                .ok_or_else(|| Problem::missing("conclusion", &why))?;
            not_blank("conclusion.diagnosis", &c.diagnosis)?;
            not_blank("conclusion.recommendations", &c.recommendations)?;
            let authors = match c.authors {
                Some(a) if !a.is_empty() => a,
                _ => vec![user.name.clone()],
            };
            return Ok((
                Action::Conclude {
                    conclusion: [0; 32],
                },
                Some(ConclusionText {
                    authors,
                    diagnosis: c.diagnosis,
                    recommendations: c.recommendations,
                    treatment_plan: c.treatment_plan,
                    further_studies: c.further_studies,
                    attachments: Vec::new(),
                }),
            ));
        }
        ActionKind::Acknowledge => Action::Acknowledge,
        // `fail` was refused above: only the node fails a consultation.
        ActionKind::Cancel | ActionKind::Fail => Action::Cancel {
            reason: need(b.reason, "reason")?,
        },
    };
    Ok((action, None))
}

async fn act(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, Problem> {
    let user = state.authenticate(&headers, &[]).await?;
    let id = parse_id(&id)?;
    let bytes = read_body(body).await?;
    let b: ActionBody = decode(&bytes)?;
    let (action, conclusion) = action_of(b, user)?;
    let status = state
        .node
        .act(ActRequest {
            consultation: id,
            role: user.role,
            user: user.name.clone(),
            action,
            conclusion,
        })
        .await
        .map_err(node_problem)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"id": id_text(&id), "status": status.fhir_code()}),
    ))
}

/// Organization names from the directory, for the export.
async fn org_names(node: &NodeHandle) -> HashMap<OrgId, String> {
    let mut names = HashMap::new();
    if let Ok(status) = node.status().await {
        names.insert(status.org, status.name);
    }
    if let Ok(records) = node.records().await {
        for record in records {
            if let Some(cert) = record
                .decode_unverified()
                .ok()
                .and_then(|r| r.chain.org.decode_unverified().ok())
            {
                names.entry(cert.org).or_insert(cert.name);
            }
        }
    }
    names
}

async fn fhir_bundle(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let view = read_consultation(&state, &headers, &id).await?;
    let (journal, _) = state.node.journal().await.map_err(node_problem)?;
    let names = org_names(&state.node).await;
    let request = &view.consultation.request;
    let name_of = |org: &OrgId| names.get(org).cloned().unwrap_or_else(|| org.to_string());
    let requester_name = name_of(&request.requester);
    let consultant_name = name_of(&request.consultant);
    let conclusion = view.conclusion.as_ref().map(|f| &f.conclusion);
    let files = exported_files(&state, &view).await?;
    let bundle = fhir::export_bundle(&ConsultationRecord {
        files: &files,
        consultation: &view.consultation,
        extract: &view.extract,
        requester_name: &requester_name,
        consultant_name: &consultant_name,
        deadline: view.deadline.as_ref(),
        conclusion,
        journal: &journal,
    });
    let mut r = (StatusCode::OK, bundle.to_string()).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    Ok(r)
}

/// Case files up to this many bytes in all travel inline in an export, so
/// that importing the export opens the same consultation; beyond it each
/// file is given by its URL only, keeping the Bundle a size a hospital
/// system can hold in memory.
const INLINE_FILES_LIMIT: u64 = 32 << 20;

async fn exported_files(
    state: &AppState,
    view: &ConsultationView,
) -> Result<Vec<fhir::ExportedFile>, Problem> {
    let id = view.consultation.id();
    let total: u64 = view.files.iter().map(|(_, blob)| blob.size).sum();
    let mut files = Vec::with_capacity(view.files.len());
    for (index, (info, blob)) in view.files.iter().enumerate() {
        let data = if total <= INLINE_FILES_LIMIT {
            let (mut file, _) = open_case_file(state, id, index as u32).await?;
            let mut bytes = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut file, &mut bytes)
                .await
                .map_err(|e| {
                    Problem::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "file-unavailable",
                        "The file could not be opened",
                        format!("file {index} of consultation {}: {e}", id_text(&id)),
                    )
                })?;
            Some(bytes)
        } else {
            None
        };
        files.push(fhir::ExportedFile {
            info: info.clone(),
            blob: *blob,
            url: format!("/consultations/{}/files/{index}", id_text(&id)),
            data,
        });
    }
    Ok(files)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportQuery {
    #[serde(default)]
    min_level: Option<String>,
}

fn fhir_problem(e: FhirError) -> Problem {
    let path = e.path().to_owned();
    let syntax = matches!(e, FhirError::NotJson(_));
    let p = Problem::new(
        if syntax {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        },
        if syntax {
            "malformed-json"
        } else {
            "invalid-fhir"
        },
        if syntax {
            "The body is not valid JSON"
        } else {
            "The Bundle is not a consultation request this node can import"
        },
        e.to_string(),
    );
    if path.is_empty() { p } else { p.field(path) }
}

async fn import_fhir(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<ImportQuery>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Result<Response, Problem> {
    let user = state.authenticate(&headers, &[Role::Physician]).await?;
    let Query(query) = query.map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-query",
            "The query string is not valid",
            e.body_text(),
        )
    })?;
    let min_level = parse_level(&query.min_level.map(Value::String))?;
    let bytes = read_body(body).await?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed-json",
            "The body is not valid JSON",
            format!("the body is not UTF-8: {e}"),
        )
    })?;
    let imported = fhir::import_service_request_json(text).map_err(fhir_problem)?;
    let condition = if_none_exist(&headers)?;
    let consent = imported.consent.clone().ok_or_else(|| {
        consent_required(
            "the Bundle has no Consent resource for the ServiceRequest; the patient's consent is required",
        )
    })?;
    let identifier = condition.or_else(|| imported.identifier.clone());
    if let Some(identifier) = &identifier {
        check_identifier("ServiceRequest.identifier", identifier)?;
    }
    let fingerprint = {
        let mut h = blake3::Hasher::new();
        h.update(&imported.fingerprint());
        h.update(&[u8::from(min_level)]);
        *h.finalize().as_bytes()
    };
    let physician = if imported.physician.trim().is_empty() {
        user.name.clone()
    } else {
        imported.physician
    };
    let attachments = imported
        .attachments
        .into_iter()
        .map(|a| CaseFile {
            info: FileInfo {
                title: a.title,
                content_type: a.content_type,
            },
            content: Attachment::Bytes(a.data),
        })
        .collect();
    let new = NewConsultation {
        target: imported.target.map_or(Target::Best, Target::Org),
        specialty: imported.specialty,
        min_level,
        urgency: imported.urgency,
        region: None,
        consent,
        physician,
        extract: CaseExtract {
            summary: imported.case_summary,
            questions: imported.questions,
        },
        escalated_from: None,
    };
    let intake = match identifier {
        Some(identifier) => state
            .node
            .request_consultation_once(
                new,
                attachments,
                IntakeKey {
                    identifier: format!("fhir:{identifier}"),
                    fingerprint,
                },
            )
            .await
            .map_err(node_problem)?,
        None => {
            let (id, sent) = state
                .node
                .request_consultation(new, attachments)
                .await
                .map_err(node_problem)?;
            Intake::Opened(id, sent)
        }
    };
    Ok(intake_response(intake))
}

/// The identifier of a FHIR conditional create: `If-None-Exist:
/// identifier=system|value` (URL-encoded, as a search query). Only the
/// identifier search is supported; it names the same namespace as
/// `ServiceRequest.identifier`.
fn if_none_exist(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get("if-none-exist") else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| Problem::invalid("If-None-Exist", "If-None-Exist is not text"))?;
    let query = text.trim().trim_start_matches('?');
    let mut identifier = None;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if name != "identifier" {
            return Err(Problem::invalid(
                "If-None-Exist",
                format!(
                    "If-None-Exist: search parameter {name:?} is not supported; use identifier=system|value"
                ),
            ));
        }
        if identifier.replace(value.into_owned()).is_some() {
            return Err(Problem::invalid(
                "If-None-Exist",
                "If-None-Exist: give one identifier",
            ));
        }
    }
    let identifier = identifier.ok_or_else(|| {
        Problem::invalid(
            "If-None-Exist",
            "If-None-Exist: expected identifier=system|value",
        )
    })?;
    check_identifier("If-None-Exist", &identifier)?;
    Ok(Some(identifier))
}

// ---------------------------------------------------------------------------
// OpenAPI
// ---------------------------------------------------------------------------

async fn openapi() -> Response {
    json_response(StatusCode::OK, &openapi_document())
}

/// The OpenAPI 3.1 description of this API.
pub fn openapi_document() -> Value {
    let problem = |description: &str| {
        json!({
            "description": description,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        })
    };
    let errors = |codes: &[(&str, &str)]| -> Map<String, Value> {
        codes
            .iter()
            .map(|(code, what)| ((*code).to_owned(), problem(what)))
            .collect()
    };
    let with = |mut base: Map<String, Value>, ok: (&str, Value)| -> Value {
        base.insert(ok.0.to_owned(), ok.1);
        Value::Object(base)
    };
    let id_param = json!({
        "name": "id", "in": "path", "required": true,
        "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}
    });
    let auth = [
        ("401", "Missing or unknown token"),
        ("403", "The user's role may not do this"),
    ];
    let json_ok = |desc: &str, schema: &str| json!({"description": desc, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    let created = json_ok("Consultation opened and sent", "Created");
    let existing = json_ok(
        "The identifier already opened this consultation with the same request; nothing was sent",
        "Existing",
    );
    let with_both = |mut base: Map<String, Value>, a: (&str, Value), b: (&str, Value)| -> Value {
        base.insert(a.0.to_owned(), a.1);
        base.insert(b.0.to_owned(), b.1);
        Value::Object(base)
    };
    let status_codes = [
        "requested",
        "received",
        "accepted",
        "rejected",
        "in-progress",
        "on-hold",
        "completed",
        "cancelled",
        "failed",
    ];
    let paths = json!({
            "/consultations": {
                "get": {
                    "summary": "List consultations",
                    "parameters": [{"name": "status", "in": "query", "required": false,
                        "schema": {"type": "string", "enum": status_codes}}],
                    "responses": with(errors(&[("400", "Unknown status"), auth[0]]),
                        ("200", json_ok("The consultations, newest first", "ConsultationList")))
                },
                "post": {
                    "summary": "Request a consultation (physician)",
                    "requestBody": {"required": true, "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/NewConsultation"}},
                        "multipart/form-data": {
                            "schema": {"type": "object", "required": ["request"], "properties": {
                                "request": {"$ref": "#/components/schemas/NewConsultation"},
                                "attachment": {"type": "array", "items": {"type": "string", "contentMediaType": "application/octet-stream"}}
                            }},
                            "encoding": {"request": {"contentType": "application/json"}}
                        }
                    }},
                    "parameters": [{"name": "Idempotency-Key", "in": "header", "required": false,
                        "description": "The client's identifier of this request: a retry with the same request returns the consultation it opened (200), a different request is refused (409)",
                        "schema": {"type": "string", "maxLength": MAX_IDENTIFIER}}],
                    "responses": with_both(errors(&[("400", "Malformed body or invalid field"), auth[0], auth[1],
                        ("409", "The idempotency key already opened a consultation with a different request"),
                        ("422", "Consent missing, or no organization offers this")]), ("201", created.clone()),
                        ("200", existing.clone()))
                }
            },
            "/consultations/{id}": {
                "get": {
                    "summary": "One consultation with its history",
                    "parameters": [id_param.clone()],
                    "responses": with(errors(&[auth[0], ("404", "Unknown consultation")]),
                        ("200", json_ok("The consultation", "Consultation")))
                }
            },
            "/consultations/{id}/actions": {
                "post": {
                    "summary": "Take a workflow step as the token's user, in their role",
                    "parameters": [id_param.clone()],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ActionRequest"}}}},
                    "responses": with(errors(&[("400", "Malformed body or invalid field"), auth[0],
                        ("403", "The role may not take this step"), ("404", "Unknown consultation"),
                        ("409", "The step does not fit the consultation's state or schedule")]),
                        ("200", json_ok("The consultation's new status", "ActionResult")))
                }
            },
            "/consultations/{id}/fhir": {
                "get": {
                    "summary": "The consultation as a FHIR R4 Bundle",
                    "parameters": [id_param],
                    "responses": with(errors(&[auth[0], ("404", "Unknown consultation")]),
                        ("200", json!({"description": "A FHIR R4 Bundle (collection)",
                            "content": {FHIR_JSON: {"schema": {"type": "object"}}}})))
                }
            },
            "/consultations/{id}/files/{index}": {
                "get": {
                    "summary": "One file of the case extract, decrypted, with its media type",
                    "parameters": [id_param, {"name": "index", "in": "path", "required": true,
                        "schema": {"type": "integer", "minimum": 0}}],
                    "responses": with(errors(&[auth[0], ("404", "Unknown consultation or file")]),
                        ("200", json!({"description": "The file's bytes",
                            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}})))
                }
            },
            "/fhir/ServiceRequest": {
                "post": {
                    "summary": "Import a FHIR Bundle with a ServiceRequest (and Consent) and open a consultation (physician)",
                    "parameters": [{"name": "min_level", "in": "query", "required": false,
                        "schema": {"type": "string", "enum": ["district", "regional", "federal"]}},
                        {"name": "If-None-Exist", "in": "header", "required": false,
                        "description": "FHIR conditional create: identifier=system|value; otherwise ServiceRequest.identifier is the request's identifier",
                        "schema": {"type": "string"}}],
                    "requestBody": {"required": true, "content": {FHIR_JSON: {"schema": {"type": "object"}}, "application/json": {"schema": {"type": "object"}}}},
                    "responses": with_both(errors(&[("400", "Not JSON"), auth[0], auth[1],
                        ("409", "The identifier already opened a consultation with a different request"),
                        ("422", "Not an importable Bundle, or consent missing")]), ("201", created),
                        ("200", existing))
                }
            },
            "/openapi.json": {
                "get": {"summary": "This description", "security": [],
                    "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object", "required": ["openapi", "paths"]}}}}}}
            }
    });
    let mut schemas = json!({
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status", "detail"],
                    "properties": {
                        "type": {"type": "string"}, "title": {"type": "string"},
                        "status": {"type": "integer"}, "detail": {"type": "string"},
                        "field": {"type": "string", "description": "The offending field, when there is one"}
                    }
                },
                "Slot": {
                    "type": "object", "additionalProperties": false, "required": ["start", "end"],
                    "properties": {"start": {"type": "string", "format": "date-time"}, "end": {"type": "string", "format": "date-time"}}
                },
    });
    let more = json!({
                "NewConsultation": {
                    "type": "object", "additionalProperties": false,
                    "required": ["specialty", "urgency", "summary", "questions"],
                    "properties": {
                        "specialty": {"type": "string", "description": "Specialty slug, e.g. cardiology"},
                        "min_level": {"oneOf": [{"type": "string", "enum": ["district", "regional", "federal"]}, {"type": "integer", "minimum": 1, "maximum": 3}]},
                        "urgency": {"type": "string", "enum": ["planned", "urgent", "emergency"]},
                        "target": {"type": "string", "description": "Organization id (peer id); omitted: routed by specialty"},
                        "region": {"type": "string"},
                        "consent": {"type": "object", "additionalProperties": false, "required": ["method"],
                            "properties": {"by": {"type": "string", "enum": ["patient", "representative"],
                                "description": "Who gave consent, as a role (default patient); recorded with the physician, never a name"}, "method": {"type": "string", "enum": ["written", "electronic", "oral"]},
                                "witness": {"type": "string"}, "at": {"type": "string", "format": "date-time"}}},
                        "emergency_override": {"type": "object", "additionalProperties": false, "required": ["reason"],
                            "properties": {"reason": {"type": "string"}}},
                        "physician": {"type": "string", "description": "Defaults to the token's user"},
                        "summary": {"type": "string"}, "questions": {"type": "string"},
                        "idempotency_key": {"type": "string", "maxLength": MAX_IDENTIFIER,
                            "description": "As the Idempotency-Key header, for clients that cannot set headers"}
                    }
                },
                "Created": {
                    "type": "object",
                    "properties": {"id": {"type": "string"}, "recipient": {"type": "string"}, "recipient_name": {"type": "string"},
                        "next_hop": {"type": "string"}, "package": {"type": "string"}}
                },
                "Existing": {
                    "type": "object",
                    "properties": {"id": {"type": "string"}, "existing": {"type": "boolean", "const": true}}
                },
    });
    let views = json!({
                "ConsultationSummary": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"}, "status": {"type": "string", "enum": status_codes},
                        "urgency": {"type": "string"}, "specialty": {"type": "string"}, "side": {"type": "string"},
                        "counterpart": {"type": "string"}, "created": {"type": "string", "format": "date-time"},
                        "deadline_due": {"type": ["string", "null"], "format": "date-time"},
                        "time_left_seconds": {"type": ["integer", "null"]},
                        "deadline_state": {"type": ["string", "null"]}, "acknowledged": {"type": "boolean"}
                    }
                },
                "ConsultationList": {
                    "type": "object",
                    "properties": {"consultations": {"type": "array", "items": {"$ref": "#/components/schemas/ConsultationSummary"}}}
                },
                "Consultation": {
                    "allOf": [{"$ref": "#/components/schemas/ConsultationSummary"}, {
                        "type": "object",
                        "properties": {
                            "requester": {"type": "string"}, "consultant": {"type": "string"}, "physician": {"type": "string"},
                            "consent": {"type": "object"}, "appointment": {"type": "object"}, "deadline": {"type": ["object", "null"]},
                            "extract": {"type": "object"},
                            "files": {"type": "array", "items": {"type": "object",
                                "required": ["content_type", "size", "blake3", "href"],
                                "properties": {
                                    "title": {"type": ["string", "null"]},
                                    "content_type": {"type": "string"},
                                    "size": {"type": ["integer", "null"], "minimum": 0},
                                    "blake3": {"type": "string"},
                                    "href": {"type": "string"}}}},
                            "conclusion": {"type": ["object", "null"]},
                            "history": {"type": "array", "items": {"type": "object",
                                "properties": {"seq": {"type": "integer"}, "actor": {"type": "string"}, "role": {"type": "string"},
                                    "user": {"type": "string"}, "at": {"type": "string", "format": "date-time"},
                                    "action": {"type": "string"}, "details": {"type": "object"}}}}
                        }
                    }]
                },
    });
    let actions = json!({
                "ActionRequest": {
                    "type": "object", "additionalProperties": false, "required": ["action"],
                    "properties": {
                        "action": {"type": "string", "enum": user_actions().map(ActionKind::name).collect::<Vec<_>>()},
                        "reason": {"type": "string", "description": "reject, cancel_appointment, cancel"},
                        "forward": {"type": "boolean", "description": "reject"},
                        "questions": {"type": "string", "description": "ask_more"},
                        "note": {"type": "string", "description": "supply"},
                        "slots": {"type": "array", "items": {"$ref": "#/components/schemas/Slot"}, "description": "propose_slots"},
                        "slot": {"$ref": "#/components/schemas/Slot", "description": "confirm_slot"},
                        "text": {"type": "string", "description": "note"},
                        "consultant": {"type": "string", "description": "assign: the consultant the coordinator passes the request to"},
                        "conclusion": {"type": "object", "additionalProperties": false, "description": "conclude",
                            "required": ["diagnosis", "recommendations"],
                            "properties": {"authors": {"type": "array", "items": {"type": "string"}},
                                "diagnosis": {"type": "string"}, "recommendations": {"type": "string"},
                                "treatment_plan": {"type": "string"}, "further_studies": {"type": "string"}}}
                    }
                },
                "ActionResult": {
                    "type": "object",
                    "properties": {"id": {"type": "string"}, "status": {"type": "string", "enum": status_codes}}
                }
    });
    if let Some(all) = schemas.as_object_mut() {
        for part in [more, views, actions] {
            if let Value::Object(part) = part {
                all.extend(part);
            }
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Konsilium node API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Consultations between medical organizations. Errors are RFC 9457 problem documents."
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_only_as_32_hex_digits() {
        let id = ConsultationId([0xab; 16]);
        assert_eq!(parse_id(&id.to_string()).unwrap(), id);
        for bad in ["", "zz", &"a".repeat(31), &"é".repeat(16), &"g".repeat(32)] {
            assert_eq!(parse_id(bad).unwrap_err().status, StatusCode::NOT_FOUND);
        }
    }

    #[test]
    fn unknown_fields_are_named() {
        let e = decode::<ActionBody>(br#"{"action":"accept","bogus":1}"#).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.detail.contains("bogus"), "{}", e.detail);
        let e = decode::<NewConsultationBody>(br#"{"specialty":"cardiology","urgency":"planned","summary":"s","questions":"q","consent":{"by":1,"method":"written"}}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("consent.by"));
        let e = decode::<ActionBody>(b"{not json").unwrap_err();
        assert_eq!(e.kind, "malformed-json");
    }

    #[test]
    fn actions_take_only_their_fields() {
        let user = User::with_token("u", Role::Consultant, "t");
        let body = |text: &str| decode::<ActionBody>(text.as_bytes()).unwrap();
        let e = action_of(body(r#"{"action":"accept","reason":"x"}"#), &user).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("reason"));
        let e = action_of(body(r#"{"action":"reject"}"#), &user).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("reason"));
        let e = action_of(body(r#"{"action":"fail","reason":"x"}"#), &user).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("action"));
        let (a, _) = action_of(
            body(r#"{"action":"propose_slots","slots":[{"start":"2030-01-01T10:00:00Z","end":"2030-01-01T11:00:00Z"}]}"#),
            &user,
        )
        .unwrap();
        assert!(matches!(a, Action::ProposeSlots { slots } if slots.len() == 1));
        let e = action_of(
            body(r#"{"action":"confirm_slot","slot":{"start":"2030-01-01T10:00:00Z","end":"yesterday"}}"#),
            &user,
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("slot.end"));
        let (a, text) = action_of(
            body(r#"{"action":"conclude","conclusion":{"diagnosis":"d","recommendations":"r"}}"#),
            &user,
        )
        .unwrap();
        assert!(matches!(a, Action::Conclude { .. }));
        assert_eq!(text.unwrap().authors, vec!["u".to_owned()]);
    }

    #[test]
    fn consent_rules() {
        let e = consent_of(
            None,
            None,
            Urgency::Planned,
            "Dr. Ivanova",
            crate::node::now(),
        )
        .unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        let o = || {
            Some(OverrideBody {
                reason: "unconscious".into(),
            })
        };
        assert_eq!(
            consent_of(
                None,
                o(),
                Urgency::Urgent,
                "Dr. Ivanova",
                crate::node::now()
            )
            .unwrap_err()
            .status,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert!(
            consent_of(
                None,
                o(),
                Urgency::Emergency,
                "Dr. Ivanova",
                crate::node::now()
            )
            .is_ok()
        );
        let oral = ConsentBody {
            by: Some("patient".into()),
            method: "oral".into(),
            witness: None,
            at: None,
        };
        assert_eq!(
            consent_of(
                Some(oral),
                None,
                Urgency::Planned,
                "Dr. Ivanova",
                crate::node::now()
            )
            .unwrap_err()
            .field
            .as_deref(),
            Some("consent.witness")
        );
        // Who consented is a role with the physician who recorded it, never a name.
        let by = |by: Option<&str>| {
            let body = ConsentBody {
                by: by.map(str::to_owned),
                method: "written".into(),
                witness: None,
                at: None,
            };
            consent_of(
                Some(body),
                None,
                Urgency::Planned,
                "Dr. Ivanova",
                crate::node::now(),
            )
            .map(|c| match c {
                Consent::Given { by, .. } => by,
                Consent::EmergencyOverride { .. } => unreachable!("consent was given"),
            })
        };
        assert_eq!(by(None).unwrap(), "the patient; recorded by Dr. Ivanova");
        assert_eq!(
            by(Some("Representative")).unwrap(),
            "the patient's legal representative; recorded by Dr. Ivanova"
        );
        assert_eq!(
            by(Some("Ivan Sidorov")).unwrap_err().field.as_deref(),
            Some("consent.by")
        );
    }

    #[test]
    fn token_hashes_round_trip_through_hex() {
        let u = User::with_token_hash_hex("u", Role::Operator, &token_hash_hex("s3cret")).unwrap();
        assert_eq!(
            u.token_hash,
            User::with_token("u", Role::Operator, "s3cret").token_hash
        );
        assert!(!format!("{u:?}").contains(&token_hash_hex("s3cret")));
        for bad in ["", "00", &"g".repeat(64), &"é".repeat(32)] {
            assert!(User::with_token_hash_hex("u", Role::Operator, bad).is_err());
        }
    }

    #[test]
    fn levels_parse_from_names_and_numbers() {
        assert_eq!(parse_level(&None).unwrap(), OrgLevel::District);
        assert_eq!(
            parse_level(&Some(json!("federal"))).unwrap(),
            OrgLevel::Federal
        );
        assert_eq!(parse_level(&Some(json!(2))).unwrap(), OrgLevel::Regional);
        assert!(parse_level(&Some(json!(7))).is_err());
        assert!(parse_level(&Some(json!(-1))).is_err());
        assert!(parse_level(&Some(json!([]))).is_err());
    }
}
