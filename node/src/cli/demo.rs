//! `konsilium demo`: a small federation on loopback running a real
//! consultation package end to end, then a consultation through its workflow
//! to a signed conclusion, narrated step by step.

use anyhow::{Result, bail};
use konsilium_node::federation::{LocalFederation, Member, OrgSpec, wait};
use konsilium_node::node::{
    self, ActRequest, Attachment, CaseFile, ConclusionText, NewConsultation, NodeError, NodeEvent,
    NodeHandle, SendRequest, Target,
};
use konsilium_node::ops::progress::Progress;
use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::cert::Trust;
use konsilium_protocol::content::{CaseExtract, FileInfo};
use konsilium_protocol::identity::OrgId;
use konsilium_protocol::journal::Role;
use konsilium_protocol::seal::{PackageId, RoutingHeader};
use konsilium_protocol::specialty::{Lang, Specialty};
use konsilium_protocol::urgency::Urgency;
use konsilium_protocol::workflow::{Action, Consent, ConsentMethod, ConsultationId, Status};
use libp2p::Multiaddr;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::{self, error::RecvError};

const STEP_TIMEOUT: Duration = Duration::from_secs(60);

pub struct DemoOptions {
    pub attachment_mb: usize,
    pub keep: bool,
    /// Hold a video consilium open at the end, until Ctrl-C.
    pub video: bool,
}

fn short(org: &OrgId) -> String {
    let s = org.to_string();
    format!("{}…{}", &s[..8], &s[s.len() - 4..])
}

async fn wait_for<T>(
    rx: &mut broadcast::Receiver<NodeEvent>,
    what: &str,
    pick: impl FnMut(&NodeEvent) -> Option<T>,
) -> Result<T> {
    Ok(wait::event(rx, what, STEP_TIMEOUT, pick).await?)
}

async fn listen_addr(node: &NodeHandle) -> Result<Multiaddr> {
    Ok(wait::listen_addr(node, STEP_TIMEOUT).await?)
}

pub async fn run(options: DemoOptions) -> Result<()> {
    let started = Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix("konsilium-demo-")
        .tempdir()?;
    println!(
        "Konsilium demo: three hospitals on loopback, data under {}\n",
        tmp.path().display()
    );

    let mut federation = LocalFederation::new(tmp.path(), node::now());
    println!("[1] federation authorities");
    println!("    root authority            {}", federation.root().key());
    let spec = |name: &str, level, region: &str, specialties: &[Specialty]| OrgSpec {
        name: name.into(),
        level,
        region: region.into(),
        specialties: specialties.to_vec(),
    };
    let federal = federation.enrol(spec(
        "National Medical Research Center of Oncology",
        OrgLevel::Federal,
        "RU-MOW",
        &[Specialty::Oncology, Specialty::Radiology],
    ));
    let regional = federation.enrol(spec(
        "Vologda Regional Clinical Hospital",
        OrgLevel::Regional,
        "RU-VLG",
        &[Specialty::Oncology, Specialty::Cardiology],
    ));
    let district = federation.enrol(spec(
        "Sokol Central District Hospital",
        OrgLevel::District,
        "RU-VLG",
        &[Specialty::Pediatrics],
    ));
    println!("    regional authority RU-VLG certified by the root (may certify levels 1-2)");
    for m in [&federal, &regional, &district] {
        println!(
            "    certified {:<46} level {} ({}), region {}, id {}",
            m.spec.name,
            m.spec.level.number(),
            m.spec.level,
            m.spec.region,
            short(&m.org_id())
        );
    }

    println!("\n[2] starting nodes (real libp2p over TCP, Noise, Yamux; real sled databases)");
    // With --video, each site has a media plane on a loopback port.
    let video = |mut setup: node::NodeSetup| {
        if options.video {
            setup.video = Some(konsilium_node::config::VideoConfig::on(
                "127.0.0.1:0".parse().expect("a socket address"),
            ));
        }
        setup
    };
    let regional_node = node::start(video(regional.setup(vec![], vec![]))).await?;
    let regional_addr = listen_addr(&regional_node).await?;
    // The district hospital reaches other regions through its regional center (federation policy).
    let federal_node = node::start(federal.setup(vec![regional_addr.clone()], vec![])).await?;
    let district_node = node::start(video(
        district.setup(vec![regional_addr.clone()], vec![regional.org_id()]),
    ))
    .await?;
    let nodes: Vec<(&Member, &NodeHandle)> = vec![
        (&federal, &federal_node),
        (&regional, &regional_node),
        (&district, &district_node),
    ];
    let names: BTreeMap<OrgId, String> = nodes
        .iter()
        .map(|(m, _)| (m.org_id(), m.spec.name.clone()))
        .collect();
    for (m, n) in &nodes {
        println!(
            "    {:<46} listening on {}",
            m.spec.name,
            listen_addr(n).await?
        );
    }

    println!("\n[3] connections: each side checks the other's certificate chain");
    let mut district_events = district_node.subscribe();
    let mut federal_events = federal_node.subscribe();
    let mut regional_events = regional_node.subscribe();
    for _ in 0..100 {
        let statuses = [
            regional_node.status().await?,
            district_node.status().await?,
            federal_node.status().await?,
        ];
        if statuses[0].peers.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (m, n) in &nodes {
        let status = n.status().await?;
        let peers: Vec<String> = status
            .peers
            .iter()
            .map(|p| names.get(p).cloned().unwrap_or_else(|| short(p)))
            .collect();
        println!(
            "    {:<46} certified peers: {}",
            m.spec.name,
            peers.join(", ")
        );
    }

    println!(
        "\n[4] directory: signed records by gossip and anti-entropy until every node holds the same"
    );
    let handles: Vec<&NodeHandle> = nodes.iter().map(|(_, n)| *n).collect();
    let converged = wait::converged(&handles, 3, STEP_TIMEOUT).await?;
    println!("    every node: 3 records, digest {}", hex(&converged[..8]));

    let routing = RoutingHeader {
        specialty: Specialty::Oncology,
        min_level: OrgLevel::Federal,
        urgency: Urgency::Urgent,
        region: None,
    };
    println!(
        "\n[5] the district hospital's physician asks for {} ({}), level >= {}, {}",
        routing.specialty,
        routing.specialty.name(Lang::Ru),
        routing.min_level,
        routing.urgency
    );
    let attachment: Vec<u8> = (0..options.attachment_mb * 1024 * 1024)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let body = b"Case extract: 54-year-old, suspected recurrence after resection. Questions: resectable? adjuvant therapy? CT series attached.".to_vec();
    let sent = district_node
        .send(SendRequest {
            target: Target::Best,
            routing: routing.clone(),
            body: body.clone(),
            attachments: vec![Attachment::Bytes(attachment.clone())],
            lifetime: Duration::from_secs(4 * 86_400),
        })
        .await?;
    if let Some(route) = &sent.route {
        for (i, c) in route.candidates.iter().enumerate() {
            println!(
                "    candidate {}: {} (level {}, region {}{})",
                i + 1,
                c.name,
                c.level.number(),
                c.region,
                if c.same_region { ", same region" } else { "" }
            );
        }
        for (_, name, why) in &route.skipped {
            println!("    skipped:     {name}: {why}");
        }
    }
    println!("    chose {}", sent.recipient_name);

    println!(
        "\n[6] delivery of package {}: a sealed case extract and a {} MiB attachment, end-to-end encrypted to the federal center",
        sent.id, options.attachment_mb
    );
    println!(
        "    attachment sealed to a content-addressed blob; package written to the outbox and flushed before the id was returned"
    );
    let hop = |org: &OrgId| names.get(org).cloned().unwrap_or_else(|| short(org));
    println!(
        "    next hop: {} (federation policy: other regions through the regional center)",
        hop(&sent.next_hop)
    );
    let id = sent.id;
    println!(
        "    regional center pulls the sealed attachment from the district hospital in 1 MiB pieces"
    );
    follow_transfer("    upload", id, &mut district_events, &mut regional_events).await?;
    let recipient = wait_for(
        &mut regional_events,
        "the regional center to take custody",
        |e| match e {
            NodeEvent::Relaying { id: got, recipient } if *got == id => Some(*recipient),
            _ => None,
        },
    )
    .await?;
    println!(
        "    regional center checked the blob hash, stored the package durably (it sees only the header) and forwards it to {}",
        hop(&recipient)
    );
    follow_transfer(
        "    download",
        id,
        &mut regional_events,
        &mut federal_events,
    )
    .await?;
    let bytes = wait_for(
        &mut federal_events,
        "the federal center to receive it",
        |e| match e {
            NodeEvent::PackageReceived { id: got, bytes, .. } if *got == id => Some(*bytes),
            _ => None,
        },
    )
    .await?;
    println!(
        "    federal center fetched the attachment from the relay, opened the {bytes}-byte sealed body to check sender and integrity, stored it and signed a receipt"
    );
    wait_for(
        &mut district_events,
        "the receipt at the district hospital",
        |e| match e {
            NodeEvent::PackageDelivered { id: got, .. } if *got == id => Some(()),
            _ => None,
        },
    )
    .await?;
    println!(
        "    district hospital got the federal center's signed receipt (through the relay): delivered"
    );

    println!("\n[7] the federal center opens the package");
    let (header, opened) = federal_node.open(id).await?;
    if opened != body {
        bail!("opened package body differs from what was sent");
    }
    println!(
        "    from {}: {}",
        hop(&header.sender),
        String::from_utf8_lossy(&opened)
    );
    let saved = tmp.path().join("ct-series.bin");
    let n = federal_node.open_attachment(id, 0, saved.clone()).await?;
    let restored = std::fs::read(&saved)?;
    if restored != attachment {
        bail!("opened attachment differs from what was sent");
    }
    println!(
        "    attachment: {n} bytes written to {}, identical to what was sent (blake3 {})",
        saved.display(),
        hex(&blake3::hash(&restored).as_bytes()[..8])
    );

    consultation(
        &district_node,
        &regional_node,
        &mut district_events,
        &mut regional_events,
        &federation,
        tmp.path(),
    )
    .await?;

    if options.video {
        let (district, regional) = (Arc::new(district_node), Arc::new(regional_node));
        super::demo_video::hold(district, regional, &mut regional_events, tmp.path()).await?;
        // The room's API and admin servers hold those two nodes until the
        // process ends; what they wrote is durable already.
        federal_node.shutdown().await;
    } else {
        for n in [district_node, regional_node, federal_node] {
            n.shutdown().await;
        }
    }
    if options.keep {
        let kept = tmp.keep();
        println!("\ndata kept in {}", kept.display());
    }
    println!(
        "\ndemo finished in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn status_reached(
    rx: &mut broadcast::Receiver<NodeEvent>,
    id: ConsultationId,
    want: Status,
) -> Result<()> {
    Ok(wait::status(rx, id, want, STEP_TIMEOUT).await?)
}

/// Step 8: a consultation carried through its workflow to a signed
/// conclusion, both hospitals applying every signed step.
async fn consultation(
    district: &NodeHandle,
    regional: &NodeHandle,
    district_events: &mut broadcast::Receiver<NodeEvent>,
    regional_events: &mut broadcast::Receiver<NodeEvent>,
    federation: &LocalFederation,
    dir: &std::path::Path,
) -> Result<()> {
    println!("\n[8] an urgent cardiology consultation, to a signed conclusion");
    let (id, sent) = district
        .request_consultation(
            NewConsultation {
                target: Target::Best,
                specialty: Specialty::Cardiology,
                min_level: OrgLevel::Regional,
                urgency: Urgency::Urgent,
                region: None,
                consent: Consent::Given {
                    by: "the patient".into(),
                    at: node::now(),
                    method: ConsentMethod::Written,
                    document: None,
                },
                physician: "Dr. Ivanova".into(),
                entered_by: "Dr. Ivanova".into(),
                extract: CaseExtract {
                    summary: "62-year-old, recurrent syncope, 12-lead ECG attached".into(),
                    questions: "Pacemaker indicated?".into(),
                },
                escalated_from: None,
            },
            vec![CaseFile {
                info: FileInfo {
                    title: Some("12-lead ECG".into()),
                    content_type: "application/octet-stream".into(),
                },
                content: Attachment::Bytes((0..256 * 1024u32).map(|i| (i % 251) as u8).collect()),
            }],
        )
        .await?;
    println!(
        "    the physician's request {id} (consent recorded) goes to {}, sealed with the ECG",
        sent.recipient_name
    );
    status_reached(regional_events, id, Status::Requested).await?;
    let view = regional.consultation(id).await?;
    if let Some(d) = view.deadline {
        println!(
            "    the regional center has it; deadline {} (urgent: 24 h), at risk from {}",
            d.due, d.at_risk_from
        );
    }
    let step = |role, user: &str, action| ActRequest {
        consultation: id,
        role,
        user: user.into(),
        action,
        conclusion: None,
    };
    for (role, user, action, said) in [
        (
            Role::Coordinator,
            "coordinator Sidorova",
            Action::Receive,
            "registers",
        ),
        (
            Role::Coordinator,
            "coordinator Sidorova",
            Action::Accept,
            "accepts",
        ),
        (Role::Consultant, "Dr. Petrov", Action::Start, "starts work"),
    ] {
        let status = regional.act(step(role, user, action)).await?;
        println!("    {user} {said}: {status}");
    }
    let status = regional
        .act(ActRequest {
            conclusion: Some(ConclusionText {
                authors: vec!["Dr. Petrov".into()],
                diagnosis: "Sick sinus syndrome".into(),
                recommendations: "Dual-chamber pacemaker".into(),
                treatment_plan: "Implantation within 2 weeks".into(),
                further_studies: "Holter monitoring after implantation".into(),
                attachments: vec![],
            }),
            ..step(
                Role::Consultant,
                "Dr. Petrov",
                Action::Conclude {
                    conclusion: [0; 32],
                },
            )
        })
        .await?;
    println!(
        "    Dr. Petrov concludes; the conclusion is signed with the regional center's key: {status}"
    );
    status_reached(district_events, id, Status::Completed).await?;
    let view = district.consultation(id).await?;
    let Some(file) = view.conclusion else {
        bail!("the conclusion did not reach the district hospital");
    };
    let trust = Trust::new([federation.root().key()]);
    let (conclusion, signer) = file.verify(&trust, node::now())?;
    let path = dir.join("conclusion.ksc");
    std::fs::write(&path, konsilium_protocol::wire::encode(&file)?)?;
    println!(
        "    the district hospital holds the conclusion ({}), signed by {signer}; it verifies offline:",
        conclusion.diagnosis
    );
    println!(
        "      konsilium verify {} --root {}    (with demo --keep)",
        path.display(),
        federation.root().key()
    );
    district
        .act(step(Role::Physician, "Dr. Ivanova", Action::Acknowledge))
        .await?;
    let (journal, _) = district.journal().await?;
    println!(
        "    Dr. Ivanova acknowledges; {} history steps on both sides, {} entries in the district journal",
        view.consultation.history.len() + 1,
        journal.len()
    );
    Ok(())
}

/// Shows one hop's attachment transfer as it happens: the fetching node
/// reports each piece it stores, the sending node what the fetcher told it
/// when it asked for delivery.
async fn follow_transfer(
    label: &str,
    id: PackageId,
    sender: &mut broadcast::Receiver<NodeEvent>,
    fetcher: &mut broadcast::Receiver<NodeEvent>,
) -> Result<()> {
    let (blob, from, total) = wait_for(fetcher, "the attachment fetch to start", |e| match e {
        NodeEvent::FetchStarted { blob, from, total } => Some((*blob, *from, *total)),
        _ => None,
    })
    .await?;
    let progress = Progress::bytes(label, total);
    progress.set(from);
    let transfer = async {
        loop {
            tokio::select! {
                event = sender.recv() => match event {
                    Ok(NodeEvent::DeliveryProgress { id: got, have, .. }) if got == id => {
                        progress.set(have)
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return Err(NodeError::Stopped),
                },
                event = fetcher.recv() => match event {
                    Ok(NodeEvent::FetchCompleted { blob: got }) if got == blob => return Ok(()),
                    Ok(NodeEvent::FetchStarted { blob: got, from: have, .. })
                    | Ok(NodeEvent::FetchProgress { blob: got, have, .. })
                        if got == blob =>
                    {
                        progress.set(have)
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return Err(NodeError::Stopped),
                },
            }
        }
    };
    tokio::time::timeout(STEP_TIMEOUT, transfer)
        .await
        .map_err(|_| NodeError::Timeout("the attachment transfer".into()))??;
    progress.finish();
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}
