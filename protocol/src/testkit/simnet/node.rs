//! What a machine (or a composition of machines) offers the simulated
//! network: the node's shape, with requests, answers, timeouts and Hellos.

use super::NodeId;
use crate::identity::OrgId;
use crate::rpc::{Hello, HelloAnswer, Request, Response};
use crate::time::Timestamp;

/// A request a node wants sent. `token` is the node's own, echoed back with
/// the answer or the failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: NodeId,
    pub token: u64,
    pub request: Request,
}

/// What a machine (or a composition of machines) must offer to run here.
/// The shape is the node's: requests answered synchronously, answers and
/// failures correlated by token, woken at `poll_timeout`.
///
/// Admission is the node's second protocol: a node that runs it sends
/// Hellos (`poll_hello`) when a connection comes up and cuts peers it
/// refuses (`poll_cut`); one that does not treats a connection as admitted.
pub trait SimNode {
    /// The organization this node's connections authenticate as, if any.
    fn connection_key(&self) -> Option<OrgId> {
        None
    }
    /// A connection to `peer` is up; `key` is the peer's connection key.
    fn handle_peer_up(&mut self, _now: Timestamp, _peer: NodeId, _key: Option<OrgId>) {}
    fn handle_peer_down(&mut self, _now: Timestamp, _peer: NodeId) {}
    fn handle_request(&mut self, now: Timestamp, from: NodeId, request: Request) -> Response;
    fn handle_response(&mut self, now: Timestamp, token: u64, response: Response);
    fn handle_failure(&mut self, now: Timestamp, token: u64);
    fn poll_transmit(&mut self, now: Timestamp) -> Option<Transmit>;
    fn poll_timeout(&self) -> Option<Timestamp>;
    fn handle_timeout(&mut self, now: Timestamp);
    fn poll_hello(&mut self, _now: Timestamp) -> Option<(NodeId, Hello)> {
        None
    }
    fn handle_hello(&mut self, _now: Timestamp, _from: NodeId, _hello: Hello) -> HelloAnswer {
        HelloAnswer::Refused("this node does not run admission".into())
    }
    fn handle_hello_answer(&mut self, _now: Timestamp, _from: NodeId, _answer: HelloAnswer) {}
    fn handle_hello_failed(&mut self, _now: Timestamp, _to: NodeId) {}
    /// A peer this node refused: the network closes their connection.
    fn poll_cut(&mut self) -> Option<NodeId> {
        None
    }
    /// A peer this node wants a connection to; the network connects them
    /// after one link latency, or reports the dial failed.
    fn poll_dial(&mut self) -> Option<NodeId> {
        None
    }
    fn handle_dial_failed(&mut self, _now: Timestamp, _peer: NodeId) {}
}
