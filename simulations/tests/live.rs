//! The live engine against the model on a few of Vologda's organizations:
//! real nodes on loopback fill their directories, gossip a changed record
//! to every node, and deliver every request they could route.

use konsilium_protocol::keep;
use konsilium_simulations::live::{self, Links, LiveConfig};
use konsilium_simulations::scenario::Scenario;
use std::time::Duration;

#[test]
fn sixteen_live_nodes_on_one_address_gossip_a_change_to_all_and_deliver_the_models_requests() {
    let vologda = Scenario::by_name("vologda").unwrap();
    let config = LiveConfig {
        // More than gossipsub's ten peers per IP address: all on 127.0.0.1.
        nodes: 16,
        requests: 6,
        seed: 3,
        links: Links::Tcp,
        settle: Duration::from_secs(1),
        // No spares: each node keeps its gossip mesh and its bootstrap
        // peer, and dials anyone else again when it has a request.
        keep: keep::Config {
            spare: 0,
            idle: Duration::from_secs(2),
        },
    };
    let mut said = Vec::new();
    let c = live::compare::run(&vologda, config, |what| said.push(what.to_owned())).unwrap();
    let (model, live) = (&c.model, &c.live);
    assert_eq!((c.organizations, live.nodes), (16, 16));
    assert!(
        live.directory_all_s.is_some(),
        "every directory filled: {said:?}"
    );
    // The change reached every node in both engines, and live it went by
    // gossip: peers sharing an address are not scored out of the mesh.
    assert!(
        live.update_all_s.is_some() && model.update_all_s.is_some(),
        "live {live:?}, model {model:?}"
    );
    let g = live.gossip;
    assert!(
        g.published == 1 && g.accepted + g.ignored >= 15 && g.invalid == 0,
        "every other node had the change by gossip: {g:?}"
    );
    // Every request the directory could route arrived.
    assert!(live.delivery.requests + live.unroutable > 0, "{said:?}");
    assert_eq!(live.delivery.undelivered, 0, "{live:?}");
    assert!(live.delivery.p50_ms.is_some());
    assert!(said.iter().any(|s| s.ends_with("requests")), "{said:?}");
    // The baseline: plain gossipsub on the same links reached everyone.
    assert!(live.raw.all_s.is_some(), "{:?}", live.raw);
    let report = live::compare::markdown(&c);
    assert!(report.contains("| a changed record at 99 % of the others |"));
    assert!(report.contains("Plain gossipsub"), "{report}");
}

#[test]
fn live_nodes_on_in_process_links_fill_their_directories_gossip_a_change_and_close_idle_links() {
    let vologda = Scenario::by_name("vologda").unwrap();
    let config = LiveConfig {
        nodes: 40,
        requests: 4,
        seed: 5,
        links: Links::Memory,
        settle: Duration::from_secs(1),
        keep: keep::Config {
            spare: 0,
            idle: Duration::from_secs(2),
        },
    };
    let mut said = Vec::new();
    let c = live::compare::run(&vologda, config, |what| said.push(what.to_owned())).unwrap();
    let live = &c.live;
    assert_eq!((live.nodes, live.links), (40, Links::Memory));
    // Idle connections outside the gossip mesh closed; gossip and
    // deliveries (to peers dialled again) worked without them. Left open,
    // every node is linked to all 39 others by the time the record changes
    // (measured: 39.0 per node); closed, 5 in a release build and 16 to 31
    // in a debug one (nine runs), where the closings lag behind the slower
    // nodes and the lag varies with the machine's load.
    assert!(live.gossip.idle_closed > 0, "{:?}", live.gossip);
    assert!(
        live.gossip.mean_peers < 35.0,
        "{} peers per node when the directories were full, {} after",
        live.peers_when_full,
        live.gossip.mean_peers
    );
    assert!(live.directory_all_s.is_some(), "{said:?}");
    assert!(live.update_all_s.is_some(), "{live:?}");
    assert_eq!(live.gossip.published, 1, "{:?}", live.gossip);
    assert_eq!(live.delivery.undelivered, 0, "{live:?}");
    assert!(live.raw.all_s.is_some(), "{:?}", live.raw);
    assert!(live.rest_cpu.is_some_and(|c| c > 0.0), "{live:?}");
}
