//! Hard limits on everything a peer can make us store or parse. One place, so
//! an operator can read what the network accepts and a reviewer can check that
//! every field is bounded.

/// Organization, consultant and authority names.
pub const MAX_NAME_LEN: usize = 200;
pub const MAX_CONSULTANTS: usize = 2_000;
pub const MAX_SERVICES: usize = 200;
pub const MAX_SPECIALTIES_PER_CONSULTANT: usize = 32;
pub const MAX_LANGUAGES: usize = 16;
pub const MAX_HOLIDAYS: usize = 1_000;
pub const MAX_SLOTS: usize = 5_000;
pub const MAX_ADDRESSES: usize = 32;
pub const MAX_ADDRESS_LEN: usize = 256;
pub const MAX_REVOKED_SERIALS: usize = 1_000_000;
/// Revocation notices read from one Hello or one `Revocations` request: a
/// federation has one list per authority (a root or two, an authority per
/// region), and what is left out still arrives by gossip. Each costs up to
/// two signature checks.
pub const MAX_REVOCATION_NOTICES: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("{field}: must not be empty")]
    Empty { field: &'static str },
    #[error("{field}: {len} characters, at most {max} allowed")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{field}: {count} entries, at most {max} allowed")]
    TooMany {
        field: &'static str,
        count: usize,
        max: usize,
    },
    #[error("{field}: control characters are not allowed")]
    ControlCharacter { field: &'static str },
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// Human text shown to operators: non-empty, bounded, no control characters
/// (they would let a peer forge lines in a terminal or a log).
pub fn check_name(field: &'static str, value: &str) -> Result<(), FieldError> {
    if value.trim().is_empty() {
        return Err(FieldError::Empty { field });
    }
    let len = value.chars().count();
    if len > MAX_NAME_LEN {
        return Err(FieldError::TooLong {
            field,
            len,
            max: MAX_NAME_LEN,
        });
    }
    if value.chars().any(char::is_control) {
        return Err(FieldError::ControlCharacter { field });
    }
    Ok(())
}

pub fn check_count(field: &'static str, count: usize, max: usize) -> Result<(), FieldError> {
    if count > max {
        return Err(FieldError::TooMany { field, count, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("name", "Вологодская областная больница №1").is_ok());
        assert_eq!(
            check_name("name", "  "),
            Err(FieldError::Empty { field: "name" })
        );
        assert!(matches!(
            check_name("name", "a\nb"),
            Err(FieldError::ControlCharacter { .. })
        ));
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert!(
            matches!(check_name("name", &long), Err(FieldError::TooLong { len, .. }) if len == MAX_NAME_LEN + 1)
        );
        assert!(check_count("slots", MAX_SLOTS, MAX_SLOTS).is_ok());
        assert!(check_count("slots", MAX_SLOTS + 1, MAX_SLOTS).is_err());
    }
}
