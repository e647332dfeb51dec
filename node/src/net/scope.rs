//! Which addresses make sense to whom. A node listening on every interface
//! has a loopback address and often a private one; told to a peer elsewhere
//! they lead nowhere, or worse, to some other node (a dial that reaches the
//! wrong peer fails as a whole, good addresses included).

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Loopback,
    /// RFC 1918, carrier-grade NAT, unique-local and link-local.
    Private,
    /// Global, or a DNS name, or a relayed address.
    Public,
}

fn ip(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

/// The scope of an address; a relayed one is as public as its relay.
pub fn scope(addr: &Multiaddr) -> Scope {
    if addr.iter().any(|p| p == Protocol::P2pCircuit) {
        return Scope::Public;
    }
    match ip(addr) {
        None => Scope::Public,
        Some(ip) if ip.is_loopback() => Scope::Loopback,
        Some(IpAddr::V4(v4)) => {
            let [a, b, ..] = v4.octets();
            let shared = a == 100 && (64..128).contains(&b);
            if v4.is_private() || v4.is_link_local() || shared {
                Scope::Private
            } else {
                Scope::Public
            }
        }
        Some(IpAddr::V6(v6)) => {
            let first = v6.segments()[0];
            if (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80 {
                Scope::Private
            } else {
                Scope::Public
            }
        }
    }
}

/// Whether an address a peer listens on is worth dialling from where we
/// met it: loopback only over loopback, private only over a private (or
/// loopback) network.
pub fn reachable_from(addr: &Multiaddr, met_at: &Multiaddr) -> bool {
    match scope(addr) {
        Scope::Public => true,
        Scope::Private => scope(met_at) <= Scope::Private,
        Scope::Loopback => scope(met_at) == Scope::Loopback,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn scopes() {
        assert_eq!(scope(&a("/ip4/127.0.0.1/tcp/1")), Scope::Loopback);
        assert_eq!(scope(&a("/ip4/10.0.3.2/tcp/1")), Scope::Private);
        assert_eq!(scope(&a("/ip4/100.64.1.1/udp/1/quic-v1")), Scope::Private);
        assert_eq!(scope(&a("/ip6/fd00::1/tcp/1")), Scope::Private);
        assert_eq!(scope(&a("/ip4/198.51.100.7/tcp/1")), Scope::Public);
        assert_eq!(scope(&a("/dns4/telemed.example.org/tcp/1")), Scope::Public);
        assert_eq!(
            scope(&a(
                "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWGmUWZL4pDE44MCmmYpPNLvXu4wWjjEXVGoSkYfpKZLbp/p2p-circuit"
            )),
            Scope::Public
        );
    }

    #[test]
    fn a_peer_met_over_the_internet_is_not_dialled_at_its_loopback_or_lan_address() {
        let public = a("/ip4/198.51.100.7/tcp/7400");
        let lan = a("/ip4/10.0.3.2/tcp/7400");
        let lo = a("/ip4/127.0.0.1/tcp/7400");
        assert!(reachable_from(&public, &public));
        assert!(!reachable_from(&lan, &public));
        assert!(!reachable_from(&lo, &public));
        assert!(reachable_from(&lan, &a("/ip4/10.0.3.9/tcp/5")));
        assert!(!reachable_from(&lo, &lan));
        assert!(reachable_from(&lo, &lo));
        assert!(reachable_from(&lan, &lo), "a test on one machine");
        assert!(reachable_from(&public, &lo));
    }
}
