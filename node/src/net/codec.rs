//! Carries protocol frames on libp2p request-response streams: a 4-byte
//! big-endian length, then one wire frame.
//!
//! Two protocols, each with its own limit: Hello (1 MiB, the only one a peer
//! can use before its certificate is verified) and the RPC of admitted peers.
//! The length prefix is checked against the kind's limit, and the frame is
//! read as it arrives, never allocated from the prefix: a peer that announces
//! 80 MiB and sends 10 bytes costs 10 bytes. What requests hold while they
//! are read and handled is drawn from the protocol's [`ByteBudget`].

use super::budget::{ByteBudget, Framed, HELLO_BUDGET, RPC_BUDGET, Share};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use konsilium_protocol::rpc::{Hello, HelloAnswer, Refusal, Request, Response};
use konsilium_protocol::wire::{self, WireMessage};
use libp2p::StreamProtocol;
use std::io;
use std::marker::PhantomData;

pub const HELLO_PROTOCOL: StreamProtocol = StreamProtocol::new("/konsilium/hello/1");
/// Version 2: Hello moved to its own protocol.
pub const RPC_PROTOCOL: StreamProtocol = StreamProtocol::new("/konsilium/rpc/2");

/// The first piece of a frame read; each next doubles what is held, so a
/// frame never holds more than twice what arrived.
const FIRST_PIECE: usize = 64 << 10;

/// A request-response codec for one pair of wire messages.
pub struct FrameCodec<Req, Resp> {
    budget: ByteBudget,
    messages: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> FrameCodec<Req, Resp> {
    /// Requests read hold their bytes from `budget`.
    pub fn new(budget: ByteBudget) -> Self {
        FrameCodec {
            budget,
            messages: PhantomData,
        }
    }
}

impl<Req, Resp> Clone for FrameCodec<Req, Resp> {
    fn clone(&self) -> Self {
        FrameCodec::new(self.budget.clone())
    }
}

impl<Req, Resp> Default for FrameCodec<Req, Resp> {
    /// A budget of its own, as large as Hello's.
    fn default() -> Self {
        FrameCodec::new(ByteBudget::new(HELLO_BUDGET))
    }
}

pub type HelloCodec = FrameCodec<Hello, HelloAnswer>;

/// The RPC of admitted peers: like [`FrameCodec`], except that a request
/// that is not a frame of its kind is handed on as [`Inbound::Malformed`]
/// instead of failing the stream. libp2p drops a codec's read errors
/// without saying whose stream it was, and the node must know who sent
/// what no honest node would, to score it.
#[derive(Clone)]
pub struct RpcCodec {
    budget: ByteBudget,
}

impl RpcCodec {
    pub fn new(budget: ByteBudget) -> Self {
        RpcCodec { budget }
    }
}

impl Default for RpcCodec {
    /// A budget of its own, [`RPC_BUDGET`].
    fn default() -> Self {
        RpcCodec::new(ByteBudget::new(RPC_BUDGET))
    }
}

/// A request as read from an admitted peer's stream.
#[derive(Debug)]
pub enum Inbound<T> {
    Frame(T),
    /// Refused whole (over its kind's limit, or not decodable); a stream
    /// that merely ends early fails instead, as an honest peer going away
    /// makes it do.
    Malformed(MalformedFrame),
}

impl<T> From<T> for Inbound<T> {
    fn from(frame: T) -> Self {
        Inbound::Frame(frame)
    }
}

impl From<Request> for Framed<Inbound<Request>> {
    fn from(request: Request) -> Self {
        Framed::from(Inbound::Frame(request))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MalformedFrame {
    #[error("{kind} frame of {len} bytes exceeds {max}")]
    TooLarge {
        kind: wire::MessageKind,
        len: usize,
        max: usize,
    },
    #[error(transparent)]
    Wire(#[from] wire::WireError),
}

impl From<MalformedFrame> for io::Error {
    fn from(e: MalformedFrame) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

async fn read_frame<M: WireMessage, T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<M> {
    let mut share = Share::default();
    Ok(read_checked(io, None, &mut share).await??)
}

/// Reads one frame, its bytes held in `share` of `budget` (if any) as they
/// arrive; the outer error is the stream's, the inner what the frame
/// itself is wrong in.
async fn read_checked<M: WireMessage, T: AsyncRead + Unpin + Send>(
    io: &mut T,
    budget: Option<&ByteBudget>,
    share: &mut Share,
) -> io::Result<Result<M, MalformedFrame>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > M::MAX_LEN {
        return Ok(Err(MalformedFrame::TooLarge {
            kind: M::KIND,
            len,
            max: M::MAX_LEN,
        }));
    }
    let mut frame = Vec::new();
    let mut filled = 0;
    while filled < len {
        if filled == frame.len() {
            let grow = frame.len().max(FIRST_PIECE).min(len - filled);
            if let Some(budget) = budget {
                share.grow(budget, grow).await?;
            }
            frame.reserve_exact(grow);
            frame.resize(filled + grow, 0);
        }
        let n = io.read(&mut frame[filled..]).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} frame ended after {filled} of {len} bytes", M::KIND),
            ));
        }
        filled += n;
    }
    Ok(wire::decode(&frame).map_err(MalformedFrame::from))
}

/// Frames up to this size go out with their length in one write: written
/// apart, the four bytes of length cost a stream frame, a Noise message
/// and a TCP segment of their own, and the frame waited behind them.
/// Larger ones are not copied to save that.
const ONE_WRITE: usize = 64 * 1024;

async fn write_frame<M: WireMessage, T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    msg: &M,
) -> io::Result<()> {
    let frame = wire::encode(msg).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let len = (frame.len() as u32).to_be_bytes();
    if frame.len() <= ONE_WRITE {
        // One write, one muxer frame, one Noise message, one segment.
        io.write_all(&[&len[..], &frame].concat()).await?;
    } else {
        io.write_all(&len).await?;
        io.write_all(&frame).await?;
    }
    io.close().await
}

impl<Req, Resp> libp2p::request_response::Codec for FrameCodec<Req, Resp>
where
    Req: WireMessage + Send + Sync + 'static,
    Resp: WireMessage + Send + Sync + 'static,
{
    type Protocol = StreamProtocol;
    type Request = Framed<Req>;
    type Response = Resp;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Framed<Req>> {
        let mut share = Share::default();
        let frame = read_checked(io, Some(&self.budget), &mut share).await??;
        Ok(Framed { frame, share })
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Resp> {
        read_frame(io).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Framed<Req>,
    ) -> io::Result<()> {
        write_frame(io, &req.frame).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Resp,
    ) -> io::Result<()> {
        write_frame(io, &res).await
    }
}

/// An answer to send, holding its bytes of `budget` until it is written;
/// one the budget cannot hold now is replaced by a refusal to ask again.
pub fn answer(budget: &ByteBudget, response: Response) -> Framed<Response> {
    let len = wire::encoded_len(&response);
    match budget.try_take(len) {
        Some(share) => Framed {
            frame: response,
            share,
        },
        None => Framed::from(Response::Refused(Refusal::Transient(format!(
            "this node holds answers not yet read by their peers up to its limit; an answer of \
             {len} bytes waits: ask again"
        )))),
    }
}

impl libp2p::request_response::Codec for RpcCodec {
    type Protocol = StreamProtocol;
    type Request = Framed<Inbound<Request>>;
    type Response = Framed<Response>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Framed<Inbound<Request>>> {
        let mut share = Share::default();
        let frame = match read_checked(io, Some(&self.budget), &mut share).await? {
            Ok(request) => Inbound::Frame(request),
            Err(malformed) => Inbound::Malformed(malformed),
        };
        Ok(Framed { frame, share })
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Framed<Response>> {
        read_frame::<Response, _>(io).await.map(Framed::from)
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Framed<Inbound<Request>>,
    ) -> io::Result<()> {
        match req.frame {
            Inbound::Frame(request) => write_frame(io, &request).await,
            Inbound::Malformed(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a malformed frame is only ever read, never sent",
            )),
        }
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Framed<Response>,
    ) -> io::Result<()> {
        write_frame(io, &res.frame).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use futures::io::Cursor;
    use libp2p::request_response::Codec;
    use std::future::Future;

    /// A stream that announces a large frame and then stalls: what the
    /// reader allocated is what arrived, not what was announced.
    #[test]
    fn an_announced_length_is_not_allocated_before_the_bytes_arrive() {
        let mut bytes = (40u32 << 20).to_be_bytes().to_vec();
        bytes.extend_from_slice(b"KS\x01\x0a only a few bytes");
        let mut io = Cursor::new(bytes);
        let err =
            futures::executor::block_on(RpcCodec::default().read_request(&RPC_PROTOCOL, &mut io))
                .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(err.to_string().contains("ended after 21 of"), "{err}");
    }

    #[test]
    fn a_hello_larger_than_its_limit_is_refused_from_the_prefix() {
        let len = (konsilium_protocol::rpc::MAX_HELLO_LEN + 1) as u32;
        let mut io = Cursor::new(len.to_be_bytes().to_vec());
        let err = futures::executor::block_on(
            HelloCodec::default().read_request(&HELLO_PROTOCOL, &mut io),
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("Hello frame"), "{err}");
    }

    /// A refused request is handed on, with what is wrong, so the node can
    /// score its sender; a stream ending early is an error, not a refusal.
    #[test]
    fn an_oversized_or_undecodable_request_is_read_as_malformed() {
        let read = |bytes: Vec<u8>| {
            let mut io = Cursor::new(bytes);
            futures::executor::block_on(RpcCodec::default().read_request(&RPC_PROTOCOL, &mut io))
                .map(|r| r.frame)
        };
        let huge = read((1u32 << 30).to_be_bytes().to_vec()).unwrap();
        assert!(
            matches!(huge, Inbound::Malformed(MalformedFrame::TooLarge { len, .. }) if len == 1 << 30),
            "{huge:?}"
        );
        let mut junk = 8u32.to_be_bytes().to_vec();
        junk.extend_from_slice(b"not a KS");
        let junk = read(junk).unwrap();
        assert!(
            matches!(
                junk,
                Inbound::Malformed(MalformedFrame::Wire(wire::WireError::BadMagic))
            ),
            "{junk:?}"
        );
        let frame = wire::encode(&Request::Revocations(Vec::new())).unwrap();
        let mut whole = (frame.len() as u32).to_be_bytes().to_vec();
        whole.extend_from_slice(&frame);
        assert!(matches!(
            read(whole).unwrap(),
            Inbound::Frame(Request::Revocations(r)) if r.is_empty()
        ));
    }

    /// A stream that gives what it holds, then stalls for good: a peer
    /// sending slowly.
    struct Stall(Cursor<Vec<u8>>);

    impl AsyncRead for Stall {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> std::task::Poll<io::Result<usize>> {
            match std::pin::Pin::new(&mut self.0).poll_read(cx, buf) {
                std::task::Poll::Ready(Ok(0)) => std::task::Poll::Pending,
                other => other,
            }
        }
    }

    fn junk(len: usize) -> Vec<u8> {
        let mut bytes = (len as u32).to_be_bytes().to_vec();
        bytes.resize(4 + len, b'x');
        bytes
    }

    /// Requests read hold their bytes until the node drops them; one that
    /// the budget cannot hold waits, and a slow stream holds at most twice
    /// what it sent.
    #[test]
    fn requests_hold_their_bytes_of_the_budget_until_dropped() {
        const KIB: usize = 1 << 10;
        let budget = ByteBudget::new(400 * KIB);
        let mut codec = RpcCodec::new(budget.clone());
        let read = |codec: &mut RpcCodec, bytes: Vec<u8>| {
            let mut io = Cursor::new(bytes);
            futures::executor::block_on(codec.read_request(&RPC_PROTOCOL, &mut io)).unwrap()
        };
        // Junk is read whole before it is found malformed, and held.
        let first = read(&mut codec, junk(300 * KIB));
        assert!(matches!(first.frame, Inbound::Malformed(_)));
        let held = first.share.bytes();
        assert!((300 * KIB..=400 * KIB).contains(&held), "{held}");
        assert_eq!(budget.available(), 400 * KIB - held);
        assert_eq!(budget.held(), held);

        // A second as large waits while the first is held...
        let mut io = Cursor::new(junk(300 * KIB));
        let second = codec.read_request(&RPC_PROTOCOL, &mut io).now_or_never();
        assert!(second.is_none(), "read beyond the budget");
        assert_eq!(
            budget.available(),
            400 * KIB - held,
            "given back when given up"
        );
        // ...and is read once the first is dropped.
        drop(first);
        assert_eq!(budget.available(), 400 * KIB);
        let second = read(&mut codec, junk(300 * KIB));
        drop(second);

        // 100 KiB of an announced 40 MiB, and then nothing.
        let mut sent = (40u32 << 20).to_be_bytes().to_vec();
        sent.extend(std::iter::repeat_n(b'x', 100 * KIB));
        let mut stall = Stall(Cursor::new(sent));
        let protocol = RPC_PROTOCOL;
        let mut reading = Box::pin(codec.read_request(&protocol, &mut stall));
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(reading.as_mut().poll(&mut cx).is_pending());
        let holding = 400 * KIB - budget.available();
        assert!((100 * KIB..=200 * KIB).contains(&holding), "{holding}");
        drop(reading);
        assert_eq!(budget.available(), 400 * KIB);
    }

    /// An answer holds its bytes until it is written (dropped); one the
    /// budget cannot hold is a refusal to ask again, which holds nothing.
    #[test]
    fn answers_hold_their_bytes_and_past_the_budget_are_refusals() {
        const KIB: usize = 1 << 10;
        let budget = ByteBudget::new(600 * KIB);
        let piece = |n: usize| Response::Blob(vec![7; n * KIB]);
        let first = answer(&budget, piece(400));
        assert!(matches!(first.frame, Response::Blob(_)));
        assert!(first.share.bytes() > 400 * KIB);
        let second = answer(&budget, piece(400));
        let Response::Refused(refusal) = &second.frame else {
            panic!("past the budget: {:?}", second.frame);
        };
        assert!(!refusal.is_permanent(), "{refusal}");
        assert_eq!(second.share.bytes(), 0);
        // A small answer still fits beside the first.
        assert!(matches!(
            answer(&budget, Response::Done).frame,
            Response::Done
        ));
        drop(first);
        assert_eq!(budget.available(), 600 * KIB);
        assert!(matches!(
            answer(&budget, piece(400)).frame,
            Response::Blob(_)
        ));
    }
}
