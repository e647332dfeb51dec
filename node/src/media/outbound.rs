//! How a round's datagrams leave a media socket. A forwarded frame is a
//! run of packets to one address, all one size but the last; each costs a
//! `sendto` if sent alone, and the kernel's path for one datagram (a
//! system call, a route lookup, a buffer) was the largest single part of
//! the forwarding unit's work. A run leaves in one system call instead,
//! the kernel cutting it into packets (UDP segmentation offload, through
//! quinn-udp). Where the kernel or device refuses the offload, quinn-udp
//! stops offering it and each packet of the refused run leaves alone.

use konsilium_video::Datagram;
use quinn_udp::{Transmit, UdpSocketState};
use std::io;
use std::ops::Range;
use std::os::fd::AsRawFd;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// The kernel's limit on segments in one send (`UDP_MAX_SEGMENTS`).
const MAX_SEGMENTS: usize = 64;
/// The most bytes one UDP datagram carries over IPv6, and so over both.
const MAX_BYTES: usize = u16::MAX as usize - 8 - 40;

/// A UDP socket of the media plane, sending runs in one system call.
pub(super) struct MediaSocket {
    socket: UdpSocket,
    state: UdpSocketState,
}

impl MediaSocket {
    pub(super) fn new(socket: UdpSocket) -> io::Result<Self> {
        let state = UdpSocketState::new((&socket).into())?;
        receive_one_at_a_time(&socket)?;
        Ok(Self { socket, state })
    }

    /// The socket, for reading and for single sends (STUN).
    pub(super) fn udp(&self) -> &UdpSocket {
        &self.socket
    }

    /// Sends `datagrams` in order, each run to one address in one call.
    /// A datagram the kernel refuses is dropped and said in the debug
    /// log, as a lost packet would be: media recovers from loss.
    pub(super) async fn send(&self, datagrams: &[Datagram]) {
        let mut joined = Vec::new();
        for run in runs(datagrams, self.state.max_gso_segments()) {
            let first = &datagrams[run.start];
            if run.len() == 1 {
                self.send_one(first).await;
                continue;
            }
            joined.clear();
            for d in &datagrams[run.clone()] {
                joined.extend_from_slice(&d.contents);
            }
            let transmit = Transmit {
                destination: first.destination,
                ecn: None,
                contents: &joined,
                segment_size: Some(first.contents.len()),
                src_ip: None,
            };
            if let Err(e) = self.transmit(&transmit).await {
                tracing::debug!(to = %first.destination, "video datagrams sent one by one: {e}");
                for d in &datagrams[run] {
                    self.send_one(d).await;
                }
            }
        }
    }

    async fn send_one(&self, d: &Datagram) {
        let transmit = Transmit {
            destination: d.destination,
            ecn: None,
            contents: &d.contents,
            segment_size: None,
            src_ip: None,
        };
        if let Err(e) = self.transmit(&transmit).await {
            tracing::debug!(to = %d.destination, "video datagram not sent: {e}");
        }
    }

    /// One send, waiting while the socket's buffer is full.
    async fn transmit(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        (self.socket)
            .async_io(Interest::WRITABLE, || {
                self.state.try_send((&self.socket).into(), transmit)
            })
            .await
    }
}

/// Where each run of `datagrams` begins and ends: consecutive datagrams
/// to one address, all as long as the first but the last, which may be
/// shorter (the kernel cuts at the first's length), within what one send
/// may carry.
fn runs(datagrams: &[Datagram], max_segments: usize) -> Vec<Range<usize>> {
    let max_segments = max_segments.clamp(1, MAX_SEGMENTS);
    let mut runs = Vec::new();
    let mut start = 0;
    while start < datagrams.len() {
        let first = &datagrams[start];
        let size = first.contents.len();
        let (mut end, mut bytes) = (start + 1, size);
        while size > 0 && end < datagrams.len() && end - start < max_segments {
            let d = &datagrams[end];
            let len = d.contents.len();
            if d.destination != first.destination || len > size || bytes + len > MAX_BYTES {
                break;
            }
            (end, bytes) = (end + 1, bytes + len);
            if len < size {
                break;
            }
        }
        runs.push(start..end);
        start = end;
    }
    runs
}

/// quinn-udp switches on coalesced receiving (GRO) where the kernel has
/// it; the plane reads with `recv_from`, one datagram per call, and a
/// coalesced read would hand it several packets glued into one.
fn receive_one_at_a_time(socket: &UdpSocket) -> io::Result<()> {
    let off: libc::c_int = 0;
    // SAFETY: the descriptor is the open socket borrowed for the call, and
    // the option's value is a `c_int` of the length given.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_GRO,
            (&raw const off).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    match r {
        0 => Ok(()),
        _ => match io::Error::last_os_error() {
            // A kernel without GRO for UDP never coalesces.
            e if e.raw_os_error() == Some(libc::ENOPROTOOPT) => Ok(()),
            e => Err(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn datagram(to: SocketAddr, len: usize, fill: u8) -> Datagram {
        Datagram {
            source: "127.0.0.1:1000".parse().expect("address"),
            destination: to,
            contents: vec![fill; len],
        }
    }

    #[test]
    fn a_frame_to_one_address_is_one_run_ending_at_its_shorter_last_packet() {
        let (a, b) = (
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        let sent = [
            datagram(a, 1200, 1),
            datagram(a, 1200, 2),
            datagram(a, 700, 3),
            // A shorter one ended the run: the next starts anew.
            datagram(a, 1200, 4),
            datagram(b, 1200, 5),
            // Longer than the run's first: the kernel would cut it.
            datagram(b, 1300, 6),
            datagram(b, 1300, 7),
        ];
        assert_eq!(runs(&sent, 64), vec![0..3, 3..4, 4..5, 5..7]);
        assert_eq!(runs(&sent, 2), vec![0..2, 2..3, 3..4, 4..5, 5..7]);
        // No offload: every datagram alone.
        assert_eq!(runs(&sent, 1).len(), sent.len());
    }

    #[test]
    fn a_run_never_exceeds_one_datagram_s_bytes() {
        let to = "127.0.0.1:1".parse().unwrap();
        let sent: Vec<_> = (0..60).map(|i| datagram(to, 1400, i)).collect();
        let found = runs(&sent, 64);
        assert!(found.len() > 1);
        for run in &found {
            assert!(run.len() * 1400 <= MAX_BYTES, "{run:?}");
        }
        assert_eq!(found.iter().map(|r| r.len()).sum::<usize>(), 60);
    }

    /// Through the kernel: what a run sent in one call arrives as the
    /// datagrams it was made of, in order, at a socket of the same kind.
    #[tokio::test]
    async fn a_run_arrives_as_the_datagrams_it_was_made_of() {
        let receiver = MediaSocket::new(UdpSocket::bind("127.0.0.1:0").await.unwrap()).unwrap();
        let sender = MediaSocket::new(UdpSocket::bind("127.0.0.1:0").await.unwrap()).unwrap();
        let to = receiver.udp().local_addr().unwrap();
        let sent: Vec<_> = [1200, 1200, 1200, 500, 1200, 80]
            .into_iter()
            .enumerate()
            .map(|(i, len)| datagram(to, len, i as u8))
            .collect();
        sender.send(&sent).await;
        let mut buf = vec![0u8; 70_000];
        for (i, d) in sent.iter().enumerate() {
            let (n, _) = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                receiver.udp().recv_from(&mut buf),
            )
            .await
            .expect("a datagram in time")
            .unwrap();
            assert_eq!(n, d.contents.len(), "datagram {i} arrived glued or cut");
            assert!(buf[..n] == d.contents[..], "datagram {i} arrived changed");
        }
    }
}
