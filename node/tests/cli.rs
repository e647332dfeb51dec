//! The `konsilium` binary as an operator runs it.

#![cfg(feature = "local-federation")]

use konsilium_node::federation::{LocalFederation, OrgSpec};
use konsilium_node::node;
use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::conclusion::{Conclusion, ConclusionFile};
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::wire;
use konsilium_protocol::workflow::ConsultationId;
use std::process::Command;

fn konsilium(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_konsilium"))
        .args(args)
        .output()
        .expect("the binary runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn verify_accepts_a_signed_conclusion_and_refuses_a_flipped_byte_or_a_foreign_root() {
    let tmp = tempfile::tempdir().unwrap();
    // Certified around the real clock, which is what the binary checks against.
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let federal = fed.enrol(OrgSpec {
        name: "Federal oncology center".into(),
        level: OrgLevel::Federal,
        region: "RU-MOW".into(),
        specialties: vec![Specialty::Oncology],
    });
    let conclusion = Conclusion {
        consultation: ConsultationId([9; 16]),
        consultant_org: federal.org_id(),
        authors: vec!["Prof. Petrov".into()],
        diagnosis: "Adenocarcinoma, stage II".into(),
        recommendations: "Resection".into(),
        treatment_plan: "FOLFOX".into(),
        further_studies: "PET-CT".into(),
        attachments: vec![],
        issued_at: node::now(),
    }
    .sign(&federal.keys.identity())
    .unwrap();
    let file = ConclusionFile {
        conclusion,
        chain: federal.chain.clone(),
    };
    let path = tmp.path().join("conclusion.ksc");
    std::fs::write(&path, wire::encode(&file).unwrap()).unwrap();
    let root = fed.root().key().to_string();
    let p = path.to_str().unwrap();

    let (ok, out) = konsilium(&["verify", p, "--root", &root]);
    assert!(ok, "{out}");
    assert!(
        out.contains("signed by Federal oncology center")
            && out.contains("Adenocarcinoma, stage II"),
        "{out}"
    );

    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    let flipped = tmp.path().join("flipped.ksc");
    std::fs::write(&flipped, bytes).unwrap();
    let (ok, out) = konsilium(&["verify", flipped.to_str().unwrap(), "--root", &root]);
    assert!(!ok, "a flipped byte must fail: {out}");
    assert!(out.starts_with("error:"), "{out}");

    let stranger = LocalFederation::new(tmp.path(), node::now())
        .root()
        .key()
        .to_string();
    let (ok, out) = konsilium(&["verify", p, "--root", &stranger]);
    assert!(!ok);
    assert!(out.contains("not a configured federation root"), "{out}");

    let (ok, out) = konsilium(&["verify", p]);
    assert!(!ok);
    assert!(out.contains("--root"), "{out}");
}

#[test]
fn errors_name_the_problem_not_a_backtrace() {
    let (ok, out) = konsilium(&["run", "--config", "/nonexistent/node.toml"]);
    assert!(!ok);
    assert!(
        out.contains("no config file at /nonexistent/node.toml") && out.contains("konsilium init"),
        "{out}"
    );
    assert!(!out.contains("stack backtrace"), "{out}");
    let (ok, out) = konsilium(&["specialties", "--lang", "uk"]);
    assert!(ok);
    assert!(
        out.contains("Кардіологія") && out.contains("394579002"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_verify_detects_an_edited_entry_and_stats_count_consultations() {
    use konsilium_node::federation::wait;
    use konsilium_node::node::{NewConsultation, Target};
    use konsilium_protocol::content::CaseExtract;
    use konsilium_protocol::urgency::Urgency;
    use konsilium_protocol::workflow::{Consent, ConsentMethod};
    use std::time::Duration;

    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let spec = |name: &str, level, region: &str, specialties: Vec<Specialty>| OrgSpec {
        name: name.into(),
        level,
        region: region.into(),
        specialties,
    };
    let requester = fed.enrol(spec(
        "District hospital",
        OrgLevel::District,
        "RU-VLG",
        vec![],
    ));
    let consultant = fed.enrol(spec(
        "Regional hospital",
        OrgLevel::Regional,
        "RU-VLG",
        vec![Specialty::Urology],
    ));
    let c = node::start(consultant.setup(vec![], vec![])).await.unwrap();
    let r = node::start(requester.setup(
        vec![wait::listen_addr(&c, Duration::from_secs(30)).await.unwrap()],
        vec![],
    ))
    .await
    .unwrap();
    wait::converged(&[&r, &c], 2, Duration::from_secs(30))
        .await
        .unwrap();
    for _ in 0..3 {
        r.request_consultation(
            NewConsultation {
                target: Target::Best,
                specialty: Specialty::Urology,
                min_level: OrgLevel::Regional,
                urgency: Urgency::Planned,
                region: None,
                consent: Consent::Given {
                    by: "the patient".into(),
                    at: node::now(),
                    method: ConsentMethod::Electronic,
                    document: None,
                },
                physician: "Dr. Ivanova".into(),
                entered_by: "Dr. Ivanova".into(),
                extract: CaseExtract {
                    summary: "PSA rising".into(),
                    questions: "Biopsy?".into(),
                },
                escalated_from: None,
            },
            vec![],
        )
        .await
        .unwrap();
    }
    r.shutdown().await;
    c.shutdown().await;

    let dir = requester.data_dir.to_str().unwrap().to_owned();
    let org = requester.org_id().to_string();
    let (ok, out) = konsilium(&["journal", "verify", "--data-dir", &dir, "--org", &org]);
    assert!(ok, "{out}");
    assert!(out.contains("journal intact: 6 entries"), "{out}");
    let (ok, out) = konsilium(&[
        "journal",
        "stats",
        "--data-dir",
        &dir,
        "--org",
        &org,
        "--json",
    ]);
    assert!(ok, "{out}");
    let stats: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(stats["by_pair"][0]["consultations"], 3);
    assert_eq!(stats["by_specialty"][0]["key"], "urology");
    assert_eq!(stats["by_specialty"][0]["count"], 3);

    // The checker does not change what it checks.
    let db = requester.data_dir.join("db");
    let before = tree_digest(&db);
    let (ok, out) = konsilium(&["journal", "verify", "--data-dir", &dir, "--org", &org]);
    assert!(ok, "{out}");
    assert_eq!(
        tree_digest(&db),
        before,
        "journal verify changed the database"
    );

    // A view whose reader has gone ends quietly, as Unix tools do.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_konsilium"))
        .args(["journal", "stats", "--data-dir", &dir, "--org", &org])
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(out.status.code(), Some(101), "{stderr}");

    // The disk loses the journal's last entries, as sled does when it takes
    // a corrupted tail for a torn write: the chain left is intact, but the
    // anchor outside the database shows the loss.
    let kept_before = {
        let db = sled::open(requester.data_dir.join("db")).unwrap();
        let journal = db.open_tree("journal").unwrap();
        let before = journal.len() as u64;
        for _ in 0..2 {
            journal.pop_max().unwrap().unwrap();
        }
        // The shutdown checkpoint went with them.
        db.open_tree("checkpoints")
            .unwrap()
            .pop_max()
            .unwrap()
            .unwrap();
        db.flush().unwrap();
        before
    };
    let (ok, out) = konsilium(&["journal", "verify", "--data-dir", &dir, "--org", &org]);
    assert!(!ok, "{out}");
    assert!(out.contains("last entries were deleted"), "{out}");
    // The node starts on what was kept, records the gap in the journal,
    // keeps the anchor that proves it, and asks for what it lost.
    let restarted = node::start(requester.setup(vec![], vec![])).await.unwrap();
    restarted.shutdown().await;
    let evidence = requester.data_dir.join(format!(
        "journal.anchor.lost-{}-{kept_before}",
        kept_before - 2
    ));
    assert!(evidence.exists(), "{} is missing", evidence.display());
    {
        let store =
            konsilium_node::storage::store::Store::open(&requester.data_dir.join("db")).unwrap();
        let entries = store.journal().unwrap();
        let gap = entries.iter().find_map(|e| match e.action {
            konsilium_protocol::journal::Action::Gap { lost_from, lost_to } => {
                Some((lost_from, lost_to))
            }
            _ => None,
        });
        assert_eq!(gap, Some((kept_before - 2, kept_before)));
    }
    let (ok, out) = konsilium(&["journal", "verify", "--data-dir", &dir, "--org", &org]);
    assert!(ok, "the journal goes on, anchored again: {out}");

    // Someone edits an entry in the database: verification names it.
    {
        let store =
            konsilium_node::storage::store::Store::open(&requester.data_dir.join("db")).unwrap();
        let mut entries = store.journal().unwrap();
        entries[1].actor = Some("someone else".into());
        store.put_journal(&entries[1]).unwrap();
        store.flush().unwrap();
    }
    let (ok, out) = konsilium(&["journal", "verify", "--data-dir", &dir, "--org", &org]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("does not verify") && out.contains("journal entry 1 was edited"),
        "{out}"
    );
    // An edit is not a loss to recover from: the node will not start on it.
    let refused = match node::start(requester.setup(vec![], vec![])).await {
        Ok(_) => panic!("the node started on an edited journal"),
        Err(e) => e.to_string(),
    };
    assert!(refused.contains("does not match its anchor"), "{refused}");
}

/// Help that teaches: every command's help ends with a worked example.
#[test]
fn every_command_has_an_example_in_its_help() {
    let (ok, top) = konsilium(&["--help"]);
    assert!(ok && top.contains("Examples:"), "{top}");
    let commands: Vec<Vec<&str>> = vec![
        vec!["demo"],
        vec!["init"],
        vec!["run"],
        vec!["verify"],
        vec!["api-token"],
        vec!["specialties"],
        vec!["status"],
        vec!["peers"],
        vec!["directory"],
        vec!["route"],
        vec!["requests"],
        vec!["request"],
        vec!["outbox"],
        vec!["sla"],
        vec!["sessions"],
        vec!["certs"],
        vec!["recover"],
        vec!["backup"],
        vec!["reload"],
        vec!["restore"],
        vec!["doctor"],
        vec!["metrics"],
        vec!["journal", "verify"],
        vec!["journal", "tail"],
        vec!["journal", "stats"],
    ];
    for command in commands {
        let mut args = command.clone();
        args.push("--help");
        let (ok, help) = konsilium(&args);
        assert!(ok, "konsilium {command:?} --help failed: {help}");
        assert!(
            help.contains("Example:") || help.contains("Examples:"),
            "konsilium {command:?} --help shows no example:\n{help}"
        );
        assert!(
            help.contains(&format!("konsilium {}", command.join(" "))),
            "the example of {command:?} does not use the command itself:\n{help}"
        );
    }
}

#[test]
fn a_view_without_a_node_says_which_node_to_name_or_that_none_runs() {
    let (ok, out) = konsilium(&["status"]);
    assert!(!ok);
    assert!(out.contains("--config"), "{out}");
    let tmp = tempfile::tempdir().unwrap();
    let socket = tmp.path().join("admin.sock");
    let (ok, out) = konsilium(&["peers", "--socket", socket.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        out.contains(&format!("no node is running at {}", socket.display())),
        "{out}"
    );
}

/// Every file under `dir`, by path and content.
fn tree_digest(dir: &std::path::Path) -> blake3::Hash {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out)
            } else {
                out.push(p)
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    files.sort();
    let mut h = blake3::Hasher::new();
    for f in files {
        h.update(f.to_string_lossy().as_bytes());
        h.update(&std::fs::read(&f).unwrap());
    }
    h.finalize()
}

/// `init` makes the data directory private whatever the operator's umask:
/// it will hold case extracts.
#[test]
fn init_creates_a_private_data_directory() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let (ok, out) = konsilium(&[
        "init",
        "--org-name",
        "Sokol Central District Hospital",
        "--data-dir",
        dir.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("node.toml")), 0o600);
}
