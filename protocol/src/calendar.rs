//! An organization's working calendar: time zone, working days, holidays.
//!
//! Planned deadlines count working days of the *consulting* organization, so
//! the calendar is published in its directory record. Time zones come from
//! the IANA database bundled into the binary, so every node computes the
//! same deadline whatever its host's zoneinfo says.

use crate::limits::{FieldError, MAX_HOLIDAYS, check_count};
use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// An IANA time zone name that the bundled database knows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeZoneName(String);

impl TimeZoneName {
    pub fn new(name: impl Into<String>) -> Result<Self, FieldError> {
        let name = name.into();
        TimeZone::get(&name).map_err(|_| FieldError::Invalid {
            field: "calendar.time_zone",
            reason: format!("{name:?} is not an IANA time zone (e.g. Europe/Moscow, Asia/Almaty)"),
        })?;
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn time_zone(&self) -> TimeZone {
        TimeZone::get(&self.0).expect("checked at construction")
    }
}

impl TryFrom<String> for TimeZoneName {
    type Error = FieldError;
    fn try_from(s: String) -> Result<Self, FieldError> {
        Self::new(s)
    }
}

impl From<TimeZoneName> for String {
    fn from(t: TimeZoneName) -> String {
        t.0
    }
}

/// Days of the week, Monday = 1 as in ISO 8601.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct IsoWeekday(u8);

impl IsoWeekday {
    pub fn of(day: Weekday) -> Self {
        Self(day.to_monday_one_offset() as u8)
    }
}

impl TryFrom<u8> for IsoWeekday {
    type Error = FieldError;
    fn try_from(n: u8) -> Result<Self, FieldError> {
        if (1..=7).contains(&n) {
            Ok(Self(n))
        } else {
            Err(FieldError::Invalid {
                field: "calendar.working_days",
                reason: format!("{n} is not an ISO weekday (1 = Monday .. 7 = Sunday)"),
            })
        }
    }
}

impl From<IsoWeekday> for u8 {
    fn from(d: IsoWeekday) -> u8 {
        d.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkingCalendar {
    pub time_zone: TimeZoneName,
    pub working_days: BTreeSet<IsoWeekday>,
    pub holidays: BTreeSet<Date>,
}

impl WorkingCalendar {
    /// Monday to Friday in the given zone, no holidays.
    pub fn weekdays(time_zone: TimeZoneName) -> Self {
        Self {
            time_zone,
            working_days: (1..=5).map(IsoWeekday).collect(),
            holidays: BTreeSet::new(),
        }
    }

    pub fn check(&self) -> Result<(), FieldError> {
        if self.working_days.is_empty() {
            return Err(FieldError::Empty {
                field: "calendar.working_days",
            });
        }
        check_count("calendar.holidays", self.holidays.len(), MAX_HOLIDAYS)
    }

    pub fn is_working_day(&self, date: Date) -> bool {
        self.working_days.contains(&IsoWeekday::of(date.weekday()))
            && !self.holidays.contains(&date)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn time_zones_from_the_bundled_database() {
        assert!(TimeZoneName::new("Europe/Moscow").is_ok());
        assert!(TimeZoneName::new("Asia/Shanghai").is_ok());
        let e = TimeZoneName::new("Mars/Olympus").unwrap_err();
        assert!(e.to_string().contains("calendar.time_zone"));
        let bytes = postcard::to_stdvec(&"Nowhere/City".to_string()).unwrap();
        assert!(postcard::from_bytes::<TimeZoneName>(&bytes).is_err());
    }

    #[test]
    fn working_days_and_holidays() {
        let mut cal = WorkingCalendar::weekdays(TimeZoneName::new("Europe/Kyiv").unwrap());
        cal.holidays.insert(date(2026, 1, 1));
        assert!(!cal.is_working_day(date(2026, 1, 1)), "holiday (Thursday)");
        assert!(cal.is_working_day(date(2026, 1, 2)), "Friday");
        assert!(!cal.is_working_day(date(2026, 1, 3)), "Saturday");
        assert!(cal.check().is_ok());
        let round: WorkingCalendar =
            postcard::from_bytes(&postcard::to_stdvec(&cal).unwrap()).unwrap();
        assert_eq!(round, cal);
        cal.working_days.clear();
        assert!(cal.check().is_err());
        assert!(postcard::from_bytes::<IsoWeekday>(&[8]).is_err());
    }
}
