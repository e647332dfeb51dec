//! Consultations as the API shows them: JSON views and the responses that
//! carry them.

use crate::node::{ConsultationView, Intake, Sent};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use konsilium_protocol::deadline::DeadlineState;
use konsilium_protocol::seal;
use konsilium_protocol::time::Timestamp;
use konsilium_protocol::workflow::{
    Action, Appointment, Consent, ConsentMethod, ConsultationId, Side, Slot,
};
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

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Requesting => "requesting",
        Side::Consulting => "consulting",
    }
}

fn slot_json(slot: &Slot) -> Value {
    json!({"start": rfc3339(slot.start), "end": rfc3339(slot.end)})
}

fn action_details(action: &Action) -> Value {
    match action {
        Action::Reject { reason, forward } => json!({"reason": reason, "forward": forward}),
        Action::AskMore { questions } => json!({"questions": questions}),
        Action::Supply { note } => json!({"note": note}),
        Action::ProposeSlots { slots } => {
            json!({"slots": slots.iter().map(slot_json).collect::<Vec<_>>()})
        }
        Action::ConfirmSlot { slot } => json!({"slot": slot_json(slot)}),
        Action::CancelAppointment { reason }
        | Action::Cancel { reason }
        | Action::Fail { reason } => json!({"reason": reason}),
        Action::Note { text } => json!({"text": text}),
        Action::Assign { consultant } => json!({"consultant": consultant}),
        Action::Conclude { conclusion } => json!({"conclusion_hash": hex(conclusion)}),
        Action::Receive | Action::Accept | Action::Start | Action::Acknowledge => json!({}),
    }
}

pub(super) fn summary_json(view: &ConsultationView, now: Timestamp) -> Value {
    let c = &view.consultation;
    let deadline = view.deadline.as_ref();
    json!({
        "id": id_text(&c.request.id),
        "status": c.status.fhir_code(),
        "urgency": c.request.urgency.to_string(),
        "specialty": c.request.specialty.slug(),
        "side": side_name(view.side),
        "counterpart": view.counterpart.to_string(),
        "created": rfc3339(c.request.created),
        "deadline_due": deadline.map(|d| rfc3339(d.due)),
        "time_left_seconds": deadline.map(|d| d.time_left(now).as_secs()),
        "deadline_state": deadline.map(|d| d.state(now).as_str()),
        "acknowledged": c.acknowledged,
    })
}

/// The case extract's files as the API lists them, each with where to
/// download it.
fn files_json(view: &ConsultationView) -> Vec<Value> {
    let id = id_text(&view.consultation.id());
    view.files
        .iter()
        .enumerate()
        .map(|(i, (info, blob))| {
            json!({
                "title": info.title,
                "content_type": info.content_type,
                "size": seal::plaintext_len(blob.size),
                "blake3": blob.hex(),
                "href": format!("/consultations/{id}/files/{i}"),
            })
        })
        .collect()
}

pub(super) fn view_json(view: &ConsultationView, now: Timestamp) -> Value {
    let c = &view.consultation;
    let mut out = summary_json(view, now);
    let consent = match &c.request.consent {
        Consent::Given { by, at, method, .. } => {
            let (method, witness) = match method {
                ConsentMethod::Written => ("written", None),
                ConsentMethod::Electronic => ("electronic", None),
                ConsentMethod::Oral { witness } => ("oral", Some(witness.clone())),
            };
            json!({"given": true, "by": by, "at": rfc3339(*at), "method": method, "witness": witness})
        }
        Consent::EmergencyOverride { reason } => {
            json!({"given": false, "emergency_override": {"reason": reason}})
        }
    };
    let appointment = match &c.appointment {
        Appointment::None => json!({"state": "none"}),
        Appointment::Proposed(slots) => {
            json!({"state": "proposed", "slots": slots.iter().map(slot_json).collect::<Vec<_>>()})
        }
        Appointment::Confirmed(slot) => json!({"state": "confirmed", "slot": slot_json(slot)}),
        Appointment::Cancelled => json!({"state": "cancelled"}),
    };
    let history: Vec<Value> = c
        .history
        .iter()
        .filter_map(|s| s.decode_unverified().ok())
        .map(|t| {
            json!({
                "seq": t.seq,
                "actor": t.actor.to_string(),
                "role": t.role.as_str(),
                "user": t.user,
                "at": rfc3339(t.at),
                "action": t.action.name(),
                "details": action_details(&t.action),
            })
        })
        .collect();
    let conclusion = view
        .conclusion
        .as_ref()
        .and_then(|f| f.conclusion.decode_unverified().ok())
        .map(|k| {
            json!({
                "authors": k.authors,
                "diagnosis": k.diagnosis,
                "recommendations": k.recommendations,
                "treatment_plan": k.treatment_plan,
                "further_studies": k.further_studies,
                "issued_at": rfc3339(k.issued_at),
            })
        });
    let deadline = view.deadline.as_ref().map(|d| {
        json!({
            "requested": rfc3339(d.requested),
            "due": rfc3339(d.due),
            "first_response_due": d.first_response_due.map(rfc3339),
            "at_risk_from": rfc3339(d.at_risk_from),
            "state": d.state(now).as_str(),
            "first_response_state": d
                .first_response_state(now, c.first_response)
                .map(DeadlineState::as_str),
        })
    });
    if let Some(obj) = out.as_object_mut() {
        let extra = json!({
            "requester": c.request.requester.to_string(),
            "consultant": c.request.consultant.to_string(),
            "physician": c.request.physician,
            "consent": consent,
            "escalated_from": c.request.escalated_from.as_ref().map(id_text),
            "appointment": appointment,
            "first_response": c.first_response.map(rfc3339),
            "deadline": deadline,
            "extract": {"summary": view.extract.summary, "questions": view.extract.questions},
            "files": files_json(view),
            "conclusion": conclusion,
            "history": history,
        });
        if let Value::Object(extra) = extra {
            obj.extend(extra);
        }
    }
    out
}

pub(super) fn json_response(status: StatusCode, value: &Value) -> Response {
    let mut r = (status, value.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub(super) fn created(id: ConsultationId, sent: &Sent) -> Response {
    let body = json!({
        "id": id_text(&id),
        "recipient": sent.recipient.to_string(),
        "recipient_name": sent.recipient_name,
        "next_hop": sent.next_hop.to_string(),
        "package": hex(&sent.id.0),
    });
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
        &json!({"id": id_text(&id), "existing": true}),
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
