//! `konsilium`: set up and run a node, or run the demo federation.

mod demo;
mod views;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use konsilium_node::admin::{self, AdminClient};
use konsilium_node::config::{self, LogFormat, NodeConfig};
use konsilium_node::keys::NodeKeys;
use konsilium_node::node::{self, NodeEvent, NodeSetup};
use konsilium_node::report::JournalVerifyReport;
use konsilium_protocol::cert::{OrgLevel, RegionCode, Trust};
use konsilium_protocol::conclusion::ConclusionFile;
use konsilium_protocol::identity::AuthorityKey;
use konsilium_protocol::journal::Role;
use konsilium_protocol::specialty::{Lang, Specialty};
use konsilium_protocol::urgency::Urgency;
use konsilium_protocol::wire;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "konsilium",
    version,
    about = "Konsilium: federated peer-to-peer telemedicine consultations between medical organizations",
    after_help = "Examples:\n  konsilium demo                                   a federation on loopback, consultations end to end\n  konsilium init --org-name \"Sokol CDH\" --data-dir /var/lib/konsilium --root <hex>\n  konsilium run --config /var/lib/konsilium/node.toml\n  konsilium doctor --config /var/lib/konsilium/node.toml\n\nOperator views of a running node (tables, or --json for scripts):\n  export KONSILIUM_CONFIG=/var/lib/konsilium/node.toml\n  konsilium status | peers | directory | route | requests | request ID | outbox | sla | sessions | certs\n  konsilium journal verify | tail | stats"
)]
struct Cli {
    /// Log output: text for people, json for collectors (overrides the config file).
    #[arg(long, global = true, value_parser = ["text", "json"])]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum JournalCommand {
    /// Detect any edit, deletion or reordering (checked against the signed checkpoints).
    #[command(
        after_help = "Examples:\n  konsilium journal verify --config /var/lib/konsilium/node.toml\n  konsilium journal verify --data-dir /var/lib/konsilium    (a stopped node)"
    )]
    Verify {
        #[command(flatten)]
        at: NodeAt,
        /// The organization whose journal it is, for a stopped node (default: from its identity key).
        #[arg(long)]
        org: Option<konsilium_protocol::identity::OrgId>,
        #[arg(long)]
        json: bool,
    },
    /// The latest journal entries.
    #[command(
        after_help = "Example:\n  konsilium journal tail -n 50 --config /var/lib/konsilium/node.toml"
    )]
    Tail {
        #[command(flatten)]
        at: NodeAt,
        /// How many entries.
        #[arg(short, long, default_value_t = 20)]
        n: usize,
        #[arg(long)]
        json: bool,
    },
    /// Consultations per organization pair, specialty and urgency, and deadline adherence.
    #[command(
        after_help = "Examples:\n  konsilium journal stats --config /var/lib/konsilium/node.toml --json\n  konsilium journal stats --data-dir /var/lib/konsilium    (a stopped node)"
    )]
    Stats {
        #[command(flatten)]
        at: NodeAt,
        #[arg(long)]
        org: Option<konsilium_protocol::identity::OrgId>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Which node a view asks: its admin socket, found from the config file or
/// the data directory, or given directly.
#[derive(clap::Args, Clone)]
struct NodeAt {
    /// The node's config file (its data_dir holds the admin socket).
    #[arg(long, env = "KONSILIUM_CONFIG")]
    config: Option<PathBuf>,
    /// The node's data directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The admin socket itself (default: <data_dir>/admin.sock).
    #[arg(long)]
    socket: Option<PathBuf>,
}

impl NodeAt {
    fn data_dir(&self) -> Result<Option<PathBuf>> {
        if let Some(dir) = &self.data_dir {
            return Ok(Some(dir.clone()));
        }
        match &self.config {
            Some(path) => Ok(Some(NodeConfig::load(path)?.data_dir)),
            None => Ok(None),
        }
    }

    fn client(&self) -> Result<AdminClient> {
        if let Some(socket) = &self.socket {
            return Ok(AdminClient::new(socket.clone()));
        }
        match self.data_dir()? {
            Some(dir) => Ok(AdminClient::new(admin::socket_path(&dir))),
            None => bail!(
                "which node? give --config /var/lib/konsilium/node.toml (or set KONSILIUM_CONFIG), --data-dir, or --socket"
            ),
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run a local federation on loopback and a consultation package end to end.
    #[command(after_help = "Example:\n  konsilium demo --attachment-mb 20")]
    Demo {
        /// Size of the package's attachment in MiB.
        #[arg(long, default_value_t = 20)]
        attachment_mb: usize,
        /// Keep the nodes' data directories afterwards.
        #[arg(long)]
        keep: bool,
    },
    /// Create this organization's keys and a commented config file.
    #[command(
        after_help = "Example:\n  konsilium init --org-name \"Sokol Central District Hospital\" --data-dir /var/lib/konsilium \\\n      --root 3f2a...e9 --port 7400\nThen send the printed org id and sealing key to your federation authority, and put the\ncertificate it returns where the config's organization.certificate points."
    )]
    Init {
        /// The organization's name, as the certificate will carry it.
        #[arg(long)]
        org_name: String,
        /// Where keys, database and attachments live.
        #[arg(long)]
        data_dir: PathBuf,
        /// Config file to write (default: <data-dir>/node.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Federation root public key(s), hex, from your federation authority.
        #[arg(long = "root")]
        roots: Vec<AuthorityKey>,
        /// Port for TCP and QUIC.
        #[arg(long, default_value_t = 7400)]
        port: u16,
    },
    /// Verify a signed conclusion offline: its signature, and its signer's
    /// certificate against the federation's root keys.
    #[command(
        after_help = "Examples:\n  konsilium verify conclusion.ksc --config /var/lib/konsilium/node.toml\n  konsilium verify conclusion.ksc --root 3f2a...e9"
    )]
    Verify {
        /// The conclusion file (as exported by a node).
        file: PathBuf,
        /// Root keys to trust (hex); default: those of --config.
        #[arg(long = "root")]
        roots: Vec<AuthorityKey>,
        /// A node config whose federation.roots and revocations to use.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Create an API user's token: prints the token once, and the config
    /// lines (with only its hash) to add under [api].
    #[command(
        after_help = "Example:\n  konsilium api-token --name \"Dr. Ivanova\" --role physician"
    )]
    ApiToken {
        #[arg(long)]
        name: String,
        /// physician, coordinator, consultant or operator.
        #[arg(long)]
        role: Role,
    },
    /// Check the consultation journal of a stopped node, or count what it records.
    #[command(
        after_help = "Examples:\n  konsilium journal verify --data-dir /var/lib/konsilium\n  konsilium journal stats --data-dir /var/lib/konsilium --json"
    )]
    Journal {
        #[command(subcommand)]
        command: JournalCommand,
    },
    /// List the consultation specialties with their codes, names and SNOMED CT ids.
    #[command(after_help = "Example:\n  konsilium specialties --lang ru")]
    Specialties {
        /// Language of the names: en, ru, uk or zh.
        #[arg(long, default_value = "en")]
        lang: Lang,
    },
    /// Run the node described by a config file until interrupted.
    #[command(after_help = "Example:\n  konsilium run --config /var/lib/konsilium/node.toml")]
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// What the node sees now: identity, certificate, addresses, NAT, peers, queues, deadlines.
    #[command(
        after_help = "Examples:\n  konsilium status --config /var/lib/konsilium/node.toml\n  konsilium status --json | jq .peers_connected"
    )]
    Status {
        #[command(flatten)]
        at: NodeAt,
        #[arg(long)]
        json: bool,
    },
    /// Connected organizations: level, region, address, latency, protocol, gossip score, clock skew.
    #[command(after_help = "Example:\n  konsilium peers --config /var/lib/konsilium/node.toml")]
    Peers {
        #[command(flatten)]
        at: NodeAt,
        #[arg(long)]
        json: bool,
    },
    /// The directory: organizations, their services and consultants, record age and sequence.
    #[command(
        after_help = "Examples:\n  konsilium directory --specialty cardiology --level regional\n  konsilium directory --region RU-VLG --lang ru"
    )]
    Directory {
        #[command(flatten)]
        at: NodeAt,
        /// A specialty slug or code (`konsilium specialties` lists them).
        #[arg(long)]
        specialty: Option<Specialty>,
        /// This level or higher: district, regional, federal (or 1, 2, 3).
        #[arg(long)]
        level: Option<OrgLevel>,
        #[arg(long)]
        region: Option<RegionCode>,
        /// Accepting this urgency: planned, urgent, emergency.
        #[arg(long)]
        urgency: Option<Urgency>,
        /// Language of the specialty names: en, ru, uk, zh.
        #[arg(long, default_value = "en")]
        lang: Lang,
        #[arg(long)]
        json: bool,
    },
    /// Routing dry run: where a request would go, and why each organization was chosen or skipped.
    #[command(
        after_help = "Example:\n  konsilium route --specialty cardiology --min-level regional --urgency emergency"
    )]
    Route {
        #[command(flatten)]
        at: NodeAt,
        #[arg(long)]
        specialty: Specialty,
        #[arg(long, default_value = "district")]
        min_level: OrgLevel,
        #[arg(long, default_value = "planned")]
        urgency: Urgency,
        /// Region to prefer (default: this node's).
        #[arg(long)]
        region: Option<RegionCode>,
        #[arg(long)]
        json: bool,
    },
    /// Consultations with state, urgency, deadline and time left.
    #[command(
        after_help = "Examples:\n  konsilium requests\n  konsilium requests --state in-progress --json"
    )]
    Requests {
        #[command(flatten)]
        at: NodeAt,
        /// A FHIR Task.status: requested, received, accepted, rejected, in-progress,
        /// on-hold, completed, cancelled, failed.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// One consultation: hops, every transition, delivery receipts, conclusion.
    #[command(after_help = "Example:\n  konsilium request 5562e3329fe0f9937e8a82385321f630")]
    Request {
        #[command(flatten)]
        at: NodeAt,
        /// The consultation id (from `konsilium requests`).
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Packages waiting to be delivered: to whom, attempts, next retry, last error.
    #[command(after_help = "Example:\n  konsilium outbox --json")]
    Outbox {
        #[command(flatten)]
        at: NodeAt,
        #[arg(long)]
        json: bool,
    },
    /// Deadlines at risk and breached, by urgency and counterpart.
    #[command(after_help = "Example:\n  konsilium sla")]
    Sla {
        #[command(flatten)]
        at: NodeAt,
        #[arg(long)]
        json: bool,
    },
    /// Live video sessions with RTT, loss and bitrate.
    #[command(after_help = "Example:\n  konsilium sessions")]
    Sessions {
        #[command(flatten)]
        at: NodeAt,
        #[arg(long)]
        json: bool,
    },
    /// The certificate chain, expiry warnings, and the revocations this node knows.
    #[command(after_help = "Example:\n  konsilium certs")]
    Certs {
        #[command(flatten)]
        at: NodeAt,
        #[arg(long)]
        json: bool,
    },
    /// Check config, keys, certificate expiry, disk, ports, clock skew and bootstrap peers.
    #[command(
        after_help = "Example:\n  konsilium doctor --config /var/lib/konsilium/node.toml\nExits with status 1 when a check fails."
    )]
    Doctor {
        #[arg(long, env = "KONSILIUM_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// The node's Prometheus metrics, as a scraper would see them.
    #[command(after_help = "Example:\n  konsilium metrics | grep konsilium_outbox")]
    Metrics {
        #[command(flatten)]
        at: NodeAt,
    },
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn log_format(flag: &Option<String>, fallback: LogFormat) -> LogFormat {
    match flag.as_deref() {
        Some("json") => LogFormat::Json,
        Some(_) => LogFormat::Text,
        None => fallback,
    }
}

/// Errors are printed as one readable chain ("what failed: why"), never as a
/// backtrace: they are addressed to an operator, not a developer.
fn main() -> std::process::ExitCode {
    // Everything the node writes (database, blobs, uploads, sockets) holds
    // or guards patient data: private to the node's user from creation on.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    // A view piped into `head` ends quietly when the pipe closes, as any
    // Unix tool does, instead of panicking in `println!`.
    // SAFETY: at the start of main, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo {
            attachment_mb,
            keep,
        } => {
            init_logging(log_format(&cli.log_format, LogFormat::Text), "warn");
            demo::run(demo::DemoOptions {
                attachment_mb,
                keep,
            })
            .await
        }
        Command::Init {
            org_name,
            data_dir,
            config,
            roots,
            port,
        } => init(&org_name, data_dir, config, &roots, port),
        Command::Run { config } => run(config, &cli.log_format).await,
        Command::Specialties { lang } => specialties(lang),
        Command::Journal { command } => journal(command).await,
        Command::Status { at, json } => views::status(&at.client()?, json).await,
        Command::Peers { at, json } => views::peers(&at.client()?, json).await,
        Command::Directory {
            at,
            specialty,
            level,
            region,
            urgency,
            lang,
            json,
        } => {
            let q = query(&[
                ("specialty", specialty.map(|s| s.slug().to_owned())),
                ("level", level.map(|l| l.to_string())),
                ("region", region.map(|r| r.to_string())),
                ("urgency", urgency.map(|u| u.to_string())),
            ]);
            views::directory(&at.client()?, &q, lang, json).await
        }
        Command::Route {
            at,
            specialty,
            min_level,
            urgency,
            region,
            json,
        } => {
            let q = query(&[
                ("specialty", Some(specialty.slug().to_owned())),
                ("min_level", Some(min_level.to_string())),
                ("urgency", Some(urgency.to_string())),
                ("region", region.map(|r| r.to_string())),
            ]);
            views::route(&at.client()?, &q, json).await
        }
        Command::Requests { at, state, json } => {
            views::requests(&at.client()?, &query(&[("state", state)]), json).await
        }
        Command::Request { at, id, json } => views::request(&at.client()?, &id, json).await,
        Command::Outbox { at, json } => views::outbox(&at.client()?, json).await,
        Command::Sla { at, json } => views::sla(&at.client()?, json).await,
        Command::Sessions { at, json } => views::sessions(&at.client()?, json).await,
        Command::Certs { at, json } => views::certs(&at.client()?, json).await,
        Command::Metrics { at } => {
            print!("{}", at.client()?.get("/metrics").await?);
            Ok(())
        }
        Command::Doctor { config, json } => doctor(&config, json).await,
        Command::ApiToken { name, role } => {
            let token = hex::encode(node::random_bytes::<32>());
            println!(
                "token for {name} ({role}), shown only now; give it to them privately:\n  {token}\n"
            );
            println!(
                "add to the node's config:\n[[api.users]]\nname = {name:?}\nrole = \"{role}\"\ntoken_hash = \"{}\"",
                konsilium_node::config::api::token_hash_hex(&token)
            );
            Ok(())
        }
        Command::Verify {
            file,
            roots,
            config,
        } => verify(&file, roots, config.as_deref()),
    }
}

fn verify(
    file: &std::path::Path,
    mut roots: Vec<AuthorityKey>,
    config: Option<&std::path::Path>,
) -> Result<()> {
    let mut revocations = Vec::new();
    if let Some(path) = config {
        let config = NodeConfig::load(path)?;
        roots.extend(config.roots.iter().copied());
        revocations = config.load_revocations()?;
    }
    if roots.is_empty() {
        bail!("no root key to verify against: give --root <hex> or --config <node.toml>");
    }
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let conclusion_file: ConclusionFile = wire::decode(&bytes)
        .with_context(|| format!("{} is not a conclusion file", file.display()))?;
    let now = node::now();
    let mut trust = Trust::new(roots);
    for notice in &revocations {
        trust
            .apply_revocations(notice, now)
            .context("a configured revocation list is invalid")?;
    }
    let (c, signer) = conclusion_file
        .verify(&trust, now)
        .with_context(|| format!("{} does not verify", file.display()))?;
    println!(
        "valid conclusion, signed by {signer} ({})",
        c.consultant_org
    );
    println!("consultation   {}", c.consultation);
    println!("issued         {}", c.issued_at);
    println!("authors        {}", c.authors.join(", "));
    println!("diagnosis      {}", c.diagnosis);
    println!("recommendations {}", c.recommendations);
    println!("treatment plan {}", c.treatment_plan);
    println!("further studies {}", c.further_studies);
    Ok(())
}

/// Reads a stopped node's journal. sled refuses a second opener, so a
/// running node is reported as such rather than read behind its back.
fn load_journal(
    data_dir: &std::path::Path,
    org: Option<konsilium_protocol::identity::OrgId>,
) -> Result<(
    Vec<konsilium_protocol::journal::Entry>,
    Vec<konsilium_protocol::signed::Signed<konsilium_protocol::journal::Checkpoint>>,
    konsilium_protocol::identity::OrgId,
)> {
    let org = match org {
        Some(org) => org,
        None => NodeKeys::load(data_dir)?.identity.org_id(),
    };
    let db = data_dir.join("db");
    if !db.exists() {
        bail!(
            "no node database at {}: is --data-dir the node's data_dir?",
            db.display()
        );
    }
    // sled writes when it opens (recovery, a new snapshot): a checker must
    // not change what it checks, so it reads a private copy.
    let scratch = tempfile::tempdir().context("cannot create a scratch directory")?;
    let copy = scratch.path().join("db");
    konsilium_node::datadir::copy_tree(&db, &copy)?;
    let store = konsilium_node::store::Store::open(&copy).map_err(|e| {
        anyhow::anyhow!(
            "cannot open the database at {} ({e}); if a node is running there, stop it first",
            db.display()
        )
    })?;
    Ok((store.journal()?, store.checkpoints()?, org))
}

/// Whether the node answers on its admin socket; `None` means it is not
/// running and `at` names a data directory to read offline instead.
async fn running(at: &NodeAt) -> Result<Option<AdminClient>> {
    let client = at.client()?;
    match client.get("/v1/status").await {
        Ok(_) => Ok(Some(client)),
        Err(admin::AdminError::NotRunning { .. }) if at.data_dir()?.is_some() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn journal(command: JournalCommand) -> Result<()> {
    use konsilium_protocol::journal;
    match command {
        JournalCommand::Verify { at, org, json } => {
            let report = match running(&at).await? {
                Some(client) => client.view("/v1/journal/verify").await?.0,
                None => {
                    let data_dir = at.data_dir()?.context("no data directory")?;
                    let (entries, checkpoints, org) = load_journal(&data_dir, org)?;
                    let anchor = konsilium_node::anchor::read(&data_dir)?;
                    JournalVerifyReport::check(&entries, &checkpoints, anchor, &org)
                }
            };
            views::print_journal_verify(&report, json)?;
            match report.error {
                Some(error) => bail!("the journal does not verify: {error}"),
                None => Ok(()),
            }
        }
        JournalCommand::Tail { at, n, json } => views::journal_tail(&at.client()?, n, json).await,
        JournalCommand::Stats { at, org, json } => {
            if let Some(client) = running(&at).await? {
                return views::journal_stats(&client, json).await;
            }
            let data_dir = at.data_dir()?.context("no data directory")?;
            let (entries, _, _) = load_journal(&data_dir, org)?;
            let report =
                konsilium_node::report::JournalStatsReport::from(&journal::stats(&entries));
            views::print_journal_stats(report, json)?;
            Ok(())
        }
    }
}

/// A query string from optional filters, percent-encoded.
fn query(params: &[(&str, Option<String>)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        if let Some(v) = v {
            q.append_pair(k, v);
        }
    }
    let q = q.finish();
    if q.is_empty() { q } else { format!("?{q}") }
}

async fn doctor(config_path: &std::path::Path, json: bool) -> Result<()> {
    use konsilium_node::doctor::{self, Verdict};
    // The live checks need the running node; a config that does not load
    // is reported by the checks themselves.
    let health = match NodeConfig::load(config_path) {
        Ok(c) => AdminClient::new(admin::socket_path(&c.data_dir))
            .view::<konsilium_node::report::HealthReport>("/v1/health")
            .await
            .ok()
            .map(|(h, _)| h),
        Err(_) => None,
    };
    let checks = doctor::run(config_path, health.as_ref(), node::now()).await;
    views::doctor(&checks, json)?;
    let failed = checks.iter().filter(|c| c.verdict == Verdict::Fail).count();
    if failed > 0 {
        bail!("{failed} check(s) failed: see the fixes above");
    }
    Ok(())
}

fn specialties(lang: Lang) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let mut table = format!(
        "{:<5} {:<28} {:<12} name\n",
        "code", "slug (for configs)", "SNOMED CT"
    );
    for s in Specialty::ALL {
        table += &format!(
            "{:<5} {:<28} {:<12} {}\n",
            s.code(),
            s.slug(),
            s.snomed().unwrap_or("-"),
            s.name(lang)
        );
    }
    match out.write_all(table.as_bytes()) {
        // A reader that stopped early (`| head`) is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn init(
    org_name: &str,
    data_dir: PathBuf,
    config_path: Option<PathBuf>,
    roots: &[AuthorityKey],
    port: u16,
) -> Result<()> {
    let data_dir = std::path::absolute(&data_dir)
        .with_context(|| format!("data dir {}", data_dir.display()))?;
    let config_path = config_path.unwrap_or_else(|| data_dir.join("node.toml"));
    if config_path.exists() {
        bail!(
            "{} already exists: refusing to overwrite a configuration (move it away first)",
            config_path.display()
        );
    }
    konsilium_node::datadir::make_private(&data_dir)?;
    let keys = NodeKeys::create(&data_dir)?;
    let org = keys.identity.org_id();
    let text = config::template(org_name, &org, &data_dir, port, roots);
    std::fs::write(&config_path, text)
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    let sealing = hex::encode(keys.sealing.public().as_bytes());
    println!(
        "created keys in {}",
        konsilium_node::keys::keys_dir(&data_dir).display()
    );
    println!("wrote {}", config_path.display());
    println!();
    println!("organization id:    {org}");
    println!("sealing public key: {sealing}");
    println!();
    println!("Next: send both lines to your federation authority, who runs");
    println!("  konsilium-authority certify-org --org {org} --sealing-key {sealing} \\");
    println!(
        "      --name \"{org_name}\" --level <district|regional|federal> --region <CODE> --serial <N> --out org.chain"
    );
    println!(
        "put the returned org.chain where {} says (organization.certificate),",
        config_path.display()
    );
    println!("review the [directory] section (services, consultants, calendar), then");
    println!("  konsilium run --config {}", config_path.display());
    if roots.is_empty() {
        println!(
            "\n(no --root given: paste the federation root key into federation.roots before running)"
        );
    }
    Ok(())
}

async fn run(config_path: PathBuf, log_flag: &Option<String>) -> Result<()> {
    let config = NodeConfig::load(&config_path)?;
    init_logging(log_format(log_flag, config.log.format), &config.log.level);
    let keys = NodeKeys::load(&config.data_dir)?;
    let setup = NodeSetup::from_config(&config, keys)?;
    let handle = std::sync::Arc::new(
        node::start(setup)
            .await
            .context("the node could not start")?,
    );
    let status = handle.status().await?;
    tracing::info!(org = %status.org, name = %status.name, level = %status.level, region = %status.region, "node started");
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let api_task = match config.api.clone() {
        Some(mut api) => {
            let uploads = config.data_dir.join("uploads");
            std::fs::create_dir_all(&uploads)
                .with_context(|| format!("cannot create {}", uploads.display()))?;
            // Uploads interrupted by a crash are plaintext nobody will claim.
            let swept = konsilium_node::datadir::sweep(&uploads)?;
            if swept > 0 {
                tracing::info!(swept, "removed interrupted uploads");
            }
            api.upload_dir = Some(uploads);
            let (addr, task) = konsilium_node::http::serve_until(handle.clone(), api, async {
                let _ = api_stopped.await;
            })
            .await
            .context("the HTTP API could not start")?;
            tracing::info!(%addr, "HTTP API listening (OpenAPI at /openapi.json)");
            Some(task)
        }
        None => None,
    };
    let admin = admin::serve(handle.clone(), &admin::socket_path(&config.data_dir))
        .await
        .context("the admin channel could not start")?;
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics_task = match config.metrics {
        Some(addr) => {
            let (bound, task) = admin::serve_metrics(handle.clone(), addr, async {
                let _ = metrics_stopped.await;
            })
            .await?;
            tracing::info!(%bound, "Prometheus metrics at /metrics");
            Some(task)
        }
        None => None,
    };
    let mut events = handle.subscribe();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            event = events.recv() => match event {
                Ok(NodeEvent::Listening(addr)) => tracing::info!(%addr, "listening"),
                Ok(NodeEvent::PeerCertified { org, name, level }) => tracing::info!(%org, %name, %level, "peer certified"),
                Ok(NodeEvent::PeerRejected { peer, reason }) => tracing::warn!(%peer, %reason, "peer refused"),
                Ok(NodeEvent::PackageReceived { id, sender, bytes }) => tracing::info!(%id, %sender, bytes, "package received"),
                Ok(NodeEvent::PackageDelivered { id, recipient }) => tracing::info!(%id, %recipient, "package delivered"),
                Ok(NodeEvent::Deadline { id, state, due }) => tracing::warn!(%id, ?state, %due, "consultation deadline"),
                Ok(other) => tracing::debug!(event = ?other),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => tracing::debug!(n, "event log lagged"),
                Err(_) => break,
            },
        }
    }
    tracing::info!("shutting down");
    admin.stop().await;
    let _ = stop_metrics.send(());
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    let _ = stop_api.send(());
    if let Some(task) = api_task {
        let _ = task.await;
    }
    if let Ok(handle) = std::sync::Arc::try_unwrap(handle) {
        handle.shutdown().await;
    }
    Ok(())
}
