//! STUN Binding, the one protocol a node answers for anyone: a bootstrap
//! node's STUN service takes datagrams from the whole Internet, and the
//! media plane's port tells its own server's answers from everything else
//! that arrives there.

use konsilium_video::stun::{self, BindingRequest};
use std::net::SocketAddr;

/// The largest answer the service sends: a header (20 bytes), the asker's
/// address (XOR-MAPPED-ADDRESS, 24 bytes for IPv6) and the server's name
/// (SOFTWARE, 16 bytes). Whatever comes in, what goes out is no larger:
/// a spoofed request reflects at most three times its smallest size.
const LARGEST_ANSWER: usize = 60;

/// A datagram as the STUN service and the media plane take it in: answered
/// only when it is a Binding request, with a bounded answer that is itself
/// never answered (two servers cannot be set answering each other), and
/// never taken for the answer to a request of ours.
pub fn stun_datagram(data: &[u8]) -> bool {
    let askers: [SocketAddr; 2] = [
        "198.51.100.7:40123".parse().expect("an address"),
        "[2001:db8::7]:443".parse().expect("an address"),
    ];
    let mut answered = false;
    for asker in askers {
        let Some(reply) = stun::answer(data, asker) else {
            continue;
        };
        answered = true;
        assert!(stun::is_stun(data), "only STUN is answered");
        assert!(
            reply.len() <= LARGEST_ANSWER,
            "an answer of {} bytes",
            reply.len()
        );
        assert!(stun::is_stun(&reply), "the answer is STUN");
        assert_eq!(stun::answer(&reply, asker), None, "an answer is answered");
    }
    // A request of ours has a fresh random transaction id: nothing sent to
    // the plane's port can be taken for its answer without knowing it.
    assert_eq!(BindingRequest::new().answered_by(data), None);
    answered
}

/// A Binding request as a client sends it (RFC 8489: type, length, magic
/// cookie, transaction id), with a fixed transaction id so the seed is the
/// same on every run, and optionally a SOFTWARE attribute naming `client`.
pub(super) fn binding_request(client: Option<&str>) -> Vec<u8> {
    let attributes = client.map_or_else(Vec::new, |name| {
        let mut value = name.as_bytes().to_vec();
        let length = u16::try_from(value.len()).expect("a short name");
        value.resize(value.len().next_multiple_of(4), 0);
        [&0x8022u16.to_be_bytes()[..], &length.to_be_bytes(), &value].concat()
    });
    let length = u16::try_from(attributes.len()).expect("short attributes");
    [
        &0x0001u16.to_be_bytes()[..],
        &length.to_be_bytes(),
        &[0x21, 0x12, 0xa4, 0x42],
        b"konsilium-01",
        &attributes,
    ]
    .concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_binding_request_is_answered() {
        let request = binding_request(Some("browser"));
        assert!(stun_datagram(&request));
        let asker = "198.51.100.7:40123".parse().expect("an address");
        let reply = stun::answer(&request, asker).expect("answered");
        assert!(!stun_datagram(&reply), "an answer");
        assert!(!stun_datagram(b"\x16\xfe\xfd\0\0"), "DTLS");
        let mut indication = request.clone();
        indication[1] = 0x11;
        assert!(!stun_datagram(&indication), "a Binding indication");
        let mut cut = request;
        cut.truncate(cut.len() - 4);
        assert!(!stun_datagram(&cut), "shorter than its length field says");
    }
}
