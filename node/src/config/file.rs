//! The file as written: only strings and numbers, so that validation (not
//! serde) produces the errors and can name the field.

use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) organization: RawOrganization,
    pub(super) federation: RawFederation,
    pub(super) network: RawNetwork,
    pub(super) directory: RawDirectory,
    #[serde(default)]
    pub(super) log: RawLog,
    #[serde(default)]
    pub(super) api: Option<RawApi>,
    #[serde(default)]
    pub(super) metrics: Option<RawMetrics>,
    #[serde(default)]
    pub(super) storage: RawStorage,
    #[serde(default)]
    pub(super) video: Option<RawVideo>,
    #[serde(default)]
    pub(super) stun: Option<RawStun>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVideo {
    pub(super) listen: String,
    #[serde(default)]
    pub(super) stun: Vec<String>,
    #[serde(default)]
    pub(super) turn: Vec<RawTurn>,
    #[serde(default)]
    pub(super) relay_only: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTurn {
    pub(super) server: String,
    pub(super) username: String,
    pub(super) password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStun {
    pub(super) listen: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStorage {
    pub(super) keep_delivered_attachments_hours: Option<u64>,
    pub(super) relay_custody_packages: Option<u64>,
    pub(super) relay_custody_gib: Option<u64>,
}

/// How long sealed attachments stay after their package's receipt, when the
/// config does not say: long enough for a sender checking back with a relay
/// to find them, short enough that a sending node's disk does not fill up.
pub const DEFAULT_KEEP_DELIVERED: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) listen: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApi {
    pub(super) listen: Option<String>,
    #[serde(default)]
    pub(super) users: Vec<RawUser>,
    pub(super) tls_certificate: Option<String>,
    pub(super) tls_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUser {
    pub(super) name: String,
    pub(super) role: String,
    pub(super) token_hash: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOrganization {
    pub(super) data_dir: String,
    pub(super) certificate: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFederation {
    pub(super) roots: Vec<String>,
    #[serde(default)]
    pub(super) revocations: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNetwork {
    pub(super) listen: Vec<String>,
    #[serde(default)]
    pub(super) bootstrap: Vec<String>,
    #[serde(default)]
    pub(super) external: Vec<String>,
    #[serde(default)]
    pub(super) relay_via: Vec<String>,
    #[serde(default)]
    pub(super) directory_scope: Option<String>,
    #[serde(default)]
    pub(super) role: Option<String>,
    #[serde(default)]
    pub(super) reachability: Option<String>,
    #[serde(default)]
    pub(super) relay_server: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDirectory {
    pub(super) time_zone: String,
    #[serde(default = "monday_to_friday")]
    pub(super) working_days: Vec<i64>,
    /// `toml::Value` so both `"2026-01-01"` and a bare TOML date are accepted.
    #[serde(default)]
    pub(super) holidays: Vec<toml::Value>,
    #[serde(default)]
    pub(super) deadlines: Option<RawDeadlines>,
    #[serde(default)]
    pub(super) services: Vec<RawService>,
    #[serde(default)]
    pub(super) consultants: Vec<RawConsultant>,
}

fn monday_to_friday() -> Vec<i64> {
    vec![1, 2, 3, 4, 5]
}

/// Urgent deadlines are in hours because the law states them in hours;
/// emergency ones in minutes because they are counted in minutes.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDeadlines {
    pub(super) planned_working_days: Option<i64>,
    pub(super) urgent_hours: Option<i64>,
    pub(super) emergency_minutes: Option<i64>,
    pub(super) emergency_response_minutes: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    pub(super) specialty: String,
    pub(super) urgencies: Vec<String>,
    #[serde(default)]
    pub(super) deadlines: Option<RawDeadlines>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConsultant {
    pub(super) id: i64,
    pub(super) name: String,
    pub(super) specialties: Vec<String>,
    #[serde(default)]
    pub(super) languages: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub(super) format: Option<String>,
    pub(super) level: Option<String>,
}
