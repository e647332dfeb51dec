//! A small federation through a month of consultations on the real
//! machines: what the model must guarantee, not what one run printed.

use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::specialty::Specialty::{self, Cardiology, Neurology, Urology};
use konsilium_protocol::urgency::Urgency;
use konsilium_simulations::output;
use konsilium_simulations::scenario::{
    Answering, DAY, Demand, Fault, FaultKind, HOUR, Org, Scenario, UrgencyMix, Workload, offers,
};
use konsilium_simulations::year::summary::Summary;
use konsilium_simulations::year::{self, Outcome};
use std::time::Duration;

const HUB: usize = 0;
const FEDERAL: usize = 7;

/// One region: a regional hub answering cardiology and neurology, six
/// district hospitals asking, and two federal centers above.
fn region(per_year: u32, days: u32) -> Scenario {
    let mut orgs = vec![
        Org::new(
            "Regional hospital",
            OrgLevel::Regional,
            "RU-VLG",
            "regional hospital",
        )
        .offering(offers(&[Cardiology, Neurology], 2)),
    ];
    for i in 0..6 {
        orgs.push(
            Org::new(
                format!("District {i}"),
                OrgLevel::District,
                "RU-VLG",
                "district",
            )
            .asking(1.0),
        );
    }
    orgs.push(
        Org::new(
            "Federal cardiology",
            OrgLevel::Federal,
            "RU-MOW",
            "federal center",
        )
        .offering(offers(&[Cardiology, Neurology, Urology], 3)),
    );
    orgs.push(
        Org::new(
            "Federal urology",
            OrgLevel::Federal,
            "RU-SPE",
            "federal center",
        )
        .offering(offers(&[Urology], 2)),
    );
    Scenario {
        name: "test-region",
        title: "one region",
        source: "a test",
        orgs,
        workload: Workload {
            per_year,
            mix: UrgencyMix::DEFAULT,
            demand: vec![
                Demand::new(Cardiology, 3.0, 0.2),
                Demand::new(Neurology, 1.0, 0.0),
                Demand::new(Urology, 1.0, 0.0),
            ],
            weekly: Vec::new(),
        },
        answering: Answering::default(),
        faults: Vec::new(),
        latency: Duration::from_millis(30),
        jitter: Duration::from_millis(10),
        days,
        directory_interval: 6 * HOUR,
        relays: false,
    }
}

fn run(s: &Scenario, seed: u64) -> (Outcome, Summary) {
    let outcome = year::run(s, seed, |_| {}).expect("the run completes");
    let summary = Summary::of(s, seed, &outcome, None);
    (outcome, summary)
}

#[test]
fn every_consultation_of_a_quiet_month_is_delivered_and_concluded_by_the_right_level() {
    let s = region(1_500, 30);
    let (outcome, summary) = run(&s, 7);
    let ledger = &outcome.ledger;
    assert!(ledger.cases.len() > 60, "{} cases", ledger.cases.len());
    for c in &ledger.cases {
        assert!(c.concluded.is_some(), "open or failed: {c:?}");
        let by = c.concluded_by.expect("concluded by someone");
        let level = s.orgs[by].level;
        assert!(
            level >= c.level,
            "asked for {} and got {level}: {c:?}",
            c.level
        );
        let offered = s.orgs[by].offers.iter().any(|o| o.specialty == c.specialty);
        assert!(offered, "{by} does not offer {:?}", c.specialty);
        // Urology is only federal: nobody in the region answers it.
        if c.specialty == Specialty::Urology {
            assert_eq!(level, OrgLevel::Federal);
        }
        assert!(c.arrived.is_some_and(|a| a >= c.created));
        assert!(c.acknowledged.is_some(), "the physician read it: {c:?}");
    }
    assert_eq!(summary.delivery.undelivered, 0);
    assert_eq!(summary.forged, 0);
    assert_eq!(summary.unroutable, 0);
    // With no faults and no loss, a request takes one link's latency and
    // jitter, plus the receipt's way back at most.
    let max = summary.delivery.max_ms.unwrap();
    assert!(max < 200.0, "slowest delivery {max} ms");
    assert!(outcome.bytes.iter().all(|b| *b > 0), "every node took part");
    // The phases a shorter run is projected by: the tail after the last
    // arrival seals the conclusions of the cases still open then.
    let phases = outcome.phases;
    assert!(phases.setup > Duration::ZERO && phases.arrivals > Duration::ZERO);
    assert!(phases.setup + phases.arrivals <= outcome.wall);
    let last_arrival_day = outcome
        .start
        .saturating_add(Duration::from_secs(30 * 86_400));
    let concluded_in_tail = (ledger.cases.iter())
        .filter(|c| c.concluded.is_some_and(|at| at > last_arrival_day))
        .count() as u64;
    assert!(
        concluded_in_tail > 0,
        "the month's last cases end in its tail"
    );
    assert!(
        phases.arrivals_sealed > 0 && phases.arrivals_sealed + concluded_in_tail <= outcome.sealed,
        "{phases:?} of {} sealed, {concluded_in_tail} concluded in the tail",
        outcome.sealed
    );
}

#[test]
fn the_same_seed_replays_the_same_year_and_another_seed_does_not() {
    let s = region(800, 14);
    let rows =
        |o: &Outcome| -> Vec<String> { o.ledger.cases.iter().map(|c| format!("{c:?}")).collect() };
    let (a, _) = run(&s, 3);
    let (b, _) = run(&s, 3);
    let (c, _) = run(&s, 4);
    assert_eq!(rows(&a), rows(&b));
    assert_eq!(a.bytes, b.bytes);
    assert_ne!(rows(&a), rows(&c));
}

#[test]
fn emergencies_left_unanswered_by_an_absent_hub_are_escalated_to_the_federal_center() {
    let mut s = region(0, 3);
    s.faults = vec![
        Fault {
            at: Duration::ZERO,
            lasts: 2 * DAY,
            kind: FaultKind::Unavailable { org: HUB },
        },
        Fault {
            at: HOUR,
            lasts: DAY,
            kind: FaultKind::EmergencyBurst {
                count: 8,
                specialty: Cardiology,
            },
        },
    ];
    let (outcome, summary) = run(&s, 11);
    let cases = &outcome.ledger.cases;
    assert_eq!(cases.len(), 8);
    for c in cases {
        assert!(c.burst && c.urgency == Urgency::Emergency);
        assert_eq!(c.first_consultant, HUB, "the hub is asked first");
        assert_eq!(c.escalations, 1, "{c:?}");
        assert_eq!(c.concluded_by, Some(FEDERAL), "{c:?}");
        assert!(
            c.in_time(),
            "escalated after 30 min, concluded within 3 h: {c:?}"
        );
    }
    assert_eq!(summary.by_urgency[2].adherence, 1.0);
}

#[test]
fn a_hub_booked_past_the_deadline_declines_and_the_case_is_forwarded() {
    let mut s = region(6_000, 10);
    s.workload.mix = UrgencyMix {
        planned: 0.0,
        urgent: 1.0,
        emergency: 0.0,
    };
    s.workload.demand = vec![Demand::new(Neurology, 1.0, 0.0)];
    let (outcome, summary) = run(&s, 5);
    assert!(summary.declines > 0, "two neurologists cannot answer all");
    let forwarded: Vec<_> = (outcome.ledger.cases.iter())
        .filter(|c| c.declines > 0)
        .collect();
    assert!(!forwarded.is_empty());
    for c in forwarded {
        assert_eq!(c.escalations, c.declines, "each decline forwarded: {c:?}");
        assert_eq!(c.concluded_by, Some(FEDERAL), "{c:?}");
    }
}

#[test]
fn an_outage_delays_delivery_until_the_node_is_back_and_loses_nothing() {
    let mut s = region(10_000, 4);
    s.faults = vec![Fault {
        at: 2 * DAY,
        lasts: 6 * HOUR,
        kind: FaultKind::Down { org: HUB },
    }];
    let (outcome, summary) = run(&s, 2);
    assert_eq!(summary.delivery.undelivered, 0);
    let start = outcome.start.saturating_add(2 * DAY);
    let end = start.saturating_add(6 * HOUR);
    let waited: Vec<_> = (outcome.ledger.cases.iter())
        .filter(|c| c.first_consultant == HUB && c.created >= start && c.created < end)
        .collect();
    assert!(!waited.is_empty(), "requests were made during the outage");
    for c in waited {
        assert!(
            c.arrived.is_some_and(|a| a >= end),
            "arrived after the outage: {c:?}"
        );
        assert!(c.concluded.is_some(), "{c:?}");
    }
}

#[test]
fn a_revoked_organization_is_refused_by_every_node_within_seconds_and_its_requests_go_nowhere() {
    const REVOKED: usize = 1;
    let mut s = region(10_000, 4);
    s.faults = vec![Fault {
        at: 2 * DAY + 10 * HOUR + Duration::from_secs(7),
        lasts: Duration::ZERO,
        kind: FaultKind::Revoked { org: REVOKED },
    }];
    let (_, summary) = run(&s, 3);
    let [spread] = &summary.revocations[..] else {
        panic!("one revocation: {:?}", summary.revocations);
    };
    assert_eq!(spread.organization, "District 0");
    assert_eq!(spread.handed_to, "Regional hospital", "its region's hub");
    assert_eq!((spread.reached, spread.nodes), (8, 8));
    let all = spread.all_ms.expect("every node reached");
    assert!(all < 5_000.0, "a few links' latency: {all} ms");
    assert!(spread.asked_by_it > 0, "it kept asking: {spread:?}");
    assert_eq!(spread.taken_in_from_it, 0, "{spread:?}");
    assert!(summary.delivery.undelivered >= spread.asked_by_it);
}

#[test]
fn with_relays_a_district_reaches_another_region_through_its_hub_and_loses_nothing() {
    let mut s = region(10_000, 3);
    s.relays = true;
    let (outcome, summary) = run(&s, 4);
    assert_eq!(summary.delivery.undelivered, 0);
    let federal = (outcome.ledger.cases.iter())
        .filter(|c| c.first_consultant == FEDERAL)
        .count() as u64;
    assert!(federal > 0, "some requests went to the federal center");
    // What districts send to another region (the request, the
    // acknowledgement) passes the hub; the federal center, with no relay
    // of its own, answers straight; nothing else relays.
    assert!(outcome.relayed[HUB] >= 2 * federal, "{:?}", outcome.relayed);
    assert_eq!(outcome.relayed.iter().sum::<u64>(), outcome.relayed[HUB]);
    assert_eq!(
        summary.relays.busiest_name.as_deref(),
        Some("Regional hospital")
    );
    for c in outcome
        .ledger
        .cases
        .iter()
        .filter(|c| c.first_consultant == FEDERAL)
    {
        assert!(c.concluded.is_some(), "{c:?}");
    }
    // Without relays nobody carries anything.
    let (direct, _) = run(&region(10_000, 3), 4);
    assert!(direct.relayed.iter().all(|n| *n == 0));
}

#[test]
fn a_run_writes_its_tables_plots_and_report() {
    let s = region(1_000, 5);
    let (outcome, summary) = run(&s, 1);
    let dir = std::env::temp_dir().join(format!("konsilium-sim-{}", std::process::id()));
    let written = output::write(&dir, &s, &outcome, &summary).unwrap();
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let csv = String::from_utf8(read("consultations.csv")).unwrap();
    assert_eq!(csv.lines().count(), outcome.ledger.cases.len() + 1);
    assert!(csv.starts_with("urgency,specialty,requester,"));
    let orgs = String::from_utf8(read("organizations.csv")).unwrap();
    assert_eq!(orgs.lines().count(), s.orgs.len() + 1);
    for plot in ["deadlines", "time_to_conclusion", "load"] {
        assert!(
            read(&format!("{plot}.png")).starts_with(b"\x89PNG"),
            "{plot}"
        );
        let svg = String::from_utf8(read(&format!("{plot}.svg"))).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("<text"),
            "{plot} has labels"
        );
    }
    let json: serde_json::Value = serde_json::from_slice(&read("summary.json")).unwrap();
    assert_eq!(
        json["summary"]["consultations"].as_u64(),
        Some(outcome.ledger.cases.len() as u64)
    );
    let report = String::from_utf8(read("report.md")).unwrap();
    assert!(report.contains("| planned |") && report.contains("![deadlines](deadlines.png)"));
    assert_eq!(written.len(), 3 + 6 + 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_scenario_that_cannot_mean_anything_is_refused_with_the_reason() {
    let mut s = region(100, 5);
    s.days = 400;
    let e = year::run(&s, 1, |_| {}).err().expect("refused").to_string();
    assert!(e.contains("400 days"), "{e}");
    let mut s = region(100, 5);
    s.orgs[HUB].offers = offers(&[Cardiology], 0);
    let e = s.check().unwrap_err();
    assert!(
        e.contains("Regional hospital offers cardiology with no consultant"),
        "{e}"
    );
    let mut s = region(100, 5);
    s.faults.push(Fault {
        at: DAY,
        lasts: DAY,
        kind: FaultKind::Down { org: 99 },
    });
    assert!(
        s.check()
            .unwrap_err()
            .contains("organization 99; there are 9")
    );
}
