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
pub type RpcCodec = FrameCodec<Request, Response>;

async fn read_frame<M: WireMessage, T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<M> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > M::MAX_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} frame of {len} bytes exceeds {}", M::KIND, M::MAX_LEN),
        ));
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
    wire::decode(&frame).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
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
}
