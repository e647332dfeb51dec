//! What a simulated year is made of: the organizations, who asks whom about
//! what and how often, how consultants answer, and what goes wrong.
//!
//! A scenario is plain data, so a run can print it and an operator can
//! change one figure (the yearly volume, the urgency mix) from the command
//! line and see what moves.

pub mod national;
pub mod qiqihar;
pub mod vologda;

use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::urgency::Urgency;
use serde::Serialize;
use std::time::Duration;

pub const HOUR: Duration = Duration::from_secs(3600);
pub const DAY: Duration = Duration::from_secs(86_400);
pub const MINUTE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Serialize)]
pub struct Org {
    pub name: String,
    pub level: OrgLevel,
    /// ISO 3166-2 code: routing prefers the requester's own region.
    pub region: String,
    /// IANA zone of the organization's working calendar.
    pub time_zone: &'static str,
    /// For reports: "central district hospital", "village clinic", ...
    pub tier: &'static str,
    /// Specialties answered here, each with its consultants.
    pub offers: Vec<Offer>,
    /// This organization's share of the scenario's requests (0: never asks).
    pub asks: f64,
    /// Its published planned deadline, in working days (at most 4).
    pub planned_days: u8,
}

impl Org {
    pub fn new(name: impl Into<String>, level: OrgLevel, region: &str, tier: &'static str) -> Self {
        Self {
            name: name.into(),
            level,
            region: region.into(),
            time_zone: "Europe/Moscow",
            tier,
            offers: Vec::new(),
            asks: 0.0,
            planned_days: 4,
        }
    }

    pub fn offering(mut self, offers: Vec<Offer>) -> Self {
        self.offers = offers;
        self
    }

    pub fn asking(mut self, share: f64) -> Self {
        self.asks = share;
        self
    }

    pub fn in_zone(mut self, zone: &'static str) -> Self {
        self.time_zone = zone;
        self
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Offer {
    pub specialty: Specialty,
    /// Consultants who answer this specialty, each one case at a time.
    pub consultants: u32,
}

/// Offers of `consultants` each for these specialties, each once.
pub fn offers(specialties: &[Specialty], consultants: u32) -> Vec<Offer> {
    let mut offers: Vec<Offer> = Vec::with_capacity(specialties.len());
    for &specialty in specialties {
        if !offers.iter().any(|o| o.specialty == specialty) {
            offers.push(Offer {
                specialty,
                consultants,
            });
        }
    }
    offers
}

/// How often a specialty is asked for, and how often only a federal
/// center will do.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Demand {
    pub specialty: Specialty,
    pub weight: f64,
    /// Share of these requests that ask for federal level from the start.
    pub federal: f64,
}

impl Demand {
    pub fn new(specialty: Specialty, weight: f64, federal: f64) -> Self {
        Self {
            specialty,
            weight,
            federal,
        }
    }
}

/// Shares of the three urgencies; they need not sum to one.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct UrgencyMix {
    pub planned: f64,
    pub urgent: f64,
    pub emergency: f64,
}

impl UrgencyMix {
    /// The documents' default: 80 % planned, 15 % urgent, 5 % emergency.
    pub const DEFAULT: UrgencyMix = UrgencyMix {
        planned: 0.80,
        urgent: 0.15,
        emergency: 0.05,
    };

    pub fn weights(&self) -> [f64; 3] {
        [self.planned, self.urgent, self.emergency]
    }
}

/// A consultation held on a fixed weekly rhythm (the documents' weekly
/// neonatology consilium with federal centers).
#[derive(Debug, Clone, Serialize)]
pub struct Weekly {
    /// Index of the asking organization.
    pub requester: usize,
    pub specialty: Specialty,
    pub level: OrgLevel,
}

#[derive(Debug, Clone, Serialize)]
pub struct Workload {
    /// Consultations started in a year, besides the weekly ones.
    pub per_year: u32,
    pub mix: UrgencyMix,
    pub demand: Vec<Demand>,
    pub weekly: Vec<Weekly>,
}

/// A range of durations, drawn uniformly.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Span {
    pub min: Duration,
    pub max: Duration,
}

impl Span {
    pub const fn new(min: Duration, max: Duration) -> Self {
        Self { min, max }
    }
}

/// How a consulting organization's people answer, per urgency
/// (index: planned, urgent, emergency).
#[derive(Debug, Clone, Serialize)]
pub struct Answering {
    /// From a request's arrival to the coordinator accepting it.
    pub accept: [Span; 3],
    /// A consultant's own time on one case, once they start it.
    pub work: [Span; 3],
    /// Chance that the consultant is away when a planned or urgent case
    /// arrives, and how much later they come back to it.
    pub away: f64,
    pub away_for: Span,
    /// From a conclusion's arrival to the physician acknowledging it.
    pub acknowledge: Span,
}

impl Answering {
    pub fn of(urgency: Urgency) -> usize {
        match urgency {
            Urgency::Planned => 0,
            Urgency::Urgent => 1,
            Urgency::Emergency => 2,
        }
    }
}

impl Default for Answering {
    /// Emergencies answered by whoever is on call within the 30-minute
    /// response window, urgent cases within hours, planned ones within the
    /// 4 working days, as the documents' centers report.
    fn default() -> Self {
        Self {
            accept: [
                Span::new(HOUR, 20 * HOUR),
                Span::new(10 * MINUTE, 3 * HOUR),
                Span::new(3 * MINUTE, 20 * MINUTE),
            ],
            work: [
                Span::new(2 * HOUR, 2 * DAY),
                Span::new(HOUR, 8 * HOUR),
                Span::new(20 * MINUTE, 90 * MINUTE),
            ],
            away: 0.05,
            away_for: Span::new(6 * HOUR, 3 * DAY),
            acknowledge: Span::new(10 * MINUTE, 12 * HOUR),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub enum FaultKind {
    /// The organization's node is off the network.
    Down { org: usize },
    /// Nothing crosses between this region and the rest.
    RegionCut { region: String },
    /// Every link loses this share of messages.
    Loss { loss: f64 },
    /// Nobody at the organization answers requests.
    Unavailable { org: usize },
    /// This many emergencies of one specialty, spread over the fault.
    EmergencyBurst { count: u32, specialty: Specialty },
    /// The organization's certificate is revoked by its issuer; one
    /// operator puts the list in force and the nodes pass it on. Lasts for
    /// good: the fault's length is ignored.
    Revoked { org: usize },
    /// Nodes go down at random: each organization this many times a year,
    /// for about `outage` each time. Expanded into `Down` faults.
    Churn { per_org_year: f64, outage: Duration },
}

/// The first district organization, the one a scenario revokes.
pub fn first_district(orgs: &[Org]) -> usize {
    orgs.iter()
        .position(|o| o.level == OrgLevel::District)
        .unwrap_or(0)
}

#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    /// From the start of the run.
    pub at: Duration,
    pub lasts: Duration,
    pub kind: FaultKind,
}

#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub name: &'static str,
    pub title: &'static str,
    /// Where its figures come from, for the report.
    pub source: &'static str,
    pub orgs: Vec<Org>,
    pub workload: Workload,
    pub answering: Answering,
    pub faults: Vec<Fault>,
    /// One-way latency and jitter of every link.
    pub latency: Duration,
    pub jitter: Duration,
    pub days: u32,
    /// Anti-entropy interval while the year runs (see `year::world`).
    pub directory_interval: Duration,
    /// District organizations send packages for other regions through
    /// their region's first regional center, which carries them (the
    /// node's `relay_via`); otherwise every package goes straight to its
    /// recipient.
    pub relays: bool,
}

impl Scenario {
    pub fn by_name(name: &str) -> Option<Scenario> {
        match name {
            "vologda" => Some(vologda::scenario()),
            "qiqihar" => Some(qiqihar::scenario()),
            "national" => Some(national::scenario(national::Size::Regions85)),
            "national-stress" => Some(national::scenario(national::Size::Stress10k)),
            _ => None,
        }
    }

    pub const NAMES: [&'static str; 4] = ["vologda", "qiqihar", "national", "national-stress"];

    /// What a scenario must hold for a run to mean anything.
    pub fn check(&self) -> Result<(), String> {
        if self.orgs.is_empty() {
            return Err("no organizations".into());
        }
        if !self.orgs.iter().any(|o| o.asks > 0.0) {
            return Err("no organization asks for consultations".into());
        }
        if self.workload.demand.iter().all(|d| d.weight <= 0.0) {
            return Err("no specialty is in demand".into());
        }
        if self.workload.mix.weights().iter().all(|w| *w <= 0.0) {
            return Err("the urgency mix is empty".into());
        }
        if self.days == 0 || self.days > 364 {
            return Err(format!(
                "{} days: a run lasts 1 to 364 days (the test certificates are valid for a year)",
                self.days
            ));
        }
        let n = self.orgs.len();
        for org in &self.orgs {
            for (i, offer) in org.offers.iter().enumerate() {
                if org.offers[..i]
                    .iter()
                    .any(|o| o.specialty == offer.specialty)
                {
                    return Err(format!(
                        "{} offers {} twice",
                        org.name,
                        offer.specialty.slug()
                    ));
                }
                if offer.consultants == 0 {
                    return Err(format!(
                        "{} offers {} with no consultant",
                        org.name,
                        offer.specialty.slug()
                    ));
                }
            }
        }
        for f in &self.faults {
            let org = match &f.kind {
                FaultKind::Down { org }
                | FaultKind::Unavailable { org }
                | FaultKind::Revoked { org } => Some(*org),
                _ => None,
            };
            if let Some(o) = org.filter(|o| *o >= n) {
                return Err(format!("a fault names organization {o}; there are {n}"));
            }
        }
        for w in &self.workload.weekly {
            if w.requester >= n {
                return Err(format!(
                    "a weekly consultation names requester {}",
                    w.requester
                ));
            }
        }
        Ok(())
    }
}
