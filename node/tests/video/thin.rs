//! A real browser on a thin path: the path from the center's node to
//! Prof. Petrov's chromium is throttled to 800 kbit/s on the loopback
//! (`tc`, matching that one flow), below what the district's full camera
//! encoding needs. The node's bandwidth estimate for that browser falls,
//! it sends the district's smaller simulcast encoding instead, and the
//! page goes on decoding a smaller picture rather than freezing.
//!
//! Ignored unless asked for, like the other browser test; it also needs
//! root for `tc` (`.ci/run` runs as root).

use super::browser::{Patience, Rooms, frames, rooms};
use super::*;
use serde_json::Value;
use std::process::Command;

/// The throttle: the flow from `from` to `to` on the loopback leaves at
/// `rate`; everything else on the loopback as before. Removed on drop.
/// (Built from the qdiscs a minimal kernel has: htb and pfifo.)
struct Throttle;

fn tc(args: &str) -> std::process::Output {
    let output = (Command::new("tc").args(args.split_whitespace()).output())
        .unwrap_or_else(|e| panic!("tc does not run ({e}): apt-get install iproute2"));
    assert!(
        output.status.success(),
        "tc {args}: {} (the test needs root)",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

impl Throttle {
    fn new(from: u16, to: u16, rate: &str) -> Self {
        // Everything on the loopback in a class far faster than it; the one
        // flow in a class of `rate`, whose queue holds a tenth of a second
        // (a router's, not the loopback's thousand packets).
        tc("qdisc add dev lo root handle 1: htb default 10");
        let throttle = Throttle;
        tc("class add dev lo parent 1: classid 1:10 htb rate 40gbit");
        tc(&format!(
            "class add dev lo parent 1: classid 1:20 htb rate {rate} ceil {rate} burst 16kb"
        ));
        tc("qdisc add dev lo parent 1:20 handle 20: pfifo limit 10");
        tc(&format!(
            "filter add dev lo parent 1: protocol ip prio 1 u32 \
             match ip protocol 17 0xff match ip sport {from} 0xffff match ip dport {to} 0xffff \
             flowid 1:20"
        ));
        throttle
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        let _ = Command::new("tc")
            .args(["qdisc", "del", "dev", "lo", "root"])
            .output();
    }
}

fn port(addr: &Value) -> u16 {
    let text = addr
        .as_str()
        .unwrap_or_else(|| panic!("an address: {addr}"));
    let addr: std::net::SocketAddr = text.parse().unwrap();
    addr.port()
}

/// The center's row for Prof. Petrov's browser in `konsilium sessions`.
async fn petrovs_row(federal: &NodeHandle) -> Value {
    let sessions = federal.inspect(node::Inspect::Sessions).await.unwrap();
    let rows = sessions["sessions"].as_array().unwrap().clone();
    (rows.into_iter())
        .find(|r| r["name"] == "Prof. Petrov (consultant)")
        .unwrap_or_else(|| panic!("Prof. Petrov's browser in {sessions}"))
}

/// The width of the picture the page decodes from the other site.
const WIDTH: &str = "(async () => { let w = 0; \
    (await konsilium.pc.getStats()).forEach((r) => { \
      if (r.type === 'inbound-rtp' && r.kind === 'video' && r.frameWidth) w = Math.max(w, r.frameWidth); }); \
    return w; })()";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and root: .ci/run installs it and runs `--ignored browser`"]
async fn browser_on_a_thin_path_is_sent_the_small_encoding_and_keeps_decoding() {
    let Rooms {
        _sites,
        district: _district,
        federal,
        ivanova: _ivanova,
        mut petrov,
    } = rooms().await;
    let first = petrov
        .until("the center decodes video", |r| frames(r) > 0)
        .await;
    // The full encoding first: wait until the page decodes it.
    let patience = Patience::new();
    let full = loop {
        let width = petrov.eval(WIDTH).await.as_u64().unwrap_or(0);
        if width >= 640 {
            break width;
        }
        (patience.again(format_args!(
            "the full picture never came: {width} px wide, {first}"
        )))
        .await;
    };

    let status = federal.inspect(node::Inspect::Status).await.unwrap();
    let plane = port(&status["video"]);
    // The browser's address, once the node's statistics name its route.
    let patience = Patience::new();
    let browser = loop {
        let row = petrovs_row(&federal).await;
        if row["remote"].is_string() {
            break port(&row["remote"]);
        }
        patience
            .again(format_args!("no route to the browser: {row}"))
            .await;
    };
    let _throttle = Throttle::new(plane, browser, "800kbit");

    // The node thins what it sends that browser, and says so.
    let patience = Patience::new();
    loop {
        let row = petrovs_row(&federal).await;
        let state = row["state"].as_str().unwrap_or_default().to_owned();
        // ("audio only" when the estimate dipped further for a moment:
        // it climbs back to the smaller picture.)
        if state.contains("reduced") {
            break;
        }
        (patience.again(format_args!(
            "the node never sent the smaller encoding: {row}"
        )))
        .await;
    }
    // And the page keeps decoding, a smaller picture.
    let patience = Patience::new();
    let mut width = full;
    while width >= full {
        patience
            .again(format_args!(
                "the page still decodes {width} px wide frames"
            ))
            .await;
        width = petrov.eval(WIDTH).await.as_u64().unwrap_or(full);
    }
    let before = frames(&petrov.room().await);
    petrov
        .until("the center keeps decoding the small picture", |r| {
            frames(r) >= before + 15
        })
        .await;
    assert!(width <= full / 2, "{width} px against {full} px");
}
