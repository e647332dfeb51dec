//! Consultations as the API shows them: the node's views made into the
//! bodies of [`super::views`], and the responses that carry them.

use super::views::{
    AppointmentView, ConclusionView, ConsultationDetail, ConsultationSummary, Created,
    DeadlineView, Existing, FileEntry, HistoryEntry, MethodName, OverrideReason, RecordedConsent,
    SlotBody,
};
use crate::node::{ConsultationView, Intake, Sent};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use konsilium_protocol::deadline::DeadlineState;
use konsilium_protocol::seal;
use konsilium_protocol::time::Timestamp;
use konsilium_protocol::workflow::{
    Action, Appointment, Consent, ConsentMethod, ConsultationId, Slot,
};
use serde::Serialize;
use serde_json::{Value, json};

fn rfc3339(t: Timestamp) -> String {
    t.to_string()
}

pub(super) fn id_text(id: &ConsultationId) -> String {
    id.to_string()
}

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

fn slot_body(slot: &Slot) -> SlotBody {
    SlotBody {
        start: rfc3339(slot.start),
        end: rfc3339(slot.end),
    }
}

fn action_details(action: &Action) -> Value {
    match action {
        Action::Reject { reason, forward } => json!({"reason": reason, "forward": forward}),
        Action::AskMore { questions } => json!({"questions": questions}),
        Action::Supply { note } => json!({"note": note}),
        Action::ProposeSlots { slots } => {
            json!({"slots": slots.iter().map(slot_body).collect::<Vec<_>>()})
        }
        Action::ConfirmSlot { slot } => json!({"slot": slot_body(slot)}),
        Action::CancelAppointment { reason }
        | Action::Cancel { reason }
        | Action::Fail { reason } => json!({"reason": reason}),
        Action::Note { text } => json!({"text": text}),
        Action::Assign { consultant } => json!({"consultant": consultant}),
        Action::Invite { org } => json!({"organization": org.to_string()}),
        Action::Conclude { conclusion } => json!({"conclusion_hash": hex(conclusion)}),
        Action::Receive | Action::Accept | Action::Start | Action::Acknowledge => json!({}),
    }
}

pub(super) fn summary(view: &ConsultationView, now: Timestamp) -> ConsultationSummary {
    let c = &view.consultation;
    let deadline = view.deadline.as_ref();
    ConsultationSummary {
        id: id_text(&c.request.id),
        status: c.status.fhir_code(),
        urgency: c.request.urgency.to_string(),
        specialty: c.request.specialty.slug(),
        side: view.side.to_string(),
        counterpart: view.counterpart.to_string(),
        created: rfc3339(c.request.created),
        deadline_due: deadline.map(|d| rfc3339(d.due)),
        time_left_seconds: deadline.map(|d| d.time_left(now).as_secs()),
        deadline_state: deadline.map(|d| d.state(now).as_str()),
        acknowledged: c.acknowledged,
    }
}

/// The case extract's files as the API lists them, each with where to
/// download it.
fn files(view: &ConsultationView) -> Vec<FileEntry> {
    let id = id_text(&view.consultation.id());
    view.files
        .iter()
        .enumerate()
        .map(|(i, (info, blob))| FileEntry {
            title: info.title.clone(),
            content_type: info.content_type.clone(),
            size: seal::plaintext_len(blob.size),
            blake3: blob.hex(),
            href: format!("/consultations/{id}/files/{i}"),
        })
        .collect()
}

fn recorded_consent(consent: &Consent) -> RecordedConsent {
    match consent {
        Consent::Given { by, at, method, .. } => {
            let (method, witness) = match method {
                ConsentMethod::Written => (MethodName::Written, None),
                ConsentMethod::Electronic => (MethodName::Electronic, None),
                ConsentMethod::Oral { witness } => (MethodName::Oral, Some(witness.clone())),
            };
            RecordedConsent::Given {
                given: true,
                by: by.clone(),
                at: rfc3339(*at),
                method,
                witness,
            }
        }
        Consent::EmergencyOverride { reason } => RecordedConsent::Override {
            given: false,
            emergency_override: OverrideReason {
                reason: reason.clone(),
            },
        },
    }
}

fn appointment(appointment: &Appointment) -> AppointmentView {
    match appointment {
        Appointment::None => AppointmentView::None,
        Appointment::Proposed(slots) => AppointmentView::Proposed {
            slots: slots.iter().map(slot_body).collect(),
        },
        Appointment::Confirmed(slot) => AppointmentView::Confirmed {
            slot: slot_body(slot),
        },
        Appointment::Cancelled => AppointmentView::Cancelled,
    }
}

pub(super) fn detail(view: &ConsultationView, now: Timestamp) -> ConsultationDetail {
    let c = &view.consultation;
    let history = c
        .history
        .iter()
        .filter_map(|s| s.decode_unverified().ok())
        .map(|t| HistoryEntry {
            seq: t.seq,
            actor: t.actor.to_string(),
            role: t.role.as_str(),
            user: t.user.clone(),
            at: rfc3339(t.at),
            action: t.action.name(),
            details: action_details(&t.action),
        })
        .collect();
    let conclusion = view
        .conclusion
        .as_ref()
        .and_then(|f| f.conclusion.decode_unverified().ok())
        .map(|k| ConclusionView {
            authors: k.authors,
            diagnosis: k.diagnosis,
            recommendations: k.recommendations,
            treatment_plan: k.treatment_plan,
            further_studies: k.further_studies,
            issued_at: rfc3339(k.issued_at),
        });
    let deadline = view.deadline.as_ref().map(|d| DeadlineView {
        requested: rfc3339(d.requested),
        due: rfc3339(d.due),
        first_response_due: d.first_response_due.map(rfc3339),
        at_risk_from: rfc3339(d.at_risk_from),
        state: d.state(now).as_str(),
        first_response_state: d
            .first_response_state(now, c.first_response)
            .map(DeadlineState::as_str),
    });
    ConsultationDetail {
        summary: summary(view, now),
        requester: c.request.requester.to_string(),
        consultant: c.request.consultant.to_string(),
        physician: c.request.physician.clone(),
        consent: recorded_consent(&c.request.consent),
        escalated_from: c.request.escalated_from.as_ref().map(id_text),
        appointment: appointment(&c.appointment),
        first_response: c.first_response.map(rfc3339),
        deadline,
        extract: view.extract.clone(),
        files: files(view),
        conclusion,
        history,
    }
}

/// A body as JSON text. It goes through a `Value`, whose maps keep their
/// keys sorted, so a body lists its members in one order whatever the
/// order of its type's fields.
pub(super) fn json_text(body: &impl Serialize) -> String {
    serde_json::to_value(body)
        .expect("API bodies have string keys and infallible fields")
        .to_string()
}

pub(super) fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    let mut r = (status, json_text(body)).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub(super) fn created(id: ConsultationId, sent: &Sent) -> Response {
    let body = Created {
        id: id_text(&id),
        recipient: sent.recipient.to_string(),
        recipient_name: sent.recipient_name.clone(),
        next_hop: sent.next_hop.to_string(),
        package: hex(&sent.id.0),
    };
    let mut r = json_response(StatusCode::CREATED, &body);
    if let Ok(location) = HeaderValue::from_str(&format!("/consultations/{id}")) {
        r.headers_mut().insert(header::LOCATION, location);
    }
    r
}

/// 200 with the consultation an identifier already opened.
pub(super) fn existing(id: ConsultationId) -> Response {
    let mut r = json_response(
        StatusCode::OK,
        &Existing {
            id: id_text(&id),
            existing: true,
        },
    );
    if let Ok(location) = HeaderValue::from_str(&format!("/consultations/{id}")) {
        r.headers_mut().insert(header::LOCATION, location);
    }
    r
}

pub(super) fn intake_response(intake: Intake) -> Response {
    match intake {
        Intake::Opened(id, sent) => created(id, &sent),
        Intake::Existing(id) => existing(id),
    }
}
