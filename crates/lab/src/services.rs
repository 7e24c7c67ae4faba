//! ClusterIP Services in the lab (`lab up --services`, then `lab check`).
//!
//! `--services` turns on `services.enabled` in the config of every node of the cluster
//! (the second cluster's node keeps it off): the agents load the eBPF load balancer under
//! their `bpf.pin_dir` and follow `<lab root>/services` (file and etcd stores) or the API
//! server (`--store kubernetes`), and the plugin registers every pod the lab adds.
//!
//! The second pod of node 1 and of node 2 are the backends: each runs `unicni lab
//! svc-serve` (a process of its own in the pod's namespace, as a real server is), which
//! answers every TCP line and every UDP datagram on port 7000 (clear of the ports the
//! `--policy` checks use) with its pod name and the address the request came from. The
//! first pod of each node is a client. The Services: `echo` (TCP), `echo-udp` (UDP),
//! `sticky` (TCP, `sessionAffinity: ClientIP`) and `drain` (TCP, the one `lab check`
//! scales down), all with both backends; on dual-stack labs also `echo6` (IPv6).
//! ClusterIPs are fixed, in the lab's service CIDR.

use super::checks::CheckResult;
use super::topology::{IpStack, Lab, LabState, PodState, POD_NAMESPACE};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};
use unicni_net::NetNs;

/// The lab's service CIDRs when `--services` (the IPv6 one on dual-stack labs only).
pub const SERVICE_CIDR: &str = "10.96.0.0/12";
pub const SERVICE_CIDR6: &str = "fd00:96::/108";
/// The backends' port (TCP and UDP).
pub const TARGET_PORT: u16 = 7000;
const ECHO: &str = "10.96.100.10";
const ECHO_UDP: &str = "10.96.100.11";
const STICKY: &str = "10.96.100.12";
const DRAIN: &str = "10.96.100.13";
const ECHO6: &str = "fd00:96::10";
/// New connections each probe makes (with 2 backends, all on one by chance: 2 in 2^19).
const TRIES: usize = 20;
/// How long the lab waits for every agent to apply a changed Service.
const APPLY_LIMIT: Duration = Duration::from_secs(5);
const TIMEOUT: Duration = Duration::from_secs(2);

pub fn dir(lab: &Lab) -> PathBuf {
    lab.root.join("services")
}

/// The backends: the second pod of nodes 1 and 2.
fn backends(st: &LabState) -> Vec<&PodState> {
    st.pods
        .iter()
        .filter(|p| (p.node == 1 || p.node == 2) && p.name.ends_with("-p2"))
        .collect()
}

/// The clients: the first pod of nodes 1 and 2 (node 1's is re-created by `lab check`:
/// a fresh ADD, so also a fresh registration).
fn clients(st: &LabState) -> Vec<&PodState> {
    st.pods
        .iter()
        .filter(|p| (p.node == 1 || p.node == 2) && p.name.ends_with("-p1"))
        .collect()
}

/// What `lab up --services` needs of the other options.
pub fn admit(nodes: u16, pods_per_node: u16) -> Result<()> {
    if nodes < 2 || pods_per_node < 2 {
        bail!(
            "--services needs --nodes 2 or more and --pods-per-node 2 or more (a client and a \
             backend pod on each of nodes 1 and 2)"
        );
    }
    Ok(())
}

/// The state of the `drain` Service's endpoints.
#[derive(Debug, Clone, PartialEq)]
enum Drain {
    All,
    Terminating(String),
    Removed(String),
}

fn service(name: &str, ip: &str, proto: &str, port: u16, affinity: bool) -> String {
    let family = if ip.contains(':') { "IPv6" } else { "IPv4" };
    let affinity = if affinity {
        "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 10800}}\n"
    } else {
        "  sessionAffinity: None\n"
    };
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {POD_NAMESPACE}}}\n\
         spec:\n  type: ClusterIP\n  clusterIP: \"{ip}\"\n  clusterIPs: [\"{ip}\"]\n  ipFamilies: [{family}]\n\
         {affinity}  selector: {{app: {name}}}\n\
         \x20 ports: [{{name: p, port: {port}, targetPort: {TARGET_PORT}, protocol: {proto}}}]\n"
    )
}

fn slice(
    lab: &Lab,
    name: &str,
    v6: bool,
    proto: &str,
    pods: &[&PodState],
    drain: &Drain,
) -> String {
    let family = if v6 { "IPv6" } else { "IPv4" };
    let mut endpoints = String::new();
    for p in pods {
        let addr = if v6 {
            match &p.ip6 {
                Some(a) => a.clone(),
                None => continue,
            }
        } else {
            p.ip.clone()
        };
        // Scaled down as the endpoint controller shows it: first terminating (not ready,
        // still serving), then gone.
        let conditions = match drain {
            Drain::Removed(x) if *x == p.name => continue,
            Drain::Terminating(x) if *x == p.name => {
                "{ready: false, serving: true, terminating: true}"
            }
            _ => "{ready: true, serving: true, terminating: false}",
        };
        endpoints.push_str(&format!(
            "- addresses: [\"{addr}\"]\n  conditions: {conditions}\n  nodeName: {node}\n  \
             targetRef: {{kind: Pod, namespace: {POD_NAMESPACE}, name: {pod}}}\n",
            node = lab.node_name(p.node),
            pod = p.name,
        ));
    }
    if endpoints.is_empty() {
        endpoints = "[]\n".into();
    } else {
        endpoints.insert(0, '\n');
    }
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: {name}-{fam}, namespace: {POD_NAMESPACE}, labels: {{kubernetes.io/service-name: {name}}}}}\n\
         addressType: {family}\nports: [{{name: p, port: {TARGET_PORT}, protocol: {proto}}}]\nendpoints: {endpoints}",
        fam = family.to_lowercase(),
    )
}

fn manifests(lab: &Lab, st: &LabState, drain: &Drain) -> String {
    let b = backends(st);
    let all = Drain::All;
    let mut docs = vec![
        service("echo", ECHO, "TCP", 80, false),
        slice(lab, "echo", false, "TCP", &b, &all),
        service("echo-udp", ECHO_UDP, "UDP", 53, false),
        slice(lab, "echo-udp", false, "UDP", &b, &all),
        service("sticky", STICKY, "TCP", 80, true),
        slice(lab, "sticky", false, "TCP", &b, &all),
        service("drain", DRAIN, "TCP", 80, false),
        slice(lab, "drain", false, "TCP", &b, drain),
    ];
    if st.ip_stack == IpStack::Dual {
        docs.push(service("echo6", ECHO6, "TCP", 80, false));
        docs.push(slice(lab, "echo6", true, "TCP", &b, &all));
    }
    docs.join("---\n")
}

fn publish(lab: &Lab, st: &LabState, drain: &Drain) -> Result<()> {
    let text = manifests(lab, st, drain);
    if lab.on_kube() {
        return lab.apply_services(&text);
    }
    Ok(unicni_fsutil::write_atomic(
        &dir(lab).join("services.yaml"),
        text.as_bytes(),
        0o644,
    )?)
}

fn syncs(lab: &Lab, st: &LabState) -> Vec<f64> {
    st.nodes
        .iter()
        .map(|n| {
            lab.agent_metric(n.index, "unicni_services_syncs_total")
                .unwrap_or(0.0)
        })
        .collect()
}

/// Publishes, then waits until every node's agent applied a table after `before`.
fn publish_applied(lab: &Lab, st: &LabState, drain: &Drain) -> Result<()> {
    let before = syncs(lab, st);
    publish(lab, st, drain)?;
    let start = Instant::now();
    loop {
        let now = syncs(lab, st);
        let behind: Vec<usize> = st
            .nodes
            .iter()
            .zip(before.iter().zip(&now))
            .filter(|(_, (b, n))| n <= b)
            .map(|(n, _)| n.index)
            .collect();
        if behind.is_empty() {
            return Ok(());
        }
        if start.elapsed() > APPLY_LIMIT {
            bail!(
                "nodes {behind:?} did not apply the changed Services within {APPLY_LIMIT:?} \
                 (unicni_services_syncs_total unchanged; see the agents' logs)"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `lab up --services`, after the pods: starts the backends' servers, publishes the
/// Services and waits until every agent applied them.
pub fn enable(lab: &Lab, st: &mut LabState) -> Result<()> {
    for p in backends(st).into_iter().cloned().collect::<Vec<_>>() {
        let pid = start_server(lab, &p)?;
        st.service_pids.push(pid);
    }
    publish_applied(lab, st, &Drain::All).context("the agents did not apply the lab's Services")?;
    eprintln!(
        "==> Services: echo {ECHO}:80, echo-udp {ECHO_UDP}:53/udp, sticky {STICKY}:80 \
         (ClientIP affinity), drain {DRAIN}:80{}; backends {}",
        if st.ip_stack == IpStack::Dual {
            format!(", echo6 [{ECHO6}]:80")
        } else {
            String::new()
        },
        backends(st)
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

fn start_server(lab: &Lab, p: &PodState) -> Result<u32> {
    let exe = std::env::current_exe().context("locate the running binary")?;
    let log = std::fs::File::create(lab.root.join(format!("svc-{}.log", p.name)))?;
    // `--root` names the lab's root in the command line: `lab down` finds it there.
    let mut child = Command::new("ip")
        .args(["netns", "exec", &p.netns])
        .arg(exe)
        .args(["lab", "svc-serve", "--name", &p.name, "--port"])
        .arg(TARGET_PORT.to_string())
        .arg("--root")
        .arg(format!("{}/", lab.root.display()))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("start the Service backend server in {}", p.netns))?;
    // From the pod's node (the pod's own loopback may be down, as no runtime set it up).
    let ns = netns(&lab.node_ns(p.node))?;
    let to = SocketAddr::new(p.ip.parse()?, TARGET_PORT);
    let start = Instant::now();
    while ns
        .run(|| TcpStream::connect_timeout(&to, Duration::from_millis(200)))?
        .is_err()
    {
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "the Service backend server in {} exited ({status}); see {}",
                p.netns,
                lab.root.join(format!("svc-{}.log", p.name)).display()
            );
        }
        // A debug binary of this size takes a while to start on a busy machine.
        if start.elapsed() > Duration::from_secs(30) {
            bail!(
                "the Service backend server in {} does not listen on {to}",
                p.netns
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(child.id())
}

/// `unicni lab svc-serve`: every TCP line and every UDP datagram on `port` is answered
/// with `<name> <source address>`; runs until killed.
pub fn serve(name: &str, port: u16) -> Result<ExitCode> {
    let tcp = TcpListener::bind(("::", port))
        .or_else(|_| TcpListener::bind(("0.0.0.0", port)))
        .with_context(|| format!("listen on TCP port {port}"))?;
    let udp = UdpSocket::bind(("::", port))
        .or_else(|_| UdpSocket::bind(("0.0.0.0", port)))
        .with_context(|| format!("listen on UDP port {port}"))?;
    let n = name.to_string();
    std::thread::spawn(move || {
        let mut b = [0u8; 512];
        while let Ok((_, from)) = udp.recv_from(&mut b) {
            let _ = udp.send_to(
                format!("{n} {}\n", from.ip().to_canonical()).as_bytes(),
                from,
            );
        }
    });
    for c in tcp.incoming() {
        let Ok(c) = c else { continue };
        let n = name.to_string();
        std::thread::spawn(move || {
            let peer = c.peer_addr().map(|a| a.ip().to_canonical().to_string());
            let mut w = match c.try_clone() {
                Ok(w) => w,
                Err(_) => return,
            };
            let peer = peer.unwrap_or_default();
            for line in BufReader::new(c).lines() {
                if line.is_err() || w.write_all(format!("{n} {peer}\n").as_bytes()).is_err() {
                    break;
                }
            }
        });
    }
    Ok(ExitCode::SUCCESS)
}

fn netns(name: &str) -> Result<NetNs> {
    Ok(NetNs::open(Path::new(&format!("/var/run/netns/{name}")))?)
}

/// One answer: the backend's pod name and the source address it saw.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    backend: String,
    peer: String,
}

fn parse(line: &str) -> Result<Answer> {
    let mut w = line.split_whitespace();
    match (w.next(), w.next()) {
        (Some(b), Some(p)) => Ok(Answer {
            backend: b.into(),
            peer: p.into(),
        }),
        _ => bail!("unexpected answer {line:?}"),
    }
}

/// A kept-open connection from a client pod.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(ns: &NetNs, to: SocketAddr) -> Result<Conn> {
        let s = ns
            .run(|| TcpStream::connect_timeout(&to, TIMEOUT))?
            .with_context(|| format!("connect to {to}"))?;
        s.set_read_timeout(Some(TIMEOUT))?;
        Ok(Conn {
            writer: s.try_clone()?,
            reader: BufReader::new(s),
        })
    }

    fn ask(&mut self) -> Result<Answer> {
        self.writer.write_all(b"?\n")?;
        let mut line = String::new();
        self.reader
            .read_line(&mut line)
            .context("read the backend's answer")?;
        parse(&line)
    }
}

fn tcp_once(ns: &NetNs, to: SocketAddr) -> Result<Answer> {
    Conn::open(ns, to)?.ask()
}

/// One datagram from a fresh socket; the answer and the address it came from.
fn udp_once(ns: &NetNs, to: SocketAddr) -> Result<(Answer, SocketAddr)> {
    let any: SocketAddr = if to.is_ipv6() {
        "[::]:0".parse()?
    } else {
        "0.0.0.0:0".parse()?
    };
    let s = ns.run(|| UdpSocket::bind(any))??;
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut b = [0u8; 512];
    let mut last = None;
    for _ in 0..3 {
        s.send_to(b"?", to)?;
        match s.recv_from(&mut b) {
            Ok((n, from)) => return Ok((parse(&String::from_utf8_lossy(&b[..n]))?, from)),
            Err(e) => last = Some(e),
        }
    }
    Err(anyhow::anyhow!(
        "no answer to 3 datagrams: {}",
        last.map(|e| e.to_string()).unwrap_or_default()
    ))
}

fn sa(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse::<IpAddr>().expect("a literal address"), port)
}

fn tally(answers: &[Answer]) -> String {
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for a in answers {
        *by.entry(&a.backend).or_default() += 1;
    }
    by.iter()
        .map(|(b, n)| format!("{b}×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn row(name: &str, from: &str, to: &str, expected: &str, r: Result<String, String>) -> CheckResult {
    let (observed, passed) = match r {
        Ok(o) => (o, true),
        Err(e) => (e, false),
    };
    CheckResult {
        name: name.into(),
        from: from.into(),
        to: to.into(),
        expected: expected.into(),
        observed,
        passed,
    }
}

/// The `lab check` rows of a lab brought up with `--services` (none otherwise).
pub fn run(lab: &Lab, st: &mut LabState) -> Vec<CheckResult> {
    if !st.services {
        return Vec::new();
    }
    let mut out = Vec::new();
    let want: Vec<String> = backends(st).iter().map(|p| p.name.clone()).collect();
    let want_text = want.join(" and ");
    for c in clients(st) {
        let from = format!("{} (node {})", c.name, c.node);
        let ns = match netns(&c.netns) {
            Ok(n) => n,
            Err(e) => {
                out.push(row(
                    "service: TCP ClusterIP",
                    &from,
                    "echo",
                    "",
                    Err(format!("{e:#}")),
                ));
                continue;
            }
        };
        // TCP: new connections spread over both nodes' backends; each sees the client.
        let answers: Result<Vec<Answer>> =
            (0..TRIES).map(|_| tcp_once(&ns, sa(ECHO, 80))).collect();
        match answers {
            Ok(a) => {
                let seen = want.iter().all(|w| a.iter().any(|x| &x.backend == w));
                out.push(row(
                    "service: TCP ClusterIP reaches backends on both nodes",
                    &from,
                    &format!("echo {ECHO}:80"),
                    &format!("answers from {want_text}"),
                    if seen { Ok(tally(&a)) } else { Err(tally(&a)) },
                ));
                let peers: Vec<&str> = a.iter().map(|x| x.peer.as_str()).collect();
                let own = peers.iter().all(|p| *p == c.ip);
                out.push(row(
                    "service: the backend sees the client pod's own address",
                    &from,
                    &format!("echo {ECHO}:80"),
                    &format!("source {}", c.ip),
                    if own {
                        Ok(format!("source {} in all {TRIES}", c.ip))
                    } else {
                        Err(format!("sources seen: {peers:?}"))
                    },
                ));
            }
            Err(e) => out.push(row(
                "service: TCP ClusterIP reaches backends on both nodes",
                &from,
                &format!("echo {ECHO}:80"),
                &format!("answers from {want_text}"),
                Err(format!("{e:#}")),
            )),
        }
        // UDP: datagrams from fresh sockets; answers come from the ClusterIP.
        let answers: Result<Vec<(Answer, SocketAddr)>> = (0..TRIES)
            .map(|_| udp_once(&ns, sa(ECHO_UDP, 53)))
            .collect();
        out.push(row(
            "service: UDP ClusterIP answers from the Service address",
            &from,
            &format!("echo-udp {ECHO_UDP}:53/udp"),
            &format!(
                "answers from {want_text}, from {ECHO_UDP}:53, source {}",
                c.ip
            ),
            match answers {
                Ok(a) => {
                    let bad_from: Vec<String> = a
                        .iter()
                        .filter(|(_, f)| *f != sa(ECHO_UDP, 53))
                        .map(|(_, f)| f.to_string())
                        .collect();
                    let bad_peer = a.iter().any(|(x, _)| x.peer != c.ip);
                    let ans: Vec<Answer> = a.iter().map(|(x, _)| x.clone()).collect();
                    let seen = want.iter().all(|w| ans.iter().any(|x| &x.backend == w));
                    if seen && bad_from.is_empty() && !bad_peer {
                        Ok(tally(&ans))
                    } else {
                        Err(format!(
                            "{}; replies from {bad_from:?}; sources {:?}",
                            tally(&ans),
                            ans.iter().map(|x| &x.peer).collect::<Vec<_>>()
                        ))
                    }
                }
                Err(e) => Err(format!("{e:#}")),
            },
        ));
        if st.ip_stack == IpStack::Dual {
            let ip6 = c.ip6.clone().unwrap_or_default();
            let answers: Result<Vec<Answer>> =
                (0..TRIES).map(|_| tcp_once(&ns, sa(ECHO6, 80))).collect();
            out.push(row(
                "service: IPv6 ClusterIP reaches backends on both nodes",
                &from,
                &format!("echo6 [{ECHO6}]:80"),
                &format!("answers from {want_text}, source {ip6}"),
                match answers {
                    Ok(a) => {
                        let seen = want.iter().all(|w| a.iter().any(|x| &x.backend == w));
                        if seen && a.iter().all(|x| x.peer == ip6) {
                            Ok(tally(&a))
                        } else {
                            Err(format!(
                                "{}; sources {:?}",
                                tally(&a),
                                a.iter().map(|x| &x.peer).collect::<Vec<_>>()
                            ))
                        }
                    }
                    Err(e) => Err(format!("{e:#}")),
                },
            ));
        }
    }
    if let Some(c) = clients(st).first().cloned() {
        let from = format!("{} (node {})", c.name, c.node);
        out.push(row(
            "service: sessionAffinity ClientIP keeps a client on one backend",
            &from,
            &format!("sticky {STICKY}:80"),
            &format!("all {TRIES} new connections to one backend"),
            affinity(c).map_err(|e| format!("{e:#}")).and_then(|a| {
                let first = &a[0].backend;
                if a.iter().all(|x| &x.backend == first) {
                    Ok(tally(&a))
                } else {
                    Err(tally(&a))
                }
            }),
        ));
        out.push(row(
            "service: a scaled-down backend gets no new connections, an established one finishes",
            &from,
            &format!("drain {DRAIN}:80"),
            "terminating: new connections avoid it, the open one still answers; removed: the same",
            scale_down(lab, st, c),
        ));
    }
    out
}

fn affinity(c: &PodState) -> Result<Vec<Answer>> {
    let ns = netns(&c.netns)?;
    (0..TRIES).map(|_| tcp_once(&ns, sa(STICKY, 80))).collect()
}

/// Opens a connection to `drain`, marks its backend terminating, then removes it; the
/// connection must keep answering from that backend, new connections must avoid it. The
/// Service is restored afterwards (so that `lab check` can run again).
fn scale_down(lab: &Lab, st: &LabState, c: &PodState) -> Result<String, String> {
    let result = (|| -> Result<String> {
        let ns = netns(&c.netns)?;
        let mut open = Conn::open(&ns, sa(DRAIN, 80))?;
        let x = open.ask()?.backend;
        let mut notes = vec![format!("open connection on {x}")];
        for (step, drain) in [
            ("terminating", Drain::Terminating(x.clone())),
            ("removed", Drain::Removed(x.clone())),
        ] {
            publish_applied(lab, st, &drain)?;
            let fresh: Vec<Answer> = (0..TRIES)
                .map(|_| tcp_once(&ns, sa(DRAIN, 80)))
                .collect::<Result<_>>()
                .with_context(|| format!("a new connection with {x} {step}"))?;
            if fresh.iter().any(|a| a.backend == x) {
                bail!(
                    "{x} {step}: new connections still reach it ({})",
                    tally(&fresh)
                );
            }
            let again = open
                .ask()
                .with_context(|| format!("the open connection after {x} became {step}"))?;
            if again.backend != x {
                bail!(
                    "{x} {step}: the open connection now answers from {}",
                    again.backend
                );
            }
            notes.push(format!(
                "{step}: new {}, open one still on {x}",
                tally(&fresh)
            ));
        }
        Ok(notes.join("; "))
    })();
    let restored = publish_applied(lab, st, &Drain::All);
    match (result, restored) {
        (Ok(o), Ok(())) => Ok(o),
        (Ok(_), Err(e)) => Err(format!("restoring the drain Service: {e:#}")),
        (Err(e), _) => Err(format!("{e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::topology::{Mode, StoreChoice};
    use super::*;

    fn pod(node: usize, j: usize) -> PodState {
        PodState {
            name: format!("ulab-n{node}-p{j}"),
            node,
            netns: format!("ulab-n{node}-p{j}"),
            ip: format!("10.250.{node}.{}", j + 1),
            ip6: Some(format!("fd00:10:250:{node}::{}", j + 1)),
            container_id: String::new(),
            annotations: Default::default(),
            owner_kind: None,
        }
    }

    #[test]
    fn manifests_load_as_services_and_slices_with_the_drained_backend_marked() {
        let lab = Lab::new(Some("unit")).unwrap();
        let mut st = LabState::new(Mode::Vxlan, IpStack::Dual, StoreChoice::File, 10);
        st.pods = vec![pod(1, 1), pod(1, 2), pod(2, 1), pod(2, 2)];
        let text = manifests(&lab, &st, &Drain::Terminating("ulab-n2-p2".into()));
        let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds.iter().filter(|k| **k == "Service").count(), 5);
        assert_eq!(kinds.iter().filter(|k| **k == "EndpointSlice").count(), 5);
        let slice_of = |name: &str| {
            docs.iter()
                .find(|d| d["metadata"]["name"].as_str() == Some(name))
                .unwrap()
                .clone()
        };
        let drain = slice_of("drain-ipv4");
        let eps = drain["endpoints"].as_sequence().unwrap();
        assert_eq!(eps.len(), 2);
        assert_eq!(eps[1]["addresses"][0].as_str(), Some("10.250.2.3"));
        assert_eq!(eps[1]["conditions"]["terminating"].as_bool(), Some(true));
        assert_eq!(eps[1]["conditions"]["ready"].as_bool(), Some(false));
        assert_eq!(eps[0]["conditions"]["ready"].as_bool(), Some(true));
        let six = slice_of("echo6-ipv6");
        assert_eq!(six["addressType"].as_str(), Some("IPv6"));
        assert_eq!(
            six["endpoints"][0]["addresses"][0].as_str(),
            Some("fd00:10:250:1::3")
        );
        let sticky = slice_of("sticky");
        assert_eq!(sticky["spec"]["sessionAffinity"].as_str(), Some("ClientIP"));
        let text = manifests(&lab, &st, &Drain::Removed("ulab-n2-p2".into()));
        let drain = serde_yaml::Deserializer::from_str(&text)
            .map(|d| <serde_yaml::Value as serde::Deserialize>::deserialize(d).unwrap())
            .find(|d| d["metadata"]["name"].as_str() == Some("drain-ipv4"))
            .unwrap();
        let eps = drain["endpoints"].as_sequence().unwrap();
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0]["addresses"][0].as_str(), Some("10.250.1.3"));
    }
}
