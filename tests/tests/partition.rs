//! Fifty organizations split in two, with conflicting directory updates on
//! both sides and consultations asked across the split, then healed. Every
//! node runs the real machines (admission, directory, outbox, desk) on the
//! simulated network. After the heal: one directory digest everywhere,
//! every consultation asked during the split delivered once, none twice.
//! The figures are printed for the CI log.

use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::desk::Event;
use konsilium_protocol::directory::{Scope, SyncConfig};
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::testkit::{
    Link, NOW, SimConfig, SimNet, Site, TestFederation, TestOrg, seed,
};
use konsilium_protocol::time::Timestamp;
use konsilium_protocol::urgency::Urgency;
use konsilium_protocol::workflow::{Consent, ConsentMethod, ConsultationId};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const NODES: usize = 50;
const SPLIT: Duration = Duration::from_secs(600);

fn side(i: usize) -> usize {
    usize::from(i >= NODES / 2)
}

fn digests(net: &SimNet<Site>) -> BTreeSet<[u8; 32]> {
    net.nodes()
        .iter()
        .map(|s| s.org_node().directory().directory().digest())
        .collect()
}

#[test]
fn fifty_nodes_split_with_conflicting_updates_heal_to_one_directory_and_deliver_what_waited() {
    let mut fed = TestFederation::new("partition-suite");
    let orgs: Vec<TestOrg> = (0..NODES as u64)
        .map(|i| fed.org(i, OrgLevel::District, "RU-VLG", &[Specialty::Cardiology]))
        .collect();
    let first: Vec<_> = orgs.iter().map(|o| o.signed_record(1)).collect();
    let sim = SimConfig {
        link: Link {
            latency: Duration::from_millis(30),
            jitter: Duration::from_millis(30),
            loss: 0.01,
        },
        failure_after: Duration::from_secs(10),
        seed: 50,
    };
    let mut net = SimNet::new(sim, NOW);
    for (i, o) in orgs.iter().enumerate() {
        let sync = SyncConfig {
            interval: Duration::from_secs(10),
            ..SyncConfig::new(Scope::Federation, seed("partition-suite", i as u64))
        };
        net.add(Site::of(o, &fed.trust, first.clone(), sync, NOW));
    }
    net.connect_all();
    net.run_for(Duration::from_secs(5));
    assert_eq!(digests(&net).len(), 1, "one directory before the split");

    net.partition(side);
    let now = net.now();
    // Conflicting updates: the same organizations publish on both sides,
    // a higher sequence on one side for some, on the other for the rest.
    for (k, o) in orgs.iter().enumerate().take(20) {
        let (a, b) = if k % 2 == 0 { (5, 3) } else { (2, 4) };
        let mut ra = o.record(a);
        ra.issued_at = Timestamp::from_unix_millis(now.unix_millis());
        let mut rb = o.record(b);
        rb.issued_at = Timestamp::from_unix_millis(now.unix_millis() + 1);
        net.node_mut(k % (NODES / 2))
            .publish(now, vec![o.sign(&ra)]);
        net.node_mut(NODES / 2 + k % (NODES / 2))
            .publish(now, vec![o.sign(&rb)]);
    }
    // Consultations asked across the split: they wait in the outboxes.
    let consent = Consent::Given {
        by: "the patient".into(),
        at: now,
        method: ConsentMethod::Written,
        document: None,
    };
    let mut asked: BTreeMap<ConsultationId, usize> = BTreeMap::new();
    for r in 0..10 {
        let consultant = NODES / 2 + r;
        let id = net
            .node_mut(r)
            .ask(
                now,
                orgs[consultant].id(),
                Urgency::Planned,
                consent.clone(),
                Specialty::Cardiology,
            )
            .unwrap();
        asked.insert(id, consultant);
    }
    net.run_for(SPLIT);
    assert_eq!(digests(&net).len(), 2, "each side converged on its own");
    for (id, consultant) in &asked {
        assert!(
            net.node(*consultant).desk().case(id).is_none(),
            "nothing crossed"
        );
    }

    net.heal();
    let healed = net.now();
    let converged = net.run_until(Duration::from_secs(600), |net| digests(net).len() == 1);
    let convergence = net.now().since(healed);
    assert!(converged, "one digest after the heal");
    let delivered = net.run_until(Duration::from_secs(4 * 3600), |net| {
        asked
            .iter()
            .all(|(id, c)| net.node(*c).desk().case(id).is_some())
    });
    let delivery = net.now().since(healed);
    assert!(
        delivered,
        "every consultation asked during the split arrived"
    );
    net.run_for(Duration::from_secs(600));
    // None twice: each consultant holds exactly the consultations asked of
    // it and told of each once.
    for (id, consultant) in &asked {
        let site = net.node(*consultant);
        assert_eq!(site.desk().cases().count(), 1, "site {consultant}");
        let updates = site
            .events
            .iter()
            .filter(|(_, e)| matches!(e, Event::Updated { id: i, .. } if i == id))
            .count();
        assert_eq!(
            updates, 1,
            "consultation {id} taken in once at {consultant}"
        );
    }
    for i in 0..NODES {
        assert!(
            net.node(i).outbox().is_empty(),
            "site {i} still holds packages"
        );
    }
    assert_eq!(net.violations(), &[]);
    let total = net.total();
    println!(
        "partition suite: {NODES} nodes, split {} s; one directory digest {:.1} s after the heal; \
         {} consultations delivered {:.1} s after the heal; {} messages, {} bytes, {} lost",
        SPLIT.as_secs(),
        convergence.as_secs_f64(),
        asked.len(),
        delivery.as_secs_f64(),
        total.messages(),
        total.bytes,
        total.lost,
    );
    assert!(
        convergence <= Duration::from_secs(30),
        "one digest within 30 s of the heal (took {convergence:?})"
    );
}
