//! Qiqihar: one city consultation center (at the city's First Hospital)
//! linking 130 units in four tiers (city, county, township, village) to 30+
//! top-tier hospitals in Beijing and Shanghai, whose experts can be booked
//! within 3 working days, and to an international network of 1,000+
//! consultants in 20+ specialties. The documents' emergency: acute
//! myocardial infarction at a village clinic, answered by the city
//! center's cardiology department by video.

use super::*;
use konsilium_protocol::specialty::Specialty::*;

const REGION: &str = "CN-HL";
const ZONE: &str = "Asia/Shanghai";

pub fn scenario() -> Scenario {
    let mut orgs = vec![
        Org::new(
            "Qiqihar city consultation center (First Hospital)",
            OrgLevel::Regional,
            REGION,
            "city consultation center",
        )
        .in_zone(ZONE)
        .offering(offers(
            &[
                Cardiology,
                Neurology,
                GeneralSurgery,
                Pediatrics,
                ObstetricsGynecology,
                TraumatologyOrthopedics,
                Pulmonology,
                Gastroenterology,
                Endocrinology,
                Nephrology,
                Oncology,
                Urology,
                InfectiousDiseases,
                Radiology,
            ],
            3,
        ))
        .asking(1.0),
    ];
    let city = [Cardiology, Neurology, Pediatrics, Oncology, Radiology];
    for i in 0..9 {
        orgs.push(
            Org::new(
                format!("City hospital {}", i + 1),
                OrgLevel::District,
                REGION,
                "city hospital",
            )
            .in_zone(ZONE)
            .offering(offers(&[city[i % city.len()]], 1))
            .asking(1.0),
        );
    }
    for (tier, count, share) in [
        ("county hospital", 16, 2.0),
        ("township health center", 40, 0.8),
        ("village clinic", 64, 0.3),
    ] {
        for i in 0..count {
            orgs.push(
                Org::new(
                    format!("{tier} {}", i + 1),
                    OrgLevel::District,
                    REGION,
                    tier,
                )
                .in_zone(ZONE)
                .asking(share),
            );
        }
    }
    let all = Specialty::ALL;
    for i in 0..32 {
        let (region, city) = if i < 20 {
            ("CN-BJ", "Beijing")
        } else {
            ("CN-SH", "Shanghai")
        };
        let specialties: Vec<Specialty> = (0..4).map(|k| all[(i * 5 + k * 9) % 30]).collect();
        let mut org = Org::new(
            format!("{city} top-tier hospital {}", i + 1),
            OrgLevel::Federal,
            region,
            "top-tier hospital",
        )
        .in_zone(ZONE)
        .offering(offers(&specialties, 2));
        org.planned_days = 3;
        orgs.push(org);
    }
    // 1,000+ consultants in 20+ specialties, held by a dozen partner centers.
    for i in 0..12 {
        let specialties: Vec<Specialty> = (0..7).map(|k| all[(i * 3 + k * 4) % 24]).collect();
        orgs.push(
            Org::new(
                format!("International partner center {}", i + 1),
                OrgLevel::Federal,
                "US-NY",
                "international partner",
            )
            .in_zone("America/New_York")
            .offering(offers(&specialties, 12)),
        );
    }
    let revoked = first_district(&orgs);
    Scenario {
        name: "qiqihar",
        title: "Qiqihar: a city consultation center for 130 units in four tiers",
        source: "Qiqihar News, 2018: the city consultation center links 130 units (city, \
                 county, township, village), 30+ top-tier hospitals in Beijing and Shanghai \
                 bookable within 3 working days, and 1,000+ international consultants in 20+ \
                 specialties; 400+ patients consulted across centers since 2017.",
        orgs,
        workload: Workload {
            per_year: 1_500,
            mix: UrgencyMix::DEFAULT,
            demand: vec![
                Demand::new(Cardiology, 20.0, 0.10),
                Demand::new(Neurology, 12.0, 0.15),
                Demand::new(Oncology, 12.0, 0.35),
                Demand::new(Pediatrics, 8.0, 0.10),
                Demand::new(GeneralSurgery, 6.0, 0.05),
                Demand::new(TraumatologyOrthopedics, 6.0, 0.05),
                Demand::new(ObstetricsGynecology, 5.0, 0.05),
                Demand::new(Rheumatology, 4.0, 1.0),
                Demand::new(Neurosurgery, 4.0, 1.0),
                Demand::new(CardiacSurgery, 3.0, 1.0),
                Demand::new(Radiology, 8.0, 0.05),
                Demand::new(Pulmonology, 5.0, 0.10),
            ],
            weekly: Vec::new(),
        },
        answering: Answering::default(),
        faults: vec![
            // The city center's node down for half a day: the whole tiered
            // network loses its hub.
            Fault {
                at: 90 * DAY,
                lasts: 12 * HOUR,
                kind: FaultKind::Down { org: 0 },
            },
            // Winter links to the villages: one message in five lost for a week.
            Fault {
                at: 30 * DAY,
                lasts: 7 * DAY,
                kind: FaultKind::Loss { loss: 0.2 },
            },
            // A day of cardiac emergencies from the villages and townships.
            Fault {
                at: 180 * DAY,
                lasts: DAY,
                kind: FaultKind::EmergencyBurst {
                    count: 20,
                    specialty: Cardiology,
                },
            },
            // The city center's cardiologists all away for three days.
            Fault {
                at: 240 * DAY,
                lasts: 3 * DAY,
                kind: FaultKind::Unavailable { org: 0 },
            },
            // A city hospital's certificate revoked (a stolen key).
            Fault {
                at: 300 * DAY + 10 * HOUR,
                lasts: Duration::ZERO,
                kind: FaultKind::Revoked { org: revoked },
            },
            Fault {
                at: Duration::ZERO,
                lasts: 364 * DAY,
                kind: FaultKind::Churn {
                    per_org_year: 4.0,
                    outage: 6 * HOUR,
                },
            },
        ],
        latency: Duration::from_millis(40),
        jitter: Duration::from_millis(30),
        days: 364,
        directory_interval: 6 * HOUR,
        // The city consultation center carries its units' packages to the
        // top-tier and international centers.
        relays: true,
    }
}
