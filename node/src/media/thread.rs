//! The media plane's own thread. Forwarded media waits for nothing else
//! the node does: on the node's shared workers, a datagram's wake-up went
//! through whichever worker polled the I/O driver and then waited behind
//! the event loop's turn (signature checks, sled flushes) or a piece of an
//! attachment being fetched before its frame moved on: with the node taking
//! in 16 MiB files meanwhile, frames through it took 33 ms at p99 (the
//! forward bench's `--busy`), 5.5 ms since. Here the plane socket belongs
//! to a reactor of its own, whose one thread runs the media task and
//! nothing else, so the kernel's wake-up reaches the task directly. The
//! sockets of offered links and TURN relays are bound and read on it too
//! ([`MediaThread::spawn`]): read on the node's workers, each of their
//! datagrams crossed to this thread before a link saw it.

use super::outbound::MediaSocket;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

/// What the node holds of the thread: dropping it stops the task, and the
/// thread ends with it (nothing waits for that, so a node shutting down
/// inside an async context never blocks).
pub(super) struct MediaThread {
    _stop: oneshot::Sender<()>,
    runtime: tokio::runtime::Handle,
}

impl MediaThread {
    /// Runs `task` on the plane's thread: a socket it binds belongs to the
    /// plane's reactor, and what it reads reaches the media task with no
    /// crossing between threads.
    pub(super) fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime.spawn(task)
    }
}

/// The plane's socket, its address, and the thread that reads it.
pub(super) type Started = (Arc<MediaSocket>, SocketAddr, MediaThread);

/// Binds `addr` on a new thread's reactor and runs `run` there with the
/// socket and the address it got; returns them (the socket is shared with
/// the node's other media tasks, which send STUN requests on it) once it
/// is bound.
pub(super) async fn start<F, Fut>(
    name: String,
    addr: SocketAddr,
    configure: impl FnOnce(&UdpSocket) + Send + 'static,
    run: F,
) -> io::Result<Started>
where
    F: FnOnce(Arc<MediaSocket>, SocketAddr) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let (bound_tx, bound_rx) = oneshot::channel();
    let (stop, stopped) = oneshot::channel::<()>();
    std::thread::Builder::new().name(name).spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        let runtime = match runtime {
            Ok(runtime) => runtime,
            Err(e) => {
                let _ = bound_tx.send(Err(e));
                return;
            }
        };
        runtime.block_on(async move {
            let (socket, local) = match bind(addr, configure).await {
                Ok(bound) => bound,
                Err(e) => {
                    let _ = bound_tx.send(Err(e));
                    return;
                }
            };
            let handle = tokio::runtime::Handle::current();
            if bound_tx.send(Ok((socket.clone(), local, handle))).is_err() {
                return;
            }
            tokio::select! {
                _ = run(socket, local) => {}
                _ = stopped => {}
            }
        });
    })?;
    let (socket, local, runtime) = bound_rx
        .await
        .map_err(|_| io::Error::other("the media thread ended before binding"))??;
    let thread = MediaThread {
        _stop: stop,
        runtime,
    };
    Ok((socket, local, thread))
}

/// Binds on the calling thread's reactor.
async fn bind(
    addr: SocketAddr,
    configure: impl FnOnce(&UdpSocket),
) -> io::Result<(Arc<MediaSocket>, SocketAddr)> {
    let socket = UdpSocket::bind(addr).await?;
    configure(&socket);
    let local = socket.local_addr()?;
    Ok((Arc::new(MediaSocket::new(socket)?), local))
}

/// The thread's name, as `top -H` and `/proc` show it (15 bytes at most):
/// `<name>-media` where the runtime starting the plane named its threads
/// (several nodes in one process, told apart), else `konsilium-media`.
pub(super) fn name() -> String {
    match std::thread::current().name() {
        Some(runtime) if !runtime.starts_with("tokio-") && runtime.len() <= 9 => {
            format!("{runtime}-media")
        }
        _ => "konsilium-media".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Echoes every datagram back to its sender, on the plane's thread.
    async fn echo(socket: Arc<MediaSocket>, _: SocketAddr) {
        let mut buf = [0u8; 64];
        while let Ok((n, from)) = socket.udp().recv_from(&mut buf).await {
            let _ = socket.udp().send_to(&buf[..n], from).await;
        }
    }

    fn loopback() -> SocketAddr {
        "127.0.0.1:0".parse().expect("an address")
    }

    #[test]
    fn the_plane_answers_while_the_thread_that_started_it_is_blocked() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let (_socket, local, _thread) = runtime
            .block_on(start("test-media".into(), loopback(), |_| {}, echo))
            .expect("the plane starts");
        // The runtime that started the plane is not running at all now:
        // what answers is the plane's own thread.
        let client = std::net::UdpSocket::bind(loopback()).expect("a client socket");
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a timeout");
        client.send_to(b"ping", local).expect("sent");
        let mut buf = [0u8; 16];
        let (n, from) = client.recv_from(&mut buf).expect("the plane answers");
        assert_eq!((&buf[..n], from), (&b"ping"[..], local));
    }

    #[tokio::test]
    async fn a_stopped_plane_gives_its_port_back_and_a_taken_port_is_refused() {
        let (socket, local, thread) = start("test-media".into(), loopback(), |_| {}, echo)
            .await
            .expect("the plane starts");
        let again = start("test-media".into(), local, |_| {}, echo).await;
        assert!(again.is_err(), "a port in use cannot be bound twice");
        drop((socket, thread));
        let mut rebound = None;
        for _ in 0..100 {
            if let Ok(started) = start("test-media".into(), local, |_| {}, echo).await {
                rebound = Some(started);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(rebound.is_some(), "the port was never given back");
    }
}
