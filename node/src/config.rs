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

use konsilium_protocol::calendar::{IsoWeekday, TimeZoneName, WorkingCalendar};
use konsilium_protocol::cert::{CertChain, RevocationNotice};
use konsilium_protocol::directory::{Consultant, ConsultantId, Language, Service};
use konsilium_protocol::identity::{AuthorityKey, OrgId};
use konsilium_protocol::limits::{
    FieldError, MAX_ADDRESSES, MAX_CONSULTANTS, MAX_HOLIDAYS, MAX_LANGUAGES, MAX_SERVICES,
    MAX_SPECIALTIES_PER_CONSULTANT, check_count, check_name,
};
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::urgency::{Deadlines, Urgency};
use konsilium_protocol::wire::{self, WireError, WireMessage};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;
use std::{fs, io};

pub mod api;

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
    pub fn profile(&self) -> crate::node::Profile {
        crate::node::Profile {
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

// ---------------------------------------------------------------------------
// The file as written: only strings and numbers, so that validation (not
// serde) produces the errors and can name the field.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    organization: RawOrganization,
    federation: RawFederation,
    network: RawNetwork,
    directory: RawDirectory,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    api: Option<RawApi>,
    #[serde(default)]
    metrics: Option<RawMetrics>,
    #[serde(default)]
    storage: RawStorage,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    keep_delivered_attachments_hours: Option<u64>,
}

/// How long sealed attachments stay after their package's receipt, when the
/// config does not say: long enough for a sender checking back with a relay
/// to find them, short enough that a sending node's disk does not fill up.
pub const DEFAULT_KEEP_DELIVERED: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    listen: Option<String>,
    #[serde(default)]
    users: Vec<RawUser>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    role: String,
    token_hash: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrganization {
    data_dir: String,
    certificate: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFederation {
    roots: Vec<String>,
    #[serde(default)]
    revocations: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    listen: Vec<String>,
    #[serde(default)]
    bootstrap: Vec<String>,
    #[serde(default)]
    external: Vec<String>,
    #[serde(default)]
    relay_via: Vec<String>,
    #[serde(default)]
    directory_scope: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDirectory {
    time_zone: String,
    #[serde(default = "monday_to_friday")]
    working_days: Vec<i64>,
    /// `toml::Value` so both `"2026-01-01"` and a bare TOML date are accepted.
    #[serde(default)]
    holidays: Vec<toml::Value>,
    #[serde(default)]
    deadlines: Option<RawDeadlines>,
    #[serde(default)]
    services: Vec<RawService>,
    #[serde(default)]
    consultants: Vec<RawConsultant>,
}

fn monday_to_friday() -> Vec<i64> {
    vec![1, 2, 3, 4, 5]
}

/// Urgent deadlines are in hours because the law states them in hours;
/// emergency ones in minutes because they are counted in minutes.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDeadlines {
    planned_working_days: Option<i64>,
    urgent_hours: Option<i64>,
    emergency_minutes: Option<i64>,
    emergency_response_minutes: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    specialty: String,
    urgencies: Vec<String>,
    #[serde(default)]
    deadlines: Option<RawDeadlines>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsultant {
    id: i64,
    name: String,
    specialties: Vec<String>,
    #[serde(default)]
    languages: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: Option<String>,
    level: Option<String>,
}

// ---------------------------------------------------------------------------
// Validation.

/// A validation failure before the config file's path is attached.
struct Bad {
    field: String,
    reason: String,
}

fn bad(field: impl Into<String>, reason: impl Into<String>) -> Bad {
    Bad {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A protocol field error, reworded without the protocol's own field name so
/// that the config path can stand in its place.
fn reason(e: FieldError) -> String {
    match e {
        FieldError::Empty { .. } => "must not be empty".to_owned(),
        FieldError::TooLong { len, max, .. } => {
            format!("{len} characters, at most {max} allowed")
        }
        FieldError::TooMany { count, max, .. } => format!("{count} entries, at most {max} allowed"),
        FieldError::ControlCharacter { .. } => {
            "control characters (line breaks, tabs) are not allowed".to_owned()
        }
        FieldError::Invalid { reason, .. } => reason,
    }
}

fn count(field: &str, n: usize, max: usize) -> Result<(), Bad> {
    check_count("", n, max).map_err(|e| bad(field, reason(e)))
}

impl RawConfig {
    fn validate(self, base_dir: &Path) -> Result<NodeConfig, Bad> {
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
        let api = match self.api {
            None => None,
            Some(raw) => Some(api(raw)?),
        };
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
            calendar,
            deadlines,
            services,
            consultants,
            log,
            api,
            metrics,
            keep_delivered,
        })
    }
}

fn api(raw: RawApi) -> Result<api::ApiConfig, Bad> {
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
        users.push(user);
    }
    Ok(api::ApiConfig {
        listen,
        users,
        upload_dir: None,
    })
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

fn calendar(directory: &RawDirectory) -> Result<WorkingCalendar, Bad> {
    let time_zone = TimeZoneName::new(directory.time_zone.trim()).map_err(|_| {
        bad(
            "directory.time_zone",
            format!(
                "{:?} is not an IANA time zone name: use the zone of the organization's \
                 consulting staff, like \"Europe/Moscow\", \"Europe/Kyiv\", \"Asia/Almaty\"",
                directory.time_zone
            ),
        )
    })?;
    if directory.working_days.is_empty() {
        return Err(bad(
            "directory.working_days",
            "must list at least one day (1 = Monday .. 7 = Sunday), e.g. [1, 2, 3, 4, 5]: \
             planned deadlines are counted in working days",
        ));
    }
    let mut working_days = BTreeSet::new();
    for (i, &n) in directory.working_days.iter().enumerate() {
        let day = u8::try_from(n)
            .ok()
            .and_then(|n| IsoWeekday::try_from(n).ok())
            .ok_or_else(|| {
                bad(
                    format!("directory.working_days[{i}]"),
                    format!("{n} is not an ISO weekday: use 1 = Monday .. 7 = Sunday"),
                )
            })?;
        working_days.insert(day);
    }
    count("directory.holidays", directory.holidays.len(), MAX_HOLIDAYS)?;
    let mut holidays = BTreeSet::new();
    for (i, value) in directory.holidays.iter().enumerate() {
        let field = format!("directory.holidays[{i}]");
        let text = match value {
            toml::Value::String(s) => s.trim().to_owned(),
            toml::Value::Datetime(dt) if dt.time.is_none() && dt.offset.is_none() => dt.to_string(),
            other => {
                return Err(bad(
                    field,
                    format!("{other} is not a date: write holidays as \"YYYY-MM-DD\""),
                ));
            }
        };
        let shaped = text.len() == 10
            && text.bytes().enumerate().all(|(k, b)| match k {
                4 | 7 => b == b'-',
                _ => b.is_ascii_digit(),
            });
        if !shaped {
            return Err(bad(
                field,
                format!("{text:?} is not a date: write holidays as \"YYYY-MM-DD\""),
            ));
        }
        let date = from_text(&text)
            .map_err(|e| bad(&field, format!("{text:?} is not a calendar date ({e})")))?;
        holidays.insert(date);
    }
    let calendar = WorkingCalendar {
        time_zone,
        working_days,
        holidays,
    };
    calendar.check().map_err(|e| bad("directory", reason(e)))?;
    Ok(calendar)
}

/// Deserializes a value from a string through its serde implementation,
/// which lets the node parse protocol field types (such as the holiday
/// dates) without depending on the crates that define them.
fn from_text<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    use serde::de::IntoDeserializer;
    let de: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
        text.into_deserializer();
    T::deserialize(de).map_err(|e| e.to_string())
}

/// Builds deadlines with each bound checked and named here; missing fields
/// take `defaults` (the legal maxima, or the organization's own deadlines
/// for a per-service table).
fn deadlines(field: &str, raw: &RawDeadlines, defaults: Deadlines) -> Result<Deadlines, Bad> {
    let bounded = |name: &str, value: Option<i64>, default: u64, unit: &str, max: u64| {
        let Some(v) = value else {
            return Ok(default);
        };
        match u64::try_from(v) {
            Ok(v) if (1..=max).contains(&v) => Ok(v),
            Ok(v) if v > max => Err(bad(
                format!("{field}.{name}"),
                format!(
                    "{v} {unit} is looser than the legal maximum of {max} {unit}: an \
                     organization may only publish tighter deadlines, use 1 to {max}"
                ),
            )),
            _ => Err(bad(
                format!("{field}.{name}"),
                format!("{v} {unit}: must be at least 1 (up to {max})"),
            )),
        }
    };
    let minutes = |d: Duration| d.as_secs() / 60;
    let planned = bounded(
        "planned_working_days",
        raw.planned_working_days,
        u64::from(defaults.planned_working_days()),
        "working days",
        u64::from(Deadlines::MAX_PLANNED_WORKING_DAYS),
    )?;
    let urgent_minutes = match raw.urgent_hours {
        None => minutes(defaults.urgent()),
        hours => {
            let max = Deadlines::MAX_URGENT.as_secs() / 3600;
            bounded("urgent_hours", hours, max, "h", max)? * 60
        }
    };
    let emergency = bounded(
        "emergency_minutes",
        raw.emergency_minutes,
        minutes(defaults.emergency()),
        "min",
        minutes(Deadlines::MAX_EMERGENCY),
    )?;
    let response = bounded(
        "emergency_response_minutes",
        raw.emergency_response_minutes,
        minutes(defaults.emergency_response()),
        "min",
        minutes(Deadlines::MAX_EMERGENCY),
    )?;
    if response > emergency {
        // Blame the value that was written, not the one that was defaulted.
        let culprit = if raw.emergency_response_minutes.is_some() {
            "emergency_response_minutes"
        } else {
            "emergency_minutes"
        };
        return Err(bad(
            format!("{field}.{culprit}"),
            format!(
                "the first response to an emergency ({response} min) cannot be due after \
                 the conclusion ({emergency} min): set emergency_response_minutes to at most \
                 emergency_minutes"
            ),
        ));
    }
    Deadlines::new(
        u8::try_from(planned).expect("bounded by MAX_PLANNED_WORKING_DAYS"),
        Duration::from_secs(urgent_minutes * 60),
        Duration::from_secs(emergency * 60),
        Duration::from_secs(response * 60),
    )
    .map_err(|e| bad(field, reason(e)))
}

fn specialty(field: &str, text: &str) -> Result<Specialty, Bad> {
    text.trim().parse().map_err(|e| {
        let needle = text.trim().to_ascii_lowercase();
        let close: Vec<&str> = Specialty::ALL
            .iter()
            .map(|s| s.slug())
            .filter(|slug| !needle.is_empty() && slug.contains(needle.as_str()))
            .take(3)
            .collect();
        let mut reason = format!("{e}");
        if !close.is_empty() {
            let _ = write!(reason, "; did you mean {}?", close.join(" or "));
        }
        bad(field, reason)
    })
}

fn services(raw: &[RawService], org_deadlines: Deadlines) -> Result<Vec<Service>, Bad> {
    count("directory.services", raw.len(), MAX_SERVICES)?;
    let mut first_listed: BTreeMap<Specialty, usize> = BTreeMap::new();
    let mut services = Vec::with_capacity(raw.len());
    for (i, s) in raw.iter().enumerate() {
        let field = format!("directory.services[{i}]");
        let specialty = specialty(&format!("{field}.specialty"), &s.specialty)?;
        if let Some(j) = first_listed.insert(specialty, i) {
            return Err(bad(
                format!("{field}.specialty"),
                format!(
                    "{specialty} is already listed in directory.services[{j}]: list each \
                     specialty once, with all the urgencies it takes"
                ),
            ));
        }
        if s.urgencies.is_empty() {
            return Err(bad(
                format!("{field}.urgencies"),
                "must list at least one of \"planned\", \"urgent\", \"emergency\"",
            ));
        }
        let urgencies = s
            .urgencies
            .iter()
            .enumerate()
            .map(|(k, u)| {
                u.parse::<Urgency>()
                    .map_err(|e| bad(format!("{field}.urgencies[{k}]"), reason(e)))
            })
            .collect::<Result<BTreeSet<_>, _>>()?;
        let deadlines = s
            .deadlines
            .as_ref()
            .map(|d| deadlines(&format!("{field}.deadlines"), d, org_deadlines))
            .transpose()?;
        services.push(Service {
            specialty,
            urgencies,
            deadlines,
        });
    }
    Ok(services)
}

fn consultants(raw: &[RawConsultant]) -> Result<Vec<Consultant>, Bad> {
    count("directory.consultants", raw.len(), MAX_CONSULTANTS)?;
    let mut first_listed: BTreeMap<u32, usize> = BTreeMap::new();
    let mut consultants = Vec::with_capacity(raw.len());
    for (i, c) in raw.iter().enumerate() {
        let field = format!("directory.consultants[{i}]");
        let id = u32::try_from(c.id).map_err(|_| {
            bad(
                format!("{field}.id"),
                format!(
                    "{} is not a consultant id: use a number from 0 to {}",
                    c.id,
                    u32::MAX
                ),
            )
        })?;
        if let Some(j) = first_listed.insert(id, i) {
            return Err(bad(
                format!("{field}.id"),
                format!(
                    "{id} is already the id of directory.consultants[{j}]: ids must be unique, \
                     they identify the consultant in slots and conclusions"
                ),
            ));
        }
        check_name("", &c.name).map_err(|e| bad(format!("{field}.name"), reason(e)))?;
        if c.specialties.is_empty() {
            return Err(bad(
                format!("{field}.specialties"),
                "must list at least one specialty the consultant gives opinions in",
            ));
        }
        count(
            &format!("{field}.specialties"),
            c.specialties.len(),
            MAX_SPECIALTIES_PER_CONSULTANT,
        )?;
        let specialties = c
            .specialties
            .iter()
            .enumerate()
            .map(|(k, s)| specialty(&format!("{field}.specialties[{k}]"), s))
            .collect::<Result<BTreeSet<_>, _>>()?;
        count(
            &format!("{field}.languages"),
            c.languages.len(),
            MAX_LANGUAGES,
        )?;
        let languages = c
            .languages
            .iter()
            .enumerate()
            .map(|(k, l)| {
                Language::new(l.trim())
                    .map_err(|e| bad(format!("{field}.languages[{k}]"), reason(e)))
            })
            .collect::<Result<BTreeSet<_>, _>>()?;
        consultants.push(Consultant {
            id: ConsultantId(id),
            name: c.name.clone(),
            specialties,
            languages,
        });
    }
    Ok(consultants)
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

// ---------------------------------------------------------------------------
// The template `konsilium init` writes.

/// A commented config for a new node. `roots` are the federation's root
/// keys if known at init; with none, the template carries a placeholder that
/// the node refuses (naming `federation.roots[0]`) until it is replaced, since
/// a node must never start trusting no one or anyone.
pub fn template(
    org_name: &str,
    org_id: &OrgId,
    data_dir: &Path,
    listen_port: u16,
    roots: &[AuthorityKey],
) -> String {
    // A name comes from a person; keep it on its comment line.
    let org_name: String = org_name
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let data_dir = toml_string(&data_dir.to_string_lossy());
    let roots = if roots.is_empty() {
        "\"PASTE-THE-FEDERATION-ROOT-KEY-HERE\"".to_owned()
    } else {
        roots
            .iter()
            .map(|k| format!("\"{k}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let d = Deadlines::default();
    let planned = d.planned_working_days();
    let urgent_h = d.urgent().as_secs() / 3600;
    let emergency_min = d.emergency().as_secs() / 60;
    let response_min = d.emergency_response().as_secs() / 60;
    format!(
        r#"# Konsilium node configuration for {org_name}
#
# Organization id: {org_id}
# Send this id to your federation authority. It certifies the organization and
# returns a certificate chain file: save it as organization.certificate below.
#
# Relative paths are relative to the directory of this file. The node refuses
# unknown keys and names the field of any mistake when it starts.

[organization]
# Keys (keys/), the database and received files live here. Back up keys/.
data_dir = {data_dir}
# The certificate chain issued by the federation authority.
certificate = "org.chain"

[federation]
# Public keys of the federation's root authorities (64 hex characters each),
# as your federation publishes them. Peers whose certificates do not lead to
# one of these roots are refused.
roots = [{roots}]
# Revocation notice files to load at start (they also arrive over the network).
revocations = []

[network]
# Where this node accepts connections (TCP and QUIC on the same port).
listen = ["/ip4/0.0.0.0/tcp/{listen_port}", "/ip4/0.0.0.0/udp/{listen_port}/quic-v1"]
# Nodes to contact first, each ending in /p2p/<peer id>, e.g.
# "/ip4/203.0.113.7/tcp/7400/p2p/12D3KooW...".
bootstrap = []
# Addresses other nodes should dial if they differ from the listen addresses
# (public address or DNS name behind NAT), e.g. "/dns4/telemed.example.org/tcp/{listen_port}".
external = []
# Organization ids of the regional centers that packages to other regions go
# through, if your federation's policy requires it.
relay_via = []
# "federation" keeps every organization's record; "region" keeps this region's
# and asks the regional center (relay_via) for candidates elsewhere.
directory_scope = "federation"

[directory]
# The time zone of the consulting staff: planned deadlines count their working days.
time_zone = "Europe/Moscow"
# ISO weekdays: 1 = Monday .. 7 = Sunday.
working_days = [1, 2, 3, 4, 5]
# Public holidays, "YYYY-MM-DD".
holidays = []

# Deadlines this organization commits to. The defaults are the legal maxima;
# values may only be tighter. Uncomment to change.
# [directory.deadlines]
# planned_working_days = {planned}
# urgent_hours = {urgent_h}
# emergency_minutes = {emergency_min}
# emergency_response_minutes = {response_min}

# One block per specialty the organization accepts requests in; see
# `konsilium specialties` for the names. Optional tighter deadlines per specialty
# go in a [directory.services.deadlines] table right after its block.
# [[directory.services]]
# specialty = "cardiology"
# urgencies = ["planned", "urgent", "emergency"]

# One block per consultant; ids are unique numbers within this organization.
# [[directory.consultants]]
# id = 1
# name = "Dr. Ivan Petrov"
# specialties = ["cardiology"]
# languages = ["ru", "en"]

# The local HTTP API for the hospital information system and clinicians is off
# unless an [api] section names its users; `konsilium api-token --help` prints
# one ready to paste, with the token stored only as its hash.

# Prometheus metrics at http://<listen>/metrics; loopback unless you need a
# remote scraper (then put it behind your network's access rules).
[metrics]
listen = "127.0.0.1:9464"

[storage]
# Attachments this node sent or relayed are deleted this many hours after the
# recipient's signed receipt (0: at once). Received attachments are kept.
keep_delivered_attachments_hours = 24

[log]
# "text" for people, "json" for log collectors.
format = "text"
# off, error, warn, info, debug, trace, or directives like "info,konsilium=debug".
level = "info"
"#
    )
}

/// A TOML basic string; paths may hold quotes or backslashes.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use konsilium_protocol::cert::OrgLevel;
    use konsilium_protocol::directory::{Directory, Merge};
    use konsilium_protocol::identity::IdentityKey;
    use konsilium_protocol::signed::Signed;
    use konsilium_protocol::testkit::{NOW, TestFederation};

    fn root() -> AuthorityKey {
        IdentityKey::from_seed([42; 32]).authority_key()
    }

    fn org() -> OrgId {
        IdentityKey::from_seed([7; 32]).org_id()
    }

    /// A complete config using every section.
    fn full() -> String {
        format!(
            r#"
[organization]
data_dir = "data"
certificate = "/etc/konsilium/org.chain"

[federation]
roots = ["{root}"]
revocations = ["revoked/vlg.rev"]

[network]
listen = ["/ip4/0.0.0.0/tcp/7400", "/ip6/::/udp/7400/quic-v1"]
bootstrap = ["/ip4/203.0.113.7/tcp/7400/p2p/{peer}"]
external = ["/dns4/telemed.example.org/tcp/7400"]
relay_via = ["{peer}"]

[directory]
time_zone = "Europe/Moscow"
working_days = [1, 2, 3, 4, 5, 6]
holidays = ["2026-01-01", 2026-01-07]

[directory.deadlines]
planned_working_days = 3
urgent_hours = 12
emergency_minutes = 120
emergency_response_minutes = 20

[[directory.services]]
specialty = "cardiology"
urgencies = ["planned", "urgent", "emergency"]

[[directory.services]]
specialty = "oncology"
urgencies = ["planned"]
[directory.services.deadlines]
planned_working_days = 2

[[directory.consultants]]
id = 1
name = "Др. Иван Петров"
specialties = ["cardiology"]
languages = ["ru", "en"]

[[directory.consultants]]
id = 2
name = "Dr. Olena Kovalenko"
specialties = ["oncology", "cardiology"]

[storage]
keep_delivered_attachments_hours = 6

[log]
format = "json"
level = "info,konsilium=debug"
"#,
            root = root(),
            peer = org(),
        )
    }

    fn parse(text: &str) -> Result<NodeConfig, ConfigError> {
        NodeConfig::parse(text, Path::new("/etc/konsilium"))
    }

    /// `full()` with one line replaced; the line must exist.
    fn with(from: &str, to: &str) -> String {
        let text = full();
        assert!(text.contains(from), "fixture has no {from:?}");
        text.replacen(from, to, 1)
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[track_caller]
    fn assert_refused(text: &str, needles: &[&str]) {
        let msg = error(text);
        for needle in needles {
            assert!(msg.contains(needle), "{needle:?} not in: {msg}");
        }
    }

    #[test]
    fn full_config_parses_into_typed_values() {
        let c = parse(&full()).unwrap();
        assert_eq!(c.data_dir, Path::new("/etc/konsilium/data"));
        assert_eq!(c.certificate_path, Path::new("/etc/konsilium/org.chain"));
        assert_eq!(
            c.revocation_paths,
            [Path::new("/etc/konsilium/revoked/vlg.rev")]
        );
        assert_eq!(c.roots, [root()]);
        assert_eq!(c.listen.len(), 2);
        assert_eq!(c.bootstrap.len(), 1);
        assert_eq!(c.bootstrap[0].peer, org().to_peer_id());
        assert_eq!(c.relay_via, [org()]);
        assert_eq!(c.external.len(), 1);
        assert_eq!(c.calendar.working_days.len(), 6);
        assert_eq!(c.calendar.holidays.len(), 2);
        assert_eq!(c.deadlines.planned_working_days(), 3);
        assert_eq!(c.deadlines.urgent(), Duration::from_secs(12 * 3600));
        assert_eq!(c.deadlines.emergency(), Duration::from_secs(120 * 60));
        assert_eq!(
            c.deadlines.emergency_response(),
            Duration::from_secs(20 * 60)
        );
        assert_eq!(c.services.len(), 2);
        assert_eq!(c.services[0].deadlines, None);
        let oncology = c.services[1].deadlines.unwrap();
        assert_eq!(oncology.planned_working_days(), 2);
        assert_eq!(
            oncology.urgent(),
            c.deadlines.urgent(),
            "defaults to the org's"
        );
        assert_eq!(c.services[1].urgencies, [Urgency::Planned].into());
        assert_eq!(c.consultants.len(), 2);
        assert_eq!(c.consultants[1].specialties.len(), 2);
        assert!(c.consultants[1].languages.is_empty());
        assert_eq!(c.log.format, LogFormat::Json);
    }

    #[test]
    fn optional_sections_take_the_legal_defaults() {
        let text = format!(
            r#"
[organization]
data_dir = "/var/lib/konsilium"
certificate = "org.chain"
[federation]
roots = ["{}"]
[network]
listen = ["/ip4/0.0.0.0/tcp/7400"]
[directory]
time_zone = "Asia/Almaty"
"#,
            root()
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.deadlines, Deadlines::default());
        assert_eq!(c.calendar.working_days.len(), 5);
        assert!(c.services.is_empty() && c.consultants.is_empty() && c.bootstrap.is_empty());
        assert_eq!(c.log, LogConfig::default());
    }

    #[test]
    fn relative_paths_resolve_against_the_base_dir() {
        let c = NodeConfig::parse(&full(), Path::new("/srv/hospital")).unwrap();
        assert_eq!(c.data_dir, Path::new("/srv/hospital/data"));
        assert_eq!(c.certificate_path, Path::new("/etc/konsilium/org.chain"));
        assert_eq!(
            c.revocation_paths,
            [Path::new("/srv/hospital/revoked/vlg.rev")]
        );
        // A relative base is made absolute, so the node does not depend on its cwd.
        let c = NodeConfig::parse(&full(), Path::new("conf")).unwrap();
        assert!(c.data_dir.is_absolute(), "{}", c.data_dir.display());
        assert!(c.data_dir.ends_with("conf/data"));
    }

    #[test]
    fn template_parses_and_carries_the_given_values() {
        let text = template(
            "Вологодская областная больница №1\n[evil]",
            &org(),
            Path::new("/var/lib/konsilium \"main\""),
            7411,
            &[root()],
        );
        assert!(text.contains(&org().to_string()));
        let c = parse(&text).unwrap();
        assert_eq!(c.data_dir, Path::new("/var/lib/konsilium \"main\""));
        assert_eq!(c.certificate_path, Path::new("/etc/konsilium/org.chain"));
        assert_eq!(c.roots, [root()]);
        assert_eq!(
            c.listen,
            [
                "/ip4/0.0.0.0/tcp/7411".parse::<Multiaddr>().unwrap(),
                "/ip4/0.0.0.0/udp/7411/quic-v1".parse().unwrap()
            ]
        );
        assert_eq!(c.deadlines, Deadlines::default());
    }

    #[test]
    fn template_examples_parse_once_uncommented() {
        let text = template("Hospital", &org(), Path::new("/var/lib/k"), 7400, &[root()]);
        let uncommented: String = text
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with('[')
                        || rest.split_once(" = ").is_some_and(|(key, _)| {
                            key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                        }) =>
                {
                    rest
                }
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let c = parse(&uncommented).unwrap();
        assert_eq!(c.services.len(), 1);
        assert_eq!(c.consultants.len(), 1);
        assert_eq!(c.deadlines, Deadlines::default());
    }

    #[test]
    fn api_section_is_optional_and_checked() {
        assert!(
            parse(&full()).unwrap().api.is_none(),
            "no [api]: the API is off"
        );
        let hash = api::token_hash_hex("secret");
        let with = |api: &str| format!("{}\n{api}", full());
        let c = parse(&with(&format!(
            "[api]\nlisten = \"127.0.0.1:7999\"\n[[api.users]]\nname = \"Dr. Ivanova\"\nrole = \"physician\"\ntoken_hash = \"{hash}\"\n"
        )))
        .unwrap();
        let api = c.api.unwrap();
        assert_eq!(api.listen.port(), 7999);
        assert_eq!(api.users.len(), 1);
        assert_refused(
            &with(
                "[api]\nlisten = \"nowhere\"\n[[api.users]]\nname = \"x\"\nrole = \"physician\"\ntoken_hash = \"00\"\n",
            ),
            &["api.listen"],
        );
        assert_refused(&with("[api]\n"), &["api.users", "konsilium api-token"]);
        assert_refused(
            &with(&format!(
                "[api]\n[[api.users]]\nname = \"x\"\nrole = \"surgeon\"\ntoken_hash = \"{hash}\"\n"
            )),
            &["api.users[0].role"],
        );
        assert_refused(
            &with(
                "[api]\n[[api.users]]\nname = \"x\"\nrole = \"operator\"\ntoken_hash = \"abc\"\n",
            ),
            &["api.users[0].token_hash"],
        );
    }

    #[test]
    fn template_without_roots_is_refused_until_filled_in() {
        let text = template("Hospital", &org(), Path::new("/var/lib/k"), 7400, &[]);
        assert_refused(&text, &["federation.roots[0]", "64 hex characters"]);
    }

    #[test]
    fn broken_addresses_name_their_field() {
        assert_refused(
            &with("\"/ip6/::/udp/7400/quic-v1\"", "\"/ip4/1.2.3.4/tcp/x\""),
            &[
                "network.listen[1]",
                "\"/ip4/1.2.3.4/tcp/x\" is not a multiaddr",
            ],
        );
        assert_refused(
            &with(
                "\"/ip6/::/udp/7400/quic-v1\"",
                "\"/ip4/0.0.0.0/udp/7400/quic\"",
            ),
            &["network.listen[1]", "/quic-v1"],
        );
        assert_refused(
            &with(
                "\"/ip4/0.0.0.0/tcp/7400\"",
                "\"/dns4/example.org/tcp/7400\"",
            ),
            &["network.listen[0]", "/ip4/"],
        );
        assert_refused(
            &with("\"/ip4/0.0.0.0/tcp/7400\"", "\"/ip4/0.0.0.0/udp/7400\""),
            &["network.listen[0]", "/tcp/<port> or /udp/<port>/quic-v1"],
        );
        assert_refused(
            &with(
                "listen = [\"/ip4/0.0.0.0/tcp/7400\", \"/ip6/::/udp/7400/quic-v1\"]",
                "listen = []",
            ),
            &["network.listen", "at least one"],
        );
        let peer = org().to_string();
        assert_refused(
            &with(&format!("/tcp/7400/p2p/{peer}"), "/tcp/7400"),
            &["network.bootstrap[0]", "/p2p/<peer id>"],
        );
        assert_refused(
            &with("/tcp/7400/p2p/", "/tcp/7400/ws/p2p/"),
            &["network.bootstrap[0]", "unexpected /ws"],
        );
        assert_refused(
            &with(
                "\"/dns4/telemed.example.org/tcp/7400\"",
                &format!("\"/dns4/telemed.example.org/tcp/7400/p2p/{peer}\""),
            ),
            &["network.external[0]", "drop that part"],
        );
        assert_refused(
            &with("relay_via = [\"", "relay_via = [\"x"),
            &["network.relay_via[0]", "not an organization id"],
        );
    }

    #[test]
    fn broken_directory_fields_name_their_field() {
        assert_refused(
            &with("specialty = \"cardiology\"", "specialty = \"cardio\""),
            &[
                "directory.services[0].specialty",
                "unknown specialty \"cardio\"",
                "did you mean cardiology",
            ],
        );
        assert_refused(
            &with("specialty = \"oncology\"", "specialty = \"Cardiology\""),
            &[
                "directory.services[1].specialty",
                "already listed in directory.services[0]",
            ],
        );
        assert_refused(
            &with(
                "urgencies = [\"planned\"]",
                "urgencies = [\"planned\", \"soon\"]",
            ),
            &[
                "directory.services[1].urgencies[1]",
                "planned|urgent|emergency",
            ],
        );
        assert_refused(
            &with("urgencies = [\"planned\"]", "urgencies = []"),
            &["directory.services[1].urgencies", "at least one"],
        );
        assert_refused(
            &with("Europe/Moscow", "Europe/Moskva"),
            &["directory.time_zone", "\"Europe/Moskva\"", "IANA"],
        );
        assert_refused(
            &with("working_days = [1, 2, 3, 4, 5, 6]", "working_days = [1, 8]"),
            &["directory.working_days[1]", "ISO weekday"],
        );
        assert_refused(
            &with("\"2026-01-01\"", "\"2026-02-30\""),
            &["directory.holidays[0]", "not a calendar date"],
        );
        assert_refused(
            &with("\"2026-01-01\"", "\"01.01.2026\""),
            &["directory.holidays[0]", "YYYY-MM-DD"],
        );
        assert_refused(
            &with("id = 2", "id = 1"),
            &[
                "directory.consultants[1].id",
                "already the id of directory.consultants[0]",
            ],
        );
        assert_refused(
            &with("name = \"Dr. Olena Kovalenko\"", "name = \"  \""),
            &["directory.consultants[1].name", "must not be empty"],
        );
        assert_refused(
            &with("name = \"Dr. Olena Kovalenko\"", "name = \"Dr. O\\nK\""),
            &["directory.consultants[1].name", "control characters"],
        );
        assert_refused(
            &with(
                "languages = [\"ru\", \"en\"]",
                "languages = [\"ru\", \"English\"]",
            ),
            &["directory.consultants[0].languages[1]", "language tag"],
        );
        assert_refused(
            &with(
                "specialties = [\"oncology\", \"cardiology\"]",
                "specialties = [\"oncology\", \"heart\"]",
            ),
            &[
                "directory.consultants[1].specialties[1]",
                "unknown specialty",
            ],
        );
    }

    #[test]
    fn deadlines_looser_than_the_law_are_refused() {
        assert_refused(
            &with("urgent_hours = 12", "urgent_hours = 48"),
            &[
                "directory.deadlines.urgent_hours",
                "48 h is looser than the legal maximum of 24 h",
            ],
        );
        assert_refused(
            &with("planned_working_days = 3", "planned_working_days = 5"),
            &[
                "directory.deadlines.planned_working_days",
                "legal maximum of 4",
            ],
        );
        assert_refused(
            &with("emergency_minutes = 120", "emergency_minutes = 181"),
            &["directory.deadlines.emergency_minutes", "180 min"],
        );
        assert_refused(
            &with("urgent_hours = 12", "urgent_hours = 0"),
            &["directory.deadlines.urgent_hours", "at least 1"],
        );
        assert_refused(
            &with(
                "emergency_response_minutes = 20",
                "emergency_response_minutes = 150",
            ),
            &[
                "directory.deadlines.emergency_response_minutes",
                "at most emergency_minutes",
            ],
        );
        // A per-service table whose emergency deadline undercuts the
        // inherited first-response time blames the field that was written.
        assert_refused(
            &with("planned_working_days = 2", "emergency_minutes = 10"),
            &["directory.services[1].deadlines.emergency_minutes"],
        );
    }

    #[test]
    fn root_keys_are_checked() {
        assert_refused(
            &with(&format!("roots = [\"{}\"]", root()), "roots = []"),
            &["federation.roots", "at least one"],
        );
        assert_refused(
            &with(&format!("roots = [\"{}\"]", root()), "roots = [\"abcd\"]"),
            &[
                "federation.roots[0]",
                "64 hex characters",
                "found 4 characters",
            ],
        );
        let mut not_hex = root().to_string();
        not_hex.replace_range(0..1, "g");
        assert_refused(
            &with(&root().to_string(), &not_hex),
            &["federation.roots[0]", "other than 0-9"],
        );
        // 64 hex characters that are not a curve point.
        let off_curve = format!("02{}", "0".repeat(62));
        assert_refused(
            &with(&root().to_string(), &off_curve),
            &["federation.roots[0]", "not a usable root key"],
        );
        assert_refused(
            &with(
                &format!("roots = [\"{}\"]", root()),
                &format!("roots = [\"{0}\", \"{0}\"]", root()),
            ),
            &["federation.roots[1]", "repeats federation.roots[0]"],
        );
    }

    #[test]
    fn unknown_and_missing_keys_are_named() {
        assert_refused(&with("listen =", "listne ="), &["listne", "unknown field"]);
        assert_refused(&with("[log]", "[logging]"), &["logging", "unknown field"]);
        assert_refused(
            &with("urgent_hours = 12", "urgent_hour = 12"),
            &["urgent_hour", "unknown field"],
        );
        assert_refused(
            &with("time_zone = \"Europe/Moscow\"", ""),
            &["missing field", "time_zone"],
        );
        assert_refused(&with("[organization]", "[organisation]"), &["organisation"]);
        assert_refused(
            &with("format = \"json\"", "format = \"xml\""),
            &["log.format", "\"text\" or \"json\""],
        );
        assert_refused(
            &with("level = \"info,konsilium=debug\"", "level = \"verbose\""),
            &["log.level", "not a log level"],
        );
        assert_refused(
            &with(
                "keep_delivered_attachments_hours = 6",
                "keep_delivered_attachments_hours = 100000",
            ),
            &[
                "storage.keep_delivered_attachments_hours",
                "more than a year",
            ],
        );
    }

    #[test]
    fn load_names_the_file_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("konsilium.toml");
        let e = NodeConfig::load(&path).unwrap_err();
        assert!(matches!(e, ConfigError::NotFound { .. }));
        assert!(e.to_string().contains("konsilium init"), "{e}");

        fs::write(&path, with("urgent_hours = 12", "urgent_hours = 48")).unwrap();
        let msg = NodeConfig::load(&path).unwrap_err().to_string();
        assert!(
            msg.starts_with(&format!(
                "{}: directory.deadlines.urgent_hours",
                path.display()
            )),
            "{msg}"
        );
        fs::write(&path, with("listen =", "listne =")).unwrap();
        let msg = NodeConfig::load(&path).unwrap_err().to_string();
        assert!(msg.starts_with(&path.display().to_string()), "{msg}");

        fs::write(&path, full()).unwrap();
        let c = NodeConfig::load(&path).unwrap();
        assert_eq!(c.data_dir, dir.path().join("data"));
        assert_eq!(c.keep_delivered, std::time::Duration::from_secs(6 * 3600));
    }

    #[test]
    fn record_passes_the_protocol_checks_and_is_accepted_by_a_directory() {
        let mut fed = TestFederation::new("config");
        let hospital = fed.org(
            1,
            OrgLevel::Regional,
            "RU-VLG",
            &[Specialty::Cardiology, Specialty::Oncology],
        );
        let c = parse(&full()).unwrap();
        let many: Vec<Multiaddr> = (0..100)
            .map(|p| format!("/ip4/10.0.0.1/tcp/{}", 7000 + p).parse().unwrap())
            .collect();
        let record = c.profile().record(
            hospital.chain.clone(),
            hospital.sealing.public(),
            many,
            3,
            NOW,
        );
        assert_eq!(record.check(), Ok(()));
        assert_eq!(record.addresses.len(), MAX_ADDRESSES);
        assert_eq!(record.services, c.services);
        let signed = Signed::sign(&hospital.identity, &record);
        let mut dir = Directory::new();
        assert_eq!(dir.insert(signed, &fed.trust, NOW), Ok(Merge::Added));
    }

    #[test]
    fn certificate_and_revocations_are_read_from_their_files() {
        let mut fed = TestFederation::new("config-files");
        let hospital = fed.org(1, OrgLevel::District, "RU-VLG", &[Specialty::Cardiology]);
        let notice = fed.region("RU-VLG").revoke(1, NOW, [99].into());
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("org.chain"),
            wire::encode(&hospital.chain).unwrap(),
        )
        .unwrap();
        fs::create_dir(dir.path().join("revoked")).unwrap();
        let text = with("/etc/konsilium/org.chain", "org.chain");
        let c = NodeConfig::parse(&text, dir.path()).unwrap();

        let e = c.load_revocations().unwrap_err().to_string();
        assert!(
            e.contains("federation.revocations[0]") && e.contains("vlg.rev"),
            "{e}"
        );
        fs::write(
            dir.path().join("revoked/vlg.rev"),
            wire::encode(&notice).unwrap(),
        )
        .unwrap();
        assert_eq!(c.load_certificate().unwrap(), hospital.chain);
        assert_eq!(c.load_revocations().unwrap(), [notice]);

        fs::write(dir.path().join("org.chain"), b"not a chain").unwrap();
        let e = c.load_certificate().unwrap_err().to_string();
        assert!(
            e.contains("organization.certificate") && e.contains("org.chain"),
            "{e}"
        );
        fs::remove_file(dir.path().join("org.chain")).unwrap();
        let e = c.load_certificate().unwrap_err().to_string();
        assert!(e.contains("federation authority"), "{e}");
    }
}
