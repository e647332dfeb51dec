//! What a link to another site and a clinician's browser seat share: how
//! their `Rtc` is built, the candidates they offer, and str0m's contract
//! of polling after every change until it names its next timeout.

use crate::error::LinkError;
use crate::frame;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::bwe::{Bitrate, BweKind};
use str0m::channel::ChannelId;
use str0m::crypto::dtls::DtlsCert;
use str0m::{Candidate, Event, Input, Output, Rtc};

/// How often str0m reports a connection's statistics.
const STATS_EVERY: Duration = Duration::from_secs(1);
/// Where bandwidth estimation starts: a high-quality camera's worth, so a
/// path is sent the full encoding from the start (`simulcast` lowers it
/// below 1.2 Mbit/s); a path that cannot carry it shows soon in loss and
/// delay, and the estimate falls.
const START_ESTIMATE: Bitrate = Bitrate::kbps(2_500);
/// What estimation probes up to. Forwarded media is sent unpaced
/// (`frame::send_unpaced`), so the estimate only steers which encoding a
/// path gets; with no goal it would learn no more than what is sent, and a
/// path that dipped to the smaller encoding could not show it carries the
/// full one again. Two high-quality cameras' worth (a presenter, or tiles).
const DESIRED: Bitrate = Bitrate::kbps(6_000);
/// Unanswered checks before a path counts as lost. str0m's 9 (libwebrtc's
/// figure) notice a dead path after about 30 s, which a consultation
/// watches as a frozen picture; 6 notice it in about 10 s, so an ICE restart
/// starts sooner, and still lose a working pair under 20 % loss only once
/// in hundreds.
const CHECKS_BEFORE_LOST: usize = 6;
/// What a connection's data channel holds unsent, in str0m's buffer and in
/// its own queue after it: a room's messages go up to 256 KiB (a shared
/// image or ECG), over str0m's own 128 KiB buffer, and a few may be sent
/// at once. Past both, a message is refused (`Ok(false)`), never lost
/// without a word.
const CHANNEL_BUFFER: usize = 512 * 1024;
const CHANNEL_QUEUE: usize = 512 * 1024;

/// A connection built ahead of the link or browser seat that will use
/// it, with a DTLS certificate of its own (whose fingerprint goes into
/// the signed description). Building one costs a millisecond or two of
/// key generation: the certificate's, and the key shares str0m's DTLS
/// makes as it is built. A node keeps a few built ahead, so no setup
/// waits for one.
pub struct Prepared(pub(crate) Rtc);

impl Prepared {
    /// On the caller's clock: the connection's time starts at `now`, and
    /// the link or seat built from it must not go back before it.
    pub fn new(now: Instant) -> Result<Self, LinkError> {
        let provider = str0m::crypto::from_feature_flags();
        let cert = (provider.dtls_provider.generate_certificate()).ok_or(LinkError::Setup(
            "the crypto backend makes no DTLS certificates".into(),
        ))?;
        Ok(Self(build_rtc(now, cert)))
    }
}

/// The addresses this site offers for a link: its interface's, the one
/// its NAT maps it to when a STUN server told it, and a TURN server's
/// relayed address when one granted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddrs {
    pub host: SocketAddr,
    pub reflexive: Option<SocketAddr>,
    pub relayed: Option<Relayed>,
    /// Offer the relayed address alone: no address of the hospital's own
    /// network appears in the description, and all media goes through the
    /// relay.
    pub relay_only: bool,
}

/// A TURN allocation as a link sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relayed {
    /// Where the server relays from: what the other site sends to.
    pub addr: SocketAddr,
    /// The local socket the allocation was made from.
    pub base: SocketAddr,
}

/// A UDP datagram in or out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub contents: Vec<u8>,
}

/// A datagram read once, for a socket several connections share. Which
/// connection it is for is asked of each in turn; read anew for each (a
/// STUN check's attributes parsed every time), a flood of forged checks
/// would cost the plane one parse for every connection it holds.
pub struct Incoming<'a> {
    now: Instant,
    input: Input<'a>,
}

impl<'a> Incoming<'a> {
    /// `None` for what is none of STUN, DTLS, RTP and RTCP: no connection
    /// takes it.
    pub fn read(now: Instant, d: &'a Datagram) -> Option<Self> {
        let protocol = str0m::net::Protocol::Udp;
        let r = str0m::net::Receive::new(protocol, d.source, d.destination, &d.contents).ok()?;
        Some(Self {
            now,
            input: Input::Receive(now, r),
        })
    }
}

pub(crate) fn build_rtc(now: Instant, cert: DtlsCert) -> Rtc {
    let mut config = Rtc::builder()
        .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
        .set_dtls_cert(cert)
        .enable_bwe(Some(START_ESTIMATE))
        .set_stats_interval(Some(STATS_EVERY))
        .set_sctp_max_buffered_amount(CHANNEL_BUFFER);
    config.set_max_stun_retransmits(CHECKS_BEFORE_LOST);
    let mut rtc = frame::codecs(config).build(now);
    rtc.bwe().set_bitrate(Bitrate::ZERO, DESIRED);
    rtc
}

/// A prepared connection, its clock brought to `now`, with this site's
/// candidates. The clock first: str0m's DTLS takes the connection's time
/// when the description is applied and counts its handshake limit from
/// there, so a connection built a minute ago would otherwise time out at
/// once.
pub(crate) fn new_rtc(
    now: Instant,
    local: LocalAddrs,
    prepared: Prepared,
) -> Result<Rtc, LinkError> {
    let mut rtc = prepared.0;
    (rtc.handle_input(Input::Timeout(now))).map_err(|e| LinkError::Setup(e.to_string()))?;
    add_candidates(&mut rtc, local)?;
    Ok(rtc)
}

/// What the path is estimated to carry, from str0m's estimate event.
pub(crate) fn estimate(kind: &BweKind) -> Option<u64> {
    match kind {
        BweKind::Twcc { estimate, .. } | BweKind::Remb { estimate, .. } => Some(estimate.as_u64()),
        _ => None,
    }
}

/// The local candidates `local` names; ones the `Rtc` holds already are
/// not added twice.
pub(crate) fn add_candidates(rtc: &mut Rtc, local: LocalAddrs) -> Result<(), LinkError> {
    let host = local.host;
    let bad = |addr: SocketAddr| move |e| LinkError::Setup(format!("{addr}: {e}"));
    if let Some(relayed) = local.relayed {
        let candidate =
            Candidate::relayed(relayed.addr, relayed.base, "udp").map_err(bad(relayed.addr))?;
        rtc.add_local_candidate(candidate);
    } else if local.relay_only {
        return Err(LinkError::Setup(
            "video is relay-only, but no TURN server granted a relay".into(),
        ));
    }
    if local.relay_only {
        return Ok(());
    }
    rtc.add_local_candidate(Candidate::host(host, "udp").map_err(bad(host))?);
    if let Some(mapped) = local.reflexive {
        let candidate = Candidate::server_reflexive(mapped, host, "udp").map_err(bad(mapped))?;
        rtc.add_local_candidate(candidate);
    }
    Ok(())
}

/// The part of a connection a link and a seat share: the `Rtc`, what it
/// emits, its data channel, and whether it is over.
pub(crate) struct Core {
    pub(crate) rtc: Rtc,
    pub(crate) channel: Option<ChannelId>,
    /// Messages the channel's buffer had no room for yet, whether binary,
    /// in order; written as it drains.
    queued: VecDeque<(bool, Vec<u8>)>,
    queued_bytes: usize,
    pub(crate) transmits: VecDeque<Datagram>,
    pub(crate) timeout: Option<Instant>,
    /// The connection's clock (see [`Core::now`]).
    now: Instant,
    /// Why it is over, once it is.
    pub(crate) failed: Option<String>,
}

/// Timeouts a drain hands back at once, at most: a bound on one call's
/// work (a 64 KiB keyframe is some 55 packets, each released by one).
const DUE_AT_ONCE: usize = 4_096;
/// How far ahead of the connection's clock a timeout handed back may be:
/// str0m's pacer asks for time to move on by a microsecond before each
/// next packet (so one drain can take the clock at most `DUE_AT_ONCE`
/// microseconds past the time it was given, some 4 ms).
const PACKET_STEP: Duration = Duration::from_micros(1);

impl Core {
    pub(crate) fn new(now: Instant, rtc: Rtc) -> Self {
        Self {
            rtc,
            channel: None,
            queued: VecDeque::new(),
            queued_bytes: 0,
            transmits: VecDeque::new(),
            timeout: None,
            now,
            failed: None,
        }
    }

    /// Feeds a datagram, read already, to the connection.
    pub(crate) fn receive(&mut self, incoming: Incoming) -> Result<(), String> {
        self.now = incoming.now;
        (self.rtc.handle_input(incoming.input)).map_err(|e| e.to_string())
    }

    /// The connection's clock: the latest input's time, or a little past
    /// it after a drain handed str0m's per-packet timeouts back.
    pub(crate) fn now(&self) -> Instant {
        self.now
    }

    /// Moves the clock to `now` for an input that is not str0m's (a
    /// restart's description).
    pub(crate) fn set_now(&mut self, now: Instant) {
        self.now = now;
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Result<(), String> {
        self.now = now;
        (self.rtc.handle_input(Input::Timeout(now))).map_err(|e| e.to_string())
    }

    /// Polls until str0m names its next timeout; returns its events for
    /// the owner to read, and why the connection broke if it did (the
    /// events before that still count).
    pub(crate) fn drain(&mut self) -> (Vec<Event>, Option<String>) {
        let mut events = Vec::new();
        if self.failed.is_some() {
            return (events, None);
        }
        self.write_queued();
        let (mut due, mut progressed) = (0, false);
        loop {
            match self.rtc.poll_output() {
                // str0m's pacer releases one packet per timeout, then asks
                // for the next a microsecond on: left to the caller's timer,
                // a frame's packets would leave one per timer tick (a
                // millisecond each), so such a timeout is handed back here
                // for as long as each one releases something.
                Ok(Output::Timeout(at))
                    if at <= self.now + PACKET_STEP
                        && (due == 0 || progressed)
                        && due < DUE_AT_ONCE =>
                {
                    (due, progressed) = (due + 1, false);
                    self.now = self.now.max(at);
                    if let Err(e) = self.rtc.handle_input(Input::Timeout(self.now)) {
                        return (events, Some(e.to_string()));
                    }
                }
                Ok(Output::Timeout(at)) => {
                    self.timeout = Some(at);
                    return (events, None);
                }
                Ok(Output::Transmit(t)) => {
                    progressed = true;
                    self.transmits.push_back(Datagram {
                        source: t.source,
                        destination: t.destination,
                        contents: t.contents.into(),
                    });
                }
                Ok(Output::Event(event)) => {
                    progressed = true;
                    events.push(event);
                }
                Err(e) => return (events, Some(e.to_string())),
            }
        }
    }

    pub(crate) fn usable(&self) -> Result<(), LinkError> {
        match &self.failed {
            Some(reason) => Err(LinkError::Failed(reason.clone())),
            None => Ok(()),
        }
    }

    /// Ends the connection; false when it was over already.
    pub(crate) fn stop(&mut self, reason: String) -> bool {
        if self.failed.is_some() {
            return false;
        }
        self.rtc.disconnect();
        self.transmits.clear();
        self.timeout = None;
        self.failed = Some(reason);
        true
    }

    /// Writes a message on the data channel (text when it is UTF-8, as
    /// browsers expect chat), or queues it behind others; `Ok(false)` when
    /// neither the channel's buffer nor the queue has room for it.
    pub(crate) fn send_data(&mut self, bytes: &[u8]) -> Result<bool, LinkError> {
        self.usable()?;
        let binary = std::str::from_utf8(bytes).is_err();
        if self.queued.is_empty() && self.write(binary, bytes)? {
            return Ok(true);
        }
        if self.queued_bytes + bytes.len() > CHANNEL_QUEUE {
            return Ok(false);
        }
        self.queued_bytes += bytes.len();
        self.queued.push_back((binary, bytes.to_vec()));
        Ok(true)
    }

    fn write(&mut self, binary: bool, bytes: &[u8]) -> Result<bool, LinkError> {
        let id = (self.channel).ok_or(LinkError::NotReady("data channel not open"))?;
        let mut channel =
            (self.rtc.channel(id)).ok_or(LinkError::NotReady("data channel closed"))?;
        (channel.write(binary, bytes)).map_err(|e| LinkError::Failed(e.to_string()))
    }

    /// Writes what the queue holds, in order, while the buffer takes it.
    fn write_queued(&mut self) {
        while let Some((binary, bytes)) = self.queued.pop_front() {
            match self.write(binary, &bytes) {
                Ok(true) => self.queued_bytes -= bytes.len(),
                Ok(false) => {
                    self.queued.push_front((binary, bytes));
                    return;
                }
                // The channel is gone: what waited for it goes with it.
                Err(_) => {
                    self.queued.clear();
                    self.queued_bytes = 0;
                    return;
                }
            }
        }
    }
}

/// Whether `incoming` is for this connection (its remote's address, or an
/// ICE check with its credentials), on a socket several connections share.
pub(crate) fn accepts(rtc: &Rtc, incoming: &Incoming) -> bool {
    rtc.accepts(&incoming.input)
}
