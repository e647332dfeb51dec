//! Prometheus metrics: what an operator's monitoring scrapes.
//!
//! Counters are bumped where things happen; gauges (peers, directory size,
//! queue depths, consultations by state, store size) are set from the node's
//! state right before each scrape, so they are never stale and cost nothing
//! between scrapes. Names follow Prometheus conventions: `konsilium_` prefix,
//! `_total` for counters, base units (`_bytes`, `_seconds`).

use prometheus::{
    Encoder, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

pub struct Metrics {
    registry: Registry,
    pub peers: IntGauge,
    pub idle_closed: IntCounter,
    pub gossip_received: IntCounterVec,
    pub gossip_published: IntCounter,
    pub directory_records: IntGauge,
    pub outbox_packages: IntGauge,
    pub inbox_packages: IntGauge,
    pub packages_queued: IntCounter,
    pub packages_received: IntCounter,
    pub deliveries: IntCounter,
    pub delivery_retries: IntCounter,
    pub group_flushes: IntCounter,
    pub group_answers: IntCounter,
    pub package_bytes: IntCounterVec,
    pub attachment_bytes_fetched: IntCounter,
    pub consultations: IntGaugeVec,
    pub deadline_events: IntCounterVec,
    pub escalations: IntCounter,
    pub store_bytes: IntGauge,
    pub uptime: IntGauge,
    pub peer_links: IntGaugeVec,
    pub reachability: IntGaugeVec,
    pub relay_reservations: IntGauge,
    pub hole_punches: IntCounterVec,
    pub relay_served: IntCounterVec,
    pub video_links: IntGaugeVec,
    pub peer_bytes_held: IntGaugeVec,
    pub peer_bytes_limit: IntGaugeVec,
    pub video_rtt: GaugeVec,
    pub video_loss: GaugeVec,
    pub video_receive_bps: GaugeVec,
    pub video_send_bps: GaugeVec,
    pub video_receive_fps: GaugeVec,
    pub video_send_fps: GaugeVec,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique and valid");
    metric
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        let counter = |name: &str, help: &str| {
            register(r, IntCounter::new(name, help).expect("valid metric"))
        };
        let gauge =
            |name: &str, help: &str| register(r, IntGauge::new(name, help).expect("valid metric"));
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            register(
                r,
                IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let float_vec = |name: &str, help: &str| {
            let labels = ["consultation", "site"];
            register(
                r,
                GaugeVec::new(Opts::new(name, help), &labels).expect("valid metric"),
            )
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            register(
                r,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        Self {
            peers: gauge("konsilium_peers", "Certified organizations connected now."),
            gossip_received: counter_vec(
                "konsilium_gossip_messages_received_total",
                "Gossip messages received, by topic and outcome (accepted, invalid, ignored).",
                &["topic", "outcome"],
            ),
            gossip_published: counter(
                "konsilium_gossip_messages_published_total",
                "Gossip messages this node published.",
            ),
            directory_records: gauge(
                "konsilium_directory_records",
                "Organizations in the directory, this one included.",
            ),
            outbox_packages: gauge(
                "konsilium_outbox_packages",
                "Packages waiting to be delivered (ours and those relayed).",
            ),
            inbox_packages: gauge("konsilium_inbox_packages", "Packages delivered to us."),
            packages_queued: counter(
                "konsilium_packages_queued_total",
                "Packages put in the outbox.",
            ),
            packages_received: counter(
                "konsilium_packages_received_total",
                "Packages delivered to this organization.",
            ),
            deliveries: counter(
                "konsilium_deliveries_total",
                "Packages the recipient confirmed with a signed receipt.",
            ),
            delivery_retries: counter(
                "konsilium_delivery_retries_total",
                "Delivery attempts that failed and were rescheduled.",
            ),
            group_flushes: counter(
                "konsilium_group_commit_flushes_total",
                "Flushes at the end of the event loop's turns (group commit).",
            ),
            group_answers: counter(
                "konsilium_group_commit_answers_total",
                "Answers those flushes released: package ids, receipts, delivery reports.",
            ),
            package_bytes: counter_vec(
                "konsilium_package_bytes_total",
                "Sealed package bytes (without attachments), by direction.",
                &["direction"],
            ),
            attachment_bytes_fetched: counter(
                "konsilium_attachment_bytes_fetched_total",
                "Sealed attachment bytes pulled from peers.",
            ),
            consultations: gauge_vec(
                "konsilium_consultations",
                "Consultations held by this node, by state and urgency.",
                &["state", "urgency"],
            ),
            peer_links: gauge_vec(
                "konsilium_peer_links",
                "Certified organizations connected now, by how: direct, hole-punched or relayed.",
                &["link"],
            ),
            reachability: gauge_vec(
                "konsilium_reachability",
                "1 for this node's reachability as probed (public, private, unknown), 0 for the others.",
                &["state"],
            ),
            relay_reservations: gauge(
                "konsilium_relay_reservations",
                "Relay reservations this node holds now (its relayed addresses).",
            ),
            hole_punches: counter_vec(
                "konsilium_hole_punches_total",
                "Attempts to turn a relayed connection into a direct one, by result.",
                &["result"],
            ),
            peer_bytes_held: gauge_vec(
                "konsilium_peer_bytes_held",
                "Bytes peers' requests being read or handled (hello, requests) and answers not \
                 yet written to them (answers) hold now.",
                &["budget"],
            ),
            peer_bytes_limit: gauge_vec(
                "konsilium_peer_bytes_limit",
                "What each of those may hold at once; a stream past it waits, an answer past it \
                 is refused for now.",
                &["budget"],
            ),
            video_links: gauge_vec(
                "konsilium_video_links",
                "Video links to other sites, by state (connecting, connected).",
                &["state"],
            ),
            video_rtt: float_vec(
                "konsilium_video_rtt_seconds",
                "Round trip to the other site of a video link.",
            ),
            video_loss: float_vec(
                "konsilium_video_loss_ratio",
                "Fraction of the other site's packets lost on their way here, last second.",
            ),
            video_receive_bps: float_vec(
                "konsilium_video_receive_bits_per_second",
                "What a video link received over the last second.",
            ),
            video_send_bps: float_vec(
                "konsilium_video_send_bits_per_second",
                "What a video link sent over the last second.",
            ),
            video_receive_fps: float_vec(
                "konsilium_video_receive_frames_per_second",
                "Video frames a link or a browser received over the last second.",
            ),
            video_send_fps: float_vec(
                "konsilium_video_send_frames_per_second",
                "Video frames a link or a browser was sent over the last second.",
            ),
            relay_served: counter_vec(
                "konsilium_relay_served_total",
                "What this node's relay service did for other nodes (reservation_accepted, \
                 reservation_denied, circuit_accepted, circuit_denied).",
                &["event"],
            ),
            deadline_events: counter_vec(
                "konsilium_deadline_events_total",
                "Consultation deadlines that became at risk or breached.",
                &["state"],
            ),
            escalations: counter(
                "konsilium_escalations_total",
                "Consultations escalated to the next candidate.",
            ),
            idle_closed: counter(
                "konsilium_idle_connections_closed_total",
                "Peers whose connections this node closed as idle: dialled by us, unused, \
                 outside the gossip mesh and the spares.",
            ),
            store_bytes: gauge(
                "konsilium_store_size_bytes",
                "Size of the node's sled database on disk.",
            ),
            uptime: gauge(
                "konsilium_uptime_seconds",
                "Seconds since the node started.",
            ),
            registry,
        }
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding into a Vec cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The content type Prometheus expects for [`Metrics::render`].
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
