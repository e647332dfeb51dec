//! What is wrong with one field of a config file, before the file's path
//! is attached: what validation of each section returns.

use konsilium_protocol::limits::{FieldError, check_count};

/// A validation failure before the config file's path is attached.
pub(super) struct Bad {
    pub(super) field: String,
    pub(super) reason: String,
}

pub(super) fn bad(field: impl Into<String>, reason: impl Into<String>) -> Bad {
    Bad {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A protocol field error, reworded without the protocol's own field name so
/// that the config path can stand in its place.
pub(super) fn reason(e: FieldError) -> String {
    match e {
        FieldError::Empty { .. } => "must not be empty".to_owned(),
        FieldError::TooLong { len, max, .. } => {
            format!("{len} characters, at most {max} allowed")
        }
        FieldError::TooMany { count, max, .. } => format!("{count} entries, at most {max} allowed"),
        FieldError::ControlCharacter { .. } => {
            "control characters (line breaks, tabs) are not allowed".to_owned()
        }
        FieldError::Invalid { reason, .. } => reason,
    }
}

pub(super) fn count(field: &str, n: usize, max: usize) -> Result<(), Bad> {
    check_count("", n, max).map_err(|e| bad(field, reason(e)))
}
