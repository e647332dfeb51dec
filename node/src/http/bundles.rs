//! The FHIR endpoints: a consultation exported as a Bundle, and a
//! ServiceRequest Bundle imported as a new consultation.

use super::consent::{consent_required, given_by};
use super::consultations::read_consultation;
use super::files::open_case_file;
use super::idempotency::check_identifier;
use super::params::{ConsultationPath, level_names, parse_level, read_body};
use super::problems::{Problem, node_problem};
use super::render::{id_text, intake_response};
use super::views::{Created, Existing};
use super::{AppState, FHIR_JSON, PROBLEM_JSON};
use crate::fhir::{self, ConsultationRecord, FhirError};
use crate::node::{
    Attachment, CaseFile, ConsultationView, Intake, IntakeKey, NewConsultation, NodeHandle, Target,
};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use konsilium_protocol::content::{CaseExtract, FileInfo};
use konsilium_protocol::identity::OrgId;
use konsilium_protocol::journal::Role;
use konsilium_protocol::workflow::Consent;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use utoipa::IntoParams;

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

#[utoipa::path(
    get,
    path = "/consultations/{id}/fhir",
    tag = "fhir",
    summary = "The consultation as a FHIR R4 Bundle",
    params(ConsultationPath),
    responses(
        (status = 200, description = "A FHIR R4 Bundle (collection)", body = Object, content_type = FHIR_JSON),
        (status = 401, description = "Missing or unknown token", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "Unknown consultation", body = Problem, content_type = PROBLEM_JSON),
    )
)]
pub(super) async fn fhir_bundle(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(ConsultationPath { id }): Path<ConsultationPath>,
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

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ImportQuery {
    #[serde(default)]
    #[param(schema_with = level_names)]
    pub(super) min_level: Option<String>,
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

#[utoipa::path(
    post,
    path = "/fhir/ServiceRequest",
    tag = "fhir",
    summary = "Import a FHIR Bundle with a ServiceRequest (and Consent) and open a consultation (physician)",
    params(
        ImportQuery,
        (
            "If-None-Exist" = Option<String>,
            Header,
            nullable = false,
            description = "FHIR conditional create: identifier=system|value; otherwise ServiceRequest.identifier is the request's identifier"
        ),
    ),
    request_body(content((Object = FHIR_JSON), (Object = "application/json"))),
    responses(
        (status = 201, description = "Consultation opened and sent", body = Created),
        (
            status = 200,
            description = "The identifier already opened this consultation with the same request; nothing was sent",
            body = Existing
        ),
        (status = 400, description = "Not JSON", body = Problem, content_type = PROBLEM_JSON),
        (status = 401, description = "Missing or unknown token", body = Problem, content_type = PROBLEM_JSON),
        (status = 403, description = "The user's role may not do this", body = Problem, content_type = PROBLEM_JSON),
        (
            status = 409,
            description = "The identifier already opened a consultation with a different request",
            body = Problem,
            content_type = PROBLEM_JSON
        ),
        (
            status = 422,
            description = "Not an importable Bundle, or consent missing",
            body = Problem,
            content_type = PROBLEM_JSON
        ),
    )
)]
pub(super) async fn import_fhir(
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
    if let Consent::Given { at, .. } = &consent
        && let Err(reason) = given_by(*at, state.node.now())
    {
        let path = "Consent.dateTime".to_owned();
        return Err(fhir_problem(FhirError::Invalid { path, reason }));
    }
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
        entered_by: user.name.clone(),
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
