//! The scale run behind `bench/kube` (and its smoke test in crates/store/tests): the
//! emulated API server loaded with Nodes and their Pods, and one agent's watch paths per
//! node in this process, built from the very functions the agents call
//! (`unicni_store::kube::node_cache`, flannel's lease view; `pods_of_node`, terway's pod
//! view), each agent with its own client. Between the agents and the API server sits a
//! byte-counting TCP relay: the emulator has no byte counter of its own.

use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use unicni_kube_emulator::Emulator;
use unicni_store::kube::{node_cache, pods_of_node};

pub struct Opts {
    pub agents: usize,
    pub pods_per_node: usize,
    /// The steady-state window.
    pub window: Duration,
    /// Nodes added one after the other to time their propagation.
    pub adds: usize,
    /// How often an idle watch gets a bookmark (the emulator's default is 1 s).
    pub bookmark: Duration,
    /// Progress lines on stderr.
    pub progress: bool,
}

/// Requests by verb; a GET of a collection is a LIST, with `watch=true` a WATCH.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Verbs {
    pub list: u64,
    pub watch: u64,
    pub get: u64,
    pub write: u64,
}

impl Verbs {
    pub fn of(requests: &[String]) -> Verbs {
        let mut v = Verbs::default();
        for r in requests {
            let mut parts = r.split_whitespace();
            let method = parts.next().unwrap_or("");
            let target = parts.next().unwrap_or("");
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            let collection = path.ends_with("/nodes") || path.ends_with("/pods");
            match method {
                "GET" if query.split('&').any(|kv| kv == "watch=true") => v.watch += 1,
                "GET" if collection => v.list += 1,
                "GET" => v.get += 1,
                _ => v.write += 1,
            }
        }
        v
    }
}

#[derive(Debug)]
pub struct Results {
    pub agents: usize,
    pub nodes: usize,
    pub pods: usize,
    /// Caches that synced (two per agent), and how long the slowest took.
    pub synced: usize,
    pub sync_time: Duration,
    pub startup: Verbs,
    pub window: Duration,
    pub steady: Verbs,
    /// Bytes the API server sent to / received from the agents during the window.
    pub bytes_down: u64,
    pub bytes_up: u64,
    /// Resident memory (KiB): before the agents start, once they synced, after the window.
    pub rss_before: u64,
    pub rss_synced: u64,
    pub rss_after: u64,
    /// Per added Node, per agent: how long until its Node cache held it (`None`: not
    /// within 30 s).
    pub seen: Vec<Option<Duration>>,
    pub adds: Verbs,
    pub threads: u64,
}

fn node(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": node_name(i),
            "labels": {"kubernetes.io/hostname": node_name(i), "kubernetes.io/os": "linux",
                "node.kubernetes.io/instance-type": "ecs.g7.xlarge",
                "topology.kubernetes.io/zone": format!("cn-hangzhou-{}", ["h", "i", "j"][i % 3])},
            "annotations": {"unicni.io/public-ip": underlay(i), "unicni.io/backend-mode": "vxlan",
                "unicni.io/vtep-mac": format!("02:00:00:00:{:02x}:{:02x}", i / 256 % 256, i % 256)}},
        "spec": {"podCIDR": format!("10.{}.{}.0/24", 64 + i / 256, i % 256),
            "providerID": format!("alicloud://cn-hangzhou.i-{i:012x}")},
        "status": {
            "addresses": [{"type": "InternalIP", "address": underlay(i)},
                          {"type": "Hostname", "address": node_name(i)}],
            "capacity": {"cpu": "4", "memory": "16009232Ki", "pods": "110"},
            "allocatable": {"cpu": "3900m", "memory": "14011232Ki", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                "lastHeartbeatTime": "2025-01-01T00:00:00Z",
                "lastTransitionTime": "2025-01-01T00:00:00Z",
                "message": "kubelet is posting ready status"}],
            "nodeInfo": {"kubeletVersion": "v1.33.0", "containerRuntimeVersion": "containerd://1.7.0",
                "kernelVersion": "6.18.0", "osImage": "Alibaba Cloud Linux 3", "architecture": "amd64",
                "operatingSystem": "linux", "machineID": "", "systemUUID": "", "bootID": "",
                "kubeProxyVersion": ""}}})
}

fn pod(i: usize, j: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("app-{i}-{j}"), "namespace": format!("ns-{}", i % 20),
            "labels": {"app": format!("app-{}", j % 5), "pod-template-hash": "5d4f8b9c7"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": format!("app-{}-5d4f8b9c7", j % 5), "uid": "00000000-0000-4000-8000-000000000001",
                "controller": true}]},
        "spec": {"nodeName": node_name(i), "containers": [{"name": "app",
            "image": "registry.example/app:1.0", "ports": [{"containerPort": 8080, "protocol": "TCP"}]}]},
        "status": {"phase": "Running", "hostIP": underlay(i),
            "podIP": format!("10.{}.{}.{}", 64 + i / 256, i % 256, j + 2),
            "podIPs": [{"ip": format!("10.{}.{}.{}", 64 + i / 256, i % 256, j + 2)}]}})
}

pub fn node_name(i: usize) -> String {
    format!("node-{i:05}")
}

fn underlay(i: usize) -> String {
    format!("192.168.{}.{}", i / 250, i % 250 + 2)
}

/// Resident memory of this process, KiB, and its thread count.
pub fn rss_and_threads() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("Threads:"))
}

#[derive(Default)]
struct Bytes {
    down: AtomicU64,
    up: AtomicU64,
}

/// Relays every connection to `target`, counting bytes each way.
async fn relay(listener: tokio::net::TcpListener, target: SocketAddr, bytes: Arc<Bytes>) {
    async fn pump(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        count: &AtomicU64,
    ) {
        let mut buf = vec![0u8; 8192];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    count.fetch_add(n as u64, Ordering::Relaxed);
                    if to.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown().await;
    }
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let bytes = bytes.clone();
        tokio::spawn(async move {
            let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                return;
            };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::join!(pump(cr, sw, &bytes.up), pump(sr, cw, &bytes.down));
        });
    }
}

/// Runs the whole measurement on the current tokio runtime.
pub async fn run(o: &Opts) -> Results {
    let say = |s: String| {
        if o.progress {
            eprintln!("{s}");
        }
    };
    let api = Emulator::new();
    api.bookmark_every(Some(o.bookmark));
    say(format!(
        "loading {} Nodes and {} Pods into the emulated API server",
        o.agents,
        o.agents * o.pods_per_node
    ));
    for i in 0..o.agents {
        api.put("/api/v1/nodes", node(i));
        for j in 0..o.pods_per_node {
            api.put("/api/v1/pods", pod(i, j));
        }
    }
    // The emulator's open watches scan its event history on every wake-up; the loading
    // events are history no watch started after this needs.
    api.compact();
    let url = api.start();
    let target: SocketAddr = url
        .trim_start_matches("http://")
        .parse()
        .expect("emulator address");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the relay");
    let relay_url = format!("http://{}", listener.local_addr().expect("relay address"));
    let bytes = Arc::new(Bytes::default());
    tokio::spawn(relay(listener, target, bytes.clone()));

    let (rss_before, _) = rss_and_threads();
    say(format!(
        "starting {} agents' watch paths (a Node cache and a Pod cache each)",
        o.agents
    ));
    let started = Instant::now();
    let mut agents = Vec::with_capacity(o.agents);
    for i in 0..o.agents {
        let config = kube::Config::new(relay_url.parse().expect("relay URL"));
        let client = kube::Client::try_from(config).expect("a kube client");
        agents.push((
            node_cache(client.clone()),
            pods_of_node(client, &node_name(i)),
        ));
    }
    let sync_limit = Duration::from_secs(60 + o.agents as u64 / 2);
    let mut last_said = Instant::now();
    let synced = loop {
        let n = agents
            .iter()
            .map(|(n, p)| n.is_synced() as usize + p.is_synced() as usize)
            .sum::<usize>();
        if n == 2 * o.agents || started.elapsed() > sync_limit {
            break n;
        }
        if last_said.elapsed() > Duration::from_secs(5) {
            say(format!(
                "  {n}/{} caches synced after {:.0} s",
                2 * o.agents,
                started.elapsed().as_secs_f64()
            ));
            last_said = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let sync_time = started.elapsed();
    say(format!(
        "  {synced}/{} caches synced in {:.1} s",
        2 * o.agents,
        sync_time.as_secs_f64()
    ));
    if synced < 2 * o.agents {
        if let Some((n, p)) = agents
            .iter()
            .find(|(n, p)| !n.is_synced() || !p.is_synced())
        {
            say(format!(
                "  not synced: {} / {}",
                n.not_synced(),
                p.not_synced()
            ));
        }
    }
    // Let the last watches open before the window starts.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let startup = Verbs::of(&api.requests());
    let (rss_synced, _) = rss_and_threads();

    say(format!("steady state for {} s", o.window.as_secs()));
    let mark = api.requests().len();
    let (down0, up0) = (
        bytes.down.load(Ordering::Relaxed),
        bytes.up.load(Ordering::Relaxed),
    );
    let window_start = Instant::now();
    while window_start.elapsed() < o.window {
        let left = o.window.saturating_sub(window_start.elapsed());
        tokio::time::sleep(left.min(Duration::from_secs(10))).await;
        if !left.is_zero() && o.window > Duration::from_secs(10) {
            say(format!(
                "  {:.0} s, {} requests so far",
                window_start.elapsed().as_secs_f64(),
                api.requests().len() - mark
            ));
        }
    }
    let window = window_start.elapsed();
    let steady = Verbs::of(&api.requests()[mark..]);
    let bytes_down = bytes.down.load(Ordering::Relaxed) - down0;
    let bytes_up = bytes.up.load(Ordering::Relaxed) - up0;
    let (rss_after, threads) = rss_and_threads();

    say(format!("adding {} Nodes, one at a time", o.adds));
    let mark = api.requests().len();
    let mut seen = Vec::new();
    for k in 0..o.adds {
        let name = node_name(o.agents + k);
        let waits: Vec<_> = agents
            .iter()
            .map(|(nodes, _)| {
                let nodes = nodes.clone();
                let name = name.clone();
                tokio::spawn(async move {
                    let found = nodes
                        .wait_for(Duration::from_secs(30), |c| c.get("", &name))
                        .await;
                    (found.is_some(), Instant::now())
                })
            })
            .collect();
        // Every waiter has looked once and is parked on the cache's changes.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t0 = Instant::now();
        api.put("/api/v1/nodes", node(o.agents + k));
        for w in waits {
            let (found, at) = w.await.expect("waiter");
            seen.push(found.then(|| at.saturating_duration_since(t0)));
        }
        say(format!(
            "  {name}: seen by {} caches",
            seen.iter()
                .rev()
                .take(o.agents)
                .filter(|s| s.is_some())
                .count()
        ));
    }
    let adds = Verbs::of(&api.requests()[mark..]);
    drop(agents);
    Results {
        agents: o.agents,
        nodes: o.agents,
        pods: o.agents * o.pods_per_node,
        synced,
        sync_time,
        startup,
        window,
        steady,
        bytes_down,
        bytes_up,
        rss_before,
        rss_synced,
        rss_after,
        seen,
        adds,
        threads,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The results as a table (markdown), as the README quotes them.
pub fn table(r: &Results) -> String {
    let n = r.agents.max(1) as f64;
    let minutes = r.window.as_secs_f64() / 60.0;
    let per = |v: u64| v as f64 / n / minutes;
    let mut seen: Vec<Duration> = r.seen.iter().flatten().copied().collect();
    seen.sort();
    let missed = r.seen.iter().filter(|s| s.is_none()).count();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut t = String::new();
    t.push_str(&format!(
        "{} agents (a Node cache and a Pod cache by spec.nodeName each), {} Nodes, {} Pods; \
         steady state over {:.0} s\n\n",
        r.agents,
        r.nodes,
        r.pods,
        r.window.as_secs_f64()
    ));
    t.push_str("| per agent, steady state | per minute |\n|---|---|\n");
    t.push_str(&format!("| LIST | {:.2} |\n", per(r.steady.list)));
    t.push_str(&format!(
        "| WATCH (re)started | {:.2} |\n",
        per(r.steady.watch)
    ));
    t.push_str(&format!("| GET | {:.2} |\n", per(r.steady.get)));
    t.push_str(&format!(
        "| PATCH/PUT/POST/DELETE | {:.2} |\n",
        per(r.steady.write)
    ));
    t.push_str(&format!(
        "| bytes from the API server (bookmarks) | {:.0} |\n",
        per(r.bytes_down)
    ));
    t.push_str(&format!(
        "| bytes to the API server | {:.0} |\n",
        per(r.bytes_up)
    ));
    t.push_str(
        "\nkube's watcher ends each watch after 290 s (timeoutSeconds) and resumes it from the \
         last version: in the long run 2 WATCH per agent per 290 s (0.41 per minute), no LIST. \
         Bookmarks come as often as --bookmark-ms says (the emulator's default 1 s; a real API \
         server sends about one a minute), which is most of the bytes above.\n",
    );
    t.push_str(&format!(
        "\n| memory | KiB |\n|---|---|\n| RSS before the agents | {} |\n| RSS once synced | {} |\n\
         | RSS after the window | {} |\n| per agent (after − before) / agents | {:.0} |\n",
        r.rss_before,
        r.rss_synced,
        r.rss_after,
        r.rss_after.saturating_sub(r.rss_before) as f64 / n
    ));
    t.push_str(&format!(
        "\nstartup: {}/{} caches synced in {:.1} s with {} LIST ({:.2} per agent) and {} WATCH; \
         {} threads in the process (the emulator serves each connection on a thread)\n",
        r.synced,
        2 * r.agents,
        r.sync_time.as_secs_f64(),
        r.startup.list,
        r.startup.list as f64 / n,
        r.startup.watch,
        r.threads
    ));
    t.push_str(&format!(
        "\n| a new Node seen by every Node cache | ms |\n|---|---|\n| p50 | {:.0} |\n| p99 | {:.0} |\n\
         | max | {:.0} |\n| samples (adds × agents) | {} |\n| not seen within 30 s | {} |\n\
         | requests during the adds (LIST/GET/write) | {}/{}/{} |\n",
        ms(percentile(&seen, 0.5)),
        ms(percentile(&seen, 0.99)),
        ms(seen.last().copied().unwrap_or_default()),
        r.seen.len(),
        missed,
        r.adds.list,
        r.adds.get,
        r.adds.write
    ));
    t
}
