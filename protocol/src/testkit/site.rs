//! An organization's whole node on the simulated network: admission and the
//! directory ([`OrgNode`]), delivery (the outbox machine) and the
//! consultation desk, wired as the node wires them, with the node's shell
//! kept in memory: packages sealed and opened, an inbox that signs
//! receipts. A consultation runs here from request to conclusion,
//! escalations included, in simulated time.

use super::org_node::{OrgNode, PeerChange};
use super::simnet::{NodeId, SimNode, Transmit};
use crate::cert::{OrgLevel, RegionCode};
use crate::conclusion::ConclusionFile;
use crate::content::{CaseExtract, PackageBody, SharedHistory};
use crate::delivery::Receipt;
use crate::desk::{self, Actor, Desk};
use crate::directory::Directory;
use crate::identity::{IdentityKey, OrgId, SealingKey};
use crate::outbox::{self, Inbound, Outbox, PackageMeta, Token};
use crate::rpc::{Hello, HelloAnswer, Refusal, Request, Response};
use crate::seal::{self, EnvelopeHeader, PACKAGE_VERSION, PackageId, RoutingHeader, SealedPackage};
use crate::signed::Signed;
use crate::time::Timestamp;
use crate::wire;
use crate::workflow::{Action, Consent, ConsultationId, ConsultationRequest, Status};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// Requests of the outbox machine carry this bit in their simulated token,
/// receipts the next one; the directory machine's tokens are small counters.
const DELIVERY: u64 = 1 << 63;
const RECEIPT: u64 = 1 << 62;
/// How long workflow packages live, as the node gives them.
const LIFETIME: Duration = Duration::from_secs(14 * 86_400);

/// Seeds an outbox's retry jitter from its organization.
fn outbox_seed(me: OrgId) -> u64 {
    u64::from_le_bytes(me.as_bytes()[..8].try_into().expect("8 of 32"))
}

/// The outbox asks the directory only for regions and revocations.
struct Regions<'a>(&'a Directory);

impl outbox::Directory for Regions<'_> {
    fn region(&self, org: &OrgId) -> Option<&RegionCode> {
        self.0.get(org).map(|e| e.region())
    }

    fn is_revoked(&self, _org: &OrgId) -> bool {
        false
    }
}

pub struct Site {
    org: OrgNode,
    me: OrgId,
    identity: IdentityKey,
    sealing: SealingKey,
    outbox: Outbox,
    outbox_config: outbox::Config,
    desk: Desk,
    /// The outbox's package bytes.
    packages: BTreeMap<PackageId, SealedPackage>,
    /// Packages taken in, with the receipt given for each.
    inbox: BTreeMap<PackageId, Signed<Receipt>>,
    peers: BTreeMap<OrgId, NodeId>,
    /// Where each organization's node is, as directory records' addresses
    /// tell a real node; without it the site reaches only the peers it is
    /// connected to.
    addresses: Option<Arc<HashMap<OrgId, NodeId>>>,
    /// Dials asked for and not yet answered.
    dialling: BTreeMap<NodeId, OrgId>,
    dials: VecDeque<NodeId>,
    transmits: VecDeque<Transmit>,
    /// Draws for package ids, consultation ids and sealing randomness,
    /// from a seed labelled with the site's id (written once: showing an
    /// id was a tenth of a draw's cost).
    draws: u64,
    draw_label: String,
    /// What the desk reported, in order.
    pub events: Vec<(Timestamp, desk::Event)>,
    /// Packages this site took custody of to carry for others.
    pub relayed: u64,
    /// Packages this site sealed (each also opened, its signed content
    /// checked and a receipt signed and checked): the model's crypto.
    pub sealed: u64,
}

impl Site {
    pub fn new(
        org: OrgNode,
        identity: IdentityKey,
        sealing: SealingKey,
        region: RegionCode,
    ) -> Self {
        let me = identity.org_id();
        let outbox_config = outbox::Config {
            me,
            region: region.clone(),
            relay: None,
            custody: outbox::Custody::DEFAULT,
        };
        let outbox = Outbox::new(outbox_config.clone(), outbox_seed(me), []);
        let desk = Desk::new(
            desk::Config::default(),
            IdentityKey::from_seed(*identity.to_seed()),
            region,
        );
        Self {
            org,
            me,
            identity,
            sealing,
            outbox,
            outbox_config,
            desk,
            packages: BTreeMap::new(),
            inbox: BTreeMap::new(),
            peers: BTreeMap::new(),
            addresses: None,
            dialling: BTreeMap::new(),
            dials: VecDeque::new(),
            transmits: VecDeque::new(),
            draws: 0,
            draw_label: format!("site/{me}"),
            events: Vec::new(),
            relayed: 0,
            sealed: 0,
        }
    }

    /// Sends packages for other regions through `relay`, as a node whose
    /// `relay_via` names its regional center. Set before anything is sent.
    pub fn relaying_via(mut self, relay: OrgId) -> Self {
        let config = outbox::Config {
            relay: Some(relay),
            ..self.outbox_config.clone()
        };
        self.outbox = Outbox::new(config, outbox_seed(self.me), []);
        self
    }

    /// A test organization's site, its directory holding `records`.
    pub fn of(
        org: &super::TestOrg,
        trust: &crate::cert::Trust,
        records: Vec<crate::directory::SignedRecord>,
        sync: crate::directory::SyncConfig,
        now: Timestamp,
    ) -> Self {
        let mut directory = super::DirectoryNode::new(sync, Directory::new(), trust.clone());
        directory.publish(now, records);
        Site::new(
            OrgNode::new(org.id(), org.chain.clone(), directory),
            IdentityKey::from_seed(*org.identity.to_seed()),
            org.sealing.clone(),
            org.region.clone(),
        )
    }

    pub fn id(&self) -> OrgId {
        self.me
    }

    /// Lets the outbox dial organizations it is not connected to (a
    /// connection whose admission failed is cut by admission, so the
    /// next dial opens a fresh one).
    pub fn set_addresses(&mut self, addresses: Arc<HashMap<OrgId, NodeId>>) {
        self.addresses = Some(addresses);
    }

    /// For input from outside the network (an operator's revocation list).
    pub fn org_node_mut(&mut self) -> &mut OrgNode {
        &mut self.org
    }

    pub fn org_node(&self) -> &OrgNode {
        &self.org
    }

    /// Records reaching the site's directory from outside the network (its
    /// organization publishing a new version).
    pub fn publish(&mut self, now: Timestamp, records: Vec<crate::directory::SignedRecord>) {
        self.org.directory_mut().publish(now, records);
    }

    pub fn desk(&self) -> &Desk {
        &self.desk
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    fn directory(&self) -> &Directory {
        self.org.directory().directory()
    }

    fn draw(&mut self) -> [u8; 32] {
        self.draws += 1;
        super::seed(&self.draw_label, self.draws)
    }

    /// The attending physician asks `consultant`; returns the new consultation.
    pub fn ask(
        &mut self,
        now: Timestamp,
        consultant: OrgId,
        urgency: crate::urgency::Urgency,
        consent: Consent,
        specialty: crate::specialty::Specialty,
    ) -> Result<ConsultationId, desk::DeskError> {
        let draw = self.draw();
        let request = ConsultationRequest {
            id: ConsultationId(draw[..16].try_into().expect("16 of 32")),
            requester: self.me,
            consultant,
            specialty,
            urgency,
            created: now,
            consent,
            physician: "attending physician".into(),
            escalated_from: None,
        };
        let id = request.id;
        let signed = self.desk.open(
            now,
            request,
            Some("attending physician"),
            self.org.directory().directory(),
        )?;
        self.send_request(now, signed);
        self.run(now);
        Ok(id)
    }

    /// A clinician of this organization takes a step.
    pub fn act(
        &mut self,
        now: Timestamp,
        id: ConsultationId,
        actor: Actor<'_>,
        action: Action,
        conclusion: Option<ConclusionFile>,
    ) -> Result<Status, desk::DeskError> {
        let directory = self.org.directory().directory();
        let status = self
            .desk
            .act(now, id, actor, action, conclusion, directory)?;
        self.run(now);
        Ok(status)
    }

    fn send_request(&mut self, now: Timestamp, request: Signed<ConsultationRequest>) {
        let Ok(r) = request.decode_unverified() else {
            return;
        };
        let body = PackageBody::Consultation {
            request,
            extract: extract(),
            files: Vec::new(),
        };
        self.send(now, r.consultant, &r, &body);
    }

    /// The consultation as this site holds it, sealed to an invited organization.
    fn send_history(&mut self, now: Timestamp, id: ConsultationId, to: OrgId) {
        let Some(case) = self.desk.case(&id) else {
            return;
        };
        let request = case.consultation.request.clone();
        let history = SharedHistory {
            request: case.request.clone(),
            extract: extract(),
            files: Vec::new(),
            steps: case.consultation.history.clone(),
            conclusion: case.conclusion.clone(),
        };
        self.send(now, to, &request, &PackageBody::History(Box::new(history)));
    }

    /// Seals a workflow package to `to` and queues it in the outbox.
    fn send(
        &mut self,
        now: Timestamp,
        to: OrgId,
        request: &ConsultationRequest,
        body: &PackageBody,
    ) {
        let Some(recipient) = self.directory().get(&to).map(|e| e.record().sealing_key) else {
            return;
        };
        let id = PackageId(self.draw()[..16].try_into().expect("16 of 32"));
        let header = EnvelopeHeader {
            version: PACKAGE_VERSION,
            id,
            sender: self.me,
            recipient: to,
            routing: RoutingHeader {
                specialty: request.specialty,
                min_level: OrgLevel::District,
                urgency: request.urgency,
                region: None,
            },
            created: now,
            expires: now.saturating_add(LIFETIME),
            attachments: Vec::new(),
        };
        let body = wire::encode(body).expect("a workflow body fits");
        let ephemeral = self.draw();
        let package = seal::seal(header, &self.sealing, &recipient, ephemeral, &body)
            .expect("seals to a directory key");
        self.sealed += 1;
        let entry =
            self.outbox
                .entry_for(now, PackageMeta::of(&package), &Regions(self.directory()));
        self.packages.insert(id, package);
        self.outbox.enqueue(now, entry).expect("a new package");
    }

    /// Takes custody of a package to carry for others, as a relay does.
    fn carry(&mut self, now: Timestamp, package: SealedPackage) -> Response {
        let meta = PackageMeta::of(&package);
        let entry = (self.outbox).entry_for(now, meta, &Regions(self.directory()));
        let id = package.header.id;
        self.packages.insert(id, package);
        match self.outbox.enqueue(now, entry) {
            Ok(()) => {
                self.relayed += 1;
                Response::Custody
            }
            Err(e) => {
                self.packages.remove(&id);
                Response::Refused(Refusal::Transient(e.to_string()))
            }
        }
    }

    /// A package for this organization: opened, handed to the desk, receipted.
    fn take_in(&mut self, now: Timestamp, package: SealedPackage) -> Response {
        let id = package.header.id;
        if let Some(receipt) = self.inbox.get(&id) {
            return Response::Receipt(receipt.clone());
        }
        let opened = seal::open(
            &package,
            self.me,
            &self.sealing,
            self.directory(),
            now,
            |_| false,
        );
        let body = match opened {
            Ok(body) => body,
            Err(e) => return Response::Refused(e.into()),
        };
        let sender = package.header.sender;
        let trust = self.org.directory().trust();
        let directory = self.org.directory().directory();
        let _ = match wire::decode::<PackageBody>(&body) {
            Ok(PackageBody::Consultation { request, .. }) => self
                .desk
                .handle_request(now, sender, id, request, trust, directory),
            Ok(PackageBody::Step { step, conclusion }) => {
                self.desk
                    .handle_step(now, sender, step, conclusion.map(|c| *c), trust, directory)
            }
            Ok(PackageBody::History(history)) => self
                .desk
                .handle_history(now, sender, id, &history, trust, directory)
                .map(|_| desk::Taken::Taken),
            _ => Ok(desk::Taken::Taken),
        };

        let receipt = Signed::sign(&self.identity, &Receipt::for_package(&package, now));
        self.inbox.insert(id, receipt.clone());
        self.run(now);
        Response::Receipt(receipt)
    }

    /// Carries out what the machines decided, until none has more to say.
    fn run(&mut self, now: Timestamp) {
        loop {
            let mut busy = false;
            while let Some(change) = self.org.poll_peer_change() {
                busy = true;
                match change {
                    PeerChange::Ready(peer, org) => {
                        self.dialling.remove(&peer);
                        self.peers.insert(org, peer);
                        self.outbox.handle_peer_ready(now, org);
                    }
                    PeerChange::Gone(peer) => {
                        if let Some((&org, _)) = self.peers.iter().find(|(_, p)| **p == peer) {
                            self.peers.remove(&org);
                            self.outbox.handle_peer_gone(org);
                        }
                    }
                }
            }
            while let Some(output) = self.desk.poll_output() {
                busy = true;
                self.on_desk(now, output);
            }
            while let Some(output) = self.outbox.poll_output() {
                busy = true;
                self.on_outbox(now, output);
            }
            if !busy {
                return;
            }
        }
    }

    fn on_desk(&mut self, now: Timestamp, output: desk::Output) {
        match output {
            desk::Output::Send {
                id,
                to,
                step,
                conclusion,
            } => {
                let Some(case) = self.desk.case(&id) else {
                    return;
                };
                let request = case.consultation.request.clone();
                self.send(now, to, &request, &PackageBody::Step { step, conclusion });
            }
            desk::Output::Escalate { from, to, reason } => {
                let Some(case) = self.desk.case(&from) else {
                    return;
                };
                let before = case.consultation.request.clone();
                let draw = self.draw();
                let next = ConsultationRequest {
                    id: ConsultationId(draw[..16].try_into().expect("16 of 32")),
                    consultant: to,
                    created: now,
                    escalated_from: Some(from),
                    ..before
                };
                let next_id = next.id;
                let directory = self.org.directory().directory();
                match self.desk.open(now, next, None, directory) {
                    Ok(signed) => {
                        self.send_request(now, signed);
                        let directory = self.org.directory().directory();
                        self.desk
                            .handle_escalated(now, from, Some(next_id), directory);
                    }
                    Err(_) => self.desk.retry_escalation(now, from, reason),
                }
            }
            desk::Output::Invite { id, to } => self.send_history(now, id, to),
            desk::Output::Event(event) => self.events.push((now, event)),
            desk::Output::Persist { .. } | desk::Output::Hold(_) | desk::Output::Release(_) => {}
        }
    }

    fn on_outbox(&mut self, now: Timestamp, output: outbox::Output) {
        match output {
            outbox::Output::Deliver { token, to, id } => {
                match (self.peers.get(&to), self.packages.get(&id)) {
                    (Some(&peer), Some(package)) => self.transmits.push_back(Transmit {
                        to: peer,
                        token: DELIVERY | token.raw(),
                        request: Request::Deliver(package.clone()),
                    }),
                    _ => self.outbox.handle_failure(now, token, "not connected"),
                }
            }
            outbox::Output::Dial { to } => {
                if self.peers.contains_key(&to) {
                    return;
                }
                let node = self.addresses.as_ref().and_then(|a| a.get(&to)).copied();
                match node {
                    Some(node) => {
                        if self.dialling.insert(node, to).is_none() {
                            self.dials.push_back(node);
                        }
                    }
                    None => self.outbox.handle_dial_failed(to, "not connected"),
                }
            }
            outbox::Output::SendReceipt { to, receipt } => {
                if let Some(&peer) = self.peers.get(&to) {
                    self.transmits.push_back(Transmit {
                        to: peer,
                        token: RECEIPT,
                        request: Request::Receipt(receipt),
                    });
                }
            }
            outbox::Output::Remove(id) => {
                self.packages.remove(&id);
            }
            outbox::Output::Persist(_) | outbox::Output::Event(_) => {}
        }
    }
}

impl SimNode for Site {
    fn connection_key(&self) -> Option<OrgId> {
        Some(self.me)
    }

    fn handle_peer_up(&mut self, now: Timestamp, peer: NodeId, key: Option<OrgId>) {
        self.dialling.remove(&peer);
        self.org.handle_peer_up(now, peer, key);
        self.run(now);
    }

    fn handle_peer_down(&mut self, now: Timestamp, peer: NodeId) {
        self.dialling.remove(&peer);
        self.org.handle_peer_down(now, peer);
        self.run(now);
    }

    fn handle_request(&mut self, now: Timestamp, from: NodeId, request: Request) -> Response {
        let Some(sender) = self.org.admission().admitted(&from) else {
            return Response::Refused(Refusal::NotAdmitted);
        };
        let response = match request {
            Request::Deliver(package) => {
                let verdict =
                    self.outbox
                        .inbound(now, sender, &package, &Regions(self.directory()));
                match verdict {
                    Inbound::ForUs => self.take_in(now, package),
                    Inbound::Answer(response) => response,
                    Inbound::Relay => self.carry(now, package),
                }
            }
            Request::Receipt(receipt) => {
                let _ = self.outbox.handle_receipt(now, receipt);
                Response::Done
            }
            other => self.org.handle_request(now, from, other),
        };
        self.run(now);
        response
    }

    fn handle_response(&mut self, now: Timestamp, token: u64, response: Response) {
        if token & DELIVERY != 0 {
            let token = Token::from_raw(token & !DELIVERY);
            self.outbox.handle_response(now, token, response);
        } else if token & RECEIPT == 0 {
            self.org.handle_response(now, token, response);
        }
        self.run(now);
    }

    fn handle_failure(&mut self, now: Timestamp, token: u64) {
        if token & DELIVERY != 0 {
            let token = Token::from_raw(token & !DELIVERY);
            self.outbox.handle_failure(now, token, "timed out");
        } else if token & RECEIPT == 0 {
            self.org.handle_failure(now, token);
        }
        self.run(now);
    }

    fn poll_transmit(&mut self, now: Timestamp) -> Option<Transmit> {
        self.transmits
            .pop_front()
            .or_else(|| self.org.poll_transmit(now))
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        [
            self.org.poll_timeout(),
            self.outbox.poll_timeout(),
            self.desk.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        if self.org.poll_timeout().is_some_and(|t| t <= now) {
            self.org.handle_timeout(now);
        }
        if self.outbox.poll_timeout().is_some_and(|t| t <= now) {
            self.outbox.handle_timeout(now);
        }
        if self.desk.poll_timeout().is_some_and(|t| t <= now) {
            let directory = self.org.directory().directory();
            self.desk.handle_timeout(now, directory);
        }
        self.run(now);
    }

    fn poll_hello(&mut self, now: Timestamp) -> Option<(NodeId, Hello)> {
        self.org.poll_hello(now)
    }

    fn handle_hello(&mut self, now: Timestamp, from: NodeId, hello: Hello) -> HelloAnswer {
        let answer = self.org.handle_hello(now, from, hello);
        self.run(now);
        answer
    }

    fn handle_hello_answer(&mut self, now: Timestamp, from: NodeId, answer: HelloAnswer) {
        self.org.handle_hello_answer(now, from, answer);
        self.run(now);
    }

    fn handle_hello_failed(&mut self, now: Timestamp, to: NodeId) {
        self.org.handle_hello_failed(now, to);
        self.run(now);
    }

    fn poll_cut(&mut self) -> Option<NodeId> {
        self.org.poll_cut()
    }

    fn poll_dial(&mut self) -> Option<NodeId> {
        self.dials.pop_front()
    }

    fn handle_dial_failed(&mut self, now: Timestamp, peer: NodeId) {
        if let Some(org) = self.dialling.remove(&peer) {
            self.outbox.handle_dial_failed(org, "unreachable");
        }
        self.run(now);
    }
}

/// What every simulated physician writes: the clinical text is not what
/// the simulations measure.
fn extract() -> CaseExtract {
    CaseExtract {
        summary: "case history and examination results".into(),
        questions: "diagnosis and treatment?".into(),
    }
}
