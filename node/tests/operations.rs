//! Operating a node run from its configuration file, as `konsilium run`:
//! reloading the configuration while it runs.

#![cfg(feature = "local-federation")]

mod process;

use konsilium_node::config::api::token_hash_hex;
use konsilium_node::federation::{LocalFederation, OrgSpec};
use konsilium_node::node;
use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::specialty::Specialty;
use process::{CARDIOLOGY, Options, ProcessNode, TOKEN};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(60);

const UROLOGY: &str = r#"
[[directory.services]]
specialty = "urology"
urgencies = ["planned"]

[[directory.consultants]]
id = 2
name = "Dr. Anna Sokolova"
specialties = ["urology"]
languages = ["ru"]
"#;

fn konsilium(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_konsilium"))
        .args(args)
        .output()
        .expect("the binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The specialties and consultants the node's own record offers, as its
/// directory view shows them.
fn own_offer(config: &Path) -> (Vec<String>, Vec<String>) {
    let (ok, out) = konsilium(&["directory", "--config", config.to_str().unwrap(), "--json"]);
    assert!(ok, "{out}");
    let orgs: serde_json::Value = serde_json::from_str(&out).unwrap();
    let own = &orgs[0];
    let list = |key: &str, field: &str| -> Vec<String> {
        own[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v[field].as_str().unwrap().to_owned())
            .collect()
    };
    (list("services", "specialty"), list("consultants", "name"))
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn api_status(http: &reqwest::Client, base: &str, token: &str) -> u16 {
    http.get(format!("{base}/consultations"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `konsilium reload` and SIGHUP put a changed directory profile and API
/// users in force without a restart; a broken file is refused with the
/// field named and the old configuration stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_puts_a_new_profile_and_users_in_force_and_a_broken_file_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let member = fed.enrol(OrgSpec::new(
        "Federal center",
        OrgLevel::Federal,
        "RU-MOW",
        &[Specialty::Cardiology],
    ));
    let api_port = process::free_port();
    let options = Options {
        bootstrap: &[],
        api_port: Some(api_port),
        directory: CARDIOLOGY,
        log_level: "info",
        listen_port: 0,
    };
    let config = process::write_config(&member, &fed, &options);
    let mut node = ProcessNode::spawn(&config, &tmp.path().join("node.log"));
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{api_port}");
    node.api_up(&http, &base).await;
    let path = config.to_str().unwrap();
    assert_eq!(own_offer(&config).0, vec!["cardiology"]);
    let original = std::fs::read_to_string(&config).unwrap();

    // A broken file: refused, the field named, nothing changed.
    let broken = original.replace("Europe/Moscow", "Mars/Olympus_Mons");
    std::fs::write(&config, &broken).unwrap();
    let (ok, out) = konsilium(&["reload", "--config", path]);
    assert!(!ok, "a broken config was accepted: {out}");
    assert!(out.contains("directory.time_zone"), "{out}");
    assert_eq!(api_status(&http, &base, TOKEN).await, 200);

    // A second service and consultant, and the API user replaced; a relay
    // bound changed too, which is named as taking a restart.
    let new_token = "reloaded-coordinator-token";
    let changed = original
        .replace(CARDIOLOGY, &format!("{CARDIOLOGY}{UROLOGY}"))
        .replace(&token_hash_hex(TOKEN), &token_hash_hex(new_token))
        + "\n[storage]\nrelay_custody_packages = 10\n";
    assert_ne!(changed, original);
    std::fs::write(&config, &changed).unwrap();
    let (ok, out) = konsilium(&["reload", "--config", path]);
    assert!(ok, "{out}");
    assert!(out.contains("2 services, 2 consultants"), "{out}");
    assert!(
        out.contains("after a restart: storage.relay_custody"),
        "{out}"
    );
    eventually("the record republished with urology", || {
        own_offer(&config).0 == ["cardiology", "urology"]
    })
    .await;
    assert!(
        own_offer(&config)
            .1
            .contains(&"Dr. Anna Sokolova".to_owned())
    );
    assert_eq!(api_status(&http, &base, new_token).await, 200);
    assert_eq!(api_status(&http, &base, TOKEN).await, 401);

    // SIGHUP does the same: back to cardiology alone.
    std::fs::write(&config, &original).unwrap();
    // SAFETY: kill(2) on the pid of a child this test owns.
    assert_eq!(unsafe { libc::kill(node.pid() as i32, libc::SIGHUP) }, 0);
    eventually("the record republished without urology", || {
        own_offer(&config).0 == ["cardiology"]
    })
    .await;
    assert_eq!(api_status(&http, &base, TOKEN).await, 200);
    node.kill();
}
