//! Carries protocol frames on libp2p request-response streams: a 4-byte
//! big-endian length, then one wire frame.
//!
//! Two protocols, each with its own limit: Hello (1 MiB, the only one a peer
//! can use before its certificate is verified) and the RPC of admitted peers.
//! The length prefix is checked against the kind's limit, and the frame is
//! read as it arrives, never allocated from the prefix: a peer that announces
//! 80 MiB and sends 10 bytes costs 10 bytes.

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use konsilium_protocol::rpc::{Hello, HelloAnswer, Request, Response};
use konsilium_protocol::wire::{self, WireMessage};
use libp2p::StreamProtocol;
use std::io;
use std::marker::PhantomData;

pub const HELLO_PROTOCOL: StreamProtocol = StreamProtocol::new("/konsilium/hello/1");
/// Version 2: Hello moved to its own protocol.
pub const RPC_PROTOCOL: StreamProtocol = StreamProtocol::new("/konsilium/rpc/2");

/// A request-response codec for one pair of wire messages.
pub struct FrameCodec<Req, Resp>(PhantomData<fn() -> (Req, Resp)>);

impl<Req, Resp> Clone for FrameCodec<Req, Resp> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<Req, Resp> Copy for FrameCodec<Req, Resp> {}

impl<Req, Resp> Default for FrameCodec<Req, Resp> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

pub type HelloCodec = FrameCodec<Hello, HelloAnswer>;

/// The RPC of admitted peers: like [`FrameCodec`], except that a request
/// that is not a frame of its kind is handed on as [`Inbound::Malformed`]
/// instead of failing the stream. libp2p drops a codec's read errors
/// without saying whose stream it was, and the node must know who sent
/// what no honest node would, to score it.
#[derive(Clone, Copy, Default)]
pub struct RpcCodec;

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
    Ok(read_checked(io).await??)
}

/// Reads one frame; the outer error is the stream's, the inner what the
/// frame itself is wrong in.
async fn read_checked<M: WireMessage, T: AsyncRead + Unpin + Send>(
    io: &mut T,
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
    (&mut *io).take(len as u64).read_to_end(&mut frame).await?;
    if frame.len() != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "{} frame ended after {} of {len} bytes",
                M::KIND,
                frame.len()
            ),
        ));
    }
    Ok(wire::decode(&frame).map_err(MalformedFrame::from))
}

async fn write_frame<M: WireMessage, T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    msg: &M,
) -> io::Result<()> {
    let frame = wire::encode(msg).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    io.write_all(&(frame.len() as u32).to_be_bytes()).await?;
    io.write_all(&frame).await?;
    io.close().await
}

impl<Req, Resp> libp2p::request_response::Codec for FrameCodec<Req, Resp>
where
    Req: WireMessage + Send + Sync + 'static,
    Resp: WireMessage + Send + Sync + 'static,
{
    type Protocol = StreamProtocol;
    type Request = Req;
    type Response = Resp;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Req> {
        read_frame(io).await
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
        req: Req,
    ) -> io::Result<()> {
        write_frame(io, &req).await
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

impl libp2p::request_response::Codec for RpcCodec {
    type Protocol = StreamProtocol;
    type Request = Inbound<Request>;
    type Response = Response;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Inbound<Request>> {
        Ok(match read_checked(io).await? {
            Ok(request) => Inbound::Frame(request),
            Err(malformed) => Inbound::Malformed(malformed),
        })
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Response> {
        read_frame(io).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Inbound<Request>,
    ) -> io::Result<()> {
        match req {
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
        res: Response,
    ) -> io::Result<()> {
        write_frame(io, &res).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;
    use libp2p::request_response::Codec;

    /// A stream that announces a large frame and then stalls: what the
    /// reader allocated is what arrived, not what was announced.
    #[test]
    fn an_announced_length_is_not_allocated_before_the_bytes_arrive() {
        let mut bytes = (40u32 << 20).to_be_bytes().to_vec();
        bytes.extend_from_slice(b"KS\x01\x0a only a few bytes");
        let mut io = Cursor::new(bytes);
        let err =
            futures::executor::block_on(RpcCodec.read_request(&RPC_PROTOCOL, &mut io)).unwrap_err();
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
            futures::executor::block_on(RpcCodec.read_request(&RPC_PROTOCOL, &mut io))
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
}
