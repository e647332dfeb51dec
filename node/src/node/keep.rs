//! Letting idle connections go: the `konsilium_protocol::keep` machine
//! decides which; this tells it what each connection is doing and what must
//! stay, and closes what it names.

use super::*;
use libp2p::multiaddr::Protocol;

/// The relay a circuit address goes through: `.../p2p/<relay>/p2p-circuit/...`.
fn relay_of(addr: &Multiaddr) -> Option<PeerId> {
    let mut relay = None;
    for protocol in addr.iter() {
        match protocol {
            Protocol::P2p(peer) => relay = Some(peer),
            Protocol::P2pCircuit => return relay,
            _ => {}
        }
    }
    None
}

impl Node {
    pub(super) fn keep_connected(&mut self, peer: PeerId, dialled: bool) {
        self.keep.handle_connected(self.now(), peer, dialled);
    }

    pub(super) fn keep_disconnected(&mut self, peer: &PeerId, dialled: bool) {
        self.keep.handle_disconnected(peer, dialled);
    }

    pub(super) fn keep_used(&mut self, peer: &PeerId) {
        self.keep.handle_used(self.now(), peer);
    }

    /// Peers whose connections must stay whatever their use: the gossip
    /// mesh, bootstrap peers, relays we hold reservations or circuits on,
    /// and the sites of running video sessions (their signalling comes
    /// rarely but must not wait for a new connection and Hello).
    fn must_stay(&self) -> HashSet<PeerId> {
        let behaviour = self.swarm.behaviour();
        let mut stay: HashSet<PeerId> = behaviour.gossipsub.all_mesh_peers().copied().collect();
        stay.extend(self.bootstrap.iter().filter_map(Self::bootstrap_peer));
        stay.extend(self.relay_listeners.values().copied());
        stay.extend(self.reach.relays().map(|(relay, _)| *relay));
        for (peer, link) in self.ladder.best() {
            if link == konsilium_protocol::ladder::Link::Relayed
                && let Some(info) = self.peer_info.get(peer)
            {
                stay.extend(info.addresses.iter().filter_map(relay_of));
            }
        }
        if let Some(media) = &self.media {
            stay.extend(media.links().iter().map(|link| link.org.to_peer_id()));
        }
        stay
    }

    pub(super) fn on_keep_due(&mut self, now: Timestamp) {
        let stay = self.must_stay();
        self.keep.handle_timeout(now, |peer| stay.contains(peer));
        while let Some(peer) = self.keep.poll_output() {
            tracing::debug!(%peer, "closing an idle connection");
            if self.swarm.disconnect_peer_id(peer).is_ok() {
                self.metrics.idle_closed.inc();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_of_a_circuit_address_is_the_peer_before_the_circuit() {
        let relay = PeerId::random();
        let target = PeerId::random();
        let circuit: Multiaddr =
            format!("/ip4/127.0.0.1/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{target}")
                .parse()
                .unwrap();
        assert_eq!(relay_of(&circuit), Some(relay));
        let direct: Multiaddr = format!("/ip4/127.0.0.1/tcp/4001/p2p/{target}")
            .parse()
            .unwrap();
        assert_eq!(relay_of(&direct), None);
    }
}
