//! `unicni agent` (flannel) with `policy.enabled = true` (root): one node namespace with
//! two flannel-shaped pods (bridge ports `uc…`) in two Kubernetes namespaces. The agent
//! enforces a deny-all-ingress policy on the wire and shows it on `/metrics` (the kernel's
//! drop counter, the policy count, isolated pods, attachments), with the policies from a
//! manifest directory, or from the Kubernetes API (no `policy.manifests_dir`,
//! `store.kubeconfig` pointing at the emulated API server listening in the node namespace).

mod common;

use common::agent::{self, listen_in};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use unicni_testkit::cmd::must;

const WEB: &str = "10.81.0.11";
const CLIENT: &str = "10.81.0.12";

/// `ip -n <ns> <args>` (`args` split at spaces), which must succeed.
fn ip(ns: &str, args: &str) {
    let mut argv = vec!["ip", "-n", ns];
    argv.extend(args.split_whitespace());
    must(&argv);
}

/// The node namespace and the two pods' namespaces; all removed on drop.
struct Node {
    ns: String,
    web: String,
    client: String,
}

impl Node {
    fn new() -> Node {
        let base = common::unique("uapol");
        let n = Node {
            ns: format!("{base}-n"),
            web: format!("{base}-w"),
            client: format!("{base}-c"),
        };
        for ns in [&n.ns, &n.web, &n.client] {
            must(&["ip", "netns", "add", ns]);
            ip(ns, "link set lo up");
        }
        let ns = n.ns.as_str();
        ip(ns, "link add eth0 type veth peer name eth1");
        ip(ns, "addr add 192.168.79.1/24 dev eth0");
        ip(ns, "link set eth0 up");
        ip(ns, "link set eth1 up");
        ip(ns, "link add pbr0 type bridge");
        ip(ns, "addr add 10.81.0.1/24 dev pbr0");
        ip(ns, "link set pbr0 up");
        // Host veths named as flannel names them: `uc` + 11 hex digits.
        for (i, (pod, addr)) in [(&n.web, WEB), (&n.client, CLIENT)].into_iter().enumerate() {
            let veth = format!("uc{:011x}", i + 1);
            ip(
                ns,
                &format!("link add {veth} type veth peer name eth0 netns {pod}"),
            );
            ip(ns, &format!("link set {veth} master pbr0 up"));
            ip(pod, &format!("addr add {addr}/24 dev eth0"));
            ip(pod, "link set eth0 up");
            ip(pod, "route add default via 10.81.0.1");
        }
        n
    }

    fn exec(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn metrics(&self) -> String {
        self.exec(&["curl", "-sf", "http://127.0.0.1:9099/metrics"])
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for ns in [&self.ns, &self.web, &self.client] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// One ping from a pod namespace: true when answered within `wait`.
fn ping(from: &str, to: &str, wait: &str) -> bool {
    Command::new("ip")
        .args([
            "netns", "exec", from, "ping", "-c1", "-n", "-q", "-W", wait, to,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// A bpffs of the test's own outside /sys (`ip netns exec` remounts /sys), unmounted and
/// emptied on drop.
struct Bpffs(PathBuf);

impl Bpffs {
    fn new() -> Bpffs {
        let dir = PathBuf::from(format!("/run/{}", common::unique("unicni-test-polfs-")));
        std::fs::create_dir_all(&dir).unwrap();
        must(&["mount", "-t", "bpf", "bpf", dir.to_str().unwrap()]);
        Bpffs(dir)
    }

    fn pin_dir(&self) -> PathBuf {
        self.0.join("unicni")
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = unicni_bpf::remove_all(&self.pin_dir());
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The agent's config: flannel host-gw on `eth0`, policy on, `policy` the extra lines of
/// the `[policy]` table, `store` those of `[store]`.
fn config(dir: &Path, pin: &Path, policy: &str, store: &str) -> PathBuf {
    agent::write_config(
        dir,
        format!(
            "[cluster]\nname = \"p\"\n[flannel]\nnetwork = \"10.81.0.0/16\"\nmode = \"host-gw\"\n\
             interface = \"eth0\"\nmasquerade = false\n\
             [bpf]\npin_dir = \"{pin}\"\n\
             [policy]\nenabled = true\n{policy}\n\
             [cni]\nnetwork_name = \"{net}\"\n[store]\nkind = \"file\"\npath = \"{d}/store\"\n{store}\n\
             [node]\nname = \"me\"\nstate_dir = \"{d}/state\"\nrun_dir = \"{d}/run\"\n\
             [agent]\nreconcile_seconds = 1\n",
            pin = pin.display(),
            net = common::unique("p"),
            d = dir.display()
        ),
    )
}

fn wait_for(what: &str, log: &Path, f: impl FnMut() -> bool) {
    agent::wait_for(what, 15, log, f);
}

/// The value of the sample `name` (with its labels, as printed) in a scrape.
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

const NAMESPACES_YAML: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n\
                          apiVersion: v1\nkind: Namespace\nmetadata: {name: lab}\n";

fn pod_yaml(namespace: &str, name: &str, ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {namespace}, labels: {{app: {name}}}}}\n\
         spec: {{nodeName: me, containers: [{{name: c}}]}}\nstatus: {{podIP: {ip}, podIPs: [{{ip: {ip}}}]}}\n"
    )
}

const DENY_SHOP_INGRESS: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
                                 metadata: {name: deny-ingress, namespace: shop}\n\
                                 spec: {podSelector: {}, policyTypes: [Ingress]}\n";

#[test]
fn policy_enforced_by_the_agent_shows_on_metrics() {
    if !common::require_root() {
        return;
    }
    let node = Node::new();
    let fs = Bpffs::new();
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("policies");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(manifests.join("ns.yaml"), NAMESPACES_YAML).unwrap();
    std::fs::write(
        manifests.join("pods.yaml"),
        format!(
            "{}---\n{}",
            pod_yaml("shop", "web", WEB),
            pod_yaml("lab", "client", CLIENT)
        ),
    )
    .unwrap();
    std::fs::write(manifests.join("deny.yaml"), DENY_SHOP_INGRESS).unwrap();
    let cfg = config(
        dir.path(),
        &fs.pin_dir(),
        &format!("manifests_dir = \"{}\"", manifests.display()),
        "",
    );
    let log = dir.path().join("agent.log");
    let _agent = agent::start(&node.ns, &cfg, &log);
    wait_for("policy applied to both pod veths", &log, || {
        let m = node.metrics();
        sample(&m, "unicni_policy_synced") == Some(1.0)
            && sample(&m, "unicni_policy_attached_veths") == Some(2.0)
    });

    let before = node.metrics();
    let drops = |m: &str| {
        sample(
            m,
            "unicni_policy_packets_total{verdict=\"drop\",reason=\"ingress\"}",
        )
        .unwrap_or_else(|| panic!("no ingress drop counter in\n{m}"))
    };
    // web is isolated for ingress: the client's ping is dropped; web's own pings go out
    // (egress is free) and their replies come back.
    assert!(
        !ping(&node.client, WEB, "1"),
        "client -> web must be dropped"
    );
    assert!(ping(&node.web, CLIENT, "2"), "web -> client must pass");

    let after = node.metrics();
    assert!(
        drops(&after) > drops(&before),
        "the ingress drop counter went up:\nbefore:\n{before}\nafter:\n{after}"
    );
    assert_eq!(
        sample(&after, "unicni_policy_policies"),
        Some(1.0),
        "{after}"
    );
    assert_eq!(
        sample(
            &after,
            "unicni_policy_isolated_pod_addresses{direction=\"ingress\"}"
        ),
        Some(1.0),
        "{after}"
    );
    assert_eq!(
        sample(
            &after,
            "unicni_policy_isolated_pod_addresses{direction=\"egress\"}"
        ),
        Some(0.0),
        "{after}"
    );
    assert_eq!(
        sample(&after, "unicni_policy_map_entries{map=\"pods\"}"),
        Some(2.0),
        "{after}"
    );
    assert!(
        sample(
            &after,
            "unicni_policy_packets_total{verdict=\"pass\",reason=\"new\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "web's ping was a new allowed flow:\n{after}"
    );
    assert!(
        sample(&after, "unicni_policy_last_apply_success_timestamp_seconds").unwrap_or(0.0) > 0.0,
        "{after}"
    );
    // The backend's own families are still there, and the text still ends the exposition.
    assert!(after.contains("unicni_agent_lease_held 1"), "{after}");
    assert!(after.contains("unicni_agent_ready 1"), "{after}");
    assert!(after.contains("unicni_agent_pod_capacity 253"), "{after}");
    assert!(after.trim_end().ends_with("# EOF"), "{after}");
    assert_eq!(
        after.matches("# EOF").count(),
        1,
        "one exposition:\n{after}"
    );
    // One registry, served with the OpenMetrics content type it is encoded in.
    let head = node.exec(&["curl", "-sfI", "http://127.0.0.1:9099/metrics"]);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{head}"
    );

    // The policy removed: the client gets through, the count follows.
    std::fs::remove_file(manifests.join("deny.yaml")).unwrap();
    wait_for("policy removed", &log, || {
        sample(&node.metrics(), "unicni_policy_policies") == Some(0.0)
    });
    assert!(ping(&node.client, WEB, "2"), "client -> web passes again");
}

/// Binds a listener on 127.0.0.1 inside network namespace `ns` (from a thread of its own).
const PODS: &str = "/api/v1/pods";
const NAMESPACES: &str = "/api/v1/namespaces";
const POLICIES: &str = "/apis/networking.k8s.io/v1/networkpolicies";

fn pod_json(namespace: &str, name: &str, ip: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {"nodeName": "me", "containers": [{"name": "c"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    })
}

/// Pings `to` from `from` until the answer is `want`; returns how long that took.
fn until_ping(from: &str, to: &str, want: bool, log: &Path) -> Duration {
    let t = Instant::now();
    wait_for(
        &format!("ping {to} {}", if want { "passes" } else { "dropped" }),
        log,
        || ping(from, to, "0.3") == want,
    );
    t.elapsed()
}

#[test]
fn the_agent_takes_policies_from_the_kubernetes_api() {
    if !common::require_root() {
        return;
    }
    let node = Node::new();
    let fs = Bpffs::new();
    let dir = tempfile::tempdir().unwrap();
    let api = unicni_kube_emulator::Emulator::new();
    for ns in ["shop", "lab"] {
        api.put(
            NAMESPACES,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        );
    }
    api.put(PODS, pod_json("shop", "web", WEB));
    api.put(PODS, pod_json("lab", "client", CLIENT));
    let url = api.serve(listen_in(&node.ns));
    let kc = unicni_kube_emulator::kubeconfig(dir.path(), &url);
    // No manifests_dir: the Kubernetes API is the source.
    let cfg = config(
        dir.path(),
        &fs.pin_dir(),
        "",
        &format!("kubeconfig = \"{}\"", kc.display()),
    );
    let log = dir.path().join("agent.log");
    let _agent = agent::start(&node.ns, &cfg, &log);
    wait_for("first snapshot applied to both pod veths", &log, || {
        let m = node.metrics();
        sample(&m, "unicni_policy_synced") == Some(1.0)
            && sample(&m, "unicni_policy_attached_veths") == Some(2.0)
            && sample(&m, "unicni_policy_map_entries{map=\"pods\"}") == Some(2.0)
    });
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("the Kubernetes API"), "{text}");
    assert!(
        ping(&node.client, WEB, "2"),
        "no policy yet: client -> web passes"
    );

    // A NetworkPolicy created through the API isolates web within about a second.
    api.put(
        POLICIES,
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "deny-ingress", "namespace": "shop"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
        }),
    );
    let took = until_ping(&node.client, WEB, false, &log);
    eprintln!("policy created: enforced after {took:?}");
    assert!(
        took < Duration::from_millis(1500),
        "policy enforced after {took:?}"
    );
    assert!(ping(&node.web, CLIENT, "2"), "web's egress is free");
    let m = node.metrics();
    assert_eq!(sample(&m, "unicni_policy_policies"), Some(1.0), "{m}");
    assert!(
        sample(
            &m,
            "unicni_policy_packets_total{verdict=\"drop\",reason=\"ingress\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{m}"
    );

    // Deleted: traffic passes again.
    api.delete(POLICIES, "shop", "deny-ingress").unwrap();
    let took = until_ping(&node.client, WEB, true, &log);
    eprintln!("policy deleted: lifted after {took:?}");
    assert!(
        took < Duration::from_millis(1500),
        "policy lifted after {took:?}"
    );
    wait_for("policy count back to 0", &log, || {
        sample(&node.metrics(), "unicni_policy_policies") == Some(0.0)
    });

    // A policy selecting web by label, then web relabelled (a MODIFIED pod) so that it no
    // longer selects it.
    api.put(
        POLICIES,
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "deny-ingress", "namespace": "shop"},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"]},
        }),
    );
    until_ping(&node.client, WEB, false, &log);
    let mut web = pod_json("shop", "web", WEB);
    web["metadata"]["labels"]["app"] = "web2".into();
    api.put(PODS, web);
    until_ping(&node.client, WEB, true, &log);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("Kubernetes watch:"), "watch errors:\n{text}");
}
