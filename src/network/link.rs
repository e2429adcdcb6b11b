//! The link itself: two network namespaces joined by a veth pair, the
//! rate limits on each end, the rules that send every packet through the
//! delay stage, and their removal.
//!
//! Built with iproute2 (`ip`, `tc`) and `iptables`, the tools an operator
//! would use to check or repeat it by hand, rather than netlink crates:
//! each step is one command whose failure message is the tool's own, and
//! `ip netns exec` starts a process in a namespace without any unsafe code
//! here. NFQUEUE rules use iptables because the nftables `queue` statement
//! needs a kernel option (`CONFIG_NFT_QUEUE`) that kernels without netem
//! often lack too, while the iptables target is built in.
//!
//! Addresses come from 198.18.0.0/15, which RFC 2544 sets aside for
//! benchmarking, and exist only inside the namespaces made here.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::AsyncBufReadExt as _;

use super::Network;

/// The server's address inside its namespace.
pub const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

/// The generator's `i`-th source address (from 0), like 127.0.0.1, .2, …
/// on loopback.
pub fn client_addr(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 1, 1 + (i % 250) as u8)
}

/// Connects timed by the RTT probe.
pub const PROBE_CONNECTS: usize = 7;
/// Connects timed by the RTT probe of a lossy link, where some handshakes
/// wait for a SYN to be sent again.
pub const PROBE_CONNECTS_LOSSY: usize = 15;

/// How far the probe's median may be from the configured RTT before a run
/// refuses to start.
pub fn tolerance(rtt: Duration) -> Duration {
    Duration::from_millis(2).max(rtt / 50)
}

/// The names of one run's link, derived from the process that owns it so
/// a link left by a killed run can be told apart and removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkName {
    pub owner_pid: u32,
}

impl LinkName {
    pub fn server_ns(&self) -> String {
        format!("pb-{}-s", self.owner_pid)
    }
    pub fn client_ns(&self) -> String {
        format!("pb-{}-c", self.owner_pid)
    }
    /// Interface names are at most 15 bytes.
    pub fn server_if(&self) -> String {
        format!("pb{}s", self.owner_pid)
    }
    pub fn client_if(&self) -> String {
        format!("pb{}c", self.owner_pid)
    }
    /// `--link` as passed to a part.
    pub fn arg(&self) -> String {
        self.owner_pid.to_string()
    }
    pub fn parse(arg: &str) -> Result<LinkName, String> {
        arg.parse()
            .map(|owner_pid| LinkName { owner_pid })
            .map_err(|_| format!("{arg:?}: expected the pid of the run that owns the link"))
    }
}

/// What a link needs from the machine, found before anything starts: root
/// and each tool, with how to get them.
pub fn check_requirements() -> Result<(), String> {
    // Namespaces need CAP_SYS_ADMIN as well as CAP_NET_ADMIN, /run/netns
    // needs root's permissions, and the tools run as children that do not
    // inherit file capabilities: root it is.
    if !rustix::process::geteuid().is_root() {
        return Err(
            "[network] needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to create network namespaces and a veth pair: run it with sudo".into(),
        );
    }
    for (tool, package) in [
        ("ip", "iproute2"),
        ("tc", "iproute2"),
        ("iptables", "iptables"),
    ] {
        if !on_path(tool) {
            return Err(format!(
                "[network] needs `{tool}`, which is not on PATH: install it (Debian/Ubuntu: apt-get install {package})"
            ));
        }
    }
    Ok(())
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
}

/// The iptables that speaks to the kernel's own tables where both exist
/// (`iptables-legacy`: the nftables-backed one needs NFT_COMPAT), or the
/// one there is.
fn iptables() -> &'static str {
    if on_path("iptables-legacy") {
        "iptables-legacy"
    } else {
        "iptables"
    }
}

fn sh(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A built link; removed when dropped.
pub struct Link {
    pub name: LinkName,
    removed: bool,
}

impl Link {
    /// Builds the link for `network` with `sources` client addresses.
    /// Anything half-built is removed again on failure.
    pub fn build(network: &Network, sources: u32) -> anyhow::Result<Link> {
        remove_stale();
        let link = Link {
            name: LinkName {
                owner_pid: std::process::id(),
            },
            removed: false,
        };
        link.configure(network, sources)
            .context("cannot build the emulated link")?;
        Ok(link)
    }

    fn configure(&self, network: &Network, sources: u32) -> anyhow::Result<()> {
        let (s, c) = (self.name.server_ns(), self.name.client_ns());
        let (sif, cif) = (self.name.server_if(), self.name.client_if());
        sh("ip", &["netns", "add", &s])?;
        sh("ip", &["netns", "add", &c])?;
        // Made inside the namespaces: never in the host's, even briefly.
        sh(
            "ip",
            &[
                "-n", &c, "link", "add", &cif, "type", "veth", "peer", "name", &sif, "netns", &s,
            ],
        )?;
        sh(
            "ip",
            &[
                "-n",
                &s,
                "addr",
                "add",
                &format!("{SERVER_ADDR}/15"),
                "dev",
                &sif,
            ],
        )?;
        for i in 0..sources.clamp(1, 250) {
            sh(
                "ip",
                &[
                    "-n",
                    &c,
                    "addr",
                    "add",
                    &format!("{}/15", client_addr(i)),
                    "dev",
                    &cif,
                ],
            )?;
        }
        for (ns, dev) in [(&s, &sif), (&c, &cif)] {
            sh("ip", &["-n", ns, "link", "set", "lo", "up"])?;
            sh("ip", &["-n", ns, "link", "set", dev, "up"])?;
        }
        // Rate limits on each sending end: up leaves the generator's side,
        // down the server's.
        for (ns, dev, bps) in [
            (&c, &cif, network.bandwidth_up_bps),
            (&s, &sif, network.bandwidth_down_bps),
        ] {
            if let Some(bps) = bps {
                let burst = (bps / 8 / 250).max(3_200); // 4 ms of traffic, at least two packets
                sh(
                    "tc",
                    &[
                        "-n",
                        ns,
                        "qdisc",
                        "add",
                        "dev",
                        dev,
                        "root",
                        "tbf",
                        "rate",
                        &format!("{bps}bit"),
                        "burst",
                        &burst.to_string(),
                        "limit",
                        &network.queue_bytes.to_string(),
                    ],
                )?;
            }
        }
        if network.needs_stage() {
            for (chain, dir_flag, queue) in [
                ("OUTPUT", "-o", super::stage::QUEUE_UP),
                ("INPUT", "-i", super::stage::QUEUE_DOWN),
            ] {
                let queue = queue.to_string();
                let rule = |tool: &'static str| {
                    sh(
                        "ip",
                        &[
                            "netns",
                            "exec",
                            &c,
                            tool,
                            "-A",
                            chain,
                            dir_flag,
                            &cif,
                            "-j",
                            "NFQUEUE",
                            "--queue-num",
                            &queue,
                        ],
                    )
                };
                // The legacy tables first; the nftables-backed iptables
                // where a kernel has no legacy ones.
                rule(iptables()).or_else(|e| {
                    if iptables() == "iptables" {
                        Err(e)
                    } else {
                        rule("iptables")
                    }
                })?;
            }
        }
        Ok(())
    }

    /// Removes both namespaces, and with them the veth pair, rules and
    /// rate limits. Says so on stderr if it could not.
    pub fn remove(mut self) {
        self.remove_now();
    }

    fn remove_now(&mut self) {
        if std::mem::replace(&mut self.removed, true) {
            return;
        }
        for ns in [self.name.server_ns(), self.name.client_ns()] {
            if namespace_exists(&ns)
                && let Err(e) = sh("ip", &["netns", "del", &ns])
            {
                eprintln!("warning: could not remove network namespace {ns}: {e:#}");
            }
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.remove_now();
    }
}

fn namespace_exists(ns: &str) -> bool {
    Path::new("/run/netns").join(ns).exists()
}

/// The link namespaces on this machine, as `ip netns` keeps them.
pub fn namespaces() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("pb-"))
                .collect()
        })
        .unwrap_or_default()
}

/// Removes links left by runs that no longer run (killed before they
/// could clean up), saying so.
fn remove_stale() {
    for ns in namespaces() {
        let pid = ns
            .strip_prefix("pb-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok());
        // Our own pid's can only be a dead run's whose pid we now have.
        if let Some(pid) = pid
            && (pid == std::process::id() || !Path::new(&format!("/proc/{pid}")).exists())
        {
            eprintln!(
                "notice: removing network namespace {ns}, left by run {pid} that no longer runs"
            );
            let _ = sh("ip", &["netns", "del", &ns]);
        }
    }
}

/// A command that runs `program args` inside namespace `ns` (the process
/// keeps its pid: `ip netns exec` execs it).
pub fn command_in(ns: &str, program: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program);
    cmd
}

/// Times `connects` TCP handshakes to `addr` through the link: each
/// connect returns after one round trip (SYN out, SYN-ACK back). Returns
/// the times in ms, sorted.
pub fn probe_rtt(addr: SocketAddr, connects: usize) -> anyhow::Result<Vec<f64>> {
    let mut times = Vec::with_capacity(connects);
    for _ in 0..connects {
        let start = Instant::now();
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(15))
            .with_context(|| format!("the RTT probe cannot connect to {addr} through the link"))?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
        drop(stream);
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

/// TCP segments retransmitted so far in the network namespace of process
/// `pid` (this one if none): `RetransSegs` in /proc/PID/net/snmp, which
/// shows that process's namespace.
pub fn retransmitted_segments(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/net/snmp"),
        None => "/proc/self/net/snmp".to_owned(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
    let names = tcp.next()?.split_whitespace();
    let values = tcp.next()?.split_whitespace();
    names
        .zip(values)
        .find(|(n, _)| *n == "RetransSegs")
        .and_then(|(_, v)| v.parse().ok())
}

/// The delay stage process of one transport's run (see [`super::stage`]),
/// started in the generator's namespace, which this process is in.
pub struct StageProcess {
    child: tokio::process::Child,
    stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    pub pid: u32,
}

impl StageProcess {
    /// Starts `exe link-stage` for `network` and waits until it holds the
    /// queues (until then no packet crosses the link).
    pub async fn start(exe: &Path, network: &Network, seed: u64) -> anyhow::Result<StageProcess> {
        let half = network.rtt / 2;
        let mut child = tokio::process::Command::new(exe)
            .arg("link-stage")
            .args(["--delay-up", &humantime::format_duration(half).to_string()])
            .args([
                "--delay-down",
                &humantime::format_duration(network.rtt - half).to_string(),
            ])
            .args([
                "--jitter",
                &humantime::format_duration(network.jitter).to_string(),
            ])
            .args(["--loss-up", &network.loss_up_percent.to_string()])
            .args(["--loss-down", &network.loss_down_percent.to_string()])
            .args(["--seed", &seed.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start the link's delay stage")?;
        let pid = child.id().context("the delay stage has no pid")?;
        let mut stdout =
            tokio::io::BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let ready = tokio::time::timeout(Duration::from_secs(10), stdout.next_line()).await;
        match ready {
            Ok(Ok(Some(line))) if line == super::stage::READY => {
                Ok(StageProcess { child, stdout, pid })
            }
            Ok(Ok(other)) => bail!(
                "the link's delay stage did not start (it said {other:?}; see its error above)"
            ),
            Ok(Err(e)) => Err(e).context("reading the delay stage's output"),
            Err(_) => bail!("the link's delay stage did not report ready within 10 s"),
        }
    }

    /// Stops the stage and returns what it measured; none if it could not
    /// say.
    pub async fn stop(mut self) -> Option<super::stage::StageReport> {
        drop(self.child.stdin.take());
        let line = tokio::time::timeout(Duration::from_secs(5), self.stdout.next_line())
            .await
            .ok()?
            .ok()??;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.child.wait()).await;
        serde_json::from_str(&line).ok()
    }
}

/// Packets the root qdisc of `dev` in namespace `ns` dropped so far (the
/// rate limit's queue overflowing), from `tc -s qdisc show`.
pub fn qdisc_dropped(ns: &str, dev: &str) -> Option<u64> {
    let out = Command::new("tc")
        .args(["-n", ns, "-s", "qdisc", "show", "dev", dev])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // " Sent 123 bytes 4 pkt (dropped 5, overlimits 6 requeues 0)"
    let after = text.split("(dropped ").nth(1)?;
    after.split(',').next()?.trim().parse().ok()
}
