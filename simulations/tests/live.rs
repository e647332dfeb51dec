//! The live engine against the model on a few of Vologda's organizations:
//! real nodes on loopback fill their directories, spread a changed record
//! to every node, and deliver every request they could route.

use konsilium_simulations::live::{self, LiveConfig};
use konsilium_simulations::scenario::Scenario;

#[test]
fn live_nodes_deliver_the_models_requests_and_stay_within_its_bound() {
    let vologda = Scenario::by_name("vologda").unwrap();
    let config = LiveConfig {
        nodes: 8,
        requests: 6,
        seed: 3,
    };
    let mut said = Vec::new();
    let c = live::compare::run(&vologda, config, |what| said.push(what.to_owned())).unwrap();
    let (model, live) = (&c.model, &c.live);
    assert_eq!((c.organizations, live.nodes), (8, 8));
    assert!(
        live.directory_all_s.is_some(),
        "every directory filled: {said:?}"
    );
    // The change reached every node in both engines. (Live, gossipsub
    // carries it within a second when the changed node knows subscribed
    // peers, anti-entropy within minutes when it does not: both happen,
    // the report says which.)
    assert!(
        live.update_all_s.is_some() && model.update_all_s.is_some(),
        "live {live:?}, model {model:?}"
    );
    // Every request the directory could route arrived.
    assert!(live.delivery.requests + live.unroutable > 0, "{said:?}");
    assert_eq!(live.delivery.undelivered, 0, "{live:?}");
    assert!(live.delivery.p50_ms.is_some());
    assert!(said.iter().any(|s| s.ends_with("requests")), "{said:?}");
    let report = live::compare::markdown(&c);
    assert!(report.contains("| a changed record at 99 % of the others |"));
}
