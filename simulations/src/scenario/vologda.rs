//! The Vologda region: 43 organizations on the regional telemedicine
//! system, 25 of them central district hospitals, consulting 62 federal
//! centers and national research centers; more than 2,000 consultations a
//! year since 2021 (106 in 2019). Urologists, cardiologists, neonatologists
//! and vascular surgeons are the ones who most often call federal clinics.

use super::*;
use konsilium_protocol::specialty::Specialty::*;

const REGION: &str = "RU-VLG";

pub fn scenario() -> Scenario {
    let mut orgs = vec![
        Org::new(
            "Vologda Regional Clinical Hospital",
            OrgLevel::Regional,
            REGION,
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
                Neurosurgery,
                Gastroenterology,
                Pulmonology,
                Endocrinology,
                Nephrology,
                Hematology,
                Rheumatology,
            ],
            2,
        ))
        .asking(2.0),
        Org::new(
            "Vologda Regional Children's Hospital",
            OrgLevel::Regional,
            REGION,
            "regional hospital",
        )
        .offering(offers(
            &[
                Pediatrics,
                PediatricSurgery,
                PediatricNeurology,
                PediatricCardiology,
            ],
            2,
        ))
        .asking(1.0),
        Org::new(
            "Vologda Regional Perinatal Center",
            OrgLevel::Regional,
            REGION,
            "regional hospital",
        )
        .offering(offers(&[Neonatology, ObstetricsGynecology], 2))
        .asking(1.0),
        Org::new(
            "Vologda Regional Oncology Dispensary",
            OrgLevel::Regional,
            REGION,
            "regional hospital",
        )
        .offering(offers(&[Oncology, RadiationOncology], 2))
        .asking(1.0),
        Org::new(
            "Vologda Regional Cardiology Dispensary",
            OrgLevel::Regional,
            REGION,
            "regional hospital",
        )
        .offering(offers(&[Cardiology], 2))
        .asking(0.5),
        Org::new(
            "Cherepovets City Hospital No. 1",
            OrgLevel::Regional,
            REGION,
            "interdistrict center",
        )
        .offering(offers(
            &[
                Cardiology,
                Neurology,
                VascularSurgery,
                TraumatologyOrthopedics,
            ],
            1,
        ))
        .asking(1.5),
    ];
    for i in 1..=25 {
        orgs.push(
            Org::new(
                format!("Central district hospital {i}"),
                OrgLevel::District,
                REGION,
                "central district hospital",
            )
            .asking(1.0),
        );
    }
    for i in 1..=12 {
        orgs.push(
            Org::new(
                format!("City hospital {i}"),
                OrgLevel::District,
                REGION,
                "city hospital",
            )
            .asking(0.5),
        );
    }
    let perinatal = 2;
    let revoked = first_district(&orgs);
    orgs.extend(federal_centers(62));
    Scenario {
        name: "vologda",
        title: "Vologda region: 43 organizations consulting 62 federal centers",
        source: "Vologda regional health department, 2022: 43 organizations (25 central \
                 district hospitals) on the regional telemedicine system, 62 federal \
                 institutions and national medical research centers; 106 consultations in \
                 2019, more than 2,000 in 2021.",
        orgs,
        workload: Workload {
            per_year: 2_000,
            mix: UrgencyMix::DEFAULT,
            demand: vec![
                Demand::new(Urology, 12.0, 0.35),
                Demand::new(Cardiology, 18.0, 0.30),
                Demand::new(Neonatology, 8.0, 0.50),
                Demand::new(VascularSurgery, 8.0, 0.35),
                Demand::new(Oncology, 12.0, 0.30),
                Demand::new(Neurology, 8.0, 0.15),
                Demand::new(Pediatrics, 6.0, 0.15),
                Demand::new(TraumatologyOrthopedics, 6.0, 0.10),
                Demand::new(ObstetricsGynecology, 5.0, 0.20),
                Demand::new(Neurosurgery, 4.0, 0.40),
                Demand::new(Gastroenterology, 4.0, 0.10),
                Demand::new(Rheumatology, 3.0, 0.30),
                Demand::new(Hematology, 3.0, 0.40),
                Demand::new(CardiacSurgery, 3.0, 1.0),
            ],
            weekly: vec![Weekly {
                requester: perinatal,
                specialty: Neonatology,
                level: OrgLevel::Federal,
            }],
        },
        answering: Answering::default(),
        faults: vec![
            // The regional clinical hospital's node down for a day.
            Fault {
                at: 100 * DAY,
                lasts: DAY,
                kind: FaultKind::Down { org: 0 },
            },
            // A week of bad links: one message in ten lost.
            Fault {
                at: 150 * DAY,
                lasts: 7 * DAY,
                kind: FaultKind::Loss { loss: 0.1 },
            },
            // The region cut off from the federal centers for six hours.
            Fault {
                at: 200 * DAY + 9 * HOUR,
                lasts: 6 * HOUR,
                kind: FaultKind::RegionCut {
                    region: REGION.into(),
                },
            },
            // The federal cardiology center's consultants away for two weeks.
            Fault {
                at: 250 * DAY,
                lasts: 14 * DAY,
                kind: FaultKind::Unavailable { org: 43 },
            },
            // A burst of cardiac emergencies over two days.
            Fault {
                at: 300 * DAY,
                lasts: 2 * DAY,
                kind: FaultKind::EmergencyBurst {
                    count: 30,
                    specialty: Cardiology,
                },
            },
            // A central district hospital's certificate revoked (a stolen key).
            Fault {
                at: 320 * DAY + 10 * HOUR,
                lasts: Duration::ZERO,
                kind: FaultKind::Revoked { org: revoked },
            },
            // Every node down twice a year for about four hours.
            Fault {
                at: Duration::ZERO,
                lasts: 364 * DAY,
                kind: FaultKind::Churn {
                    per_org_year: 2.0,
                    outage: 4 * HOUR,
                },
            },
        ],
        latency: Duration::from_millis(30),
        jitter: Duration::from_millis(20),
        days: 364,
        directory_interval: 6 * HOUR,
        // The regional telemedicine center carries its districts' packages to
        // the federal centers.
        relays: true,
    }
}

/// Federal centers and national medical research centers in Moscow and
/// Saint Petersburg, each strong in a few specialties; the first is the
/// cardiology center.
pub fn federal_centers(n: usize) -> Vec<Org> {
    let all = Specialty::ALL;
    (0..n)
        .map(|i| {
            let lead = if i == 0 {
                Cardiology
            } else {
                all[i % all.len()]
            };
            let specialties = [
                lead,
                all[(i * 7 + 3) % all.len()],
                all[(i * 11 + 5) % all.len()],
            ];
            let region = if i % 3 == 2 { "RU-SPE" } else { "RU-MOW" };
            Org::new(
                format!(
                    "National medical research center {} ({})",
                    i + 1,
                    lead.slug()
                ),
                OrgLevel::Federal,
                region,
                "federal center",
            )
            .offering(offers(&specialties, 3))
        })
        .collect()
}
