//! The operator views: fetch a report over the admin channel and print it as
//! a table for people or as JSON (`--json`) for scripts.

mod network;
pub use network::{peers, probe, sessions, status};

use anyhow::Result;
use comfy_table::{Table, presets};
use konsilium_node::ops::admin::AdminClient;
use konsilium_node::telemetry::report::*;
use konsilium_protocol::specialty::{Lang, Specialty};
use serde::de::DeserializeOwned;

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    if !header.is_empty() {
        t.set_header(header.iter().map(|h| h.to_uppercase()));
    }
    t
}

fn pairs(rows: &[(&str, String)]) -> Table {
    let mut t = table(&[]);
    for (k, v) in rows {
        t.add_row(vec![k.to_string(), v.clone()]);
    }
    t
}

fn or_dash(v: Option<impl ToString>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// Shortens an org id for tables; `--json` always carries the whole id.
fn short(id: &str) -> String {
    if id.len() > 16 {
        format!("{}…{}", &id[..8], &id[id.len() - 6..])
    } else {
        id.to_owned()
    }
}

fn duration(secs: i64) -> String {
    let sign = if secs < 0 { "-" } else { "" };
    let s = secs.unsigned_abs();
    match s {
        0..60 => format!("{sign}{s}s"),
        60..3600 => format!("{sign}{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{sign}{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{sign}{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

fn specialty_name(slug: &str, lang: Lang) -> String {
    slug.parse::<Specialty>()
        .map(|s| s.name(lang).to_owned())
        .unwrap_or_else(|_| slug.to_owned())
}

/// Fetches a view; with `--json` prints it as the node sent it (pretty),
/// otherwise hands the decoded report to `render`.
async fn show<T: DeserializeOwned>(
    client: &AdminClient,
    path: &str,
    json: bool,
    render: impl FnOnce(T) -> String,
) -> Result<()> {
    let (report, text) = client.view::<T>(path).await?;
    if json {
        let value: serde_json::Value = serde_json::from_str(&text)?;
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("{}", render(report));
    }
    Ok(())
}

pub async fn directory(client: &AdminClient, query: &str, lang: Lang, json: bool) -> Result<()> {
    let path = format!("/v1/directory{query}");
    show(client, &path, json, |orgs: Vec<DirectoryEntryReport>| {
        if orgs.is_empty() {
            return "no organization matches".into();
        }
        let mut t = table(&[
            "org",
            "name",
            "level",
            "region",
            "seq",
            "age",
            "services",
            "consultants",
        ]);
        for o in orgs {
            let services: Vec<String> = o
                .services
                .iter()
                .map(|s| {
                    format!(
                        "{} ({})",
                        specialty_name(&s.specialty, lang),
                        s.urgencies.join("/")
                    )
                })
                .collect();
            let consultants: Vec<String> = o
                .consultants
                .iter()
                .map(|c| {
                    let names: Vec<String> = c
                        .specialties
                        .iter()
                        .map(|s| specialty_name(s, lang))
                        .collect();
                    format!("{}: {}", c.name, names.join(", "))
                })
                .collect();
            t.add_row(vec![
                short(&o.org),
                o.name,
                o.level,
                o.region,
                o.sequence.to_string(),
                duration(o.age_secs as i64),
                services.join("\n"),
                consultants.join("\n"),
            ]);
        }
        t.to_string()
    })
    .await
}

pub async fn route(client: &AdminClient, query: &str, json: bool) -> Result<()> {
    let path = format!("/v1/route{query}");
    show(client, &path, json, |r: RouteReport| {
        let mut out = format!(
            "route for {} (urgency {}, level {} or higher, region {}):\n",
            r.specialty,
            r.urgency,
            r.min_level,
            r.region.as_deref().unwrap_or("any")
        );
        if r.candidates.is_empty() {
            out += "no candidate: a request would be refused\n";
        } else {
            let mut t = table(&["rank", "org", "name", "level", "region", "next slot", "why"]);
            for c in &r.candidates {
                t.add_row(vec![
                    c.rank.to_string(),
                    short(&c.org),
                    c.name.clone(),
                    c.level.clone(),
                    c.region.clone(),
                    or_dash(c.next_slot.clone()),
                    c.why.clone(),
                ]);
            }
            out += &format!("{t}\n");
            out += &format!("a request would go to {}\n", r.candidates[0].name);
        }
        if !r.skipped.is_empty() {
            let mut t = table(&["skipped", "name", "reason"]);
            for s in &r.skipped {
                t.add_row(vec![short(&s.org), s.name.clone(), s.reason.clone()]);
            }
            out += &format!("\n{t}");
        }
        out
    })
    .await
}

fn summary_row(s: &RequestSummary) -> Vec<String> {
    vec![
        s.id.clone(),
        s.side.clone(),
        if s.counterpart_name.is_empty() {
            short(&s.counterpart)
        } else {
            s.counterpart_name.clone()
        },
        s.specialty.clone(),
        s.urgency.clone(),
        s.state.clone(),
        or_dash(s.deadline.clone()),
        or_dash(s.time_left_secs.map(duration)),
        or_dash(s.deadline_state.clone()),
    ]
}

const SUMMARY_HEADER: [&str; 9] = [
    "id",
    "side",
    "counterpart",
    "specialty",
    "urgency",
    "state",
    "deadline",
    "time left",
    "sla",
];

pub async fn requests(client: &AdminClient, query: &str, json: bool) -> Result<()> {
    let path = format!("/v1/requests{query}");
    show(client, &path, json, |all: Vec<RequestSummary>| {
        if all.is_empty() {
            return "no consultations".into();
        }
        let mut t = table(&SUMMARY_HEADER);
        for s in &all {
            t.add_row(summary_row(s));
        }
        t.to_string()
    })
    .await
}

pub async fn request(client: &AdminClient, id: &str, json: bool) -> Result<()> {
    let path = format!("/v1/requests/{id}");
    show(client, &path, json, |d: RequestDetail| {
        let s = &d.summary;
        let mut out = pairs(&[
            ("consultation", s.id.clone()),
            ("state", s.state.clone()),
            ("urgency", s.urgency.clone()),
            ("specialty", s.specialty.clone()),
            ("physician", d.physician.clone()),
            ("requester", d.requester_org.clone()),
            ("consultant", d.consultant_org.clone()),
            ("deadline", or_dash(s.deadline.clone())),
            ("time left", or_dash(s.time_left_secs.map(duration))),
        ])
        .to_string();
        let mut hops = table(&["hop", "consultation", "organization"]);
        for (i, h) in d.hops.iter().enumerate() {
            hops.add_row(vec![
                (i + 1).to_string(),
                h.consultation.clone(),
                format!("{} ({})", h.consultant_name, short(&h.consultant)),
            ]);
        }
        out += &format!("\n\nhops:\n{hops}");
        let mut steps = table(&["seq", "at", "role", "user", "action"]);
        for t in &d.transitions {
            steps.add_row(vec![
                t.seq.to_string(),
                t.at.clone(),
                t.role.clone(),
                t.user.clone(),
                t.action.clone(),
            ]);
        }
        out += &format!("\n\ntransitions:\n{steps}");
        let mut receipts = table(&["package", "recipient", "received at", "attempts"]);
        for r in &d.receipts {
            receipts.add_row(vec![
                r.package.clone(),
                short(&r.recipient),
                r.received_at.clone(),
                r.attempts.to_string(),
            ]);
        }
        out += &format!("\n\ndelivery receipts:\n{receipts}");
        if let Some(c) = &d.conclusion {
            out += &format!(
                "\n\nconclusion issued {} by {}: {}",
                c.issued_at,
                short(&c.signer),
                c.diagnosis
            );
        }
        out
    })
    .await
}

pub async fn outbox(client: &AdminClient, json: bool) -> Result<()> {
    show(client, "/v1/outbox", json, |all: Vec<OutboxReport>| {
        if all.is_empty() {
            return "the outbox is empty: everything was delivered".into();
        }
        let mut t = table(&[
            "package",
            "recipient",
            "next hop",
            "origin",
            "attempts",
            "next retry",
            "last error",
        ]);
        for o in all {
            t.add_row(vec![
                o.package,
                if o.recipient_name.is_empty() {
                    short(&o.recipient)
                } else {
                    o.recipient_name
                },
                short(&o.next_hop),
                o.origin,
                o.attempts.to_string(),
                if o.refused.is_some() {
                    "never: refused".into()
                } else {
                    o.next_retry
                },
                or_dash(o.last_error),
            ]);
        }
        t.to_string()
    })
    .await
}

pub async fn sla(client: &AdminClient, json: bool) -> Result<()> {
    show(client, "/v1/sla", json, |r: SlaReport| {
        let counts = |title: &str, rows: &[SlaCount]| {
            let mut t = table(&[title, "on track", "at risk", "breached"]);
            for c in rows {
                t.add_row(vec![
                    if c.name.is_empty() {
                        c.key.clone()
                    } else {
                        c.name.clone()
                    },
                    c.on_track.to_string(),
                    c.at_risk.to_string(),
                    c.breached.to_string(),
                ]);
            }
            t.to_string()
        };
        let mut out = if r.late.is_empty() {
            "no open consultation is at risk or late\n".to_string()
        } else {
            let mut t = table(&SUMMARY_HEADER);
            for s in &r.late {
                t.add_row(summary_row(s));
            }
            format!("at risk or breached:\n{t}\n")
        };
        out += &format!("\n{}", counts("urgency", &r.by_urgency));
        out += &format!("\n\n{}", counts("counterpart", &r.by_counterpart));
        out
    })
    .await
}

pub async fn backup(client: &AdminClient, query: &str, json: bool) -> Result<()> {
    let text = client.post(&format!("/v1/backup{query}")).await?;
    let m: konsilium_node::storage::backup::Manifest = serde_json::from_str(&text)?;
    if json {
        println!("{text}");
        return Ok(());
    }
    println!(
        "{}",
        pairs(&[
            ("taken at", m.taken_at.clone()),
            (
                "journal",
                format!("{} entries, head {}", m.journal_entries, m.journal_head)
            ),
            ("directory digest", m.directory_digest.clone()),
            ("consultations", m.consultations.len().to_string()),
            (
                "attachments",
                format!("{} ({} bytes)", m.attachments, m.attachment_bytes)
            ),
        ])
    );
    Ok(())
}

pub async fn recover(client: &AdminClient, query: &str, json: bool) -> Result<()> {
    let text = client.post(&format!("/v1/recover{query}")).await?;
    let report: RecoveryReport = serde_json::from_str(&text)?;
    if json {
        let value: serde_json::Value = serde_json::from_str(&text)?;
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let mut t = table(&["organization", "state", "consultations", "reason"]);
    for a in &report.counterparts {
        let name = if a.name.is_empty() {
            short(&a.org)
        } else {
            a.name.clone()
        };
        t.add_row(vec![
            name,
            a.state.clone(),
            a.consultations.to_string(),
            or_dash(a.reason.as_deref()),
        ]);
    }
    println!("{t}\n");
    println!(
        "{} consultation histories queued for this node by its counterparts (everything since {}); \
         they arrive as packages and are checked step by step before they are taken",
        report.consultations, report.since
    );
    Ok(())
}

pub async fn rotate_sealing_key(client: &AdminClient, json: bool) -> Result<()> {
    let text = client.post("/v1/rotate-sealing-key").await?;
    let r: RotationReport = serde_json::from_str(&text)?;
    if json {
        println!("{text}");
    } else {
        println!(
            "new sealing key {} published in the directory record\n\
             retired key {} opens packages sealed to it until {}, and what this node holds for as \
             long as keys/retired/ keeps it ({} retired keys); back up keys/",
            r.sealing_key, r.retired, r.accepted_until, r.retired_keys
        );
    }
    Ok(())
}

pub async fn certs(client: &AdminClient, json: bool) -> Result<()> {
    show(client, "/v1/certs", json, |c: CertsReport| {
        let o = &c.organization;
        let mut rows = vec![
            ("roots", c.roots.join("\n")),
            (
                "organization",
                format!("{} ({}), {} in {}", o.name, o.org, o.level, o.region),
            ),
            (
                "  certificate",
                format!(
                    "serial {} from {}, valid {} .. {} ({} days left)",
                    o.serial, o.issuer, o.valid_from, o.valid_until, o.days_left
                ),
            ),
        ];
        if let Some(a) = &c.authority {
            rows.push((
                "authority",
                format!(
                    "{} ({}), region {}, up to {}",
                    a.name, a.key, a.region, a.max_level
                ),
            ));
            rows.push((
                "  certificate",
                format!(
                    "serial {} from root {}, valid {} .. {} ({} days left)",
                    a.serial, a.issuer, a.valid_from, a.valid_until, a.days_left
                ),
            ));
        }
        let mut out = pairs(&rows).to_string();
        out += "\n\nrevocations known:\n";
        if c.revocations.is_empty() {
            out += "  none";
        } else {
            let mut t = table(&["issuer", "sequence", "issued", "revoked serials"]);
            for r in &c.revocations {
                let serials: Vec<String> = r.serials.iter().map(|s| s.to_string()).collect();
                t.add_row(vec![
                    short(&r.issuer),
                    r.sequence.to_string(),
                    r.issued_at.clone(),
                    serials.join(", "),
                ]);
            }
            out += &t.to_string();
        }
        for w in &c.warnings {
            out += &format!("\nWARNING: {w}");
        }
        out
    })
    .await
}

/// Prints a journal check, from a running node or a stopped one's database.
pub fn print_journal_verify(report: &JournalVerifyReport, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else if report.intact {
        println!(
            "journal intact: {} entries, {} signed checkpoints covering {} of them, head {}",
            report.entries,
            report.checkpoints,
            report.anchored,
            &report.head[..16.min(report.head.len())]
        );
        if report.anchored < report.entries {
            println!(
                "note: the last {} entries are not yet under a checkpoint (one is signed at shutdown)",
                report.entries - report.anchored
            );
        }
    }
    Ok(())
}

pub async fn journal_tail(client: &AdminClient, n: usize, json: bool) -> Result<()> {
    let path = format!("/v1/journal/tail?n={n}");
    show(client, &path, json, |entries: Vec<JournalEntryReport>| {
        let mut t = table(&["seq", "at", "actor", "role", "consultation", "action"]);
        for e in entries {
            t.add_row(vec![
                e.seq.to_string(),
                e.at,
                or_dash(e.actor),
                or_dash(e.role),
                or_dash(e.consultation),
                e.action,
            ]);
        }
        t.to_string()
    })
    .await
}

pub async fn journal_stats(client: &AdminClient, json: bool) -> Result<()> {
    show(client, "/v1/journal/stats", json, render_journal_stats).await
}

/// For a stopped node's journal, read from its database.
pub fn print_journal_stats(report: JournalStatsReport, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", render_journal_stats(report));
    }
    Ok(())
}

fn render_journal_stats(s: JournalStatsReport) -> String {
    let mut pairs_table = table(&["requester", "consultant", "consultations"]);
    for p in &s.by_pair {
        pairs_table.add_row(vec![
            short(&p.requester),
            short(&p.consultant),
            p.consultations.to_string(),
        ]);
    }
    let mut keys = table(&["by", "value", "count"]);
    for k in &s.by_specialty {
        keys.add_row(vec!["specialty".into(), k.key.clone(), k.count.to_string()]);
    }
    for k in &s.by_urgency {
        keys.add_row(vec!["urgency".into(), k.key.clone(), k.count.to_string()]);
    }
    format!(
        "{pairs_table}\n\n{keys}\n\nconclusions: {}, within the deadline: {}",
        s.conclusions, s.deadlines_met
    )
}

/// Prints doctor's checks; the caller turns failures into the exit code.
pub fn doctor(checks: &[konsilium_node::ops::doctor::Check], json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(checks)?);
        return Ok(());
    }
    let mut t = table(&["check", "result", "detail"]);
    for c in checks {
        let detail = match &c.fix {
            Some(fix) => format!("{}\nfix: {fix}", c.detail),
            None => c.detail.clone(),
        };
        t.add_row(vec![
            c.name.to_string(),
            format!("{:?}", c.verdict).to_uppercase(),
            detail,
        ]);
    }
    println!("{t}");
    Ok(())
}
