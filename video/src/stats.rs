//! How a link is doing, for operators: round trip, loss, bitrate, and the
//! route its media took (straight to the other site's host address,
//! through a NAT's mapped address, or through a TURN relay).

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use str0m::stats::PeerStats;
use str0m::{Candidate, CandidateKind};

/// What a link's media went through, named as ICE names candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// The other site's own interface address.
    Host,
    /// The address its NAT mapped, learned from STUN.
    ServerReflexive,
    /// An address its NAT mapped, learned only from the connectivity checks.
    PeerReflexive,
    /// A TURN server's relayed address, the other site's or ours.
    Relay,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Host => "host",
            Route::ServerReflexive => "srflx",
            Route::PeerReflexive => "prflx",
            Route::Relay => "relay",
        }
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LinkStats {
    pub rtt: Option<Duration>,
    /// Fraction of the other site's packets lost on their way here, over
    /// the last interval.
    pub loss: Option<f32>,
    /// Bits per second received and sent over the last interval (all
    /// WebRTC traffic: media, data, checks).
    pub rx_bps: u64,
    pub tx_bps: u64,
    /// Video frames per second received and sent over the last interval
    /// (what a participant's picture actually does, whatever the bitrate).
    pub rx_fps: f64,
    pub tx_fps: f64,
    /// What the path carries: the full picture, a publisher's smallest
    /// encoding, or only the voices.
    pub quality: crate::Quality,
    /// The other site's address the media flows to, and what it went
    /// through.
    pub remote: Option<(SocketAddr, Route)>,
}

/// Turns str0m's cumulative counters into rates, and the selected pair's
/// remote address into a route using the candidates the other site
/// signed.
#[derive(Debug, Default)]
pub(crate) struct Meter {
    /// Our own TURN relay's address, if the link offered one.
    relayed: Option<SocketAddr>,
    remote_candidates: Vec<(SocketAddr, CandidateKind)>,
    last: Option<(Instant, u64, u64)>,
    /// Video frames received and sent so far, and at the last report.
    frames: (u64, u64),
    frames_before: (u64, u64),
    pub(crate) stats: LinkStats,
}

impl Meter {
    pub(crate) fn new(relayed: Option<SocketAddr>) -> Self {
        Self {
            relayed,
            ..Self::default()
        }
    }

    /// The candidates in the other site's description.
    pub(crate) fn remote_description(&mut self, sdp: &str) {
        self.remote_candidates = (sdp.lines())
            .filter_map(|line| line.strip_prefix("a="))
            .filter(|line| line.starts_with("candidate:"))
            .filter_map(|line| Candidate::from_sdp_string(line).ok())
            .map(|c| (c.addr(), c.kind()))
            .collect();
    }

    pub(crate) fn video_frame_received(&mut self) {
        self.frames.0 += 1;
    }

    pub(crate) fn video_frame_sent(&mut self) {
        self.frames.1 += 1;
    }

    pub(crate) fn handle_stats(&mut self, s: &PeerStats) {
        if let Some((at, rx, tx)) = self.last {
            let secs = s.timestamp.saturating_duration_since(at).as_secs_f64();
            if secs > 0.0 {
                let rate =
                    |now: u64, before: u64| (now.saturating_sub(before) as f64 * 8.0 / secs) as u64;
                self.stats.rx_bps = rate(s.peer_bytes_rx, rx);
                self.stats.tx_bps = rate(s.peer_bytes_tx, tx);
                let fps = |now: u64, before: u64| now.saturating_sub(before) as f64 / secs;
                self.stats.rx_fps = fps(self.frames.0, self.frames_before.0);
                self.stats.tx_fps = fps(self.frames.1, self.frames_before.1);
            }
        }
        self.frames_before = self.frames;
        self.last = Some((s.timestamp, s.peer_bytes_rx, s.peer_bytes_tx));
        let pair_rtt = (s.selected_candidate_pair.as_ref()).and_then(|p| p.current_round_trip_time);
        self.stats.rtt = s.rtt.or(pair_rtt).or(self.stats.rtt);
        self.stats.loss = s.ingress_loss_fraction.or(self.stats.loss);
        if let Some(pair) = &s.selected_candidate_pair {
            let addr = pair.remote.addr;
            let kind = (self.remote_candidates.iter())
                .find(|(a, _)| *a == addr)
                .map(|(_, kind)| *kind);
            let route = match kind {
                _ if Some(pair.local.addr) == self.relayed => Route::Relay,
                Some(CandidateKind::Host) => Route::Host,
                Some(CandidateKind::ServerReflexive) => Route::ServerReflexive,
                Some(CandidateKind::Relayed) => Route::Relay,
                Some(CandidateKind::PeerReflexive) | None => Route::PeerReflexive,
            };
            self.stats.remote = Some((addr, route));
        }
    }
}
