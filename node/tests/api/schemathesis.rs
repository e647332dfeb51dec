//! The API fuzzed from its own OpenAPI document by schemathesis: generated
//! requests, valid and not, against a node with a counterpart to consult.
//! No answer may be a 5xx, every error must be a problem document, and no
//! response may contradict the document (status, media type, schema,
//! headers); a request the document forbids must be refused.
//!
//! It needs the `schemathesis` command, so it is ignored by default;
//! `.ci/run` installs the tool and runs it:
//! `KONSILIUM_SCHEMATHESIS=/path/to/schemathesis cargo test --workspace -- --ignored schemathesis`.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs schemathesis (PyPI); .ci/run installs it and runs this"]
async fn schemathesis_finds_no_5xx_and_no_response_contradicting_the_document() {
    let tool = std::env::var("KONSILIUM_SCHEMATHESIS")
        .expect("KONSILIUM_SCHEMATHESIS names the schemathesis command");
    let tmp = tempfile::tempdir().unwrap();
    let (regional, federal) = regional_and_federal(tmp.path(), "Regional hospital").await;
    let (base, task) = serve(
        &regional,
        vec![User::with_token("Dr. Ivanova", Role::Physician, "phys-r")],
        &tmp.path().join("uploads"),
    )
    .await;
    let examples = std::env::var("KONSILIUM_SCHEMATHESIS_EXAMPLES").unwrap_or("60".into());
    let report = tmp.path().join("schemathesis.xml");
    // WHIP/WHEP offers are `application/sdp`: text, which schemathesis
    // is told how to send.
    let hooks = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api");
    let run = tokio::process::Command::new(&tool)
        .env("PYTHONPATH", hooks)
        .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
        .arg("run")
        .arg(format!("{base}/openapi.json"))
        .args(["--checks", "all"])
        // Requests the document allows but the API refuses: the API checks
        // rules across fields (which fields an action takes, what consent
        // must say, what a FHIR Bundle must hold) that the document gives
        // in prose. Such refusals are 4xx problem documents, which the
        // other checks hold them to.
        .args(["--exclude-checks", "positive_data_acceptance"])
        .args(["--header", "Authorization: Bearer phys-r"])
        .args(["--max-examples", &examples])
        .args(["--seed", "7"])
        .arg("--report-junit-path")
        .arg(&report)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
    let out = String::from_utf8_lossy(&run.stdout);
    let err = String::from_utf8_lossy(&run.stderr);
    let tail: Vec<&str> = out.lines().rev().take(40).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    println!("{}", tail.join("\n"));
    assert!(
        run.status.success(),
        "schemathesis found problems:\n{out}\n{err}"
    );
    let junit = std::fs::read_to_string(&report).expect("schemathesis wrote its report");
    assert!(
        junit.contains("<testcase"),
        "the run tested operations: {junit}"
    );
    task.abort();
    shut_down([regional, federal]).await;
}
