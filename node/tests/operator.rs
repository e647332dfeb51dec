//! The operator's CLI against a live federation on 127.0.0.1: every view,
//! as a table and as JSON, through each node's admin socket; the routing dry
//! run's reasons; doctor; the Prometheus endpoint.

#![cfg(feature = "local-federation")]

use konsilium_node::federation::{LocalFederation, Member, OrgSpec, wait};
use konsilium_node::node::{
    self, Attachment, CaseFile, NewConsultation, NodeEvent, NodeHandle, SendRequest, Target,
};
use konsilium_node::ops::admin;
use konsilium_protocol::cert::{Issuer, OrgLevel, RegionCode};
use konsilium_protocol::content::CaseExtract;
use konsilium_protocol::seal::RoutingHeader;
use konsilium_protocol::specialty::{Lang, Specialty};
use konsilium_protocol::urgency::Urgency;
use konsilium_protocol::workflow::{Consent, ConsentMethod};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(60);

/// Runs the binary (off the async runtime: it blocks) and returns whether
/// it succeeded and what it printed.
async fn konsilium(args: Vec<String>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_konsilium"))
            .args(&args)
            .env_remove("KONSILIUM_CONFIG")
            .output()
            .expect("the binary runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// A view through `socket`, as a table and as JSON; returns both.
async fn view(socket: &Path, args: &[&str]) -> (String, Value) {
    let mut base: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    base.extend(["--socket".into(), socket.display().to_string()]);
    let (ok, table, err) = konsilium(base.clone()).await;
    assert!(ok, "konsilium {args:?} failed: {err}");
    assert!(
        !table.trim().is_empty(),
        "konsilium {args:?} printed nothing"
    );
    base.push("--json".into());
    let (ok, json, err) = konsilium(base).await;
    assert!(ok, "konsilium {args:?} --json failed: {err}");
    let value = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("konsilium {args:?} --json is not JSON ({e}): {json}"));
    (table, value)
}

struct Running {
    node: Arc<NodeHandle>,
    admin: admin::AdminServer,
}

impl Running {
    async fn start(member: &Member, setup: node::NodeSetup) -> Self {
        let node = Arc::new(node::start(setup).await.unwrap());
        std::fs::create_dir_all(&member.data_dir).unwrap();
        let admin = admin::serve(node.clone(), &admin::socket_path(&member.data_dir))
            .await
            .unwrap();
        Running { node, admin }
    }

    fn socket(&self) -> PathBuf {
        self.admin.socket().to_path_buf()
    }

    async fn stop(self) {
        self.admin.stop().await;
        // A connection task of the admin server may drop its clone of the
        // handle a moment after the server has stopped, on a busy machine.
        let mut node = self.node;
        for _ in 0..500 {
            match Arc::try_unwrap(node) {
                Ok(n) => return n.shutdown().await,
                Err(shared) => node = shared,
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the node handle is still shared");
    }
}

async fn scrape(addr: std::net::SocketAddr) -> prometheus_parse::Scrape {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("not Prometheus text format ({e}):\n{text}"))
}

fn sample(scrape: &prometheus_parse::Scrape, name: &str) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_view_works_against_a_live_federation() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let regional = fed.enrol(OrgSpec::new(
        "Regional hospital",
        OrgLevel::Regional,
        "RU-VLG",
        &[Specialty::Cardiology],
    ));
    let federal = fed.enrol(OrgSpec::new(
        "Federal cardiology center",
        OrgLevel::Federal,
        "RU-MOW",
        &[Specialty::Cardiology],
    ));
    let district = fed.enrol(OrgSpec::new(
        "District hospital",
        OrgLevel::District,
        "RU-VLG",
        &[],
    ));
    let revoked = fed.enrol(OrgSpec::new(
        "Revoked clinic",
        OrgLevel::District,
        "RU-VLG",
        &[Specialty::Cardiology],
    ));
    let notice = {
        let region = RegionCode::new("RU-VLG").unwrap();
        let issuer: &Issuer = fed.region(&region);
        issuer.revoke(
            1,
            node::now(),
            [LocalFederation::serial_of(&revoked)].into(),
        )
    };

    let r = Running::start(&regional, regional.setup(vec![], vec![])).await;
    let ra = wait::listen_addr(&r.node, PATIENCE).await.unwrap();
    // The federal center takes cardiology only as planned requests.
    let mut federal_setup = federal.setup(vec![ra.clone()], vec![]);
    federal_setup.profile.services[0].urgencies = [Urgency::Planned].into();
    let f = Running::start(&federal, federal_setup).await;
    let mut district_setup = district.setup(vec![ra.clone()], vec![]);
    district_setup.revocations = vec![notice];
    let d = Running::start(&district, district_setup).await;
    wait::converged(&[&d.node, &r.node, &f.node], 3, PATIENCE)
        .await
        .unwrap();
    // The revoked clinic knocks and is refused.
    let mut at_district = d.node.subscribe();
    let da = wait::listen_addr(&d.node, PATIENCE).await.unwrap();
    let x = node::start(revoked.setup(vec![da], vec![])).await.unwrap();
    wait::event(
        &mut at_district,
        "the revoked clinic refused",
        PATIENCE,
        |e| matches!(e, NodeEvent::PeerRejected { peer, .. } if *peer == x.peer_id()).then_some(()),
    )
    .await
    .unwrap();
    x.shutdown().await;

    let (metrics_addr, metrics_task) =
        admin::serve_metrics(d.node.clone(), "127.0.0.1:0".parse().unwrap(), async {
            std::future::pending::<()>().await
        })
        .await
        .unwrap();
    let before = scrape(metrics_addr).await;
    assert_eq!(sample(&before, "konsilium_directory_records"), 3.0);

    // A consultation, so the request views have something to show.
    let (id, _) = d
        .node
        .request_consultation(
            NewConsultation {
                target: Target::Best,
                specialty: Specialty::Cardiology,
                min_level: OrgLevel::Regional,
                urgency: Urgency::Urgent,
                region: None,
                consent: Consent::Given {
                    by: "the patient".into(),
                    at: node::now(),
                    method: ConsentMethod::Written,
                    document: None,
                },
                physician: "Dr. Ivanova".into(),
                entered_by: "Dr. Ivanova".into(),
                extract: CaseExtract {
                    summary: "Chest pain, ECG attached".into(),
                    questions: "Coronary angiography?".into(),
                },
                escalated_from: None,
            },
            vec![CaseFile::untyped(Attachment::Bytes(vec![7u8; 50_000]))],
        )
        .await
        .unwrap();
    let id = id.to_string();
    let ds = d.socket();

    // status
    let (table, s) = view(&ds, &["status"]).await;
    assert!(table.contains("District hospital"), "{table}");
    assert_eq!(s["name"], "District hospital");
    assert_eq!(s["level"], "district");
    assert_eq!(s["region"], "RU-VLG");
    assert_eq!(s["directory_size"], 3);
    assert!(s["peers_connected"].as_u64().unwrap() >= 1, "{s}");
    assert!(s["certificate"]["days_left"].as_i64().unwrap() > 30);
    assert!(!s["listen"].as_array().unwrap().is_empty());
    assert_eq!(s["directory_digest"].as_str().unwrap().len(), 64);

    // peers: identify fills in the protocol version shortly after connecting.
    let peers = tokio::time::timeout(PATIENCE, async {
        loop {
            let (table, p) = view(&ds, &["peers"]).await;
            // Refused peers are listed too; identify is for the admitted ones.
            let all: Vec<_> = p
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p["admission"] == "admitted")
                .cloned()
                .collect();
            if !all.is_empty() && all.iter().all(|p| p["protocol_version"].is_string()) {
                return (table, all);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("peers identified");
    let regional_peer = peers
        .1
        .iter()
        .find(|p| p["name"] == "Regional hospital")
        .expect("the regional hospital is a peer");
    assert_eq!(regional_peer["level"], "regional");
    assert_eq!(regional_peer["org"], regional.org_id().to_string());
    assert!(regional_peer["clock_skew_ms"].is_i64());
    assert!(peers.0.contains("Regional hospital"));

    // directory, with specialty names in Russian
    let (table, dir) = view(
        &ds,
        &["directory", "--specialty", "cardiology", "--lang", "ru"],
    )
    .await;
    let names: Vec<&str> = dir
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"Federal cardiology center") && names.contains(&"Regional hospital"));
    assert!(
        table.contains(Specialty::Cardiology.name(Lang::Ru)),
        "{table}"
    );
    assert!(dir[0]["sequence"].as_u64().unwrap() >= 1);
    let (_, federal_only) = view(&ds, &["directory", "--level", "federal"]).await;
    assert_eq!(federal_only.as_array().unwrap().len(), 1);

    // route: the emergency goes to the regional hospital; the federal center
    // does not take emergencies; the revoked clinic is named as revoked.
    let (table, route) = view(
        &ds,
        &[
            "route",
            "--specialty",
            "cardiology",
            "--min-level",
            "regional",
            "--urgency",
            "emergency",
        ],
    )
    .await;
    assert_eq!(route["candidates"][0]["name"], "Regional hospital");
    assert_eq!(route["candidates"].as_array().unwrap().len(), 1);
    let skipped = route["skipped"].as_array().unwrap();
    let reason_of = |name: &str| {
        skipped
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["reason_code"].as_str().unwrap().to_owned())
    };
    assert_eq!(
        reason_of("Federal cardiology center").as_deref(),
        Some("urgency_not_accepted")
    );
    assert_eq!(reason_of("Revoked clinic").as_deref(), Some("revoked"));
    assert!(table.contains("does not accept this urgency"), "{table}");
    assert!(table.contains("revoked"), "{table}");
    let (_, planned) = view(
        &ds,
        &[
            "route",
            "--specialty",
            "cardiology",
            "--min-level",
            "federal",
        ],
    )
    .await;
    assert_eq!(
        planned["candidates"][0]["name"],
        "Federal cardiology center"
    );
    assert_eq!(
        planned["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "Regional hospital")
            .unwrap()["reason_code"],
        "level_too_low"
    );

    // requests and one request, once the regional hospital signed the receipt.
    let (table, list) = view(&ds, &["requests"]).await;
    assert!(table.contains(&id), "{table}");
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["urgency"], "urgent");
    assert_eq!(list[0]["side"], "requesting");
    assert_eq!(list[0]["counterpart_name"], "Regional hospital");
    assert!(list[0]["time_left_secs"].as_i64().unwrap() > 0);
    let (_, none) = view(&ds, &["requests", "--state", "completed"]).await;
    assert!(none.as_array().unwrap().is_empty());
    let detail = tokio::time::timeout(PATIENCE, async {
        loop {
            let (table, d) = view(&ds, &["request", &id]).await;
            if !d["receipts"].as_array().unwrap().is_empty() {
                return (table, d);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("a delivery receipt");
    assert_eq!(detail.1["hops"][0]["consultant_name"], "Regional hospital");
    assert_eq!(
        detail.1["receipts"][0]["recipient"],
        regional.org_id().to_string()
    );
    assert_eq!(detail.1["physician"], "Dr. Ivanova");
    assert!(detail.0.contains("delivery receipts"));

    // sla: one urgent consultation, on track
    let (_, sla) = view(&ds, &["sla"]).await;
    assert_eq!(sla["by_urgency"][0]["key"], "urgent");
    assert_eq!(sla["by_urgency"][0]["on_track"], 1);
    assert!(sla["late"].as_array().unwrap().is_empty());

    // sessions: none, and said why
    let (table, sessions) = view(&ds, &["sessions"]).await;
    assert!(sessions["sessions"].as_array().unwrap().is_empty());
    assert!(table.contains("no live video sessions"));

    // journal verify | tail | stats through the admin channel of a running node
    let (table, verify) = view(&ds, &["journal", "verify"]).await;
    assert_eq!(verify["intact"], true, "{verify}");
    assert!(verify["entries"].as_u64().unwrap() >= 2);
    assert!(table.contains("journal intact"));
    let (_, tail) = view(&ds, &["journal", "tail", "-n", "50"]).await;
    assert!(
        tail.as_array().unwrap().iter().any(|e| e["action"]
            .as_str()
            .unwrap()
            .starts_with("create: urgent cardiology")
            && e["consultation"] == id.as_str()),
        "{tail}"
    );
    let (_, stats) = view(&ds, &["journal", "stats"]).await;
    assert_eq!(stats["by_urgency"][0]["key"], "urgent");
    assert_eq!(stats["by_urgency"][0]["count"], 1);

    // certs: the chain, and the revocation this node knows
    let (table, certs) = view(&ds, &["certs"]).await;
    assert_eq!(certs["organization"]["name"], "District hospital");
    assert_eq!(certs["authority"]["region"], "RU-VLG");
    assert_eq!(
        certs["revocations"][0]["serials"][0],
        LocalFederation::serial_of(&revoked)
    );
    assert!(certs["warnings"].as_array().unwrap().is_empty());
    assert!(table.contains("revocations known"));

    // outbox: a package for the federal center, which is down, waits there.
    let federal_org = f.node.org();
    f.stop().await;
    let mut events = d.node.subscribe();
    let queued = d
        .node
        .send(SendRequest {
            target: Target::Org(federal_org),
            routing: RoutingHeader {
                specialty: Specialty::Cardiology,
                min_level: OrgLevel::Federal,
                urgency: Urgency::Planned,
                region: None,
            },
            body: b"second opinion, please".to_vec(),
            attachments: vec![],
            lifetime: Duration::from_secs(3600),
        })
        .await
        .unwrap();
    wait::event(&mut events, "a failed delivery attempt", PATIENCE, |e| {
        matches!(e, NodeEvent::DeliveryRetry { id, .. } if *id == queued.id).then_some(())
    })
    .await
    .unwrap();
    let (table, outbox) = view(&ds, &["outbox"]).await;
    let waiting = outbox
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["package"] == queued.id.to_string().as_str())
        .expect("the package waits in the outbox");
    assert_eq!(waiting["recipient"], federal_org.to_string());
    assert!(waiting["attempts"].as_u64().unwrap() >= 1);
    assert!(waiting["last_error"].is_string(), "{waiting}");
    assert!(table.contains(&queued.id.to_string()), "{table}");

    // metrics: counters moved with the two packages.
    let after = scrape(metrics_addr).await;
    assert!(
        sample(&after, "konsilium_packages_queued_total")
            >= sample(&before, "konsilium_packages_queued_total") + 2.0
    );
    assert!(sample(&after, "konsilium_package_bytes_total") > 0.0);
    assert!(sample(&after, "konsilium_delivery_retries_total") >= 1.0);
    assert!(sample(&after, "konsilium_outbox_packages") >= 1.0);
    // What peers' requests and answers hold, against the budgets.
    use konsilium_node::net::budget::{ANSWER_BUDGET, HELLO_BUDGET, RPC_BUDGET};
    let limits = (HELLO_BUDGET + RPC_BUDGET + ANSWER_BUDGET) as f64;
    assert_eq!(sample(&after, "konsilium_peer_bytes_limit"), limits);
    assert!(sample(&after, "konsilium_peer_bytes_held") < limits);
    assert_eq!(
        after
            .samples
            .iter()
            .filter(|s| s.metric == "konsilium_consultations")
            .map(|s| s.labels.get("urgency").unwrap_or_default().to_owned())
            .collect::<Vec<_>>(),
        vec!["urgent".to_owned()]
    );
    let (ok, text, _) = konsilium(vec![
        "metrics".into(),
        "--socket".into(),
        ds.display().to_string(),
    ])
    .await;
    assert!(ok && text.contains("# TYPE konsilium_deliveries_total counter"));

    metrics_task.abort();
    // Gone for good (with its handle on the node) before the node stops.
    let _ = metrics_task.await;
    d.stop().await;
    r.stop().await;

    // The node is gone: the CLI says so plainly.
    let (ok, _, err) = konsilium(vec![
        "status".into(),
        "--socket".into(),
        ds.display().to_string(),
    ])
    .await;
    assert!(!ok);
    assert!(
        err.contains(&format!("no node is running at {}", ds.display())),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[tokio::test]
async fn doctor_names_a_broken_config_field_and_passes_a_good_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let (ok, _, err) = konsilium(vec![
        "init".into(),
        "--org-name".into(),
        "Sokol Central District Hospital".into(),
        "--data-dir".into(),
        dir.display().to_string(),
        "--port".into(),
        "0".into(),
        "--root".into(),
        konsilium_protocol::identity::IdentityKey::from_seed([1; 32])
            .authority_key()
            .to_string(),
    ])
    .await;
    assert!(ok, "{err}");
    let config = dir.join("node.toml");
    let cfg = config.display().to_string();

    // A fresh node: config and keys are fine; the certificate is not there yet.
    let (ok, out, _) = konsilium(vec!["doctor".into(), "--config".into(), cfg.clone()]).await;
    assert!(!ok, "no certificate yet: doctor must fail\n{out}");
    assert!(out.contains("config") && out.contains("is valid"), "{out}");
    assert!(out.contains("organization.certificate"), "{out}");

    // Break one field: doctor names it and says how to fix it.
    let text = std::fs::read_to_string(&config).unwrap();
    let broken = text.replacen("format = \"text\"", "format = \"xml\"", 1);
    assert_ne!(text, broken, "the template has a log format line");
    std::fs::write(&config, broken).unwrap();
    let (ok, out, _) = konsilium(vec![
        "doctor".into(),
        "--config".into(),
        cfg.clone(),
        "--json".into(),
    ])
    .await;
    assert!(!ok);
    let checks: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(checks[0]["name"], "config");
    assert_eq!(checks[0]["verdict"], "fail");
    assert!(
        checks[0]["detail"].as_str().unwrap().contains("log.format"),
        "{checks}"
    );
    assert!(checks[0]["fix"].is_string());
}
