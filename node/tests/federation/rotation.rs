//! Rotating an organization's sealing key: new packages are sealed to the
//! new key, a package sealed to the old one by a sender whose directory is
//! behind still opens, and so does everything the organization already
//! holds after a restart from its key files.

use super::*;
use konsilium_node::keys::NodeKeys;
use konsilium_protocol::directory::DirectoryRecord;
use konsilium_protocol::seal::keyring::Retired;
use konsilium_protocol::time::Timestamp;

/// The member's node, with the keys its key files hold now.
async fn start_from_key_files(member: &Member, bootstrap: Vec<Multiaddr>) -> NodeHandle {
    let keys = NodeKeys::load(&member.data_dir).unwrap();
    let mut setup = member.setup(bootstrap, vec![]);
    setup.sealing = keys.sealing;
    setup.retired = (keys.retired.into_iter())
        .map(|r| Retired {
            key: r.key,
            at: Timestamp::from_unix_millis(r.retired_at_ms),
        })
        .collect();
    node::start(setup).await.unwrap()
}

async fn record_of(holder: &NodeHandle, org: OrgId) -> DirectoryRecord {
    let records = holder.records().await.unwrap();
    records
        .iter()
        .map(|r| r.decode_unverified().unwrap())
        .find(|r: &DirectoryRecord| r.chain.org.decode_unverified().unwrap().org == org)
        .unwrap()
}

/// The sealing key `holder`'s directory has for `org`, as hex.
async fn key_of(holder: &NodeHandle, org: OrgId) -> String {
    hex::encode(record_of(holder, org).await.sealing_key.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_sealing_key_seals_new_packages_while_old_ones_still_open() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let federal = fed.enrol(OrgSpec::new(
        "Federal center",
        OrgLevel::Federal,
        "RU-MOW",
        &[Specialty::Oncology],
    ));
    let district = fed.enrol(OrgSpec::new(
        "District hospital",
        OrgLevel::District,
        "RU-VLG",
        &[],
    ));
    federal.keys.node_keys().write(&federal.data_dir).unwrap();
    let f = start_from_key_files(&federal, vec![]).await;
    let fa = addr(&f).await;
    let d = start(&district, vec![fa.clone()], vec![]).await;
    converge(&[&f, &d], 2).await;
    // The record a node publishes before it listens has no address; the
    // district must hold the one after, to find the center again offline.
    tokio::time::timeout(PATIENCE, async {
        while record_of(&d, federal.org_id()).await.addresses.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap();
    let before = key_of(&d, federal.org_id()).await;

    // The district goes offline; the federal center rotates meanwhile.
    d.shutdown().await;
    let report = f.rotate_sealing_key().await.unwrap();
    assert_eq!(report.retired, before);
    assert_ne!(report.sealing_key, before);
    assert_eq!(report.retired_keys, 1);
    assert_eq!(key_of(&f, federal.org_id()).await, report.sealing_key);

    // Back without bootstrap peers, the district still has the old record:
    // its package is sealed to the retired key, and opens.
    let d = start(&district, vec![], vec![]).await;
    assert_eq!(key_of(&d, federal.org_id()).await, before);
    let (oncology, federal_level) = (Specialty::Oncology, OrgLevel::Federal);
    let to_old = deliver(
        &d,
        federal.org_id(),
        oncology,
        federal_level,
        b"sealed to the retired key",
    )
    .await;
    // The delivery's Hello brought the new record: the next package is
    // sealed to the new key.
    assert_eq!(key_of(&d, federal.org_id()).await, report.sealing_key);
    let to_new = deliver(
        &d,
        federal.org_id(),
        oncology,
        federal_level,
        b"sealed to the new key",
    )
    .await;
    assert_eq!(
        f.open(to_old).await.unwrap().1,
        b"sealed to the retired key"
    );
    assert_eq!(f.open(to_new).await.unwrap().1, b"sealed to the new key");

    // Restarted from its key files, the center still opens both, and
    // keeps publishing the new key.
    f.shutdown().await;
    let f = start_from_key_files(&federal, vec![]).await;
    assert_eq!(
        f.open(to_old).await.unwrap().1,
        b"sealed to the retired key"
    );
    assert_eq!(f.open(to_new).await.unwrap().1, b"sealed to the new key");
    assert_eq!(key_of(&f, federal.org_id()).await, report.sealing_key);
    d.shutdown().await;
    f.shutdown().await;
}
