//! A bare str0m `Rtc` on its own loopback UDP socket, driven by hand: the
//! baselines of the video benches, and the clients (browsers) of the
//! forwarding bench. Settings as the node's connections have them:
//! bandwidth estimation on from 2.5 Mbit/s, statistics every second.

#![allow(dead_code, reason = "each bench uses its own part")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use str0m::bwe::Bitrate;
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;

pub struct Peer {
    pub rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    next: std::time::Instant,
    /// The data channel is open.
    pub open: bool,
    /// Every event but the channel opening, for the caller to take.
    pub events: Vec<Event>,
    buf: Vec<u8>,
}

impl Peer {
    /// A peer set up as the node's connections are.
    pub async fn new() -> Self {
        Self::with_bwe(Some(Bitrate::kbps(2_500))).await
    }

    /// A peer without bandwidth estimation, and so without a pacer: a
    /// source that sends at its own rate whatever the path says.
    pub async fn unpaced() -> Self {
        Self::with_bwe(None).await
    }

    async fn with_bwe(start: Option<Bitrate>) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("loopback socket");
        let local = socket.local_addr().expect("bound");
        let mut rtc = Rtc::builder()
            .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
            .enable_bwe(start)
            .set_stats_interval(Some(Duration::from_secs(1)))
            .build(std::time::Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").expect("loopback candidate"));
        Self {
            rtc,
            socket,
            local,
            next: std::time::Instant::now(),
            open: false,
            events: Vec::new(),
            buf: vec![0; 2048],
        }
    }

    /// Polls until str0m names a timeout still to come, sending what it
    /// emits. One already due is handed back at once (a written frame is
    /// packetized, and each packet released, on a timeout str0m asks for
    /// straight away): left to tokio's timer, whose tick is a millisecond,
    /// a frame could wait up to that long before it leaves, in some runs
    /// and not others. At most `DUE_AT_ONCE` per call, so a timeout that
    /// stays due cannot hold the task.
    pub async fn drain(&mut self) {
        const DUE_AT_ONCE: usize = 256;
        let mut handed = 0;
        loop {
            match self.rtc.poll_output().expect("bare rtc") {
                Output::Timeout(at) => {
                    let now = std::time::Instant::now();
                    if at <= now && handed < DUE_AT_ONCE {
                        handed += 1;
                        (self.rtc)
                            .handle_input(Input::Timeout(now))
                            .expect("bare timeout");
                        continue;
                    }
                    self.next = at;
                    return;
                }
                Output::Transmit(t) => {
                    let _ = self.socket.send_to(&t.contents, t.destination).await;
                }
                Output::Event(Event::ChannelOpen(..)) => self.open = true,
                Output::Event(e) => self.events.push(e),
            }
        }
    }

    /// A datagram that arrived from `source`.
    pub fn receive(&mut self, datagram: &[u8], source: SocketAddr) {
        let now = std::time::Instant::now();
        if let Ok(r) = Receive::new(Protocol::Udp, source, self.local, datagram) {
            (self.rtc)
                .handle_input(Input::Receive(now, r))
                .expect("bare receive");
        }
    }

    /// Hands str0m its timeout when it is due.
    pub fn timeout_if_due(&mut self) {
        let now = std::time::Instant::now();
        if self.next <= now {
            self.rtc
                .handle_input(Input::Timeout(now))
                .expect("bare timeout");
        }
    }

    /// When str0m wants to be woken.
    pub fn next(&self) -> std::time::Instant {
        self.next
    }

    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// Waits for a datagram or the next timeout (or `until`, when sooner)
    /// and hands it in; then drains.
    pub async fn step(&mut self, until: Option<std::time::Instant>) {
        let due = until.map_or(self.next, |u| u.min(self.next));
        let mut buf = std::mem::take(&mut self.buf);
        tokio::select! {
            r = self.socket.recv_from(&mut buf) => if let Ok((n, source)) = r {
                self.receive(&buf[..n], source);
            },
            _ = tokio::time::sleep_until(due.into()) => {}
        }
        self.buf = buf;
        self.timeout_if_due();
        self.drain().await;
    }
}
