//! Time as a value. The protocol never reads a clock: callers pass `now`, so a
//! simulation can run a week of deadlines in a millisecond and tests are exact.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Milliseconds since the Unix epoch, UTC.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Timestamp(u64);

impl Timestamp {
    pub const fn from_unix_millis(ms: u64) -> Self {
        Self(ms)
    }

    pub const fn unix_millis(self) -> u64 {
        self.0
    }

    /// Saturates instead of overflowing: a far-future expiry must not wrap to the past.
    pub fn saturating_add(self, d: Duration) -> Self {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self(self.0.saturating_add(ms))
    }

    pub fn saturating_sub(self, d: Duration) -> Self {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self(self.0.saturating_sub(ms))
    }

    /// Time from `earlier` to `self`, zero when `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = i64::try_from(self.0 / 1000).unwrap_or(i64::MAX);
        let nanos = i32::try_from((self.0 % 1000) * 1_000_000).unwrap_or(0);
        match jiff::Timestamp::new(secs, nanos) {
            Ok(ts) => write!(f, "{ts}"),
            Err(_) => write!(f, "{}ms", self.0),
        }
    }
}

/// An RFC 3339 time, as operators and HTTP clients write one.
impl std::str::FromStr for Timestamp {
    type Err = crate::limits::FieldError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: String| crate::limits::FieldError::Invalid {
            field: "time",
            reason,
        };
        let ts: jiff::Timestamp = text
            .parse()
            .map_err(|e| invalid(format!("{text:?} is not an RFC 3339 time: {e}")))?;
        let ms = u64::try_from(ts.as_millisecond())
            .map_err(|_| invalid(format!("{text:?} is before 1970")))?;
        Ok(Self(ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_unix_millis(u64::MAX - 5);
        assert_eq!(
            t.saturating_add(Duration::from_secs(1)).unix_millis(),
            u64::MAX
        );
        assert_eq!(
            Timestamp::from_unix_millis(3)
                .saturating_sub(Duration::from_secs(1))
                .unix_millis(),
            0
        );
        assert_eq!(
            Timestamp::from_unix_millis(10).since(Timestamp::from_unix_millis(20)),
            Duration::ZERO
        );
        assert_eq!(
            Timestamp::from_unix_millis(2500).since(Timestamp::from_unix_millis(500)),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn parses_what_it_displays_and_names_what_it_cannot() {
        let t = Timestamp::from_unix_millis(1_700_000_000_123);
        assert_eq!(t.to_string().parse::<Timestamp>(), Ok(t));
        assert_eq!("2023-11-14T22:13:20.123+00:00".parse::<Timestamp>(), Ok(t));
        let before = "1969-12-31T23:59:59Z".parse::<Timestamp>().unwrap_err();
        assert!(before.to_string().contains("before 1970"), "{before}");
        let garbage = "yesterday".parse::<Timestamp>().unwrap_err();
        assert!(garbage.to_string().contains("\"yesterday\""), "{garbage}");
    }

    #[test]
    fn displays_as_rfc3339() {
        assert_eq!(
            Timestamp::from_unix_millis(1_700_000_000_123).to_string(),
            "2023-11-14T22:13:20.123Z"
        );
    }
}
