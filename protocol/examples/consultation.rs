//! A consultation package's path through the protocol core, narrated:
//! a federation is certified, three hospitals publish signed directory
//! records that travel through the wire codec, the district hospital routes
//! a request by specialty and level, seals a 20 MB package, a relay forwards
//! it seeing only the header, and the federal center opens it.
//!
//! Run: `cargo run --release -p konsilium-protocol --example consultation`.
//! (Keys come from fixed seeds so the run is reproducible; a node draws
//! them from the operating system.)

use konsilium_protocol::calendar::{TimeZoneName, WorkingCalendar};
use konsilium_protocol::cert::{
    AuthorityGrant, AuthorityScope, CertChain, Issuer, OrgGrant, OrgLevel, RegionCode, Trust,
    Validity,
};
use konsilium_protocol::directory::{
    Consultant, ConsultantId, Directory, DirectoryRecord, Language, Query, Service, SignedRecord,
};
use konsilium_protocol::identity::{IdentityKey, SealingKey};
use konsilium_protocol::seal::{
    self, EnvelopeHeader, PACKAGE_VERSION, PackageId, RoutingHeader, SealedPackage,
};
use konsilium_protocol::signed::Signed;
use konsilium_protocol::specialty::{Lang, Specialty};
use konsilium_protocol::time::Timestamp;
use konsilium_protocol::urgency::{Deadlines, Urgency};
use konsilium_protocol::wire;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const DAY: Duration = Duration::from_secs(86_400);

fn seed(label: &str) -> [u8; 32] {
    *blake3::hash(label.as_bytes()).as_bytes()
}

struct Hospital {
    name: &'static str,
    identity: IdentityKey,
    sealing: SealingKey,
    chain: CertChain,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let now = Timestamp::from_unix_millis(
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64,
    );
    let year = Validity {
        from: now.saturating_sub(DAY),
        until: now.saturating_add(365 * DAY),
    };

    println!("1. Federation");
    let root = Issuer::root(IdentityKey::from_seed(seed("root")));
    let vologda_key = IdentityKey::from_seed(seed("vologda authority"));
    let vologda_cert = root.certify_authority(AuthorityGrant {
        authority: vologda_key.authority_key(),
        name: "Vologda regional telemedicine center".into(),
        scope: AuthorityScope {
            region: RegionCode::new("RU-VLG")?,
            max_level: OrgLevel::Regional,
        },
        validity: year,
        serial: 1,
    })?;
    let vologda = Issuer::regional(vologda_key, vologda_cert)?;
    let trust = Trust::new([root.key()]);
    println!(
        "   root {}\n   regional authority RU-VLG (may certify up to level 2)",
        root.key()
    );

    let enrol = |issuer: &Issuer,
                 name: &'static str,
                 level: OrgLevel,
                 region: &str,
                 serial: u64|
     -> Result<Hospital, Box<dyn std::error::Error>> {
        let identity = IdentityKey::from_seed(seed(name));
        let sealing = SealingKey::from_seed(seed(&format!("{name} sealing")));
        let chain = issuer.certify_org(OrgGrant {
            org: identity.org_id(),
            name: name.into(),
            level,
            region: RegionCode::new(region)?,
            sealing_key: sealing.public(),
            validity: year,
            serial,
        })?;
        let org = trust.verify_chain(&chain, now)?;
        println!(
            "   certified {name}: level {} ({}), region {}, id {}",
            org.cert.level.number(),
            org.cert.level,
            org.cert.region,
            org.cert.org
        );
        Ok(Hospital {
            name,
            identity,
            sealing,
            chain,
        })
    };
    let district = enrol(
        &vologda,
        "Sokol central district hospital",
        OrgLevel::District,
        "RU-VLG",
        10,
    )?;
    let regional = enrol(
        &vologda,
        "Vologda regional clinical hospital",
        OrgLevel::Regional,
        "RU-VLG",
        11,
    )?;
    let federal = enrol(
        &root,
        "National medical research center of oncology",
        OrgLevel::Federal,
        "RU-MOW",
        12,
    )?;
    match vologda.certify_org(OrgGrant {
        org: IdentityKey::from_seed(seed("x")).org_id(),
        name: "Would-be federal center".into(),
        level: OrgLevel::Federal,
        region: RegionCode::new("RU-VLG")?,
        sealing_key: SealingKey::from_seed(seed("y")).public(),
        validity: year,
        serial: 13,
    }) {
        Err(e) => println!("   refused, as it must be: {e}"),
        Ok(_) => return Err("a regional authority certified a federal center".into()),
    }

    println!(
        "\n2. Directory: each hospital publishes a signed record; records travel as wire frames"
    );
    let record = |h: &Hospital,
                  specialties: &[Specialty]|
     -> Result<SignedRecord, Box<dyn std::error::Error>> {
        let record = DirectoryRecord {
            chain: h.chain.clone(),
            sealing_key: h.sealing.public(),
            consultants: vec![Consultant {
                id: ConsultantId(1),
                name: format!("Head consultant, {}", h.name),
                specialties: specialties.iter().copied().collect(),
                languages: [Language::new("ru")?, Language::new("en")?].into(),
            }],
            services: specialties
                .iter()
                .map(|&specialty| Service {
                    specialty,
                    urgencies: Urgency::ALL.into(),
                    deadlines: None,
                })
                .collect(),
            calendar: WorkingCalendar::weekdays(TimeZoneName::new("Europe/Moscow")?),
            deadlines: Deadlines::default(),
            slots: vec![],
            addresses: vec![],
            sequence: 1,
            issued_at: now,
        };
        Ok(Signed::sign(&h.identity, &record))
    };
    let frames = [
        wire::encode(&record(&district, &[Specialty::Pediatrics])?)?,
        wire::encode(&record(
            &regional,
            &[Specialty::Oncology, Specialty::Cardiology],
        )?)?,
        wire::encode(&record(
            &federal,
            &[Specialty::Oncology, Specialty::Radiology],
        )?)?,
    ];
    let mut directories: Vec<Directory> = (0..3).map(|_| Directory::new()).collect();
    for dir in &mut directories {
        let records = frames
            .iter()
            .map(|f| wire::decode::<SignedRecord>(f))
            .collect::<Result<Vec<_>, _>>()?;
        for result in dir.insert_many(records, &trust, now) {
            result?;
        }
    }
    for (h, dir) in [&district, &regional, &federal].iter().zip(&directories) {
        println!(
            "   {:<48} {} records, digest {}",
            h.name,
            dir.len(),
            hex(&dir.digest()[..8])
        );
    }

    println!("\n3. Routing: the district hospital asks for oncology, level >= federal, urgent");
    let routing = RoutingHeader {
        specialty: Specialty::Oncology,
        min_level: OrgLevel::Federal,
        urgency: Urgency::Urgent,
        region: None,
    };
    let query = Query {
        specialty: Some(routing.specialty),
        min_level: Some(routing.min_level),
        urgency: Some(routing.urgency),
        region: None,
    };
    let target = directories[0].query(&query).next().ok_or("no candidate")?;
    println!(
        "   chose {} ({}), deadline for {}: {} h",
        target.name(),
        target.level(),
        Specialty::Oncology.name(Lang::Ru),
        target.deadlines_for(Specialty::Oncology).urgent().as_secs() / 3600
    );

    println!("\n4. Sealing a 20 MB package (case extract + DICOM series) to the federal center");
    let body: Vec<u8> = (0..20 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let header = EnvelopeHeader {
        version: PACKAGE_VERSION,
        id: PackageId(seed("package 1")[..16].try_into()?),
        sender: district.identity.org_id(),
        recipient: target.org(),
        routing,
        created: now,
        expires: now.saturating_add(4 * DAY),
        attachments: Vec::new(),
    };
    let t = Instant::now();
    let package = seal::seal(
        header,
        &district.sealing,
        &target.record().sealing_key,
        seed("ephemeral"),
        &body,
    )?;
    println!(
        "   sealed {} bytes into {} in {:?}",
        body.len(),
        package.body.len(),
        t.elapsed()
    );

    println!("\n5. Relay: the regional center stores and forwards, seeing only the header");
    let frame = wire::encode(&package)?;
    let at_relay: SealedPackage = wire::decode(&frame)?;
    println!(
        "   header: package {} from {} to {}",
        at_relay.header.id, at_relay.header.sender, at_relay.header.recipient
    );
    println!("   routing: {:?}", at_relay.header.routing);
    let relay_try = seal::open(
        &at_relay,
        regional.identity.org_id(),
        &regional.sealing,
        &directories[1],
        now,
        |_| false,
    );
    println!(
        "   relay tries to open: {}",
        relay_try.err().map(|e| e.to_string()).unwrap_or_default()
    );

    println!("\n6. The federal center opens it");
    let t = Instant::now();
    let opened = seal::open(
        &at_relay,
        federal.identity.org_id(),
        &federal.sealing,
        &directories[2],
        now,
        |_| false,
    )?;
    assert_eq!(opened, body);
    println!(
        "   opened {} bytes in {:?}; sender verified against the directory",
        opened.len(),
        t.elapsed()
    );
    let again = seal::open(
        &at_relay,
        federal.identity.org_id(),
        &federal.sealing,
        &directories[2],
        now,
        |id| *id == at_relay.header.id,
    );
    println!(
        "   the same package again: {}",
        again.err().map(|e| e.to_string()).unwrap_or_default()
    );
    let mut tampered = frame.clone();
    let last = tampered.len() - 100;
    tampered[last] ^= 1;
    let tampered: SealedPackage = wire::decode(&tampered)?;
    let verdict = seal::open(
        &tampered,
        federal.identity.org_id(),
        &federal.sealing,
        &directories[2],
        now,
        |_| false,
    );
    println!(
        "   one flipped byte: {}",
        verdict.err().map(|e| e.to_string()).unwrap_or_default()
    );
    println!("\ndone");
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
