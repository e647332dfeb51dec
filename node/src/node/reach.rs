//! Reaching across NATs: reachability probes, relay reservations, hole
//! punching, and how each connection was made. The decisions (when to
//! reserve, on which relay, when to give a reservation up) are the
//! `konsilium_protocol::reach` machine's, each connection's rung and which
//! relayed circuits close are the `konsilium_protocol::ladder` machine's;
//! this carries them out on the swarm and reports what happened back.

use super::*;
use konsilium_protocol::ladder::Link;
use konsilium_protocol::reach::Output as ReachOutput;
use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{autonat, dcutr, relay};

/// The relay service's protocol, as identify lists it.
const HOP_PROTOCOL: &str = "/libp2p/circuit/relay/0.2.0/hop";

pub(super) fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| p == Protocol::P2pCircuit)
}

impl Node {
    /// A connection opened: the ladder names its rung, and the first
    /// hole-punched one after a relayed one times the upgrade.
    pub(super) fn on_link_up(&mut self, id: ConnectionId, peer: PeerId, relayed: bool) {
        let punched = (self.peer_info.get(&peer)).is_some_and(|i| i.upgraded_after.is_some());
        let link = (self.ladder).handle_up(self.now(), id, peer, relayed, punched);
        let info = self.peer_info.entry(peer).or_default();
        match link {
            Link::Relayed => {
                info.relayed_since
                    .get_or_insert_with(std::time::Instant::now);
            }
            Link::HolePunched if info.upgraded_after.is_none() => {
                let since = info.relayed_since.unwrap_or_else(std::time::Instant::now);
                info.upgraded_after = Some(since.elapsed());
            }
            Link::HolePunched | Link::Direct => {}
        }
    }

    pub(super) fn on_link_down(&mut self, id: ConnectionId) {
        self.ladder.handle_down(&id);
    }

    /// Closes the relayed circuits a direct connection made redundant.
    pub(super) fn on_ladder_due(&mut self, now: Timestamp) {
        self.ladder.handle_timeout(now);
        while let Some(id) = self.ladder.poll_close() {
            tracing::debug!(connection = %id, "closing a relayed circuit beside a direct connection");
            self.swarm.close_connection(id);
        }
    }

    /// The best way a peer is connected now, if it is.
    pub(super) fn link(&self, peer: &PeerId) -> Option<Link> {
        self.ladder.link(peer)
    }

    /// A certified peer that offers relay service can hold a reservation:
    /// once both sides admitted each other and identify said so.
    pub(super) fn offer_relay(&mut self, peer: PeerId) {
        let offers = (self.peer_info.get(&peer))
            .is_some_and(|i| i.protocols.iter().any(|p| p == HOP_PROTOCOL));
        if offers && self.admission.is_ready(&peer) {
            self.reach.handle_relay_available(self.now(), peer);
            self.drive_reach();
        }
    }

    pub(super) fn reach_snapshot(&self) -> (konsilium_protocol::reach::Reachability, usize) {
        (self.reach.reachability(), self.reach.confirmed().count())
    }

    pub(super) fn relay_gone(&mut self, peer: &PeerId) {
        self.reach.handle_relay_lost(self.now(), peer);
        self.drive_reach();
    }

    pub(super) fn drive_reach(&mut self) {
        if self.reach_snapshot() != self.published_reach {
            self.record_dirty = true;
        }
        while let Some(output) = self.reach.poll_output() {
            match output {
                ReachOutput::Reserve(relay) => self.reserve(relay),
                ReachOutput::Release(relay) => {
                    let ids: Vec<ListenerId> = (self.relay_listeners.iter())
                        .filter(|(_, r)| **r == relay)
                        .map(|(id, _)| *id)
                        .collect();
                    for id in ids {
                        self.swarm.remove_listener(id);
                    }
                }
            }
        }
    }

    /// Listening on a relay's circuit address asks it for a reservation,
    /// over the connection we already have to it.
    fn reserve(&mut self, relay: PeerId) {
        let address = (self.peer_info.get(&relay))
            .and_then(|i| i.addresses.iter().find(|a| !is_relayed(a)).cloned());
        let Some(address) = address else {
            let now = self.now();
            (self.reach).handle_reservation_failed(now, &relay, "no direct address".into());
            return;
        };
        let circuit = strip_peer(address)
            .with(Protocol::P2p(relay))
            .with(Protocol::P2pCircuit);
        match self.swarm.listen_on(circuit.clone()) {
            Ok(id) => {
                tracing::info!(%relay, "asking for a relay reservation at {circuit}");
                self.relay_listeners.insert(id, relay);
            }
            Err(e) => {
                let now = self.now();
                (self.reach).handle_reservation_failed(now, &relay, e.to_string());
            }
        }
    }

    /// A listener closed: for a relay's, its reservation ended or was refused.
    pub(super) fn on_listener_closed(
        &mut self,
        id: ListenerId,
        addresses: &[Multiaddr],
        reason: Result<(), String>,
    ) {
        self.forget_listen_addrs(addresses);
        if let Some(relay) = self.relay_listeners.remove(&id) {
            let error = reason.err().unwrap_or_else(|| "reservation ended".into());
            tracing::info!(%relay, "relay reservation ended: {error}");
            let now = self.now();
            self.reach.handle_reservation_failed(now, &relay, error);
            self.drive_reach();
        }
    }

    pub(super) fn forget_listen_addrs(&mut self, addresses: &[Multiaddr]) {
        let before = self.listen_addrs.len();
        self.listen_addrs.retain(|a| !addresses.contains(a));
        if self.listen_addrs.len() != before {
            self.record_dirty = true;
        }
    }

    pub(super) fn on_external_expired(&mut self, address: &Multiaddr) {
        if !is_relayed(address) {
            self.reach.handle_address_expired(self.now(), address);
            self.drive_reach();
        }
    }

    pub(super) fn on_relay_client(&mut self, event: relay::client::Event) {
        if let relay::client::Event::ReservationReqAccepted {
            relay_peer_id,
            renewal: false,
            ..
        } = event
        {
            tracing::info!(relay = %relay_peer_id, "relay reservation accepted");
            self.reach.handle_reserved(self.now(), &relay_peer_id);
            self.drive_reach();
        }
    }

    pub(super) fn on_hole_punch(&mut self, event: dcutr::Event) {
        let result = match event.result {
            Ok(id) => {
                self.ladder.handle_hole_punched(&id);
                let info = self.peer_info.entry(event.remote_peer_id).or_default();
                if info.upgraded_after.is_none() {
                    let since = info.relayed_since.unwrap_or_else(std::time::Instant::now);
                    info.upgraded_after = Some(since.elapsed());
                }
                tracing::info!(peer = %event.remote_peer_id, "hole punched: direct connection");
                "success"
            }
            Err(e) => {
                tracing::info!(peer = %event.remote_peer_id, "hole punching failed: {e}");
                "failure"
            }
        };
        self.metrics.hole_punches.with_label_values(&[result]).inc();
    }

    pub(super) fn on_probe(&mut self, event: autonat::v2::client::Event) {
        // Our relayed addresses are candidates too, and are dialled back
        // through the relay: that says nothing about our own.
        let own =
            (event.tested_addr.iter()).any(|p| matches!(p, Protocol::Ip4(_) | Protocol::Ip6(_)));
        if is_relayed(&event.tested_addr) || !own {
            return;
        }
        let reachable = event.result.is_ok();
        tracing::debug!(
            server = %event.server,
            "reachability probe of {}: {}",
            event.tested_addr,
            if reachable { "dialled back" } else { "unreachable" }
        );
        let now = self.now();
        self.reach.handle_probe(now, event.tested_addr, reachable);
        self.drive_reach();
    }

    pub(super) fn on_relay_served(&mut self, event: relay::Event) {
        use relay::Event as E;
        let what = match event {
            E::ReservationReqAccepted { renewed: false, .. } => "reservation_accepted",
            E::ReservationReqDenied { .. } => "reservation_denied",
            E::CircuitReqAccepted { .. } => "circuit_accepted",
            E::CircuitReqDenied { .. } => "circuit_denied",
            _ => return,
        };
        self.metrics.relay_served.with_label_values(&[what]).inc();
    }

    /// The reservations for `konsilium status`.
    pub(super) fn reservation_reports(&self) -> Vec<crate::telemetry::report::ReservationReport> {
        use konsilium_protocol::reach::Slot;
        let now = self.now();
        (self.reach.relays())
            .filter(|(_, slot)| **slot != Slot::Available)
            .map(|(relay, slot)| {
                let (state, detail) = match slot {
                    Slot::Available => unreachable!("filtered out"),
                    Slot::Requested { since } => {
                        ("requested", format!("{} s", now.since(*since).as_secs()))
                    }
                    Slot::Active { since } => {
                        ("active", format!("since {} s", now.since(*since).as_secs()))
                    }
                    Slot::Backoff {
                        until,
                        failures,
                        error,
                    } => (
                        "waiting",
                        format!(
                            "{failures} failed, next in {} s: {error}",
                            until.since(now).as_secs()
                        ),
                    ),
                };
                crate::telemetry::report::ReservationReport {
                    relay: OrgId::from_peer_id(relay)
                        .map(|o| o.to_string())
                        .unwrap_or_else(|_| relay.to_string()),
                    state: state.into(),
                    detail,
                    addresses: (self.listen_addrs.iter())
                        .filter(|a| is_relayed(a) && a.iter().any(|p| p == Protocol::P2p(*relay)))
                        .map(|a| a.to_string())
                        .collect(),
                }
            })
            .collect()
    }

    pub(super) fn set_reach_metrics(&self) {
        let m = &self.metrics;
        let now = self.reach.reachability();
        for state in [
            konsilium_protocol::reach::Reachability::Unknown,
            konsilium_protocol::reach::Reachability::Public,
            konsilium_protocol::reach::Reachability::Private,
        ] {
            m.reachability
                .with_label_values(&[state.as_str()])
                .set(i64::from(state == now));
        }
        let active = (self.reach.relays())
            .filter(|(_, s)| matches!(s, konsilium_protocol::reach::Slot::Active { .. }))
            .count();
        m.relay_reservations.set(active as i64);
        for link in Link::ALL {
            let n = self.ladder.best().filter(|(_, l)| *l == link).count();
            m.peer_links
                .with_label_values(&[link.as_str()])
                .set(n as i64);
        }
    }
}

/// An address without its trailing `/p2p/<peer>`, so a relay's own id can
/// be appended exactly once.
fn strip_peer(mut addr: Multiaddr) -> Multiaddr {
    if matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
        addr.pop();
    }
    addr
}
