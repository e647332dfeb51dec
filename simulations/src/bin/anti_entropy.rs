//! Runs the directory anti-entropy scenarios and prints what they cost.
//!
//! `cargo run --release -p konsilium-simulations --bin anti_entropy [-- --quick] [--seed N]`

use konsilium_simulations::{
    Federation, PartitionConfig, RunReport, SimError, Traffic, cold_start, late_joiner,
    partition_heal, small_delta,
};
use std::process::ExitCode;
use std::time::Instant;

struct Sizes {
    nodes: usize,
    orgs: usize,
    rounds_apart: usize,
    updates_per_round: usize,
    delta_orgs: usize,
    differing: usize,
}

const USAGE: &str = "usage: anti_entropy [--quick] [--seed N]";

fn main() -> ExitCode {
    let mut quick = false;
    let mut seed = 1;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--seed" => match args.next().and_then(|s| s.parse().ok()) {
                Some(s) => seed = s,
                None => {
                    eprintln!("--seed needs a number\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument {other:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let sizes = if quick {
        Sizes {
            nodes: 12,
            orgs: 300,
            rounds_apart: 3,
            updates_per_round: 5,
            delta_orgs: 2_000,
            differing: 10,
        }
    } else {
        Sizes {
            nodes: 50,
            orgs: 2_000,
            rounds_apart: 5,
            updates_per_round: 20,
            delta_orgs: 20_000,
            differing: 10,
        }
    };
    match run(&sizes, seed) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("anti_entropy: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(s: &Sizes, seed: u64) -> Result<(), SimError> {
    let started = Instant::now();
    let fed = Federation::generate("anti-entropy", s.orgs.max(s.delta_orgs));
    println!(
        "Konsilium directory anti-entropy, seed {seed}: every exchange run by the nodes' own \
         DirectorySync machines, every message through wire::encode/decode"
    );
    println!(
        "federation of {} organizations generated in {:.1} s\n",
        int(fed.len() as u64),
        started.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let r = cold_start(&fed, s.nodes, s.orgs, seed)?;
    println!(
        "1. Cold start: {} nodes, {} organizations, each record first known only to its home node ({:.1} s)",
        r.nodes,
        int(r.orgs as u64),
        t.elapsed().as_secs_f64()
    );
    let mut table = Table::new(&[
        "strategy",
        "rounds",
        "messages",
        "bytes",
        "bytes/node",
        "records sent",
    ]);
    for (name, run) in [
        ("anti-entropy", &r.anti_entropy),
        ("full-state push", &r.full_push),
    ] {
        table.row(run_row(name, run));
    }
    table.print();
    println!(
        "   full-state push sends {:.1}x the bytes of anti-entropy (full directory: {} bytes, {} per record)\n",
        r.byte_ratio(),
        int(r.full_directory_bytes),
        int(r.full_directory_bytes / r.orgs as u64)
    );

    let t = Instant::now();
    let r = late_joiner(&fed, s.nodes, s.orgs, seed)?;
    println!(
        "2. Late joiner: an empty node and one member of a converged network of {} nodes ({:.1} s)",
        r.nodes,
        t.elapsed().as_secs_f64()
    );
    let mut table = Table::new(&[
        "sync started by",
        "messages",
        "bytes",
        "records",
        "vs full directory",
        "converged",
    ]);
    for (name, join) in [
        ("newcomer", &r.joiner_initiated),
        ("member", &r.member_initiated),
    ] {
        table.row(vec![
            name.into(),
            int(join.traffic.messages),
            int(join.traffic.bytes),
            int(join.traffic.records),
            format!(
                "{:.3}x",
                join.traffic.bytes as f64 / r.full_directory_bytes as f64
            ),
            if join.converged { "in 1 sync" } else { "NO" }.into(),
        ]);
    }
    table.print();
    println!(
        "   full directory: {} bytes; a sync between converged nodes: {}\n",
        int(r.full_directory_bytes),
        traffic(&r.idle_sync)
    );

    let t = Instant::now();
    let config = PartitionConfig {
        nodes: s.nodes,
        orgs: s.orgs,
        rounds_apart: s.rounds_apart,
        updates_per_round: s.updates_per_round,
    };
    let r = partition_heal(&fed, config, seed)?;
    println!(
        "3. Partition heal: {} nodes in two halves for {} rounds, {} updates published \
         ({} organizations on both sides) ({:.1} s)",
        config.nodes,
        config.rounds_apart,
        r.updates,
        r.conflicting_orgs,
        t.elapsed().as_secs_f64()
    );
    let mut table = Table::new(&["phase", "rounds", "messages", "bytes", "records sent"]);
    table.row(vec![
        "apart".into(),
        config.rounds_apart.to_string(),
        int(r.apart.messages),
        int(r.apart.bytes),
        int(r.apart.records),
    ]);
    table.row(vec![
        "healed, to convergence".into(),
        r.heal.rounds.to_string(),
        int(r.heal.traffic.messages),
        int(r.heal.traffic.bytes),
        int(r.heal.traffic.records),
    ]);
    table.print();
    println!(
        "   directories: {} distinct before healing, {} after; {} entries without their newest record\n",
        r.before_heal.distinct_digests, r.heal.end.distinct_digests, r.stale_entries
    );

    let t = Instant::now();
    let r = small_delta(&fed, s.delta_orgs, s.differing, seed)?;
    println!(
        "4. Small delta: two nodes with {} organizations, {} records differ ({:.1} s)",
        int(r.orgs as u64),
        r.differing,
        t.elapsed().as_secs_f64()
    );
    let mut table = Table::new(&["exchange", "messages", "bytes", "records"]);
    table.row(vec![
        "one anti-entropy sync".into(),
        int(r.sync.messages),
        int(r.sync.bytes),
        int(r.sync.records),
    ]);
    table.row(vec![
        "full directory".into(),
        "1".into(),
        int(r.full_directory_bytes),
        int(r.orgs as u64),
    ]);
    table.print();
    println!(
        "   sync / full directory: {:.4} (1/{:.0}); converged: {}, stale entries: {}",
        r.byte_ratio(),
        1.0 / r.byte_ratio(),
        if r.converged { "yes" } else { "NO" },
        r.stale_entries
    );
    println!("\ntotal {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn run_row(name: &str, run: &RunReport) -> Vec<String> {
    vec![
        name.into(),
        run.rounds.to_string(),
        int(run.traffic.messages),
        int(run.traffic.bytes),
        int(run.bytes_per_node),
        int(run.traffic.records),
    ]
}

fn traffic(t: &Traffic) -> String {
    format!(
        "{} messages, {} bytes, {} records",
        int(t.messages),
        int(t.bytes),
        int(t.records)
    )
}

/// Thousands separated by commas, for reading byte counts at a glance.
fn int(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Columns sized to their widest cell; the first left-aligned, numbers right.
struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: &[&str]) -> Self {
        Self {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn print(&self) {
        let columns = self.rows[0].len();
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .map(|r| r[c].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in &self.rows {
            let mut line = String::from("   ");
            for (c, cell) in row.iter().enumerate() {
                if c == 0 {
                    line += &format!("{cell:<w$}", w = widths[c]);
                } else {
                    line += &format!("  {cell:>w$}", w = widths[c]);
                }
            }
            println!("{}", line.trim_end());
        }
    }
}
