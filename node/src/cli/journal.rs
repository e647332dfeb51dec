//! `konsilium journal`: verify, tail and count the consultation journal, from
//! the running node or from a stopped node's data directory.

use super::NodeAt;
use super::views;
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use konsilium_node::keys::NodeKeys;
use konsilium_node::ops::admin::{self, AdminClient};
use konsilium_node::telemetry::report::JournalVerifyReport;

#[derive(Subcommand)]
pub(super) enum JournalCommand {
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
    konsilium_node::storage::datadir::copy_tree(&db, &copy)?;
    let store = konsilium_node::storage::store::Store::open(&copy).map_err(|e| {
        anyhow::anyhow!(
            "cannot open the database at {} ({e}); if a node is running there, stop it first",
            db.display()
        )
    })?;
    Ok((store.journal()?, store.checkpoints()?, org))
}

/// Whether the node answers on its admin socket; `None` means it is not
/// running and `at` names a data directory to read offline instead.
pub(super) async fn running(at: &NodeAt) -> Result<Option<AdminClient>> {
    let client = at.client()?;
    match client.get("/v1/status").await {
        Ok(_) => Ok(Some(client)),
        Err(admin::AdminError::NotRunning { .. }) if at.data_dir()?.is_some() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn journal(command: JournalCommand) -> Result<()> {
    use konsilium_protocol::journal;
    match command {
        JournalCommand::Verify { at, org, json } => {
            let report = match running(&at).await? {
                Some(client) => client.view("/v1/journal/verify").await?.0,
                None => {
                    let data_dir = at.data_dir()?.context("no data directory")?;
                    let (entries, checkpoints, org) = load_journal(&data_dir, org)?;
                    let anchor = konsilium_node::storage::anchor::read(&data_dir)?;
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
            let report = konsilium_node::telemetry::report::JournalStatsReport::from(
                &journal::stats(&entries),
            );
            views::print_journal_stats(report, json)?;
            Ok(())
        }
    }
}
