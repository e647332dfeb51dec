//! The STUN service a bootstrap node runs for the sites behind NATs: a
//! Binding request is answered with the address it came from, which is
//! what the asking site's NAT maps it to. Unauthenticated by nature, so it
//! costs one small answer per request and keeps no state.

use std::net::SocketAddr;
use tokio::net::UdpSocket;

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
