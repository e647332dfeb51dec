//! Plain STUN (RFC 8489) Binding: how a site behind a NAT learns the
//! address its NAT maps it to (a server-reflexive candidate), and the
//! server side a bootstrap node runs. No credentials: a Binding answer
//! tells the asker only its own address. The message codec is `stun-rs`;
//! str0m's own STUN is ICE's, which insists on integrity and usernames.

use std::net::SocketAddr;
use stun_rs::attributes::stun::{Software, XorMappedAddress};
use stun_rs::methods::BINDING;
use stun_rs::{
    MessageClass, MessageDecoderBuilder, MessageEncoderBuilder, StunMessage, StunMessageBuilder,
    TransactionId,
};

/// Large enough for a Binding request or answer with the attributes used here.
const MAX_MESSAGE: usize = 128;

/// A Binding request waiting for its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingRequest {
    id: TransactionId,
    pub bytes: Vec<u8>,
}

impl BindingRequest {
    pub fn new() -> Self {
        let message = StunMessageBuilder::new(BINDING, MessageClass::Request).build();
        Self {
            id: *message.transaction_id(),
            bytes: encode(&message),
        }
    }

    /// The mapped address in `datagram` if it answers this request.
    pub fn answered_by(&self, datagram: &[u8]) -> Option<SocketAddr> {
        let message = decode(datagram)?;
        if message.method() != BINDING
            || message.class() != MessageClass::SuccessResponse
            || *message.transaction_id() != self.id
        {
            return None;
        }
        let attribute = message.get::<XorMappedAddress>()?;
        Some(*attribute.as_xor_mapped_address().ok()?.socket_address())
    }
}

impl Default for BindingRequest {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether a datagram looks like STUN (RFC 8489's first two bits and magic
/// cookie), to tell it from DTLS and RTP on a shared socket.
pub fn is_stun(datagram: &[u8]) -> bool {
    datagram.len() >= 20 && datagram[0] < 4 && datagram[4..8] == [0x21, 0x12, 0xa4, 0x42]
}

/// A server's answer to a Binding request from `source`: the address it
/// came from. Anything else gets no answer, and an answer is at most 60
/// bytes whatever came in (the header, an IPv6 address, the server's
/// name): a request with a forged source reflects at most three times its
/// own 20 bytes at the victim, as any STUN server's would.
pub fn answer(datagram: &[u8], source: SocketAddr) -> Option<Vec<u8>> {
    let request = decode(datagram)?;
    if request.method() != BINDING || request.class() != MessageClass::Request {
        return None;
    }
    let software = Software::new("konsilium").ok()?;
    let answer = StunMessageBuilder::new(BINDING, MessageClass::SuccessResponse)
        .with_transaction_id(*request.transaction_id())
        .with_attribute(XorMappedAddress::from(source))
        .with_attribute(software)
        .build();
    Some(encode(&answer))
}

fn decode(datagram: &[u8]) -> Option<StunMessage> {
    if !is_stun(datagram) {
        return None;
    }
    let decoder = MessageDecoderBuilder::default().build();
    // One message per datagram, nothing after it.
    match decoder.decode(datagram) {
        Ok((message, size)) if size == datagram.len() => Some(message),
        _ => None,
    }
}

fn encode(message: &StunMessage) -> Vec<u8> {
    let mut buf = [0u8; MAX_MESSAGE];
    let encoder = MessageEncoderBuilder::default().build();
    // The messages built here always fit: a header and two short attributes.
    let n = encoder.encode(&mut buf, message).unwrap_or(0);
    buf[..n].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binding_answer_carries_the_askers_address_and_only_its_request_takes_it() {
        let asker: SocketAddr = "198.51.100.7:40123".parse().unwrap();
        let request = BindingRequest::new();
        assert!(is_stun(&request.bytes));
        let reply = answer(&request.bytes, asker).expect("a Binding request is answered");
        assert_eq!(request.answered_by(&reply), Some(asker));
        assert_eq!(
            BindingRequest::new().answered_by(&reply),
            None,
            "another transaction"
        );
        let v6: SocketAddr = "[2001:db8::7]:443".parse().unwrap();
        let reply = answer(&request.bytes, v6).unwrap();
        assert_eq!(request.answered_by(&reply), Some(v6));
    }

    #[test]
    fn what_is_not_a_binding_request_gets_no_answer() {
        let asker: SocketAddr = "198.51.100.7:40123".parse().unwrap();
        let request = BindingRequest::new();
        let reply = answer(&request.bytes, asker).unwrap();
        assert_eq!(answer(&reply, asker), None, "an answer is not answered");
        assert_eq!(answer(b"GET / HTTP/1.1\r\n\r\n", asker), None);
        let mut truncated = request.bytes.clone();
        truncated.truncate(19);
        assert_eq!(answer(&truncated, asker), None);
        let mut long = request.bytes.clone();
        long.extend_from_slice(&[0; 64]);
        assert_eq!(answer(&long, asker), None, "its length field disagrees");
        assert_eq!(request.answered_by(b"\x16\xfe\xfd"), None, "DTLS");
    }
}
