//! Validation: the raw file turned into protocol types, every error naming
//! the field and the fix.

use super::api;
use super::bad::{Bad, bad, count};
use super::directory::{calendar, consultants, deadlines, services};
use super::file::{DEFAULT_KEEP_DELIVERED, RawApi, RawConfig, RawLog, RawStorage, RawVideo};
use super::{
    BootstrapPeer, DEFAULT_METRICS_LISTEN, DirectoryScope, LogConfig, LogFormat, NodeConfig,
    TurnServer, VideoConfig,
};
use konsilium_protocol::identity::{AuthorityKey, OrgId};
use konsilium_protocol::limits::MAX_ADDRESSES;
use konsilium_protocol::outbox::Custody;
use konsilium_protocol::urgency::Deadlines;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use std::path::{Path, PathBuf};

impl RawConfig {
    pub(super) fn validate(self, base_dir: &Path) -> Result<NodeConfig, Bad> {
        let data_dir = resolve(
            "organization.data_dir",
            &self.organization.data_dir,
            base_dir,
        )?;
        let certificate_path = resolve(
            "organization.certificate",
            &self.organization.certificate,
            base_dir,
        )?;

        if self.federation.roots.is_empty() {
            return Err(bad(
                "federation.roots",
                "must list at least one root authority key (64 hex characters), as \
                 published by your federation; without one no peer can be trusted",
            ));
        }
        let mut roots = Vec::new();
        for (i, text) in self.federation.roots.iter().enumerate() {
            let field = format!("federation.roots[{i}]");
            let key = root_key(&field, text)?;
            if let Some(j) = roots.iter().position(|k| *k == key) {
                return Err(bad(
                    field,
                    format!("repeats federation.roots[{j}]: list each root once"),
                ));
            }
            roots.push(key);
        }
        let revocation_paths = self
            .federation
            .revocations
            .iter()
            .enumerate()
            .map(|(i, p)| resolve(&format!("federation.revocations[{i}]"), p, base_dir))
            .collect::<Result<_, _>>()?;

        let network = self.network;
        if network.listen.is_empty() {
            return Err(bad(
                "network.listen",
                "must list at least one address to listen on, e.g. \
                 [\"/ip4/0.0.0.0/tcp/7400\", \"/ip4/0.0.0.0/udp/7400/quic-v1\"]",
            ));
        }
        let listen = network
            .listen
            .iter()
            .enumerate()
            .map(|(i, a)| address(&format!("network.listen[{i}]"), a, Role::Listen).map(|p| p.0))
            .collect::<Result<_, _>>()?;
        let bootstrap = network
            .bootstrap
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let (address, peer) =
                    address(&format!("network.bootstrap[{i}]"), a, Role::Bootstrap)?;
                let peer = peer.expect("bootstrap addresses are checked to end in /p2p/");
                Ok(BootstrapPeer { peer, address })
            })
            .collect::<Result<_, _>>()?;
        count("network.external", network.external.len(), MAX_ADDRESSES)?;
        let external = network
            .external
            .iter()
            .enumerate()
            .map(|(i, a)| {
                address(&format!("network.external[{i}]"), a, Role::External).map(|p| p.0)
            })
            .collect::<Result<_, _>>()?;
        let relay_via = network
            .relay_via
            .iter()
            .enumerate()
            .map(|(i, text)| {
                text.trim()
                    .parse::<OrgId>()
                    .map_err(|e| bad(format!("network.relay_via[{i}]"), e.to_string()))
            })
            .collect::<Result<_, _>>()?;

        let openness = super::role::openness(&network)?;
        let directory_scope = match network.directory_scope.as_deref().map(str::trim) {
            None | Some("federation") => DirectoryScope::Federation,
            Some("region") => DirectoryScope::Region,
            Some(other) => {
                return Err(bad(
                    "network.directory_scope",
                    format!("{other:?} is not a scope: use \"federation\" or \"region\""),
                ));
            }
        };
        let directory = self.directory;
        let calendar = calendar(&directory)?;
        let deadlines = match &directory.deadlines {
            Some(raw) => deadlines("directory.deadlines", raw, Deadlines::default())?,
            None => Deadlines::default(),
        };
        let services = services(&directory.services, deadlines)?;
        let consultants = consultants(&directory.consultants)?;
        let log = log(self.log)?;
        let keep_delivered = match self.storage.keep_delivered_attachments_hours {
            None => DEFAULT_KEEP_DELIVERED,
            Some(h) if h <= 24 * 365 => std::time::Duration::from_secs(h * 3600),
            Some(h) => {
                return Err(bad(
                    "storage.keep_delivered_attachments_hours",
                    format!("{h} hours is more than a year: use 0 to 8760"),
                ));
            }
        };
        let custody = custody(&self.storage)?;
        let api = match self.api {
            None => None,
            Some(raw) => Some(api_settings(raw)?),
        };
        if openness.role == super::NodeRole::Bootstrap {
            bootstrap_holds_nothing(&services, &consultants, api.is_some())?;
        }
        let metrics = match self.metrics {
            None => None,
            Some(raw) => Some(match raw.listen.as_deref().map(str::trim) {
                None => DEFAULT_METRICS_LISTEN,
                Some(text) => text.parse().map_err(|_| {
                    bad(
                        "metrics.listen",
                        format!("{text:?} is not an address: use IP:port, e.g. \"127.0.0.1:9464\""),
                    )
                })?,
            }),
        };

        let video = self.video.map(video_settings).transpose()?;
        let stun_listen = match self.stun {
            None => None,
            Some(raw) => Some(raw.listen.trim().parse().map_err(|_| {
                bad(
                    "stun.listen",
                    format!(
                        "{:?} is not an address: use IP:port, e.g. \"0.0.0.0:3478\"",
                        raw.listen
                    ),
                )
            })?),
        };
        Ok(NodeConfig {
            data_dir,
            certificate_path,
            roots,
            revocation_paths,
            listen,
            bootstrap,
            external,
            relay_via,
            directory_scope,
            openness,
            calendar,
            deadlines,
            services,
            consultants,
            log,
            api,
            metrics,
            keep_delivered,
            custody,
            video,
            stun_listen,
        })
    }
}

/// What a relay holds for each organization: the defaults unless the
/// operator sized them for the relay's disk.
fn custody(storage: &RawStorage) -> Result<Custody, Bad> {
    let mut custody = Custody::DEFAULT;
    if let Some(n) = storage.relay_custody_packages {
        custody.packages = match n {
            1..=1_000_000 => n as usize,
            _ => {
                let why = format!("{n}: use 1 to 1000000 packages per organization");
                return Err(bad("storage.relay_custody_packages", why));
            }
        };
    }
    if let Some(gib) = storage.relay_custody_gib {
        custody.bytes = match gib {
            1..=1_000_000 => gib << 30,
            _ => {
                let why = format!("{gib}: use 1 to 1000000 GiB per organization");
                return Err(bad("storage.relay_custody_gib", why));
            }
        };
    }
    Ok(custody)
}

fn api_settings(raw: RawApi) -> Result<api::ApiConfig, Bad> {
    let listen = match raw.listen.as_deref().map(str::trim) {
        None => api::DEFAULT_LISTEN,
        Some(text) => text.parse().map_err(|_| {
            bad(
                "api.listen",
                format!("{text:?} is not an address: use IP:port, e.g. \"127.0.0.1:7480\""),
            )
        })?,
    };
    if raw.users.is_empty() {
        return Err(bad(
            "api.users",
            "at least one user is needed: create a token with `konsilium api-token`",
        ));
    }
    let mut users = Vec::new();
    for (i, u) in raw.users.iter().enumerate() {
        let role = u
            .role
            .parse()
            .map_err(|e: konsilium_protocol::limits::FieldError| {
                bad(format!("api.users[{i}].role"), e.to_string())
            })?;
        if u.name.trim().is_empty() {
            return Err(bad(format!("api.users[{i}].name"), "must not be empty"));
        }
        let user = api::User::with_token_hash_hex(u.name.trim(), role, &u.token_hash)
            .map_err(|e| bad(format!("api.users[{i}].token_hash"), e.to_string()))?;
        // A token identifies one user: shared, it would sign in as
        // whichever of them comes first, and the journal would name them.
        if let Some(j) = users
            .iter()
            .position(|other: &api::User| other.token_hash == user.token_hash)
        {
            return Err(bad(
                format!("api.users[{i}].token_hash"),
                format!(
                    "the same token as api.users[{j}] ({:?}): create a token of its own with `konsilium api-token`",
                    users[j].name
                ),
            ));
        }
        users.push(user);
    }
    let tls = match (raw.tls_certificate, raw.tls_key) {
        (None, None) => None,
        (Some(certificate), Some(key)) => Some(api::TlsFiles {
            certificate: certificate.into(),
            key: key.into(),
        }),
        (Some(_), None) => return Err(bad("api.tls_key", "tls_certificate needs its key")),
        (None, Some(_)) => {
            return Err(bad("api.tls_certificate", "tls_key needs its certificate"));
        }
    };
    Ok(api::ApiConfig {
        listen,
        users,
        upload_dir: None,
        tls,
    })
}

/// `[video]`: a TURN server needs credentials, and relaying everything
/// needs a TURN server, so a config that would leave video with no path
/// is refused at load rather than at the first session.
fn video_settings(raw: RawVideo) -> Result<VideoConfig, Bad> {
    let listen = video_listen(&raw.listen)?;
    let stun = (raw.stun.into_iter().enumerate())
        .map(|(i, server)| server_address(format!("video.stun[{i}]"), "STUN", server))
        .collect::<Result<_, _>>()?;
    let mut turn = Vec::new();
    for (i, raw) in raw.turn.into_iter().enumerate() {
        let field = |name: &str| format!("video.turn[{i}].{name}");
        let server = server_address(field("server"), "TURN", raw.server)?;
        for (name, value) in [("username", &raw.username), ("password", &raw.password)] {
            if value.is_empty() {
                return Err(bad(
                    field(name),
                    format!("the TURN server {server} needs a {name}"),
                ));
            }
        }
        turn.push(TurnServer {
            server,
            username: raw.username,
            password: raw.password,
        });
    }
    if raw.relay_only && turn.is_empty() {
        return Err(bad(
            "video.relay_only",
            "relaying all media needs a TURN server: add a [[video.turn]] section",
        ));
    }
    Ok(VideoConfig {
        listen,
        stun,
        turn,
        relay_only: raw.relay_only,
    })
}

/// `host:port` of a STUN or TURN server: a name or an address, and a
/// port. Names are resolved when used, so a server that moves is followed.
fn server_address(field: String, kind: &str, server: String) -> Result<String, Bad> {
    let server = server.trim().to_owned();
    let well_formed = server.parse::<std::net::SocketAddr>().is_ok()
        || server.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && !host.contains(':') && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
    if !well_formed {
        let example = kind.to_lowercase();
        return Err(bad(
            field,
            format!(
                "{server:?} is not a {kind} server: use host:port, e.g. \"{example}.region.example:3478\""
            ),
        ));
    }
    Ok(server)
}

/// Video's host candidate is this address, so it must be one the other
/// sites can send to: an interface's, never "any".
fn video_listen(text: &str) -> Result<std::net::SocketAddr, Bad> {
    let addr: std::net::SocketAddr = text.trim().parse().map_err(|_| {
        bad(
            "video.listen",
            format!("{text:?} is not an address: use IP:port, e.g. \"192.0.2.10:7401\""),
        )
    })?;
    if addr.ip().is_unspecified() {
        return Err(bad(
            "video.listen",
            format!(
                "{addr} listens everywhere, but other sites need the one address to send \
                 media to: name this host's address, e.g. \"192.0.2.10:{}\"",
                addr.port()
            ),
        ));
    }
    Ok(addr)
}

/// A bootstrap node helps nodes find and reach each other and nothing else:
/// a service, a consultant or an API on it would be clinical work with
/// nowhere to go.
fn bootstrap_holds_nothing(
    services: &[konsilium_protocol::directory::Service],
    consultants: &[konsilium_protocol::directory::Consultant],
    api: bool,
) -> Result<(), Bad> {
    let why = "a bootstrap node (network.role = \"bootstrap\") takes no consultations";
    if !services.is_empty() {
        return Err(bad("directory.services", format!("{why}: remove them")));
    }
    if !consultants.is_empty() {
        return Err(bad("directory.consultants", format!("{why}: remove them")));
    }
    if api {
        return Err(bad("api", format!("{why}: remove the [api] section")));
    }
    Ok(())
}

fn resolve(field: &str, text: &str, base_dir: &Path) -> Result<PathBuf, Bad> {
    if text.trim().is_empty() {
        return Err(bad(field, "must not be empty: give a path"));
    }
    let path = Path::new(text);
    if path.is_absolute() {
        return Ok(path.to_owned());
    }
    std::path::absolute(base_dir.join(path)).map_err(|e| {
        bad(
            field,
            format!(
                "cannot resolve {text:?} relative to {}: {e}; use an absolute path",
                base_dir.display()
            ),
        )
    })
}

fn root_key(field: &str, text: &str) -> Result<AuthorityKey, Bad> {
    let hex = text.trim();
    let shape = if hex.len() != 64 {
        Some(format!("{} characters", hex.chars().count()))
    } else if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Some("characters other than 0-9 and a-f".to_owned())
    } else {
        None
    };
    if let Some(found) = shape {
        return Err(bad(
            field,
            format!(
                "{text:?} is not a root key: expected 64 hex characters (the root \
                 authority's public key as your federation publishes it), found {found}"
            ),
        ));
    }
    hex.parse().map_err(|e| {
        bad(
            field,
            format!("{text:?} is not a usable root key ({e}); check it was copied completely"),
        )
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Listen,
    External,
    Bootstrap,
}

/// Parses and checks an address's shape against the transports the node
/// runs (TCP and QUIC v1), so a wrong address fails at start with its field
/// name instead of as a dial or bind error later.
fn address(field: &str, text: &str, role: Role) -> Result<(Multiaddr, Option<PeerId>), Bad> {
    let example = match role {
        Role::Listen => "/ip4/0.0.0.0/tcp/7400",
        Role::External => "/dns4/telemed.example.org/tcp/7400",
        Role::Bootstrap => "/ip4/203.0.113.7/tcp/7400/p2p/12D3KooW...",
    };
    let addr: Multiaddr = text.trim().parse().map_err(|e| {
        bad(
            field,
            format!("{text:?} is not a multiaddr ({e}): write addresses like \"{example}\""),
        )
    })?;
    let parts: Vec<Protocol<'_>> = addr.iter().collect();
    let host_ok = match parts.first() {
        Some(Protocol::Ip4(_) | Protocol::Ip6(_)) => true,
        Some(Protocol::Dns(_) | Protocol::Dns4(_) | Protocol::Dns6(_)) => role != Role::Listen,
        _ => false,
    };
    if !host_ok {
        let hosts = if role == Role::Listen {
            "/ip4/ or /ip6/ (a node listens on its own interfaces)"
        } else {
            "/ip4/, /ip6/, /dns/, /dns4/ or /dns6/"
        };
        return Err(bad(
            field,
            format!("{text:?} must start with {hosts}, like \"{example}\""),
        ));
    }
    let (port, rest) = match &parts[1..] {
        [Protocol::Tcp(port), rest @ ..] => (*port, rest),
        [Protocol::Udp(port), Protocol::QuicV1, rest @ ..] => (*port, rest),
        [Protocol::Udp(_), Protocol::Quic, ..] => {
            return Err(bad(
                field,
                format!("{text:?} uses the old draft /quic: write /quic-v1 instead"),
            ));
        }
        _ => {
            return Err(bad(
                field,
                format!(
                    "{text:?} names no transport this node speaks: after the host put \
                     /tcp/<port> or /udp/<port>/quic-v1"
                ),
            ));
        }
    };
    if port == 0 && role != Role::Listen {
        return Err(bad(
            field,
            format!("{text:?} has port 0, which cannot be dialed: give the real port"),
        ));
    }
    match (role, rest) {
        (Role::Bootstrap, [Protocol::P2p(peer)]) => Ok((addr.clone(), Some(*peer))),
        (Role::Bootstrap, []) => Err(bad(
            field,
            format!(
                "{text:?} does not end in /p2p/<peer id>: append the bootstrap node's \
                 peer id (its operator can tell you), so the first connection is authenticated"
            ),
        )),
        (Role::Listen | Role::External, []) => Ok((addr.clone(), None)),
        (Role::Listen | Role::External, [Protocol::P2p(_)]) => Err(bad(
            field,
            format!(
                "{text:?} ends in /p2p/: drop that part, this node's own peer id is \
                 added automatically"
            ),
        )),
        (_, [next, ..]) => Err(bad(
            field,
            format!("{text:?}: unexpected {next} after the transport; remove it"),
        )),
    }
}

fn log(raw: RawLog) -> Result<LogConfig, Bad> {
    let format = match raw.format.as_deref().map(str::trim) {
        None => LogFormat::Text,
        Some(f) if f.eq_ignore_ascii_case("text") => LogFormat::Text,
        Some(f) if f.eq_ignore_ascii_case("json") => LogFormat::Json,
        Some(other) => {
            return Err(bad(
                "log.format",
                format!("{other:?} is not a log format: use \"text\" or \"json\""),
            ));
        }
    };
    let level = raw.level.as_deref().map_or("info", str::trim).to_owned();
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let is_level = LEVELS.iter().any(|l| l.eq_ignore_ascii_case(&level));
    // A single word that is not a level would be read as a target name and
    // silently log nothing useful, so only directive lists go to the parser.
    let is_directives = level.contains(['=', ',']);
    if !is_level && !is_directives {
        return Err(bad(
            "log.level",
            format!(
                "{level:?} is not a log level: use one of {}",
                LEVELS.join(", ")
            ),
        ));
    }
    if is_directives {
        tracing_subscriber::EnvFilter::builder()
            .parse(&level)
            .map_err(|e| {
                bad(
                    "log.level",
                    format!(
                        "{level:?} is not a valid filter ({e}): use a level like \"info\" or \
                         directives like \"info,konsilium=debug\""
                    ),
                )
            })?;
    }
    Ok(LogConfig { format, level })
}
