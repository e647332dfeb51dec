//! What a link to another site and a clinician's browser seat share: how
//! their `Rtc` is built, the candidates they offer, and str0m's contract
//! of polling after every change until it names its next timeout.

use crate::frame;
use crate::link::{Certificate, Datagram, LinkError, LocalAddrs};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::{Candidate, Event, Output, Rtc};

/// How often str0m reports a connection's statistics.
const STATS_EVERY: Duration = Duration::from_secs(1);

pub(crate) fn new_rtc(
    now: Instant,
    local: LocalAddrs,
    cert: Certificate,
) -> Result<Rtc, LinkError> {
    let config = Rtc::builder()
        .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
        .set_dtls_cert(cert.0)
        .enable_bwe(None)
        .set_stats_interval(Some(STATS_EVERY));
    let mut rtc = frame::codecs(config).build(now);
    add_candidates(&mut rtc, local)?;
    Ok(rtc)
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

/// Polls `rtc` until it names its next timeout: datagrams go to
/// `transmits`, events to `events`. An error ends the connection; the
/// events before it still count.
pub(crate) fn pump(
    rtc: &mut Rtc,
    transmits: &mut VecDeque<Datagram>,
    events: &mut Vec<Event>,
) -> Result<Instant, String> {
    loop {
        match rtc.poll_output() {
            Ok(Output::Timeout(at)) => return Ok(at),
            Ok(Output::Transmit(t)) => transmits.push_back(Datagram {
                source: t.source,
                destination: t.destination,
                contents: t.contents.into(),
            }),
            Ok(Output::Event(event)) => events.push(event),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Whether `d` is for this connection (its remote's address, or an ICE
/// check with its credentials), on a socket several connections share.
pub(crate) fn accepts(rtc: &Rtc, now: Instant, d: &Datagram) -> bool {
    str0m::net::Receive::new(
        str0m::net::Protocol::Udp,
        d.source,
        d.destination,
        &d.contents,
    )
    .is_ok_and(|r| rtc.accepts(&str0m::Input::Receive(now, r)))
}

/// Feeds `d` to `rtc`; what is not WebRTC is ignored.
pub(crate) fn receive(rtc: &mut Rtc, now: Instant, d: &Datagram) -> Result<(), String> {
    let Ok(r) = str0m::net::Receive::new(
        str0m::net::Protocol::Udp,
        d.source,
        d.destination,
        &d.contents,
    ) else {
        return Ok(());
    };
    (rtc.handle_input(str0m::Input::Receive(now, r))).map_err(|e| e.to_string())
}
