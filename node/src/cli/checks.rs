//! Checks an operator runs: a signed conclusion verified offline, and the
//! doctor's checklist of a node's setup.

use super::views;
use anyhow::{Context, Result, bail};
use konsilium_node::config::NodeConfig;
use konsilium_node::node::{self};
use konsilium_node::ops::admin::{self, AdminClient};
use konsilium_protocol::cert::Trust;
use konsilium_protocol::conclusion::ConclusionFile;
use konsilium_protocol::identity::AuthorityKey;
use konsilium_protocol::wire;

pub(super) fn verify(
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

pub(super) async fn doctor(config_path: &std::path::Path, json: bool) -> Result<()> {
    use konsilium_node::ops::doctor::{self, Verdict};
    // The live checks need the running node; a config that does not load
    // is reported by the checks themselves.
    let health = match NodeConfig::load(config_path) {
        Ok(c) => AdminClient::new(admin::socket_path(&c.data_dir))
            .view::<konsilium_node::telemetry::report::HealthReport>("/v1/health")
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
