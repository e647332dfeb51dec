//! A consultation's video session, opened before its appointment: the
//! schedule opens it at the confirmed time by itself; a clinician who wants
//! the sites connected sooner (or with no appointment) asks here.

use super::params::{ConsultationPath, parse_id};
use super::problems::{Problem, node_problem};
use super::render::{id_text, json_response};
use super::{AppState, PROBLEM_JSON};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// The session is opening: the other site has our signed offer.
#[derive(Serialize, ToSchema)]
pub(super) struct VideoOpening {
    /// The consultation, whose id the session shares.
    pub(super) consultation: String,
    /// `opening`: how it goes is in `konsilium sessions`.
    pub(super) state: &'static str,
}

#[utoipa::path(
    post,
    path = "/consultations/{id}/video",
    tag = "consultations",
    summary = "Open the consultation's video session now, as the token's user",
    params(ConsultationPath),
    responses(
        (status = 202, description = "The offer went to the other site", body = VideoOpening),
        (status = 401, description = "Missing or unknown token", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "Unknown consultation", body = Problem, content_type = PROBLEM_JSON),
        (
            status = 409,
            description = "Video is off here, the other site is not connected yet, the session is open already, or the consultation is closed",
            body = Problem,
            content_type = PROBLEM_JSON
        ),
    )
)]
pub(super) async fn open_video(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(ConsultationPath { id }): Path<ConsultationPath>,
) -> Result<Response, Problem> {
    let user = state.authenticate(&headers, &[]).await?;
    let id = parse_id(&id)?;
    let by = Some((user.name.clone(), user.role));
    state.node.open_video(id, by).await.map_err(node_problem)?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        &VideoOpening {
            consultation: id_text(&id),
            state: "opening",
        },
    ))
}
