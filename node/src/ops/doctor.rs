//! `konsilium doctor`: the checks a newcomer needs before asking for help.
//!
//! Each check says what it found and, when something is wrong, what to do.
//! The configuration, keys, certificate, disk and ports are checked from
//! the files; clock skew and bootstrap peers come from the running node
//! when there is one (its admin channel), and bootstrap peers are probed
//! over TCP when there is not.

use crate::config::NodeConfig;
use crate::keys::NodeKeys;
use crate::telemetry::report::{HealthReport, days_left};
use konsilium_protocol::cert::Trust;
use konsilium_protocol::time::Timestamp;
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
    pub detail: String,
    /// What to do about a warning or failure.
    pub fix: Option<String>,
}

fn ok(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        verdict: Verdict::Ok,
        detail: detail.into(),
        fix: None,
    }
}

fn problem(
    name: &'static str,
    verdict: Verdict,
    detail: impl Into<String>,
    fix: impl Into<String>,
) -> Check {
    Check {
        name,
        verdict,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

/// Certificates expiring sooner than this are warned about.
const EXPIRY_WARNING_DAYS: i64 = 30;
/// Below this much free disk, a node soon cannot accept attachments.
const DISK_WARN_BYTES: u64 = 2 << 30;
const DISK_FAIL_BYTES: u64 = 200 << 20;
/// Deadlines and certificate validity are judged by the clock.
const SKEW_WARN: Duration = Duration::from_secs(30);
const SKEW_FAIL: Duration = Duration::from_secs(300);

/// Runs every check. `health` is the running node's view, when it answers.
pub async fn run(config_path: &Path, health: Option<&HealthReport>, now: Timestamp) -> Vec<Check> {
    let mut checks = Vec::new();
    let config = match NodeConfig::load(config_path) {
        Ok(c) => {
            checks.push(ok("config", format!("{} is valid", config_path.display())));
            c
        }
        Err(e) => {
            checks.push(problem(
                "config",
                Verdict::Fail,
                e.to_string(),
                "correct the field named above; `konsilium init --help` shows how a config is made",
            ));
            return checks;
        }
    };
    let keys = match NodeKeys::load(&config.data_dir) {
        Ok(k) => {
            checks.push(ok("keys", format!("organization {}", k.identity.org_id())));
            Some(k)
        }
        Err(e) => {
            checks.push(problem(
                "keys",
                Verdict::Fail,
                e.to_string(),
                "restore the keys directory from backup, or create new keys with `konsilium init` and ask for a new certificate",
            ));
            None
        }
    };
    checks.push(certificate(&config, keys.as_ref(), now));
    checks.push(disk(&config.data_dir));
    checks.push(blobs(&config.data_dir.join("blobs")));
    match health {
        Some(h) => {
            checks.push(ok(
                "node",
                format!("running, listening on {}", h.listen.join(", ")),
            ));
            checks.push(reachability(h));
            checks.push(clock_skew(h));
            checks.extend(bootstrap_live(h));
        }
        None => {
            checks.push(problem(
                "node",
                Verdict::Warn,
                "not running",
                format!(
                    "start it with `konsilium run --config {}`",
                    config_path.display()
                ),
            ));
            if let Some(keys) = &keys {
                checks.push(database(&config.data_dir, &keys.identity.org_id()));
            }
            checks.extend(ports(&config.listen));
            for peer in &config.bootstrap {
                checks.push(bootstrap_probe(&peer.address).await);
            }
        }
    }
    checks
}

/// The database opens and the journal verifies against its anchor. Read
/// from a copy: sled writes as it opens, and a check changes nothing.
fn database(data_dir: &Path, org: &konsilium_protocol::identity::OrgId) -> Check {
    const NAME: &str = "database";
    let db = data_dir.join("db");
    if !db.exists() {
        return ok(
            NAME,
            format!("{} not created yet (first start)", db.display()),
        );
    }
    type Checked = (
        crate::telemetry::report::JournalVerifyReport,
        Option<konsilium_protocol::journal::LostTail>,
    );
    let checked = (|| -> Result<Checked, String> {
        let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
        let copy = scratch.path().join("db");
        crate::storage::datadir::copy_tree(&db, &copy).map_err(|e| e.to_string())?;
        let store = crate::storage::store::Store::open(&copy)
            .map_err(|e| format!("{} does not open: {e}", db.display()))?;
        let anchor = crate::storage::anchor::read(data_dir).map_err(|e| e.to_string())?;
        let entries = store.journal().map_err(|e| e.to_string())?;
        let checkpoints = store.checkpoints().map_err(|e| e.to_string())?;
        let lost = anchor
            .as_ref()
            .and_then(|a| konsilium_protocol::journal::lost_tail(&entries, &checkpoints, a, org));
        let report = crate::telemetry::report::JournalVerifyReport::check(
            &entries,
            &checkpoints,
            anchor,
            org,
        );
        Ok((report, lost))
    })();
    match checked {
        Ok((r, _)) if r.intact => ok(
            NAME,
            format!("opens; journal intact ({} entries, anchored)", r.entries),
        ),
        Ok((_, Some(lost))) => problem(
            NAME,
            Verdict::Fail,
            format!(
                "journal in {}: entries {}..{} its anchor vouched for are gone from the end; the rest is intact",
                db.display(),
                lost.lost_from,
                lost.lost_to
            ),
            "start the node: it records the gap, keeps the anchor as evidence, and asks its counterparts for the consultation state it lost (or restore the data directory from the last backup and run `konsilium recover`)",
        ),
        Ok((r, None)) => problem(
            NAME,
            Verdict::Fail,
            format!(
                "journal in {}: {}",
                db.display(),
                r.error.unwrap_or_default()
            ),
            "restore the data directory from the last backup, then run `konsilium recover`; the node refuses to start on a journal whose anchored entries were changed",
        ),
        Err(e) => problem(
            NAME,
            Verdict::Fail,
            e,
            "restore the data directory from the last backup",
        ),
    }
}

/// Every complete blob is named by the BLAKE3 hash of its content; one that
/// is not was damaged on disk.
fn blobs(dir: &Path) -> Check {
    const NAME: &str = "attachments";
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return ok(NAME, "none stored yet");
        }
        Err(e) => {
            return problem(
                NAME,
                Verdict::Fail,
                format!("{}: {e}", dir.display()),
                "check the permissions and the volume of the data directory",
            );
        }
    };
    let (mut good, mut bad) = (0usize, Vec::new());
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.len() != 64 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let hashed = std::fs::File::open(&path).and_then(|mut f| {
            let mut h = blake3::Hasher::new();
            std::io::copy(&mut f, &mut h)?;
            Ok(h.finalize().to_hex().to_string())
        });
        match hashed {
            Ok(hash) if hash == name => good += 1,
            Ok(_) => bad.push(format!("{} does not match its hash", path.display())),
            Err(e) => bad.push(format!("{}: {e}", path.display())),
        }
    }
    if bad.is_empty() {
        ok(
            NAME,
            format!("{good} stored attachments match their hashes"),
        )
    } else {
        problem(
            NAME,
            Verdict::Fail,
            bad.join("; "),
            "delete the damaged files: the node fetches an attachment again from the sender while its package is undelivered",
        )
    }
}

fn certificate(config: &NodeConfig, keys: Option<&NodeKeys>, now: Timestamp) -> Check {
    const NAME: &str = "certificate";
    let chain = match config.load_certificate() {
        Ok(c) => c,
        Err(e) => {
            return problem(
                NAME,
                Verdict::Fail,
                e.to_string(),
                "save the chain your authority issued where organization.certificate points",
            );
        }
    };
    let mut trust = Trust::new(config.roots.iter().copied());
    match config.load_revocations() {
        Ok(notices) => {
            for n in &notices {
                let _ = trust.apply_revocations(n, now);
            }
        }
        Err(e) => {
            return problem(
                NAME,
                Verdict::Fail,
                e.to_string(),
                "correct federation.revocations",
            );
        }
    }
    let verified = match trust.verify_chain(&chain, now) {
        Ok(v) => v,
        Err(e) => {
            return problem(
                NAME,
                Verdict::Fail,
                e.to_string(),
                "ask your federation authority for a valid certificate for this organization",
            );
        }
    };
    if let Some(k) = keys
        && k.identity.org_id() != verified.cert.org
    {
        return problem(
            NAME,
            Verdict::Fail,
            format!(
                "the certificate is for {}, but the identity key is {}",
                verified.cert.org,
                k.identity.org_id()
            ),
            "use the certificate issued for this node's key (or the keys it was issued for)",
        );
    }
    let days = days_left(now, verified.cert.validity.until);
    let detail = format!(
        "{} ({}, {}), serial {}, valid until {} ({days} days)",
        verified.cert.name,
        verified.cert.level,
        verified.cert.region,
        verified.cert.serial,
        verified.cert.validity.until
    );
    if days <= EXPIRY_WARNING_DAYS {
        problem(
            NAME,
            Verdict::Warn,
            format!("expires within {EXPIRY_WARNING_DAYS} days: {detail}"),
            "ask your federation authority for a renewed certificate now",
        )
    } else {
        ok(NAME, detail)
    }
}

fn disk(data_dir: &Path) -> Check {
    const NAME: &str = "disk";
    match rustix::fs::statvfs(data_dir) {
        Ok(s) => {
            let free = s.f_bavail.saturating_mul(s.f_frsize);
            let detail = format!(
                "{:.1} GiB free for {}",
                free as f64 / (1u64 << 30) as f64,
                data_dir.display()
            );
            let fix = "free space or move data_dir to a larger disk: attachments are stored there";
            if free < DISK_FAIL_BYTES {
                problem(NAME, Verdict::Fail, detail, fix)
            } else if free < DISK_WARN_BYTES {
                problem(NAME, Verdict::Warn, detail, fix)
            } else {
                ok(NAME, detail)
            }
        }
        Err(e) => problem(
            NAME,
            Verdict::Fail,
            format!("cannot inspect {}: {e}", data_dir.display()),
            "create data_dir or correct organization.data_dir",
        ),
    }
}

fn socket_of(addr: &Multiaddr) -> Option<(SocketAddr, bool)> {
    let mut ip: Option<IpAddr> = None;
    let mut port = None;
    let mut tcp = false;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(a.into()),
            Protocol::Ip6(a) => ip = Some(a.into()),
            Protocol::Tcp(p) => {
                port = Some(p);
                tcp = true;
            }
            Protocol::Udp(p) => port = Some(p),
            _ => {}
        }
    }
    Some((SocketAddr::new(ip?, port?), tcp))
}

/// With the node stopped, its listen ports must be free for it to start.
fn ports(listen: &[Multiaddr]) -> Vec<Check> {
    listen
        .iter()
        .filter_map(|addr| {
            let (socket, tcp) = socket_of(addr)?;
            let free = if tcp {
                std::net::TcpListener::bind(socket).map(drop)
            } else {
                std::net::UdpSocket::bind(socket).map(drop)
            };
            Some(match free {
                Ok(()) => ok("port", format!("{addr} is free for the node")),
                Err(e) => problem(
                    "port",
                    Verdict::Fail,
                    format!("{addr} cannot be bound: {e}"),
                    "stop the program using the port (`ss -ltnp`), or change network.listen",
                ),
            })
        })
        .collect()
}

/// With the node running, its ports are reachable when a peer connected
/// to one of its listen addresses.
fn reachability(h: &HealthReport) -> Check {
    const NAME: &str = "ports";
    match h.nat.as_str() {
        "public" => ok(NAME, "a reachability probe dialled this node back"),
        "private" => problem(
            NAME,
            Verdict::Warn,
            "no probe could dial this node back (NAT or firewall): peers reach it through \
             relay reservations and hole punching",
            "to be dialled directly, open or forward the listen ports (TCP and UDP) and set \
             network.external to the public address",
        ),
        _ => problem(
            NAME,
            Verdict::Warn,
            "no peer has connected yet, so reachability is unknown",
            "check the bootstrap peers below and the firewall",
        ),
    }
}

fn clock_skew(h: &HealthReport) -> Check {
    const NAME: &str = "clock";
    let Some(worst) = h.clock_skew.iter().max_by_key(|s| s.skew_ms.unsigned_abs()) else {
        return problem(
            NAME,
            Verdict::Warn,
            "no connected peer to compare clocks with",
            "check network connectivity and the bootstrap peers",
        );
    };
    let skew = Duration::from_millis(worst.skew_ms.unsigned_abs());
    let detail = format!(
        "largest skew {:.1} s against {} ({} peers compared)",
        worst.skew_ms as f64 / 1000.0,
        if worst.name.is_empty() {
            &worst.org
        } else {
            &worst.name
        },
        h.clock_skew.len()
    );
    let fix = "synchronise the clock (chrony or systemd-timesyncd): deadlines and certificates depend on it";
    if skew >= SKEW_FAIL {
        problem(NAME, Verdict::Fail, detail, fix)
    } else if skew >= SKEW_WARN {
        problem(NAME, Verdict::Warn, detail, fix)
    } else {
        ok(NAME, detail)
    }
}

fn bootstrap_live(h: &HealthReport) -> Vec<Check> {
    h.bootstrap
        .iter()
        .map(|b| {
            if b.connected {
                ok("bootstrap", format!("{} answers", b.address))
            } else {
                problem(
                    "bootstrap",
                    Verdict::Warn,
                    format!("{} is not connected", b.address),
                    "check that the peer runs and that the firewall lets this node reach it",
                )
            }
        })
        .collect()
}

/// With the node stopped, a bootstrap peer should at least accept TCP.
async fn bootstrap_probe(addr: &Multiaddr) -> Check {
    let Some((socket, true)) = socket_of(addr) else {
        return ok(
            "bootstrap",
            format!("{addr}: not a TCP address, checked when the node runs"),
        );
    };
    let attempt = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::TcpStream::connect(socket),
    )
    .await;
    match attempt {
        Ok(Ok(_)) => ok("bootstrap", format!("{addr} accepts connections")),
        Ok(Err(e)) => problem(
            "bootstrap",
            Verdict::Fail,
            format!("{addr}: {e}"),
            "check the address in network.bootstrap, that the peer runs, and the firewall",
        ),
        Err(_) => problem(
            "bootstrap",
            Verdict::Fail,
            format!("{addr}: no answer within 3 s"),
            "check routing and firewalls between the sites",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::report::{BootstrapReport, SkewReport};

    #[test]
    fn a_blob_that_does_not_match_its_hash_fails_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let good = b"sealed attachment bytes";
        let name = blake3::hash(good).to_hex().to_string();
        std::fs::write(dir.path().join(&name), good).unwrap();
        std::fs::write(dir.path().join(format!("{name}.partial")), b"half").unwrap();
        let check = blobs(dir.path());
        assert_eq!(check.verdict, Verdict::Ok, "{}", check.detail);
        assert!(check.detail.starts_with("1 stored"), "{}", check.detail);
        let mut flipped = good.to_vec();
        flipped[3] ^= 1;
        std::fs::write(dir.path().join(&name), flipped).unwrap();
        let check = blobs(dir.path());
        assert_eq!(check.verdict, Verdict::Fail);
        assert!(check.detail.contains(&name), "{}", check.detail);
        assert!(check.fix.is_some());
    }

    /// A journal that lost its end is told apart from an edited one, and
    /// the fix says what the node will do about it.
    #[test]
    fn a_journal_that_lost_its_end_is_named_with_its_fix() {
        use konsilium_protocol::journal::{Action, Journal};
        use konsilium_protocol::time::Timestamp;
        let dir = tempfile::tempdir().unwrap();
        let key = konsilium_protocol::identity::IdentityKey::from_seed([7; 32]);
        let org = key.org_id();
        let mut journal = Journal::new();
        {
            let store = crate::storage::store::Store::open(&dir.path().join("db")).unwrap();
            for i in 0..5 {
                let at = Timestamp::from_unix_millis(1_000 * i);
                let login = Action::Login { user: "op".into() };
                store
                    .put_journal(&journal.append(at, None, None, login))
                    .unwrap();
            }
            store.flush().unwrap();
        }
        let anchor = journal.checkpoint(&key, Timestamp::from_unix_millis(9_000));
        let mut file = crate::storage::anchor::AnchorFile::open(dir.path()).unwrap();
        file.write(&anchor).unwrap();
        let check = database(dir.path(), &org);
        assert_eq!(check.verdict, Verdict::Ok, "{}", check.detail);

        {
            let db = sled::open(dir.path().join("db")).unwrap();
            let tree = db.open_tree("journal").unwrap();
            tree.pop_max().unwrap().unwrap();
            tree.pop_max().unwrap().unwrap();
            db.flush().unwrap();
        }
        let check = database(dir.path(), &org);
        assert_eq!(check.verdict, Verdict::Fail);
        assert!(check.detail.contains("entries 3..5"), "{}", check.detail);
        let fix = check.fix.unwrap_or_default();
        assert!(fix.contains("start the node"), "{fix}");
    }

    fn health(skews: &[i64]) -> HealthReport {
        HealthReport {
            bootstrap: vec![BootstrapReport {
                address: "/ip4/127.0.0.1/tcp/7400".into(),
                connected: false,
            }],
            clock_skew: skews
                .iter()
                .map(|s| SkewReport {
                    org: "o".into(),
                    name: "Regional hospital".into(),
                    skew_ms: *s,
                })
                .collect(),
            listen: vec![],
            nat: "private".into(),
        }
    }

    #[test]
    fn clock_skew_is_judged_by_the_worst_peer_in_either_direction() {
        assert_eq!(clock_skew(&health(&[200, -1500])).verdict, Verdict::Ok);
        assert_eq!(clock_skew(&health(&[200, -45_000])).verdict, Verdict::Warn);
        let fail = clock_skew(&health(&[400_000, 10]));
        assert_eq!(fail.verdict, Verdict::Fail);
        assert!(fail.fix.unwrap().contains("chrony"));
        assert_eq!(clock_skew(&health(&[])).verdict, Verdict::Warn);
    }

    #[test]
    fn ports_are_judged_by_whether_a_probe_dialled_the_node_back() {
        let mut h = health(&[]);
        assert_eq!(reachability(&h).verdict, Verdict::Warn);
        assert!(reachability(&h).fix.unwrap().contains("network.external"));
        h.nat = "public".into();
        assert_eq!(reachability(&h).verdict, Verdict::Ok);
    }

    #[test]
    fn a_disconnected_bootstrap_peer_is_a_warning_with_a_fix() {
        let checks = bootstrap_live(&health(&[]));
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].verdict, Verdict::Warn);
        assert!(checks[0].detail.contains("/ip4/127.0.0.1/tcp/7400"));
    }

    #[test]
    fn a_port_in_use_fails_and_a_free_one_passes() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let busy: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
        let checks = ports(&[busy]);
        assert_eq!(checks[0].verdict, Verdict::Fail, "{:?}", checks[0]);
        drop(taken);
        let checks = ports(&[format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()]);
        assert_eq!(checks[0].verdict, Verdict::Ok);
    }
}
