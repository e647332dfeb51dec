//! The fixed federation every target runs against: three organizations, a
//! directory, a package, consultations at several points, a journal.

use super::*;

/// A fixed federation: a district hospital asks a federal one; a regional
/// organization plays the outsider. Built once, since key derivation and
/// certification would otherwise dominate every execution.
pub struct World {
    pub fed: TestFederation,
    pub district: TestOrg,
    pub federal: TestOrg,
    pub outsider: TestOrg,
    /// The federal hospital's directory, knowing all three.
    pub directory: Directory,
    /// A package from the district to the federal hospital.
    pub package: SealedPackage,
    /// Consultations at several points of their life, so a step is checked
    /// against more than the first state.
    pub consultations: Vec<Consultation>,
    /// The federal hospital's journal and its last signed anchor.
    pub journal: Vec<Entry>,
    pub anchor: Signed<Checkpoint>,
}

pub static WORLD: LazyLock<World> = LazyLock::new(World::new);

pub(super) fn header(from: &TestOrg, to: &TestOrg) -> EnvelopeHeader {
    EnvelopeHeader {
        version: PACKAGE_VERSION,
        id: PackageId([7; 16]),
        sender: from.id(),
        recipient: to.id(),
        routing: RoutingHeader {
            specialty: Specialty::Cardiology,
            min_level: OrgLevel::Federal,
            urgency: Urgency::Urgent,
            region: None,
        },
        created: NOW,
        expires: NOW.saturating_add(Duration::from_secs(7 * 86_400)),
        attachments: Vec::new(),
    }
}

pub(super) fn request(from: &TestOrg, to: &TestOrg) -> Signed<ConsultationRequest> {
    workflow::request(
        &from.identity,
        ConsultationRequest {
            id: ConsultationId([9; 16]),
            requester: from.id(),
            consultant: to.id(),
            specialty: Specialty::Cardiology,
            urgency: Urgency::Urgent,
            created: NOW,
            consent: Consent::Given {
                by: "the patient".into(),
                at: NOW,
                method: ConsentMethod::Written,
                document: None,
            },
            physician: "Dr. Ivanova".into(),
            escalated_from: None,
        },
    )
    .expect("consent given")
}

pub(super) fn at(minutes: u64) -> konsilium_protocol::time::Timestamp {
    NOW.saturating_add(Duration::from_secs(60 * minutes))
}

/// A step by `org` on `c`, applied, so the next consultation state exists.
fn advance(c: &mut Consultation, org: &TestOrg, role: Role, action: Action) {
    let step = c.step(
        &org.identity,
        role,
        "someone",
        at(c.history.len() as u64),
        action,
    );
    c.apply(&step).expect("a valid step");
}

impl World {
    fn new() -> Self {
        let mut fed = TestFederation::new("fuzz");
        let district = fed.org(1, OrgLevel::District, "RU-VLG", &[Specialty::Pediatrics]);
        let federal = fed.org(2, OrgLevel::Federal, "RU-MOW", &[Specialty::Cardiology]);
        let outsider = fed.org(3, OrgLevel::Regional, "RU-VLG", &[Specialty::Cardiology]);
        let mut directory = Directory::new();
        for o in [&district, &federal, &outsider] {
            directory
                .insert(o.signed_record(1), &fed.trust, NOW)
                .expect("a valid record");
        }
        let package = seal::seal(
            header(&district, &federal),
            &district.sealing,
            &federal.sealing.public(),
            [3; 32],
            b"ECG attached",
        )
        .expect("seals");

        let requested = Consultation::open(&request(&district, &federal)).expect("a valid request");
        let mut received = requested.clone();
        advance(&mut received, &federal, Role::Coordinator, Action::Receive);
        let mut proposed = received.clone();
        advance(&mut proposed, &federal, Role::Coordinator, Action::Accept);
        advance(&mut proposed, &federal, Role::Consultant, Action::Start);
        advance(
            &mut proposed,
            &federal,
            Role::Consultant,
            Action::ProposeSlots {
                slots: vec![Slot {
                    start: at(60),
                    end: at(90),
                }],
            },
        );
        let mut confirmed = proposed.clone();
        advance(
            &mut confirmed,
            &district,
            Role::Physician,
            Action::ConfirmSlot {
                slot: Slot {
                    start: at(60),
                    end: at(90),
                },
            },
        );
        let mut completed = confirmed.clone();
        advance(
            &mut completed,
            &federal,
            Role::Consultant,
            Action::Conclude {
                conclusion: [5; 32],
            },
        );

        let mut j = Journal::new();
        let journal: Vec<Entry> = (0..4)
            .map(|i| {
                j.append(
                    at(i),
                    Some("coordinator".into()),
                    Some(Role::Coordinator),
                    journal::Action::Open {
                        consultation: [9; 16],
                    },
                )
            })
            .collect();
        let anchor = j.checkpoint(&federal.identity, at(5));

        World {
            fed,
            district,
            federal,
            outsider,
            directory,
            package,
            consultations: vec![requested, received, proposed, confirmed, completed],
            journal,
            anchor,
        }
    }

    pub(super) fn trust(&self) -> &Trust {
        &self.fed.trust
    }
}
