//! The server under test, as `pushbench run` sees it: its own process
//! (started fresh for each transport) or one already listening.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::procstat::ProcHandle;
use crate::scenario::{Scenario, ServerKind};
use crate::server::{PublishPlan, ServerStats};

/// How `run` gets a server for each transport.
#[derive(Clone, Debug)]
pub enum ServerLaunch {
    /// Start `exe serve` as a fresh process for every transport, inside
    /// the server's namespace of an emulated link if given.
    Spawn {
        exe: PathBuf,
        link: Option<crate::network::link::LinkName>,
    },
    /// Use a pushbench server that is already listening (tests, manual
    /// runs). Its process figures are reported only if `pid` is given.
    Existing {
        addr: SocketAddr,
        kind: ServerKind,
        pid: Option<u32>,
        /// The server's certificate (PEM) when it serves TLS.
        tls_cert_pem: Option<String>,
        /// The name its certificate carries (the target URL's host); its
        /// address when none.
        tls_name: Option<String>,
        /// The token its control routes require, if any.
        token: Option<String>,
        /// Whether its control routes (stats, the in-process publisher)
        /// are ours to use: a test's own server, or a target given with
        /// its token.
        control: bool,
    },
}

pub struct ServerUnderTest {
    pub addr: SocketAddr,
    /// What the server speaks.
    pub kind: ServerKind,
    /// Whether its control routes (`/_pushbench/…`) are ours to use: a
    /// pushbench server `run` started, or a running one given with its token.
    pub control: bool,
    /// The certificate clients must trust, when the server serves TLS.
    pub tls_cert_pem: Option<String>,
    /// The name that certificate carries, when not the server's address.
    pub tls_name: Option<String>,
    pub proc: Option<ProcHandle>,
    child: Option<std::sync::Mutex<Child>>,
    http: reqwest::Client,
    /// Bearer token of the control routes.
    token: Option<String>,
}

/// Waits for a started server's line saying where it listens, then keeps
/// draining its stdout so it never blocks on a full pipe.
async fn wait_ready(child: &mut Child, prefix: &'static str) -> anyhow::Result<SocketAddr> {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(url) = line.strip_prefix(prefix) {
                let addr = url.trim().split_once("://").map_or(url, |(_, a)| a);
                return Ok::<_, std::io::Error>(Some(addr.trim_end_matches('/').to_string()));
            }
        }
        Ok(None)
    })
    .await;
    let addr = match ready {
        Ok(Ok(Some(addr))) => addr
            .parse()
            .with_context(|| format!("server printed a bad address {addr:?}"))?,
        Ok(_) => {
            let status = child.wait().await?;
            bail!("the server exited before it was ready ({status})");
        }
        Err(_) => bail!("the server did not report ready within 15 s"),
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(addr)
}

/// The line the bundled Socket.IO server prints once it listens.
pub const SOCKETIO_READY_PREFIX: &str = "pushbench socketio server listening on ";

/// Where the bundled Socket.IO server is: `PUSHBENCH_SOCKETIO_DIR`, or
/// servers/socketio in the source tree pushbench was built from.
pub fn socketio_dir() -> PathBuf {
    std::env::var_os("PUSHBENCH_SOCKETIO_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/servers/socketio")))
}

/// Node.js and the bundled Socket.IO server's packages, or what to do to
/// get them.
pub fn find_socketio() -> Result<(PathBuf, PathBuf), String> {
    let node = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join("node"))
        .find(|p| p.is_file())
        .ok_or("the Socket.IO transports need Node.js, which is not installed: apt-get install nodejs npm")?;
    let dir = socketio_dir();
    if !dir.join("server.js").is_file() {
        return Err(format!(
            "the bundled Socket.IO server is not at {} (set PUSHBENCH_SOCKETIO_DIR to the servers/socketio directory of pushbench's source)",
            dir.display()
        ));
    }
    if !dir.join("node_modules/socket.io/package.json").is_file() {
        return Err(format!(
            "the bundled Socket.IO server's packages are not installed: npm ci --prefix {}",
            dir.display()
        ));
    }
    Ok((node, dir))
}

/// Starts the bundled Socket.IO server (servers/socketio) as its own
/// process: `node server.js`, what its `npm start` runs, without npm in
/// between so the measured process is the server itself.
async fn start_socketio(scenario: &Scenario) -> anyhow::Result<ServerUnderTest> {
    let (node, dir) = find_socketio().map_err(anyhow::Error::msg)?;
    let mut child = Command::new(node)
        .current_dir(&dir)
        .arg("server.js")
        .args(["--host", "127.0.0.1", "--port", "0"])
        .args([
            "--ping-interval",
            &scenario.websocket.heartbeat.as_millis().to_string(),
        ])
        .env("PUSHBENCH_PARENT_PID", std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start node in {}", dir.display()))?;
    let addr = wait_ready(&mut child, SOCKETIO_READY_PREFIX).await?;
    let pid = child.id().context("server has no pid")?;
    Ok(ServerUnderTest {
        addr,
        kind: ServerKind::Socketio,
        control: false,
        tls_cert_pem: None,
        tls_name: None,
        proc: Some(ProcHandle::pid(pid)),
        child: Some(std::sync::Mutex::new(child)),
        http: control_client(None)?,
        token: None,
    })
}

/// The line `pushbench serve` prints once it accepts connections.
pub const READY_PREFIX: &str = "pushbench server listening on ";

/// Tries of a control request whose connection failed (see `stats` and
/// `publish`).
pub const CONTROL_ATTEMPTS: u32 = 3;

/// The client for control requests, trusting exactly the server's
/// certificate when it has one.
fn control_client(tls_cert_pem: Option<&str>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
    if let Some(pem) = tls_cert_pem {
        let config = crate::tls::client_config(pem, crate::tls::ALPN_HTTP1)?;
        builder = builder.use_preconfigured_tls(std::sync::Arc::unwrap_or_clone(config));
    }
    Ok(builder.build()?)
}

/// Bytes a topic's buffer needs to hold `publish.buffer_per_topic` events
/// of the scenario's payload, within what `serve` allows.
fn scenario_buffer_bytes(scenario: &Scenario) -> u64 {
    let event = scenario.publish.payload_bytes as u64 + crate::codec::MAX_ENVELOPE_BYTES as u64;
    (scenario.publish.buffer_per_topic as u64 * event).clamp(1 << 20, 16 << 30)
}

impl ServerUnderTest {
    pub async fn start(
        launch: &ServerLaunch,
        scenario: &Scenario,
        kind: ServerKind,
    ) -> anyhow::Result<ServerUnderTest> {
        match launch {
            ServerLaunch::Existing {
                addr,
                kind,
                pid,
                tls_cert_pem,
                tls_name,
                token,
                control,
            } => Ok(ServerUnderTest {
                tls_name: tls_name.clone(),
                addr: *addr,
                kind: *kind,
                control: *kind == ServerKind::Pushbench && *control,
                tls_cert_pem: tls_cert_pem.clone(),
                proc: pid.map(ProcHandle::pid),
                child: None,
                http: control_client(tls_cert_pem.as_deref())?,
                token: token.clone(),
            }),
            ServerLaunch::Spawn { .. } if kind == ServerKind::Socketio => {
                start_socketio(scenario).await
            }
            ServerLaunch::Spawn { exe, link } => {
                // The server writes its fresh certificate here before it
                // reports ready.
                let cert_file = if scenario.tls {
                    Some(tempfile::NamedTempFile::new().context("cannot create a temporary file")?)
                } else {
                    None
                };
                // A fresh token per server, passed in the environment (a
                // command line is visible to every user of the machine).
                let token = crate::server::random_token();
                let (mut command, listen) = match link {
                    Some(link) => (
                        crate::network::link::command_in(&link.server_ns(), exe),
                        format!("{}:0", crate::network::link::SERVER_ADDR),
                    ),
                    None => (Command::new(exe), "127.0.0.1:0".to_owned()),
                };
                command
                    .args(["serve", "--exit-with-parent"])
                    .env("PUSHBENCH_TOKEN", &token);
                if let Some(f) = &cert_file {
                    command.arg("--tls-cert-out").arg(f.path());
                }
                let mut child = command
                    .args(["--listen", &listen])
                    .args(["--encoding", scenario.publish.encoding.as_str()])
                    .args([
                        "--buffer-per-topic",
                        &scenario.publish.buffer_per_topic.to_string(),
                    ])
                    // Room for the scenario's whole event buffer, whatever
                    // the payload size: its resume semantics are the
                    // scenario's, not the exposed server's default budget.
                    .args([
                        "--buffer-bytes-per-topic",
                        &scenario_buffer_bytes(scenario).to_string(),
                    ])
                    // Every topic of the scenario, and one answer topic per
                    // client for echo, fit under the topic cap.
                    .args([
                        "--max-topics",
                        &(u64::from(scenario.topics.count)
                            + if scenario.echo.is_some() {
                                u64::from(scenario.clients.count)
                            } else {
                                0
                            }
                            + 16)
                            .to_string(),
                    ])
                    .args([
                        "--buffer-bytes",
                        &(scenario_buffer_bytes(scenario) * u64::from(scenario.topics.count))
                            .clamp(1 << 30, 1 << 40)
                            .to_string(),
                    ])
                    // A short poller's connection idles between polls: it
                    // must stay open over the scenario's interval.
                    .args([
                        "--idle-timeout",
                        &humantime::format_duration(
                            (scenario.short_polling.interval * 2)
                                .max(std::time::Duration::from_secs(10)),
                        )
                        .to_string(),
                    ])
                    .args([
                        "--heartbeat",
                        &humantime::format_duration(scenario.websocket.heartbeat).to_string(),
                    ])
                    .args(["--threads", &scenario.server.threads.to_string()])
                    .args([
                        "--min-open-files",
                        &scenario.server_open_files_needed().to_string(),
                    ])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    // Its own process group: Ctrl-C reaches `run`, which
                    // then stops the server after writing what it measured.
                    .process_group(0)
                    .kill_on_drop(true)
                    .spawn()
                    .with_context(|| format!("cannot start the server {}", exe.display()))?;
                let addr = wait_ready(&mut child, READY_PREFIX).await?;
                let pid = child.id().context("server has no pid")?;
                let tls_cert_pem = cert_file
                    .map(|f| std::fs::read_to_string(f.path()))
                    .transpose()
                    .context("cannot read the server's certificate")?;
                Ok(ServerUnderTest {
                    addr,
                    tls_name: None,
                    kind: ServerKind::Pushbench,
                    control: true,
                    http: control_client(tls_cert_pem.as_deref())?,
                    tls_cert_pem,
                    proc: Some(ProcHandle::pid(pid)),
                    child: Some(std::sync::Mutex::new(child)),
                    token: Some(token),
                })
            }
        }
    }

    /// The newest sequence number of each topic, asked the way any client
    /// may: a long poll without cursors answers at once with the heads
    /// (docs/protocol.md), in chunks of the 256 topics a subscription may
    /// name. For a server whose control routes are not ours.
    pub async fn heads_by_subscription(
        &self,
        topics: &[String],
        encoding: crate::codec::Encoding,
    ) -> anyhow::Result<std::collections::HashMap<String, u64>> {
        let mut heads = std::collections::HashMap::new();
        for chunk in topics.chunks(256) {
            let url = self.url(&format!("/lp?subs={}&hold_ms=0&max=1", chunk.join(",")));
            let r = self.http.get(url).send().await?.error_for_status()?;
            let body = r.bytes().await?;
            let mut messages = Vec::new();
            crate::codec::decode_batch(encoding, &body, &mut messages)
                .context("the heads' answer does not decode")?;
            match messages.first() {
                Some(crate::codec::ServerMessage::Subscribed(h)) => {
                    heads.extend(h.iter().map(|(t, s)| (t.to_string(), *s)));
                }
                other => bail!("a long poll without cursors answered {other:?}, not the heads"),
            }
        }
        Ok(heads)
    }

    /// The bearer token of its control routes, when known.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The server process's pid, when run started it.
    pub fn pid(&self) -> Option<u32> {
        self.child
            .as_ref()
            .and_then(|c| c.lock().ok().and_then(|c| c.id()))
    }

    /// A control request, with the token when the server has one.
    fn control(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, self.url(path));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    fn url(&self, path: &str) -> String {
        let scheme = if self.tls_cert_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// The server's counters. A GET, so a request that failed on the way
    /// (its connection cut, as a proxy or a flaky link may) is tried again,
    /// up to [`CONTROL_ATTEMPTS`] times: one lost control request must not
    /// end a run whose clients reconnected and carried on.
    pub async fn stats(&self) -> anyhow::Result<ServerStats> {
        let mut attempt = 1;
        loop {
            let sent = self
                .control(reqwest::Method::GET, "/_pushbench/stats")
                .send()
                .await;
            let answer = match sent {
                Ok(r) => r.error_for_status()?.json().await,
                Err(e) => Err(e),
            };
            match answer {
                Ok(stats) => return Ok(stats),
                Err(e)
                    if attempt < CONTROL_ATTEMPTS
                        && (e.is_connect() || e.is_request() || e.is_body() || e.is_decode()) =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Starts the server's publisher. Tried again like `stats` when the
    /// request's connection fails: the server answers a plan it already
    /// accepted as accepted and starts nothing (see [`PublishPlan`]), so a
    /// cut that lost only the answer cannot start a second publisher.
    pub async fn publish(&self, plan: &PublishPlan) -> anyhow::Result<()> {
        let mut attempt = 1;
        let r = loop {
            let sent = self
                .control(reqwest::Method::POST, "/_pushbench/publish")
                .json(plan)
                .send()
                .await;
            match sent {
                Ok(r) => break r,
                Err(e) if attempt < CONTROL_ATTEMPTS && (e.is_connect() || e.is_request()) => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        if !r.status().is_success() {
            let status = r.status();
            bail!(
                "the server refused the publish plan: {status} {}",
                r.text().await.unwrap_or_default().trim()
            );
        }
        Ok(())
    }

    /// Completes when a spawned server exits on its own (never for an
    /// existing one): the run must stop and say so. Returns the reason and
    /// the monotonic time of the exit, taken when the kernel reports it
    /// (a pidfd turning readable), so the measured window can close when
    /// the server died rather than when a poll noticed.
    pub async fn exited(&self) -> (String, u64) {
        let Some(child) = &self.child else {
            return std::future::pending().await;
        };
        let pid = child.lock().expect("child lock").id();
        let pidfd = pid
            .and_then(|p| rustix::process::Pid::from_raw(p as i32))
            .and_then(|p| {
                rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
            });
        // The kernel makes a pidfd readable when its process exits: a
        // blocking thread waits for that (it ends with the process, which
        // `stop` kills at the latest).
        let died_at = match pidfd {
            Some(fd) => tokio::task::spawn_blocking(move || {
                use rustix::event::{PollFd, PollFlags, poll};
                let mut fds = [PollFd::new(&fd, PollFlags::IN)];
                while let Err(rustix::io::Errno::INTR) = poll(&mut fds, None) {}
                crate::clock::now_ns()
            })
            .await
            .ok(),
            None => None,
        };
        loop {
            match child.lock().expect("child lock").try_wait() {
                Ok(Some(status)) => {
                    return (
                        format!("the server process exited during the run ({status})"),
                        died_at.unwrap_or_else(crate::clock::now_ns),
                    );
                }
                Ok(None) => {}
                Err(e) => {
                    return (
                        format!("lost track of the server process: {e}"),
                        died_at.unwrap_or_else(crate::clock::now_ns),
                    );
                }
            }
            // Without a pidfd this polls; with one, the exit status is
            // about to be ready.
            tokio::time::sleep(Duration::from_millis(if died_at.is_some() {
                1
            } else {
                10
            }))
            .await;
        }
    }

    /// Ends a spawned server; an existing one is left running.
    pub async fn stop(self) {
        if let Some(child) = self.child {
            let mut child = child.into_inner().expect("child lock");
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}
