//! Workflow steps on a consultation: the action a body asks for, checked and
//! handed to the node.

use super::AppState;
use super::User;
use super::params::{decode, not_blank, parse_id, parse_time, read_body};
use super::problems::{Problem, node_problem};
use super::render::{id_text, json_response};
use crate::node::{ActRequest, ConclusionText};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use konsilium_protocol::workflow::{Action, ActionKind, Slot};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use strum::IntoEnumIterator as _;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ActionBody {
    pub(super) action: String,
    #[serde(default)]
    pub(super) reason: Option<String>,
    #[serde(default)]
    pub(super) forward: Option<bool>,
    #[serde(default)]
    pub(super) questions: Option<String>,
    #[serde(default)]
    pub(super) note: Option<String>,
    #[serde(default)]
    pub(super) slots: Option<Vec<SlotBody>>,
    #[serde(default)]
    pub(super) slot: Option<SlotBody>,
    #[serde(default)]
    pub(super) text: Option<String>,
    #[serde(default)]
    pub(super) consultant: Option<String>,
    #[serde(default)]
    pub(super) conclusion: Option<ConclusionBody>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SlotBody {
    pub(super) start: String,
    pub(super) end: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConclusionBody {
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
        // `fail` was refused above: only the node fails a consultation.
        ActionKind::Cancel | ActionKind::Fail => Action::Cancel {
            reason: need(b.reason, "reason")?,
        },
    };
    Ok((action, None))
}

pub(super) async fn act(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, Problem> {
    let user = state.authenticate(&headers, &[]).await?;
    let id = parse_id(&id)?;
    let bytes = read_body(body).await?;
    let b: ActionBody = decode(&bytes)?;
    let (action, conclusion) = action_of(b, user)?;
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
        &json!({"id": id_text(&id), "status": status.fhir_code()}),
    ))
}
