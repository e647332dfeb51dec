//! How this node stands on the network and reaches others: `status`,
//! `peers`, `probe` (packages and video) and `sessions`.

use super::{duration, or_dash, pairs, short, show, table};
use anyhow::Result;
use konsilium_node::ops::admin::AdminClient;
use konsilium_node::telemetry::report::*;

pub async fn status(client: &AdminClient, json: bool) -> Result<()> {
    show(client, "/v1/status", json, |s: StatusReport| {
        pairs(&[
            ("organization", format!("{} ({})", s.name, s.org)),
            ("level", s.level),
            ("region", s.region),
            (
                "certificate",
                format!(
                    "serial {}, valid {} .. {} ({} days left)",
                    s.certificate.serial,
                    s.certificate.valid_from,
                    s.certificate.valid_until,
                    s.certificate.days_left
                ),
            ),
            (
                "uptime",
                format!(
                    "{} (since {})",
                    duration(s.uptime_secs as i64),
                    s.started_at
                ),
            ),
            ("listen", s.listen.join(", ")),
            (
                "observed",
                or_dash(Some(s.observed.join(", ")).filter(|o| !o.is_empty())),
            ),
            ("role", s.role),
            (
                "reachability",
                match s.confirmed.is_empty() {
                    true => s.nat,
                    false => format!("{} at {}", s.nat, s.confirmed.join(", ")),
                },
            ),
            (
                "relay reservations",
                or_dash(
                    Some(
                        (s.reservations.iter())
                            .map(|r| {
                                format!(
                                    "{} {} ({}){}",
                                    short(&r.relay),
                                    r.state,
                                    r.detail,
                                    match r.addresses.first() {
                                        Some(a) => format!(" {a}"),
                                        None => String::new(),
                                    }
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("; "),
                    )
                    .filter(|r| !r.is_empty()),
                ),
            ),
            (
                "video",
                match (s.video, s.video_mapped) {
                    (None, _) => "off".into(),
                    (Some(port), None) => port,
                    (Some(port), Some(mapped)) => format!("{port}, mapped to {mapped} (STUN)"),
                },
            ),
            ("video relay", or_dash(s.video_relay)),
            ("STUN service", or_dash(s.stun_service)),
            ("peers", s.peers_connected.to_string()),
            (
                "directory",
                format!(
                    "{} organizations, digest {}",
                    s.directory_size,
                    &s.directory_digest[..16.min(s.directory_digest.len())]
                ),
            ),
            (
                "outbox / inbox",
                format!("{} / {}", s.outbox_depth, s.inbox_depth),
            ),
            ("attachments incoming", s.attachments_incoming.to_string()),
            (
                "deadlines",
                format!(
                    "{} at risk, {} breached",
                    s.deadlines_at_risk, s.deadlines_breached
                ),
            ),
            (
                "recovery",
                match &s.recovery {
                    None => "none asked".into(),
                    Some(r) => format!(
                        "since {}: {} of {} counterparts answered, {} histories queued{}",
                        r.since,
                        r.counterparts
                            .iter()
                            .filter(|c| c.state == "answered")
                            .count(),
                        r.counterparts.len(),
                        r.consultations,
                        if r.finished { "" } else { " (under way)" }
                    ),
                },
            ),
            ("version", s.version),
        ])
        .to_string()
    })
    .await
}

pub async fn peers(client: &AdminClient, json: bool) -> Result<()> {
    show(client, "/v1/peers", json, |peers: Vec<PeerReport>| {
        if peers.is_empty() {
            return "no connected organizations".into();
        }
        let mut t = table(&[
            "state", "org", "name", "level", "region", "link", "address", "latency", "protocol",
            "agent", "score", "skew",
        ]);
        let reasons: Vec<String> = peers
            .iter()
            .filter_map(|p| Some(format!("{}: {}", short(&p.org), p.reason.as_ref()?)))
            .collect();
        for p in peers {
            t.add_row(vec![
                p.admission,
                short(&p.org),
                p.name,
                p.level,
                p.region,
                link_column(p.link, p.hole_punch_ms, &p.connections),
                p.addresses.first().cloned().unwrap_or_default(),
                or_dash(p.latency_ms.map(|l| format!("{l:.1} ms"))),
                or_dash(p.protocol_version),
                or_dash(p.agent_version),
                or_dash(p.gossip_score.map(|s| format!("{s:.2}"))),
                or_dash(p.clock_skew_ms.map(|s| format!("{s} ms"))),
            ]);
        }
        let mut out = t.to_string();
        if !reasons.is_empty() {
            out += "\nrefused:\n";
            for r in reasons {
                out += &format!("  {r}\n");
            }
        }
        out
    })
    .await
}

/// The best link, and every connection's when there are several (a
/// relayed circuit beside the direct connection, about to close).
fn link_column(link: Option<String>, hole_punch_ms: Option<f64>, connections: &[String]) -> String {
    let mut column = match (link, hole_punch_ms) {
        (Some(link), Some(ms)) => format!("{link} ({ms:.0} ms after relay)"),
        (link, _) => or_dash(link),
    };
    if connections.len() > 1 {
        column += &format!(" [{}]", connections.join(", "));
    }
    column
}

pub async fn sessions(client: &AdminClient, json: bool) -> Result<()> {
    show(client, "/v1/sessions", json, |r: SessionsReport| {
        if r.sessions.is_empty() {
            return match r.note {
                Some(note) => format!("no live video sessions ({note})"),
                None => "no live video sessions".into(),
            };
        }
        let mut t = table(&[
            "consultation",
            "site",
            "state",
            "route",
            "rtt",
            "loss",
            "in / out",
            "fps in / out",
        ]);
        let kbits = |bps: u64| format!("{:.0}", bps as f64 / 1000.0);
        for s in r.sessions {
            let site = match s.name.is_empty() {
                true => short(&s.peer),
                false => s.name,
            };
            let route = s.route.map(|route| match s.remote {
                Some(remote) => format!("{route} {remote}"),
                None => route,
            });
            t.add_row(vec![
                s.consultation,
                site,
                s.state,
                or_dash(route),
                or_dash(s.rtt_ms.map(|v| format!("{v:.1} ms"))),
                or_dash(s.loss.map(|v| format!("{:.1} %", v * 100.0))),
                format!("{} / {} kbit/s", kbits(s.receive_bps), kbits(s.send_bps)),
                format!("{:.0} / {:.0}", s.receive_fps, s.send_fps),
            ]);
        }
        t.to_string()
    })
    .await
}

pub async fn probe(client: &AdminClient, query: &str, video: bool, json: bool) -> Result<()> {
    let text = client.post(&format!("/v1/probe{query}")).await?;
    if json {
        println!("{text}");
        return Ok(());
    }
    if video {
        let r: VideoProbeReport = serde_json::from_str(&text)?;
        println!(
            "video to {} ({}) connected in {:.0} ms: media goes to its {} address {}{}",
            r.name,
            short(&r.org),
            r.connect_ms,
            r.route.as_deref().unwrap_or("unknown"),
            r.remote.as_deref().unwrap_or("-"),
            r.rtt_ms
                .map(|rtt| format!(", {rtt:.1} ms round trip"))
                .unwrap_or_default()
        );
        return Ok(());
    }
    let report: ProbeReport = serde_json::from_str(&text)?;
    println!(
        "{} ({}) received probe {} and signed its receipt: {:.1} ms round trip, {}",
        report.name,
        short(&report.org),
        short(&report.package),
        report.round_trip_ms,
        report.link.as_deref().unwrap_or("link closed since")
    );
    Ok(())
}
