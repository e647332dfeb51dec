//! Case files served decrypted, through temporary files that nothing
//! readable outlives.

use super::consultations::read_consultation;
use super::params::ConsultationPath;
use super::problems::{Problem, node_problem};
use super::render::id_text;
use super::{AppState, PROBLEM_JSON};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use konsilium_protocol::workflow::ConsultationId;
use std::sync::Arc;
use utoipa::ToSchema;

/// A case file's bytes as they are sent: decrypted, and of the media type
/// the file was stored with.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[expect(
    dead_code,
    reason = "the bytes stream from a file; this only describes them"
)]
struct FileBytes(Vec<u8>);

/// One file of the case extract, decrypted on the way out. The plaintext
/// passes through a temporary file that is unlinked before the first byte
/// is sent, so nothing readable outlives the request.
#[utoipa::path(
    get,
    path = "/consultations/{id}/files/{index}",
    tag = "consultations",
    summary = "One file of the case extract, decrypted, with its media type",
    params(ConsultationPath, ("index" = u32, Path)),
    responses(
        (status = 200, description = "The file's bytes", body = inline(FileBytes), content_type = "*/*"),
        (status = 400, description = "The index is not a non-negative number", body = Problem, content_type = PROBLEM_JSON),
        (status = 401, description = "Missing or unknown token", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "Unknown consultation or file", body = Problem, content_type = PROBLEM_JSON),
    )
)]
pub(super) async fn get_file(
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
pub(super) async fn open_case_file(
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
