//! A consultation's video session: opened before its appointment (the
//! schedule opens it at the confirmed time by itself; a clinician who wants
//! the sites connected sooner, or with no appointment, asks here), joined
//! from a browser through WHIP/WHEP (RFC 9725), and the room page that does
//! so.

use super::params::{ConsultationPath, parse_id};
use super::problems::{Problem, node_problem};
use super::render::{id_text, json_response};
use super::{AppState, PROBLEM_JSON};
use crate::media::MediaError;
use crate::node::NodeError;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use konsilium_video::LinkError;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

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

/// The media type of WHIP and WHEP bodies (RFC 9725).
const SDP: &str = "application/sdp";
/// An offer larger than this is not a browser's: Chromium's takes some
/// 4 KiB per media line, and the room page's (a camera, a microphone,
/// eight tiles of two lines each) over 64 KiB.
const MAX_OFFER: usize = konsilium_protocol::video::MAX_DESCRIPTION_LEN;

/// A seat's resource, as its `Location` names it.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct SeatPath {
    #[param(pattern = "^[0-9a-f]{32}$")]
    id: String,
    /// The seat, as the `Location` of the join named it.
    #[param(pattern = "^[0-9a-f]{32}$")]
    seat: String,
}

#[utoipa::path(
    post,
    path = "/consultations/{id}/whip",
    tag = "video",
    summary = "Join the consultation's video session from a browser or any WHIP client (RFC 9725)",
    description = "The body is the client's SDP offer, with its candidates. Media lines the client \
        sends on publish its camera and microphone to the other sites; lines it only receives on \
        show the other participants. The session opens now if it was not open.",
    params(ConsultationPath),
    request_body(content = String, content_type = "application/sdp"),
    responses(
        (status = 201, description = "Joined: the body is the SDP answer, `Location` the resource to DELETE when leaving", body = String, content_type = "application/sdp"),
        (status = 400, description = "The offer is not a usable SDP offer", body = Problem, content_type = PROBLEM_JSON),
        (status = 401, description = "Missing or unknown token", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "Unknown consultation", body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "Video is off here, or the consultation is closed", body = Problem, content_type = PROBLEM_JSON),
        (status = 413, description = "The offer is too large", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "The body is not application/sdp", body = Problem, content_type = PROBLEM_JSON),
        (status = 429, description = "The user is in sessions here from as many browsers as one may be", body = Problem, content_type = PROBLEM_JSON),
    )
)]
pub(super) async fn whip(
    state: State<Arc<AppState>>,
    headers: HeaderMap,
    path: Path<ConsultationPath>,
    body: Body,
) -> Result<Response, Problem> {
    join(state, headers, path, body, "whip").await
}

#[utoipa::path(
    post,
    path = "/consultations/{id}/whep",
    tag = "video",
    summary = "Watch the consultation's video session from any WHEP client",
    description = "As WHIP: the body is the client's SDP offer; its receive-only lines show the \
        other participants.",
    params(ConsultationPath),
    request_body(content = String, content_type = "application/sdp"),
    responses(
        (status = 201, description = "Joined: the body is the SDP answer, `Location` the resource to DELETE when leaving", body = String, content_type = "application/sdp"),
        (status = 400, description = "The offer is not a usable SDP offer", body = Problem, content_type = PROBLEM_JSON),
        (status = 401, description = "Missing or unknown token", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "Unknown consultation", body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "Video is off here, or the consultation is closed", body = Problem, content_type = PROBLEM_JSON),
        (status = 413, description = "The offer is too large", body = Problem, content_type = PROBLEM_JSON),
        (status = 415, description = "The body is not application/sdp", body = Problem, content_type = PROBLEM_JSON),
        (status = 429, description = "The user is in sessions here from as many browsers as one may be", body = Problem, content_type = PROBLEM_JSON),
    )
)]
pub(super) async fn whep(
    state: State<Arc<AppState>>,
    headers: HeaderMap,
    path: Path<ConsultationPath>,
    body: Body,
) -> Result<Response, Problem> {
    join(state, headers, path, body, "whep").await
}

async fn join(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(ConsultationPath { id }): Path<ConsultationPath>,
    body: Body,
    resource: &str,
) -> Result<Response, Problem> {
    let user = state.authenticate(&headers, &[]).await?;
    let id = parse_id(&id)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let media_type = content_type.map(|t| t.split(';').next().unwrap_or("").trim());
    if !media_type.is_some_and(|t| t.eq_ignore_ascii_case(SDP)) {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-sdp",
            "The body must be an SDP offer",
            format!("the Content-Type is {content_type:?}, not {SDP}"),
        ));
    }
    let offer = axum::body::to_bytes(body, MAX_OFFER).await.map_err(|_| {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "The offer is too large",
            format!("an SDP offer is at most {MAX_OFFER} bytes"),
        )
    })?;
    let offer = String::from_utf8(offer.to_vec())
        .map_err(|_| Problem::invalid("offer", "the SDP offer is not UTF-8 text"))?;
    let by = (user.name.clone(), user.role);
    let (seat, answer) = (state.node.join_video(id, by, offer).await).map_err(video_problem)?;
    let location = format!("/consultations/{}/{resource}/{seat}", id_text(&id));
    Ok((
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, SDP.to_owned()),
            (header::LOCATION, location),
        ],
        answer,
    )
        .into_response())
}

/// A bad offer is the client's fault; anything else is the node's problem
/// as for every other video request.
fn video_problem(e: NodeError) -> Problem {
    match e {
        NodeError::Media(MediaError::Link(LinkError::Description(reason))) => {
            Problem::invalid("offer", format!("the SDP offer cannot be used: {reason}"))
        }
        NodeError::Media(MediaError::NoSeat { seat }) => Problem::new(
            StatusCode::NOT_FOUND,
            "unknown-seat",
            "No such participant",
            format!("no participant {seat} in this session"),
        ),
        NodeError::Media(e @ MediaError::FullForUser { .. }) => Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too-many-seats",
            "This user is in sessions from too many browsers",
            format!("{e}: leave one (DELETE its resource) first"),
        ),
        other => node_problem(other),
    }
}

#[utoipa::path(
    delete,
    path = "/consultations/{id}/whip/{seat}",
    tag = "video",
    summary = "Leave the video session (the resource a WHIP or WHEP join returned)",
    params(SeatPath),
    responses(
        (status = 200, description = "Left"),
        (status = 401, description = "Missing or unknown token", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "Unknown consultation or participant", body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "Video is off here", body = Problem, content_type = PROBLEM_JSON),
    )
)]
pub(super) async fn leave(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(SeatPath { id, seat }): Path<SeatPath>,
) -> Result<Response, Problem> {
    let user = state.authenticate(&headers, &[]).await?;
    let id = parse_id(&id)?;
    let seat = seat.parse().map_err(|_| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "unknown-seat",
            "No such participant",
            format!("{seat:?} is not a participant id (32 hexadecimal digits)"),
        )
    })?;
    let by = (user.name, user.role);
    (state.node.leave_video(id, seat, by).await).map_err(video_problem)?;
    Ok(StatusCode::OK.into_response())
}

#[utoipa::path(
    get,
    path = "/consultations/{id}/room",
    tag = "video",
    summary = "The video room page: camera, microphone, the other sites, who is here, chat and files",
    description = "A static page; it asks for the user's token (or takes it from `#token=` in the \
        URL, which the browser never sends) and joins through WHIP with it.",
    // The page itself holds nothing: the token goes with what it posts.
    security(),
    params(ConsultationPath),
    responses(
        (status = 200, description = "The page", body = String, content_type = "text/html"),
        (status = 404, description = "Not a consultation id", body = Problem, content_type = PROBLEM_JSON),
    )
)]
pub(super) async fn room(
    Path(ConsultationPath { id }): Path<ConsultationPath>,
) -> Result<Response, Problem> {
    parse_id(&id)?;
    Ok((
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("room.html"),
    )
        .into_response())
}
