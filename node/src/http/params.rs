//! Request bodies and parameters read into protocol types, each failure a
//! problem that names the field.

use super::MAX_BODY;
use super::problems::Problem;
use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::time::Timestamp;
use konsilium_protocol::workflow::ConsultationId;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use utoipa::IntoParams;
use utoipa::openapi::schema::{Object, ObjectBuilder, OneOfBuilder, Schema, Type};

/// The consultation a path names. Its id is taken as text and checked by
/// [`parse_id`], so that a malformed id is a 404 like an unknown one.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct ConsultationPath {
    #[param(pattern = "^[0-9a-f]{32}$")]
    pub(super) id: String,
}

pub(super) async fn read_body(body: Body) -> Result<Bytes, Problem> {
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "The request body is too large or broken",
            format!("the body could not be read (at most {MAX_BODY} bytes): {e}"),
        )
    })
}

/// Decodes a JSON body; the problem names the offending field.
pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let syntax = inner.is_syntax() || inner.is_eof();
        let mut p = Problem::new(
            StatusCode::BAD_REQUEST,
            if syntax {
                "malformed-json"
            } else {
                "invalid-body"
            },
            if syntax {
                "The body is not valid JSON"
            } else {
                "The body does not match the expected fields"
            },
            if path == "." || path.is_empty() {
                inner.to_string()
            } else {
                format!("{path}: {inner}")
            },
        );
        if !syntax && path != "." && !path.is_empty() {
            p = p.field(path);
        }
        p
    })?;
    de.end().map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed-json",
            "The body is not valid JSON",
            format!("trailing characters after the JSON value: {e}"),
        )
    })?;
    Ok(value)
}

pub(super) fn parse_id(text: &str) -> Result<ConsultationId, Problem> {
    text.parse().map_err(|_| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "unknown-consultation",
            "No such consultation",
            format!("{text:?} is not a consultation id (32 hexadecimal digits)"),
        )
    })
}

pub(super) fn parse_time(field: &str, text: &str) -> Result<Timestamp, Problem> {
    text.parse::<Timestamp>().map_err(|e| match e {
        konsilium_protocol::limits::FieldError::Invalid { reason, .. } => {
            Problem::invalid(field, format!("{field}: {reason}"))
        }
        other => Problem::invalid(field, format!("{field}: {other}")),
    })
}

pub(super) fn parse_level(value: &Option<Value>) -> Result<OrgLevel, Problem> {
    let bad = |shown: String| {
        Problem::invalid(
            "min_level",
            format!("min_level: {shown} is not a level: use district|regional|federal or 1|2|3"),
        )
    };
    match value {
        None | Some(Value::Null) => Ok(OrgLevel::District),
        Some(Value::String(s)) => s.parse().map_err(|_| bad(format!("{s:?}"))),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u8::try_from(n).ok())
            .and_then(|n| OrgLevel::try_from(n).ok())
            .ok_or_else(|| bad(n.to_string())),
        Some(other) => Err(bad(other.to_string())),
    }
}

/// The level names [`parse_level`] takes, for a query parameter.
pub(super) fn level_names() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(OrgLevel::ALL.map(|level| level.to_string())))
        .build()
}

/// What [`parse_level`] takes in a body: a level's name or its number.
pub(super) fn level_schema() -> Schema {
    let numbers = OrgLevel::ALL.map(OrgLevel::number);
    let one_of = OneOfBuilder::new()
        .item(level_names())
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(numbers.iter().min().copied())
                .maximum(numbers.iter().max().copied()),
        )
        .build();
    Schema::OneOf(one_of)
}

pub(super) fn not_blank(field: &str, text: &str) -> Result<(), Problem> {
    if text.trim().is_empty() {
        return Err(Problem::invalid(
            field,
            format!("{field} must not be empty"),
        ));
    }
    Ok(())
}
