//! What a node is for on the network, and what it knows of its own
//! reachability: the `[network]` settings that change which services the
//! node offers other nodes.

use super::bad::{Bad, bad};
use super::file::RawNetwork;
use konsilium_protocol::reach::Reachability;

/// A node is an organization's, or it is a bootstrap node: one of the
/// federation's well-known public nodes that helps the others find and
/// reach each other, and holds no clinical data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NodeRole {
    #[default]
    Organization,
    Bootstrap,
}

impl NodeRole {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Organization => "organization",
            NodeRole::Bootstrap => "bootstrap",
        }
    }
}

/// The `[network]` settings about role and reachability, validated. The
/// default is an organization's node that probes and serves no one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Openness {
    pub role: NodeRole,
    /// What the operator declares instead of probing; `None` probes.
    pub reachability: Option<Reachability>,
    /// Whether this node relays circuits for nodes behind NAT, answers
    /// their reachability probes and their Kademlia lookups. Bootstrap
    /// nodes always do; a regional center with a public address may.
    pub serves_others: bool,
}

pub(super) fn openness(network: &RawNetwork) -> Result<Openness, Bad> {
    let role = match network.role.as_deref().map(str::trim) {
        None | Some("organization") => NodeRole::Organization,
        Some("bootstrap") => NodeRole::Bootstrap,
        Some(other) => {
            return Err(bad(
                "network.role",
                format!("{other:?} is not a role: use \"organization\" or \"bootstrap\""),
            ));
        }
    };
    let reachability = match network.reachability.as_deref().map(str::trim) {
        None | Some("auto") => None,
        Some("public") => Some(Reachability::Public),
        Some("private") => Some(Reachability::Private),
        Some(other) => {
            return Err(bad(
                "network.reachability",
                format!(
                    "{other:?} is not a reachability: use \"auto\" (probe), \"public\" \
                     (others can dial this node's addresses) or \"private\" (behind NAT)"
                ),
            ));
        }
    };
    let serves_others = match (role, network.relay_server) {
        (NodeRole::Bootstrap, Some(false)) => {
            return Err(bad(
                "network.relay_server",
                "a bootstrap node always relays for nodes behind NAT: remove the setting, \
                 or use role = \"organization\"",
            ));
        }
        (NodeRole::Bootstrap, _) => true,
        (NodeRole::Organization, serves) => serves.unwrap_or(false),
    };
    // A bootstrap node is public by definition: its address is in every
    // member's config.
    let reachability = match (role, reachability) {
        (NodeRole::Bootstrap, None) => Some(Reachability::Public),
        (_, declared) => declared,
    };
    if serves_others && reachability == Some(Reachability::Private) {
        return Err(bad(
            "network.reachability",
            "a node behind NAT cannot relay for others: use \"public\" or \"auto\", \
             or set network.relay_server = false",
        ));
    }
    Ok(Openness {
        role,
        reachability,
        serves_others,
    })
}
