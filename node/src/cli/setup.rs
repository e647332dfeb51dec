//! Setting up and running a node: keys and a commented config, the specialty
//! codes the config uses, and the node itself until interrupted.

use super::{init_logging, log_format};
use anyhow::{Context, Result, bail};
use konsilium_node::config::{self, NodeConfig};
use konsilium_node::keys::NodeKeys;
use konsilium_node::node::{self, NodeEvent, NodeSetup};
use konsilium_node::ops::admin::{self};
use konsilium_protocol::identity::AuthorityKey;
use konsilium_protocol::specialty::{Lang, Specialty};
use std::path::PathBuf;

pub(super) fn specialties(lang: Lang) -> Result<()> {
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

pub(super) fn init(
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
    konsilium_node::storage::datadir::make_private(&data_dir)?;
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

pub(super) async fn run(config_path: PathBuf, log_flag: &Option<String>) -> Result<()> {
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
            let swept = konsilium_node::storage::datadir::sweep(&uploads)?;
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
