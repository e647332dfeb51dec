//! The admin channel: how the `konsilium` CLI asks a running node what it
//! sees.
//!
//! HTTP over a Unix socket in the node's data directory, mode 0600: only the
//! account that runs the node (and root) can connect, so the socket's
//! permissions are the operator's credential and no token has to be kept
//! anywhere. The CLI never opens the node's sled database while the node
//! runs; everything goes through here. `curl --unix-socket` works too.
//!
//! The Prometheus endpoint is separate ([`serve_metrics`]): a TCP listener,
//! loopback by default, because scrapers speak TCP.

use crate::node::{Inspect, NodeError, NodeHandle};
use axum::Router;
use axum::extract::{Path as UrlPath, Query as UrlQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use konsilium_protocol::cert::{OrgLevel, RegionCode};
use konsilium_protocol::directory::Query;
use konsilium_protocol::identity::OrgId;
use konsilium_protocol::route::RouteRequest;
use konsilium_protocol::urgency::Urgency;
use konsilium_protocol::workflow::{ConsultationId, Status};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::task::JoinHandle;

/// The admin socket of a node whose data directory is `data_dir`.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.sock")
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(
        "no node is running at {socket}: start it with `konsilium run --config <node.toml>`, or point --config / --socket at the running node"
    )]
    NotRunning { socket: PathBuf },
    #[error(
        "permission denied on {socket}: run the command as the account that runs the node (or root)"
    )]
    PermissionDenied { socket: PathBuf },
    #[error("a node is already running at {socket}")]
    AlreadyRunning { socket: PathBuf },
    #[error("cannot open the admin socket {socket}: {source}")]
    Socket {
        socket: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen for metrics on {addr}: {source}")]
    MetricsBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the node at {socket} did not answer properly: {reason}")]
    Protocol { socket: PathBuf, reason: String },
    /// The node understood the request and refused it (bad filter, unknown id).
    #[error("{0}")]
    Refused(String),
}

/// A running admin channel; dropping it does not stop it, [`AdminServer::stop`] does.
pub struct AdminServer {
    socket: PathBuf,
    stop: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl AdminServer {
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Stops serving and removes the socket file.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// How `POST /v1/reload` asks the process that read the configuration to
/// read it again; the answer says what changed, or why nothing did.
pub type ReloadRequests =
    tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<Result<String, String>>>;

/// Opens the admin socket for a running node. A socket file left by a node
/// that crashed is replaced; one that still answers means another node uses
/// this data directory, which is refused.
pub async fn serve(handle: Arc<NodeHandle>, socket: &Path) -> Result<AdminServer, AdminError> {
    serve_with_reload(handle, socket, None).await
}

/// Like [`serve`], for a node run from a configuration file that can be
/// read again (`konsilium reload`).
pub async fn serve_with_reload(
    handle: Arc<NodeHandle>,
    socket: &Path,
    reload: Option<ReloadRequests>,
) -> Result<AdminServer, AdminError> {
    use std::os::unix::fs::PermissionsExt;
    let socket = socket.to_path_buf();
    if socket.exists() {
        if tokio::net::UnixStream::connect(&socket).await.is_ok() {
            return Err(AdminError::AlreadyRunning { socket });
        }
        std::fs::remove_file(&socket).map_err(|source| AdminError::Socket {
            socket: socket.clone(),
            source,
        })?;
    }
    let fail = |source| AdminError::Socket {
        socket: socket.clone(),
        source,
    };
    let listener = tokio::net::UnixListener::bind(&socket).map_err(fail)?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
    let app = Router::new()
        .route("/v1/status", get(|s| view(s, Inspect::Status)))
        .route("/v1/peers", get(|s| view(s, Inspect::Peers)))
        .route("/v1/directory", get(directory))
        .route("/v1/route", get(route))
        .route("/v1/requests", get(requests))
        .route("/v1/requests/{id}", get(request))
        .route("/v1/outbox", get(|s| view(s, Inspect::Outbox)))
        .route("/v1/sla", get(|s| view(s, Inspect::Sla)))
        .route("/v1/sessions", get(|s| view(s, Inspect::Sessions)))
        .route(
            "/v1/journal/verify",
            get(|s| view(s, Inspect::JournalVerify)),
        )
        .route("/v1/journal/tail", get(journal_tail))
        .route("/v1/journal/stats", get(|s| view(s, Inspect::JournalStats)))
        .route("/v1/certs", get(|s| view(s, Inspect::Certs)))
        .route("/v1/health", get(|s| view(s, Inspect::Health)))
        .route("/v1/recover", post(recover))
        .route("/v1/probe", post(probe))
        .route("/v1/rotate-sealing-key", post(rotate_sealing_key))
        .route("/v1/backup", post(backup))
        .route("/v1/reload", post(move || reload_config(reload.clone())))
        .route("/metrics", get(metrics))
        .with_state(handle);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!("admin channel stopped: {e}");
        }
    });
    tracing::info!(socket = %socket.display(), "admin channel listening");
    Ok(AdminServer { socket, stop, task })
}

/// Serves `/metrics` over TCP for Prometheus until `shutdown` resolves.
pub async fn serve_metrics(
    handle: Arc<NodeHandle>,
    addr: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, JoinHandle<()>), AdminError> {
    let fail = |source| AdminError::MetricsBind { addr, source };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(fail)?;
    let bound = listener.local_addr().map_err(fail)?;
    if !bound.ip().is_loopback() {
        tracing::warn!(%bound, "metrics are served beyond loopback");
    }
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(handle);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!("metrics endpoint stopped: {e}");
        }
    });
    Ok((bound, task))
}

type Node = State<Arc<NodeHandle>>;

fn refuse(status: StatusCode, message: String) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

async fn view(State(node): Node, what: Inspect) -> Response {
    match node.inspect(what).await {
        Ok(value) => axum::Json(value).into_response(),
        Err(e @ NodeError::UnknownConsultation(_)) => refuse(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ NodeError::Stopped) => refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn metrics(State(node): Node) -> Response {
    match node.metrics().await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                crate::telemetry::metrics::CONTENT_TYPE,
            )],
            text,
        )
            .into_response(),
        Err(e) => refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// Parses an optional query parameter; the error names it.
fn parse<T: std::str::FromStr>(field: &str, value: Option<&str>) -> Result<Option<T>, String>
where
    T::Err: std::fmt::Display,
{
    value
        .filter(|v| !v.is_empty())
        .map(|v| v.parse::<T>().map_err(|e| format!("{field}: {e}")))
        .transpose()
}

#[derive(Deserialize)]
struct DirectoryFilter {
    specialty: Option<String>,
    level: Option<String>,
    region: Option<String>,
    urgency: Option<String>,
}

fn directory_query(f: &DirectoryFilter) -> Result<Query, String> {
    Ok(Query {
        specialty: parse("specialty", f.specialty.as_deref())?,
        min_level: parse("level", f.level.as_deref())?,
        region: parse("region", f.region.as_deref())?,
        urgency: parse("urgency", f.urgency.as_deref())?,
    })
}

async fn directory(node: Node, UrlQuery(f): UrlQuery<DirectoryFilter>) -> Response {
    match directory_query(&f) {
        Ok(q) => view(node, Inspect::Directory(q)).await,
        Err(e) => refuse(StatusCode::BAD_REQUEST, e),
    }
}

async fn reload_config(reload: Option<ReloadRequests>) -> Response {
    let Some(reload) = reload else {
        return refuse(
            StatusCode::CONFLICT,
            "this node was not started from a configuration file: nothing to reload".into(),
        );
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    if reload.send(tx).await.is_err() {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the node is stopping".into(),
        );
    }
    match rx.await {
        Ok(Ok(summary)) => axum::Json(serde_json::json!({ "reloaded": summary })).into_response(),
        Ok(Err(reason)) => refuse(StatusCode::BAD_REQUEST, reason),
        Err(_) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the node is stopping".into(),
        ),
    }
}

#[derive(Deserialize)]
struct BackupParams {
    /// A new directory, as an absolute path (the node's working directory
    /// is not the operator's).
    to: Option<String>,
}

async fn backup(State(node): Node, UrlQuery(p): UrlQuery<BackupParams>) -> Response {
    let Some(to) = p.to.filter(|t| Path::new(t).is_absolute()) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "to: the backup's directory, as an absolute path".into(),
        );
    };
    match node.backup(PathBuf::from(to)).await {
        Ok(manifest) => axum::Json(manifest).into_response(),
        Err(e @ NodeError::Backup(_)) => refuse(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e @ NodeError::Stopped) => refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Deserialize)]
struct RecoverParams {
    /// RFC 3339, or `all`.
    since: Option<String>,
    /// Organization ids, separated by commas.
    from: Option<String>,
}

fn recover_params(
    p: &RecoverParams,
) -> Result<(Option<konsilium_protocol::time::Timestamp>, Vec<OrgId>), String> {
    let since = match p.since.as_deref().map(str::trim) {
        None | Some("") => None,
        Some("all") => Some(konsilium_protocol::time::Timestamp::default()),
        Some(t) => parse("since", Some(t))?,
    };
    let from = p
        .from
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<OrgId>().map_err(|e| format!("from: {s:?}: {e}")))
        .collect::<Result<_, _>>()?;
    Ok((since, from))
}

/// Asks counterparts for lost consultation state and answers once the
/// round is over, which can take minutes when some are unreachable.
async fn recover(State(node): Node, UrlQuery(p): UrlQuery<RecoverParams>) -> Response {
    let (since, from) = match recover_params(&p) {
        Ok(parsed) => parsed,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    match node.recover(since, from).await {
        Ok(report) => axum::Json(report).into_response(),
        Err(e @ NodeError::Stopped) => refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn rotate_sealing_key(State(node): Node) -> Response {
    match node.rotate_sealing_key().await {
        Ok(report) => axum::Json(report).into_response(),
        Err(e @ NodeError::Stopped) => refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Deserialize)]
struct ProbeParams {
    org: Option<String>,
    /// Seconds to wait for the receipt (default 60, at most 3600).
    timeout: Option<u64>,
    /// A video link instead of a package.
    #[serde(default)]
    video: bool,
}

/// Sends a probe package and answers with its receipt's round trip.
async fn probe(State(node): Node, UrlQuery(p): UrlQuery<ProbeParams>) -> Response {
    let org = match p.org.as_deref().map(str::trim) {
        None | Some("") => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "org: name the organization to probe".into(),
            );
        }
        Some(text) => match text.parse::<OrgId>() {
            Ok(org) => org,
            Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("org: {text:?}: {e}")),
        },
    };
    let timeout = std::time::Duration::from_secs(p.timeout.unwrap_or(60).clamp(1, 3600));
    let probed = match p.video {
        true => (node.probe_video(org, timeout).await).map(|r| axum::Json(r).into_response()),
        false => (node.probe(org, timeout).await).map(|r| axum::Json(r).into_response()),
    };
    match probed {
        Ok(response) => response,
        Err(e @ NodeError::Video(_)) => refuse(StatusCode::CONFLICT, e.to_string()),
        Err(e @ (NodeError::UnknownOrg(_) | NodeError::RefusedOrg { .. })) => {
            refuse(StatusCode::NOT_FOUND, e.to_string())
        }
        Err(e @ NodeError::Timeout(_)) => refuse(StatusCode::GATEWAY_TIMEOUT, e.to_string()),
        Err(e @ NodeError::Stopped) => refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Deserialize)]
struct RouteParams {
    specialty: Option<String>,
    min_level: Option<String>,
    urgency: Option<String>,
    region: Option<String>,
}

fn route_request(p: &RouteParams) -> Result<RouteRequest, String> {
    Ok(RouteRequest {
        specialty: parse("specialty", p.specialty.as_deref())?
            .ok_or("specialty is required (a slug or code, see `konsilium specialties`)")?,
        min_level: parse("min_level", p.min_level.as_deref())?.unwrap_or(OrgLevel::District),
        urgency: parse("urgency", p.urgency.as_deref())?.unwrap_or(Urgency::Planned),
        region: parse::<RegionCode>("region", p.region.as_deref())?,
        exclude: Default::default(),
        // A dry run has no case yet: it shows the order a case with this
        // id would meet (equally good centers share real cases by theirs).
        case: [0; 16],
    })
}

async fn route(node: Node, UrlQuery(p): UrlQuery<RouteParams>) -> Response {
    match route_request(&p) {
        Ok(request) => view(node, Inspect::Route(request)).await,
        Err(e) => refuse(StatusCode::BAD_REQUEST, e),
    }
}

#[derive(Deserialize)]
struct RequestsFilter {
    state: Option<String>,
}

async fn requests(node: Node, UrlQuery(f): UrlQuery<RequestsFilter>) -> Response {
    let state = match f.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(code) => match Status::from_fhir_code(code) {
            Some(s) => Some(s),
            None => {
                let known: Vec<&str> = Status::ALL.iter().map(|s| s.fhir_code()).collect();
                return refuse(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "state: {code:?} is not a state; use one of {}",
                        known.join(", ")
                    ),
                );
            }
        },
    };
    view(node, Inspect::Requests(state)).await
}

async fn request(node: Node, UrlPath(id): UrlPath<String>) -> Response {
    match id.parse::<ConsultationId>() {
        Ok(id) => view(node, Inspect::Request(id)).await,
        Err(e) => refuse(StatusCode::BAD_REQUEST, format!("request id: {e}")),
    }
}

#[derive(Deserialize)]
struct TailParams {
    n: Option<usize>,
}

async fn journal_tail(node: Node, UrlQuery(p): UrlQuery<TailParams>) -> Response {
    view(node, Inspect::JournalTail(p.n.unwrap_or(20))).await
}

/// The CLI's side of the admin channel.
pub struct AdminClient {
    socket: PathBuf,
}

impl AdminClient {
    pub fn new(socket: PathBuf) -> Self {
        Self { socket }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// GETs `path` (with its query string) and returns the body. A node
    /// that is not there is [`AdminError::NotRunning`], not an I/O error.
    pub async fn get(&self, path: &str) -> Result<String, AdminError> {
        self.send(hyper::Method::GET, path).await
    }

    /// POSTs to `path`: an action, such as `/v1/recover`.
    pub async fn post(&self, path: &str) -> Result<String, AdminError> {
        self.send(hyper::Method::POST, path).await
    }

    async fn send(&self, method: hyper::Method, path: &str) -> Result<String, AdminError> {
        use http_body_util::BodyExt;
        let stream = match tokio::net::UnixStream::connect(&self.socket).await {
            Ok(s) => s,
            Err(e) => {
                return Err(match e.kind() {
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                        AdminError::NotRunning {
                            socket: self.socket.clone(),
                        }
                    }
                    std::io::ErrorKind::PermissionDenied => AdminError::PermissionDenied {
                        socket: self.socket.clone(),
                    },
                    _ => AdminError::Socket {
                        socket: self.socket.clone(),
                        source: e,
                    },
                });
            }
        };
        let broken = |reason: String| AdminError::Protocol {
            socket: self.socket.clone(),
            reason,
        };
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| broken(e.to_string()))?;
        tokio::spawn(connection);
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "konsilium")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .map_err(|e| broken(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| broken(e.to_string()))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| broken(e.to_string()))?
            .to_bytes();
        let text = String::from_utf8_lossy(&body).into_owned();
        if status.is_success() {
            return Ok(text);
        }
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(text);
        Err(AdminError::Refused(message))
    }

    /// GETs a view and decodes it.
    pub async fn view<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<(T, String), AdminError> {
        let text = self.get(path).await?;
        let value = serde_json::from_str(&text).map_err(|e| AdminError::Protocol {
            socket: self.socket.clone(),
            reason: format!("{path}: {e}"),
        })?;
        Ok((value, text))
    }
}
