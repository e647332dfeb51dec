//! Opening, listing and reading consultations, with the patient consent an
//! opening needs.

use super::AppState;
use super::idempotency::{idempotency_key, json_fingerprint};
use super::params::{decode, not_blank, parse_id, parse_level, parse_time, read_body};
use super::problems::{Problem, node_problem};
use super::render::{created, intake_response, json_response, summary_json, view_json};
use super::uploads::read_multipart;
use crate::fhir;
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
use konsilium_protocol::time::Timestamp;
use konsilium_protocol::urgency::Urgency;
use konsilium_protocol::workflow::{Consent, ConsentMethod, Status};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewConsultationBody {
    pub(super) specialty: String,
    #[serde(default)]
    pub(super) min_level: Option<Value>,
    pub(super) urgency: String,
    #[serde(default)]
    pub(super) target: Option<String>,
    #[serde(default)]
    pub(super) region: Option<String>,
    #[serde(default)]
    pub(super) consent: Option<ConsentBody>,
    #[serde(default)]
    pub(super) emergency_override: Option<OverrideBody>,
    #[serde(default)]
    pub(super) physician: Option<String>,
    pub(super) summary: String,
    pub(super) questions: String,
    /// The client's identifier of this request, as the `Idempotency-Key`
    /// header is (for clients that cannot set headers).
    #[serde(default)]
    pub(super) idempotency_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConsentBody {
    /// Who gave consent, as a role: `patient` (the default) or
    /// `representative`. Never a name: the record must not identify the patient.
    #[serde(default)]
    pub(super) by: Option<String>,
    pub(super) method: String,
    #[serde(default)]
    pub(super) witness: Option<String>,
    #[serde(default)]
    pub(super) at: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OverrideBody {
    pub(super) reason: String,
}

pub(super) fn consent_required(detail: &str) -> Problem {
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
pub(super) fn consent_of(
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
pub(super) struct ListQuery {
    #[serde(default)]
    pub(super) status: Option<String>,
}

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

pub(super) async fn get_consultation(
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
