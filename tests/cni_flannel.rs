//! The CNI plugin with the flannel backend on one node, driven exactly as a runtime drives
//! it: real namespaces, real links, real pings. Root only.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;

/// A network of the test's own, or `None` (the test skips) without root.
fn root_net() -> Option<TestNet> {
    require_root().then(TestNet::new)
}

/// The first address of an ADD result, without its prefix length.
fn pod_ip(result: &Value) -> String {
    let addr = result["ips"][0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no address in {result}"));
    addr.split('/').next().unwrap_or(addr).to_string()
}

#[test]
fn add_gives_eth0_with_an_address_and_a_default_route() {
    let Some(net) = root_net() else { return };
    let ns = Netns::new();
    let out = cni("ADD", "c1", &ns.path, &net.conf("1.1.0"));
    assert!(out.ok, "{} {}", out.stdout, out.stderr);
    let r = out.json();
    assert_eq!(r["cniVersion"], "1.1.0");
    let addr = r["ips"][0]["address"].as_str().unwrap();
    let ip: ipnet::IpNet = addr.parse().unwrap();
    let subnet: ipnet::IpNet = net.subnet().parse().unwrap();
    assert!(subnet.contains(&ip.addr()), "{addr} not in {subnet}");
    assert_eq!(r["ips"][0]["gateway"], net.gateway());
    let idx = r["ips"][0]["interface"].as_u64().unwrap() as usize;
    assert_eq!(r["interfaces"][idx]["name"], "eth0");
    assert_eq!(r["interfaces"][idx]["sandbox"], ns.path.as_str());
    let shown = String::from_utf8(ns.exec(&["ip", "-o", "addr", "show", "eth0"]).stdout).unwrap();
    assert!(shown.contains(addr), "{shown}");
    let routes = String::from_utf8(ns.exec(&["ip", "route"]).stdout).unwrap();
    assert!(
        routes.contains(&format!("default via {}", net.gateway())),
        "{routes}"
    );
    // The cluster network has its own route too, as flannel's plugin gives it.
    assert!(
        routes.contains(&format!("{} via {}", net.cluster(), net.gateway())),
        "{routes}"
    );
    let mtu = String::from_utf8(ns.exec(&["cat", "/sys/class/net/eth0/mtu"]).stdout).unwrap();
    assert_eq!(mtu.trim(), "1450");
    // Hairpin is on for the pod's bridge port (a pod reaches itself through a Service).
    let host_veth = r["interfaces"][1]["name"].as_str().unwrap();
    let hairpin =
        std::fs::read_to_string(format!("/sys/class/net/{host_veth}/brport/hairpin_mode")).unwrap();
    assert_eq!(hairpin.trim(), "1", "{host_veth}");
    assert!(cni("DEL", "c1", &ns.path, &net.conf("1.1.0")).ok);
}

#[test]
fn two_pods_reach_each_other_and_the_gateway_and_del_leaves_nothing() {
    let Some(net) = root_net() else { return };
    let (a, b) = (Netns::new(), Netns::new());
    let conf = net.conf("1.0.0");
    let ra = cni("ADD", "ca", &a.path, &conf);
    let rb = cni("ADD", "cb", &b.path, &conf);
    assert!(ra.ok && rb.ok, "{} {}", ra.stdout, rb.stdout);
    let ip_b = pod_ip(&rb.json());
    let ip_a = pod_ip(&ra.json());
    assert_ne!(ip_a, ip_b);
    assert!(a.ping(&ip_b), "pod a cannot reach pod b");
    assert!(b.ping(&ip_a), "pod b cannot reach pod a");
    assert!(a.ping(&net.gateway()), "pod a cannot reach the gateway");
    assert_eq!(net.bridge_ports().len(), 2);
    assert_eq!(net.reservations().len(), 2);

    assert!(cni("DEL", "ca", &a.path, &conf).ok);
    assert!(cni("DEL", "cb", &b.path, &conf).ok);
    assert!(net.bridge_ports().is_empty(), "{:?}", net.bridge_ports());
    assert!(net.reservations().is_empty(), "{:?}", net.reservations());
    assert_eq!(a.links(), vec!["lo".to_string()]);
    assert!(!a.ping(&ip_b));
}

#[test]
fn del_is_idempotent_with_empty_or_vanished_netns_and_without_state() {
    let Some(net) = root_net() else { return };
    let conf = net.conf("1.1.0");
    let ns = Netns::new();
    assert!(cni("ADD", "c1", &ns.path, &conf).ok);
    let path = ns.path.clone();
    assert!(cni("DEL", "c1", &path, &conf).ok);
    assert!(cni("DEL", "c1", &path, &conf).ok, "second DEL");
    // CRI's second DEL comes with an empty CNI_NETNS.
    let empty = invocation("DEL", "c1", "", &conf).run();
    assert!(empty.ok, "{}", empty.stdout);
    // The namespace is gone entirely.
    drop(ns);
    assert!(cni("DEL", "c1", &path, &conf).ok);
    // Never added at all, and no state directory.
    let fresh = TestNet::new();
    assert!(cni("DEL", "never", "", &fresh.conf("0.4.0")).ok);
    // DEL of a pod whose namespace was deleted before DEL: the reservation still goes.
    let ns2 = Netns::new();
    assert!(cni("ADD", "c2", &ns2.path, &conf).ok);
    let p2 = ns2.path.clone();
    drop(ns2);
    assert!(cni("DEL", "c2", &p2, &conf).ok);
    assert!(net.reservations().is_empty());
    assert!(net.bridge_ports().is_empty());
}

#[test]
fn add_into_a_netns_that_has_the_interface_fails_cleanly() {
    let Some(net) = root_net() else { return };
    let conf = net.conf("1.1.0");
    let ns = Netns::new();
    assert!(cni("ADD", "first", &ns.path, &conf).ok);
    let dup = cni("ADD", "second", &ns.path, &conf);
    assert_eq!(dup.code(), 101, "{}", dup.stdout);
    assert!(dup.json()["msg"].as_str().unwrap().contains("eth0"));
    // The failed ADD kept neither its address nor a host veth.
    assert_eq!(net.reservations().len(), 1);
    assert_eq!(net.bridge_ports().len(), 1);
    assert!(cni("DEL", "first", &ns.path, &conf).ok);
}

#[test]
fn check_passes_then_detects_a_deleted_pod_interface() {
    let Some(net) = root_net() else { return };
    let ns = Netns::new();
    let mut conf = net.conf("1.1.0");
    let add = cni("ADD", "c1", &ns.path, &conf);
    assert!(add.ok);
    conf["prevResult"] = add.json();
    let ok = cni("CHECK", "c1", &ns.path, &conf);
    assert!(ok.ok, "{}", ok.stdout);
    // A prevResult naming an address this attachment does not hold is drift too.
    let mut wrong = conf.clone();
    wrong["prevResult"]["ips"][0]["address"] = json!(format!("10.{}.{}.250/24", net.a, net.b));
    assert_eq!(cni("CHECK", "c1", &ns.path, &wrong).code(), 102);
    // Removing the default route is drift CHECK must report.
    ns.exec(&["ip", "route", "del", "default"]);
    let bad = cni("CHECK", "c1", &ns.path, &conf);
    assert_eq!(bad.code(), 102, "{}", bad.stdout);
    ns.exec(&["ip", "link", "del", "eth0"]);
    let gone = cni("CHECK", "c1", &ns.path, &conf);
    assert_eq!(gone.code(), 102, "{}", gone.stdout);
    // CHECK of something never added is "unknown container".
    assert_eq!(cni("CHECK", "nope", &ns.path, &conf).code(), 3);
    assert!(cni("DEL", "c1", &ns.path, &conf).ok);
}

#[test]
fn fifty_parallel_adds_get_fifty_distinct_working_addresses() {
    let Some(net) = root_net() else { return };
    let conf = net.conf("1.1.0");
    let namespaces: Vec<Netns> = (0..50).map(|_| Netns::new()).collect();
    let children: Vec<_> = namespaces
        .iter()
        .enumerate()
        .map(|(i, ns)| invocation("ADD", &format!("par{i}"), &ns.path, &conf).spawn())
        .collect();
    let mut ips = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let ip = pod_ip(&v);
        assert!(!ips.contains(&ip), "address {ip} handed out twice");
        ips.push(ip);
    }
    assert_eq!(ips.len(), 50);
    assert_eq!(net.reservations().len(), 50);
    // Every pod works: each reaches the gateway, and the first reaches all others (its
    // own address needs loopback, which the runtime's loopback plugin brings up, not us).
    for ns in &namespaces {
        assert!(
            ns.ping(&net.gateway()),
            "{} cannot reach the gateway",
            ns.name
        );
    }
    for ip in &ips[1..] {
        assert!(namespaces[0].ping(ip), "pod 0 cannot reach {ip}");
    }
    for (i, ns) in namespaces.iter().enumerate() {
        assert!(cni("DEL", &format!("par{i}"), &ns.path, &conf).ok);
    }
    assert!(net.reservations().is_empty());
    assert!(net.bridge_ports().is_empty());
}

/// Starts an ADD that parks at `failpoint`, SIGKILLs it there, and returns.
fn kill_add_at(failpoint: &str, container: &str, ns: &Netns, conf: &Value) {
    let mut child = invocation("ADD", container, &ns.path, conf)
        .set("UNICNI_FAILPOINT", Some(failpoint))
        .spawn();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let reached = lines.any(|l| l.map(|l| l.contains("failpoint")).unwrap_or(false));
    assert!(reached, "ADD never reached failpoint {failpoint}");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

#[test]
fn add_killed_midway_then_gc_leaves_no_leak() {
    let Some(net) = root_net() else { return };
    let conf = net.conf("1.1.0");
    let keep = Netns::new();
    assert!(cni("ADD", "keeper", &keep.path, &conf).ok);
    let (ns1, ns2) = (Netns::new(), Netns::new());
    kill_add_at("ipam-reserved", "killed1", &ns1, &conf);
    kill_add_at("veth-created", "killed2", &ns2, &conf);
    // The kills really left state behind: two extra reservations and a half-built veth.
    assert_eq!(net.reservations().len(), 3);
    assert_eq!(net.bridge_ports().len(), 2);

    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keeper", "ifname": "eth0"}]);
    let out = invocation("GC", "", "", &gc).run();
    assert!(out.ok, "{} {}", out.stdout, out.stderr);
    assert_eq!(net.reservations().len(), 1, "{:?}", net.reservations());
    assert_eq!(net.bridge_ports().len(), 1, "{:?}", net.bridge_ports());
    assert_eq!(ns2.links(), vec!["lo".to_string()]);
    // The kept pod still works, and its address is not handed out again.
    assert!(keep.ping(&net.gateway()));
    let again = cni("ADD", "new", &ns1.path, &conf);
    assert!(again.ok, "{}", again.stdout);
    assert_eq!(net.reservations().len(), 2);
    assert!(cni("DEL", "new", &ns1.path, &conf).ok);
    assert!(cni("DEL", "keeper", &keep.path, &conf).ok);
}

#[test]
fn gc_accepts_the_older_attachments_key() {
    let Some(net) = root_net() else { return };
    let conf = net.conf("1.1.0");
    let (a, b) = (Netns::new(), Netns::new());
    assert!(cni("ADD", "a", &a.path, &conf).ok);
    assert!(cni("ADD", "b", &b.path, &conf).ok);
    let mut gc = conf.clone();
    gc["cni.dev/attachments"] = json!([{"containerID": "a", "ifname": "eth0"}]);
    assert!(invocation("GC", "", "", &gc).run().ok);
    assert_eq!(net.reservations().len(), 1);
    assert!(a.ping(&net.gateway()));
    assert!(!b.ping(&net.gateway()));
    assert!(cni("DEL", "a", &a.path, &conf).ok);
}

#[test]
fn every_malformed_input_gets_its_code_and_changes_nothing() {
    if !require_root() {
        return;
    }
    let fixtures: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/cni/malformed.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let net = TestNet::new();
    let ns = Netns::new();
    let cwd = tempfile::tempdir().unwrap();
    let before = tree(net.dir.path());
    for case in fixtures["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let mut conf = net.conf("1.1.0");
        if let Some(patch) = case.get("stdin_patch") {
            for (k, v) in patch.as_object().unwrap() {
                match v {
                    Value::Null => {
                        conf.as_object_mut().unwrap().remove(k);
                    }
                    Value::String(s) => conf[k] = json!(net.fill(s)),
                    other => conf[k] = other.clone(),
                }
            }
        }
        // Run where a relative path would land, so such a path shows up in the snapshot.
        let mut inv = invocation("ADD", "bad", &ns.path, &conf).current_dir(cwd.path());
        if let Some(raw) = case.get("stdin_raw") {
            inv = inv.stdin(raw.as_str().unwrap());
        }
        if let Some(patch) = case.get("env_patch") {
            for (k, v) in patch.as_object().unwrap() {
                inv = inv.set(k, v.as_str());
            }
        }
        let out = inv.run();
        assert!(!out.ok, "{name}: succeeded: {}", out.stdout);
        let err = out.json();
        assert_eq!(err["code"].as_u64(), case["code"].as_u64(), "{name}: {err}");
        assert!(err["cniVersion"].is_string(), "{name}: {err}");
        let msg = err["msg"].as_str().unwrap_or("");
        assert!(!msg.is_empty(), "{name}: {err}");
        if let Some(field) = case.get("names").and_then(Value::as_str) {
            assert!(
                msg.contains(field),
                "{name}: the message does not name {field}: {err}"
            );
        }
        assert_eq!(
            tree(net.dir.path()),
            before,
            "{name}: changed the state directories"
        );
        assert_eq!(
            tree(cwd.path()),
            Vec::<String>::new(),
            "{name}: wrote into its working directory"
        );
        assert!(!net.bridge_exists(), "{name}: created the bridge");
        assert!(net.reservations().is_empty(), "{name}: reserved an address");
        assert_eq!(
            ns.links(),
            vec!["lo".to_string()],
            "{name}: touched the netns"
        );
    }
}

/// Every path below `root`, relative to it, sorted: what a refused request must not change.
fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if p.is_dir() && !p.is_symlink() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

#[test]
fn version_and_status() {
    let v = invocation("VERSION", "", "", &json!({"cniVersion": "1.0.0"})).run();
    assert!(v.ok);
    let j = v.json();
    assert_eq!(j["cniVersion"], "1.0.0");
    let supported: Vec<&str> = j["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for want in ["0.4.0", "1.0.0", "1.1.0"] {
        assert!(supported.contains(&want));
    }
    // STATUS without a lease (no subnet in the config, no lease file): not available.
    let net = TestNet::new();
    let mut conf = net.conf("1.1.0");
    assert!(invocation("STATUS", "", "", &conf).run().ok);
    conf.as_object_mut().unwrap().remove("subnet");
    let st = invocation("STATUS", "", "", &conf).run();
    assert_eq!(st.code(), 50);
    assert!(st.json()["details"].as_str().unwrap().contains("agent"));
}

#[test]
fn add_without_a_lease_is_try_again_later() {
    let Some(net) = root_net() else { return };
    let ns = Netns::new();
    let mut conf = net.conf("1.1.0");
    conf.as_object_mut().unwrap().remove("subnet");
    let out = cni("ADD", "c1", &ns.path, &conf);
    assert_eq!(out.code(), 11, "{}", out.stdout);
    assert!(out.json()["msg"].as_str().unwrap().contains("lease"));
    assert_eq!(ns.links(), vec!["lo".to_string()]);
    // Once the agent writes the lease file, the same config works.
    let lease = net.dir.path().join("run/flannel");
    std::fs::create_dir_all(&lease).unwrap();
    std::fs::write(
        lease.join("subnet.json"),
        json!({"subnet": net.subnet()}).to_string(),
    )
    .unwrap();
    let out = cni("ADD", "c1", &ns.path, &conf);
    assert!(out.ok, "{}", out.stdout);
    assert!(cni("DEL", "c1", &ns.path, &conf).ok);
}

#[test]
fn old_config_versions_and_a_conflist_on_stdin_work() {
    let Some(net) = root_net() else { return };
    for (i, version) in ["0.4.0", "1.0.0", "1.1.0"].iter().enumerate() {
        let ns = Netns::new();
        let out = cni("ADD", &format!("v{i}"), &ns.path, &net.conf(version));
        assert!(out.ok, "{version}: {}", out.stdout);
        let r = out.json();
        assert_eq!(r["cniVersion"], *version);
        assert_eq!(r["ips"][0].get("version").is_some(), *version == "0.4.0");
        assert!(cni("DEL", &format!("v{i}"), &ns.path, &net.conf(version)).ok);
    }
    let mut plugin = net.conf("1.1.0");
    plugin.as_object_mut().unwrap().remove("name");
    plugin.as_object_mut().unwrap().remove("cniVersion");
    let list = json!({"cniVersion": "1.1.0", "name": net.name, "plugins": [plugin]});
    let ns = Netns::new();
    let out = cni("ADD", "list", &ns.path, &list);
    assert!(out.ok, "{}", out.stdout);
    assert!(ns.ping(&net.gateway()));
    assert!(cni("DEL", "list", &ns.path, &list).ok);
}

#[test]
fn masquerade_rules_exist_after_first_pod() {
    let Some(net) = root_net() else { return };
    let ns = Netns::new();
    assert!(cni("ADD", "c1", &ns.path, &net.conf("1.1.0")).ok);
    let out = std::process::Command::new("nft")
        .args(["list", "table", "ip", &net.nft_table()])
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&out.stdout);
    assert!(rules.contains("masquerade"), "{rules}");
    assert!(rules.contains(&format!(
        "ip saddr {} ip daddr {} return",
        net.cluster(),
        net.cluster()
    )));
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .unwrap()
            .trim(),
        "1"
    );
    assert!(cni("DEL", "c1", &ns.path, &net.conf("1.1.0")).ok);
}

/// Dual stack: one IPv4 and one IPv6 address per pod, both default routes, both in the
/// result; CHECK verifies the IPv6 side; DEL frees both. The plugin runs in a node
/// namespace of the test's own, as the lab runs it: on a dual-stack node it turns on IPv6
/// forwarding and loads an ip6 masquerade table, which must not land on the test host.
#[test]
fn dual_stack_pods_get_both_families_and_check_and_del_cover_both() {
    let Some(net) = root_net() else { return };
    let node = Netns::with_lo_up("undn");
    let (a, b) = (Netns::new(), Netns::new());
    let mut conf = net.conf("1.0.0");
    conf["ipv6ClusterNetwork"] = json!("fd00:77::/56");
    conf["ipv6Subnet"] = json!("fd00:77:0:5::/64");
    let launcher = ["ip", "netns", "exec", node.name.as_str()];
    let run = |command: &str, id: &str, ns: &Netns, conf: &Value| {
        invocation(command, id, &ns.path, conf)
            .try_run_via(&launcher)
            .unwrap()
    };
    let (ra, rb) = (run("ADD", "ca", &a, &conf), run("ADD", "cb", &b, &conf));
    assert!(ra.ok && rb.ok, "{} {} {}", ra.stdout, rb.stdout, rb.stderr);
    let r = ra.json();
    let ips = r["ips"].as_array().unwrap();
    assert_eq!(ips.len(), 2, "{r}");
    assert!(
        ips[0]["address"].as_str().unwrap().starts_with("10."),
        "{r}"
    );
    let a6 = ips[1]["address"].as_str().unwrap();
    assert!(
        a6.starts_with("fd00:77:0:5::") && a6.ends_with("/64"),
        "{r}"
    );
    assert_eq!(ips[1]["gateway"], "fd00:77:0:5::1");
    let routes = r["routes"].as_array().unwrap();
    assert!(
        routes
            .iter()
            .any(|x| x["dst"] == "::/0" && x["gw"] == "fd00:77:0:5::1"),
        "{r}"
    );
    let shown = String::from_utf8(a.exec(&["ip", "-6", "route"]).stdout).unwrap();
    assert!(
        shown.contains("default via fd00:77:0:5::1 dev eth0"),
        "{shown}"
    );
    // The pods reach each other and the bridge's gateway over IPv6.
    let b6 = rb.json()["ips"][1]["address"].as_str().unwrap().to_string();
    let b6 = b6.split('/').next().unwrap();
    for target in [b6, "fd00:77:0:5::1"] {
        let ping = a.exec(&["ping", "-6", "-c", "1", "-W", "2", target]);
        assert!(ping.status.success(), "pod a cannot reach {target}");
    }
    let nft = String::from_utf8(node.exec(&["nft", "list", "tables"]).stdout).unwrap();
    assert!(
        nft.contains(&format!("table ip6 {}", net.nft_table())),
        "{nft}"
    );

    // CHECK: fine, then the missing IPv6 default route is drift.
    let mut checked = conf.clone();
    checked["prevResult"] = r.clone();
    assert!(run("CHECK", "ca", &a, &checked).ok);
    a.exec(&["ip", "-6", "route", "del", "default"]);
    let bad = run("CHECK", "ca", &a, &checked);
    assert_eq!(bad.code(), 102, "{}", bad.stdout);
    assert!(bad.stdout.contains("fd00:77:0:5::1"), "{}", bad.stdout);

    // DEL frees both families' reservations.
    let v6_reservations = || {
        std::fs::read_dir(net.ipam_dir().join("v6").join("ip"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert_eq!(v6_reservations(), 2);
    assert!(run("DEL", "ca", &a, &conf).ok);
    assert!(run("DEL", "cb", &b, &conf).ok);
    assert_eq!(v6_reservations(), 0);
    assert!(net.reservations().is_empty(), "{:?}", net.reservations());
}

#[test]
fn add_retried_after_a_kill_with_the_veth_built_replaces_the_leftover() {
    let Some(net) = root_net() else { return };
    let conf = net.conf("1.1.0");
    let ns = Netns::new();
    kill_add_at("veth-created", "retried", &ns, &conf);
    assert_eq!(net.bridge_ports().len(), 1, "the kill left its veth");
    // The runtime retries the same attachment in the same netns: the leftover pair is
    // replaced, not reported as a clash.
    let again = cni("ADD", "retried", &ns.path, &conf);
    assert!(again.ok, "{} {}", again.stdout, again.stderr);
    assert_eq!(net.bridge_ports().len(), 1, "{:?}", net.bridge_ports());
    assert!(ns.ping(&net.gateway()));
    assert!(cni("DEL", "retried", &ns.path, &conf).ok);
    assert!(net.bridge_ports().is_empty());
    assert!(net.reservations().is_empty());
}
