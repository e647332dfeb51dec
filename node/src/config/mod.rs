//! The node's configuration file (TOML).
//!
//! The file is written and edited by hospital IT staff, often once and under
//! time pressure, so it is read in two steps: serde turns the text into plain
//! strings and numbers (refusing unknown keys, so a typo cannot silently fall
//! back to a default), then validation turns them into protocol types and
//! names the exact field (`network.listen[1]`, `directory.services[0].specialty`)
//! and the fix in every error. Everything the directory record will carry is
//! checked here with the same rules as `DirectoryRecord::check`, so a node
//! never starts with a configuration its peers would refuse to store.

pub mod api;
mod bad;
mod directory;
mod file;
mod profile;
mod role;
mod template;
#[cfg(test)]
mod tests;
mod validate;

pub use file::DEFAULT_KEEP_DELIVERED;
pub use profile::Profile;
pub use role::{NodeRole, Openness};
pub use template::template;

use self::bad::Bad;
use self::file::RawConfig;
use konsilium_protocol::calendar::WorkingCalendar;
use konsilium_protocol::cert::{CertChain, RevocationNotice};
use konsilium_protocol::directory::{Consultant, Service};
use konsilium_protocol::identity::{AuthorityKey, OrgId};
use konsilium_protocol::urgency::Deadlines;
use konsilium_protocol::wire::{self, WireError, WireMessage};
use libp2p::{Multiaddr, PeerId};
use std::path::{Path, PathBuf};
use std::{fs, io};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no config file at {}: create one with `konsilium init`", .path.display())]
    NotFound { path: PathBuf },
    #[error("cannot read config file {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Syntax errors, unknown or missing keys and wrong value types, as the
    /// TOML parser reports them (with the key, line and column).
    #[error("{}{message}", in_file(.file))]
    Toml {
        file: Option<PathBuf>,
        message: String,
    },
    /// A value that is well-formed TOML but not a valid setting.
    #[error("{}{field}: {reason}", in_file(.file))]
    Invalid {
        file: Option<PathBuf>,
        field: String,
        reason: String,
    },
    #[error("{field}: cannot read {}: {source}; {hint}", .path.display())]
    ReadFile {
        field: String,
        path: PathBuf,
        #[source]
        source: io::Error,
        hint: &'static str,
    },
    #[error("{field}: {} is not a valid {what} file: {source}", .path.display())]
    Decode {
        field: String,
        path: PathBuf,
        what: &'static str,
        #[source]
        source: WireError,
    },
}

fn in_file(file: &Option<PathBuf>) -> String {
    match file {
        Some(path) => format!("{}: ", path.display()),
        None => String::new(),
    }
}

/// Where `/metrics` is served when `[metrics]` gives no address.
pub const DEFAULT_METRICS_LISTEN: std::net::SocketAddr = std::net::SocketAddr::V4(
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 9464),
);

/// A validated configuration. Paths are absolute, so the node behaves the
/// same whatever directory it was started from.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Holds `keys/`, the database and blobs.
    pub data_dir: PathBuf,
    pub certificate_path: PathBuf,
    pub roots: Vec<AuthorityKey>,
    pub revocation_paths: Vec<PathBuf>,
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<BootstrapPeer>,
    pub external: Vec<Multiaddr>,
    pub relay_via: Vec<OrgId>,
    pub directory_scope: DirectoryScope,
    pub openness: Openness,
    pub calendar: WorkingCalendar,
    pub deadlines: Deadlines,
    pub services: Vec<Service>,
    pub consultants: Vec<Consultant>,
    pub log: LogConfig,
    /// The local HTTP API for the hospital information system and clinicians; off when absent.
    pub api: Option<api::ApiConfig>,
    /// Where Prometheus scrapes `/metrics`; off when the section is absent.
    pub metrics: Option<std::net::SocketAddr>,
    /// How long attachments this node sent or relayed are kept after the
    /// recipient's receipt.
    pub keep_delivered: std::time::Duration,
    /// What this node holds at most for each organization it relays for.
    pub custody: konsilium_protocol::outbox::Custody,
    /// How video reaches other sites; video is off when absent.
    pub video: Option<VideoConfig>,
    /// Where this node answers STUN Binding requests; off when absent.
    pub stun_listen: Option<std::net::SocketAddr>,
}

/// The media plane's settings (`[video]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoConfig {
    /// The UDP address video links use: an interface's, never "any".
    pub listen: std::net::SocketAddr,
    /// STUN servers (`host:port`) video asks what its port maps to.
    pub stun: Vec<String>,
    /// TURN servers, tried in order, for a relayed address.
    pub turn: Vec<TurnServer>,
    /// Offer only relayed addresses (`relay_only = true`): all media goes
    /// through TURN and no description names an address of this site.
    pub relay_only: bool,
}

impl VideoConfig {
    /// Video on `listen` alone: host candidates only, no STUN or TURN.
    pub fn on(listen: std::net::SocketAddr) -> Self {
        Self {
            listen,
            stun: Vec::new(),
            turn: Vec::new(),
            relay_only: false,
        }
    }
}

/// A TURN server and this node's long-term credentials on it.
#[derive(Clone, PartialEq, Eq)]
pub struct TurnServer {
    /// `host:port`.
    pub server: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for TurnServer {
    // A password in a log line is a password given away.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnServer")
            .field("server", &self.server)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Which directory records a node keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DirectoryScope {
    /// Every organization of the federation.
    #[default]
    Federation,
    /// Its own region's organizations, peers it talks to, and candidates it
    /// asks its regional center for: cheap for a small hospital in a
    /// national network.
    Region,
}

/// A node to contact first. The peer id is required so the first connection
/// is already authenticated: a bare address could be anyone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapPeer {
    pub peer: PeerId,
    /// As configured, ending in `/p2p/<peer>`.
    pub address: Multiaddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter: a level (`info`) or directives (`info,konsilium=debug`).
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// For people reading a terminal or journalctl.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl NodeConfig {
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = fs::read_to_string(path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => ConfigError::NotFound {
                path: path.to_owned(),
            },
            _ => ConfigError::Read {
                path: path.to_owned(),
                source,
            },
        })?;
        let absolute = std::path::absolute(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base_dir = absolute.parent().unwrap_or(Path::new("/"));
        parse_in(&text, base_dir, Some(path))
    }

    /// Parses config text; relative paths in it are taken relative to
    /// `base_dir` (normally the directory of the config file).
    pub fn parse(text: &str, base_dir: &Path) -> Result<NodeConfig, ConfigError> {
        parse_in(text, base_dir, None)
    }

    pub fn load_certificate(&self) -> Result<CertChain, ConfigError> {
        read_wire(
            "organization.certificate",
            &self.certificate_path,
            "certificate chain",
            "save the certificate chain your federation authority issued for this \
             organization there, or correct organization.certificate",
        )
    }

    pub fn load_revocations(&self) -> Result<Vec<RevocationNotice>, ConfigError> {
        self.revocation_paths
            .iter()
            .enumerate()
            .map(|(i, path)| {
                read_wire(
                    &format!("federation.revocations[{i}]"),
                    path,
                    "revocation notice",
                    "correct or remove this entry of federation.revocations",
                )
            })
            .collect()
    }

    /// What this organization publishes about itself besides its certificate.
    pub fn profile(&self) -> Profile {
        Profile {
            calendar: self.calendar.clone(),
            deadlines: self.deadlines,
            services: self.services.clone(),
            consultants: self.consultants.clone(),
        }
    }
}

fn parse_in(text: &str, base_dir: &Path, file: Option<&Path>) -> Result<NodeConfig, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Toml {
        file: file.map(Path::to_owned),
        message: e.to_string().trim_end().to_owned(),
    })?;
    raw.validate(base_dir)
        .map_err(|Bad { field, reason }| ConfigError::Invalid {
            file: file.map(Path::to_owned),
            field,
            reason,
        })
}

fn read_wire<M: WireMessage>(
    field: &str,
    path: &Path,
    what: &'static str,
    hint: &'static str,
) -> Result<M, ConfigError> {
    let bytes = fs::read(path).map_err(|source| ConfigError::ReadFile {
        field: field.to_owned(),
        path: path.to_owned(),
        source,
        hint,
    })?;
    wire::decode(&bytes).map_err(|source| ConfigError::Decode {
        field: field.to_owned(),
        path: path.to_owned(),
        what,
        source,
    })
}
