//! The model against the live engine, on the same organizations and the
//! same draws of requests.
//!
//! The model is given loopback's links (0.1 ms, no jitter, no loss), so
//! the two differ only in what the model leaves out: the nodes' CPU and
//! disks, and gossipsub (the model spreads records by anti-entropy alone,
//! so its times are an upper bound the live federation must stay under).

use super::{LiveConfig, LiveOutcome};
use crate::SimError;
use crate::scenario::Scenario;
use crate::year::summary::{Delivery, Summary};
use crate::year::{self, convergence};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Loopback, as the model's link.
const LOOPBACK: Duration = Duration::from_micros(100);

#[derive(Debug, Clone, Serialize)]
pub struct ModelSide {
    pub update_p99_s: Option<f64>,
    pub update_all_s: Option<f64>,
    pub delivery: Delivery,
    pub unroutable: u32,
    pub relayed: u64,
    pub wall_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub scenario: String,
    pub seed: u64,
    pub organizations: usize,
    pub requests: usize,
    pub model: ModelSide,
    pub live: LiveOutcome,
}

/// Runs the model on `small` (the live run's organizations) for its day
/// of requests.
pub fn model(small: &Scenario, seed: u64) -> Result<ModelSide, SimError> {
    let mut s = small.clone();
    s.latency = LOOPBACK;
    s.jitter = Duration::ZERO;
    let c = convergence::measure(&s, seed)?;
    let outcome = year::run(&s, seed, |_| {})?;
    let summary = Summary::of(&s, seed, &outcome, None);
    Ok(ModelSide {
        update_p99_s: c.p99_s,
        update_all_s: c.all_s,
        delivery: summary.delivery,
        unroutable: summary.unroutable,
        relayed: summary.relays.carried,
        wall_s: summary.wall_s,
    })
}

/// Both engines on `scenario` cut to `config.nodes` organizations.
pub fn run(
    scenario: &Scenario,
    config: LiveConfig,
    progress: impl FnMut(&str),
) -> Result<Comparison, SimError> {
    let small = super::small(scenario, config.nodes, config.requests);
    small.check().map_err(SimError::Config)?;
    let model = model(&small, config.seed)?;
    let live = super::run(&small, config, progress)?;
    Ok(Comparison {
        scenario: scenario.name.into(),
        seed: config.seed,
        organizations: small.orgs.len(),
        requests: config.requests,
        model,
        live,
    })
}

fn seconds(s: Option<f64>) -> String {
    s.map_or("never".into(), |s| format!("{s:.1} s"))
}

fn precise(s: Option<f64>) -> String {
    s.map_or("never".into(), |s| format!("{:.0} ms", s * 1000.0))
}

/// `ours` over `base`, as the suite writes ratios.
pub fn ratio(ours: Option<f64>, base: Option<f64>) -> String {
    match (ours, base) {
        (Some(o), Some(b)) if b > 0.0 => format!("{:.2}×", o / b),
        _ => "-".into(),
    }
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1} ms"))
}

/// The one-page report: the figures side by side, and what each gap means.
pub fn markdown(c: &Comparison) -> String {
    let (m, l) = (&c.model, &c.live);
    let mut out = format!(
        "# {} at {} organizations: the model against live nodes\n\n\
         Seed {}; the requests the model's agenda draws for a day at {} a day, sent by real \
         nodes (each a whole `konsilium-node` over {}, production anti-entropy and \
         gossip intervals) and by the model with loopback's links.\n\n\
         | measure | model | live | what the gap is |\n| --- | --- | --- | --- |\n",
        c.scenario, c.organizations, c.seed, c.requests, c.live.links
    );
    let mut row = |what: &str, model: String, live: String, why: &str| {
        out.push_str(&format!("| {what} | {model} | {live} | {why} |\n"));
    };
    row(
        "a changed record at 99 % of the others",
        seconds(m.update_p99_s),
        seconds(l.update_p99_s),
        "the model has anti-entropy alone; live gossipsub carries it within heartbeats",
    );
    row(
        "... at all of them",
        seconds(m.update_all_s),
        seconds(l.update_all_s),
        "as above: the model's figure is the bound when gossip loses everything",
    );
    row(
        "requests routed / not delivered",
        format!("{} / {}", m.delivery.requests, m.delivery.undelivered),
        format!("{} / {}", l.delivery.requests, l.delivery.undelivered),
        "the same draws; the model's also counts what its clinicians forwarded or escalated",
    );
    row(
        "requests nobody could take",
        m.unroutable.to_string(),
        l.unroutable.to_string(),
        "the same directory and route ranking: should match",
    );
    row(
        "request to consultant's node, p50",
        ms(m.delivery.p50_ms),
        ms(l.delivery.p50_ms),
        "live: sealing, signing, sled flushes and the event loops, which the model does not time (its clock counts whole milliseconds)",
    );
    row(
        "... p95",
        ms(m.delivery.p95_ms),
        ms(l.delivery.p95_ms),
        "as above, and a first dial with Hellos where no connection was open",
    );
    row(
        "packages relayed",
        m.relayed.to_string(),
        l.relayed.to_string(),
        "districts through their regional center, where the scenario relays",
    );
    out.push_str(&format!(
        "\nLive gossip while the record spread: the changed record gossiped {} time(s) by its \
         node; {} directory messages taken in, {} ignored, {} refused; {:.1} certified peers per \
         node.\n",
        l.gossip.published,
        l.gossip.accepted,
        l.gossip.ignored,
        l.gossip.invalid,
        l.gossip.mean_peers
    ));
    out.push_str(&format!(
        "\nPlain gossipsub, one swarm per node on the same links ({}), the nodes' gossipsub \
         settings, one message of the record's size: 99 % in {}, all in {}. The nodes took {} \
         at 99 % (re-signing and storing the record, checking each copy before passing it \
         on, their event loops).\n",
        l.links,
        precise(l.raw.p99_s),
        precise(l.raw.all_s),
        ratio(l.update_p99_s, l.raw.p99_s),
    ));
    out.push_str(&format!(
        "\nLive: {} nodes started in {:.1} s; every directory full {} after the last start \
         (99 % in {}), with {:.1} certified peers per node; idle connections then closed \
         ({} in all), down to {:.1} peers per node; at rest, all of them together used {} of a core; {} \
         resident for the whole process; the run took {:.0} s (the model {:.1} s).\n",
        l.nodes,
        l.start_s,
        seconds(l.directory_all_s),
        seconds(l.directory_p99_s),
        l.peers_when_full,
        l.gossip.idle_closed,
        l.gossip.mean_peers,
        l.rest_cpu
            .map_or("-".into(), |c| format!("{:.0} %", c * 100.0)),
        l.resident_mib.map_or("-".into(), |m| format!("{m:.0} MiB")),
        l.wall_s,
        m.wall_s,
    ));
    out
}

/// The performance suite's row: the changed record at 99 % of the live
/// nodes, against plain gossipsub on the same links in the same run.
pub fn suite_row(l: &LiveOutcome) -> konsilium_protocol::testkit::suite::SuiteRow {
    const TARGET: f64 = 1.25;
    let judged = match (l.update_p99_s, l.raw.p99_s) {
        (Some(o), Some(b)) if b > 0.0 => Some(o / b),
        _ => None,
    };
    konsilium_protocol::testkit::suite::SuiteRow {
        row: format!(
            "directory update to 99% of {} live nodes ({})",
            l.nodes, l.links
        ),
        measured: format!("{} at 99 %", precise(l.update_p99_s)),
        baseline: format!(
            "plain gossipsub, one swarm per node on the same links, the nodes' settings: {}",
            precise(l.raw.p99_s)
        ),
        limit: "the baseline".into(),
        judged: judged.map_or("-".into(), |r| format!("{r:.2}× raw gossipsub")),
        context: format!(
            "all: {} vs {}; {:.0} peers per node",
            precise(l.update_all_s),
            precise(l.raw.all_s),
            l.gossip.mean_peers
        ),
        target: format!("≤ {TARGET}×"),
        met: judged.is_some_and(|r| r <= TARGET),
    }
}

/// Writes `live.md` and `live.json` under `dir`.
pub fn write(dir: &Path, c: &Comparison) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let md = dir.join("live.md");
    std::fs::write(&md, markdown(c))?;
    let json = dir.join("live.json");
    std::fs::write(
        &json,
        serde_json::to_vec_pretty(c).map_err(std::io::Error::other)?,
    )?;
    Ok(vec![md, json])
}
