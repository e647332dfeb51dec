//! A run's results as files: CSV for spreadsheets, JSON for tools, PNG and
//! SVG plots, and a one-page markdown report.

pub mod plots;
pub mod report;

use crate::scenario::Scenario;
use crate::year::Outcome;
use crate::year::summary::Summary;
use konsilium_protocol::time::Timestamp;
use serde::Serialize;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Serialize)]
struct CaseRow<'a> {
    urgency: String,
    specialty: &'static str,
    requester: &'a str,
    asked_level: String,
    burst: bool,
    created_h: f64,
    due_h: Option<f64>,
    arrived_h: Option<f64>,
    concluded_h: Option<f64>,
    concluded_by: Option<&'a str>,
    escalations: u32,
    declines: u32,
    in_time: bool,
    failed: bool,
}

#[derive(Serialize)]
struct OrgRow<'a> {
    name: &'a str,
    tier: &'a str,
    level: String,
    region: &'a str,
    asked: u32,
    received: u32,
    concluded: u32,
    declined: u32,
    bytes_per_day: f64,
}

fn hours(start: Timestamp, t: Timestamp) -> f64 {
    t.since(start).as_secs_f64() / 3600.0
}

fn csv_error(e: csv::Error) -> io::Error {
    io::Error::other(e)
}

/// Writes every result file into `dir` (created if missing) and returns
/// their paths.
pub fn write(
    dir: &Path,
    scenario: &Scenario,
    outcome: &Outcome,
    summary: &Summary,
) -> io::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    let start = outcome.start;
    let name = |i: usize| scenario.orgs[i].name.as_str();

    let path = dir.join("consultations.csv");
    let mut w = csv::Writer::from_path(&path).map_err(csv_error)?;
    for c in &outcome.ledger.cases {
        w.serialize(CaseRow {
            urgency: c.urgency.to_string(),
            specialty: c.specialty.slug(),
            requester: name(c.requester),
            asked_level: c.level.to_string(),
            burst: c.burst,
            created_h: hours(start, c.created),
            due_h: c.due.map(|t| hours(start, t)),
            arrived_h: c.arrived.map(|t| hours(start, t)),
            concluded_h: c.concluded.map(|t| hours(start, t)),
            concluded_by: c.concluded_by.map(name),
            escalations: c.escalations,
            declines: c.declines,
            in_time: c.in_time(),
            failed: c.failed,
        })
        .map_err(csv_error)?;
    }
    w.flush()?;
    written.push(path);

    let path = dir.join("organizations.csv");
    let mut w = csv::Writer::from_path(&path).map_err(csv_error)?;
    let days = outcome.end.since(start).as_secs_f64() / 86_400.0;
    for (i, (org, load)) in scenario.orgs.iter().zip(&outcome.ledger.load).enumerate() {
        w.serialize(OrgRow {
            name: &org.name,
            tier: org.tier,
            level: org.level.to_string(),
            region: &org.region,
            asked: load.asked,
            received: load.received,
            concluded: load.concluded,
            declined: load.declined,
            bytes_per_day: outcome.bytes[i] as f64 / days,
        })
        .map_err(csv_error)?;
    }
    w.flush()?;
    written.push(path);

    if let Some(c) = &summary.convergence {
        let path = dir.join("convergence.csv");
        let mut w = csv::Writer::from_path(&path).map_err(csv_error)?;
        w.write_record(["seconds", "share_of_holders"])
            .map_err(csv_error)?;
        for (t, share) in &c.curve {
            w.write_record([t.to_string(), share.to_string()])
                .map_err(csv_error)?;
        }
        w.flush()?;
        written.push(path);
    }

    let path = dir.join("summary.json");
    let json = serde_json::to_string_pretty(&serde_json::json!({
        "summary": summary,
        "scenario": scenario,
    }))
    .map_err(io::Error::other)?;
    fs::write(&path, json)?;
    written.push(path);

    written.extend(plots::draw_all(dir, scenario, outcome, summary)?);

    let path = dir.join("report.md");
    fs::write(&path, report::markdown(scenario, summary))?;
    written.push(path);
    Ok(written)
}
