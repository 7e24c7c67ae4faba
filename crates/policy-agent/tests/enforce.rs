//! Root-only: NetworkPolicy enforced by the engine on real traffic, for pods of both
//! backends' shapes (flannel: bridge ports; terway: routed veths), IPv4 and IPv6. The
//! engine runs in the node namespace and watches a manifest directory, as in the lab.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use unicni_policy::{evaluate, load_str, Protocol};

/// Builds probes by endpoint name: a pod name, `ext` (the outside host's first address),
/// `ext3` (its second address, as source) or `node` (as source).
struct Probes<'a> {
    c: &'a Cluster,
    list: Vec<Probe>,
    recipe: &'static str,
}

impl<'a> Probes<'a> {
    fn new(c: &'a Cluster, recipe: &'static str) -> Self {
        Probes {
            c,
            list: Vec::new(),
            recipe,
        }
    }

    fn source(&self, from: &str, v6: bool) -> (String, Option<IpAddr>) {
        match from {
            // Bound explicitly: with two addresses the kernel's source choice is not ours.
            "ext" => (
                self.c.ext.clone(),
                Some(if v6 { EXT_V6 } else { EXT_V4 }.parse().unwrap()),
            ),
            "ext3" => (
                self.c.ext.clone(),
                Some(if v6 { EXT2_V6 } else { EXT2_V4 }.parse().unwrap()),
            ),
            "node" => (self.c.node.clone(), None),
            pod => (self.c.pod(pod).netns.clone(), None),
        }
    }

    fn target(&self, to: &str, v6: bool) -> IpAddr {
        match to {
            "ext" => if v6 { EXT_V6 } else { EXT_V4 }.parse().unwrap(),
            pod => {
                let p = self.c.pod(pod);
                if v6 {
                    p.v6
                } else {
                    p.v4
                }
            }
        }
    }

    fn add(&mut self, from: &str, to: &str, proto: Proto, port: u16, v6: bool, expect: bool) {
        let (ns, bind) = self.source(from, v6);
        self.list.push(Probe {
            from: ns,
            bind,
            to: self.target(to, v6),
            proto,
            port,
            expect,
            label: format!(
                "[{}] {from} -> {to}{}",
                self.recipe,
                if v6 { " (v6)" } else { "" }
            ),
        });
    }

    /// A probe per flow in `flows` (separated by white space), each expected to connect
    /// or not. A flow is `from>to:port`, TCP over IPv4 unless prefixed `udp:`, `tcp6:` or
    /// `udp6:`.
    fn flows(&mut self, flows: &str, expect: bool) -> &mut Self {
        for flow in flows.split_whitespace() {
            let (kind, rest) = match flow.split_once(':') {
                Some((k, r)) if !k.contains('>') => (k, r),
                _ => ("tcp", flow),
            };
            let (proto, v6) = match kind {
                "tcp" => (Proto::Tcp, false),
                "tcp6" => (Proto::Tcp, true),
                "udp" => (Proto::Udp, false),
                "udp6" => (Proto::Udp, true),
                _ => panic!("flow {flow:?}: unknown kind {kind:?}"),
            };
            let want = || format!("flow {flow:?}: want from>to:port");
            let (ends, port) = rest
                .rsplit_once(':')
                .unwrap_or_else(|| panic!("{}", want()));
            let (from, to) = ends.split_once('>').unwrap_or_else(|| panic!("{}", want()));
            let port = port.parse().unwrap_or_else(|_| panic!("{}", want()));
            self.add(from, to, proto, port, v6, expect);
        }
        self
    }
    fn allow(&mut self, flows: &str) -> &mut Self {
        self.flows(flows, true)
    }
    fn deny(&mut self, flows: &str) -> &mut Self {
        self.flows(flows, false)
    }

    /// The expectations must agree with the reference semantics (`evaluate`) for every
    /// flow it decides (the node's traffic is the datapath's rule, not the API's).
    fn agree_with_reference(&self, manifests: &str) {
        let snap = load_str("recipe.yaml", manifests).expect("recipe manifests");
        for p in &self.list {
            if p.from == self.c.node {
                continue;
            }
            let src: IpAddr = match p.bind {
                Some(b) => b,
                None if p.from == self.c.ext => if p.to.is_ipv6() { EXT_V6 } else { EXT_V4 }
                    .parse()
                    .unwrap(),
                None => {
                    let pod = self.c.pods.iter().find(|x| x.netns == p.from).unwrap();
                    if p.to.is_ipv6() {
                        pod.v6
                    } else {
                        pod.v4
                    }
                }
            };
            let proto = match p.proto {
                Proto::Tcp => Protocol::Tcp,
                Proto::Udp => Protocol::Udp,
            };
            let v = evaluate(&snap, src, p.to, proto, p.port);
            assert_eq!(
                v.is_allowed(),
                p.expect,
                "{}: the test's expectation disagrees with the reference ({v:?})",
                p.label
            );
        }
    }
}

const TIMEOUT: Duration = Duration::from_millis(1200);

fn policy(name: &str, namespace: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{spec}"
    )
}

/// Writes `yaml` as the manifest `file` and waits until the engine has applied it and
/// holds `policies` policies.
fn apply(c: &Cluster, engine: &EngineRunner, file: &str, yaml: &str, policies: u64) {
    let before = engine.syncs();
    c.write(file, yaml);
    engine.wait_applied(before, policies);
}

/// Every probe's outcome is the one it expects (each wrong one is listed).
fn assert_all(probes: &[Probe]) {
    let wrong = check(probes, TIMEOUT);
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// Runs `f` in the node namespace on the pinned policy datapath.
fn with_datapath<T: Send + 'static>(
    c: &Cluster,
    f: impl FnOnce(unicni_bpf::PolicyDatapath) -> T + Send + 'static,
) -> T {
    let pin = c.pin_dir.clone();
    c.in_node(move || f(unicni_bpf::PolicyDatapath::open(&pin).unwrap()))
}

/// The upstream NetworkPolicy recipes, one at a time, each with the pairs it must let
/// through and the pairs it must drop.
#[test]
fn upstream_recipes_pass_what_they_allow_and_drop_the_rest() {
    if !require_root() {
        return;
    }
    let c = Cluster::new("rc");
    let engine = c.start_engine();
    assert_eq!(engine.status.attached_veths.load(Ordering::Relaxed), 4);

    // Without policies everything connects.
    let mut p = Probes::new(&c, "none");
    p.allow("client>web:8080 web>db:5432 ext>probe:80 tcp6:probe>client:8080 udp:db>ext:53");
    assert_all(&p.list);

    struct Recipe {
        name: &'static str,
        yaml: String,
        allow: &'static str,
        deny: &'static str,
    }
    let recipes = vec![
        Recipe {
            name: "deny all ingress",
            yaml: policy("default-deny-ingress", "shop", "  podSelector: {}\n  policyTypes: [Ingress]\n"),
            // Egress is free and the replies come back in; the node (node>...) reaches its
            // pods whatever the policies say.
            allow: "web>client:8080 db>ext:80 udp:web>ext:53 tcp6:db>probe:8080 client>probe:8080 node>web:8080 node>db:5432 tcp6:node>web:8080 udp:node>db:53",
            deny: "client>web:8080 client>db:5432 probe>web:80 ext>web:8080 ext>db:5432 web>db:5432 udp:db>web:53 tcp6:client>web:8080 udp6:probe>db:9000",
        },
        Recipe {
            name: "allow same namespace",
            yaml: policy(
                "allow-same-namespace",
                "shop",
                "  podSelector: {}\n  ingress:\n  - from: [{podSelector: {}}]\n",
            ),
            allow: "web>db:5432 db>web:8080 tcp6:db>web:8080 udp:web>db:9000",
            deny: "client>web:8080 ext>db:5432 udp:probe>db:9000 tcp6:client>db:5432",
        },
        Recipe {
            name: "allow from a labelled namespace",
            yaml: policy(
                "web-from-test-namespaces",
                "shop",
                "  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {purpose: test}}}]\n",
            ),
            // db is not selected.
            allow: "client>web:8080 probe>web:80 tcp6:probe>web:8080 udp:client>web:53 client>db:5432",
            deny: "db>web:8080 ext>web:8080 tcp6:db>web:8080",
        },
        Recipe {
            name: "ipBlock with except",
            yaml: policy(
                "web-from-outside",
                "shop",
                "  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from:\n    - ipBlock: {cidr: 10.90.0.0/24, except: [10.90.0.3/32]}\n    - ipBlock: {cidr: \"fd90::/64\", except: [\"fd90::3/128\"]}\n",
            ),
            allow: "ext>web:8080 udp:ext>web:53 tcp6:ext>web:8080",
            deny: "ext3>web:8080 tcp6:ext3>web:8080 client>web:8080 db>web:8080",
        },
        Recipe {
            name: "named port",
            yaml: policy(
                "web-http-and-dns-from-lab",
                "shop",
                "  podSelector: {matchLabels: {app: web}}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {team: lab}}}]\n    ports: [{port: http}, {port: dns, protocol: UDP}]\n",
            ),
            allow: "client>web:8080 tcp6:probe>web:8080 udp:client>web:53",
            deny: "client>web:8081 client>web:53 udp:probe>web:9000 db>web:8080",
        },
        Recipe {
            name: "endPort range",
            yaml: policy(
                "db-port-range",
                "shop",
                "  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - ports: [{port: 9000, endPort: 9005, protocol: TCP}]\n",
            ),
            allow: "client>db:9000 client>db:9005 ext>db:9005 tcp6:probe>db:9005",
            deny: "client>db:9006 client>db:8999 tcp6:web>db:9006 udp:client>db:9000 web>db:5432",
        },
        Recipe {
            name: "egress deny with DNS allowed",
            yaml: policy(
                "default-deny-egress-allow-dns",
                "lab",
                "  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n  - ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]\n",
            ),
            // Ingress into lab is free (the last three); the pods' replies leave on conntrack.
            allow: "udp:client>ext:53 client>ext:53 udp6:probe>ext:53 udp:probe>web:53 web>client:8080 ext>probe:8080 tcp6:db>client:8080",
            deny: "client>ext:80 client>web:8080 probe>client:8080 tcp6:client>db:5432 udp:client>db:9000",
        },
    ];

    let cluster = c.cluster_manifests();
    for r in &recipes {
        let s0 = c.stats();
        apply(&c, &engine, "policy.yaml", &r.yaml, 1);
        let mut p = Probes::new(&c, r.name);
        p.allow(r.allow).deny(r.deny);
        p.agree_with_reference(&format!("{cluster}---\n{}", r.yaml));
        assert_all(&p.list);
        let s1 = c.stats();
        let denied = p.list.iter().filter(|x| !x.expect).count() as u64;
        assert!(
            s1.dropped() >= s0.dropped() + denied,
            "[{}] every denied attempt is counted: {s0:?} -> {s1:?}",
            r.name
        );
    }

    // Policies gone: everything connects again.
    let before = engine.syncs();
    c.remove("policy.yaml");
    engine.wait_applied(before, 0);
    let mut p = Probes::new(&c, "removed");
    p.allow("client>ext:80 client>web:8080 ext3>web:8080 tcp6:web>db:9006");
    assert_all(&p.list);
    let rules = with_datapath(&c, |d| d.rules().unwrap().len());
    assert_eq!(rules, 0, "no rule left behind");
}

/// How long after a manifest change connections follow it.
fn until(probe: &Probe, want: bool, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        let p = probe.clone();
        let ok = std::thread::spawn(move || {
            enter(&p.from);
            attempt(&p, Duration::from_millis(100)).is_ok()
        })
        .join()
        .unwrap();
        if ok == want {
            return Some(start.elapsed());
        }
    }
    None
}

#[test]
fn a_policy_change_applies_within_a_second_and_new_pods_are_covered() {
    if !require_root() {
        return;
    }
    let c = Cluster::new("ch");
    let engine = c.start_engine();
    let mut p = Probes::new(&c, "change");
    p.allow("client>web:8080");
    let probe = p.list[0].clone();
    assert!(check(&p.list, TIMEOUT).is_empty());

    let deny = policy(
        "deny",
        "shop",
        "  podSelector: {}\n  policyTypes: [Ingress]\n",
    );
    c.write("policy.yaml", &deny);
    let took = until(&probe, false, Duration::from_secs(3)).expect("deny takes effect");
    eprintln!("deny took effect after {took:?}");
    assert!(took < Duration::from_secs(1), "deny after {took:?}");

    c.remove("policy.yaml");
    let took = until(&probe, true, Duration::from_secs(3)).expect("allow takes effect");
    eprintln!("allow took effect after {took:?}");
    assert!(took < Duration::from_secs(1), "allow after {took:?}");

    // A pod created while the engine runs: its veth gets the programs at once (netlink
    // notification), and its manifest isolates it.
    c.write("policy.yaml", &deny);
    let late = Netns::with_prefix("upach-late-");
    let ns = late.name.clone();
    ip_n(&ns, "link set lo up");
    let attached_before = engine.status.attached_veths.load(Ordering::Relaxed);
    ip_n(
        &c.node,
        &format!("link add uc000000000ff type veth peer name eth0 netns {ns}"),
    );
    ip_n(&c.node, "link set uc000000000ff master br0 up");
    ip_n(&ns, "addr add 10.88.0.99/24 dev eth0");
    ip_n(&ns, "link set eth0 up");
    let start = Instant::now();
    while engine.status.attached_veths.load(Ordering::Relaxed) <= attached_before {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "new veth not attached within 1 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!("new veth attached after {:?}", start.elapsed());
    let late_pod = "---\napiVersion: v1\nkind: Pod\nmetadata: {name: late, namespace: shop, labels: {app: web}}\nspec: {nodeName: n1, containers: [{name: c}]}\nstatus: {podIP: 10.88.0.99}\n";
    apply(&c, &engine, "late.yaml", late_pod, 1);
    // client -> late: dropped by late's ingress (shop denies all), counted as such.
    let into_late = Probe {
        from: c.pod("client").netns.clone(),
        bind: None,
        to: "10.88.0.99".parse().unwrap(),
        proto: Proto::Tcp,
        port: 1,
        expect: false,
        label: "client -> late".into(),
    };
    let s0 = c.stats();
    let _ = std::thread::spawn(move || {
        enter(&into_late.from);
        attempt(&into_late, Duration::from_millis(300))
    })
    .join();
    let s1 = c.stats();
    assert!(
        s1.dropped_ingress > s0.dropped_ingress,
        "the late pod is isolated: {s0:?} -> {s1:?}"
    );
}

/// One long-lived connection from `from` to `to`:`port`, exchanging a byte every few
/// milliseconds on its own thread; counts round trips and failures.
struct Stream {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<String>>,
}

impl Stream {
    fn open(from: &str, to: SocketAddr) -> Stream {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (s, o, f, from) = (stop.clone(), ok.clone(), failed.clone(), from.to_string());
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            enter(&from);
            let mut c = match std::net::TcpStream::connect_timeout(&to, Duration::from_secs(2)) {
                Ok(c) => c,
                Err(e) => {
                    tx.send(false).unwrap();
                    return format!("connect: {e}");
                }
            };
            c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            let mut hello = [0u8; 5];
            c.read_exact(&mut hello).unwrap();
            tx.send(true).unwrap();
            let mut last = String::new();
            let mut b = [0u8; 1];
            while !s.load(Ordering::Relaxed) {
                let r = c.write_all(b"x").and_then(|_| c.read_exact(&mut b));
                match r {
                    Ok(()) => {
                        o.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        f.fetch_add(1, Ordering::Relaxed);
                        last = e.to_string();
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            last
        });
        assert!(rx.recv().unwrap(), "the long-lived connection opens");
        Stream {
            stop,
            ok,
            failed,
            thread: Some(thread),
        }
    }

    fn round_trips(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Waits for `n` more round trips (fails after 3 s).
    fn flows(&self, n: u64) {
        let start = self.round_trips();
        let t = Instant::now();
        while self.round_trips() < start + n {
            assert!(
                t.elapsed() < Duration::from_secs(3),
                "the connection stalled ({} failures)",
                self.failed.load(Ordering::Relaxed)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn finish(mut self) -> (u64, String) {
        self.stop.store(true, Ordering::Relaxed);
        let last = self.thread.take().unwrap().join().unwrap();
        (self.failed.load(Ordering::Relaxed), last)
    }
}

#[test]
fn established_connections_survive_an_engine_restart_and_a_policy_update() {
    if !require_root() {
        return;
    }
    let c = Cluster::new("es");
    let engine = c.start_engine();
    // client may reach web; web is isolated for ingress and egress, the lab pods for egress.
    let allow = format!(
        "{}---\n{}",
        policy(
            "web",
            "shop",
            "  podSelector: {matchLabels: {app: web}}\n  policyTypes: [Ingress, Egress]\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {team: lab}}}]\n",
        ),
        policy(
            "lab-egress",
            "lab",
            "  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n  - to: [{namespaceSelector: {matchLabels: {team: shop}}}]\n",
        )
    );
    apply(&c, &engine, "policy.yaml", &allow, 2);
    let web = c.pod("web");
    let v4 = Stream::open(&c.pod("client").netns, SocketAddr::new(web.v4, 8080));
    let v6 = Stream::open(&c.pod("probe").netns, SocketAddr::new(web.v6, 8080));
    v4.flows(20);
    v6.flows(20);

    // The agent goes away and comes back: the pinned programs keep enforcing meanwhile.
    drop(engine);
    v4.flows(20);
    v6.flows(20);
    let mut p = Probes::new(&c, "no engine");
    p.allow("client>web:8081").deny("db>web:8080");
    assert!(
        check(&p.list, TIMEOUT).is_empty(),
        "rules stay without the engine"
    );
    let ct_before = with_datapath(&c, |d| d.conntrack_entries().unwrap());
    let engine = c.start_engine();
    v4.flows(20);
    v6.flows(20);

    // An update that no longer allows the lab into web: new connections are dropped, the
    // established ones keep going in both directions.
    let deny = policy(
        "web",
        "shop",
        "  podSelector: {matchLabels: {app: web}}\n  policyTypes: [Ingress, Egress]\n",
    );
    apply(&c, &engine, "policy.yaml", &deny, 1);
    let mut p = Probes::new(&c, "after update");
    p.deny("client>web:8080 tcp6:probe>web:8080");
    assert_all(&p.list);
    v4.flows(50);
    v6.flows(50);
    let ct_after = with_datapath(&c, |d| d.conntrack_entries().unwrap());
    assert!(
        ct_after >= 4 && ct_before >= 4,
        "conntrack is never flushed: {ct_before} -> {ct_after}"
    );
    let (f4, e4) = v4.finish();
    let (f6, e6) = v6.finish();
    assert_eq!((f4, f6), (0, 0), "no round trip failed: {e4} / {e6}");
    drop(engine);
}

/// A pod's traffic to a Service address is judged on the translated packet, against the
/// backend the host picked: at the backend's veth when it is local, at the uplink when it
/// is not; replies (reverse-translated, from the Service address) come back.
#[test]
fn service_traffic_is_judged_after_translation_to_its_backend() {
    if !require_root() {
        return;
    }
    let c = Cluster::new("sv");
    // kube-proxy's part, by hand: three Service addresses DNATed by the node.
    let script = "table ip upolsvc {\n chain pre {\n  type nat hook prerouting priority dstnat; policy accept;\n  \
                  ip daddr 10.96.0.10 tcp dport 80 dnat to 10.89.0.12:5432\n  \
                  ip daddr 10.96.0.11 tcp dport 80 dnat to 10.89.0.14:8080\n  \
                  ip daddr 10.96.0.12 tcp dport 80 dnat to 10.90.0.2:80\n }\n}\n";
    let mut nft = std::process::Command::new("ip")
        .args(["netns", "exec", &c.node, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("nft");
    nft.stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    assert!(nft.wait().unwrap().success(), "nft DNAT rules");
    let engine = c.start_engine_with_services(vec!["10.96.0.0/12".parse().unwrap()]);
    assert!(
        engine.status.attached_uplinks.load(Ordering::Relaxed) >= 1,
        "the uplink to the outside host carries the programs"
    );
    let vip = |last: u8| -> IpAddr { format!("10.96.0.{last}").parse().unwrap() };
    let probe = |from: &str, to: IpAddr, port: u16, expect: bool, label: &str| Probe {
        from: c.pod(from).netns.clone(),
        bind: None,
        to,
        proto: Proto::Tcp,
        port,
        expect,
        label: label.into(),
    };
    // Without policies every Service answers.
    let all = vec![
        probe("client", vip(10), 80, true, "client -> svc(db)"),
        probe("client", vip(11), 80, true, "client -> svc(probe)"),
        probe("client", vip(12), 80, true, "client -> svc(outside)"),
    ];
    assert_all(&all);

    // client may only talk to db on 5432, so only the Service whose backend is db works.
    let yaml = policy(
        "client-to-db",
        "lab",
        "  podSelector: {matchLabels: {app: client}}\n  policyTypes: [Egress]\n  egress:\n  - to: [{namespaceSelector: {matchLabels: {team: shop}}, podSelector: {matchLabels: {app: db}}}]\n    ports: [{port: 5432}]\n",
    );
    apply(&c, &engine, "policy.yaml", &yaml, 1);
    let s0 = c.stats();
    let list = vec![
        probe(
            "client",
            vip(10),
            80,
            true,
            "client -> svc(db): backend allowed",
        ),
        probe(
            "client",
            vip(11),
            80,
            false,
            "client -> svc(probe): local backend denied",
        ),
        probe(
            "client",
            vip(12),
            80,
            false,
            "client -> svc(outside): remote backend denied at the uplink",
        ),
        probe("client", c.pod("db").v4, 5432, true, "client -> db direct"),
        probe(
            "web",
            vip(12),
            80,
            true,
            "web (not isolated) -> svc(outside)",
        ),
    ];
    assert_all(&list);
    let s1 = c.stats();
    assert!(
        s1.service > s0.service,
        "Service traffic seen: {s0:?} -> {s1:?}"
    );
    assert!(
        s1.dropped_egress >= s0.dropped_egress + 2,
        "{s0:?} -> {s1:?}"
    );
}
