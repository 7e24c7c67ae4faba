//! NetworkPolicy in the lab (`lab up --policy`, then `lab check`).
//!
//! `--policy` turns on `policy.enabled` in the config of every node of the cluster (the
//! second cluster's node keeps it off), from the start and for nodes `lab add-node` adds:
//! the agents watch `<lab root>/policies` and pin their policy datapath under their
//! `bpf.pin_dir`, `<lab root>/bpf/<node>` on the lab's own bpffs ([`Lab::pin_dir`]: one per
//! node, as the nodes share a kernel).
//! The lab writes the Namespace and Pod objects of its pods there (`00-cluster.yaml`, the
//! pods' current addresses and nodes, as the API server would serve them), and `lab check`
//! writes each upstream recipe as `policy.yaml` in turn, waits until every node's agent
//! reports it applied (`<node>/run/policy.json`), and probes every pair the recipe must let
//! through or drop with real TCP and UDP, within a node and across nodes.
//!
//! Roles (the Kubernetes namespace and labels the manifests give the lab's pods):
//! node 1's first two pods are `web` and `db` in namespace `shop`, node 2's are `client`
//! and `probe` in namespace `lab` (labelled `purpose: test`); every pod has container
//! ports `http` (8080/TCP) and `dns` (53/UDP). Other pods are `app: other` in `lab`.

use super::checks::CheckResult;
use super::topology::{Backend, Lab, LabState, Mode, PodState};
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use unicni_net::NetNs;

/// How long a probe waits for its connection (or echo) before calling it dropped.
const TIMEOUT: Duration = Duration::from_millis(1000);
/// How long the lab waits for every agent to report a policy change applied.
const APPLY_LIMIT: Duration = Duration::from_secs(5);

pub fn dir(lab: &Lab) -> PathBuf {
    lab.root.join("policies")
}

/// Whether the running lab was brought up with `--policy`.
pub fn enabled(st: &LabState) -> bool {
    st.policy
}

fn status_file(lab: &Lab, i: usize) -> PathBuf {
    lab.node_dir(i).join("run/policy.json")
}

/// Publishes the cluster to the agents of a lab brought up with `--policy` (their configs
/// already carry `[policy]`): writes the cluster's manifests and waits until every agent
/// reports them applied (exclusive ENI: also until the pods' ENIs carry the programs).
pub fn enable(lab: &Lab, st: &LabState) -> Result<()> {
    write_cluster(lab, st)?;
    if lab.on_kube() {
        eprintln!("==> NetworkPolicy: agents watch the API server (policy.enabled = true)");
    } else {
        eprintln!(
            "==> NetworkPolicy: agents watch {} (policy.enabled = true)",
            dir(lab).display()
        );
    }
    wait_applied(lab, st, &[], APPLY_LIMIT)
        .map(|_| ())
        .context("the agents did not apply the lab's manifests")?;
    if st.mode == Mode::ExclusiveEni {
        wait_pod_enis(lab, st)?;
    }
    Ok(())
}

/// Exclusive ENI: the pods' ENIs sit in the pods' namespaces, out of the policy engine's
/// sight, and get the programs from the terway agent's pass over its pods; waits until every node pinned one attachment per
/// pod (`<pin>/policy/links/pod_<veth>_{ingress,egress}`).
fn wait_pod_enis(lab: &Lab, st: &LabState) -> Result<()> {
    let limit = Instant::now() + Duration::from_secs(20);
    for n in &st.nodes {
        let want = 2 * st.pods.iter().filter(|p| p.node == n.index).count();
        let links = lab.pin_dir(n.index).join("policy/links");
        loop {
            let have = std::fs::read_dir(&links)
                .map(|d| {
                    d.flatten()
                        .filter(|e| e.file_name().to_string_lossy().starts_with("pod_"))
                        .count()
                })
                .unwrap_or(0);
            if have >= want {
                break;
            }
            if Instant::now() > limit {
                bail!(
                    "node {}: {have} of {want} NetworkPolicy links on its pods' ENIs under {}",
                    n.index,
                    links.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Web,
    Db,
    Client,
    Probe,
    Other,
}

impl Role {
    pub(super) fn of(p: &PodState) -> Role {
        let first = p.name.ends_with("-p1");
        let second = p.name.ends_with("-p2");
        match (p.node, first, second) {
            (1, true, _) => Role::Web,
            (1, _, true) => Role::Db,
            (2, true, _) => Role::Client,
            (2, _, true) => Role::Probe,
            _ => Role::Other,
        }
    }

    pub(super) fn namespace(self) -> &'static str {
        match self {
            Role::Web | Role::Db => "shop",
            _ => "lab",
        }
    }

    pub(super) fn app(self) -> &'static str {
        match self {
            Role::Web => "web",
            Role::Db => "db",
            Role::Client => "client",
            Role::Probe => "probe",
            Role::Other => "other",
        }
    }
}

/// `00-cluster.yaml`: the namespaces and the pods with their current addresses. On the
/// Kubernetes store the API has them already (the lab wrote them as the kubelets would).
fn write_cluster(lab: &Lab, st: &LabState) -> Result<()> {
    if lab.on_kube() {
        return Ok(());
    }
    let mut y = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {team: shop}}\n---\n\
         apiVersion: v1\nkind: Namespace\nmetadata: {name: lab, labels: {team: lab, purpose: test}}\n",
    );
    for p in &st.pods {
        let role = Role::of(p);
        let ips: Vec<String> = std::iter::once(&p.ip)
            .chain(p.ip6.iter())
            .map(|ip| format!("{{ip: \"{ip}\"}}"))
            .collect();
        y.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {}, namespace: {}, labels: {{app: {}}}}}\n\
             spec:\n  nodeName: {}\n  containers:\n  - name: c\n    ports: [{{name: http, containerPort: 8080}}, {{name: dns, containerPort: 53, protocol: UDP}}]\n\
             status: {{podIPs: [{}]}}\n",
            p.name,
            role.namespace(),
            role.app(),
            lab.node_name(p.node),
            ips.join(", ")
        ));
    }
    write(lab, "00-cluster.yaml", &y)
}

/// Publishes the lab's policy file `name`: a manifest in [`dir`], or on the Kubernetes
/// store NetworkPolicy objects in the API.
pub(super) fn write(lab: &Lab, name: &str, text: &str) -> Result<()> {
    if lab.on_kube() {
        return lab.apply_policies(name, text);
    }
    Ok(unicni_fsutil::write_atomic(
        &dir(lab).join(name),
        text.as_bytes(),
        0o644,
    )?)
}

/// Waits up to `limit` until every node's agent reports exactly `policies`
/// (`namespace/name`) applied; returns how long that took.
pub(super) fn wait_applied(
    lab: &Lab,
    st: &LabState,
    policies: &[&str],
    limit: Duration,
) -> Result<Duration> {
    let want: BTreeSet<String> = policies.iter().map(|s| s.to_string()).collect();
    let start = Instant::now();
    loop {
        let behind: Vec<usize> = st
            .nodes
            .iter()
            .map(|n| n.index)
            .filter(|&i| applied(&status_file(lab, i)).as_ref() != Some(&want))
            .collect();
        if behind.is_empty() {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            bail!(
                "nodes {behind:?} did not report {want:?} applied within {limit:?} \
                 (see {} and the agents' logs)",
                status_file(lab, behind[0]).display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn applied(path: &Path) -> Option<BTreeSet<String>> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    Some(
        v["policies"]
            .as_array()?
            .iter()
            .filter_map(|p| p.as_str().map(String::from))
            .collect(),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Proto {
    Tcp,
    Udp,
}

/// One end of a probe: a label, its namespace, and (as a destination) its address.
#[derive(Debug, Clone)]
struct End {
    label: String,
    ns: String,
    ip: String,
}

#[derive(Debug, Clone)]
struct Probe {
    recipe: &'static str,
    from: End,
    to: End,
    proto: Proto,
    port: u16,
    expect: bool,
}

/// Servers for every (namespace, protocol, port) a batch of probes needs: TCP greets
/// with "hello" and echoes, UDP echoes; they stop when dropped.
struct Servers {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Servers {
    fn start(wanted: &BTreeSet<(String, Proto, u16)>) -> Result<Servers> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (ns, proto, port) in wanted {
            let netns = NetNs::open(Path::new(&format!("/var/run/netns/{ns}")))?;
            let (proto, port, stop) = (*proto, *port, stop.clone());
            let (tx, rx) = std::sync::mpsc::channel();
            threads.push(std::thread::spawn(move || {
                let _ = netns.run(|| serve(proto, port, &stop, &tx));
            }));
            rx.recv_timeout(Duration::from_secs(2))
                .context("start a probe server")?
                .map_err(|e| anyhow::anyhow!("listen on {port} in {ns}: {e}"))?;
        }
        Ok(Servers { stop, threads })
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn serve(
    proto: Proto,
    port: u16,
    stop: &AtomicBool,
    ready: &std::sync::mpsc::Sender<Result<(), String>>,
) {
    match proto {
        Proto::Tcp => {
            let l = match TcpListener::bind(("::", port))
                .or_else(|_| TcpListener::bind(("0.0.0.0", port)))
            {
                Ok(l) => l,
                Err(e) => return drop(ready.send(Err(e.to_string()))),
            };
            let _ = l.set_nonblocking(true);
            let _ = ready.send(Ok(()));
            while !stop.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut s, _)) => {
                        std::thread::spawn(move || {
                            let _ = s.set_nonblocking(false);
                            let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
                            let _ = s.write_all(b"hello");
                            let mut b = [0u8; 256];
                            while let Ok(n) = s.read(&mut b) {
                                if n == 0 || s.write_all(&b[..n]).is_err() {
                                    break;
                                }
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        }
        Proto::Udp => {
            let s = match UdpSocket::bind(("::", port))
                .or_else(|_| UdpSocket::bind(("0.0.0.0", port)))
            {
                Ok(s) => s,
                Err(e) => return drop(ready.send(Err(e.to_string()))),
            };
            let _ = s.set_read_timeout(Some(Duration::from_millis(20)));
            let _ = ready.send(Ok(()));
            let mut b = [0u8; 256];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, from)) = s.recv_from(&mut b) {
                    let _ = s.send_to(&b[..n], from);
                }
            }
        }
    }
}

/// One attempt from inside the source namespace: TCP passes when the greeting arrives
/// (the reply direction passed too), UDP when the datagram comes back.
fn attempt(p: &Probe, timeout: Duration) -> Result<(), String> {
    let ip: IpAddr = p.to.ip.parse().map_err(|e| format!("{}: {e}", p.to.ip))?;
    let target = SocketAddr::new(ip, p.port);
    let ns = NetNs::open(Path::new(&format!("/var/run/netns/{}", p.from.ns)))
        .map_err(|e| e.to_string())?;
    ns.run(|| match p.proto {
        Proto::Tcp => {
            let mut s = TcpStream::connect_timeout(&target, timeout)
                .map_err(|e| format!("connect: {}", short(&e)))?;
            s.set_read_timeout(Some(timeout))
                .map_err(|e| e.to_string())?;
            let mut b = [0u8; 5];
            s.read_exact(&mut b)
                .map_err(|e| format!("connected, no greeting: {}", short(&e)))
        }
        Proto::Udp => {
            let any: IpAddr = if ip.is_ipv6() {
                "::".parse().expect("address")
            } else {
                "0.0.0.0".parse().expect("address")
            };
            let s = UdpSocket::bind((any, 0)).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(timeout / 2))
                .map_err(|e| e.to_string())?;
            let mut b = [0u8; 16];
            // The first datagram of a flow may wait for neighbour resolution: two tries.
            for _ in 0..2 {
                s.send_to(b"ping", target)
                    .map_err(|e| format!("send: {}", short(&e)))?;
                if let Ok((n, _)) = s.recv_from(&mut b) {
                    if &b[..n] == b"ping" {
                        return Ok(());
                    }
                }
            }
            Err("no echo".into())
        }
    })
    .map_err(|e| e.to_string())?
}

fn short(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Runs a batch at once (servers first, then every probe on its own thread).
fn check_all(probes: &[Probe]) -> Vec<CheckResult> {
    let wanted: BTreeSet<(String, Proto, u16)> = probes
        .iter()
        .map(|p| (p.to.ns.clone(), p.proto, p.port))
        .collect();
    let servers = match Servers::start(&wanted) {
        Ok(s) => s,
        Err(e) => {
            return vec![failed(
                probes.first().map_or("policy", |p| p.recipe),
                &format!("{e:#}"),
            )]
        }
    };
    let handles: Vec<_> = probes
        .iter()
        .cloned()
        .map(|p| {
            std::thread::spawn(move || {
                let r = attempt(&p, TIMEOUT);
                (p, r)
            })
        })
        .collect();
    let results = handles
        .into_iter()
        .map(|h| {
            let (p, r) = h.join().expect("probe thread");
            let proto = match p.proto {
                Proto::Tcp => "TCP",
                Proto::Udp => "UDP",
            };
            CheckResult {
                name: format!("policy: {}", p.recipe),
                from: p.from.label.clone(),
                to: format!("{} {proto}/{}", p.to.label, p.port),
                expected: if p.expect { "passes" } else { "dropped" }.into(),
                observed: match &r {
                    Ok(()) => "passed".into(),
                    Err(e) => format!("dropped ({e})"),
                },
                passed: r.is_ok() == p.expect,
            }
        })
        .collect();
    drop(servers);
    results
}

fn failed(name: &str, why: &str) -> CheckResult {
    CheckResult {
        name: format!("policy: {name}"),
        from: "-".into(),
        to: "-".into(),
        expected: "runs".into(),
        observed: why.into(),
        passed: false,
    }
}

fn policy(name: &str, namespace: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{spec}"
    )
}

/// The lab's ends by role, plus the node hosts and the outside host.
struct Ends {
    web: PodState,
    db: PodState,
    client: PodState,
    probe: PodState,
    n1: End,
    n2: End,
    outside: End,
    v6: bool,
}

impl Ends {
    fn new(lab: &Lab, st: &LabState) -> Option<Ends> {
        let find = |r: Role| st.pods.iter().find(|p| Role::of(p) == r).cloned();
        let node = |i: usize| End {
            label: format!("node-{i} host"),
            ns: lab.node_ns(i),
            ip: lab.node_ip(i),
        };
        let (web, db, client, probe) = (
            find(Role::Web)?,
            find(Role::Db)?,
            find(Role::Client)?,
            find(Role::Probe)?,
        );
        let v6 = [&web, &db, &client, &probe].iter().all(|p| p.ip6.is_some());
        Some(Ends {
            web,
            db,
            client,
            probe,
            n1: node(1),
            n2: node(2),
            outside: End {
                label: format!("outside ({})", lab.outside_ip()),
                ns: lab.vpc_ns(),
                ip: lab.outside_ip(),
            },
            v6,
        })
    }

    fn end(p: &PodState, role: Role, v6: bool) -> End {
        End {
            label: format!(
                "{} {} ({})",
                role.app(),
                p.name,
                if v6 {
                    p.ip6.as_deref().unwrap_or("")
                } else {
                    &p.ip
                }
            ),
            ns: p.netns.clone(),
            ip: if v6 {
                p.ip6.clone().unwrap_or_default()
            } else {
                p.ip.clone()
            },
        }
    }

    /// An end by name: a role, `node1`, `node2` or `outside`.
    fn get(&self, name: &str, v6: bool) -> End {
        match name {
            "web" => Self::end(&self.web, Role::Web, v6),
            "db" => Self::end(&self.db, Role::Db, v6),
            "client" => Self::end(&self.client, Role::Client, v6),
            "probe" => Self::end(&self.probe, Role::Probe, v6),
            "node1" => self.n1.clone(),
            "node2" => self.n2.clone(),
            _ => self.outside.clone(),
        }
    }
}

/// A recipe: its policy file and its probes `(from, to, proto, port, passes)`; the IPv6
/// probes run when every role pod has an IPv6 address.
struct Recipe {
    name: &'static str,
    policies: Vec<&'static str>,
    yaml: String,
    probes: Vec<(&'static str, &'static str, Proto, u16, bool)>,
    probes6: Vec<(&'static str, &'static str, Proto, u16, bool)>,
}

fn recipes(e: &Ends) -> Vec<Recipe> {
    use Proto::{Tcp, Udp};
    let client_ip = &e.client.ip;
    let mut except6 = String::new();
    if let Some(c6) = &e.client.ip6 {
        except6 = format!("    - ipBlock: {{cidr: \"::/0\", except: [\"{c6}/128\"]}}\n");
    }
    vec![
        Recipe {
            name: "deny all ingress",
            policies: vec!["shop/default-deny-ingress"],
            yaml: policy(
                "default-deny-ingress",
                "shop",
                "  podSelector: {}\n  policyTypes: [Ingress]\n",
            ),
            probes: vec![
                ("client", "web", Tcp, 8080, false),
                ("probe", "db", Tcp, 5432, false),
                ("db", "web", Tcp, 8080, false),
                ("client", "db", Udp, 53, false),
                ("node2", "web", Tcp, 8080, false),
                ("web", "client", Tcp, 8080, true),
                ("db", "probe", Udp, 53, true),
                ("web", "outside", Tcp, 80, true),
                ("client", "probe", Tcp, 8080, true),
                ("node1", "web", Tcp, 8080, true),
                ("node1", "db", Udp, 53, true),
            ],
            probes6: vec![
                ("client", "web", Tcp, 8080, false),
                ("web", "client", Tcp, 8080, true),
            ],
        },
        Recipe {
            name: "allow same namespace",
            policies: vec!["shop/allow-same-namespace"],
            yaml: policy(
                "allow-same-namespace",
                "shop",
                "  podSelector: {}\n  ingress:\n  - from: [{podSelector: {}}]\n",
            ),
            probes: vec![
                ("db", "web", Tcp, 8080, true),
                ("web", "db", Udp, 53, true),
                ("client", "web", Tcp, 8080, false),
                ("probe", "db", Tcp, 5432, false),
            ],
            probes6: vec![("db", "web", Tcp, 8080, true), ("probe", "web", Tcp, 8080, false)],
        },
        Recipe {
            name: "allow from a labelled namespace",
            policies: vec!["shop/web-from-test-namespaces"],
            yaml: policy(
                "web-from-test-namespaces",
                "shop",
                "  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {purpose: test}}}]\n",
            ),
            probes: vec![
                ("client", "web", Tcp, 8080, true),
                ("probe", "web", Udp, 53, true),
                ("db", "web", Tcp, 8080, false),
                ("node2", "web", Tcp, 8080, false),
                ("client", "db", Tcp, 5432, true),
            ],
            probes6: vec![("probe", "web", Tcp, 8080, true), ("db", "web", Tcp, 8080, false)],
        },
        Recipe {
            name: "ipBlock with except",
            policies: vec!["shop/web-all-but-client"],
            yaml: policy(
                "web-all-but-client",
                "shop",
                &format!(
                    "  podSelector: {{matchLabels: {{app: web}}}}\n  ingress:\n  - from:\n    - ipBlock: {{cidr: 0.0.0.0/0, except: [{client_ip}/32]}}\n{except6}"
                ),
            ),
            probes: vec![
                ("probe", "web", Tcp, 8080, true),
                ("db", "web", Udp, 53, true),
                ("client", "web", Tcp, 8080, false),
                ("client", "web", Udp, 53, false),
            ],
            probes6: vec![("probe", "web", Tcp, 8080, true), ("client", "web", Tcp, 8080, false)],
        },
        Recipe {
            name: "named port",
            policies: vec!["shop/web-http-from-lab"],
            yaml: policy(
                "web-http-from-lab",
                "shop",
                "  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {team: lab}}}]\n    ports: [{port: http}, {port: dns, protocol: UDP}]\n",
            ),
            probes: vec![
                ("client", "web", Tcp, 8080, true),
                ("probe", "web", Udp, 53, true),
                ("client", "web", Tcp, 8081, false),
                ("probe", "web", Tcp, 53, false),
                ("db", "web", Tcp, 8080, false),
            ],
            probes6: vec![("client", "web", Tcp, 8080, true), ("client", "web", Tcp, 8081, false)],
        },
        Recipe {
            name: "endPort range",
            policies: vec!["shop/db-port-range"],
            yaml: policy(
                "db-port-range",
                "shop",
                "  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - ports: [{port: 9000, endPort: 9005, protocol: TCP}]\n",
            ),
            probes: vec![
                ("client", "db", Tcp, 9000, true),
                ("web", "db", Tcp, 9005, true),
                ("client", "db", Tcp, 9006, false),
                ("probe", "db", Tcp, 8999, false),
                ("client", "db", Udp, 9000, false),
            ],
            probes6: vec![("probe", "db", Tcp, 9003, true), ("probe", "db", Tcp, 9006, false)],
        },
        Recipe {
            name: "egress deny with DNS allowed",
            policies: vec!["lab/default-deny-egress-allow-dns"],
            yaml: policy(
                "default-deny-egress-allow-dns",
                "lab",
                "  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n  - ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]\n",
            ),
            probes: vec![
                ("client", "outside", Udp, 53, true),
                ("probe", "outside", Tcp, 53, true),
                ("client", "web", Udp, 53, true),
                ("client", "outside", Tcp, 80, false),
                ("client", "web", Tcp, 8080, false),
                ("probe", "client", Tcp, 8080, false),
                ("web", "client", Tcp, 8080, true),
                ("db", "probe", Udp, 9000, true),
            ],
            probes6: vec![("client", "web", Tcp, 8080, false), ("web", "probe", Tcp, 8080, true)],
        },
    ]
}

fn probes_of(r: &Recipe, e: &Ends) -> Vec<Probe> {
    let mut out = Vec::new();
    for (v6, list) in [(false, &r.probes), (true, &r.probes6)] {
        if v6 && !e.v6 {
            continue;
        }
        for &(from, to, proto, port, expect) in list {
            out.push(Probe {
                recipe: r.name,
                from: e.get(from, v6),
                to: e.get(to, v6),
                proto,
                port,
                expect,
            });
        }
    }
    out
}

/// The policy part of `lab check` (nothing unless the lab was brought up with `--policy`).
pub fn run(lab: &Lab, st: &mut LabState) -> Vec<CheckResult> {
    if !enabled(st) {
        return Vec::new();
    }
    let Some(ends) = Ends::new(lab, st) else {
        return vec![failed(
            "matrix",
            "needs at least 2 nodes with 2 pods each (web, db on node 1; client, probe on node 2)",
        )];
    };
    let mut out = Vec::new();
    // The pods' addresses may have changed (the checks re-create a pod).
    if let Err(e) = write_cluster(lab, st)
        .and_then(|_| write(lab, "policy.yaml", "# no policy\n"))
        .and_then(|_| wait_applied(lab, st, &[], APPLY_LIMIT))
    {
        return vec![failed("manifests", &format!("{e:#}"))];
    }

    // A change takes effect within a second: deny-all on shop, then away again, timed on
    // the wire (a cross-node pair).
    let sentinel = Probe {
        recipe: "a change applies within 1 s",
        from: ends.get("client", false),
        to: ends.get("web", false),
        proto: Proto::Tcp,
        port: 8080,
        expect: false,
    };
    for (yaml, want_pass) in [
        (
            policy(
                "default-deny-ingress",
                "shop",
                "  podSelector: {}\n  policyTypes: [Ingress]\n",
            ),
            false,
        ),
        ("# no policy\n".to_string(), true),
    ] {
        out.push(time_change(lab, &sentinel, &yaml, want_pass));
    }

    for r in recipes(&ends) {
        if let Err(e) = write(lab, "policy.yaml", &r.yaml)
            .and_then(|_| wait_applied(lab, st, &r.policies, APPLY_LIMIT))
        {
            out.push(failed(r.name, &format!("{e:#}")));
            continue;
        }
        out.extend(check_all(&probes_of(&r, &ends)));
    }

    out.push(restart_under_traffic(lab, st, &ends));

    // Policies gone: the pairs connect again.
    let _ = write(lab, "policy.yaml", "# no policy\n");
    if let Err(e) = wait_applied(lab, st, &[], APPLY_LIMIT) {
        out.push(failed("removed", &format!("{e:#}")));
    }
    let back = Recipe {
        name: "policies removed",
        policies: vec![],
        yaml: String::new(),
        probes: vec![
            ("client", "web", Proto::Tcp, 8080, true),
            ("client", "outside", Proto::Tcp, 80, true),
        ],
        probes6: vec![],
    };
    out.extend(check_all(&probes_of(&back, &ends)));
    out
}

/// Writes `yaml` as the policy and measures until `probe` gives `want_pass`.
fn time_change(lab: &Lab, probe: &Probe, yaml: &str, want_pass: bool) -> CheckResult {
    let wanted = BTreeSet::from([(probe.to.ns.clone(), probe.proto, probe.port)]);
    let servers = Servers::start(&wanted);
    let start = Instant::now();
    let written = write(lab, "policy.yaml", yaml);
    let mut took = None;
    while written.is_ok() && servers.is_ok() && start.elapsed() < Duration::from_secs(3) {
        if attempt(probe, Duration::from_millis(100)).is_ok() == want_pass {
            took = Some(start.elapsed());
            break;
        }
    }
    drop(servers);
    let what = if want_pass {
        "allowed again"
    } else {
        "dropped"
    };
    CheckResult {
        name: format!("policy: {}", probe.recipe),
        from: probe.from.label.clone(),
        to: format!("{} TCP/{}", probe.to.label, probe.port),
        expected: format!("{what} within 1 s of the manifest change"),
        observed: match (&written, took) {
            (Err(e), _) => format!("{e:#}"),
            (_, Some(t)) => format!("{what} after {} ms", t.as_millis()),
            (_, None) => format!("not {what} after 3 s"),
        },
        passed: took.is_some_and(|t| t < Duration::from_secs(1)),
    }
}

/// An allowed connection (client on node 2 to web on node 1) exchanging a byte every
/// 10 ms while node 1's agent is stopped and started again and the policy is then changed
/// to deny new connections: it must not lose a round trip, and a new connection must be
/// dropped.
fn restart_under_traffic(lab: &Lab, st: &mut LabState, e: &Ends) -> CheckResult {
    let name = "established connection across an agent restart and a policy update";
    let from = e.get("client", false);
    let to = e.get("web", false);
    let result = (|| -> Result<String> {
        write(
            lab,
            "policy.yaml",
            &policy(
                "web-from-test-namespaces",
                "shop",
                "  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {purpose: test}}}]\n",
            ),
        )?;
        wait_applied(lab, st, &["shop/web-from-test-namespaces"], APPLY_LIMIT)?;
        let wanted = BTreeSet::from([(to.ns.clone(), Proto::Tcp, 8080)]);
        let _servers = Servers::start(&wanted)?;
        let stream = Stream::open(&from.ns, SocketAddr::new(to.ip.parse()?, 8080))?;
        stream.flows(20)?;
        // Node 1 (web's) agent: stopped, traffic goes on, started again.
        let node = st
            .nodes
            .iter_mut()
            .find(|n| n.index == 1)
            .context("node 1")?;
        if let Some(pid) = node.agent_pid.take() {
            Lab::stop_agent(pid);
        }
        stream.flows(20)?;
        // Without the agent the pinned programs go on enforcing: db is not let in.
        let outsider = Probe {
            recipe: name,
            from: e.get("db", false),
            to: to.clone(),
            proto: Proto::Tcp,
            port: 8080,
            expect: false,
        };
        if attempt(&outsider, TIMEOUT).is_ok() {
            bail!("with node 1's agent stopped, db reached web: nothing enforced");
        }
        let _ = std::fs::remove_file(lab.subnet_file(1));
        let pid = lab.start_agent(1)?;
        node.agent_pid = Some(pid);
        let ready = lab.wait_ready(1, pid, st.backend, Duration::from_secs(30))?;
        if st.backend == Backend::Flannel {
            node.subnet = ready;
        }
        lab.save_state(st)?;
        stream.flows(20)?;
        // The update: nothing may enter web any more.
        write(
            lab,
            "policy.yaml",
            &policy(
                "default-deny-ingress",
                "shop",
                "  podSelector: {}\n  policyTypes: [Ingress]\n",
            ),
        )?;
        wait_applied(lab, st, &["shop/default-deny-ingress"], APPLY_LIMIT)?;
        let fresh = Probe {
            recipe: name,
            from: from.clone(),
            to: to.clone(),
            proto: Proto::Tcp,
            port: 8080,
            expect: false,
        };
        if attempt(&fresh, TIMEOUT).is_ok() {
            bail!("a new connection still passes after the update");
        }
        stream.flows(20)?;
        let (ok, failed, last) = stream.finish();
        if failed > 0 {
            bail!("{failed} of {} round trips failed ({last})", ok + failed);
        }
        Ok(format!(
            "{ok} round trips, none lost; enforced while the agent was down; new connections \
             dropped after the update"
        ))
    })();
    CheckResult {
        name: format!("policy: {name}"),
        from: from.label,
        to: format!("{} TCP/8080", to.label),
        expected: "no round trip lost".into(),
        observed: match &result {
            Ok(s) => s.clone(),
            Err(e) => format!("{e:#}"),
        },
        passed: result.is_ok(),
    }
}

/// A long-lived TCP connection exchanging one byte every 10 ms on its own thread.
struct Stream {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<String>>,
}

impl Stream {
    fn open(ns: &str, to: SocketAddr) -> Result<Stream> {
        let netns = NetNs::open(Path::new(&format!("/var/run/netns/{ns}")))?;
        let mut conn = netns.run(|| TcpStream::connect_timeout(&to, Duration::from_secs(2)))??;
        conn.set_read_timeout(Some(Duration::from_secs(1)))?;
        let mut hello = [0u8; 5];
        conn.read_exact(&mut hello)
            .context("the long-lived connection's greeting")?;
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (s, o, f) = (stop.clone(), ok.clone(), failed.clone());
        let thread = std::thread::spawn(move || {
            let mut last = String::new();
            let mut b = [0u8; 1];
            while !s.load(Ordering::Relaxed) {
                match conn.write_all(b"x").and_then(|_| conn.read_exact(&mut b)) {
                    Ok(()) => o.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        last = e.to_string();
                        f.fetch_add(1, Ordering::Relaxed)
                    }
                };
                std::thread::sleep(Duration::from_millis(10));
            }
            last
        });
        Ok(Stream {
            stop,
            ok,
            failed,
            thread: Some(thread),
        })
    }

    /// Waits for `n` more round trips.
    fn flows(&self, n: u64) -> Result<()> {
        let start = self.ok.load(Ordering::Relaxed);
        let t = Instant::now();
        while self.ok.load(Ordering::Relaxed) < start + n {
            if t.elapsed() > Duration::from_secs(5) {
                bail!(
                    "the connection stalled ({} round trips failed)",
                    self.failed.load(Ordering::Relaxed)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    fn finish(mut self) -> (u64, u64, String) {
        self.stop.store(true, Ordering::Relaxed);
        let last = self
            .thread
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default();
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            last,
        )
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn every_recipe_drops_something_and_lets_something_through() {
        let pod = |name: &str, node: usize| PodState {
            name: name.into(),
            node,
            netns: format!("ns-{name}"),
            ip: format!("10.0.{node}.{}", name.len()),
            ip6: Some(format!("fd00::{node}:{}", name.len())),
            container_id: String::new(),
            annotations: Default::default(),
            owner_kind: None,
        };
        let end = |s: &str| End {
            label: s.into(),
            ns: s.into(),
            ip: "192.168.0.1".into(),
        };
        let e = Ends {
            web: pod("n1-p1", 1),
            db: pod("n1-p2", 1),
            client: pod("n2-p1", 2),
            probe: pod("n2-p2", 2),
            n1: end("n1"),
            n2: end("n2"),
            outside: end("out"),
            v6: true,
        };
        for r in recipes(&e) {
            let p = probes_of(&r, &e);
            assert!(p.iter().any(|x| x.expect), "{}", r.name);
            assert!(p.iter().any(|x| !x.expect), "{}", r.name);
            assert!(
                p.iter().any(|x| x.to.ip.contains(':')),
                "{}: IPv6 probes",
                r.name
            );
            // The agent's manifest loader reads exactly the policies the lab waits for.
            let mut want = r.policies.clone();
            want.sort();
            assert_eq!(policy_names(&r.yaml), want, "{}", r.name);
        }
    }

    /// The `namespace/name` of every policy in `yaml`, as the agents' loader reads them
    /// (sorted).
    pub(crate) fn policy_names(yaml: &str) -> Vec<String> {
        let snapshot =
            unicni_policy::load_str("policy.yaml", yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        snapshot
            .policies
            .iter()
            .map(|p| format!("{}/{}", p.namespace, p.name))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    }
}
