//! The operator's views of this node, built on the event loop so each one is
//! a consistent picture of one moment. They read the node's own state and
//! store; nothing here changes either.

use super::*;
use crate::storage::store::StoredConsultation;
use crate::telemetry::report::*;
use konsilium_protocol::deadline::DeadlineState;
use konsilium_protocol::directory::Query;
use konsilium_protocol::journal::{self, Action as JournalAction};
use konsilium_protocol::route::SkipReason;
use konsilium_protocol::workflow::{Consultation, Side};

/// What an operator asks a running node.
#[derive(Debug, Clone)]
pub enum Inspect {
    Status,
    Peers,
    Directory(Query),
    Route(RouteRequest),
    Requests(Option<WorkflowStatus>),
    Request(ConsultationId),
    Outbox,
    Sla,
    Sessions,
    JournalVerify,
    JournalTail(usize),
    JournalStats,
    Certs,
    Health,
}

/// What the node learned about a connected peer, for `konsilium peers`.
#[derive(Debug, Default)]
pub(super) struct PeerInfo {
    pub addresses: Vec<Multiaddr>,
    pub rtt: Option<Duration>,
    pub protocol_version: Option<String>,
    pub agent_version: Option<String>,
    pub protocols: Vec<String>,
    pub clock_skew_ms: Option<i64>,
    /// When the first relayed connection to the peer came up, and how long
    /// after it a direct one did (hole punching's time to upgrade).
    pub relayed_since: Option<std::time::Instant>,
    pub upgraded_after: Option<Duration>,
}

/// An organization this node refused, remembered so a routing dry run can
/// say why it is not a candidate (it is no longer in the directory).
#[derive(Debug, Clone)]
pub(super) struct RefusedOrg {
    pub name: String,
    pub revoked: bool,
    pub reason: String,
}

/// A peer refused recently, for `konsilium peers`.
#[derive(Debug, Clone)]
pub(super) struct RefusedPeer {
    pub peer: PeerId,
    pub reason: String,
    pub at: Timestamp,
    pub addresses: Vec<Multiaddr>,
}

/// Refused organizations remembered for the routing dry run.
const MAX_REFUSED: usize = 1024;

/// Addresses peers saw us at, most recent last: enough to judge NAT.
pub(super) const MAX_OBSERVED: usize = 16;

/// Certificates expiring within this many days are warned about.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

fn json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, NodeError> {
    serde_json::to_value(value).map_err(|e| NodeError::Network(format!("report encoding: {e}")))
}

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Seconds from `now` to `due`, negative once past.
fn seconds_until(now: Timestamp, due: Timestamp) -> i64 {
    let ms = due.unix_millis() as i128 - now.unix_millis() as i128;
    (ms / 1000) as i64
}

impl Node {
    pub(super) fn inspect(&self, what: Inspect) -> Result<serde_json::Value, NodeError> {
        match what {
            Inspect::Status => json(&self.status_report()),
            Inspect::Peers => json(&self.peer_reports()),
            Inspect::Directory(q) => json(&self.directory_report(&q)),
            Inspect::Route(r) => json(&self.route_report(r)),
            Inspect::Requests(state) => {
                let mut all = self.request_summaries()?;
                all.retain(|(_, c)| state.is_none_or(|s| c.status == s));
                json(&all.into_iter().map(|(s, _)| s).collect::<Vec<_>>())
            }
            Inspect::Request(id) => json(&self.request_detail(&id)?),
            Inspect::Outbox => json(&self.outbox_report()?),
            Inspect::Sla => json(&self.sla_report()?),
            Inspect::Sessions => json(&self.sessions_report()),
            Inspect::JournalVerify => json(&self.journal_verify()?),
            Inspect::JournalTail(n) => json(&self.journal_tail(n)?),
            Inspect::JournalStats => json(&self.journal_stats()?),
            Inspect::Certs => json(&self.certs_report()),
            Inspect::Health => json(&self.health_report()),
        }
    }

    pub(super) fn org_name(&self, org: &OrgId) -> String {
        self.directory()
            .get(org)
            .map(|e| e.name().to_owned())
            .or_else(|| self.refused_orgs.get(org).map(|r| r.name.clone()))
            .unwrap_or_default()
    }

    fn connected_orgs(&self) -> usize {
        self.admission
            .admitted_peers()
            .map(|(_, org)| org)
            .collect::<BTreeSet<_>>()
            .len()
    }

    fn deadline_counts(&self) -> (usize, usize) {
        let (mut at_risk, mut breached) = (0, 0);
        for state in self.desk.deadline_states() {
            match state {
                DeadlineState::AtRisk => at_risk += 1,
                DeadlineState::Breached => breached += 1,
                DeadlineState::OnTrack => {}
            }
        }
        (at_risk, breached)
    }

    fn status_report(&self) -> StatusReport {
        let now = self.now();
        let cert = &self.me.cert;
        let (at_risk, breached) = self.deadline_counts();
        StatusReport {
            org: cert.org.to_string(),
            name: cert.name.clone(),
            level: cert.level.to_string(),
            region: cert.region.to_string(),
            certificate: CertValidity {
                serial: cert.serial,
                valid_from: cert.validity.from.to_string(),
                valid_until: cert.validity.until.to_string(),
                days_left: days_left(now, cert.validity.until),
            },
            started_at: self.started_at.to_string(),
            uptime_secs: now.since(self.started_at).as_secs(),
            listen: self.listen_addrs.iter().map(|a| a.to_string()).collect(),
            observed: self.observed.iter().map(|a| a.to_string()).collect(),
            role: self.role.as_str().into(),
            nat: self.reach.reachability().as_str().into(),
            confirmed: self.reach.confirmed().map(|a| a.to_string()).collect(),
            reservations: self.reservation_reports(),
            peers_connected: self.connected_orgs(),
            directory_size: self.directory().len(),
            directory_digest: hex(&self.directory().digest()),
            outbox_depth: self.outbox.len(),
            inbox_depth: self.store.inbox_len(),
            attachments_incoming: self.fetches.len(),
            deadlines_at_risk: at_risk,
            deadlines_breached: breached,
            video: (self.media.as_ref()).map(|m| m.local_addr().to_string()),
            video_mapped: (self.media.as_ref())
                .and_then(|m| m.reflexive())
                .map(|a| a.to_string()),
            video_relay: (self.media.as_ref())
                .and_then(|m| m.relay())
                .map(|(addr, server)| format!("{addr} via {server}")),
            stun_service: (self.stun.as_ref()).map(|s| s.local_addr().to_string()),
            recovery: self.recovery.report().map(|r| self.recovery_view(r)),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    /// What the connection tells about a peer, whatever its admission.
    fn peer_report(&self, peer: &PeerId, admission: &str, reason: Option<String>) -> PeerReport {
        let info = self.peer_info.get(peer);
        PeerReport {
            admission: admission.into(),
            reason,
            org: OrgId::from_peer_id(peer)
                .map(|o| o.to_string())
                .unwrap_or_else(|_| peer.to_string()),
            name: String::new(),
            level: String::new(),
            region: String::new(),
            addresses: info
                .map(|i| i.addresses.iter().map(|a| a.to_string()).collect())
                .unwrap_or_default(),
            latency_ms: info.and_then(|i| i.rtt).map(|d| d.as_secs_f64() * 1000.0),
            protocol_version: info.and_then(|i| i.protocol_version.clone()),
            agent_version: info.and_then(|i| i.agent_version.clone()),
            protocols: info.map(|i| i.protocols.clone()).unwrap_or_default(),
            gossip_score: self.swarm.behaviour().gossipsub.peer_score(peer),
            clock_skew_ms: info.and_then(|i| i.clock_skew_ms),
            link: self.link(peer).map(|l| l.as_str().to_owned()),
            hole_punch_ms: info
                .and_then(|i| i.upgraded_after)
                .map(|d| d.as_secs_f64() * 1000.0),
            connections: (self.ladder.links(peer))
                .map(|l| l.as_str().to_owned())
                .collect(),
        }
    }

    /// A peer that is an organization we know, as the directory names it.
    fn org_report(&self, peer: &PeerId, org: OrgId, admission: &str) -> PeerReport {
        let entry = self.directory().get(&org);
        PeerReport {
            org: org.to_string(),
            name: self.org_name(&org),
            level: entry.map(|e| e.level().to_string()).unwrap_or_default(),
            region: entry.map(|e| e.region().to_string()).unwrap_or_default(),
            ..self.peer_report(peer, admission, None)
        }
    }

    fn peer_reports(&self) -> Vec<PeerReport> {
        let mut peers: Vec<PeerReport> = self
            .admission
            .admitted_peers()
            .map(|(peer, org)| self.org_report(&peer, org, "admitted"))
            .collect();
        peers.sort_by(|a, b| (&a.level, &a.name).cmp(&(&b.level, &b.name)));
        peers.extend(
            self.admission
                .waiting()
                .map(|(peer, _)| self.peer_report(&peer, "pending", None)),
        );
        peers.extend(self.stored_and_forwarded());
        let now = self.now();
        peers.extend(self.recent_refusals.iter().rev().map(|r| PeerReport {
            addresses: r.addresses.iter().map(|a| a.to_string()).collect(),
            name: format!("refused {} s ago", now.since(r.at).as_secs()),
            ..self.peer_report(&r.peer, "refused", Some(r.reason.clone()))
        }));
        peers
    }

    /// The ladder's last rung: organizations we are not connected to whose
    /// packages wait with, or went to, a relay that stores and forwards.
    fn stored_and_forwarded(&self) -> Vec<PeerReport> {
        let mut via: BTreeMap<OrgId, (OrgId, usize)> = BTreeMap::new();
        for e in self.outbox.entries() {
            let to = e.package.recipient;
            if e.next_hop != to && !self.swarm.is_connected(&to.to_peer_id()) {
                via.entry(to).or_insert((e.next_hop, 0)).1 += 1;
            }
        }
        via.into_iter()
            .map(|(org, (relay, packages))| PeerReport {
                link: Some(format!(
                    "store-and-forward via {} ({packages} packages)",
                    self.org_name(&relay)
                )),
                ..self.org_report(&org.to_peer_id(), org, "not connected")
            })
            .collect()
    }

    fn directory_report(&self, q: &Query) -> Vec<DirectoryEntryReport> {
        let now = self.now();
        self.directory()
            .query(q)
            .map(|e| {
                let r = e.record();
                DirectoryEntryReport {
                    org: e.org().to_string(),
                    name: e.name().to_owned(),
                    level: e.level().to_string(),
                    region: e.region().to_string(),
                    sequence: r.sequence,
                    issued_at: r.issued_at.to_string(),
                    age_secs: now.since(r.issued_at).as_secs(),
                    time_zone: r.calendar.time_zone.as_str().to_owned(),
                    services: r
                        .services
                        .iter()
                        .map(|s| ServiceReport {
                            specialty: s.specialty.slug().into(),
                            urgencies: s.urgencies.iter().map(|u| u.to_string()).collect(),
                        })
                        .collect(),
                    consultants: r
                        .consultants
                        .iter()
                        .map(|c| ConsultantReport {
                            name: c.name.clone(),
                            specialties: c.specialties.iter().map(|s| s.slug().into()).collect(),
                            languages: c.languages.iter().map(|l| l.as_str().into()).collect(),
                        })
                        .collect(),
                    addresses: r.addresses.iter().map(|a| a.to_string()).collect(),
                }
            })
            .collect()
    }

    /// A dry run for a request from this node: it never picks itself and
    /// prefers its own region unless told otherwise.
    fn route_report(&self, mut request: RouteRequest) -> RouteReport {
        request.exclude.insert(self.me.cert.org);
        if request.region.is_none() {
            request.region = Some(self.me.cert.region.clone());
        }
        let decision = route::rank(self.directory(), &request, self.now());
        let candidates = decision
            .candidates
            .iter()
            .enumerate()
            .map(|(i, c)| RouteCandidate {
                rank: i + 1,
                org: c.org.to_string(),
                name: c.name.clone(),
                level: c.level.to_string(),
                region: c.region.to_string(),
                same_region: c.same_region,
                next_slot: c.next_slot.map(|t| t.to_string()),
                why: format!(
                    "offers {} for {} at level {}, {}",
                    request.specialty.slug(),
                    request.urgency,
                    c.level,
                    if c.same_region {
                        "same region"
                    } else {
                        "another region"
                    }
                ),
            })
            .collect();
        let mut skipped: Vec<RouteSkip> = decision
            .skipped
            .iter()
            .map(|(org, name, why)| RouteSkip {
                org: org.to_string(),
                name: name.clone(),
                reason_code: match why {
                    SkipReason::Excluded => "excluded",
                    SkipReason::SpecialtyNotOffered => "specialty_not_offered",
                    SkipReason::LevelTooLow { .. } => "level_too_low",
                    SkipReason::UrgencyNotAccepted => "urgency_not_accepted",
                }
                .into(),
                reason: why.to_string(),
            })
            .collect();
        skipped.extend(self.refused_orgs.iter().map(|(org, r)| {
            RouteSkip {
                org: org.to_string(),
                name: r.name.clone(),
                reason_code: if r.revoked {
                    "revoked"
                } else {
                    "certificate_refused"
                }
                .into(),
                reason: r.reason.clone(),
            }
        }));
        RouteReport {
            specialty: request.specialty.slug().into(),
            min_level: request.min_level.to_string(),
            urgency: request.urgency.to_string(),
            region: request.region.map(|r| r.to_string()),
            candidates,
            skipped,
        }
    }

    fn summary(&self, stored: &StoredConsultation, c: &Consultation) -> RequestSummary {
        let now = self.now();
        let me = self.me.cert.org;
        let counterpart = konsilium_protocol::desk::counterpart(&c.request, me);
        let open = !c.status.is_final() && c.conclusion.is_none();
        let deadline = self.deadline(&c.request);
        let open_deadline = deadline.as_ref().filter(|_| open);
        RequestSummary {
            id: c.id().to_string(),
            side: c.side_of(me).unwrap_or(Side::Consulting).to_string(),
            counterpart: counterpart.to_string(),
            counterpart_name: self.org_name(&counterpart),
            specialty: c.request.specialty.slug().into(),
            urgency: c.request.urgency.to_string(),
            state: c.status.to_string(),
            created: c.request.created.to_string(),
            deadline: deadline.as_ref().map(|d| d.due.to_string()),
            time_left_secs: open_deadline.map(|d| seconds_until(now, d.due)),
            deadline_state: open_deadline.map(|d| d.state(now).as_str().into()),
            escalated_from: c.request.escalated_from.map(|i| i.to_string()),
            escalated_to: stored.escalated_to.map(|i| i.to_string()),
        }
    }

    fn request_summaries(&self) -> Result<Vec<(RequestSummary, Consultation)>, NodeError> {
        let mut out = Vec::new();
        // One read of the store; the state is the desk's.
        for stored in self.store.consultations()? {
            let case = super::consult::request_id(&stored).and_then(|id| self.desk.case(&id));
            let Some(case) = case else {
                continue;
            };
            out.push((
                self.summary(&stored, &case.consultation),
                case.consultation.clone(),
            ));
        }
        out.sort_by(|a, b| b.0.created.cmp(&a.0.created));
        Ok(out)
    }

    fn request_detail(&self, id: &ConsultationId) -> Result<RequestDetail, NodeError> {
        let (stored, c) = self.load_consultation(id)?;
        // Every organization asked: follow the escalation links both ways.
        let mut hops = Vec::new();
        let mut back = c.request.escalated_from;
        while let Some(prev) = back {
            let Some(p) = self.store.consultation(&prev)? else {
                break;
            };
            let p = p.request.decode_unverified()?;
            hops.insert(0, (p.id, p.consultant));
            back = p.escalated_from;
        }
        hops.push((c.id(), c.request.consultant));
        let mut forward = stored.escalated_to;
        while let Some(next) = forward {
            let Some(n) = self.store.consultation(&next)? else {
                break;
            };
            let r = n.request.decode_unverified()?;
            hops.push((r.id, r.consultant));
            forward = n.escalated_to;
        }
        let transitions = c
            .history
            .iter()
            .filter_map(|s| s.decode_unverified().ok())
            .map(|t| TransitionReport {
                seq: t.seq,
                at: t.at.to_string(),
                actor: t.actor.to_string(),
                role: t.role.to_string(),
                user: t.user.clone(),
                action: t.action.name().into(),
            })
            .collect();
        let mut receipts = Vec::new();
        for entry in self.store.journal()? {
            if let JournalAction::Send {
                consultation,
                package,
            } = entry.action
                && consultation == id.0
                && let Some(sent) = self.store.sent_entry(&package)?
                && let Ok(receipt) = sent.receipt.decode_unverified()
            {
                receipts.push(ReceiptReport {
                    package: package.to_string(),
                    recipient: sent.recipient.to_string(),
                    received_at: receipt.received_at.to_string(),
                    attempts: sent.attempts,
                });
            }
        }
        let conclusion = (stored.conclusion.as_ref())
            .filter(|f| f.concludes(&c))
            .and_then(|f| f.conclusion.decode_unverified().ok())
            .map(|c| ConclusionReport {
                issued_at: c.issued_at.to_string(),
                diagnosis: c.diagnosis,
                signer: c.consultant_org.to_string(),
            });
        Ok(RequestDetail {
            summary: self.summary(&stored, &c),
            physician: c.request.physician.clone(),
            consultant_org: c.request.consultant.to_string(),
            requester_org: c.request.requester.to_string(),
            hops: hops
                .into_iter()
                .map(|(id, org)| Hop {
                    consultation: id.to_string(),
                    consultant: org.to_string(),
                    consultant_name: self.org_name(&org),
                })
                .collect(),
            transitions,
            receipts,
            conclusion,
        })
    }

    fn outbox_report(&self) -> Result<Vec<OutboxReport>, NodeError> {
        Ok(self
            .store
            .outbox()?
            .into_iter()
            .map(|e| OutboxReport {
                package: e.package.header.id.to_string(),
                recipient: e.package.header.recipient.to_string(),
                recipient_name: self.org_name(&e.package.header.recipient),
                next_hop: e.next_hop.to_string(),
                origin: match e.origin {
                    Origin::Local => "local",
                    Origin::Relay => "relay",
                }
                .into(),
                attempts: e.attempts,
                next_retry: match e.refused {
                    Some(_) => String::new(),
                    None => e.next_attempt.to_string(),
                },
                last_error: e.last_error.clone(),
                refused: e.refused.as_ref().map(|r| r.to_string()),
                custody: e.custody.map(|o| o.to_string()),
                queued_at: e.queued_at.to_string(),
                bytes: e.package.body.len(),
            })
            .collect())
    }

    fn sla_report(&self) -> Result<SlaReport, NodeError> {
        let mut report = SlaReport::default();
        let mut by_urgency: BTreeMap<String, SlaCount> = BTreeMap::new();
        let mut by_counterpart: BTreeMap<String, SlaCount> = BTreeMap::new();
        for (summary, _) in self.request_summaries()? {
            let Some(state) = summary.deadline_state.clone() else {
                continue;
            };
            let keys = [
                (&mut by_urgency, summary.urgency.clone(), String::new()),
                (
                    &mut by_counterpart,
                    summary.counterpart.clone(),
                    summary.counterpart_name.clone(),
                ),
            ];
            for (map, key, name) in keys {
                let count = map.entry(key.clone()).or_insert_with(|| SlaCount {
                    key,
                    name,
                    ..SlaCount::default()
                });
                match state.as_str() {
                    "at_risk" => count.at_risk += 1,
                    "breached" => count.breached += 1,
                    _ => count.on_track += 1,
                }
            }
            if state != "on_track" {
                report.late.push(summary);
            }
        }
        report.by_urgency = by_urgency.into_values().collect();
        report.by_counterpart = by_counterpart.into_values().collect();
        Ok(report)
    }

    fn journal_verify(&self) -> Result<JournalVerifyReport, NodeError> {
        let anchor = crate::storage::anchor::read(&self.data_dir).map_err(StoreError::from)?;
        Ok(JournalVerifyReport::check(
            &self.store.journal()?,
            &self.store.checkpoints()?,
            anchor,
            &self.me.cert.org,
        ))
    }

    fn journal_tail(&self, n: usize) -> Result<Vec<JournalEntryReport>, NodeError> {
        let entries = self.store.journal()?;
        let skip = entries.len().saturating_sub(n);
        Ok(entries
            .into_iter()
            .skip(skip)
            .map(|e| JournalEntryReport {
                seq: e.seq,
                at: e.at.to_string(),
                actor: e.actor.clone(),
                role: e.role.map(|r| r.to_string()),
                consultation: e
                    .action
                    .consultation()
                    .map(|c| ConsultationId(c).to_string()),
                action: e.action.to_string(),
            })
            .collect())
    }

    fn journal_stats(&self) -> Result<JournalStatsReport, NodeError> {
        Ok(JournalStatsReport::from(&journal::stats(
            &self.store.journal()?,
        )))
    }

    fn certs_report(&self) -> CertsReport {
        let now = self.now();
        let cert = &self.me.cert;
        let mut warnings = Vec::new();
        let mut warn = |what: &str, days: i64, until: Timestamp| {
            if days < 0 {
                warnings.push(format!("{what} expired at {until}"));
            } else if days <= EXPIRY_WARNING_DAYS {
                warnings.push(format!(
                    "{what} expires in {days} days ({until}): ask your authority for a new one"
                ));
            }
        };
        let org_days = days_left(now, cert.validity.until);
        warn(
            "the organization certificate",
            org_days,
            cert.validity.until,
        );
        let authority = self.me.authority.as_ref().map(|a| {
            let days = days_left(now, a.validity.until);
            warn("the regional authority certificate", days, a.validity.until);
            AuthorityReport {
                key: a.authority.to_string(),
                name: a.name.clone(),
                region: a.scope.region.to_string(),
                max_level: a.scope.max_level.to_string(),
                issuer: a.issuer.to_string(),
                serial: a.serial,
                valid_from: a.validity.from.to_string(),
                valid_until: a.validity.until.to_string(),
                days_left: days,
            }
        });
        CertsReport {
            roots: self.trust.roots().map(|r| r.to_string()).collect(),
            authority,
            organization: OrgCertReport {
                org: cert.org.to_string(),
                name: cert.name.clone(),
                level: cert.level.to_string(),
                region: cert.region.to_string(),
                issuer: cert.issuer.to_string(),
                serial: cert.serial,
                valid_from: cert.validity.from.to_string(),
                valid_until: cert.validity.until.to_string(),
                days_left: org_days,
            },
            revocations: self
                .trust
                .revocation_notices()
                .filter_map(|n| n.list.decode_unverified().ok())
                .map(|l| RevocationReport {
                    issuer: l.issuer.to_string(),
                    sequence: l.sequence,
                    issued_at: l.issued_at.to_string(),
                    serials: l.revoked.into_iter().collect(),
                })
                .collect(),
            warnings,
        }
    }

    fn health_report(&self) -> HealthReport {
        HealthReport {
            bootstrap: self
                .bootstrap
                .iter()
                .map(|addr| BootstrapReport {
                    address: addr.to_string(),
                    connected: addr
                        .iter()
                        .find_map(|p| match p {
                            libp2p::multiaddr::Protocol::P2p(peer) => Some(peer),
                            _ => None,
                        })
                        .is_some_and(|p| self.admission.admitted(&p).is_some()),
                })
                .collect(),
            clock_skew: self
                .admission
                .admitted_peers()
                .filter_map(|(peer, org)| {
                    let skew = self.peer_info.get(&peer)?.clock_skew_ms?;
                    Some(SkewReport {
                        org: org.to_string(),
                        name: self.org_name(&org),
                        skew_ms: skew,
                    })
                })
                .collect(),
            listen: self.listen_addrs.iter().map(|a| a.to_string()).collect(),
            nat: self.reach.reachability().as_str().into(),
        }
    }

    /// Sets the gauges from the node's state and renders every metric.
    pub(super) fn render_metrics(&self) -> String {
        let m = &self.metrics;
        self.set_reach_metrics();
        self.set_video_metrics();
        m.peers.set(self.connected_orgs() as i64);
        m.directory_records.set(self.directory().len() as i64);
        m.outbox_packages.set(self.outbox.len() as i64);
        m.inbox_packages.set(self.store.inbox_len() as i64);
        m.store_bytes
            .set(i64::try_from(self.store.size_on_disk()).unwrap_or(i64::MAX));
        m.uptime
            .set(self.now().since(self.started_at).as_secs() as i64);
        for (name, budget) in self.budgets.named() {
            let gauge = |bytes: usize| i64::try_from(bytes).unwrap_or(i64::MAX);
            m.peer_bytes_held
                .with_label_values(&[name])
                .set(gauge(budget.held()));
            m.peer_bytes_limit
                .with_label_values(&[name])
                .set(gauge(budget.limit()));
        }
        // From the desk's memory: a scrape every few seconds must not read
        // every consultation from the database.
        m.consultations.reset();
        for case in self.desk.cases() {
            let c = &case.consultation;
            let (state, urgency) = (c.status.to_string(), c.request.urgency.to_string());
            m.consultations.with_label_values(&[&state, &urgency]).inc();
        }
        m.render()
    }

    /// Remembers an organization refused for its certificate. Only
    /// certificates some federation authority really issued are remembered
    /// (revoked, expired, out of scope): anyone can mint self-signed ones,
    /// and those must not grow the node's memory.
    pub(super) fn note_refused(&mut self, org: OrgId, name: String, error: &CertError) {
        if matches!(error, CertError::UnknownRoot { .. } | CertError::Signed(_))
            || (self.refused_orgs.len() >= MAX_REFUSED && !self.refused_orgs.contains_key(&org))
        {
            return;
        }
        self.refused_orgs.insert(
            org,
            RefusedOrg {
                name,
                revoked: matches!(error, CertError::Revoked { .. }),
                reason: error.to_string(),
            },
        );
    }
}

impl Node {
    pub(super) fn status(&self) -> Status {
        Status {
            org: self.me.cert.org,
            name: self.me.cert.name.clone(),
            level: self.me.cert.level,
            region: self.me.cert.region.clone(),
            listen: self.listen_addrs.clone(),
            peers: self
                .admission
                .admitted_peers()
                .map(|(_, org)| org)
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
            directory_size: self.directory().len(),
            directory_digest: self.directory().digest(),
            outbox: self.outbox.len(),
            inbox: self.store.inbox_len(),
        }
    }
}
