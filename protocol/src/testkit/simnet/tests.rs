use super::*;
use crate::identity::IdentityKey;
use crate::testkit::NOW;
use std::collections::VecDeque;

/// Answers everything with `Done` and records what came back when, and
/// which connections closed.
#[derive(Default)]
struct Echo {
    outbox: VecDeque<Transmit>,
    answered: Vec<(u64, Timestamp)>,
    failed: Vec<(u64, Timestamp)>,
    downs: Vec<NodeId>,
}

impl SimNode for Echo {
    fn handle_request(&mut self, _: Timestamp, _: NodeId, _: Request) -> Response {
        Response::Done
    }
    fn handle_response(&mut self, now: Timestamp, token: u64, _: Response) {
        self.answered.push((token, now));
    }
    fn handle_failure(&mut self, now: Timestamp, token: u64) {
        self.failed.push((token, now));
    }
    fn poll_transmit(&mut self, _: Timestamp) -> Option<Transmit> {
        self.outbox.pop_front()
    }
    fn poll_timeout(&self) -> Option<Timestamp> {
        None
    }
    fn handle_timeout(&mut self, _: Timestamp) {}
    fn handle_peer_down(&mut self, _: Timestamp, peer: NodeId) {
        self.downs.push(peer);
    }
}

fn pair(link: Link) -> SimNet<Echo> {
    let mut net = SimNet::new(
        SimConfig {
            link,
            seed: 5,
            ..SimConfig::default()
        },
        NOW,
    );
    net.add(Echo::default());
    net.add(Echo::default());
    net.connect(0, 1);
    net
}

fn send(net: &mut SimNet<Echo>, n: u64) {
    for token in 0..n {
        net.node_mut(0).outbox.push_back(Transmit {
            to: 1,
            token,
            request: Request::Revocations(vec![]),
        });
    }
}

#[test]
fn jitter_reorders_loss_fails_late_and_a_partition_drops_everything() {
    let mut net = pair(Link {
        latency: Duration::from_millis(10),
        jitter: Duration::from_millis(50),
        loss: 0.0,
    });
    send(&mut net, 100);
    net.settle();
    let order: Vec<u64> = net.node(0).answered.iter().map(|a| a.0).collect();
    assert_eq!(order.len(), 100);
    assert!(order.windows(2).any(|w| w[0] > w[1]), "jitter reorders");
    assert!(
        net.node(0)
            .answered
            .iter()
            .all(|a| a.1.since(NOW) >= Duration::from_millis(20))
    );
    assert_eq!(net.stats(0).requests, 100);
    assert_eq!(net.stats(1).responses, 100);

    let mut net = pair(Link {
        loss: 0.3,
        ..Link::default()
    });
    send(&mut net, 200);
    net.settle();
    let (ok, failed) = (net.node(0).answered.len(), net.node(0).failed.len());
    assert_eq!(ok + failed, 200, "every request answered or failed");
    // Lost requests or answers: 1 - 0.7² = 51% expected.
    assert!((70..130).contains(&failed), "{failed}");
    let timeout = SimConfig::default().failure_after;
    assert!(net.node(0).failed.iter().all(|f| f.1.since(NOW) >= timeout));

    let mut net = pair(Link::default());
    net.partition(|i| i);
    send(&mut net, 10);
    net.settle();
    assert_eq!(net.node(0).failed.len(), 10);
    net.heal();
    send(&mut net, 10);
    net.settle();
    assert_eq!(net.node(0).answered.len(), 10);
}

#[test]
fn a_list_over_its_kinds_limit_is_a_violation() {
    let mut net = pair(Link::default());
    let id = IdentityKey::from_seed([4; 32]).org_id();
    // 40,000 ids fit a `Request` frame (80 MiB) but not a RecordRequest (1 MiB).
    net.node_mut(0).outbox.push_back(Transmit {
        to: 1,
        token: 1,
        request: Request::WantRecords(RecordRequest {
            orgs: vec![id; 40_000],
        }),
    });
    net.settle();
    assert_eq!(net.violations().len(), 1);
    let v = &net.violations()[0];
    assert_eq!(
        (v.from, v.what, v.max),
        (0, "WantRecords", RecordRequest::MAX_LEN)
    );
    assert!(v.len > RecordRequest::MAX_LEN);
    assert!(net.stats(0).largest_frame > RecordRequest::MAX_LEN);
}

/// Taking a node down closes its connections, in either order they were
/// opened, and no others; both sides of each are told, and bringing the
/// node back reconnects nobody.
#[test]
fn a_node_taken_down_loses_its_connections_and_no_others() {
    let mut net = SimNet::new(SimConfig::default(), NOW);
    for _ in 0..4 {
        net.add(Echo::default());
    }
    for (a, b) in [(0, 1), (1, 2), (3, 1), (0, 2), (2, 3)] {
        net.connect(a, b);
    }
    net.set_online(1, false);
    for (a, b) in [(0, 1), (1, 2), (3, 1)] {
        assert!(
            !net.is_connected(a, b) && !net.is_connected(b, a),
            "{a}-{b}"
        );
    }
    for (a, b) in [(0, 2), (2, 3)] {
        assert!(net.is_connected(a, b) && net.is_connected(b, a), "{a}-{b}");
    }
    assert_eq!(net.node(1).downs, vec![0, 2, 3]);
    for peer in [0, 2, 3] {
        assert_eq!(net.node(peer).downs, vec![1], "node {peer}");
    }
    net.set_online(1, true);
    assert!(!net.is_connected(0, 1));
}
