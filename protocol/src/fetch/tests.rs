use super::*;

const CHUNK: u64 = MAX_BLOB_CHUNK as u64;

fn blob(size: u64) -> BlobRef {
    BlobRef {
        hash: [9; 32],
        size,
    }
}

fn drain(f: &mut Fetches<u8>) -> Vec<FetchOutput<u8>> {
    std::iter::from_fn(|| f.poll_output()).collect()
}

fn requests(out: &[FetchOutput<u8>]) -> Vec<(PieceToken, u64, u32)> {
    out.iter()
        .filter_map(|o| match o {
            FetchOutput::Request {
                token, offset, len, ..
            } => Some((*token, *offset, *len)),
            _ => None,
        })
        .collect()
}

fn appended(out: &[FetchOutput<u8>]) -> Vec<(u64, usize)> {
    out.iter()
        .filter_map(|o| match o {
            FetchOutput::Append { offset, bytes, .. } => Some((*offset, bytes.len())),
            _ => None,
        })
        .collect()
}

#[test]
fn pieces_answered_out_of_order_are_written_in_order_within_the_window() {
    let size = 40 * CHUNK + 5;
    let mut f = Fetches::new();
    f.start(blob(size), 1, 0, true).unwrap();
    let out = drain(&mut f);
    let mut asked = requests(&out);
    assert_eq!(asked.len(), FETCH_WINDOW, "a window's worth, no more");
    let mut written = Vec::new();
    // Answer newest first: nothing is written until the first arrives.
    while !asked.is_empty() {
        asked.reverse();
        let batch = std::mem::take(&mut asked);
        for (token, _, len) in batch {
            f.handle_piece(token, vec![0; len as usize]);
            let out = drain(&mut f);
            written.extend(appended(&out));
            asked.extend(requests(&out));
            if let Some(FetchOutput::Verify { blob: b }) = out.last() {
                assert_eq!(*b, blob(size));
            }
        }
    }
    let offsets: Vec<u64> = written.iter().map(|(o, _)| *o).collect();
    let mut sorted = offsets.clone();
    sorted.sort_unstable();
    assert_eq!(offsets, sorted, "appends are in order");
    assert_eq!(written.iter().map(|(_, n)| *n as u64).sum::<u64>(), size);
    f.handle_verified(&[9; 32], true);
    assert_eq!(drain(&mut f), [FetchOutput::Completed { hash: [9; 32] }]);
    assert!(!f.is_fetching(&[9; 32]));
}

#[test]
fn an_interrupted_transfer_resumes_from_what_was_written() {
    let mut f = Fetches::new();
    f.start(blob(3 * CHUNK), 1, 0, true).unwrap();
    let asked = requests(&drain(&mut f));
    f.handle_piece(asked[0].0, vec![0; CHUNK as usize]);
    f.handle_failure(asked[1].0, "connection closed");
    let out = drain(&mut f);
    assert_eq!(appended(&out), [(0, CHUNK as usize)]);
    assert!(matches!(out.last(), Some(FetchOutput::Stopped { .. })));
    // A late answer to the stopped transfer is ignored.
    f.handle_piece(asked[2].0, vec![0; CHUNK as usize]);
    assert!(drain(&mut f).is_empty());
    // From another peer, from the partial file's length.
    f.start(blob(3 * CHUNK), 2, CHUNK, true).unwrap();
    let out = drain(&mut f);
    assert_eq!(
        out[0],
        FetchOutput::Started {
            hash: [9; 32],
            from: CHUNK,
            total: 3 * CHUNK
        }
    );
    let offsets: Vec<u64> = requests(&out).iter().map(|r| r.1).collect();
    assert_eq!(offsets, [CHUNK, 2 * CHUNK]);
    assert!(
        out.iter()
            .all(|o| !matches!(o, FetchOutput::Request { to: 1, .. }))
    );
}

#[test]
fn a_piece_of_the_wrong_length_stops_the_transfer() {
    let mut f = Fetches::new();
    f.start(blob(2 * CHUNK), 1, 0, true).unwrap();
    let asked = requests(&drain(&mut f));
    f.handle_piece(asked[0].0, vec![0; 10]);
    let out = drain(&mut f);
    assert!(appended(&out).is_empty(), "nothing of it is written");
    assert!(
        matches!(&out[..], [FetchOutput::Stopped { reason, .. }] if reason.contains("sent 10"))
    );
}

#[test]
fn a_blob_failing_its_hash_twice_is_refused_with_the_reason() {
    let mut f = Fetches::new();
    for attempt in 1..=MAX_HASH_FAILURES {
        f.start(blob(CHUNK), 1, 0, true).unwrap();
        let asked = requests(&drain(&mut f));
        f.handle_piece(asked[0].0, vec![0; CHUNK as usize]);
        drain(&mut f);
        f.handle_verified(&[9; 32], false);
        assert!(matches!(&drain(&mut f)[..], [FetchOutput::Stopped { .. }]));
        assert_eq!(f.hash_failures(&[9; 32]), attempt);
    }
    let refused = f.start(blob(CHUNK), 1, 0, true).unwrap_err();
    assert!(refused.to_string().contains("damaged"), "{refused}");
    assert!(drain(&mut f).is_empty(), "no request goes out");
}

#[test]
fn a_running_transfer_is_not_restarted_while_its_peer_is_there() {
    let mut f = Fetches::new();
    f.start(blob(2 * CHUNK), 1, 0, true).unwrap();
    drain(&mut f);
    f.start(blob(2 * CHUNK), 2, 0, true).unwrap();
    assert!(drain(&mut f).is_empty());
    assert_eq!(f.peer_of(&[9; 32]), Some(1));
    // Its peer gone, a new start takes over.
    f.start(blob(2 * CHUNK), 2, 0, false).unwrap();
    assert_eq!(f.peer_of(&[9; 32]), Some(2));
    assert_eq!(requests(&drain(&mut f)).len(), 2);
}
