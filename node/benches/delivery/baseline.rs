//! The baseline: plain libp2p swarms doing the same network legs as the
//! nodes (request-response round trips, a relay chain, one bulk stream),
//! so every row is a ratio measured in the same run.

use super::*;

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BytesCodec;

pub(crate) async fn read_bytes<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > 1 << 20 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "frame too long"));
    }
    let mut frame = vec![0u8; len];
    io.read_exact(&mut frame).await?;
    Ok(frame)
}

pub(crate) async fn write_bytes<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    bytes: &[u8],
) -> io::Result<()> {
    io.write_all(&(bytes.len() as u32).to_be_bytes()).await?;
    io.write_all(bytes).await?;
    io.close().await
}

impl request_response::Codec for BytesCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_bytes(io).await
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_bytes(io).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Vec<u8>,
    ) -> io::Result<()> {
        write_bytes(io, &request).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Vec<u8>,
    ) -> io::Result<()> {
        write_bytes(io, &response).await
    }
}

/// A raw stream dressed as request-response, because the only libp2p
/// features this crate may use are the node's own. The request is how many
/// bytes to send; the responder writes that many bytes and closes; the
/// requester reads to the end, counting. Neither side holds more than one
/// buffer, so this is one Yamux substream's throughput and nothing else.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BulkCodec;

/// Copy granularity for the raw stream: large enough that the loop is not
/// the bottleneck, the same size as the node's attachment pieces.
const BULK_BUFFER: usize = 1 << 20;

impl request_response::Codec for BulkCodec {
    type Protocol = StreamProtocol;
    type Request = u64;
    type Response = u64;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<u64> {
        let mut n = [0u8; 8];
        io.read_exact(&mut n).await?;
        Ok(u64::from_be_bytes(n))
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<u64> {
        let mut buf = vec![0u8; BULK_BUFFER];
        let mut total = 0u64;
        loop {
            match io.read(&mut buf).await? {
                0 => return Ok(total),
                n => total += n as u64,
            }
        }
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        n: u64,
    ) -> io::Result<()> {
        io.write_all(&n.to_be_bytes()).await?;
        io.close().await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        n: u64,
    ) -> io::Result<()> {
        let buf = vec![0xa5u8; BULK_BUFFER];
        let mut left = n;
        while left > 0 {
            let chunk = left.min(BULK_BUFFER as u64) as usize;
            io.write_all(&buf[..chunk]).await?;
            left -= chunk as u64;
        }
        io.close().await
    }
}

/// Same transport stack and TCP settings as `node::start` (TCP with
/// nodelay, Noise, Yamux, the node's swarm settings), so the baseline differs from
/// the node only in what the node does, not in how bytes travel.
pub(crate) fn raw_swarm<C>(
    protocol: StreamProtocol,
    timeout: Duration,
) -> Swarm<request_response::Behaviour<C>>
where
    C: request_response::Codec<Protocol = StreamProtocol> + Clone + Default + Send + 'static,
{
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("TCP + Noise + Yamux builds")
        .with_behaviour(|_| {
            request_response::Behaviour::new(
                [(protocol, request_response::ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(timeout),
            )
        })
        .expect("behaviour builds")
        .with_swarm_config(konsilium_node::net::swarm_config)
        .build()
}

/// Listens on loopback and, with `next`, connects to it; returns once both
/// are done so no sample pays for connecting.
pub(crate) async fn listen_and_connect<C>(
    swarm: &mut Swarm<request_response::Behaviour<C>>,
    next: Option<(PeerId, &Multiaddr)>,
) -> Multiaddr
where
    C: request_response::Codec + Clone + Send + 'static,
{
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr"))
        .expect("listen on loopback");
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break address;
        }
    };
    if let Some((peer, at)) = next {
        swarm
            .dial(at.clone().with(Protocol::P2p(peer)))
            .expect("dial the next raw node");
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == peer => break,
                SwarmEvent::OutgoingConnectionError { error, .. } => {
                    panic!("raw dial failed: {error}")
                }
                _ => {}
            }
        }
    }
    addr
}

pub(crate) type RawSwarm = Swarm<request_response::Behaviour<BytesCodec>>;

/// A request handed to the head of a raw chain; answered when the whole
/// chain has answered.
pub(crate) type RawCommand = (Vec<u8>, oneshot::Sender<()>);

/// A running raw swarm. Dropping the handle stops its task.
pub(crate) struct RawHandle {
    peer: PeerId,
    addr: Multiaddr,
    commands: mpsc::Sender<RawCommand>,
}

/// Who is waiting for the answer to one of our outbound requests.
pub(crate) enum Waiter {
    /// The bench task, through `RawHandle::commands`.
    Caller(oneshot::Sender<()>),
    /// The previous swarm in the chain, whose request we forwarded.
    Upstream(ResponseChannel<Vec<u8>>),
}

/// Starts a raw swarm on loopback. With `next`, it is connected to `next`
/// before this returns, forwards every inbound request there and answers
/// once `next` has answered; without, it answers at once.
pub(crate) async fn raw_node(next: Option<&RawHandle>) -> RawHandle {
    let mut swarm: RawSwarm = raw_swarm(RAW_PROTOCOL, PATIENCE);
    let addr = listen_and_connect(&mut swarm, next.map(|n| (n.peer, &n.addr))).await;
    let peer = *swarm.local_peer_id();
    let (commands, rx) = mpsc::channel(8);
    tokio::spawn(raw_loop(swarm, next.map(|n| n.peer), rx));
    RawHandle {
        peer,
        addr,
        commands,
    }
}

pub(crate) async fn raw_loop(
    mut swarm: RawSwarm,
    next: Option<PeerId>,
    mut commands: mpsc::Receiver<RawCommand>,
) {
    let mut waiting: HashMap<OutboundRequestId, Waiter> = HashMap::new();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some((payload, done)) => {
                    let to = next.expect("only a node with a next hop takes requests");
                    let id = swarm.behaviour_mut().send_request(&to, payload);
                    waiting.insert(id, Waiter::Caller(done));
                }
                None => return,
            },
            event = swarm.select_next_some() => match event {
                SwarmEvent::Behaviour(request_response::Event::Message { message, .. }) => {
                    match message {
                        request_response::Message::Request { request, channel, .. } => match next {
                            Some(to) => {
                                let id = swarm.behaviour_mut().send_request(&to, request);
                                waiting.insert(id, Waiter::Upstream(channel));
                            }
                            None => {
                                let _ = swarm
                                    .behaviour_mut()
                                    .send_response(channel, vec![0xa5; RESPONSE_BYTES]);
                            }
                        },
                        request_response::Message::Response { request_id, response } => {
                            match waiting.remove(&request_id) {
                                Some(Waiter::Caller(done)) => {
                                    let _ = done.send(());
                                }
                                Some(Waiter::Upstream(channel)) => {
                                    let _ = swarm.behaviour_mut().send_response(channel, response);
                                }
                                None => {}
                            }
                        }
                    }
                }
                // Dropping the waiter fails the sample loudly rather than hanging it.
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                    request_id,
                    ..
                }) => {
                    waiting.remove(&request_id);
                }
                _ => {}
            },
        }
    }
}

/// One request through a raw chain, timed like a node sample: from handing
/// it to another task until that task reports the answer.
pub(crate) async fn raw_sample(head: &RawHandle) -> Duration {
    let payload = vec![0x5a; BODY_BYTES];
    let (done, answered) = oneshot::channel();
    let t0 = Instant::now();
    head.commands
        .send((payload, done))
        .await
        .expect("raw node running");
    answered.await.expect("raw request failed");
    t0.elapsed()
}

/// `count` requests through a raw chain, up to `window` in flight (within
/// request-response's default limit of concurrent streams, beyond which a
/// peer drops them), timed until the last answer: the throughput the
/// sustained row is compared to.
pub(crate) async fn raw_burst(head: &RawHandle, count: usize, window: usize) -> Duration {
    let t0 = Instant::now();
    futures::stream::iter(0..count)
        .map(|_| async {
            let (done, answered) = oneshot::channel();
            head.commands
                .send((vec![0x5a; BODY_BYTES], done))
                .await
                .expect("raw node running");
            answered.await.expect("raw request failed");
        })
        .buffer_unordered(window)
        .collect::<Vec<()>>()
        .await;
    t0.elapsed()
}

pub(crate) type BulkSwarm = Swarm<request_response::Behaviour<BulkCodec>>;

/// How many bytes to pull, and where to report how many arrived.
pub(crate) type BulkCommand = (u64, oneshot::Sender<u64>);

/// A connected pair of raw swarms for the stream baseline; the requester
/// runs in its own task like a node does. Dropping this stops both.
pub(crate) struct BulkPair {
    commands: mpsc::Sender<BulkCommand>,
}

pub(crate) async fn bulk_pair() -> BulkPair {
    let mut server: BulkSwarm = raw_swarm(BULK_PROTOCOL, BULK_PATIENCE);
    let server_addr = listen_and_connect(&mut server, None).await;
    let server_peer = *server.local_peer_id();
    let (stop_server, mut stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut stopped => return,
                event = server.select_next_some() => {
                    if let SwarmEvent::Behaviour(request_response::Event::Message {
                        message: request_response::Message::Request { request, channel, .. },
                        ..
                    }) = event
                    {
                        let _ = server.behaviour_mut().send_response(channel, request);
                    }
                }
            }
        }
    });
    let mut client: BulkSwarm = raw_swarm(BULK_PROTOCOL, BULK_PATIENCE);
    listen_and_connect(&mut client, Some((server_peer, &server_addr))).await;
    let (commands, mut rx) = mpsc::channel::<BulkCommand>(1);
    tokio::spawn(async move {
        // Dropped when the client task ends, which stops the server task.
        let _stop_server = stop_server;
        let mut waiting: HashMap<OutboundRequestId, oneshot::Sender<u64>> = HashMap::new();
        loop {
            tokio::select! {
                command = rx.recv() => match command {
                    Some((n, done)) => {
                        let id = client.behaviour_mut().send_request(&server_peer, n);
                        waiting.insert(id, done);
                    }
                    None => return,
                },
                event = client.select_next_some() => match event {
                    SwarmEvent::Behaviour(request_response::Event::Message {
                        message: request_response::Message::Response { request_id, response },
                        ..
                    }) => {
                        if let Some(done) = waiting.remove(&request_id) {
                            let _ = done.send(response);
                        }
                    }
                    SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                        request_id,
                        ..
                    }) => {
                        waiting.remove(&request_id);
                    }
                    _ => {}
                },
            }
        }
    });
    BulkPair { commands }
}

pub(crate) async fn bulk_sample(pair: &BulkPair, bytes: u64) -> Duration {
    let (done, arrived) = oneshot::channel();
    let t0 = Instant::now();
    pair.commands
        .send((bytes, done))
        .await
        .expect("raw stream running");
    let got = arrived.await.expect("raw stream failed");
    let elapsed = t0.elapsed();
    assert_eq!(got, bytes, "raw stream moved every byte");
    elapsed
}

// ---------------------------------------------------------------------------
// Konsilium nodes
// ---------------------------------------------------------------------------
