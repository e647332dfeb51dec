//! `konsilium-simulations vologda` (or `qiqihar`, `national`,
//! `national-stress`): a year of a federation's consultations on the real
//! protocol machines, written as CSV, JSON, plots and a one-page report.
//! With `--live`, the scenario's organizations (`--nodes` of them) run as
//! real nodes in this process instead, beside the model on the same ones.

/// See the workspace's `mimalloc` entry.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context, bail};
use clap::Parser;
use konsilium_protocol::testkit::package_crypto::PackageCrypto;
use konsilium_protocol::testkit::suite::{self, SuiteRow};
use konsilium_simulations::live::{self, Links, LiveConfig};
use konsilium_simulations::output;
use konsilium_simulations::scenario::{Scenario, UrgencyMix};
use konsilium_simulations::year::{self, Progress, convergence, summary::Summary};
use std::io::Write;
use std::path::PathBuf;

#[derive(Parser)]
#[command(about = "Konsilium federations at scale, on the real protocol machines")]
struct Args {
    /// vologda, qiqihar, national or national-stress
    scenario: String,
    /// Every draw follows from it: the same seed gives the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where results go (default: target/simulations/<scenario>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Consultations a year, instead of the scenario's own figure.
    #[arg(long)]
    per_year: Option<u32>,
    /// Days of new consultations (1 to 364).
    #[arg(long)]
    days: Option<u32>,
    /// Urgency mix in percent, planned/urgent/emergency, like 80/15/5.
    #[arg(long)]
    mix: Option<String>,
    /// Run without the scenario's faults.
    #[arg(long)]
    no_faults: bool,
    /// Skip the directory convergence measurement.
    #[arg(long)]
    no_convergence: bool,
    /// Add the run's speed to the performance suite's table (the
    /// directory `KONSILIUM_BENCH_RESULTS` names): the simulated days
    /// measured and, when fewer than a year, the year they project to.
    /// With --live: the changed record's spread against plain gossipsub.
    #[arg(long)]
    suite: bool,
    /// Run the scenario's organizations as real nodes (libp2p on
    /// loopback, sled, the node's event loops) and compare with the model.
    #[arg(long)]
    live: bool,
    /// With --live: how many organizations (regional and federal centers
    /// a quarter each, districts the rest).
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// With --live: how many of the agenda's requests to send.
    #[arg(long, default_value_t = 100)]
    requests: usize,
    /// With --live: link the nodes in-process (libp2p's memory transport,
    /// Noise and Yamux as over TCP) instead of loopback TCP, which holds
    /// only a few hundred nodes within one process's file descriptors.
    #[arg(long)]
    in_process: bool,
    /// With --live: seconds the federation rests once its directories are
    /// full, before a record changes.
    #[arg(long, default_value_t = 30)]
    settle: u64,
    /// With --live: seconds a node keeps a connection it no longer uses
    /// (beyond its gossip mesh and spares); a node's own default.
    #[arg(long, default_value_t = konsilium_protocol::keep::Config::default().idle.as_secs())]
    idle: u64,
}

fn mix(text: &str) -> anyhow::Result<UrgencyMix> {
    let parts: Vec<f64> = text
        .split('/')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("--mix {text:?}: use three numbers like 80/15/5"))?;
    let [planned, urgent, emergency] = parts[..] else {
        bail!("--mix {text:?}: use three numbers like 80/15/5");
    };
    if parts.iter().any(|p| *p < 0.0) || parts.iter().sum::<f64>() <= 0.0 {
        bail!("--mix {text:?}: shares must be positive");
    }
    Ok(UrgencyMix {
        planned: planned / 100.0,
        urgent: urgent / 100.0,
        emergency: emergency / 100.0,
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let Some(mut scenario) = Scenario::by_name(&args.scenario) else {
        bail!(
            "unknown scenario {:?}: use one of {}",
            args.scenario,
            Scenario::NAMES.join(", ")
        );
    };
    if let Some(n) = args.per_year {
        scenario.workload.per_year = n;
    }
    if let Some(d) = args.days {
        scenario.days = d;
    }
    if let Some(m) = &args.mix {
        scenario.workload.mix = mix(m)?;
    }
    if args.no_faults {
        scenario.faults.clear();
    }
    scenario
        .check()
        .map_err(|e| anyhow::anyhow!("scenario {}: {e}", scenario.name))?;
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from("target/simulations").join(scenario.name));
    if args.live {
        // The nodes' own logs, as an operator would set them (RUST_LOG).
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
        let config = LiveConfig {
            nodes: args.nodes,
            requests: args.requests,
            seed: args.seed,
            links: if args.in_process {
                Links::Memory
            } else {
                Links::Tcp
            },
            settle: std::time::Duration::from_secs(args.settle),
            keep: konsilium_protocol::keep::Config {
                idle: std::time::Duration::from_secs(args.idle),
                ..Default::default()
            },
        };
        eprintln!(
            "{}: {} organizations as live nodes, {} requests, seed {}",
            scenario.title,
            config.nodes.min(scenario.orgs.len()),
            config.requests,
            config.seed
        );
        let started = std::time::Instant::now();
        let comparison = live::compare::run(&scenario, config, |what| {
            eprintln!("[{:>5.1} s] {what}", started.elapsed().as_secs_f64())
        })?;
        print!("{}", live::compare::markdown(&comparison));
        for path in live::compare::write(&out, &comparison)
            .with_context(|| format!("writing results to {}", out.display()))?
        {
            println!("  {}", path.display());
        }
        if args.suite {
            let row = live::compare::suite_row(&comparison.live);
            match suite::record("7-live", &[row])? {
                Some(path) => println!("  {}", path.display()),
                None => bail!("--suite needs {} to name a directory", suite::RESULTS_DIR),
            }
        }
        return Ok(());
    }
    eprintln!(
        "{}\n{} organizations, {} consultations a year, {} days, seed {}",
        scenario.title,
        scenario.orgs.len(),
        scenario.workload.per_year,
        scenario.days,
        args.seed
    );
    let convergence = if args.no_convergence {
        None
    } else {
        eprint!("directory convergence at the real anti-entropy interval... ");
        let c = convergence::measure(&scenario, args.seed)?;
        eprintln!("99% in {}, all in {}", seconds(c.p99_s), seconds(c.all_s));
        Some(c)
    };
    let outcome = year::run(&scenario, args.seed, |p: &Progress| {
        if p.day.is_multiple_of(7) || p.day == p.days {
            eprint!(
                "\rday {:>3}/{}: {} consultations, {} concluded ({:.0} s)   ",
                p.day,
                p.days,
                p.started,
                p.concluded,
                p.wall.as_secs_f64()
            );
            let _ = std::io::stderr().flush();
        }
    })?;
    eprintln!();
    let summary = Summary::of(&scenario, args.seed, &outcome, convergence);
    let written = output::write(&out, &scenario, &outcome, &summary)
        .with_context(|| format!("writing results to {}", out.display()))?;
    println!("{}", output::report::headline(&summary));
    for path in written {
        println!("  {}", path.display());
    }
    if args.suite {
        let row = speed_row(&scenario, &outcome);
        match suite::record("6-model", &[row])? {
            Some(path) => println!("  {}", path.display()),
            None => bail!("--suite needs {} to name a directory", suite::RESULTS_DIR),
        }
    }
    Ok(())
}

/// The model's speed against the suite's target of a simulated year in a
/// minute, and against its limit: the crypto of every package the year
/// carried (sealed, opened, the signed request or step inside checked, a
/// receipt signed and checked), each part timed in this run. Directory
/// and admission signatures are left out, and so is the first package
/// between two organizations paying for their keys' agreement, so the
/// limit is a floor. A run of other than 365 days of new consultations is
/// projected (`year::Phases::year`), and says so.
fn speed_row(scenario: &Scenario, outcome: &year::Outcome) -> SuiteRow {
    const TARGET_S: f64 = 60.0;
    let phases = &outcome.phases;
    let wall = outcome.wall.as_secs_f64();
    let (setup, arrivals) = (phases.setup.as_secs_f64(), phases.arrivals.as_secs_f64());
    let tail = phases.tail(outcome.wall).as_secs_f64();
    let projection = phases.year(scenario.days, outcome.wall, outcome.sealed);
    let (year, year_packages) = (projection.seconds, projection.packages);
    let projected = scenario.days != year::YEAR_DAYS;
    let crypto = PackageCrypto::probe(200, 1024);
    // A delivered package, and the request or step signed inside it.
    let per_package = crypto.delivery() + crypto.sign + crypto.verify;
    let limit = per_package.as_secs_f64() * year_packages;
    SuiteRow {
        row: format!(
            "{} model scenario ({} organizations), one simulated year",
            scenario.name,
            scenario.orgs.len()
        ),
        measured: format!(
            "{} days of arrivals and {} of tail in {wall:.0} s",
            scenario.days,
            year::TAIL_DAYS
        ),
        baseline: "-".into(),
        limit: format!(
            "the crypto of its {year_packages:.0} packages (seal {:.3} + open {:.3} + 2 × (sign \
             {:.3} + verify {:.3}) ms each): {limit:.0} s a year on one core; budget \
             {TARGET_S:.0} s on 2 cores",
            ms(crypto.seal),
            ms(crypto.open),
            ms(crypto.sign),
            ms(crypto.verify),
        ),
        judged: format!(
            "{year:.0} s a year{}, {:.1}× limit",
            if projected {
                format!(" (projected from {} days of arrivals)", scenario.days)
            } else {
                String::new()
            },
            year / limit
        ),
        context: format!(
            "setup {setup:.1} s, {:.2} s per day of arrivals, tail {tail:.1} s; the limit alone \
             is {:.1}× the budget",
            arrivals / f64::from(scenario.days.max(1)),
            limit / TARGET_S
        ),
        target: format!("≤ {TARGET_S:.0} s"),
        met: year <= TARGET_S,
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn seconds(s: Option<f64>) -> String {
    s.map_or_else(|| "(not within 4 h)".into(), |s| format!("{s:.0} s"))
}
