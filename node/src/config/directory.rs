//! The [directory] section validated: working calendar, deadlines, services
//! and consultants, with the rules peers apply to the published record.

use super::bad::{Bad, bad, count, reason};
use super::file::{RawConsultant, RawDeadlines, RawDirectory, RawService};
use konsilium_protocol::calendar::{IsoWeekday, TimeZoneName, WorkingCalendar};
use konsilium_protocol::directory::{Consultant, ConsultantId, Language, Service};
use konsilium_protocol::limits::{
    MAX_CONSULTANTS, MAX_HOLIDAYS, MAX_LANGUAGES, MAX_SERVICES, MAX_SPECIALTIES_PER_CONSULTANT,
    check_name,
};
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::urgency::{Deadlines, Urgency};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

pub(super) fn calendar(directory: &RawDirectory) -> Result<WorkingCalendar, Bad> {
    let time_zone = TimeZoneName::new(directory.time_zone.trim()).map_err(|_| {
        bad(
            "directory.time_zone",
            format!(
                "{:?} is not an IANA time zone name: use the zone of the organization's \
                 consulting staff, like \"Europe/Moscow\", \"Europe/Kyiv\", \"Asia/Almaty\"",
                directory.time_zone
            ),
        )
    })?;
    if directory.working_days.is_empty() {
        return Err(bad(
            "directory.working_days",
            "must list at least one day (1 = Monday .. 7 = Sunday), e.g. [1, 2, 3, 4, 5]: \
             planned deadlines are counted in working days",
        ));
    }
    let mut working_days = BTreeSet::new();
    for (i, &n) in directory.working_days.iter().enumerate() {
        let day = u8::try_from(n)
            .ok()
            .and_then(|n| IsoWeekday::try_from(n).ok())
            .ok_or_else(|| {
                bad(
                    format!("directory.working_days[{i}]"),
                    format!("{n} is not an ISO weekday: use 1 = Monday .. 7 = Sunday"),
                )
            })?;
        working_days.insert(day);
    }
    count("directory.holidays", directory.holidays.len(), MAX_HOLIDAYS)?;
    let mut holidays = BTreeSet::new();
    for (i, value) in directory.holidays.iter().enumerate() {
        let field = format!("directory.holidays[{i}]");
        let text = match value {
            toml::Value::String(s) => s.trim().to_owned(),
            toml::Value::Datetime(dt) if dt.time.is_none() && dt.offset.is_none() => dt.to_string(),
            other => {
                return Err(bad(
                    field,
                    format!("{other} is not a date: write holidays as \"YYYY-MM-DD\""),
                ));
            }
        };
        let shaped = text.len() == 10
            && text.bytes().enumerate().all(|(k, b)| match k {
                4 | 7 => b == b'-',
                _ => b.is_ascii_digit(),
            });
        if !shaped {
            return Err(bad(
                field,
                format!("{text:?} is not a date: write holidays as \"YYYY-MM-DD\""),
            ));
        }
        let date = from_text(&text)
            .map_err(|e| bad(&field, format!("{text:?} is not a calendar date ({e})")))?;
        holidays.insert(date);
    }
    let calendar = WorkingCalendar {
        time_zone,
        working_days,
        holidays,
    };
    calendar.check().map_err(|e| bad("directory", reason(e)))?;
    Ok(calendar)
}

/// Deserializes a value from a string through its serde implementation,
/// which lets the node parse protocol field types (such as the holiday
/// dates) without depending on the crates that define them.
fn from_text<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    use serde::de::IntoDeserializer;
    let de: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
        text.into_deserializer();
    T::deserialize(de).map_err(|e| e.to_string())
}

/// Builds deadlines with each bound checked and named here; missing fields
/// take `defaults` (the legal maxima, or the organization's own deadlines
/// for a per-service table).
pub(super) fn deadlines(
    field: &str,
    raw: &RawDeadlines,
    defaults: Deadlines,
) -> Result<Deadlines, Bad> {
    let bounded = |name: &str, value: Option<i64>, default: u64, unit: &str, max: u64| {
        let Some(v) = value else {
            return Ok(default);
        };
        match u64::try_from(v) {
            Ok(v) if (1..=max).contains(&v) => Ok(v),
            Ok(v) if v > max => Err(bad(
                format!("{field}.{name}"),
                format!(
                    "{v} {unit} is looser than the legal maximum of {max} {unit}: an \
                     organization may only publish tighter deadlines, use 1 to {max}"
                ),
            )),
            _ => Err(bad(
                format!("{field}.{name}"),
                format!("{v} {unit}: must be at least 1 (up to {max})"),
            )),
        }
    };
    let minutes = |d: Duration| d.as_secs() / 60;
    let planned = bounded(
        "planned_working_days",
        raw.planned_working_days,
        u64::from(defaults.planned_working_days()),
        "working days",
        u64::from(Deadlines::MAX_PLANNED_WORKING_DAYS),
    )?;
    let urgent_minutes = match raw.urgent_hours {
        None => minutes(defaults.urgent()),
        hours => {
            let max = Deadlines::MAX_URGENT.as_secs() / 3600;
            bounded("urgent_hours", hours, max, "h", max)? * 60
        }
    };
    let emergency = bounded(
        "emergency_minutes",
        raw.emergency_minutes,
        minutes(defaults.emergency()),
        "min",
        minutes(Deadlines::MAX_EMERGENCY),
    )?;
    let response = bounded(
        "emergency_response_minutes",
        raw.emergency_response_minutes,
        minutes(defaults.emergency_response()),
        "min",
        minutes(Deadlines::MAX_EMERGENCY),
    )?;
    if response > emergency {
        // Blame the value that was written, not the one that was defaulted.
        let culprit = if raw.emergency_response_minutes.is_some() {
            "emergency_response_minutes"
        } else {
            "emergency_minutes"
        };
        return Err(bad(
            format!("{field}.{culprit}"),
            format!(
                "the first response to an emergency ({response} min) cannot be due after \
                 the conclusion ({emergency} min): set emergency_response_minutes to at most \
                 emergency_minutes"
            ),
        ));
    }
    Deadlines::new(
        u8::try_from(planned).expect("bounded by MAX_PLANNED_WORKING_DAYS"),
        Duration::from_secs(urgent_minutes * 60),
        Duration::from_secs(emergency * 60),
        Duration::from_secs(response * 60),
    )
    .map_err(|e| bad(field, reason(e)))
}

pub(super) fn specialty(field: &str, text: &str) -> Result<Specialty, Bad> {
    text.trim().parse().map_err(|e| {
        let needle = text.trim().to_ascii_lowercase();
        let close: Vec<&str> = Specialty::ALL
            .iter()
            .map(|s| s.slug())
            .filter(|slug| !needle.is_empty() && slug.contains(needle.as_str()))
            .take(3)
            .collect();
        let mut reason = format!("{e}");
        if !close.is_empty() {
            let _ = write!(reason, "; did you mean {}?", close.join(" or "));
        }
        bad(field, reason)
    })
}

pub(super) fn services(raw: &[RawService], org_deadlines: Deadlines) -> Result<Vec<Service>, Bad> {
    count("directory.services", raw.len(), MAX_SERVICES)?;
    let mut first_listed: BTreeMap<Specialty, usize> = BTreeMap::new();
    let mut services = Vec::with_capacity(raw.len());
    for (i, s) in raw.iter().enumerate() {
        let field = format!("directory.services[{i}]");
        let specialty = specialty(&format!("{field}.specialty"), &s.specialty)?;
        if let Some(j) = first_listed.insert(specialty, i) {
            return Err(bad(
                format!("{field}.specialty"),
                format!(
                    "{specialty} is already listed in directory.services[{j}]: list each \
                     specialty once, with all the urgencies it takes"
                ),
            ));
        }
        if s.urgencies.is_empty() {
            return Err(bad(
                format!("{field}.urgencies"),
                "must list at least one of \"planned\", \"urgent\", \"emergency\"",
            ));
        }
        let urgencies = s
            .urgencies
            .iter()
            .enumerate()
            .map(|(k, u)| {
                u.parse::<Urgency>()
                    .map_err(|e| bad(format!("{field}.urgencies[{k}]"), reason(e)))
            })
            .collect::<Result<BTreeSet<_>, _>>()?;
        let deadlines = s
            .deadlines
            .as_ref()
            .map(|d| deadlines(&format!("{field}.deadlines"), d, org_deadlines))
            .transpose()?;
        services.push(Service {
            specialty,
            urgencies,
            deadlines,
        });
    }
    Ok(services)
}

pub(super) fn consultants(raw: &[RawConsultant]) -> Result<Vec<Consultant>, Bad> {
    count("directory.consultants", raw.len(), MAX_CONSULTANTS)?;
    let mut first_listed: BTreeMap<u32, usize> = BTreeMap::new();
    let mut consultants = Vec::with_capacity(raw.len());
    for (i, c) in raw.iter().enumerate() {
        let field = format!("directory.consultants[{i}]");
        let id = u32::try_from(c.id).map_err(|_| {
            bad(
                format!("{field}.id"),
                format!(
                    "{} is not a consultant id: use a number from 0 to {}",
                    c.id,
                    u32::MAX
                ),
            )
        })?;
        if let Some(j) = first_listed.insert(id, i) {
            return Err(bad(
                format!("{field}.id"),
                format!(
                    "{id} is already the id of directory.consultants[{j}]: ids must be unique, \
                     they identify the consultant in slots and conclusions"
                ),
            ));
        }
        check_name("", &c.name).map_err(|e| bad(format!("{field}.name"), reason(e)))?;
        if c.specialties.is_empty() {
            return Err(bad(
                format!("{field}.specialties"),
                "must list at least one specialty the consultant gives opinions in",
            ));
        }
        count(
            &format!("{field}.specialties"),
            c.specialties.len(),
            MAX_SPECIALTIES_PER_CONSULTANT,
        )?;
        let specialties = c
            .specialties
            .iter()
            .enumerate()
            .map(|(k, s)| specialty(&format!("{field}.specialties[{k}]"), s))
            .collect::<Result<BTreeSet<_>, _>>()?;
        count(
            &format!("{field}.languages"),
            c.languages.len(),
            MAX_LANGUAGES,
        )?;
        let languages = c
            .languages
            .iter()
            .enumerate()
            .map(|(k, l)| {
                Language::new(l.trim())
                    .map_err(|e| bad(format!("{field}.languages[{k}]"), reason(e)))
            })
            .collect::<Result<BTreeSet<_>, _>>()?;
        consultants.push(Consultant {
            id: ConsultantId(id),
            name: c.name.clone(),
            specialties,
            languages,
        });
    }
    Ok(consultants)
}
