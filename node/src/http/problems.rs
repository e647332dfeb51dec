//! Error responses: every failure is an RFC 9457 problem document that names
//! what is wrong, and node and workflow errors map onto them here.

use super::render::json_text;
use super::{PROBLEM_BASE, PROBLEM_JSON};
use crate::node::NodeError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use konsilium_protocol::workflow::WorkflowError;
use serde::{Serialize, Serializer};
use utoipa::ToSchema;

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URN that names the kind of problem, for clients to tell problems apart
    #[serde(rename = "type", serialize_with = "problem_type")]
    pub(super) kind: &'static str,
    pub(super) title: &'static str,
    #[serde(serialize_with = "status_number")]
    #[schema(value_type = u16)]
    pub(super) status: StatusCode,
    pub(super) detail: String,
    /// The offending field, when there is one
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub(super) field: Option<String>,
}

fn problem_type<S: Serializer>(kind: &&'static str, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{PROBLEM_BASE}{kind}"))
}

fn status_number<S: Serializer>(status: &StatusCode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u16(status.as_u16())
}

impl Problem {
    pub(super) fn new(
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

    pub(super) fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub(super) fn invalid(field: &str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-field",
            "A field has an invalid value",
            detail,
        )
        .field(field)
    }

    pub(super) fn missing(field: &str, why: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "missing-field",
            "A required field is missing",
            format!("{field} is required {why}"),
        )
        .field(field)
    }

    pub(super) fn unauthorized(detail: &str) -> Self {
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
        let mut response = (self.status, json_text(&self)).into_response();
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

pub(super) fn node_problem(e: NodeError) -> Problem {
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
        e @ NodeError::RefusedOrg { .. } => Problem::new(
            S::UNPROCESSABLE_ENTITY,
            "refused-organization",
            "The target organization is refused",
            e.to_string(),
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
        e @ (NodeError::Video(_) | NodeError::Media(_)) => Problem::new(
            S::CONFLICT,
            "video-unavailable",
            "The video session cannot be opened now",
            e.to_string(),
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
        WorkflowError::Invite { .. } => Problem::new(
            S::CONFLICT,
            "invite",
            "The organization cannot be invited",
            detail,
        )
        .field("organization"),
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

pub(super) async fn not_found() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "No such resource",
        "no such resource; see /openapi.json for the paths",
    )
}

pub(super) async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "this path does not take this method; see /openapi.json",
    )
}
