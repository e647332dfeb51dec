//! When a conclusion is due, and how close a request is to missing it.
//!
//! The law sets the deadline by urgency (see [`crate::urgency`]); the
//! consulting organization may publish tighter [`Deadlines`]. Every node must
//! compute the *same* instant from the same request, so the computation is a
//! pure function of the request time, the consulting organization's published
//! [`WorkingCalendar`] and its deadlines; time zones come from the IANA
//! database bundled into the binary, never from the host.
//!
//! # Rules
//!
//! - **Urgent**: `requested + Deadlines::urgent()` (at most 24 h), wall-clock:
//!   nights, weekends and holidays count, because an urgent patient does not
//!   wait for Monday.
//! - **Emergency**: `requested + Deadlines::emergency()` (at most 3 h), plus a
//!   first response (the consultant accepts, or gives an oral conclusion that
//!   is recorded as a note) by `requested + Deadlines::emergency_response()`
//!   (30 min by default), also wall-clock.
//! - **Planned**: N = `Deadlines::planned_working_days()` (at most 4) working
//!   days of the *consulting* organization, because it is their consultants'
//!   schedule that the law protects:
//!   1. `requested` is converted to local time in the calendar's IANA zone;
//!      the local date is the *request day*.
//!   2. The request day itself never counts, even if it is a working day and
//!      the request came at 08:00: the consultants get N whole working days.
//!   3. Counting starts the day after the request day and moves forward one
//!      local calendar day at a time; a day counts if its ISO weekday is in
//!      `working_days` and the date is not in `holidays`. A request on a
//!      Saturday therefore counts Monday as day 1. A date the zone skipped
//!      entirely (Pacific/Apia jumped over 2011-12-30) was never worked there
//!      and does not count.
//!   4. The conclusion is due at the end of the Nth working day, that is at
//!      the first instant of the following local calendar day: local 00:00,
//!      converted back to UTC with that day's offset (so a deadline spanning a
//!      DST change lands at local midnight in the new offset). Where a DST
//!      gap swallows midnight (e.g. America/Sao_Paulo in 2015), it is the
//!      first instant after the gap (01:00); where midnight repeats, it is the
//!      first of the two.
//!   5. The search is bounded at [`SEARCH_LIMIT_DAYS`] calendar days, so a
//!      calendar of holidays cannot make the computation long. If no Nth
//!      working day is found within it (a calendar without working days, which
//!      [`WorkingCalendar::check`] refuses, or a year of holidays), the
//!      deadline falls back to the end of the local day N×7 calendar days after
//!      the request day: a broken calendar must not leave a patient without a
//!      deadline, and N weeks is what N working days mean in a
//!      one-working-day-a-week organization.
//!   6. If the calendar cannot be applied at all (a request time beyond
//!      year 9999, which jiff cannot represent), the deadline is
//!      `requested + N×7×24 h`, saturating at the largest [`Timestamp`].
//!
//! # States
//!
//! A deadline is **at risk** once 75 % of the time between request and due
//! has elapsed (`at_risk_from`, rounded up to the next millisecond so that
//! "at risk" never starts before 75 % really elapsed) and **breached** once
//! `now >= due`. The state only moves forward in `now`: on track, at risk,
//! breached. The emergency first response follows the same rule over its own
//! window, and is settled for good once a response was recorded in time.
//!
//! All arithmetic saturates: the computation never panics, whatever the input.
//! `due > requested` holds for every request time a calendar can represent; it
//! degrades to `due == requested` only when `requested` is already the largest
//! [`Timestamp`].

use crate::calendar::WorkingCalendar;
use crate::time::Timestamp;
use crate::urgency::{Deadlines, Urgency};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How many local calendar days the planned-deadline search looks at before
/// falling back. Far above what any sane calendar needs (4 working days of a
/// one-day week with a month of holidays is well under 100 days), yet small
/// enough that a hostile calendar costs microseconds.
pub const SEARCH_LIMIT_DAYS: u16 = 400;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// The deadlines of one request, fixed when it is made. Stored with the
/// request, so a later change of the organization's calendar or published
/// deadlines does not move a deadline the requester was already promised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Deadline {
    pub requested: Timestamp,
    /// The conclusion is late from this instant on (`now >= due`).
    pub due: Timestamp,
    /// Emergencies only: an accept or an oral conclusion is late from here on.
    pub first_response_due: Option<Timestamp>,
    /// 75 % of `requested..due` has elapsed from this instant on.
    pub at_risk_from: Timestamp,
}

/// Ordered by severity, so "worse" is `>` and a state never decreases in `now`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
)]
#[strum(serialize_all = "snake_case")]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(rename_all = "snake_case")
)]
pub enum DeadlineState {
    OnTrack,
    AtRisk,
    Breached,
}

impl DeadlineState {
    /// Its one name everywhere: `on_track`, `at_risk`, `breached`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl Deadline {
    /// Computes the deadlines of a request made at `requested`.
    ///
    /// `calendar` and `deadlines` are the consulting organization's: its
    /// published working calendar, and its deadlines for this specialty
    /// (`DirectoryEntry::deadlines_for`). See the module documentation for the
    /// exact rules and the fallbacks that make this infallible.
    pub fn compute(
        urgency: Urgency,
        requested: Timestamp,
        calendar: &WorkingCalendar,
        deadlines: &Deadlines,
    ) -> Deadline {
        let (due, first_response_due) = match urgency {
            Urgency::Planned => (
                planned_due(requested, calendar, deadlines.planned_working_days()),
                None,
            ),
            Urgency::Urgent => (requested.saturating_add(deadlines.urgent()), None),
            Urgency::Emergency => {
                let due = requested.saturating_add(deadlines.emergency());
                // `Deadlines` already forbids a response window longer than the
                // emergency deadline; the `min` keeps the invariant even so.
                let response = requested
                    .saturating_add(deadlines.emergency_response())
                    .min(due);
                (due, Some(response))
            }
        };
        Deadline {
            requested,
            due,
            first_response_due,
            at_risk_from: at_risk_point(requested, due),
        }
    }

    /// Where the conclusion stands at `now`.
    pub fn state(&self, now: Timestamp) -> DeadlineState {
        state_at(now, self.at_risk_from, self.due)
    }

    /// State of the emergency first response (`None` for non-emergencies).
    ///
    /// A response recorded at or before `first_response_due` settles it as
    /// [`DeadlineState::OnTrack`] for good. Otherwise it is breached once
    /// `now >= first_response_due` (a late response does not undo a breach),
    /// and at risk once 75 % of the response window has elapsed, so the
    /// on-call consultant is alerted before the window closes.
    pub fn first_response_state(
        &self,
        now: Timestamp,
        responded_at: Option<Timestamp>,
    ) -> Option<DeadlineState> {
        let due = self.first_response_due?;
        if responded_at.is_some_and(|r| r <= due) {
            return Some(DeadlineState::OnTrack);
        }
        Some(state_at(now, at_risk_point(self.requested, due), due))
    }

    /// Time until the conclusion is due; zero once it is breached.
    pub fn time_left(&self, now: Timestamp) -> Duration {
        self.due.since(now)
    }
}

fn state_at(now: Timestamp, at_risk_from: Timestamp, due: Timestamp) -> DeadlineState {
    if now >= due {
        DeadlineState::Breached
    } else if now >= at_risk_from {
        DeadlineState::AtRisk
    } else {
        DeadlineState::OnTrack
    }
}

/// The first millisecond at which at least 75 % of `requested..due` has
/// elapsed: `requested + ceil(3/4 × (due − requested))`. Computed in `u128`
/// so that no span can overflow; the result lies in `[requested, due]`.
fn at_risk_point(requested: Timestamp, due: Timestamp) -> Timestamp {
    let span = u128::from(due.unix_millis().saturating_sub(requested.unix_millis()));
    let offset = (span * 3).div_ceil(4);
    let offset = u64::try_from(offset).unwrap_or(u64::MAX);
    Timestamp::from_unix_millis(requested.unix_millis().saturating_add(offset)).min(due)
}

/// The planned deadline: see the module documentation, rules 1 to 6.
fn planned_due(requested: Timestamp, calendar: &WorkingCalendar, working_days: u8) -> Timestamp {
    // `Deadlines` guarantees 1..=4; a zero would mean "end of the request day",
    // which still gives a deadline after the request, but the law means at
    // least one whole working day.
    let n = working_days.max(1);
    local_planned_due(requested, calendar, n)
        .filter(|due| *due > requested)
        .unwrap_or_else(|| requested.saturating_add(DAY.saturating_mul(7 * u32::from(n))))
}

/// Rules 1 to 5, or `None` when the request time or the result cannot be
/// represented in the calendar's zone (rule 6 then applies).
fn local_planned_due(requested: Timestamp, calendar: &WorkingCalendar, n: u8) -> Option<Timestamp> {
    // `TimeZoneName` is checked when built or decoded, so this cannot fail;
    // looking it up here instead of via `time_zone()` keeps this path free of
    // any `expect`.
    let tz = TimeZone::get(calendar.time_zone.as_str()).ok()?;
    let millis = i64::try_from(requested.unix_millis()).ok()?;
    let request_day = jiff::Timestamp::from_millisecond(millis)
        .ok()?
        .to_zoned(tz.clone())
        .date();
    let last_day = match nth_working_day(calendar, &tz, request_day, n) {
        Some(day) => day,
        None => {
            let weeks = jiff::Span::new().try_days(7 * i64::from(n)).ok()?;
            request_day.checked_add(weeks).ok()?
        }
    };
    // `Date::to_zoned` resolves local midnight with jiff's "compatible"
    // disambiguation: after a gap, the earlier of a fold — rule 4.
    let end = last_day.tomorrow().ok()?.to_zoned(tz).ok()?.timestamp();
    u64::try_from(end.as_millisecond())
        .ok()
        .map(Timestamp::from_unix_millis)
}

/// The Nth working day after `request_day` (which itself does not count), if
/// one lies within [`SEARCH_LIMIT_DAYS`] days and before jiff's last date.
fn nth_working_day(
    calendar: &WorkingCalendar,
    tz: &TimeZone,
    request_day: Date,
    n: u8,
) -> Option<Date> {
    let mut day = request_day;
    let mut counted = 0u8;
    for _ in 0..SEARCH_LIMIT_DAYS {
        day = day.tomorrow().ok()?;
        if calendar.is_working_day(day) && exists_locally(day, tz) {
            counted = counted.saturating_add(1);
            if counted >= n {
                return Some(day);
            }
        }
    }
    None
}

/// Whether the local clock ever showed `day`: its midnight resolves, after any
/// gap, to an instant still on that date. Only a zone that jumped over a whole
/// day fails this; an unrepresentable date counts as existing, since the
/// search stops there anyway.
fn exists_locally(day: Date, tz: &TimeZone) -> bool {
    day.to_zoned(tz.clone())
        .map(|start| start.date() == day)
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::{IsoWeekday, TimeZoneName};
    use DeadlineState::*;
    use jiff::civil::{Weekday, date};
    use jiff::tz::offset;
    use proptest::prelude::*;

    const MIN: Duration = Duration::from_secs(60);
    const MS: Duration = Duration::from_millis(1);

    fn utc(s: &str) -> Timestamp {
        let t: jiff::Timestamp = s.parse().unwrap();
        Timestamp::from_unix_millis(u64::try_from(t.as_millisecond()).unwrap())
    }

    /// A local civil time in `tz`, as a protocol timestamp.
    fn local(s: &str, tz: &str) -> Timestamp {
        let dt: jiff::civil::DateTime = s.parse().unwrap();
        let t = dt.in_tz(tz).unwrap().timestamp();
        Timestamp::from_unix_millis(u64::try_from(t.as_millisecond()).unwrap())
    }

    fn zoned(t: Timestamp, tz: &str) -> jiff::Zoned {
        jiff::Timestamp::from_millisecond(i64::try_from(t.unix_millis()).unwrap())
            .unwrap()
            .in_tz(tz)
            .unwrap()
    }

    fn weekdays(tz: &str) -> WorkingCalendar {
        WorkingCalendar::weekdays(TimeZoneName::new(tz).unwrap())
    }

    fn planned(requested: Timestamp, cal: &WorkingCalendar) -> Timestamp {
        Deadline::compute(Urgency::Planned, requested, cal, &Deadlines::default()).due
    }

    #[test]
    fn planned_counts_the_consulting_organizations_working_days() {
        let tz = "Europe/Moscow";
        let mut cal = weekdays(tz);
        assert_eq!(date(2026, 6, 5).weekday(), Weekday::Friday);

        // Friday: Mon, Tue, Wed, Thu count; due when Friday starts in Moscow.
        let friday = local("2026-06-05T10:00", tz);
        let due = planned(friday, &cal);
        assert_eq!(due, local("2026-06-12T00:00", tz));
        assert_eq!(due, utc("2026-06-11T21:00:00Z"));
        assert_eq!(
            zoned(due, tz).date().yesterday().unwrap(),
            date(2026, 6, 11)
        );

        // The request day never counts, however early the request came.
        assert_eq!(planned(local("2026-06-05T00:00", tz), &cal), due);
        assert_eq!(planned(local("2026-06-05T23:59:59.999", tz), &cal), due);

        // Saturday counts Monday as day 1, so it is due at the same instant;
        // and 21:30 UTC on Friday is already Saturday in Moscow.
        assert_eq!(planned(local("2026-06-06T09:00", tz), &cal), due);
        assert_eq!(planned(utc("2026-06-05T21:30:00Z"), &cal), due);

        // A holiday on the Tuesday pushes it one working day further, to the
        // end of Friday.
        cal.holidays.insert(date(2026, 6, 9));
        assert_eq!(planned(friday, &cal), local("2026-06-13T00:00", tz));
        // A holiday on the request day or after the due day changes nothing.
        let mut other = weekdays(tz);
        other.holidays.extend([date(2026, 6, 5), date(2026, 6, 12)]);
        assert_eq!(planned(friday, &other), due);
    }

    #[test]
    fn tighter_published_deadlines_apply() {
        let tz = "Europe/Kyiv";
        let cal = weekdays(tz);
        let d = Deadlines::new(2, 6 * 60 * MIN, 180 * MIN, 30 * MIN).unwrap();
        let friday = local("2026-06-05T16:00", tz);

        // Two working days: Monday and Tuesday.
        let p = Deadline::compute(Urgency::Planned, friday, &cal, &d);
        assert_eq!(p.due, local("2026-06-10T00:00", tz));
        assert_eq!(p.first_response_due, None);
        assert_eq!(p.first_response_state(friday, None), None);

        // Urgent: 6 h wall-clock, straight through the weekend evening.
        let u = Deadline::compute(Urgency::Urgent, friday, &cal, &d);
        assert_eq!(u.due, friday.saturating_add(6 * 60 * MIN));
        assert_eq!(u.first_response_due, None);
        let default = Deadline::compute(Urgency::Urgent, friday, &cal, &Deadlines::default());
        assert_eq!(default.due, friday.saturating_add(24 * 60 * MIN));

        // Emergency: 3 h, and a first response within 30 min.
        let e = Deadline::compute(Urgency::Emergency, friday, &cal, &d);
        assert_eq!(e.due, friday.saturating_add(180 * MIN));
        let respond_by = friday.saturating_add(30 * MIN);
        assert_eq!(e.first_response_due, Some(respond_by));
        let at = |m: u32| friday.saturating_add(m * MIN);
        assert_eq!(e.first_response_state(at(10), None), Some(OnTrack));
        // 75 % of the 30-minute window is 22.5 min.
        assert_eq!(
            e.first_response_state(friday.saturating_add(Duration::from_secs(1350)), None),
            Some(AtRisk)
        );
        assert_eq!(
            e.first_response_state(friday.saturating_add(Duration::from_secs(1350) - MS), None),
            Some(OnTrack)
        );
        // Met: responded in time (even at the last moment) settles it.
        assert_eq!(e.first_response_state(at(120), Some(at(25))), Some(OnTrack));
        assert_eq!(
            e.first_response_state(at(31), Some(respond_by)),
            Some(OnTrack)
        );
        // Breached: no response by the due instant, or a late one.
        assert_eq!(e.first_response_state(respond_by, None), Some(Breached));
        assert_eq!(e.first_response_state(at(40), Some(at(31))), Some(Breached));
        // The conclusion itself is still on track at 30 min.
        assert_eq!(e.state(respond_by), OnTrack);
    }

    #[test]
    fn at_risk_from_three_quarters_and_breached_at_due() {
        let cal = weekdays("Europe/Moscow");
        let t0 = utc("2026-03-02T08:00:00Z");
        let d = Deadline::compute(Urgency::Urgent, t0, &cal, &Deadlines::default());
        assert_eq!(d.at_risk_from, t0.saturating_add(18 * 60 * MIN));
        assert_eq!(d.state(t0), OnTrack);
        assert_eq!(d.state(d.at_risk_from.saturating_sub(MS)), OnTrack);
        assert_eq!(d.state(d.at_risk_from), AtRisk);
        assert_eq!(d.state(d.due.saturating_sub(MS)), AtRisk);
        assert_eq!(d.state(d.due), Breached);
        assert_eq!(d.state(d.due.saturating_add(DAY)), Breached);
        // A clock behind the request is simply early.
        assert_eq!(d.state(t0.saturating_sub(MIN)), OnTrack);

        assert_eq!(d.time_left(t0), 24 * 60 * MIN);
        assert_eq!(d.time_left(d.due.saturating_sub(MS)), MS);
        assert_eq!(d.time_left(d.due), Duration::ZERO);
        assert_eq!(d.time_left(d.due.saturating_add(MIN)), Duration::ZERO);

        // Rounded up: at risk only once 75 % has really elapsed.
        let at = |r: u64, d: u64| {
            at_risk_point(
                Timestamp::from_unix_millis(r),
                Timestamp::from_unix_millis(d),
            )
            .unix_millis()
        };
        assert_eq!(at(100, 104), 103);
        assert_eq!(at(100, 105), 104, "3.75 ms rounds up to 4");
        assert_eq!(at(100, 101), 101);
        assert_eq!(at(7, 7), 7);
        assert_eq!(at(0, u64::MAX), u64::MAX - u64::MAX / 4);
    }

    #[test]
    fn planned_across_london_dst_ends_at_local_midnight() {
        let tz = "Europe/London";
        let cal = weekdays(tz);

        // Spring forward on Sunday 2026-03-29: GMT before, BST at the due day.
        let due = planned(local("2026-03-26T10:00", tz), &cal);
        let z = zoned(due, tz);
        assert_eq!(z.datetime(), date(2026, 4, 2).at(0, 0, 0, 0));
        assert_eq!(z.offset(), offset(1));
        assert_eq!(due, utc("2026-04-01T23:00:00Z"));

        // Fall back on Sunday 2026-10-25: BST before, GMT at the due day.
        let due = planned(local("2026-10-22T10:00", tz), &cal);
        let z = zoned(due, tz);
        assert_eq!(z.datetime(), date(2026, 10, 29).at(0, 0, 0, 0));
        assert_eq!(z.offset(), offset(0));
        assert_eq!(due, utc("2026-10-29T00:00:00Z"));

        // The at-risk point is 75 % of the real elapsed time, DST hour included.
        let requested = local("2026-03-26T10:00", tz);
        let d = Deadline::compute(Urgency::Planned, requested, &cal, &Deadlines::default());
        let span = d.due.since(requested);
        assert_eq!(span, (6 * 24 + 13) * 60 * MIN);
        assert_eq!(d.at_risk_from.since(requested), span * 3 / 4);
    }

    #[test]
    fn planned_when_dst_skips_midnight_is_the_first_instant_of_the_day() {
        // Brazil moved clocks from 00:00 to 01:00 on 2015-10-18.
        let tz = "America/Sao_Paulo";
        let mut cal = weekdays(tz);
        cal.working_days = (1..=7).map(|d| IsoWeekday::try_from(d).unwrap()).collect();
        let d = Deadlines::new(1, 60 * MIN, 60 * MIN, 10 * MIN).unwrap();
        let requested = local("2015-10-16T12:00", tz);
        let due = Deadline::compute(Urgency::Planned, requested, &cal, &d).due;
        let z = zoned(due, tz);
        assert_eq!(z.datetime(), date(2015, 10, 18).at(1, 0, 0, 0));
        assert_eq!(due, utc("2015-10-18T03:00:00Z"));
    }

    #[test]
    fn a_day_the_zone_skipped_is_not_a_working_day() {
        // Samoa went from Thursday 2011-12-29 straight to Saturday 2011-12-31.
        let tz = "Pacific/Apia";
        let d = Deadlines::new(1, 60 * MIN, 60 * MIN, 10 * MIN).unwrap();
        let requested = local("2011-12-29T12:00", tz);
        let due = Deadline::compute(Urgency::Planned, requested, &weekdays(tz), &d).due;
        // Friday the 30th never happened; the weekend follows; Monday counts.
        assert_eq!(zoned(due, tz).datetime(), date(2012, 1, 3).at(0, 0, 0, 0));
        assert_eq!(due, utc("2012-01-02T10:00:00Z"));
    }

    #[test]
    fn the_consulting_organizations_time_zone_decides_the_day() {
        // 15:00 UTC on Thursday is already Friday 01:00 in Vladivostok but
        // still Thursday 17:00 in Kaliningrad.
        let t = utc("2026-06-04T15:00:00Z");
        let vvo = weekdays("Asia/Vladivostok");
        let kgd = weekdays("Europe/Kaliningrad");
        let (a, b) = (planned(t, &vvo), planned(t, &kgd));
        // Vladivostok: Mon..Thu count, due when Friday 12th starts there.
        assert_eq!(a, local("2026-06-12T00:00", "Asia/Vladivostok"));
        assert_eq!(a, utc("2026-06-11T14:00:00Z"));
        // Kaliningrad: Fri, Mon, Tue, Wed count, due when Thursday 11th starts.
        assert_eq!(b, local("2026-06-11T00:00", "Europe/Kaliningrad"));
        assert_eq!(b, utc("2026-06-10T22:00:00Z"));
        assert_ne!(a, b);
    }

    #[test]
    fn broken_calendars_and_extreme_times_still_give_a_deadline() {
        let tz = "Europe/Moscow";
        let friday = local("2026-06-05T10:00", tz);

        // No working days at all: 4 weeks of calendar days, end of day.
        let mut none = weekdays(tz);
        none.working_days.clear();
        assert_eq!(planned(friday, &none), local("2026-07-04T00:00", tz));

        // More than the search limit of holidays: the same fallback.
        let mut blocked = weekdays(tz);
        let mut day = date(2026, 6, 5);
        for _ in 0..=SEARCH_LIMIT_DAYS {
            blocked.holidays.insert(day);
            day = day.tomorrow().unwrap();
        }
        assert!(blocked.check().is_ok());
        assert_eq!(planned(friday, &blocked), local("2026-07-04T00:00", tz));

        // One working day a week is found, however far.
        let mut sundays = weekdays(tz);
        sundays.working_days = [IsoWeekday::of(Weekday::Sunday)].into();
        assert_eq!(planned(friday, &sundays), local("2026-06-29T00:00", tz));

        // Beyond jiff's range: wall-clock fallback, saturating; no panic.
        let far = Timestamp::from_unix_millis(300_000_000_000_000);
        assert_eq!(planned(far, &weekdays(tz)), far.saturating_add(28 * DAY));
        for u in Urgency::ALL {
            for t in [0, far.unix_millis(), u64::MAX - 1, u64::MAX] {
                let t = Timestamp::from_unix_millis(t);
                let d = Deadline::compute(u, t, &weekdays(tz), &Deadlines::default());
                assert!(d.due >= t && d.at_risk_from >= t && d.at_risk_from <= d.due);
                assert_eq!(d.state(Timestamp::from_unix_millis(u64::MAX)), Breached);
                let _ = d.first_response_state(t, None);
            }
        }
        let epoch = planned(Timestamp::from_unix_millis(0), &weekdays(tz));
        assert_eq!(
            epoch,
            local("1970-01-08T00:00", tz),
            "Thu 1970-01-01: Fri, Mon..Wed"
        );
    }

    #[test]
    fn deadline_round_trips() {
        let cal = weekdays("Europe/Moscow");
        let d = Deadline::compute(
            Urgency::Emergency,
            utc("2026-06-05T10:00:00Z"),
            &cal,
            &Deadlines::default(),
        );
        let back: Deadline = postcard::from_bytes(&postcard::to_stdvec(&d).unwrap()).unwrap();
        assert_eq!(back, d);
        assert!(OnTrack < AtRisk && AtRisk < Breached);
    }

    const ZONES: [&str; 10] = [
        "Europe/Moscow",
        "Europe/London",
        "Europe/Kyiv",
        "Europe/Kaliningrad",
        "Asia/Vladivostok",
        "Asia/Kolkata",
        "America/Sao_Paulo",
        "America/Santiago",
        "Pacific/Chatham",
        "UTC",
    ];
    /// 2020-01-01T00:00:00Z and 2040-01-01T00:00:00Z.
    const FROM: u64 = 1_577_836_800_000;
    const UNTIL: u64 = 2_208_988_800_000;

    fn deadlines() -> impl Strategy<Value = Deadlines> {
        (1u8..=4, 1u32..=1440, 1u32..=180, 1u32..=180)
            .prop_map(|(p, u, e, r)| Deadlines::new(p, u * MIN, e * MIN, r.min(e) * MIN).unwrap())
    }

    proptest! {
        /// Every deadline lies after its request, at-risk lies between them,
        /// the state never goes back as time passes, and a planned deadline is
        /// the start of a local day after exactly N working days.
        #[test]
        fn deadlines_are_ordered_and_states_monotonic(
            requested in FROM..UNTIL,
            urgency in prop::sample::select(Urgency::ALL.to_vec()),
            zone in prop::sample::select(ZONES.to_vec()),
            days_mask in 0u8..128,
            holiday_offsets in prop::collection::vec(0i64..40, 0..8),
            deadlines in deadlines(),
            mut probes in prop::collection::vec(0u64..=1_000_000, 1..24),
        ) {
            let requested = Timestamp::from_unix_millis(requested);
            let request_day = zoned(requested, zone).date();
            let cal = WorkingCalendar {
                time_zone: TimeZoneName::new(zone).unwrap(),
                working_days: (1..=7u8)
                    .filter(|d| days_mask & (1 << (d - 1)) != 0)
                    .map(|d| IsoWeekday::try_from(d).unwrap())
                    .collect(),
                holidays: holiday_offsets
                    .iter()
                    .map(|&o| request_day.checked_add(jiff::Span::new().days(o)).unwrap())
                    .collect(),
            };
            let d = Deadline::compute(urgency, requested, &cal, &deadlines);

            prop_assert!(d.due > requested);
            prop_assert!(d.requested == requested);
            prop_assert!(requested <= d.at_risk_from && d.at_risk_from <= d.due);
            prop_assert_eq!(d.state(requested), OnTrack);
            prop_assert_eq!(d.state(d.due), Breached);
            prop_assert_eq!(d.time_left(requested), d.due.since(requested));
            prop_assert_eq!(d.time_left(d.due), Duration::ZERO);
            match (urgency, d.first_response_due) {
                (Urgency::Emergency, Some(r)) => prop_assert!(requested < r && r <= d.due),
                (Urgency::Emergency, None) => prop_assert!(false, "emergency without first response"),
                (_, r) => prop_assert_eq!(r, None),
            }

            // Probe from a day before the request to a day after the due.
            let lo = requested.saturating_sub(DAY).unix_millis();
            let hi = d.due.saturating_add(DAY).unix_millis();
            probes.sort_unstable();
            let mut last = (OnTrack, Some(OnTrack));
            let mut left = Duration::MAX;
            for p in probes {
                let now = Timestamp::from_unix_millis(lo + (hi - lo) / 1_000_000 * p);
                let state = (d.state(now), d.first_response_state(now, None).or(Some(OnTrack)));
                prop_assert!(state.0 >= last.0 && state.1 >= last.1, "{:?} after {:?}", state, last);
                prop_assert!(d.time_left(now) <= left);
                left = d.time_left(now);
                last = state;
            }

            if urgency == Urgency::Planned && !cal.working_days.is_empty() {
                let end = zoned(d.due, zone);
                prop_assert_eq!(end.start_of_day().unwrap(), end.clone());
                let due_day = end.date();
                let mut counted = 0;
                let mut day = request_day.tomorrow().unwrap();
                while day < due_day {
                    counted += u8::from(cal.is_working_day(day));
                    day = day.tomorrow().unwrap();
                }
                prop_assert_eq!(counted, deadlines.planned_working_days());
                prop_assert!(cal.is_working_day(due_day.yesterday().unwrap()));
            }
        }
    }
}
