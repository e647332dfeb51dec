//! A stranger's Hello that names a member of the federation. Nodes
//! remember organizations refused for their certificates (expired,
//! revoked) and send them nothing; a certificate nobody signed must not
//! put a member there.

use super::*;
use konsilium_node::node::{SendRequest, Target};
use konsilium_protocol::cert::Validity;
use konsilium_protocol::identity::IdentityKey;
use konsilium_protocol::signed::Signed;
use konsilium_protocol::time::Timestamp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsigned_expired_certificate_naming_a_member_does_not_cut_it_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut fed = LocalFederation::new(dir.path(), node::now());
    let federal = federal_center(&mut fed);
    let district = kirillov(&mut fed);
    let f = start(&federal, vec![]).await;
    let fa = wait::listen_addr(&f, PATIENCE).await.unwrap();
    let d = start(&district, vec![fa.clone()]).await;
    wait::converged(&[&f, &d], 2, PATIENCE).await.unwrap();

    // The district's certificate, a month out of date, signed by a
    // stranger's key instead of its issuer's.
    let stranger = IdentityKey::from_seed([77; 32]);
    let mut cert = district.chain.org.decode_unverified().unwrap();
    let day = 86_400_000;
    let now = node::now().unix_millis();
    cert.validity = Validity {
        from: Timestamp::from_unix_millis(now - 30 * day),
        until: Timestamp::from_unix_millis(now - day),
    };
    let mut chain = district.chain.clone();
    chain.org = Signed::sign(&stranger, &cert);
    let mut events = f.subscribe();
    let key = stranger.to_libp2p();
    let peer = key.public().to_peer_id();
    let refused = Insider::try_connect_as(key, chain, fa, f.peer_id()).await;
    assert!(refused.is_err(), "the stranger is refused");
    let why = wait::event(&mut events, "the stranger refused", PATIENCE, |e| match e {
        NodeEvent::PeerRejected { peer: p, reason } if *p == peer => Some(reason.clone()),
        _ => None,
    })
    .await
    .unwrap();
    assert!(
        why.contains("signature"),
        "refused for its signature: {why}"
    );

    let sent = f
        .send(SendRequest {
            target: Target::Org(district.org_id()),
            ..super::process::planned_for(&federal, b"for the district".to_vec())
        })
        .await;
    assert!(
        sent.is_ok(),
        "the federal center still sends to the district: {sent:?}"
    );
    d.shutdown().await;
    f.shutdown().await;
}
