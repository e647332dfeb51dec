//! The STUN service a bootstrap node runs for the sites behind NATs: a
//! Binding request is answered with the address it came from, which is
//! what the asking site's NAT maps it to. Unauthenticated by nature, and
//! its answer goes wherever the request says it came from, so what it
//! sends is rationed: each asker (an address and port) a few answers, and
//! all askers together a bounded number a second, so that a flood of
//! requests with forged sources makes the node reflect no more than that.

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use tokio::net::UdpSocket;

/// What one asker is answered: a site's socket asks every 30 s, and again
/// after a lost answer, so five at once and one a second more are plenty.
const PER_ASKER: (u32, u32) = (1, 5);
/// What all askers are answered in a second (and at once): thousands of
/// sites' sockets asking every 30 s each, and at most about 120 KB/s of
/// answers whatever arrives.
const IN_ALL: (u32, u32) = (2_000, 2_000);
/// Askers remembered at most. Forged sources are new askers every time:
/// past this, those not heard from lately are forgotten, and if every one
/// was heard from lately, all counts start over (the limit in all still
/// holds meanwhile).
const ASKERS: usize = 16_384;

pub struct StunService {
    local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StunService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug, thiserror::Error)]
#[error("STUN service on {addr}: {source}")]
pub struct StunError {
    addr: SocketAddr,
    #[source]
    source: std::io::Error,
}

impl StunService {
    pub async fn start(addr: SocketAddr) -> Result<Self, StunError> {
        Self::rationed(addr, Rations::new(PER_ASKER, IN_ALL)).await
    }

    async fn rationed(addr: SocketAddr, mut rations: Rations) -> Result<Self, StunError> {
        let failed = |source| StunError { addr, source };
        let socket = UdpSocket::bind(addr).await.map_err(failed)?;
        let local = socket.local_addr().map_err(failed)?;
        tracing::info!(%local, "STUN service answering");
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let (n, source) = match socket.recv_from(&mut buf).await {
                    Ok(got) => got,
                    Err(e) => {
                        tracing::debug!("STUN service: {e}");
                        continue;
                    }
                };
                if let Some(answer) = konsilium_video::stun::answer(&buf[..n], source)
                    && rations.grant(source)
                    && let Err(e) = socket.send_to(&answer, source).await
                {
                    tracing::debug!(%source, "STUN answer not sent: {e}");
                }
            }
        });
        Ok(Self { local, task })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

/// The answers still to give, by asker and in all.
struct Rations {
    per_asker: Quota,
    askers: DefaultKeyedRateLimiter<SocketAddr>,
    in_all: DefaultDirectRateLimiter,
}

/// So many a second, so many at once.
fn quota((per_second, burst): (u32, u32)) -> Quota {
    let nonzero = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(nonzero(per_second)).allow_burst(nonzero(burst))
}

impl Rations {
    fn new(per_asker: (u32, u32), in_all: (u32, u32)) -> Self {
        let per_asker = quota(per_asker);
        Self {
            per_asker,
            askers: RateLimiter::keyed(per_asker),
            in_all: RateLimiter::direct(quota(in_all)),
        }
    }

    /// Whether `asker` gets an answer now. Its own ration first, so that
    /// one asker's excess does not spend what all share.
    fn grant(&mut self, asker: SocketAddr) -> bool {
        let granted = self.askers.check_key(&asker).is_ok() && self.in_all.check().is_ok();
        if self.askers.len() > ASKERS {
            self.askers.retain_recent();
            if self.askers.len() > ASKERS {
                self.askers = RateLimiter::keyed(self.per_asker);
            }
        }
        granted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use konsilium_video::stun::BindingRequest;
    use std::time::Duration;

    /// Sends `requests` Binding requests from a socket of its own, and
    /// counts the answers that come back within a moment.
    async fn ask(service: SocketAddr, requests: usize) -> usize {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("a socket");
        let mut asked = Vec::new();
        for _ in 0..requests {
            let request = BindingRequest::new();
            socket.send_to(&request.bytes, service).await.expect("sent");
            asked.push(request);
        }
        let mut answered = 0;
        let mut buf = [0u8; 128];
        let mine = socket.local_addr().expect("an address");
        while let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(300), socket.recv_from(&mut buf)).await
        {
            assert!(
                asked.iter().any(|r| r.answered_by(&buf[..n]) == Some(mine)),
                "an answer names the asker"
            );
            answered += 1;
        }
        answered
    }

    /// A service on 127.0.0.1 with these rations, per asker and in all.
    async fn service(per_asker: (u32, u32), in_all: (u32, u32)) -> StunService {
        let loopback = "127.0.0.1:0".parse().expect("an address");
        let rations = Rations::new(per_asker, in_all);
        (StunService::rationed(loopback, rations).await).expect("started")
    }

    #[tokio::test]
    async fn one_asker_gets_its_ration_and_the_next_asker_its_own() {
        // Per asker: five at once, one a second more.
        let service = service((1, 5), (1_000, 1_000)).await;
        assert_eq!(ask(service.local_addr(), 30).await, 5);
        assert_eq!(ask(service.local_addr(), 1).await, 1, "another asker");
    }

    #[tokio::test]
    async fn all_askers_together_get_no_more_than_the_service_gives_in_all() {
        let service = service((5, 5), (1, 8)).await;
        let mut answered = 0;
        for _ in 0..4 {
            answered += ask(service.local_addr(), 5).await;
        }
        // Eight at once, and one a second more over the 1.2 s of asking.
        assert!((8..=10).contains(&answered), "{answered} answers");
    }

    #[test]
    fn forged_askers_are_forgotten_past_the_bound() {
        let mut rations = Rations::new((1, 1), (u32::MAX, u32::MAX));
        for port in 0..=u16::try_from(ASKERS).expect("a port") {
            let forged = SocketAddr::from(([203, 0, 113, 9], port));
            assert!(rations.grant(forged), "a new asker's first request");
        }
        assert!(rations.askers.len() <= ASKERS);
    }
}
