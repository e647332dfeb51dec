//! Parsing and validation of config files, error messages included.

use super::template::template;
use super::*;
use konsilium_protocol::identity::{AuthorityKey, OrgId};
use konsilium_protocol::limits::MAX_ADDRESSES;
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::urgency::{Deadlines, Urgency};
use konsilium_protocol::wire::{self};
use libp2p::Multiaddr;
use std::fs;
use std::path::Path;
use std::time::Duration;

use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::directory::{Directory, Merge};
use konsilium_protocol::identity::IdentityKey;
use konsilium_protocol::signed::Signed;
use konsilium_protocol::testkit::{NOW, TestFederation};

mod video;

fn root() -> AuthorityKey {
    IdentityKey::from_seed([42; 32]).authority_key()
}

fn org() -> OrgId {
    IdentityKey::from_seed([7; 32]).org_id()
}

/// A complete config using every section.
pub(super) fn full() -> String {
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
relay_custody_packages = 300
relay_custody_gib = 40

[log]
format = "json"
level = "info,konsilium=debug"
"#,
        root = root(),
        peer = org(),
    )
}

pub(super) fn parse(text: &str) -> Result<NodeConfig, ConfigError> {
    NodeConfig::parse(text, Path::new("/etc/konsilium"))
}

/// `full()` with one line replaced; the line must exist.
pub(super) fn with(from: &str, to: &str) -> String {
    let text = full();
    assert!(text.contains(from), "fixture has no {from:?}");
    text.replacen(from, to, 1)
}

pub(super) fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[track_caller]
pub(super) fn assert_refused(text: &str, needles: &[&str]) {
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
        &with("[api]\n[[api.users]]\nname = \"x\"\nrole = \"operator\"\ntoken_hash = \"abc\"\n"),
        &["api.users[0].token_hash"],
    );
    let user =
        format!("[[api.users]]\nname = \"x\"\nrole = \"physician\"\ntoken_hash = \"{hash}\"\n");
    assert_refused(
        &with(&format!(
            "[api]\n{user}{}",
            user.replace("physician", "operator")
        )),
        &["api.users[1].token_hash", "api.users[0]"],
    );
    let tls = |lines: &str| with(&format!("[api]\n{lines}{user}"));
    let both = parse(&tls(
        "tls_certificate = \"/etc/k/api.crt\"\ntls_key = \"/etc/k/api.key\"\n",
    ));
    let files = both.unwrap().api.unwrap().tls.unwrap();
    assert_eq!(files.certificate, std::path::Path::new("/etc/k/api.crt"));
    assert_eq!(files.key, std::path::Path::new("/etc/k/api.key"));
    assert_refused(
        &tls("tls_certificate = \"/etc/k/api.crt\"\n"),
        &["api.tls_key"],
    );
    assert_refused(
        &tls("tls_key = \"/etc/k/api.key\"\n"),
        &["api.tls_certificate"],
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
    assert_refused(
        &with("relay_custody_packages = 300", "relay_custody_packages = 0"),
        &["storage.relay_custody_packages", "1 to 1000000"],
    );
    assert_refused(
        &with("relay_custody_gib = 40", "relay_custody_gib = 0"),
        &["storage.relay_custody_gib", "1 to 1000000 GiB"],
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
    let custody = konsilium_protocol::outbox::Custody {
        packages: 300,
        bytes: 40 << 30,
    };
    assert_eq!(c.custody, custody);
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

#[test]
fn the_network_role_and_reachability_are_checked_and_named() {
    use konsilium_protocol::reach::Reachability;
    let c = parse(&full()).unwrap();
    assert_eq!(
        c.openness,
        Openness::default(),
        "an organization that probes"
    );
    let c = parse(&with(
        "relay_via = [",
        "reachability = \"private\"\nrelay_via = [",
    ))
    .unwrap();
    assert_eq!(c.openness.reachability, Some(Reachability::Private));
    let c = parse(&with("relay_via = [", "relay_server = true\nrelay_via = [")).unwrap();
    assert!(c.openness.serves_others);
    assert_refused(
        &with("relay_via = [", "role = \"hub\"\nrelay_via = ["),
        &["network.role", "\"hub\"", "bootstrap"],
    );
    assert_refused(
        &with("relay_via = [", "reachability = \"nat\"\nrelay_via = ["),
        &["network.reachability", "\"private\""],
    );
    assert_refused(
        &with(
            "relay_via = [",
            "relay_server = true\nreachability = \"private\"\nrelay_via = [",
        ),
        &["network.reachability", "cannot relay"],
    );
    // The full fixture has services, consultants and no API: a bootstrap
    // node refuses the services first.
    let bootstrap = with("relay_via = [", "role = \"bootstrap\"\nrelay_via = [");
    assert_refused(
        &bootstrap,
        &["directory.services", "takes no consultations"],
    );
    assert_refused(
        &with_bootstrap_only(&bootstrap)
            .replace("relay_via = [", "relay_server = false\nrelay_via = ["),
        &["network.relay_server", "always relays"],
    );
    let c = parse(&with_bootstrap_only(&bootstrap)).unwrap();
    assert_eq!(
        c.openness,
        Openness {
            role: NodeRole::Bootstrap,
            reachability: Some(Reachability::Public),
            serves_others: true,
        }
    );
}

/// A config with its services and consultants removed.
fn with_bootstrap_only(text: &str) -> String {
    let cut = text.find("[[directory.services]]").unwrap();
    let rest = &text[cut..];
    let end = rest.find("[storage]").unwrap();
    format!("{}{}", &text[..cut], &rest[end..])
}
