//! A federation member run as its own `konsilium run` process, with the
//! files an operator would give it (key files, certificate chain, config),
//! so tests can SIGKILL it, read its log and scan its memory.

// Shared by several test crates, each of which uses part of it.
#![allow(dead_code)]

use konsilium_node::config::api::token_hash_hex;
use konsilium_node::federation::{LocalFederation, Member};
use konsilium_node::node::{SendRequest, Target};
use konsilium_protocol::cert::OrgLevel;
use konsilium_protocol::seal::RoutingHeader;
use konsilium_protocol::specialty::Specialty;
use konsilium_protocol::urgency::Urgency;
use konsilium_protocol::wire;
use libp2p::Multiaddr;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A cardiology service with one consultant, for `Options::directory`.
pub const CARDIOLOGY: &str = r#"[[directory.services]]
specialty = "cardiology"
urgencies = ["planned", "urgent", "emergency"]

[[directory.consultants]]
id = 1
name = "Dr. Ivan Petrov"
specialties = ["cardiology"]
languages = ["ru"]
"#;

/// The bearer token of the one API user a process node has.
pub const TOKEN: &str = "process-test-physician";
const PATIENCE: Duration = Duration::from_secs(60);

/// What a process node's config says beyond its identity.
pub struct Options<'a> {
    pub bootstrap: &'a [Multiaddr],
    /// The API's port on 127.0.0.1, if the API is on.
    pub api_port: Option<u16>,
    /// `[[directory.services]]` and `[[directory.consultants]]` tables.
    pub directory: &'a str,
    pub log_level: &'a str,
    /// The TCP port it listens on (0: any).
    pub listen_port: u16,
}

pub struct ProcessNode {
    child: Child,
    pub config: PathBuf,
    pub log: PathBuf,
    pub data: PathBuf,
}

/// Resident memory of process `pid`, from `/proc`.
pub fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS in /proc/<pid>/status");
    kib * 1024
}

/// A port free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Writes the member's key files, chain and config into its data
/// directory; returns the config's path.
pub fn write_config(member: &Member, fed: &LocalFederation, options: &Options) -> PathBuf {
    let data = &member.data_dir;
    member.keys.node_keys().write(data).unwrap();
    let chain = data.join("org.chain");
    std::fs::write(&chain, wire::encode(&member.chain).unwrap()).unwrap();
    let bootstrap: Vec<String> = (options.bootstrap.iter())
        .map(|a| format!("\"{a}\""))
        .collect();
    let api = match options.api_port {
        Some(port) => format!(
            "[api]\nlisten = \"127.0.0.1:{port}\"\n\n[[api.users]]\nname = \"Dr. Ivanova\"\nrole = \"physician\"\ntoken_hash = \"{}\"\n",
            token_hash_hex(TOKEN)
        ),
        None => String::new(),
    };
    let config = format!(
        "[organization]\ndata_dir = \"{data}\"\ncertificate = \"{chain}\"\n\n\
         [federation]\nroots = [\"{root}\"]\n\n\
         [network]\nlisten = [\"/ip4/127.0.0.1/tcp/{port}\"]\nbootstrap = [{bootstrap}]\n\n\
         [directory]\ntime_zone = \"Europe/Moscow\"\nworking_days = [1, 2, 3, 4, 5]\n\n\
         {directory}\n{api}\n[log]\nformat = \"text\"\nlevel = \"{level}\"\n",
        data = data.display(),
        chain = chain.display(),
        root = fed.root().key(),
        bootstrap = bootstrap.join(", "),
        directory = options.directory,
        level = options.log_level,
        port = options.listen_port,
    );
    let path = data.join("node.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// A test that fails must not leave its node running.
impl Drop for ProcessNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ProcessNode {
    /// Starts `konsilium run` on the config; its output goes to `log`.
    pub fn spawn(config: &Path, log: &Path) -> Self {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_konsilium"))
            .args(["run", "--config"])
            .arg(config)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let data = config.parent().unwrap().to_owned();
        Self {
            child,
            config: config.to_owned(),
            log: log.to_owned(),
            data,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and waits until the process is gone.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Waits until `base` (the API) answers; fails with the log's tail if
    /// the process exited.
    pub async fn api_up(&mut self, http: &reqwest::Client, base: &str) {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the node exited with {status}; its log ends:\n{}",
                    self.log_tail()
                );
            }
            if http
                .get(format!("{base}/openapi.json"))
                .send()
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the node's API did not come up within {PATIENCE:?}");
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut tail: Vec<&str> = log.lines().rev().take(20).collect();
        tail.reverse();
        tail.join("\n")
    }

    /// Resident memory, from `/proc`.
    pub fn rss_bytes(&self) -> u64 {
        rss_of(self.pid())
    }

    /// Whether `needle` is anywhere in the process's readable memory (what
    /// a core dump would hold), read through `/proc/<pid>/mem`.
    pub fn memory_contains(&self, needle: &[u8]) -> bool {
        let pid = self.pid();
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
        let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
        let mut buf = Vec::new();
        for line in maps.lines() {
            let mut fields = line.split_whitespace();
            let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
                continue;
            };
            if !perms.starts_with('r') || line.ends_with("[vvar]") {
                continue;
            }
            let (start, end) = range.split_once('-').unwrap();
            let start = u64::from_str_radix(start, 16).unwrap();
            let end = u64::from_str_radix(end, 16).unwrap();
            buf.resize((end - start) as usize, 0);
            let read = mem
                .seek(SeekFrom::Start(start))
                .and_then(|_| mem.read_exact(&mut buf));
            if read.is_ok() && buf.windows(needle.len()).any(|w| w == needle) {
                return true;
            }
        }
        false
    }
}

/// `konsilium journal verify` on a stopped node's data directory.
/// A planned package for the federal center, relayed by whoever the
/// sender's routing picks: the traffic the relay suites carry.
pub fn planned_for(federal: &Member, body: Vec<u8>) -> SendRequest {
    SendRequest {
        target: Target::Org(federal.org_id()),
        routing: RoutingHeader {
            specialty: Specialty::Cardiology,
            min_level: OrgLevel::Federal,
            urgency: Urgency::Planned,
            region: None,
        },
        body,
        attachments: Vec::new(),
        lifetime: Duration::from_secs(86_400),
    }
}

pub fn journal_verifies(data: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_konsilium"))
        .args(["journal", "verify", "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "journal verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Finds `needle` anywhere in the files under `dir`.
pub fn dir_contains(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().flatten().any(|e| {
        let p = e.path();
        if p.is_dir() {
            dir_contains(&p, needle)
        } else {
            std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
        }
    })
}
