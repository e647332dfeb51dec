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

/// Reads the configuration again and puts in force what can change while
/// the node runs: the directory profile (services, consultants, calendar,
/// deadlines), the bootstrap list, the API users and new revocation lists
/// (published to the federation). The new file is
/// checked whole first: a bad one changes nothing and the error names
/// what is wrong. Settings that need a restart are named, not applied.
async fn reload(
    config_path: &std::path::Path,
    running: &NodeConfig,
    handle: &node::NodeHandle,
    api_users: Option<&konsilium_node::http::ApiUsers>,
) -> Result<String> {
    let new = NodeConfig::load(config_path)?;
    let new_users = match (&new.api, api_users) {
        (Some(api), Some(_)) if api.users.is_empty() => {
            anyhow::bail!(
                "{}: [api] needs at least one [[api.users]]",
                config_path.display()
            )
        }
        (Some(api), Some(_)) => Some(api.users.clone()),
        _ => None,
    };
    let mut restart = Vec::new();
    let mut differs = |name: &str, changed: bool| {
        if changed {
            restart.push(name.to_owned());
        }
    };
    differs("organization.data_dir", new.data_dir != running.data_dir);
    differs(
        "organization.certificate",
        new.certificate_path != running.certificate_path,
    );
    differs("federation.roots", new.roots != running.roots);
    differs("network.listen", new.listen != running.listen);
    differs("network.external", new.external != running.external);
    differs("network.relay_via", new.relay_via != running.relay_via);
    differs(
        "network.directory_scope",
        new.directory_scope != running.directory_scope,
    );
    differs(
        "api.listen",
        new.api.as_ref().map(|a| a.listen) != running.api.as_ref().map(|a| a.listen),
    );
    differs("metrics", new.metrics != running.metrics);
    differs(
        "storage.keep_delivered_attachments_hours",
        new.keep_delivered != running.keep_delivered,
    );
    differs("storage.relay_custody", new.custody != running.custody);
    differs("video", new.video != running.video);
    differs("stun", new.stun_listen != running.stun_listen);
    let revocations = new.load_revocations()?;
    let bootstrap = new.bootstrap.iter().map(|b| b.address.clone()).collect();
    // A list that does not verify stops the reload before the profile
    // changes; lists before it, signed by their authority, stay in force.
    let revoked = handle.revoke(revocations).await?;
    handle.reload(new.profile(), bootstrap).await?;
    let mut summary = format!(
        "{} services, {} consultants, {} bootstrap peers, {revoked} new revocation lists",
        new.services.len(),
        new.consultants.len(),
        new.bootstrap.len()
    );
    if let (Some(users), Some(api_users)) = (new_users, api_users) {
        summary += &format!(", {} API users", users.len());
        api_users.replace(users);
    }
    if !restart.is_empty() {
        summary += &format!(
            "; changed but only in force after a restart: {}",
            restart.join(", ")
        );
    }
    Ok(summary)
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
    let api_users = config
        .api
        .as_ref()
        .map(|api| std::sync::Arc::new(konsilium_node::http::ApiUsers::new(api.users.clone())));
    let api_task = match (config.api.clone(), api_users.clone()) {
        (Some(mut api), Some(users)) => {
            let uploads = config.data_dir.join("uploads");
            std::fs::create_dir_all(&uploads)
                .with_context(|| format!("cannot create {}", uploads.display()))?;
            // Uploads interrupted by a crash are plaintext nobody will claim.
            let swept = konsilium_node::storage::datadir::sweep(&uploads)?;
            if swept > 0 {
                tracing::info!(swept, "removed interrupted uploads");
            }
            api.upload_dir = Some(uploads);
            let (addr, task) =
                konsilium_node::http::serve_with_users(handle.clone(), api, users, async {
                    let _ = api_stopped.await;
                })
                .await
                .context("the HTTP API could not start")?;
            tracing::info!(%addr, "HTTP API listening (OpenAPI at /openapi.json)");
            Some(task)
        }
        _ => None,
    };
    let (reload_tx, mut reloads) = tokio::sync::mpsc::channel(4);
    let admin = admin::serve_with_reload(
        handle.clone(),
        &admin::socket_path(&config.data_dir),
        Some(reload_tx),
    )
    .await
    .context("the admin channel could not start")?;
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot listen for SIGHUP")?;
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
            _ = hangups.recv() => {
                match reload(&config_path, &config, &handle, api_users.as_deref()).await {
                    Ok(summary) => tracing::info!("SIGHUP: configuration reloaded: {summary}"),
                    Err(e) => tracing::error!("SIGHUP: configuration not reloaded, the old one stays in force: {e:#}"),
                }
            }
            Some(answer) = reloads.recv() => {
                let result = reload(&config_path, &config, &handle, api_users.as_deref()).await;
                match &result {
                    Ok(summary) => tracing::info!("configuration reloaded: {summary}"),
                    Err(e) => tracing::error!("configuration not reloaded, the old one stays in force: {e:#}"),
                }
                let _ = answer.send(result.map_err(|e| format!("{e:#}")));
            }
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
