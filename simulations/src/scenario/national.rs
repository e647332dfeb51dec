//! The national federation: 85 regions of about 60 organizations each and
//! 100 federal centers (about 5,200 nodes), and a stress variant of
//! 10,000 nodes, with a year of consultations at Vologda's rate in every
//! region.

use super::*;
use konsilium_protocol::specialty::Specialty::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// 85 × 60 + 100 = 5,200 nodes.
    Regions85,
    /// 85 × 116 + 140 = 10,000 nodes.
    Stress10k,
}

pub const REGIONS: usize = 85;

pub fn region_code(r: usize) -> String {
    format!("RU-R{:02}", r + 1)
}

pub fn scenario(size: Size) -> Scenario {
    let (per_region, federal) = match size {
        Size::Regions85 => (60, 100),
        Size::Stress10k => (116, 140),
    };
    let mut orgs = Vec::with_capacity(REGIONS * per_region + federal);
    for r in 0..REGIONS {
        let region = region_code(r);
        orgs.push(
            Org::new(
                format!("{region} regional hospital"),
                OrgLevel::Regional,
                &region,
                "regional hospital",
            )
            .offering(offers(
                &[
                    Cardiology,
                    Urology,
                    VascularSurgery,
                    Neurology,
                    GeneralSurgery,
                    TraumatologyOrthopedics,
                    Oncology,
                    Gastroenterology,
                    Pulmonology,
                    Endocrinology,
                    Nephrology,
                ],
                2,
            ))
            .asking(2.0),
        );
        orgs.push(
            Org::new(
                format!("{region} regional children's hospital"),
                OrgLevel::Regional,
                &region,
                "regional hospital",
            )
            .offering(offers(
                &[
                    Pediatrics,
                    Neonatology,
                    PediatricSurgery,
                    ObstetricsGynecology,
                ],
                2,
            ))
            .asking(1.0),
        );
        for i in 0..per_region - 2 {
            orgs.push(
                Org::new(
                    format!("{region} district hospital {}", i + 1),
                    OrgLevel::District,
                    &region,
                    "central district hospital",
                )
                .asking(1.0),
            );
        }
    }
    orgs.extend(super::vologda::federal_centers(federal));
    let regional = (0..REGIONS).map(|r| r * per_region);
    let mut faults: Vec<Fault> = regional
        .clone()
        .take(5)
        .enumerate()
        .map(|(k, org)| Fault {
            at: DAY * (40 + 60 * k as u32),
            lasts: DAY,
            kind: FaultKind::Down { org },
        })
        .collect();
    faults.extend([
        // A district hospital's certificate revoked (a stolen key).
        Fault {
            at: 320 * DAY + 10 * HOUR,
            lasts: Duration::ZERO,
            kind: FaultKind::Revoked {
                org: first_district(&orgs),
            },
        },
        Fault {
            at: 120 * DAY,
            lasts: 7 * DAY,
            kind: FaultKind::Loss { loss: 0.05 },
        },
        Fault {
            at: 200 * DAY,
            lasts: 12 * HOUR,
            kind: FaultKind::RegionCut {
                region: region_code(10),
            },
        },
        Fault {
            at: 250 * DAY,
            lasts: 7 * DAY,
            kind: FaultKind::Unavailable {
                org: REGIONS * per_region,
            },
        },
        Fault {
            at: 300 * DAY,
            lasts: DAY,
            kind: FaultKind::EmergencyBurst {
                count: 200,
                specialty: Cardiology,
            },
        },
        Fault {
            at: Duration::ZERO,
            lasts: 364 * DAY,
            kind: FaultKind::Churn {
                per_org_year: 1.0,
                outage: 4 * HOUR,
            },
        },
    ]);
    Scenario {
        name: match size {
            Size::Regions85 => "national",
            Size::Stress10k => "national-stress",
        },
        title: match size {
            Size::Regions85 => "National: 85 regions and 100 federal centers (5,200 nodes)",
            Size::Stress10k => "National stress: 10,000 nodes",
        },
        source: "Russia's federal telemedicine system: 85 regions, each with a regional \
                 system like Vologda's, and the federal centers and national medical \
                 research centers of the Ministry of Health.",
        orgs,
        workload: Workload {
            per_year: 2_000 * REGIONS as u32,
            mix: UrgencyMix::DEFAULT,
            demand: super::vologda::scenario().workload.demand,
            weekly: Vec::new(),
        },
        answering: Answering::default(),
        faults,
        latency: Duration::from_millis(40),
        jitter: Duration::from_millis(30),
        days: 364,
        directory_interval: DAY,
        relays: false,
    }
}
