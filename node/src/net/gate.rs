//! The admission gate: a protocol that stays closed on a connection until the
//! node has verified the peer's certificate chain.
//!
//! libp2p negotiates streams before any behaviour sees who asks, so a
//! protocol that is merely *refused* after reading a request has already
//! paid for reading it. Wrapped in a [`Gate`], a protocol is not even offered
//! to a peer that has not been admitted: its streams fail at negotiation, for
//! the cost of a multistream-select exchange. Outbound streams are not gated;
//! the node only opens them towards admitted peers.

use either::Either;
use futures::future;
use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::DeniedUpgrade;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::swarm::handler::{
    ConnectionEvent, FullyNegotiatedInbound, ListenUpgradeError, SendWrapper,
};
use libp2p::swarm::{
    ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
    NetworkBehaviour, SubstreamProtocol, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

/// Wraps a behaviour so that its inbound streams are accepted only from
/// admitted peers.
pub struct Gate<B> {
    inner: B,
    /// One flag per connected peer, shared with that peer's connection
    /// handlers: admission opens every connection of the peer at once.
    open: HashMap<PeerId, Arc<AtomicBool>>,
}

impl<B> Gate<B> {
    pub fn new(inner: B) -> Self {
        Self {
            inner,
            open: HashMap::new(),
        }
    }

    /// Opens the protocol to a peer whose certificate chain verified.
    pub fn admit(&mut self, peer: PeerId) {
        self.flag(peer).store(true, Ordering::Release);
    }

    /// Closes the protocol to a peer again (refused or revoked).
    pub fn close(&mut self, peer: PeerId) {
        if let Some(flag) = self.open.get(&peer) {
            flag.store(false, Ordering::Release);
        }
    }

    pub fn is_open(&self, peer: &PeerId) -> bool {
        self.open
            .get(peer)
            .is_some_and(|f| f.load(Ordering::Acquire))
    }

    fn flag(&mut self, peer: PeerId) -> Arc<AtomicBool> {
        self.open.entry(peer).or_default().clone()
    }
}

impl<B> std::ops::Deref for Gate<B> {
    type Target = B;
    fn deref(&self) -> &B {
        &self.inner
    }
}

impl<B> std::ops::DerefMut for Gate<B> {
    fn deref_mut(&mut self) -> &mut B {
        &mut self.inner
    }
}

impl<B: NetworkBehaviour> NetworkBehaviour for Gate<B> {
    type ConnectionHandler = GatedHandler<THandler<B>>;
    type ToSwarm = B::ToSwarm;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(connection_id, local_addr, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let inner = self.inner.handle_established_inbound_connection(
            connection_id,
            peer,
            local_addr,
            remote_addr,
        )?;
        Ok(GatedHandler {
            inner,
            open: self.flag(peer),
        })
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner.handle_pending_outbound_connection(
            connection_id,
            maybe_peer,
            addresses,
            effective_role,
        )
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let inner = self.inner.handle_established_outbound_connection(
            connection_id,
            peer,
            addr,
            role_override,
            port_use,
        )?;
        Ok(GatedHandler {
            inner,
            open: self.flag(peer),
        })
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        if let FromSwarm::ConnectionClosed(closed) = &event
            && closed.remaining_established == 0
        {
            self.open.remove(&closed.peer_id);
        }
        self.inner.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inner
            .on_connection_handler_event(peer_id, connection_id, event)
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.inner.poll(cx)
    }
}

/// A connection handler whose inbound protocol is offered only while its
/// peer's gate is open.
pub struct GatedHandler<H> {
    inner: H,
    open: Arc<AtomicBool>,
}

type Inbound<H> =
    Either<SendWrapper<<H as ConnectionHandler>::InboundProtocol>, SendWrapper<DeniedUpgrade>>;

impl<H: ConnectionHandler> ConnectionHandler for GatedHandler<H> {
    type FromBehaviour = H::FromBehaviour;
    type ToBehaviour = H::ToBehaviour;
    type InboundProtocol = Inbound<H>;
    type OutboundProtocol = H::OutboundProtocol;
    type InboundOpenInfo = Either<H::InboundOpenInfo, ()>;
    type OutboundOpenInfo = H::OutboundOpenInfo;

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol, Self::InboundOpenInfo> {
        if self.open.load(Ordering::Acquire) {
            self.inner
                .listen_protocol()
                .map_upgrade(|u| Either::Left(SendWrapper(u)))
                .map_info(Either::Left)
        } else {
            SubstreamProtocol::new(Either::Right(SendWrapper(DeniedUpgrade)), Either::Right(()))
        }
    }

    fn connection_keep_alive(&self) -> bool {
        self.inner.connection_keep_alive()
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<
        ConnectionHandlerEvent<Self::OutboundProtocol, Self::OutboundOpenInfo, Self::ToBehaviour>,
    > {
        self.inner.poll(cx)
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Option<Self::ToBehaviour>> {
        self.inner.poll_close(cx)
    }

    fn on_behaviour_event(&mut self, event: Self::FromBehaviour) {
        self.inner.on_behaviour_event(event)
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<
            Self::InboundProtocol,
            Self::OutboundProtocol,
            Self::InboundOpenInfo,
            Self::OutboundOpenInfo,
        >,
    ) {
        let event = match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound { protocol, info }) => {
                let protocol = match protocol {
                    future::Either::Left(out) => out,
                    future::Either::Right(never) => match never {},
                };
                // A stream negotiated while open carries `Left` info; the
                // denied upgrade never completes, so `Right` cannot occur.
                let Either::Left(info) = info else { return };
                ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound { protocol, info })
            }
            ConnectionEvent::ListenUpgradeError(ListenUpgradeError { info, error }) => {
                let (Either::Left(info), Either::Left(error)) = (info, error) else {
                    // A stream refused by the closed gate: nothing to tell.
                    return;
                };
                ConnectionEvent::ListenUpgradeError(ListenUpgradeError { info, error })
            }
            ConnectionEvent::FullyNegotiatedOutbound(e) => {
                ConnectionEvent::FullyNegotiatedOutbound(e)
            }
            ConnectionEvent::DialUpgradeError(e) => ConnectionEvent::DialUpgradeError(e),
            ConnectionEvent::AddressChange(e) => ConnectionEvent::AddressChange(e),
            ConnectionEvent::LocalProtocolsChange(e) => ConnectionEvent::LocalProtocolsChange(e),
            ConnectionEvent::RemoteProtocolsChange(e) => ConnectionEvent::RemoteProtocolsChange(e),
            // `ConnectionEvent` is non-exhaustive; anything new is of no
            // concern to the gate, but the inner handler cannot be given an
            // event of the wrong type, so it is dropped.
            _ => return,
        };
        self.inner.on_connection_event(event);
    }
}
