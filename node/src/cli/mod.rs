//! The `konsilium` command line: its commands and arguments, and the
//! dispatch of each command to the module that carries it out.

mod checks;
#[cfg(feature = "local-federation")]
mod demo;
mod demo_video;
mod journal;
mod setup;
mod views;

use self::checks::{doctor, verify};
use self::journal::{JournalCommand, journal};
use self::setup::{init, run, specialties};
use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use konsilium_node::config::{LogFormat, NodeConfig};
use konsilium_node::node::{self};
use konsilium_node::ops::admin::{self, AdminClient};
use konsilium_protocol::cert::{OrgLevel, RegionCode};
use konsilium_protocol::identity::AuthorityKey;
use konsilium_protocol::journal::Role;
use konsilium_protocol::specialty::{Lang, Specialty};
use konsilium_protocol::urgency::Urgency;
use std::path::PathBuf;

/// The examples under `konsilium --help`, the demo's only where it is built.
macro_rules! examples {
    ($($demo:literal)?) => {
        concat!(
            "Examples:\n",
            $($demo,)?
            "  konsilium init --org-name \"Sokol CDH\" --data-dir /var/lib/konsilium --root <hex>\n  konsilium run --config /var/lib/konsilium/node.toml\n  konsilium doctor --config /var/lib/konsilium/node.toml\n\nOperator views of a running node (tables, or --json for scripts):\n  export KONSILIUM_CONFIG=/var/lib/konsilium/node.toml\n  konsilium status | peers | directory | route | requests | request ID | outbox | sla | sessions | certs\n  konsilium journal verify | tail | stats"
        )
    };
}

#[cfg(feature = "local-federation")]
const EXAMPLES: &str = examples!(
    "  konsilium demo                                   a federation on loopback, consultations end to end\n"
);
#[cfg(not(feature = "local-federation"))]
const EXAMPLES: &str = examples!();

#[derive(Parser)]
#[command(
    name = "konsilium",
    version,
    about = "Konsilium: federated peer-to-peer telemedicine consultations between medical organizations",
    after_help = EXAMPLES
)]
pub struct Cli {
    /// Log output: text for people, json for collectors (overrides the config file).
    #[arg(long, global = true, value_parser = ["text", "json"])]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Command,
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
    #[cfg(feature = "local-federation")]
    #[command(after_help = "Example:\n  konsilium demo --attachment-mb 20")]
    Demo {
        /// Size of the package's attachment in MiB.
        #[arg(long, default_value_t = 20)]
        attachment_mb: usize,
        /// Keep the nodes' data directories afterwards.
        #[arg(long)]
        keep: bool,
        /// Then hold a video consilium open between two sites: prints each
        /// site's room page to open in Chromium; Ctrl-C ends it.
        #[arg(long)]
        video: bool,
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
    /// Read the running node's configuration file again (as SIGHUP does):
    /// services, consultants, calendar, deadlines, bootstrap peers and API
    /// users take effect; a broken file changes nothing and is named.
    #[command(after_help = "Example:\n  konsilium reload --config /var/lib/konsilium/node.toml")]
    Reload {
        #[command(flatten)]
        at: NodeAt,
    },
    /// Copy a running node's database, journal anchor, keys, config and
    /// attachments into a new directory, consistent at one moment.
    #[command(
        after_help = "Example:\n  konsilium backup --config /var/lib/konsilium/node.toml --to /srv/backup/konsilium-2026-12-02\nThe backup holds the node's keys and patient data: keep it as private as the data directory."
    )]
    Backup {
        #[command(flatten)]
        at: NodeAt,
        /// A new (or empty) directory.
        #[arg(long)]
        to: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Restore a backup into a new data directory, checked against its manifest and journal anchor.
    #[command(
        after_help = "Example:\n  konsilium restore --from /srv/backup/konsilium-2026-12-02 --data-dir /var/lib/konsilium-restored\nThen start the node on it and run `konsilium recover` for what happened since the backup."
    )]
    Restore {
        #[arg(long)]
        from: PathBuf,
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Ask counterparts for consultation state this node lost (restored
    /// from a backup, or a database that dropped its last writes). The node
    /// also does this by itself when it starts and finds its journal
    /// shorter than its anchor.
    #[command(
        after_help = "Examples:\n  konsilium recover\n  konsilium recover --since 2026-11-30T18:00:00Z --from <organization id>\nThe histories arrive as packages; each is checked step by step before it is taken."
    )]
    Recover {
        #[command(flatten)]
        at: NodeAt,
        /// An RFC 3339 time, or `all`; by default an hour before the last entry the journal kept.
        #[arg(long)]
        since: Option<String>,
        /// An organization to ask (repeatable); by default every organization in the directory.
        #[arg(long)]
        from: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Replace this organization's sealing key without a new certificate: the new key is published in its record at once; the old one is kept under keys/retired/ and opens what was sealed to it (packages from senders with an old directory for 30 days).
    #[command(
        name = "rotate-sealing-key",
        after_help = "Example:\n  konsilium rotate-sealing-key --config /var/lib/konsilium/node.toml"
    )]
    RotateSealingKey {
        #[command(flatten)]
        at: NodeAt,
        #[arg(long)]
        json: bool,
    },
    /// Send a probe package to an organization and wait for its signed receipt: reachable end to end, how fast, and how (direct, hole-punched, relayed, store-and-forward). With --video, open a video link instead: whether media gets through, and by which route (host, srflx, prflx, relay).
    #[command(
        after_help = "Examples:\n  konsilium probe 12D3KooW... --timeout 30\n  konsilium probe 12D3KooW... --video"
    )]
    Probe {
        #[command(flatten)]
        at: NodeAt,
        /// The organization id.
        org: String,
        /// Seconds to wait for the receipt (or the video link).
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Check the video path instead of package delivery.
        #[arg(long)]
        video: bool,
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

pub async fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        #[cfg(feature = "local-federation")]
        Command::Demo {
            attachment_mb,
            keep,
            video,
        } => {
            init_logging(log_format(&cli.log_format, LogFormat::Text), "warn");
            demo::run(demo::DemoOptions {
                attachment_mb,
                keep,
                video,
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
        Command::Reload { at } => {
            let answer = at.client()?.post("/v1/reload").await?;
            let value: serde_json::Value = serde_json::from_str(&answer)?;
            println!(
                "reloaded: {}",
                value["reloaded"].as_str().unwrap_or(answer.as_str())
            );
            Ok(())
        }
        Command::Backup { at, to, json } => {
            let to = std::path::absolute(&to)?;
            let q = query(&[("to", Some(to.display().to_string()))]);
            views::backup(&at.client()?, &q, json).await
        }
        Command::Restore { from, data_dir } => {
            let m = konsilium_node::storage::backup::restore(&from, &data_dir)?;
            println!(
                "restored {} into {}: journal of {} entries (head {}), {} consultations, {} attachments; \
                 the journal verifies against its anchor.\n\
                 Point the node's config at it (data_dir) and start it, then run `konsilium recover` \
                 to take back from its counterparts what happened since {}.",
                from.display(),
                data_dir.display(),
                m.journal_entries,
                m.journal_head.get(..16).unwrap_or(&m.journal_head),
                m.consultations.len(),
                m.attachments,
                m.taken_at
            );
            Ok(())
        }
        Command::Recover {
            at,
            since,
            from,
            json,
        } => {
            let from = (!from.is_empty()).then(|| from.join(","));
            let q = query(&[("since", since), ("from", from)]);
            views::recover(&at.client()?, &q, json).await
        }
        Command::RotateSealingKey { at, json } => {
            views::rotate_sealing_key(&at.client()?, json).await
        }
        Command::Probe {
            at,
            org,
            timeout,
            video,
            json,
        } => {
            let q = query(&[
                ("org", Some(org)),
                ("timeout", Some(timeout.to_string())),
                ("video", video.then(|| "true".to_owned())),
            ]);
            views::probe(&at.client()?, &q, video, json).await
        }
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
