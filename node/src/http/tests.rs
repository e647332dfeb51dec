//! Unit tests of how request bodies and parameters are read and checked,
//! and of what the OpenAPI document says about them.

use super::actions::{ActionBody, action_of};
use super::consent::{ConsentBody, OverrideBody, consent_of};
use super::intake::NewConsultationBody;
use super::params::{decode, parse_id, parse_level};
use super::*;
use axum::http::StatusCode;
use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::deadline::DeadlineState;
use konsilium_protocol::journal::Role;
use konsilium_protocol::urgency::Urgency;
use konsilium_protocol::workflow::{Action, ActionKind, Consent, ConsultationId, Side, Status};
use serde_json::json;
use strum::IntoEnumIterator as _;

#[test]
fn ids_parse_only_as_32_hex_digits() {
    let id = ConsultationId([0xab; 16]);
    assert_eq!(parse_id(&id.to_string()).unwrap(), id);
    for bad in ["", "zz", &"a".repeat(31), &"é".repeat(16), &"g".repeat(32)] {
        assert_eq!(parse_id(bad).unwrap_err().status, StatusCode::NOT_FOUND);
    }
}

#[test]
fn unknown_fields_are_named() {
    let e = decode::<ActionBody>(br#"{"action":"accept","bogus":1}"#).unwrap_err();
    assert_eq!(e.status, StatusCode::BAD_REQUEST);
    assert!(e.detail.contains("bogus"), "{}", e.detail);
    let e = decode::<NewConsultationBody>(br#"{"specialty":"cardiology","urgency":"planned","summary":"s","questions":"q","consent":{"by":1,"method":"written"}}"#).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("consent.by"));
    let e = decode::<ActionBody>(b"{not json").unwrap_err();
    assert_eq!(e.kind, "malformed-json");
}

#[test]
fn actions_take_only_their_fields() {
    let user = User::with_token("u", Role::Consultant, "t");
    let body = |text: &str| decode::<ActionBody>(text.as_bytes()).unwrap();
    let e = action_of(body(r#"{"action":"accept","reason":"x"}"#), &user).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("reason"));
    let e = action_of(body(r#"{"action":"reject"}"#), &user).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("reason"));
    let e = action_of(body(r#"{"action":"fail","reason":"x"}"#), &user).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("action"));
    let (a, _) = action_of(
            body(r#"{"action":"propose_slots","slots":[{"start":"2030-01-01T10:00:00Z","end":"2030-01-01T11:00:00Z"}]}"#),
            &user,
        )
        .unwrap();
    assert!(matches!(a, Action::ProposeSlots { slots } if slots.len() == 1));
    let e = action_of(
            body(r#"{"action":"confirm_slot","slot":{"start":"2030-01-01T10:00:00Z","end":"yesterday"}}"#),
            &user,
        )
        .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("slot.end"));
    let (a, text) = action_of(
        body(r#"{"action":"conclude","conclusion":{"diagnosis":"d","recommendations":"r"}}"#),
        &user,
    )
    .unwrap();
    assert!(matches!(a, Action::Conclude { .. }));
    assert_eq!(text.unwrap().authors, vec!["u".to_owned()]);
}

#[test]
fn consent_rules() {
    let e = consent_of(
        None,
        None,
        Urgency::Planned,
        "Dr. Ivanova",
        crate::node::now(),
    )
    .unwrap_err();
    assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
    let o = || {
        Some(OverrideBody {
            reason: "unconscious".into(),
        })
    };
    assert_eq!(
        consent_of(
            None,
            o(),
            Urgency::Urgent,
            "Dr. Ivanova",
            crate::node::now()
        )
        .unwrap_err()
        .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert!(
        consent_of(
            None,
            o(),
            Urgency::Emergency,
            "Dr. Ivanova",
            crate::node::now()
        )
        .is_ok()
    );
    let oral = ConsentBody {
        by: Some("patient".into()),
        method: "oral".into(),
        witness: None,
        at: None,
    };
    assert_eq!(
        consent_of(
            Some(oral),
            None,
            Urgency::Planned,
            "Dr. Ivanova",
            crate::node::now()
        )
        .unwrap_err()
        .field
        .as_deref(),
        Some("consent.witness")
    );
    // Who consented is a role with the physician who recorded it, never a name.
    let by = |by: Option<&str>| {
        let body = ConsentBody {
            by: by.map(str::to_owned),
            method: "written".into(),
            witness: None,
            at: None,
        };
        consent_of(
            Some(body),
            None,
            Urgency::Planned,
            "Dr. Ivanova",
            crate::node::now(),
        )
        .map(|c| match c {
            Consent::Given { by, .. } => by,
            Consent::EmergencyOverride { .. } => unreachable!("consent was given"),
        })
    };
    assert_eq!(by(None).unwrap(), "the patient; recorded by Dr. Ivanova");
    assert_eq!(
        by(Some("Representative")).unwrap(),
        "the patient's legal representative; recorded by Dr. Ivanova"
    );
    assert_eq!(
        by(Some("Ivan Sidorov")).unwrap_err().field.as_deref(),
        Some("consent.by")
    );
    let method = |method: &str| {
        let body = ConsentBody {
            by: None,
            method: method.into(),
            witness: None,
            at: None,
        };
        consent_of(
            Some(body),
            None,
            Urgency::Planned,
            "Dr. Ivanova",
            crate::node::now(),
        )
    };
    assert!(method("Electronic").is_ok());
    // Consent is given before the request; a consent dated later is a
    // mistake, beyond the difference of two clocks.
    let now = crate::node::now();
    let dated = |minutes_ahead: u64| {
        let at = now.saturating_add(std::time::Duration::from_secs(60 * minutes_ahead));
        let body = ConsentBody {
            by: None,
            method: "written".into(),
            witness: None,
            at: Some(at.to_string()),
        };
        consent_of(Some(body), None, Urgency::Planned, "Dr. Ivanova", now)
    };
    assert!(dated(1).is_ok());
    let e = dated(24 * 60).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("consent.at"));
    assert!(e.detail.contains("later than now"), "{}", e.detail);
    let e = method("Telepathy").unwrap_err();
    assert_eq!(e.field.as_deref(), Some("consent.method"));
    assert!(e.detail.contains("\"telepathy\""), "{}", e.detail);
}

#[test]
fn levels_parse_from_names_and_numbers() {
    assert_eq!(parse_level(&None).unwrap(), OrgLevel::District);
    assert_eq!(
        parse_level(&Some(json!("federal"))).unwrap(),
        OrgLevel::Federal
    );
    assert_eq!(parse_level(&Some(json!(2))).unwrap(), OrgLevel::Regional);
    assert!(parse_level(&Some(json!(7))).is_err());
    assert!(parse_level(&Some(json!(-1))).is_err());
    assert!(parse_level(&Some(json!([]))).is_err());
}

/// The document's enums are derived from the protocol's, renamed by rule;
/// the API spells them with its own functions, which must agree.
#[test]
fn the_document_spells_enums_as_the_api_does() {
    let doc = openapi_document();
    let names = |schema: &str| -> Vec<String> {
        let values = doc["components"]["schemas"][schema]["enum"].as_array();
        let values = values.unwrap_or_else(|| panic!("{schema} is an enum in the document"));
        values
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names("Status"),
        Status::ALL.map(|s| s.fhir_code().to_owned())
    );
    assert_eq!(names("Urgency"), Urgency::ALL.map(|u| u.to_string()));
    assert_eq!(names("Role"), Role::ALL.map(|r| r.as_str().to_owned()));
    assert_eq!(
        names("Side"),
        [Side::Requesting, Side::Consulting, Side::Invited].map(|s| s.to_string())
    );
    let kinds: Vec<String> = ActionKind::iter().map(|k| k.name().to_owned()).collect();
    assert_eq!(names("ActionKind"), kinds);
    assert_eq!(
        names("DeadlineState"),
        [
            DeadlineState::OnTrack,
            DeadlineState::AtRisk,
            DeadlineState::Breached
        ]
        .map(|s| s.as_str().to_owned())
    );
    // utoipa takes only a literal for a length limit.
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["NewConsultation"]["properties"]["idempotency_key"]["maxLength"],
        MAX_IDENTIFIER
    );
    let header = &doc["paths"]["/consultations"]["post"]["parameters"][0];
    assert_eq!(header["name"], "Idempotency-Key");
    assert_eq!(header["schema"]["maxLength"], MAX_IDENTIFIER);
}
