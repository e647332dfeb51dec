//! Opening, listing and reading consultations.

use super::consent::consent_of;
use super::idempotency::{idempotency_key, json_fingerprint};
use super::intake::NewConsultationBody;
use super::params::{ConsultationPath, decode, not_blank, parse_id, parse_level, read_body};
use super::problems::{Problem, node_problem};
use super::render::{created, detail, intake_response, json_response, summary};
use super::uploads::{Form, read_multipart};
use super::views::{ConsultationDetail, ConsultationList, ConsultationSummary, Created, Existing};
use super::{AppState, PROBLEM_JSON};
use crate::node::{
    Attachment, CaseFile, ConsultationView, IntakeKey, NewConsultation, NodeError, Target,
};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use konsilium_protocol::content::CaseExtract;
use konsilium_protocol::identity::OrgId;
use konsilium_protocol::journal::Role;
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::urgency::Urgency;
use konsilium_protocol::workflow::Status;
use serde::Deserialize;
use std::sync::Arc;
use utoipa::IntoParams;

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

#[utoipa::path(
    post,
    path = "/consultations",
    tag = "consultations",
    summary = "Request a consultation (physician)",
    params((
        "Idempotency-Key" = Option<String>,
        Header,
        nullable = false,
        max_length = 512,
        description = "The client's identifier of this request: a retry with the same request returns the consultation it opened (200), a different request is refused (409)"
    )),
    request_body(content(
        (NewConsultationBody = "application/json"),
        (
            inline(Form) = "multipart/form-data",
            encoding(("request" = (content_type = "application/json")))
        ),
    )),
    responses(
        (status = 201, description = "Consultation opened and sent", body = Created),
        (
            status = 200,
            description = "The identifier already opened this consultation with the same request; nothing was sent",
            body = Existing
        ),
        (status = 400, description = "Malformed body or invalid field", body = Problem, content_type = PROBLEM_JSON),
        (status = 401, description = "Missing or unknown token", body = Problem, content_type = PROBLEM_JSON),
        (status = 403, description = "The user's role may not do this", body = Problem, content_type = PROBLEM_JSON),
        (
            status = 409,
            description = "The idempotency key already opened a consultation with a different request",
            body = Problem,
            content_type = PROBLEM_JSON
        ),
        (
            status = 422,
            description = "Consent missing, or no organization offers this",
            body = Problem,
            content_type = PROBLEM_JSON
        ),
    )
)]
pub(super) async fn create_consultation(
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
    let Form {
        request: bytes,
        attachment: files,
    } = if multipart {
        read_multipart(request, state.upload_dir.as_deref()).await?
    } else {
        Form {
            request: read_body(request.into_body()).await?,
            attachment: Vec::new(),
        }
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
        entered_by: user.name.clone(),
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

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    #[serde(default)]
    #[param(value_type = Option<Status>, inline)]
    pub(super) status: Option<String>,
    /// At most this many consultations (1 to 1,000; 200 unless given)
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    pub(super) limit: Option<u32>,
    /// The `next` of the page before: the consultations listed after it
    #[serde(default)]
    pub(super) after: Option<String>,
}

/// A page of the list unless the client asks for another size: a node
/// keeps every consultation it ever had.
const PAGE: usize = 200;
const MAX_PAGE: usize = 1000;

#[utoipa::path(
    get,
    path = "/consultations",
    tag = "consultations",
    summary = "List consultations",
    params(ListQuery),
    responses(
        (status = 200, description = "The consultations, newest first", body = ConsultationList),
        (status = 400, description = "Unknown status, a limit out of range, or an unknown after", body = Problem, content_type = PROBLEM_JSON),
        (status = 401, description = "Missing or unknown token", body = Problem, content_type = PROBLEM_JSON),
    )
)]
pub(super) async fn list_consultations(
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
    let limit = match query.limit {
        None => PAGE,
        Some(n) if (1..=MAX_PAGE as u32).contains(&n) => n as usize,
        Some(n) => {
            let why = format!("limit: {n} is not between 1 and {MAX_PAGE}");
            return Err(Problem::invalid("limit", why));
        }
    };
    let unknown_after = |after: &str| {
        let why = format!(
            "after: {after:?} is no consultation listed here; start again from the first page"
        );
        Problem::invalid("after", why)
    };
    let after = match query.after.as_deref() {
        None => None,
        Some(text) => Some(text.parse().map_err(|_| unknown_after(text))?),
    };
    let page = match state.node.consultation_page(want, after, limit).await {
        Ok(page) => page,
        Err(NodeError::UnknownConsultation(id)) if Some(id) == after => {
            return Err(unknown_after(&id.to_string()));
        }
        Err(e) => return Err(node_problem(e)),
    };
    let now = state.node.now();
    let consultations: Vec<ConsultationSummary> =
        page.views.iter().map(|v| summary(v, now)).collect();
    let next = (page.more)
        .then(|| consultations.last().map(|v| v.id.clone()))
        .flatten();
    Ok(json_response(
        StatusCode::OK,
        &ConsultationList {
            consultations,
            next,
        },
    ))
}

/// Reads a consultation for a signed-in user. Reading is an access to
/// health data, so it is journaled.
pub(super) async fn read_consultation(
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

#[utoipa::path(
    get,
    path = "/consultations/{id}",
    tag = "consultations",
    summary = "One consultation with its history",
    params(ConsultationPath),
    responses(
        (status = 200, description = "The consultation", body = ConsultationDetail),
        (status = 401, description = "Missing or unknown token", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "Unknown consultation", body = Problem, content_type = PROBLEM_JSON),
    )
)]
pub(super) async fn get_consultation(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(ConsultationPath { id }): Path<ConsultationPath>,
) -> Result<Response, Problem> {
    let view = read_consultation(&state, &headers, &id).await?;
    Ok(json_response(
        StatusCode::OK,
        &detail(&view, state.node.now()),
    ))
}
