//! Urgency and the legal deadlines that follow from it.
//!
//! The defaults are the Ukrainian procedure's (the most precise of the source
//! documents): planned within 4 working days, urgent within 24 hours,
//! emergency within 3 hours. An organization may publish tighter deadlines,
//! never looser ones, so the type refuses anything above the defaults.

use crate::limits::FieldError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(rename_all = "lowercase")
)]
pub enum Urgency {
    Planned,
    Urgent,
    Emergency,
}

impl Urgency {
    pub const ALL: [Urgency; 3] = [Urgency::Planned, Urgency::Urgent, Urgency::Emergency];
}

impl fmt::Display for Urgency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Urgency::Planned => "planned",
            Urgency::Urgent => "urgent",
            Urgency::Emergency => "emergency",
        })
    }
}

impl FromStr for Urgency {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "planned" | "routine" => Ok(Urgency::Planned),
            "urgent" => Ok(Urgency::Urgent),
            "emergency" | "stat" => Ok(Urgency::Emergency),
            other => Err(FieldError::Invalid {
                field: "urgency",
                reason: format!("{other:?} is not an urgency: use planned|urgent|emergency"),
            }),
        }
    }
}

/// An organization's published deadlines. Construct with [`Deadlines::new`] or
/// take the defaults; decoding re-checks the bounds, so a peer cannot publish
/// looser deadlines than the law allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "DeadlinesWire", into = "DeadlinesWire")]
pub struct Deadlines {
    planned_working_days: u8,
    urgent_minutes: u32,
    emergency_minutes: u32,
    emergency_response_minutes: u32,
}

#[derive(Serialize, Deserialize)]
struct DeadlinesWire {
    planned_working_days: u8,
    urgent_minutes: u32,
    emergency_minutes: u32,
    emergency_response_minutes: u32,
}

impl Deadlines {
    pub const MAX_PLANNED_WORKING_DAYS: u8 = 4;
    pub const MAX_URGENT: Duration = Duration::from_secs(24 * 3600);
    pub const MAX_EMERGENCY: Duration = Duration::from_secs(3 * 3600);
    /// First response (accept, or an oral conclusion) to an emergency.
    pub const DEFAULT_EMERGENCY_RESPONSE: Duration = Duration::from_secs(30 * 60);

    pub fn new(
        planned_working_days: u8,
        urgent: Duration,
        emergency: Duration,
        emergency_response: Duration,
    ) -> Result<Self, FieldError> {
        let minutes =
            |field: &'static str, d: Duration, max: Duration| -> Result<u32, FieldError> {
                if d.is_zero() || d > max || !d.as_secs().is_multiple_of(60) {
                    return Err(FieldError::Invalid {
                        field,
                        reason: format!(
                            "{} min must be whole minutes between 1 and {} min",
                            d.as_secs() / 60,
                            max.as_secs() / 60
                        ),
                    });
                }
                Ok((d.as_secs() / 60) as u32)
            };
        if !(1..=Self::MAX_PLANNED_WORKING_DAYS).contains(&planned_working_days) {
            return Err(FieldError::Invalid {
                field: "deadlines.planned_working_days",
                reason: format!(
                    "{planned_working_days} must be between 1 and {}",
                    Self::MAX_PLANNED_WORKING_DAYS
                ),
            });
        }
        let emergency_minutes = minutes("deadlines.emergency", emergency, Self::MAX_EMERGENCY)?;
        Ok(Self {
            planned_working_days,
            urgent_minutes: minutes("deadlines.urgent", urgent, Self::MAX_URGENT)?,
            emergency_minutes,
            emergency_response_minutes: minutes(
                "deadlines.emergency_response",
                emergency_response,
                emergency,
            )?,
        })
    }

    pub fn planned_working_days(&self) -> u8 {
        self.planned_working_days
    }

    pub fn urgent(&self) -> Duration {
        Duration::from_secs(u64::from(self.urgent_minutes) * 60)
    }

    pub fn emergency(&self) -> Duration {
        Duration::from_secs(u64::from(self.emergency_minutes) * 60)
    }

    pub fn emergency_response(&self) -> Duration {
        Duration::from_secs(u64::from(self.emergency_response_minutes) * 60)
    }

    /// The stricter of two deadline sets, field by field: a per-specialty
    /// deadline can only tighten the organization's.
    pub fn tightest(&self, other: &Deadlines) -> Deadlines {
        Deadlines {
            planned_working_days: self.planned_working_days.min(other.planned_working_days),
            urgent_minutes: self.urgent_minutes.min(other.urgent_minutes),
            emergency_minutes: self.emergency_minutes.min(other.emergency_minutes),
            emergency_response_minutes: self
                .emergency_response_minutes
                .min(other.emergency_response_minutes),
        }
    }
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            planned_working_days: Self::MAX_PLANNED_WORKING_DAYS,
            urgent_minutes: 24 * 60,
            emergency_minutes: 3 * 60,
            emergency_response_minutes: 30,
        }
    }
}

impl TryFrom<DeadlinesWire> for Deadlines {
    type Error = FieldError;
    fn try_from(w: DeadlinesWire) -> Result<Self, FieldError> {
        let m = |n: u32| Duration::from_secs(u64::from(n) * 60);
        Deadlines::new(
            w.planned_working_days,
            m(w.urgent_minutes),
            m(w.emergency_minutes),
            m(w.emergency_response_minutes),
        )
    }
}

impl From<Deadlines> for DeadlinesWire {
    fn from(d: Deadlines) -> Self {
        DeadlinesWire {
            planned_working_days: d.planned_working_days,
            urgent_minutes: d.urgent_minutes,
            emergency_minutes: d.emergency_minutes,
            emergency_response_minutes: d.emergency_response_minutes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn defaults_are_the_legal_maximum() {
        let d = Deadlines::default();
        assert_eq!(d.planned_working_days(), 4);
        assert_eq!(d.urgent(), 24 * 60 * MIN);
        assert_eq!(d.emergency(), 180 * MIN);
        assert_eq!(d.emergency_response(), 30 * MIN);
        assert_eq!(
            Deadlines::new(4, 24 * 60 * MIN, 180 * MIN, 30 * MIN).unwrap(),
            d
        );
    }

    #[test]
    fn looser_than_law_is_refused() {
        assert!(Deadlines::new(5, 60 * MIN, 60 * MIN, 10 * MIN).is_err());
        assert!(Deadlines::new(0, 60 * MIN, 60 * MIN, 10 * MIN).is_err());
        let e = Deadlines::new(2, 25 * 60 * MIN, 60 * MIN, 10 * MIN).unwrap_err();
        assert!(e.to_string().contains("deadlines.urgent"), "{e}");
        assert!(Deadlines::new(2, 60 * MIN, 181 * MIN, 10 * MIN).is_err());
        // First response cannot come after the emergency conclusion is due.
        assert!(Deadlines::new(2, 60 * MIN, 60 * MIN, 61 * MIN).is_err());
        assert!(Deadlines::new(2, 60 * MIN, 60 * MIN, Duration::from_secs(90)).is_err());
    }

    #[test]
    fn decoding_rechecks_bounds() {
        let loose = DeadlinesWire {
            planned_working_days: 9,
            urgent_minutes: 60,
            emergency_minutes: 60,
            emergency_response_minutes: 5,
        };
        let bytes = postcard::to_stdvec(&loose).unwrap();
        assert!(postcard::from_bytes::<Deadlines>(&bytes).is_err());
        let ok = Deadlines::new(2, 12 * 60 * MIN, 120 * MIN, 15 * MIN).unwrap();
        let bytes = postcard::to_stdvec(&ok).unwrap();
        assert_eq!(postcard::from_bytes::<Deadlines>(&bytes).unwrap(), ok);
    }

    #[test]
    fn tightest_takes_each_minimum() {
        let a = Deadlines::new(2, 24 * 60 * MIN, 60 * MIN, 30 * MIN).unwrap();
        let b = Deadlines::new(4, 6 * 60 * MIN, 180 * MIN, 10 * MIN).unwrap();
        let t = a.tightest(&b);
        assert_eq!(
            (
                t.planned_working_days(),
                t.urgent(),
                t.emergency(),
                t.emergency_response()
            ),
            (2, 360 * MIN, 60 * MIN, 10 * MIN)
        );
    }

    #[test]
    fn urgency_parsing() {
        assert_eq!("STAT".parse::<Urgency>().unwrap(), Urgency::Emergency);
        assert!(
            "soon"
                .parse::<Urgency>()
                .unwrap_err()
                .to_string()
                .contains("planned|urgent|emergency")
        );
    }
}
