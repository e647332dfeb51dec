//! The figures an operator plans with, from one run's ledger.

use super::Outcome;
use super::convergence::Convergence;
use crate::scenario::Scenario;
use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::urgency::Urgency;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub scenario: String,
    pub title: String,
    pub seed: u64,
    pub organizations: usize,
    pub days: u32,
    pub consultations: usize,
    pub by_urgency: Vec<UrgencyRow>,
    pub escalated: usize,
    pub escalations: u64,
    pub declines: u64,
    pub unroutable: u32,
    pub steps_refused: u32,
    pub forged: u32,
    pub delivery: Delivery,
    pub load: LoadSummary,
    pub bytes_per_node_day: Spread,
    pub messages_lost: u64,
    pub relays: Relays,
    pub convergence: Option<Convergence>,
    pub revocations: Vec<super::revocation::RevocationSpread>,
    pub wall_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct UrgencyRow {
    pub urgency: Urgency,
    pub started: usize,
    pub in_time: usize,
    pub late: usize,
    pub failed: usize,
    /// Neither concluded nor failed when the run ended.
    pub open: usize,
    /// Concluded before the deadline, over all started.
    pub adherence: f64,
    pub p50_hours: Option<f64>,
    pub p95_hours: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub requests: usize,
    pub undelivered: usize,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadSummary {
    /// Conclusions by level of the concluding organization.
    pub concluded_regional: u32,
    pub concluded_federal: u32,
    pub concluded_district: u32,
    /// The busiest organization of each level, by conclusions.
    pub busiest_regional: u32,
    pub busiest_federal: u32,
    /// Conclusions per federal center, mean over those that concluded any.
    pub mean_federal: f64,
}

/// What regional centers carried for their districts.
#[derive(Debug, Clone, Serialize)]
pub struct Relays {
    /// Packages (requests, steps) relays took custody of.
    pub carried: u64,
    pub busiest: u64,
    pub busiest_name: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Spread {
    pub mean: f64,
    pub max: f64,
}

impl Delivery {
    /// From the times requests took to arrive, and how many never did.
    pub fn of(mut times: Vec<Duration>, undelivered: usize) -> Delivery {
        times.sort();
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
        Delivery {
            requests: times.len() + undelivered,
            undelivered,
            p50_ms: ms(quantile(&times, 0.5)),
            p95_ms: ms(quantile(&times, 0.95)),
            p99_ms: ms(quantile(&times, 0.99)),
            max_ms: ms(times.last().copied()),
        }
    }
}

/// The value at `q` (0..=1) of sorted values.
pub fn quantile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    Some(sorted[i])
}

fn hours(d: Duration) -> f64 {
    d.as_secs_f64() / 3600.0
}

impl Summary {
    pub fn of(
        scenario: &Scenario,
        seed: u64,
        outcome: &Outcome,
        convergence: Option<Convergence>,
    ) -> Summary {
        let ledger = &outcome.ledger;
        let by_urgency = Urgency::ALL
            .iter()
            .map(|&u| {
                let cases: Vec<_> = ledger.cases.iter().filter(|c| c.urgency == u).collect();
                let mut times: Vec<Duration> = cases
                    .iter()
                    .filter_map(|c| c.time_to_conclusion())
                    .collect();
                times.sort();
                let in_time = cases.iter().filter(|c| c.in_time()).count();
                let concluded = times.len();
                let failed = cases.iter().filter(|c| c.failed).count();
                UrgencyRow {
                    urgency: u,
                    started: cases.len(),
                    in_time,
                    late: concluded - in_time,
                    failed,
                    open: cases.len() - concluded - failed,
                    adherence: if cases.is_empty() {
                        1.0
                    } else {
                        in_time as f64 / cases.len() as f64
                    },
                    p50_hours: quantile(&times, 0.5).map(hours),
                    p95_hours: quantile(&times, 0.95).map(hours),
                }
            })
            .collect();
        let level_sum = |level: OrgLevel| -> (u32, u32, usize) {
            let loads: Vec<u32> = (scenario.orgs.iter().zip(&ledger.load))
                .filter(|(o, _)| o.level == level)
                .map(|(_, l)| l.concluded)
                .collect();
            let busy = loads.iter().filter(|c| **c > 0).count();
            (
                loads.iter().sum(),
                loads.iter().copied().max().unwrap_or(0),
                busy,
            )
        };
        let (regional, busiest_regional, _) = level_sum(OrgLevel::Regional);
        let (federal, busiest_federal, federal_busy) = level_sum(OrgLevel::Federal);
        let (district, _, _) = level_sum(OrgLevel::District);
        let run_days = outcome.end.since(outcome.start).as_secs_f64() / 86_400.0;
        let per_day: Vec<f64> = outcome.bytes.iter().map(|b| *b as f64 / run_days).collect();
        Summary {
            scenario: scenario.name.into(),
            title: scenario.title.into(),
            seed,
            organizations: scenario.orgs.len(),
            days: scenario.days,
            consultations: ledger.cases.len(),
            by_urgency,
            escalated: ledger.cases.iter().filter(|c| c.escalations > 0).count(),
            escalations: ledger.cases.iter().map(|c| u64::from(c.escalations)).sum(),
            declines: ledger.cases.iter().map(|c| u64::from(c.declines)).sum(),
            unroutable: ledger.unroutable,
            steps_refused: ledger.steps_refused,
            forged: ledger.forged,
            delivery: Delivery::of(ledger.deliveries.clone(), ledger.undelivered()),
            load: LoadSummary {
                concluded_regional: regional,
                concluded_federal: federal,
                concluded_district: district,
                busiest_regional,
                busiest_federal,
                mean_federal: if federal_busy == 0 {
                    0.0
                } else {
                    f64::from(federal) / federal_busy as f64
                },
            },
            bytes_per_node_day: Spread {
                mean: per_day.iter().sum::<f64>() / per_day.len().max(1) as f64,
                max: per_day.iter().copied().fold(0.0, f64::max),
            },
            messages_lost: outcome.messages_lost,
            relays: Relays {
                carried: outcome.relayed.iter().sum(),
                busiest: outcome.relayed.iter().copied().max().unwrap_or(0),
                busiest_name: (outcome.relayed.iter().enumerate())
                    .filter(|(_, n)| **n > 0)
                    .max_by_key(|(i, n)| (**n, std::cmp::Reverse(*i)))
                    .map(|(i, _)| scenario.orgs[i].name.clone()),
            },
            convergence,
            revocations: outcome.revocations.clone(),
            wall_s: outcome.wall.as_secs_f64(),
        }
    }
}
