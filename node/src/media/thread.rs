//! The media plane's own thread. Forwarded media waits for nothing else
//! the node does: on the node's shared workers, a datagram's wake-up went
//! through whichever worker polled the I/O driver and then waited behind
//! the event loop's turn (signature checks, sled flushes) or a peer's
//! handshake before its frame moved on. Here the plane socket belongs to
//! a reactor of its own, whose one thread runs the media task and nothing
//! else, so the kernel's wake-up reaches the task directly.

use super::outbound::MediaSocket;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// What the node holds of the thread: dropping it stops the task, and the
/// thread ends with it.
pub(super) struct MediaThread {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for MediaThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        // The task stops at its next poll; the thread is not waited for,
        // so a node shutting down inside an async context never blocks.
        drop(self.thread.take());
    }
}

/// Binds `addr` on a new thread's reactor and runs `run` there with the
/// socket; returns the socket (shared with the node's other media tasks,
/// which send STUN requests on it) once it is bound.
pub(super) async fn start<F, Fut>(
    name: String,
    addr: SocketAddr,
    configure: impl FnOnce(&tokio::net::UdpSocket) + Send + 'static,
    run: F,
) -> std::io::Result<(Arc<MediaSocket>, MediaThread)>
where
    F: FnOnce(Arc<MediaSocket>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let (bound_tx, bound) = oneshot::channel();
    let (stop, stopped) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new().name(name).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                let _ = bound_tx.send(Err(e));
                return;
            }
        };
        runtime.block_on(async move {
            let socket = match tokio::net::UdpSocket::bind(addr).await {
                Ok(socket) => socket,
                Err(e) => {
                    let _ = bound_tx.send(Err(e));
                    return;
                }
            };
            configure(&socket);
            let socket = match MediaSocket::new(socket) {
                Ok(socket) => Arc::new(socket),
                Err(e) => {
                    let _ = bound_tx.send(Err(e));
                    return;
                }
            };
            if bound_tx.send(Ok(socket.clone())).is_err() {
                return;
            }
            tokio::select! {
                _ = run(socket) => {}
                _ = stopped => {}
            }
        });
    })?;
    let socket = bound
        .await
        .map_err(|_| std::io::Error::other("the media thread ended before binding"))??;
    Ok((
        socket,
        MediaThread {
            stop: Some(stop),
            thread: Some(thread),
        },
    ))
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
