//! The commented config file `konsilium init` writes.

use konsilium_protocol::identity::{AuthorityKey, OrgId};
use konsilium_protocol::urgency::Deadlines;
use std::fmt::Write as _;
use std::path::Path;

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
# "organization" (a hospital's or center's node) or "bootstrap" (one of the
# federation's public nodes that help the others find and reach each other;
# it takes no consultations: no services, consultants or [api] on it).
role = "organization"
# "auto" asks peers to dial this node back to learn whether it is reachable;
# "public" or "private" (behind NAT) say so instead. Behind NAT the node keeps
# relay reservations on bootstrap nodes, and peers reach it through them or
# by hole punching.
reachability = "auto"
# Relay for nodes behind NAT and answer their reachability probes (a public
# regional center may; a bootstrap node always does).
relay_server = false

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
# one ready to paste, with the token stored only as its hash. Clinicians'
# browsers need HTTPS for the camera on the video room page beyond localhost:
# under [api], tls_certificate and tls_key name the hospital's certificate and
# key (PEM files), and the API serves HTTPS itself.

# Prometheus metrics at http://<listen>/metrics; loopback unless you need a
# remote scraper (then put it behind your network's access rules).
[metrics]
listen = "127.0.0.1:9464"

# Video links to other sites (consultations' video sessions) use one UDP port
# at this host's address (not 0.0.0.0: the other sites send media to it).
# Off unless the section is present.
# [video]
# listen = "192.0.2.10:7401"
# Behind a NAT, STUN servers (the federation's bootstrap nodes run one) tell
# the port's outside address, which the other sites then send media to.
# stun = ["bootstrap-1.federation.example:3478", "bootstrap-2.federation.example:3478"]
# Where both sites' NATs defeat a direct path (a symmetric NAT facing a
# port-restricted one), media goes through a TURN server (the deploy kit runs
# coturn beside the bootstrap nodes); servers are tried in order.
# With relay_only, all media goes through TURN and no description names an
# address of this site.
# relay_only = true
# [[video.turn]]
# server = "bootstrap-1.federation.example:3479"
# username = "district-7"
# password = "from the federation operator"

# A bootstrap node answers STUN Binding requests for the sites behind NATs.
# [stun]
# listen = "0.0.0.0:3478"

[storage]
# Attachments this node sent or relayed are deleted this many hours after the
# recipient's signed receipt (0: at once). Received attachments are kept.
keep_delivered_attachments_hours = 24
# A relay (a regional center) holds at most this much for each organization
# whose packages it carries: the rest waits at its sender until these are
# delivered. Size them to the relay's disk.
# relay_custody_packages = 1024
# relay_custody_gib = 16

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
