//! `konsilium probe`: an end-to-end check an operator runs against one
//! organization. It goes the whole way a consultation goes (sealed, carried
//! over whatever rung of the fallback ladder reaches the recipient, opened,
//! receipted) and reports how it went.

use super::*;
use konsilium_protocol::content::PackageBody;

/// A probe nobody received within an hour tells the operator all it can.
const PROBE_LIFETIME: Duration = Duration::from_secs(3600);

impl Node {
    pub(super) fn probe(&mut self, to: OrgId) -> Result<Sent, NodeError> {
        // Addressed, not routed: nothing reads the routing header of a
        // package with a named recipient, but every package carries one.
        let specialty = (self.directory().get(&to))
            .and_then(|e| e.record().services.first().map(|s| s.specialty))
            .unwrap_or(Specialty::GeneralSurgery);
        let routing = seal::RoutingHeader {
            specialty,
            min_level: OrgLevel::District,
            urgency: Urgency::Urgent,
            region: None,
        };
        let plan = self.plan(Target::Org(to), routing, PROBE_LIFETIME)?;
        let body = wire::encode(&PackageBody::Probe {
            sent_at: self.now(),
        })
        .map_err(|e| NodeError::Network(e.to_string()))?;
        self.commit(plan, &body)
    }

    /// How we reach an organization now: a connection's rung of the ladder,
    /// or the relay its packages wait with.
    pub(super) fn link_to(&self, org: OrgId) -> Option<String> {
        if let Some(link) = self.link(&org.to_peer_id()) {
            return Some(link.as_str().to_owned());
        }
        (self.outbox.entries())
            .find(|e| e.package.recipient == org && e.next_hop != org)
            .map(|e| format!("store-and-forward via {}", self.org_name(&e.next_hop)))
    }
}
