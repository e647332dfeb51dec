//! The one-page markdown report of a run.

use crate::scenario::Scenario;
use crate::year::summary::Summary;
use std::fmt::Write;

fn opt(x: Option<f64>, unit: &str) -> String {
    x.map_or_else(|| "-".into(), |x| format!("{x:.1} {unit}"))
}

/// A span of milliseconds in the unit that reads best.
fn span(ms: Option<f64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) if ms < 10_000.0 => format!("{ms:.0} ms"),
        Some(ms) if ms < 600_000.0 => format!("{:.0} s", ms / 1000.0),
        Some(ms) => format!("{:.1} h", ms / 3_600_000.0),
    }
}

/// One line for the terminal.
pub fn headline(s: &Summary) -> String {
    let adherence: Vec<String> = s
        .by_urgency
        .iter()
        .map(|r| format!("{} {:.1}%", r.urgency, r.adherence * 100.0))
        .collect();
    format!(
        "{}: {} consultations, in time: {}; {} escalated; {} requests undelivered; ran in {:.1} s",
        s.scenario,
        s.consultations,
        adherence.join(", "),
        s.escalated,
        s.delivery.undelivered,
        s.wall_s
    )
}

pub fn markdown(scenario: &Scenario, s: &Summary) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# {}\n", s.title);
    let _ = writeln!(md, "{}\n", scenario.source);
    let _ = writeln!(
        md,
        "Seed {}, {} organizations, {} days of new consultations ({} a year, mix \
         {:.0}/{:.0}/{:.0} % planned/urgent/emergency) and a week for the open ones to \
         finish; {} faults. Every organization is a site running the node's protocol \
         machines; packages are sealed, steps and conclusions signed and checked. Ran in \
         {:.1} s.\n",
        s.seed,
        s.organizations,
        s.days,
        scenario.workload.per_year,
        scenario.workload.mix.planned * 100.0,
        scenario.workload.mix.urgent * 100.0,
        scenario.workload.mix.emergency * 100.0,
        scenario.faults.len(),
        s.wall_s
    );
    let _ = writeln!(md, "## Deadlines\n");
    let _ = writeln!(
        md,
        "| urgency | started | in time | late | failed | open | adherence | p50 | p95 |"
    );
    let _ = writeln!(
        md,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for r in &s.by_urgency {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {:.1} % | {} | {} |",
            r.urgency,
            r.started,
            r.in_time,
            r.late,
            r.failed,
            r.open,
            r.adherence * 100.0,
            opt(r.p50_hours, "h"),
            opt(r.p95_hours, "h")
        );
    }
    let _ = writeln!(
        md,
        "\n{} consultations escalated ({} escalations, {} declines with forwarding); \
         {} requests found no consultant in the directory; {} clinician steps came too \
         late to apply (the case had moved on); {} forged steps.\n",
        s.escalated, s.escalations, s.declines, s.unroutable, s.steps_refused, s.forged
    );
    let _ = writeln!(md, "![deadlines](deadlines.png)\n");
    let _ = writeln!(md, "![time to conclusion](time_to_conclusion.png)\n");
    let _ = writeln!(md, "## Delivery\n");
    let d = &s.delivery;
    let _ = writeln!(
        md,
        "{} requests (escalations included), {} undelivered at the end. From a \
         request's creation to its arrival on the consultant's desk: p50 {}, p95 {}, \
         p99 {}, max {}. {} messages were lost on the links and resent by the outbox.\n",
        d.requests,
        d.undelivered,
        opt(d.p50_ms, "ms"),
        opt(d.p95_ms, "ms"),
        opt(d.p99_ms, "ms"),
        opt(d.max_ms, "ms"),
        s.messages_lost
    );
    if let Some(busiest) = &s.relays.busiest_name {
        let _ = writeln!(
            md,
            "District organizations send packages for other regions through their regional \
             center: relays took custody of {} packages (requests and steps), the busiest, \
             {busiest}, of {}. Those packages travel two hops; the delivery times above \
             include both. Answers from other regions come straight back.\n",
            s.relays.carried, s.relays.busiest
        );
    }
    let _ = writeln!(md, "## Load\n");
    let l = &s.load;
    let _ = writeln!(
        md,
        "Conclusions by level: district {}, regional {}, federal {}. The busiest regional \
         organization concluded {}, the busiest federal center {}; federal centers that \
         concluded any averaged {:.1}.\n",
        l.concluded_district,
        l.concluded_regional,
        l.concluded_federal,
        l.busiest_regional,
        l.busiest_federal,
        l.mean_federal
    );
    let _ = writeln!(md, "![load](load.png)\n");
    let _ = writeln!(md, "## Network\n");
    let _ = writeln!(
        md,
        "Each node sent {:.0} bytes a day on average (the busiest {:.0}), with \
         anti-entropy every {} s during the year.\n",
        s.bytes_per_node_day.mean,
        s.bytes_per_node_day.max,
        scenario.directory_interval.as_secs()
    );
    if let Some(c) = &s.convergence {
        let _ = writeln!(
            md,
            "A change to one organization's record, carried by anti-entropy alone every \
             {} s (gossip would carry it faster), reached 99 % of the {} directories that \
             hold it in {} and all of them in {}, at {:.0} bytes per holder and {} \
             duplicate copies. An idle node sends {:.0} bytes an hour.\n",
            c.interval_s,
            c.holders,
            opt(c.p99_s, "s"),
            opt(c.all_s, "s"),
            c.update_bytes_per_holder,
            c.duplicates,
            c.idle_bytes_per_node_hour
        );
        let _ = writeln!(md, "![convergence](convergence.png)\n");
    }
    for v in &s.revocations {
        let _ = writeln!(md, "## A revoked organization\n");
        let _ = writeln!(
            md,
            "On day {:.0} the certificate of {} was revoked, and the operator of {} put \
             the list in force. Nodes pass a new list on to their peers and cut the \
             organization: {} of the other {} nodes held the list, 99 % of them within \
             {} and all within {} (a node down at the time takes the list from the \
             first Hello after it is back). Meanwhile {} requests were still routed to \
             it, and of the {} it made itself, {} were taken in by nodes the list had \
             not reached yet.\n",
            v.day,
            v.organization,
            v.handed_to,
            v.reached,
            v.nodes,
            span(v.p99_ms),
            span(v.all_ms),
            v.routed_to_it,
            v.asked_by_it,
            v.taken_in_from_it
        );
    }
    md
}
