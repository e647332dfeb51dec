//! Packages delivered end to end: only the recipient opens them, crashes on
//! either side resume, damaged attachments are refused, senders clean up.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_reaches_its_recipient_and_only_it_can_open_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let federal = fed.enrol(OrgSpec::new(
        "Federal oncology center",
        OrgLevel::Federal,
        "RU-MOW",
        &[Specialty::Oncology],
    ));
    let regional = fed.enrol(OrgSpec::new(
        "Regional hospital",
        OrgLevel::Regional,
        "RU-VLG",
        &[Specialty::Oncology],
    ));
    let district = fed.enrol(OrgSpec::new(
        "District hospital",
        OrgLevel::District,
        "RU-VLG",
        &[],
    ));
    let f = start(&federal, vec![], vec![]).await;
    let fa = addr(&f).await;
    let r = start(&regional, vec![fa.clone()], vec![]).await;
    let d = start(&district, vec![fa], vec![]).await;
    converge(&[&f, &r, &d], 3).await;

    let mut events = d.subscribe();
    let body = b"Questions for the federal oncologist; histology attached.".repeat(500);
    let sent = d
        .send(package(
            Target::Best,
            Specialty::Oncology,
            OrgLevel::Federal,
            body.clone(),
        ))
        .await
        .unwrap();
    assert_eq!(
        sent.recipient,
        federal.org_id(),
        "routing picks the federal center"
    );
    delivered(&mut events, sent.id).await;
    let (header, opened) = f.open(sent.id).await.unwrap();
    assert_eq!(opened, body);
    assert_eq!(header.sender, district.org_id());
    assert!(
        matches!(r.open(sent.id).await, Err(NodeError::NotInInbox(_))),
        "the third node has nothing to open"
    );
    assert_eq!(
        d.status().await.unwrap().outbox,
        0,
        "the receipt emptied the outbox"
    );
    for n in [f, r, d] {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_killed_after_send_still_delivers_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let sender = fed.enrol(OrgSpec::new(
        "District hospital",
        OrgLevel::District,
        "RU-VLG",
        &[],
    ));
    let recipient = fed.enrol(OrgSpec::new(
        "Regional hospital",
        OrgLevel::Regional,
        "RU-VLG",
        &[Specialty::Neurology],
    ));
    let s = start(&sender, vec![], vec![]).await;
    let r = start(&recipient, vec![addr(&s).await], vec![]).await;
    converge(&[&s, &r], 2).await;
    r.shutdown().await;

    // The recipient is down: the package can only wait in the outbox.
    let body = vec![0x42u8; 300_000];
    let sent = s
        .send(package(
            Target::Org(recipient.org_id()),
            Specialty::Neurology,
            OrgLevel::Regional,
            body.clone(),
        ))
        .await
        .unwrap();
    s.kill().await;

    let s = start(&sender, vec![], vec![]).await;
    let outbox = s.outbox().await.unwrap();
    assert_eq!(
        outbox
            .iter()
            .map(|e| e.package.header.id)
            .collect::<Vec<_>>(),
        vec![sent.id],
        "the package survived the crash"
    );
    let mut events = s.subscribe();
    let r = start(&recipient, vec![addr(&s).await], vec![]).await;
    delivered(&mut events, sent.id).await;
    assert_eq!(r.open(sent.id).await.unwrap().1, body);
    s.shutdown().await;
    r.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipient_killed_mid_transfer_resumes_where_it_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let sender = fed.enrol(OrgSpec::new(
        "District hospital",
        OrgLevel::District,
        "RU-VLG",
        &[],
    ));
    let recipient = fed.enrol(OrgSpec::new(
        "Regional radiology center",
        OrgLevel::Regional,
        "RU-VLG",
        &[Specialty::Radiology],
    ));
    let s = start(&sender, vec![], vec![]).await;
    let sa = addr(&s).await;
    let r = start(&recipient, vec![sa.clone()], vec![]).await;
    converge(&[&s, &r], 2).await;

    let series: Vec<u8> = (0..96u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let mut sender_events = s.subscribe();
    let mut recipient_events = r.subscribe();
    let sent = s
        .send(SendRequest {
            target: Target::Org(recipient.org_id()),
            routing: routing(Specialty::Radiology, OrgLevel::Regional),
            body: b"CT series for a second opinion".to_vec(),
            attachments: vec![konsilium_node::node::Attachment::Bytes(series.clone())],
            lifetime: Duration::from_secs(86_400),
        })
        .await
        .unwrap();
    let (blob, total) = wait_for(
        &mut recipient_events,
        "the transfer to start",
        |e| match e {
            NodeEvent::FetchStarted {
                blob,
                from: 0,
                total,
            } => Some((*blob, *total)),
            _ => None,
        },
    )
    .await;
    let partial = recipient.data_dir.join("blobs").join(format!(
        "{}.partial",
        blob.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ));
    let mut seen = 0;
    for _ in 0..20_000 {
        seen = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        if seen > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(
        seen > 0 && seen < total,
        "caught the transfer in the middle ({seen} of {total})"
    );
    r.kill().await;
    let kept = std::fs::metadata(&partial).map(|m| m.len()).unwrap();
    assert!(kept > 0 && kept < total);

    let r = start(&recipient, vec![sa], vec![]).await;
    let mut recipient_events = r.subscribe();
    let from = wait_for(
        &mut recipient_events,
        "the transfer to resume",
        |e| match e {
            NodeEvent::FetchStarted { blob: b, from, .. } if *b == blob => Some(*from),
            _ => None,
        },
    )
    .await;
    assert!(
        from >= kept,
        "resumed at {from}, {kept} bytes were already on disk: nothing was fetched twice"
    );
    delivered(&mut sender_events, sent.id).await;
    let out = tmp.path().join("restored.bin");
    assert_eq!(
        r.open_attachment(sent.id, 0, out.clone()).await.unwrap(),
        series.len() as u64
    );
    assert!(
        std::fs::read(&out).unwrap() == series,
        "the attachment arrived intact"
    );
    s.shutdown().await;
    r.shutdown().await;
}

/// An attachment damaged at its source fails its hash at the recipient; a
/// second failure ends the transfer with the reason instead of fetching the
/// same bad bytes forever, and the sender stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attachment_damaged_at_its_source_is_refused_not_fetched_forever() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let sender = fed.enrol(OrgSpec::new(
        "District hospital",
        OrgLevel::District,
        "RU-VLG",
        &[],
    ));
    let recipient = fed.enrol(OrgSpec::new(
        "Regional cardiology center",
        OrgLevel::Regional,
        "RU-VLG",
        &[Specialty::Cardiology],
    ));
    let r = start(&recipient, vec![], vec![]).await;
    let ra = addr(&r).await;
    let s = start(&sender, vec![ra.clone()], vec![]).await;
    converge(&[&s, &r], 2).await;
    r.shutdown().await;

    let mut sender_events = s.subscribe();
    let sent = s
        .send(SendRequest {
            target: Target::Org(recipient.org_id()),
            routing: routing(Specialty::Cardiology, OrgLevel::Regional),
            body: b"ECG attached".to_vec(),
            attachments: vec![konsilium_node::node::Attachment::Bytes(vec![7u8; 300_000])],
            lifetime: Duration::from_secs(86_400),
        })
        .await
        .unwrap();
    // The sender's disk flips a byte in the sealed attachment.
    let blob = std::fs::read_dir(sender.data_dir.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().len() == 64)
        .expect("the sealed attachment is stored");
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[1000] ^= 0x40;
    std::fs::write(&blob, bytes).unwrap();

    let r = start(&recipient, vec![], vec![]).await;
    s.dial(addr(&r).await).await.unwrap();
    let reason = wait_for(&mut sender_events, "the recipient to refuse", |e| match e {
        NodeEvent::DeliveryRefused { id, reason } if *id == sent.id => Some(reason.to_string()),
        _ => None,
    })
    .await;
    assert!(reason.contains("failed its hash check 2 times"), "{reason}");
    assert!(matches!(
        r.open(sent.id).await,
        Err(NodeError::NotInInbox(_))
    ));
    for n in [s, r] {
        n.shutdown().await;
    }
}

/// A sending node's sealed attachments are deleted once the recipient's
/// receipt arrives and the retention has passed; the recipient keeps its
/// copy and opens it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_attachments_are_removed_from_the_sender_after_their_retention() {
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let sender = fed.enrol(OrgSpec::new(
        "District hospital",
        OrgLevel::District,
        "RU-VLG",
        &[],
    ));
    let recipient = fed.enrol(OrgSpec::new(
        "Regional radiology center",
        OrgLevel::Regional,
        "RU-VLG",
        &[Specialty::Radiology],
    ));
    let r = start(&recipient, vec![], vec![]).await;
    let mut setup = sender.setup(vec![addr(&r).await], vec![]);
    setup.keep_delivered = Duration::ZERO;
    let s = node::start(setup).await.unwrap();
    converge(&[&s, &r], 2).await;
    let mut events = s.subscribe();
    let image = vec![42u8; 2 << 20];
    let sent = s
        .send(SendRequest {
            target: Target::Org(recipient.org_id()),
            routing: routing(Specialty::Radiology, OrgLevel::Regional),
            body: b"X-ray".to_vec(),
            attachments: vec![konsilium_node::node::Attachment::Bytes(image.clone())],
            lifetime: Duration::from_secs(86_400),
        })
        .await
        .unwrap();
    let blobs_at = |dir: &Path| {
        std::fs::read_dir(dir.join("blobs"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().len() == 64)
            .count()
    };
    assert_eq!(blobs_at(&sender.data_dir), 1);
    delivered(&mut events, sent.id).await;
    wait_for(&mut events, "the sent attachment to be removed", |e| {
        matches!(e, NodeEvent::AttachmentRemoved { .. }).then_some(())
    })
    .await;
    assert_eq!(blobs_at(&sender.data_dir), 0);
    assert_eq!(blobs_at(&recipient.data_dir), 1);
    let out = tmp.path().join("opened");
    assert_eq!(
        r.open_attachment(sent.id, 0, out.clone()).await.unwrap(),
        image.len() as u64
    );
    assert_eq!(std::fs::read(&out).unwrap(), image);
    for n in [s, r] {
        n.shutdown().await;
    }
}

/// Three hundred packages sent at once, more than a connection carries
/// streams and more than the recipient opens at a time, all arrive on the
/// first attempt: the sender keeps a window of requests out, the recipient
/// lets the rest wait their turn, and one flush answers many.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_packages_is_delivered_without_a_single_retry() {
    const BURST: usize = 300;
    let tmp = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(tmp.path(), node::now());
    let federal = fed.enrol(OrgSpec::new(
        "Federal cardiology center",
        OrgLevel::Federal,
        "RU-MOW",
        &[Specialty::Cardiology],
    ));
    let regional = fed.enrol(OrgSpec::new(
        "Regional hospital",
        OrgLevel::Regional,
        "RU-MOW",
        &[],
    ));
    let f = start(&federal, vec![], vec![]).await;
    let r = start(&regional, vec![addr(&f).await], vec![]).await;
    converge(&[&f, &r], 2).await;

    let mut events = r.subscribe();
    let sends = (0..BURST).map(|i| {
        let body = format!("ECG strip {i} for the federal cardiologist").into_bytes();
        r.send(package(
            Target::Org(federal.org_id()),
            Specialty::Cardiology,
            OrgLevel::Federal,
            body,
        ))
    });
    let sent: Vec<_> = futures::future::join_all(sends).await;
    let mut waiting: std::collections::HashSet<_> =
        sent.into_iter().map(|s| s.expect("queued").id).collect();
    let mut retries = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !waiting.is_empty() {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("every receipt within two minutes")
            .expect("events");
        match event {
            NodeEvent::PackageDelivered { id, .. } => {
                waiting.remove(&id);
            }
            NodeEvent::DeliveryRetry { error, .. } => retries.push(error),
            _ => {}
        }
    }
    assert!(
        retries.is_empty(),
        "retried: {:?}",
        &retries[..retries.len().min(3)]
    );
    assert_eq!(f.status().await.unwrap().inbox, BURST);
    assert_eq!(r.status().await.unwrap().outbox, 0);
    // Group commit: what waited together was made durable together.
    let metrics = r.metrics().await.unwrap();
    let counter = |name: &str| -> u64 {
        let line = metrics.lines().find(|l| l.starts_with(name));
        line.and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    let flushes = counter("konsilium_group_commit_flushes_total");
    let answers = counter("konsilium_group_commit_answers_total");
    assert!(answers >= BURST as u64, "{answers} answers");
    // The 300 sends wait together; receipts may still come one a turn,
    // which alone would give 600 answers in about 300 flushes. One input a
    // turn gives 600 in 600.
    assert!(
        2 * answers >= 3 * flushes,
        "{answers} answers in {flushes} flushes: not grouped"
    );
    r.shutdown().await;
    f.shutdown().await;
}
