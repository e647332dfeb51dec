//! A whole federation on one machine: authorities, certified organizations
//! and their nodes on loopback. Used by `konsilium demo` and by the
//! multi-node tests; the nodes are the real thing, only the authority keys
//! live in memory instead of an authority's offline machine.
//!
//! Behind the `local-federation` feature (on by default); hospital builds
//! leave it out with `--no-default-features`.

use crate::node::{NodeSetup, Profile, random_bytes};
use konsilium_protocol::calendar::{TimeZoneName, WorkingCalendar};
use konsilium_protocol::cert::{
    AuthorityGrant, AuthorityScope, CertChain, Issuer, OrgGrant, OrgLevel, RegionCode, Validity,
};
use konsilium_protocol::directory::{Consultant, ConsultantId, Language, Service};
use konsilium_protocol::identity::{IdentityKey, OrgId, SealingKey};
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::time::Timestamp;
use konsilium_protocol::urgency::{Deadlines, Urgency};
use libp2p::Multiaddr;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

const YEAR: Duration = Duration::from_secs(365 * 86_400);

/// What one organization is, before its node starts.
#[derive(Debug, Clone)]
pub struct OrgSpec {
    pub name: String,
    pub level: OrgLevel,
    pub region: String,
    pub specialties: Vec<Specialty>,
}

impl OrgSpec {
    pub fn new(name: &str, level: OrgLevel, region: &str, specialties: &[Specialty]) -> Self {
        OrgSpec {
            name: name.into(),
            level,
            region: region.into(),
            specialties: specialties.to_vec(),
        }
    }
}

pub struct LocalFederation {
    root: Issuer,
    regions: BTreeMap<RegionCode, Issuer>,
    dir: PathBuf,
    serial: u64,
    now: Timestamp,
}

/// Seeds for one organization's keys, kept so a test can restart a node
/// with the same identity.
#[derive(Clone)]
pub struct OrgKeys {
    identity: [u8; 32],
    sealing: [u8; 32],
}

impl OrgKeys {
    pub fn generate() -> Self {
        Self {
            identity: random_bytes(),
            sealing: random_bytes(),
        }
    }

    pub fn org_id(&self) -> OrgId {
        IdentityKey::from_seed(self.identity).org_id()
    }

    /// The organization's identity key, for signing as it (tests, tools).
    pub fn identity(&self) -> IdentityKey {
        IdentityKey::from_seed(self.identity)
    }

    /// Both keys, as a node's key files hold them: for running a member as
    /// a `konsilium run` process.
    pub fn node_keys(&self) -> konsilium_keyfile::NodeKeys {
        konsilium_keyfile::NodeKeys {
            identity: IdentityKey::from_seed(self.identity),
            sealing: SealingKey::from_seed(self.sealing),
            retired: Vec::new(),
        }
    }
}

/// A certified organization, ready to become a node (again and again).
#[derive(Clone)]
pub struct Member {
    pub spec: OrgSpec,
    pub keys: OrgKeys,
    pub chain: CertChain,
    pub data_dir: PathBuf,
    pub roots: Vec<konsilium_protocol::identity::AuthorityKey>,
}

impl Member {
    pub fn org_id(&self) -> OrgId {
        self.keys.org_id()
    }

    /// A node setup listening on an ephemeral loopback port.
    pub fn setup(&self, bootstrap: Vec<Multiaddr>, relay_via: Vec<OrgId>) -> NodeSetup {
        NodeSetup {
            identity: IdentityKey::from_seed(self.keys.identity),
            sealing: SealingKey::from_seed(self.keys.sealing),
            retired: Vec::new(),
            chain: self.chain.clone(),
            roots: self.roots.clone(),
            revocations: Vec::new(),
            profile: profile(&self.spec),
            data_dir: self.data_dir.clone(),
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr")],
            bootstrap,
            external: Vec::new(),
            relay_via,
            scope: crate::node::DirectoryScope::Federation,
            openness: Default::default(),
            gossip_heartbeat: Duration::from_millis(200),
            clock: std::sync::Arc::new(crate::node::SystemClock),
            anti_entropy_every: Duration::from_secs(2),
            keep_delivered: crate::config::DEFAULT_KEEP_DELIVERED,
            custody: Default::default(),
            video: None,
            stun_listen: None,
            max_resident: crate::node::MAX_RESIDENT_BYTES,
            keep: Default::default(),
        }
    }
}

fn profile(spec: &OrgSpec) -> Profile {
    Profile {
        calendar: WorkingCalendar::weekdays(
            TimeZoneName::new("Europe/Moscow").expect("bundled zone"),
        ),
        deadlines: Deadlines::default(),
        services: spec
            .specialties
            .iter()
            .map(|&specialty| Service {
                specialty,
                urgencies: Urgency::ALL.into(),
                deadlines: None,
            })
            .collect(),
        consultants: vec![Consultant {
            id: ConsultantId(1),
            name: format!("Duty consultant, {}", spec.name),
            specialties: spec.specialties.iter().copied().collect(),
            languages: [Language::new("ru").expect("valid tag")].into(),
        }],
    }
}

impl LocalFederation {
    /// A fresh root authority; data dirs go under `dir`.
    pub fn new(dir: &Path, now: Timestamp) -> Self {
        Self {
            root: Issuer::root(IdentityKey::from_seed(random_bytes())),
            regions: BTreeMap::new(),
            dir: dir.to_owned(),
            serial: 0,
            now,
        }
    }

    pub fn root(&self) -> &Issuer {
        &self.root
    }

    fn next_serial(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    fn validity(&self) -> Validity {
        Validity {
            from: self.now.saturating_sub(Duration::from_secs(3600)),
            until: self.now.saturating_add(YEAR),
        }
    }

    /// The regional authority for `region`, created on first use (may certify up to level 2).
    pub fn region(&mut self, region: &RegionCode) -> &Issuer {
        if !self.regions.contains_key(region) {
            let serial = self.next_serial();
            let key = IdentityKey::from_seed(random_bytes());
            let cert = self
                .root
                .certify_authority(AuthorityGrant {
                    authority: key.authority_key(),
                    name: format!("{region} regional telemedicine authority"),
                    scope: AuthorityScope {
                        region: region.clone(),
                        max_level: OrgLevel::Regional,
                    },
                    validity: self.validity(),
                    serial,
                })
                .expect("root certifies a regional authority");
            self.regions.insert(
                region.clone(),
                Issuer::regional(key, cert).expect("key matches its certificate"),
            );
        }
        &self.regions[region]
    }

    /// Certifies an organization: federal centers by the root, others by their region.
    pub fn enrol(&mut self, spec: OrgSpec) -> Member {
        let keys = OrgKeys::generate();
        self.enrol_with(spec, keys)
    }

    pub fn enrol_with(&mut self, spec: OrgSpec, keys: OrgKeys) -> Member {
        let region = RegionCode::new(spec.region.clone()).expect("valid region code");
        let serial = self.next_serial();
        let grant = OrgGrant {
            org: keys.org_id(),
            name: spec.name.clone(),
            level: spec.level,
            region: region.clone(),
            sealing_key: SealingKey::from_seed(keys.sealing).public(),
            validity: self.validity(),
            serial,
        };
        let chain = if spec.level == OrgLevel::Federal {
            self.root.certify_org(grant)
        } else {
            self.region(&region).certify_org(grant)
        }
        .expect("grant within the authority's scope");
        let data_dir = self
            .dir
            .join(format!("org-{}", &keys.org_id().to_string()[..16]));
        Member {
            spec,
            keys,
            chain,
            data_dir,
            roots: vec![self.root.key()],
        }
    }

    /// The serial of a member's certificate, for revocation.
    pub fn serial_of(member: &Member) -> u64 {
        member
            .chain
            .org
            .decode_unverified()
            .map(|c| c.serial)
            .unwrap_or_default()
    }
}

/// Waiting for a running federation to reach a state. The demo, the tests
/// and the benchmarks all wait for the same things; bounded by `patience`
/// so a stuck network fails with a message instead of hanging.
pub mod wait {
    use crate::node::{NodeError, NodeEvent, NodeHandle};
    use konsilium_protocol::workflow::{ConsultationId, Status};
    use libp2p::Multiaddr;
    use libp2p::multiaddr::Protocol;
    use std::collections::BTreeSet;
    use std::time::Duration;
    use tokio::sync::broadcast;

    const POLL: Duration = Duration::from_millis(20);

    fn timeout(what: impl Into<String>) -> NodeError {
        NodeError::Timeout(what.into())
    }

    /// The node's first listen address, with its `/p2p/` peer id: what others bootstrap from.
    /// The TCP port of an address, for tests that reuse or rename it.
    pub fn tcp_port(addr: &Multiaddr) -> Option<u16> {
        addr.iter().find_map(|p| match p {
            libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
    }

    pub async fn listen_addr(
        node: &NodeHandle,
        patience: Duration,
    ) -> Result<Multiaddr, NodeError> {
        tokio::time::timeout(patience, async {
            loop {
                if let Some(a) = node.status().await?.listen.first() {
                    return Ok(a.clone().with(Protocol::P2p(node.peer_id())));
                }
                tokio::time::sleep(POLL).await;
            }
        })
        .await
        .map_err(|_| timeout(format!("{} to listen", node.org())))?
    }

    /// Until every node holds `size` records with one digest; returns the digest.
    pub async fn converged(
        nodes: &[&NodeHandle],
        size: usize,
        patience: Duration,
    ) -> Result<[u8; 32], NodeError> {
        tokio::time::timeout(patience, async {
            loop {
                let mut digests = BTreeSet::new();
                let mut sizes = BTreeSet::new();
                for n in nodes {
                    let s = n.status().await?;
                    digests.insert(s.directory_digest);
                    sizes.insert(s.directory_size);
                }
                if digests.len() == 1 && sizes == BTreeSet::from([size]) {
                    return Ok(digests.into_iter().next().unwrap_or_default());
                }
                tokio::time::sleep(POLL).await;
            }
        })
        .await
        .map_err(|_| timeout(format!("directories to converge to {size} records")))?
    }

    /// Until the node whose events `rx` carries has the consultation in
    /// status `want`.
    pub async fn status(
        rx: &mut broadcast::Receiver<NodeEvent>,
        id: ConsultationId,
        want: Status,
        patience: Duration,
    ) -> Result<(), NodeError> {
        let what = format!("the consultation to become {want}");
        event(rx, &what, patience, |e| {
            let reached = |got: &ConsultationId, status: &Status| *got == id && *status == want;
            matches!(e, NodeEvent::ConsultationUpdated { id: got, status } if reached(got, status))
                .then_some(())
        })
        .await
    }

    /// The first event `pick` accepts.
    pub async fn event<T>(
        rx: &mut broadcast::Receiver<NodeEvent>,
        what: &str,
        patience: Duration,
        mut pick: impl FnMut(&NodeEvent) -> Option<T>,
    ) -> Result<T, NodeError> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Err(_) => return Err(timeout(what)),
                Ok(Ok(e)) => {
                    if let Some(t) = pick(&e) {
                        return Ok(t);
                    }
                }
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(_)) => return Err(NodeError::Stopped),
            }
        }
    }
}
