//! Workflow steps on a consultation: the action a body asks for, checked and
//! handed to the node.

use super::params::{ConsultationPath, decode, not_blank, parse_id, parse_time, read_body};
use super::problems::{Problem, node_problem};
use super::render::{id_text, json_response};
use super::views::{ActionResult, SlotBody};
use super::{AppState, PROBLEM_JSON, User};
use crate::node::{ActRequest, ConclusionText};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use konsilium_protocol::workflow::{Action, ActionKind, Slot};
use serde::Deserialize;
use std::sync::Arc;
use strum::IntoEnumIterator as _;
use utoipa::ToSchema;
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

/// A workflow step; each field is for the actions its description names.
// The action is read as text so that a refusal can list the actions.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ActionRequest)]
pub(super) struct ActionBody {
    #[schema(schema_with = user_action_names)]
    pub(super) action: String,
    /// reject, cancel_appointment, cancel
    #[serde(default)]
    pub(super) reason: Option<String>,
    /// reject
    #[serde(default)]
    pub(super) forward: Option<bool>,
    /// ask_more
    #[serde(default)]
    pub(super) questions: Option<String>,
    /// supply
    #[serde(default)]
    pub(super) note: Option<String>,
    /// propose_slots
    #[serde(default)]
    pub(super) slots: Option<Vec<SlotBody>>,
    /// confirm_slot
    #[serde(default)]
    pub(super) slot: Option<SlotBody>,
    /// note
    #[serde(default)]
    pub(super) text: Option<String>,
    /// assign: the consultant the coordinator passes the request to
    #[serde(default)]
    pub(super) consultant: Option<String>,
    /// conclude
    #[serde(default)]
    pub(super) conclusion: Option<ConclusionBody>,
    /// invite: the organization asked into the consilium, by its id as
    /// the directory lists it
    #[serde(default)]
    pub(super) organization: Option<String>,
}

/// The conclusion a consultant signs.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewConclusion)]
pub(super) struct ConclusionBody {
    /// Defaults to the token's user
    #[serde(default)]
    pub(super) authors: Option<Vec<String>>,
    pub(super) diagnosis: String,
    pub(super) recommendations: String,
    #[serde(default)]
    pub(super) treatment_plan: String,
    #[serde(default)]
    pub(super) further_studies: String,
}

/// The actions a user may ask for: every kind but `fail`, which only the
/// node takes (an escalation with no one left).
pub(super) fn user_actions() -> impl Iterator<Item = ActionKind> {
    ActionKind::iter().filter(|k| *k != ActionKind::Fail)
}

fn user_action_names() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(user_actions().map(ActionKind::name)))
        .build()
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
pub(super) fn action_of(
    b: ActionBody,
    user: &User,
) -> Result<(Action, Option<ConclusionText>), Problem> {
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
        ActionKind::Invite => &["organization"],
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
        ("organization", b.organization.is_some()),
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
        ActionKind::Invite => {
            let org = need(b.organization, "organization")?;
            let org = org.parse().map_err(|_| {
                Problem::invalid(
                    "organization",
                    format!("organization: {org:?} is not an organization id (a peer id as `konsilium directory` lists it)"),
                )
            })?;
            Action::Invite { org }
        }
        // `fail` was refused above: only the node fails a consultation.
        ActionKind::Cancel | ActionKind::Fail => Action::Cancel {
            reason: need(b.reason, "reason")?,
        },
    };
    Ok((action, None))
}

#[utoipa::path(
    post,
    path = "/consultations/{id}/actions",
    tag = "consultations",
    summary = "Take a workflow step as the token's user, in their role",
    params(ConsultationPath),
    request_body = ActionBody,
    responses(
        (status = 200, description = "The consultation's new status", body = ActionResult),
        (status = 400, description = "Malformed body or invalid field", body = Problem, content_type = PROBLEM_JSON),
        (status = 401, description = "Missing or unknown token", body = Problem, content_type = PROBLEM_JSON),
        (status = 403, description = "The role may not take this step", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "Unknown consultation", body = Problem, content_type = PROBLEM_JSON),
        (
            status = 409,
            description = "The step does not fit the consultation's state or schedule",
            body = Problem,
            content_type = PROBLEM_JSON
        ),
    )
)]
pub(super) async fn act(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(ConsultationPath { id }): Path<ConsultationPath>,
    body: Body,
) -> Result<Response, Problem> {
    let user = state.authenticate(&headers, &[]).await?;
    let id = parse_id(&id)?;
    let bytes = read_body(body).await?;
    let b: ActionBody = decode(&bytes)?;
    let (action, conclusion) = action_of(b, &user)?;
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
        &ActionResult {
            id: id_text(&id),
            status: status.fhir_code(),
        },
    ))
}
