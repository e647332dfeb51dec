//! Admission between machines over a small lossy network with simulated time.

use super::*;
use crate::cert::{OrgLevel, RevocationNotice};
use crate::identity::IdentityKey;
use crate::rpc::HelloAnswer;
use crate::specialty::Specialty;
use crate::testkit::{NOW, TestFederation, TestOrg};
use std::collections::BTreeMap;

const LATENCY: Duration = Duration::from_millis(20);
/// When a lost Hello is reported to its sender, as a request timeout would.
const FAILURE_AFTER: Duration = Duration::from_secs(2);

struct Side {
    org: TestOrg,
    trust: Trust,
    admission: Admission<usize>,
    /// Revocations this side puts in its Hello.
    revocations: Vec<RevocationNotice>,
    outputs: Vec<Output<usize>>,
}

impl Side {
    fn hello(&self, now: Timestamp) -> Hello {
        Hello {
            chain: self.org.chain.clone(),
            record: None,
            revocations: self.revocations.clone(),
            time: now,
        }
    }

    fn ready(&self) -> Vec<usize> {
        self.outputs
            .iter()
            .filter_map(|o| match o {
                Output::Ready { peer, .. } => Some(*peer),
                _ => None,
            })
            .collect()
    }

    fn refusals(&self) -> Vec<(usize, String)> {
        self.outputs
            .iter()
            .filter_map(|o| match o {
                Output::Refused { peer, reason, .. } => Some((*peer, reason.to_string())),
                _ => None,
            })
            .collect()
    }

    fn cut(&self) -> Vec<usize> {
        self.outputs
            .iter()
            .filter_map(|o| match o {
                Output::Cut(p) => Some(*p),
                _ => None,
            })
            .collect()
    }
}

enum Msg {
    Hello { from: usize, to: usize, hello: Hello },
    Answer { from: usize, to: usize, answer: HelloAnswer },
    Failed { from: usize, to: usize },
}

struct Net {
    now: Timestamp,
    sides: Vec<Side>,
    queue: BTreeMap<(Timestamp, u64), Msg>,
    seq: u64,
    /// Messages lost, per thousand.
    loss: u64,
    rng: u64,
    /// Connections: each side is told about the other with this key.
    keys: BTreeMap<(usize, usize), OrgId>,
}

impl Net {
    fn new(orgs: Vec<TestOrg>, trust: &Trust) -> Self {
        let sides = orgs
            .into_iter()
            .map(|org| Side {
                org,
                trust: trust.clone(),
                admission: Admission::new(Config::default()),
                revocations: Vec::new(),
                outputs: Vec::new(),
            })
            .collect();
        Net {
            now: NOW,
            sides,
            queue: BTreeMap::new(),
            seq: 0,
            loss: 0,
            rng: 7,
            keys: BTreeMap::new(),
        }
    }

    fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn post(&mut self, msg: Msg) {
        let lost = self.loss > 0 && self.random() % 1000 < self.loss;
        let (at, msg) = match msg {
            Msg::Hello { from, to, .. } if lost => {
                (self.now.saturating_add(FAILURE_AFTER), Msg::Failed { from, to })
            }
            // A lost answer fails the request at its sender, the Hello's `to`.
            Msg::Answer { from, to, .. } if lost => (
                self.now.saturating_add(FAILURE_AFTER),
                Msg::Failed { from: to, to: from },
            ),
            msg => (self.now.saturating_add(LATENCY), msg),
        };
        self.seq += 1;
        self.queue.insert((at, self.seq), msg);
    }

    /// Connects `a` and `b`; `b` sees the connection's key as `key_of_a`
    /// (normally `a`'s own).
    fn connect_as(&mut self, a: usize, b: usize, key_of_a: OrgId) {
        self.keys.insert((a, b), self.sides[b].org.id());
        self.keys.insert((b, a), key_of_a);
        let now = self.now;
        let key_b = self.sides[b].org.id();
        self.sides[a].admission.handle_connected(now, b, Ok(key_b));
        self.sides[b].admission.handle_connected(now, a, Ok(key_of_a));
        self.pump();
    }

    fn connect(&mut self, a: usize, b: usize) {
        let key = self.sides[a].org.id();
        self.connect_as(a, b, key);
    }

    fn pump(&mut self) {
        for i in 0..self.sides.len() {
            while let Some(o) = self.sides[i].admission.poll_output() {
                match &o {
                    Output::SendHello(to) => {
                        let hello = self.sides[i].hello(self.now);
                        let to = *to;
                        self.post(Msg::Hello { from: i, to, hello });
                    }
                    Output::Cut(peer) => {
                        let peer = *peer;
                        self.sides[peer].admission.handle_disconnected(i);
                    }
                    _ => {}
                }
                self.sides[i].outputs.push(o);
            }
        }
    }

    fn deliver(&mut self, msg: Msg) {
        let now = self.now;
        match msg {
            Msg::Hello { from, to, hello } => {
                let side = &mut self.sides[to];
                let answer = match side.admission.handle_hello(now, from, hello, &mut side.trust) {
                    Ok(_) => HelloAnswer::Welcome(Box::new(side.hello(now))),
                    Err(reason) => HelloAnswer::Refused(format!("not admitted: {reason}")),
                };
                self.post(Msg::Answer {
                    from: to,
                    to: from,
                    answer,
                });
            }
            Msg::Answer { from, to, answer } => {
                let side = &mut self.sides[to];
                match answer {
                    HelloAnswer::Welcome(hello) => {
                        side.admission
                            .handle_welcome(now, from, *hello, &mut side.trust)
                    }
                    HelloAnswer::Refused(reason) => side.admission.handle_refused_by(from, reason),
                }
            }
            Msg::Failed { from, to } => self.sides[from].admission.handle_hello_failed(to),
        }
        self.pump();
    }

    /// Runs until nothing is queued and no machine is due before `until`.
    fn run_until(&mut self, until: Timestamp) {
        loop {
            let next_msg = self.queue.keys().next().map(|(t, _)| *t);
            let next_timer = self
                .sides
                .iter()
                .filter_map(|s| s.admission.poll_timeout())
                .min();
            let Some(next) = [next_msg, next_timer].into_iter().flatten().min() else {
                break;
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            if next_msg == Some(next) {
                let key = *self.queue.keys().next().expect("peeked");
                let msg = self.queue.remove(&key).expect("peeked");
                self.deliver(msg);
            } else {
                let now = self.now;
                for s in &mut self.sides {
                    if s.admission.poll_timeout().is_some_and(|t| t <= now) {
                        s.admission.handle_timeout(now, &s.trust);
                    }
                }
                self.pump();
            }
        }
        self.now = self.now.max(until);
    }
}

fn federation(n: u64) -> (TestFederation, Vec<TestOrg>) {
    let mut fed = TestFederation::new("admission");
    let orgs = (0..n)
        .map(|i| fed.org(i + 1, OrgLevel::District, "RU-VLG", &[Specialty::Cardiology]))
        .collect();
    (fed, orgs)
}

fn after(d: Duration) -> Timestamp {
    NOW.saturating_add(d)
}

#[test]
fn certified_peers_admit_each_other_and_become_ready() {
    let (fed, orgs) = federation(2);
    let mut net = Net::new(orgs, &fed.trust);
    net.connect(0, 1);
    net.run_until(after(Duration::from_secs(1)));
    assert_eq!(net.sides[0].ready(), vec![1]);
    assert_eq!(net.sides[1].ready(), vec![0]);
    assert!(net.sides[0].admission.is_ready(&1));
    assert_eq!(
        net.sides[1].admission.admitted(&0),
        Some(net.sides[0].org.id())
    );
    assert!(net.sides[0].refusals().is_empty());
    // Only the admitted certificates' ends are left to wake for.
    assert!(net.sides[0].admission.poll_timeout() > Some(after(Duration::from_secs(86_400))));
}

#[test]
fn a_peer_from_another_federation_is_refused_and_cut_after_the_grace() {
    let (fed, mut orgs) = federation(1);
    let mut other = TestFederation::new("elsewhere");
    orgs.push(other.org(9, OrgLevel::District, "RU-VLG", &[]));
    let mut net = Net::new(orgs, &fed.trust);
    net.connect(0, 1);
    net.run_until(after(Duration::from_millis(100)));
    let refused = net.sides[0].refusals();
    assert_eq!(refused.len(), 1);
    assert!(refused[0].1.contains("not a configured federation root"), "{refused:?}");
    // It heard why before being cut.
    assert!(net.sides[1].outputs.iter().any(
        |o| matches!(o, Output::RefusedBy { reason, .. } if reason.contains("not admitted"))
    ));
    assert!(net.sides[0].cut().is_empty(), "cut before the grace");
    net.run_until(after(Duration::from_secs(1)));
    assert_eq!(net.sides[0].cut(), vec![1]);
    assert!(net.sides[0].ready().is_empty() && net.sides[1].ready().is_empty());
}

#[test]
fn a_silent_peer_is_refused_at_the_timeout() {
    let (fed, orgs) = federation(2);
    let mut net = Net::new(orgs, &fed.trust);
    // Side 1 never hears of the connection, so it never says Hello and
    // never answers: its side of the queue is dropped.
    net.loss = 1000;
    net.connect(0, 1);
    net.run_until(after(Duration::from_secs(9)));
    assert!(net.sides[0].refusals().is_empty(), "refused before the timeout");
    net.run_until(after(Duration::from_secs(11)));
    let refused = net.sides[0].refusals();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].1.contains("within 10 s"), "{refused:?}");
    // Three Hellos at most, then no more until a new connection.
    let hellos = net.sides[0]
        .outputs
        .iter()
        .filter(|o| matches!(o, Output::SendHello(1)))
        .count();
    assert_eq!(hellos, 3);
}

#[test]
fn a_chain_presented_on_someone_elses_connection_is_refused() {
    let (fed, orgs) = federation(3);
    let mut net = Net::new(orgs, &fed.trust);
    // Side 1's connection key is org 2's, but it presents its own chain.
    let impostor_key = net.sides[2].org.id();
    net.connect_as(1, 0, impostor_key);
    net.run_until(after(Duration::from_secs(1)));
    let refused = net.sides[0].refusals();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].1.contains("but the connection is from"), "{refused:?}");
    assert!(net.sides[0].admission.admitted(&1).is_none());
}

#[test]
fn a_connection_key_that_is_not_an_organization_key_is_refused() {
    let (fed, orgs) = federation(2);
    let mut net = Net::new(orgs, &fed.trust);
    net.sides[0].admission.handle_connected(
        NOW,
        1,
        Err(KeyError::NotEd25519("a secp256k1 peer".into())),
    );
    let hello = net.sides[1].hello(NOW);
    let side = &mut net.sides[0];
    let refused = side.admission.handle_hello(NOW, 1, hello, &mut side.trust);
    assert!(matches!(refused, Err(Refusal::Key(_))), "{refused:?}");
}

#[test]
fn a_revocation_in_a_hello_refuses_an_admitted_peer_of_that_certificate() {
    let (mut fed, orgs) = federation(3);
    let serial = orgs[2].chain.org.decode_unverified().unwrap().serial;
    let notice = fed
        .region("RU-VLG")
        .revoke(1, NOW, [serial].into_iter().collect());
    let mut net = Net::new(orgs, &fed.trust);
    net.connect(0, 2);
    net.run_until(after(Duration::from_secs(1)));
    assert_eq!(net.sides[0].ready(), vec![2]);
    // Side 1 brings the revocation of side 2's certificate.
    net.sides[1].revocations = vec![notice.clone()];
    net.connect(1, 0);
    net.run_until(after(Duration::from_secs(2)));
    let adopted = net.sides[0]
        .outputs
        .iter()
        .any(|o| matches!(o, Output::RevocationAdopted(n) if *n == notice));
    assert!(adopted, "the notice is handed out to be persisted");
    let refused = net.sides[0].refusals();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].0, 2);
    assert!(refused[0].1.contains("revoked"), "{refused:?}");
    assert!(net.sides[0].admission.is_ready(&1));
    assert_eq!(net.sides[0].cut(), vec![2]);
    // The revoked organization cannot come back.
    net.connect(2, 0);
    net.run_until(after(Duration::from_secs(3)));
    assert_eq!(net.sides[0].refusals().len(), 2);
    assert!(net.sides[0].admission.admitted(&2).is_none());
}

#[test]
fn a_certificate_that_expires_while_connected_is_refused_at_its_end() {
    let (fed, orgs) = federation(2);
    let until = orgs[1].chain.org.decode_unverified().unwrap().validity.until;
    let mut net = Net::new(orgs, &fed.trust);
    net.connect(0, 1);
    net.run_until(after(Duration::from_secs(1)));
    assert_eq!(net.sides[0].admission.poll_timeout(), Some(until));
    net.run_until(until.saturating_add(Duration::from_secs(1)));
    let refused = net.sides[0].refusals();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].1.contains("expired"), "{refused:?}");
}

#[test]
fn hellos_lost_at_twenty_percent_still_admit_every_pair() {
    let (fed, orgs) = federation(6);
    let mut net = Net::new(orgs, &fed.trust);
    net.loss = 200;
    for a in 0..6 {
        for b in a + 1..6 {
            net.connect(a, b);
        }
    }
    net.run_until(after(Duration::from_secs(30)));
    // A pair that lost every attempt was cut; a real node redials. Every
    // pair either became ready both ways or was cut by a silent timeout,
    // and reconnecting the cut pairs admits them.
    let mut cut: Vec<(usize, usize)> = Vec::new();
    for a in 0..6 {
        for b in a + 1..6 {
            let ready = net.sides[a].admission.is_ready(&b) && net.sides[b].admission.is_ready(&a);
            if !ready {
                cut.push((a, b));
            }
        }
    }
    assert!(cut.len() < 15, "20% loss admitted no pair at all");
    net.loss = 0;
    for (a, b) in &cut {
        net.sides[*a].admission.handle_disconnected(*b);
        net.sides[*b].admission.handle_disconnected(*a);
        net.connect(*a, *b);
    }
    net.run_until(after(Duration::from_secs(40)));
    for a in 0..6 {
        for b in 0..6 {
            if a != b {
                assert!(net.sides[a].admission.is_ready(&b), "{a} -> {b} not ready");
            }
        }
    }
}

#[test]
fn a_peer_refused_for_a_dropped_record_is_cut() {
    let (fed, orgs) = federation(2);
    let mut net = Net::new(orgs, &fed.trust);
    net.connect(0, 1);
    net.run_until(after(Duration::from_secs(1)));
    let org = net.sides[1].org.id();
    net.sides[0]
        .admission
        .refuse_org(net.now, org, "record dropped: revoked");
    net.pump();
    net.run_until(after(Duration::from_secs(2)));
    assert_eq!(net.sides[0].refusals().len(), 1);
    assert_eq!(net.sides[0].cut(), vec![1]);
    assert!(!net.sides[0].admission.is_ready(&1));
    // Unrelated identities are not admitted by the refusal of another.
    let stranger = IdentityKey::from_seed([9; 32]).org_id();
    net.sides[0].admission.refuse_org(net.now, stranger, "nothing");
    assert!(net.sides[0].admission.poll_output().is_none());
}
