//! The `konsilium` binary as an operator runs it.

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
