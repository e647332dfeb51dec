//! Clinicians in real browsers: Debian's chromium, headless, with a fake
//! camera and microphone, opens the room page of two nodes on 127.0.0.1.
//! Each page must decode video frames from the other site (its
//! `getStats()` shows `framesDecoded` growing) and see the other site's
//! chat message stamped with who wrote it; `konsilium sessions` shows both
//! browsers; the journal names each person who joined.
//!
//! Ignored unless asked for: `.ci/run` installs chromium and runs it with
//! `--ignored browser`. `KONSILIUM_CHROMIUM` names another binary.

use super::sessions::{once_connected, requested};
use super::*;
use futures::{SinkExt, StreamExt};
use konsilium_node::http::User;
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use tokio_tungstenite::tungstenite::Message;

/// How long a page may take to join and show the other site.
const PAGE_PATIENCE: Duration = Duration::from_secs(60);

/// A wait of at most `PAGE_PATIENCE` for something probed again and again.
pub(super) struct Patience {
    end: tokio::time::Instant,
}

impl Patience {
    pub(super) fn new() -> Self {
        Self {
            end: tokio::time::Instant::now() + PAGE_PATIENCE,
        }
    }

    /// Before probing again: a quarter second's pause, or, once patience
    /// is out, a panic saying what never came.
    pub(super) async fn again(&self, what: std::fmt::Arguments<'_>) {
        assert!(tokio::time::Instant::now() < self.end, "{what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One headless chromium showing one page, driven over DevTools.
pub(super) struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    devtools: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next: u64,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    async fn open(url: &str) -> Self {
        let binary = std::env::var("KONSILIUM_CHROMIUM").unwrap_or("/usr/bin/chromium".into());
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(&binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                "--allow-loopback-in-peer-connection",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            // Its singleton socket's directory too, which a killed chromium
            // leaves behind: removed with the profile.
            .env("TMPDIR", profile.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{binary} does not start ({e}): apt-get install chromium"));
        // Chromium writes the port it chose into the profile.
        let port_file = profile.path().join("DevToolsActivePort");
        let port = wait_for(Duration::from_secs(30), || {
            let text = std::fs::read_to_string(&port_file).ok()?;
            text.lines().next()?.trim().parse::<u16>().ok()
        })
        .await
        .expect("chromium opens its DevTools port");
        let list = format!("http://127.0.0.1:{port}/json/list");
        let page = loop {
            let pages: Vec<Value> = reqwest::get(&list).await.unwrap().json().await.unwrap();
            let found = (pages.iter())
                .find(|p| {
                    p["type"] == "page" && p["url"].as_str().is_some_and(|u| u.contains("/room"))
                })
                .and_then(|p| p["webSocketDebuggerUrl"].as_str().map(str::to_owned));
            if let Some(ws) = found {
                break ws;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (devtools, _) = tokio_tungstenite::connect_async(page).await.unwrap();
        Browser {
            child,
            _profile: profile,
            devtools,
            next: 0,
        }
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns
    /// its value.
    pub(super) async fn eval(&mut self, expression: &str) -> Value {
        self.next += 1;
        let id = self.next;
        let call = json!({
            "id": id,
            "method": "Runtime.evaluate",
            "params": {"expression": expression, "awaitPromise": true, "returnByValue": true},
        });
        self.devtools
            .send(Message::text(call.to_string()))
            .await
            .unwrap();
        while let Some(message) = self.devtools.next().await {
            let Ok(Message::Text(text)) = message else {
                continue;
            };
            let reply: Value = serde_json::from_str(&text).unwrap();
            if reply["id"] == id {
                if let Some(e) = reply["result"].get("exceptionDetails") {
                    panic!("{expression}: {e}");
                }
                return reply["result"]["result"]["value"].clone();
            }
        }
        panic!("chromium closed its DevTools connection");
    }

    /// The page's own account: state, frames decoded, chat seen, error.
    pub(super) async fn room(&mut self) -> Value {
        // Until its script has run, the page has no account yet.
        self.eval(
            "(async () => (typeof konsilium === 'undefined' ? {state: 'loading', error: null} : \
             {state: konsilium.state, error: konsilium.error, \
             frames: await konsilium.framesDecoded(), messages: konsilium.messages, \
             rosters: konsilium.rosters}))()",
        )
        .await
    }

    /// Waits until the page's account satisfies `done`; returns it.
    pub(super) async fn until(&mut self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let patience = Patience::new();
        loop {
            let room = self.room().await;
            if done(&room) {
                return room;
            }
            assert!(room["error"].is_null(), "{what}: the page says {room}");
            patience
                .again(format_args!("{what}: the page says {room}"))
                .await;
        }
    }
}

async fn wait_for<T>(patience: Duration, mut found: impl FnMut() -> Option<T>) -> Option<T> {
    let end = tokio::time::Instant::now() + patience;
    while tokio::time::Instant::now() < end {
        if let Some(t) = found() {
            return Some(t);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Two sites of a consultation whose session is open, and a room page at
/// each: Dr. Ivanova's at the district, Prof. Petrov's at the center.
pub(super) struct Rooms {
    pub(super) _sites: (
        tempfile::TempDir,
        konsilium_node::federation::LocalFederation,
        NodeHandle,
    ),
    pub(super) district: Arc<NodeHandle>,
    pub(super) federal: Arc<NodeHandle>,
    pub(super) ivanova: Browser,
    pub(super) petrov: Browser,
}

pub(super) async fn rooms() -> Rooms {
    let Three {
        _tmp,
        fed,
        district,
        regional,
        federal,
        ..
    } = three_with(Some(loopback_video())).await;
    let (district, federal) = (Arc::new(district), Arc::new(federal));
    let mut at_federal = federal.subscribe();
    let id = requested(&district).await;
    status_reaches(&mut at_federal, id, Status::Requested).await;
    // The sites are connected before anyone joins: the first join opens the session.
    let by = || Some(("Dr. Ivanova".to_owned(), Role::Physician));
    once_connected(|| district.open_video(id, by())).await;

    let physician = User::with_token("Dr. Ivanova", Role::Physician, "phys-d");
    let consultant = User::with_token("Prof. Petrov", Role::Consultant, "cons-f");
    let at_district = serve(district.clone(), physician).await;
    let at_center = serve(federal.clone(), consultant).await;
    let ivanova = Browser::open(&format!(
        "{at_district}/consultations/{id}/room#token=phys-d"
    ))
    .await;
    let petrov = Browser::open(&format!("{at_center}/consultations/{id}/room#token=cons-f")).await;
    Rooms {
        _sites: (_tmp, fed, regional),
        district,
        federal,
        ivanova,
        petrov,
    }
}

/// Serves a node's API on 127.0.0.1 for one user; returns its base URL.
async fn serve(node: Arc<NodeHandle>, user: User) -> String {
    let app = konsilium_node::http::router(node, vec![user], None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

pub(super) fn frames(room: &Value) -> u64 {
    room["frames"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium: .ci/run installs it and runs `--ignored browser`"]
async fn browser_clinicians_at_two_sites_see_each_other_and_chat() {
    let Rooms {
        _sites,
        district,
        federal,
        mut ivanova,
        mut petrov,
    } = rooms().await;

    // Each page decodes the other site's camera, and keeps decoding it.
    for (page, who) in [(&mut ivanova, "the district"), (&mut petrov, "the center")] {
        let first = page
            .until(&format!("{who} decodes video"), |r| frames(r) > 0)
            .await;
        let more = frames(&first) + 10;
        page.until(&format!("{who} keeps decoding"), |r| frames(r) >= more)
            .await;
    }

    // Each page publishes its camera as two encodings (simulcast), both
    // taken in by its node.
    for (page, who) in [(&mut ivanova, "the district"), (&mut petrov, "the center")] {
        let patience = Patience::new();
        loop {
            let rids = page
                .eval(
                    "(async () => { const rids = []; \
                     (await konsilium.pc.getStats()).forEach((r) => { \
                       if (r.type === 'outbound-rtp' && r.kind === 'video' && r.bytesSent > 0) rids.push(r.rid); }); \
                     return rids.sort(); })()",
                )
                .await;
            if rids == json!(["f", "q"]) {
                break;
            }
            patience
                .again(format_args!("{who} sends the encodings {rids}"))
                .await;
        }
    }

    // Chat crosses the sites, stamped by the node with who wrote it.
    ivanova
        .eval("konsilium.send('ST elevation in V2-V4')")
        .await;
    let seen = petrov
        .until("the center sees the district's message", |r| {
            (r["messages"].as_array().into_iter().flatten())
                .any(|m| m["text"] == "ST elevation in V2-V4")
        })
        .await;
    let message = (seen["messages"].as_array().unwrap().iter())
        .find(|m| m["text"] == "ST elevation in V2-V4")
        .unwrap();
    assert_eq!(message["from"]["person"], "Dr. Ivanova");
    assert_eq!(message["from"]["role"], "physician");
    assert_eq!(message["from"]["org"], "District hospital");
    petrov
        .eval("konsilium.send('Start thrombolysis, transfer to PCI')")
        .await;
    let answered = ivanova
        .until("the district sees the center's answer", |r| {
            (r["messages"].as_array().into_iter().flatten())
                .any(|m| m["text"] == "Start thrombolysis, transfer to PCI")
        })
        .await;
    let answer = (answered["messages"].as_array().unwrap().iter())
        .find(|m| m["text"] == "Start thrombolysis, transfer to PCI")
        .unwrap();
    assert_eq!(answer["from"]["person"], "Prof. Petrov");
    assert_eq!(answer["from"]["org"], "Federal cardiology center");
    // Who is in the room at the other site.
    let district_people = &seen["rosters"]["District hospital"];
    assert_eq!(district_people[0]["person"], "Dr. Ivanova", "{seen}");

    // Operators see each browser's picture moving both ways, and the
    // link's frames from the other site.
    for node in [&district, &federal] {
        let patience = Patience::new();
        loop {
            let sessions = node.inspect(node::Inspect::Sessions).await.unwrap();
            let rows = sessions["sessions"].as_array().unwrap().clone();
            let moving = |r: &Value| {
                r["receive_fps"].as_f64().unwrap_or(0.0) > 0.0
                    && r["send_fps"].as_f64().unwrap_or(0.0) > 0.0
            };
            let browser = |r: &&Value| r["peer"].as_str().is_some_and(|p| p.starts_with("browser"));
            let (browsers, links): (Vec<&Value>, Vec<&Value>) = rows.iter().partition(browser);
            if browsers.iter().all(|r| moving(r)) && links.iter().all(|r| moving(r)) {
                assert_eq!((browsers.len(), links.len()), (1, 1), "{sessions}");
                break;
            }
            patience
                .again(format_args!("frames per second: {sessions}"))
                .await;
        }
    }
    // Operators see both browsers beside the link. A loaded machine can
    // make the estimate dip and the browser receive the smaller encoding,
    // which the state says after a comma ("connected, reduced").
    for (node, person) in [
        (&district, "Dr. Ivanova (physician)"),
        (&federal, "Prof. Petrov (consultant)"),
    ] {
        let sessions = node.inspect(node::Inspect::Sessions).await.unwrap();
        let rows = sessions["sessions"].as_array().unwrap();
        let connected = |r: &Value| {
            r["state"]
                .as_str()
                .is_some_and(|s| s.split(',').next() == Some("connected"))
        };
        assert!(
            rows.iter().any(|r| r["name"] == person && connected(r)),
            "{sessions}"
        );
    }
    // The journal names the person who joined.
    let (entries, _) = federal.journal().await.unwrap();
    assert!(
        (entries.iter()).any(|e| e.actor.as_deref() == Some("Prof. Petrov")
            && e.action.to_string().ends_with(": joined")),
        "the consultant's join is journaled"
    );
}
