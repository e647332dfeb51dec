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

mod actions;
mod auth;
mod bundles;
mod consent;
mod consultations;
mod files;
mod idempotency;
mod intake;
mod openapi;
mod params;
mod problems;
mod render;
#[cfg(test)]
mod tests;
mod tls;
mod uploads;
mod video;
mod views;

pub use crate::config::api::{ApiConfig, ApiError, TlsFiles, User};
pub use auth::ApiUsers;
pub use idempotency::MAX_IDENTIFIER;
pub use openapi::openapi_document;
pub use problems::Problem;

use self::actions::act;
use self::bundles::{fhir_bundle, import_fhir};
use self::consultations::{create_consultation, get_consultation, list_consultations};
use self::files::get_file;
use self::openapi::openapi;
use self::problems::{method_not_allowed, not_found};
use crate::node::NodeHandle;
use axum::Router;
use axum::routing::{delete, get, post};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// The most a multipart request (a consultation with its attachments) may carry.
pub const MAX_UPLOAD: usize = 4 << 30;

/// The largest JSON body accepted (a FHIR Bundle with a long case extract fits).
pub const MAX_BODY: usize = 4 << 20;

const PROBLEM_JSON: &str = "application/problem+json";
const FHIR_JSON: &str = "application/fhir+json";
const PROBLEM_BASE: &str = "urn:konsilium:problem:";

struct AppState {
    node: Arc<NodeHandle>,
    users: Arc<ApiUsers>,
    upload_dir: Option<PathBuf>,
    failed_logins: auth::FailedLogins,
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
    let users = Arc::new(ApiUsers::new(config.users.clone()));
    serve_with_users(handle, config, users, shutdown).await
}

/// Like [`serve_until`], with users the caller can replace while it serves
/// (a configuration reload).
pub async fn serve_with_users(
    handle: Arc<NodeHandle>,
    config: ApiConfig,
    users: Arc<ApiUsers>,
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
    let tls = match &config.tls {
        Some(files) => Some(tls::server_config(files)?),
        None if !addr.ip().is_loopback() => {
            tracing::warn!(%addr, "the HTTP API listens beyond loopback without TLS: configure api.tls_certificate and api.tls_key, or put a TLS proxy in front");
            None
        }
        None => None,
    };
    let app = router_with_users(handle, users, config.upload_dir);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let task = match tls {
        Some(tls) => {
            let listener = tls::TlsListener::new(listener, tls)
                .map_err(|source| ApiError::Bind { addr, source })?;
            tokio::spawn(run(listener, app, shutdown))
        }
        None => tokio::spawn(run(listener, app, shutdown)),
    };
    tracing::info!(%addr, scheme, "HTTP API listening");
    Ok((addr, task))
}

async fn run<L>(
    listener: L,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!("HTTP API stopped: {e}");
    }
}

/// The API as a router, for embedding in another server.
pub fn router(handle: Arc<NodeHandle>, users: Vec<User>, upload_dir: Option<PathBuf>) -> Router {
    router_with_users(handle, Arc::new(ApiUsers::new(users)), upload_dir)
}

fn router_with_users(
    handle: Arc<NodeHandle>,
    users: Arc<ApiUsers>,
    upload_dir: Option<PathBuf>,
) -> Router {
    let state = Arc::new(AppState {
        node: handle,
        users,
        upload_dir,
        failed_logins: Default::default(),
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
        .route("/consultations/{id}/video", post(video::open_video))
        .route("/consultations/{id}/room", get(video::room))
        .route("/consultations/{id}/whip", post(video::whip))
        .route("/consultations/{id}/whep", post(video::whep))
        .route("/consultations/{id}/whip/{seat}", delete(video::leave))
        .route("/consultations/{id}/whep/{seat}", delete(video::leave))
        .route("/fhir/ServiceRequest", post(import_fhir))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}
