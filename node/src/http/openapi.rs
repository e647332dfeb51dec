//! The OpenAPI 3.1 description of the API, served at `/openapi.json`.

use super::actions::user_actions;
use super::idempotency::MAX_IDENTIFIER;
use super::render::json_response;
use super::{FHIR_JSON, PROBLEM_JSON};
use axum::http::StatusCode;
use axum::response::Response;
use konsilium_protocol::workflow::ActionKind;
use serde_json::{Map, Value, json};

pub(super) async fn openapi() -> Response {
    json_response(StatusCode::OK, &openapi_document())
}

/// The OpenAPI 3.1 description of this API.
pub fn openapi_document() -> Value {
    let problem = |description: &str| {
        json!({
            "description": description,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        })
    };
    let errors = |codes: &[(&str, &str)]| -> Map<String, Value> {
        codes
            .iter()
            .map(|(code, what)| ((*code).to_owned(), problem(what)))
            .collect()
    };
    let with = |mut base: Map<String, Value>, ok: (&str, Value)| -> Value {
        base.insert(ok.0.to_owned(), ok.1);
        Value::Object(base)
    };
    let id_param = json!({
        "name": "id", "in": "path", "required": true,
        "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}
    });
    let auth = [
        ("401", "Missing or unknown token"),
        ("403", "The user's role may not do this"),
    ];
    let json_ok = |desc: &str, schema: &str| json!({"description": desc, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    let created = json_ok("Consultation opened and sent", "Created");
    let existing = json_ok(
        "The identifier already opened this consultation with the same request; nothing was sent",
        "Existing",
    );
    let with_both = |mut base: Map<String, Value>, a: (&str, Value), b: (&str, Value)| -> Value {
        base.insert(a.0.to_owned(), a.1);
        base.insert(b.0.to_owned(), b.1);
        Value::Object(base)
    };
    let status_codes = [
        "requested",
        "received",
        "accepted",
        "rejected",
        "in-progress",
        "on-hold",
        "completed",
        "cancelled",
        "failed",
    ];
    let paths = json!({
            "/consultations": {
                "get": {
                    "summary": "List consultations",
                    "parameters": [{"name": "status", "in": "query", "required": false,
                        "schema": {"type": "string", "enum": status_codes}}],
                    "responses": with(errors(&[("400", "Unknown status"), auth[0]]),
                        ("200", json_ok("The consultations, newest first", "ConsultationList")))
                },
                "post": {
                    "summary": "Request a consultation (physician)",
                    "requestBody": {"required": true, "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/NewConsultation"}},
                        "multipart/form-data": {
                            "schema": {"type": "object", "required": ["request"], "properties": {
                                "request": {"$ref": "#/components/schemas/NewConsultation"},
                                "attachment": {"type": "array", "items": {"type": "string", "contentMediaType": "application/octet-stream"}}
                            }},
                            "encoding": {"request": {"contentType": "application/json"}}
                        }
                    }},
                    "parameters": [{"name": "Idempotency-Key", "in": "header", "required": false,
                        "description": "The client's identifier of this request: a retry with the same request returns the consultation it opened (200), a different request is refused (409)",
                        "schema": {"type": "string", "maxLength": MAX_IDENTIFIER}}],
                    "responses": with_both(errors(&[("400", "Malformed body or invalid field"), auth[0], auth[1],
                        ("409", "The idempotency key already opened a consultation with a different request"),
                        ("422", "Consent missing, or no organization offers this")]), ("201", created.clone()),
                        ("200", existing.clone()))
                }
            },
            "/consultations/{id}": {
                "get": {
                    "summary": "One consultation with its history",
                    "parameters": [id_param.clone()],
                    "responses": with(errors(&[auth[0], ("404", "Unknown consultation")]),
                        ("200", json_ok("The consultation", "Consultation")))
                }
            },
            "/consultations/{id}/actions": {
                "post": {
                    "summary": "Take a workflow step as the token's user, in their role",
                    "parameters": [id_param.clone()],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ActionRequest"}}}},
                    "responses": with(errors(&[("400", "Malformed body or invalid field"), auth[0],
                        ("403", "The role may not take this step"), ("404", "Unknown consultation"),
                        ("409", "The step does not fit the consultation's state or schedule")]),
                        ("200", json_ok("The consultation's new status", "ActionResult")))
                }
            },
            "/consultations/{id}/fhir": {
                "get": {
                    "summary": "The consultation as a FHIR R4 Bundle",
                    "parameters": [id_param],
                    "responses": with(errors(&[auth[0], ("404", "Unknown consultation")]),
                        ("200", json!({"description": "A FHIR R4 Bundle (collection)",
                            "content": {FHIR_JSON: {"schema": {"type": "object"}}}})))
                }
            },
            "/consultations/{id}/files/{index}": {
                "get": {
                    "summary": "One file of the case extract, decrypted, with its media type",
                    "parameters": [id_param, {"name": "index", "in": "path", "required": true,
                        "schema": {"type": "integer", "minimum": 0}}],
                    "responses": with(errors(&[auth[0], ("404", "Unknown consultation or file")]),
                        ("200", json!({"description": "The file's bytes",
                            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}})))
                }
            },
            "/fhir/ServiceRequest": {
                "post": {
                    "summary": "Import a FHIR Bundle with a ServiceRequest (and Consent) and open a consultation (physician)",
                    "parameters": [{"name": "min_level", "in": "query", "required": false,
                        "schema": {"type": "string", "enum": ["district", "regional", "federal"]}},
                        {"name": "If-None-Exist", "in": "header", "required": false,
                        "description": "FHIR conditional create: identifier=system|value; otherwise ServiceRequest.identifier is the request's identifier",
                        "schema": {"type": "string"}}],
                    "requestBody": {"required": true, "content": {FHIR_JSON: {"schema": {"type": "object"}}, "application/json": {"schema": {"type": "object"}}}},
                    "responses": with_both(errors(&[("400", "Not JSON"), auth[0], auth[1],
                        ("409", "The identifier already opened a consultation with a different request"),
                        ("422", "Not an importable Bundle, or consent missing")]), ("201", created),
                        ("200", existing))
                }
            },
            "/openapi.json": {
                "get": {"summary": "This description", "security": [],
                    "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object", "required": ["openapi", "paths"]}}}}}}
            }
    });
    let mut schemas = json!({
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status", "detail"],
                    "properties": {
                        "type": {"type": "string"}, "title": {"type": "string"},
                        "status": {"type": "integer"}, "detail": {"type": "string"},
                        "field": {"type": "string", "description": "The offending field, when there is one"}
                    }
                },
                "Slot": {
                    "type": "object", "additionalProperties": false, "required": ["start", "end"],
                    "properties": {"start": {"type": "string", "format": "date-time"}, "end": {"type": "string", "format": "date-time"}}
                },
    });
    let more = json!({
                "NewConsultation": {
                    "type": "object", "additionalProperties": false,
                    "required": ["specialty", "urgency", "summary", "questions"],
                    "properties": {
                        "specialty": {"type": "string", "description": "Specialty slug, e.g. cardiology"},
                        "min_level": {"oneOf": [{"type": "string", "enum": ["district", "regional", "federal"]}, {"type": "integer", "minimum": 1, "maximum": 3}]},
                        "urgency": {"type": "string", "enum": ["planned", "urgent", "emergency"]},
                        "target": {"type": "string", "description": "Organization id (peer id); omitted: routed by specialty"},
                        "region": {"type": "string"},
                        "consent": {"type": "object", "additionalProperties": false, "required": ["method"],
                            "properties": {"by": {"type": "string", "enum": ["patient", "representative"],
                                "description": "Who gave consent, as a role (default patient); recorded with the physician, never a name"}, "method": {"type": "string", "enum": ["written", "electronic", "oral"]},
                                "witness": {"type": "string"}, "at": {"type": "string", "format": "date-time"}}},
                        "emergency_override": {"type": "object", "additionalProperties": false, "required": ["reason"],
                            "properties": {"reason": {"type": "string"}}},
                        "physician": {"type": "string", "description": "Defaults to the token's user"},
                        "summary": {"type": "string"}, "questions": {"type": "string"},
                        "idempotency_key": {"type": "string", "maxLength": MAX_IDENTIFIER,
                            "description": "As the Idempotency-Key header, for clients that cannot set headers"}
                    }
                },
                "Created": {
                    "type": "object",
                    "properties": {"id": {"type": "string"}, "recipient": {"type": "string"}, "recipient_name": {"type": "string"},
                        "next_hop": {"type": "string"}, "package": {"type": "string"}}
                },
                "Existing": {
                    "type": "object",
                    "properties": {"id": {"type": "string"}, "existing": {"type": "boolean", "const": true}}
                },
    });
    let views = json!({
                "ConsultationSummary": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"}, "status": {"type": "string", "enum": status_codes},
                        "urgency": {"type": "string"}, "specialty": {"type": "string"}, "side": {"type": "string"},
                        "counterpart": {"type": "string"}, "created": {"type": "string", "format": "date-time"},
                        "deadline_due": {"type": ["string", "null"], "format": "date-time"},
                        "time_left_seconds": {"type": ["integer", "null"]},
                        "deadline_state": {"type": ["string", "null"]}, "acknowledged": {"type": "boolean"}
                    }
                },
                "ConsultationList": {
                    "type": "object",
                    "properties": {"consultations": {"type": "array", "items": {"$ref": "#/components/schemas/ConsultationSummary"}}}
                },
                "Consultation": {
                    "allOf": [{"$ref": "#/components/schemas/ConsultationSummary"}, {
                        "type": "object",
                        "properties": {
                            "requester": {"type": "string"}, "consultant": {"type": "string"}, "physician": {"type": "string"},
                            "consent": {"type": "object"}, "appointment": {"type": "object"}, "deadline": {"type": ["object", "null"]},
                            "extract": {"type": "object"},
                            "files": {"type": "array", "items": {"type": "object",
                                "required": ["content_type", "size", "blake3", "href"],
                                "properties": {
                                    "title": {"type": ["string", "null"]},
                                    "content_type": {"type": "string"},
                                    "size": {"type": ["integer", "null"], "minimum": 0},
                                    "blake3": {"type": "string"},
                                    "href": {"type": "string"}}}},
                            "conclusion": {"type": ["object", "null"]},
                            "history": {"type": "array", "items": {"type": "object",
                                "properties": {"seq": {"type": "integer"}, "actor": {"type": "string"}, "role": {"type": "string"},
                                    "user": {"type": "string"}, "at": {"type": "string", "format": "date-time"},
                                    "action": {"type": "string"}, "details": {"type": "object"}}}}
                        }
                    }]
                },
    });
    let actions = json!({
                "ActionRequest": {
                    "type": "object", "additionalProperties": false, "required": ["action"],
                    "properties": {
                        "action": {"type": "string", "enum": user_actions().map(ActionKind::name).collect::<Vec<_>>()},
                        "reason": {"type": "string", "description": "reject, cancel_appointment, cancel"},
                        "forward": {"type": "boolean", "description": "reject"},
                        "questions": {"type": "string", "description": "ask_more"},
                        "note": {"type": "string", "description": "supply"},
                        "slots": {"type": "array", "items": {"$ref": "#/components/schemas/Slot"}, "description": "propose_slots"},
                        "slot": {"$ref": "#/components/schemas/Slot", "description": "confirm_slot"},
                        "text": {"type": "string", "description": "note"},
                        "consultant": {"type": "string", "description": "assign: the consultant the coordinator passes the request to"},
                        "conclusion": {"type": "object", "additionalProperties": false, "description": "conclude",
                            "required": ["diagnosis", "recommendations"],
                            "properties": {"authors": {"type": "array", "items": {"type": "string"}},
                                "diagnosis": {"type": "string"}, "recommendations": {"type": "string"},
                                "treatment_plan": {"type": "string"}, "further_studies": {"type": "string"}}}
                    }
                },
                "ActionResult": {
                    "type": "object",
                    "properties": {"id": {"type": "string"}, "status": {"type": "string", "enum": status_codes}}
                }
    });
    if let Some(all) = schemas.as_object_mut() {
        for part in [more, views, actions] {
            if let Value::Object(part) = part {
                all.extend(part);
            }
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Konsilium node API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Consultations between medical organizations. Errors are RFC 9457 problem documents."
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas
        }
    })
}
