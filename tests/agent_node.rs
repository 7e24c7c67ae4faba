//! `unicni agent` on one node namespace (root): host-gw peer routes from leases in a file
//! store, refusal of a peer off the L2 segment, removal when a peer's lease goes, readiness
//! withdrawn on stop, `unicni uninstall` removing routes and rules; clear errors for an
//! exhausted network and an unsupported mode.

mod common;

use common::agent::{self, metrics, NodeNs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn node() -> NodeNs {
    NodeNs::new("uagt", "192.168.77.1/24")
}

fn config(dir: &Path, network: &str, mode: &str) -> PathBuf {
    agent::write_config(
        dir,
        format!(
            "[cluster]\nname = \"t\"\n[flannel]\nnetwork = \"{network}\"\nsubnet_len = 24\nmode = \"{mode}\"\ninterface = \"eth0\"\n\
             [cni]\nnetwork_name = \"{net}\"\n[store]\nkind = \"file\"\npath = \"{d}/store\"\nlease_ttl_seconds = 10\n\
             [node]\nname = \"me\"\nstate_dir = \"{d}/state\"\nrun_dir = \"{d}/run\"\n[agent]\nreconcile_seconds = 1\n",
            net = common::unique("t"),
            d = dir.display()
        ),
    )
}

fn write_lease(dir: &Path, subnet: &str, node: &str, ip: &str) -> PathBuf {
    write_lease_record(
        dir,
        subnet,
        &format!(r#""node":"{node}","public_ip":"{ip}","mode":"host-gw""#),
    )
}

/// A lease for `subnet` in the file store under `dir`, valid for an hour; `fields` are the
/// record's other JSON members.
fn write_lease_record(dir: &Path, subnet: &str, fields: &str) -> PathBuf {
    let k = dir
        .join("store/flannel/subnets")
        .join(subnet.replace('/', "-"));
    std::fs::create_dir_all(k.parent().unwrap()).unwrap();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    std::fs::write(
        &k,
        format!(r#"{{"subnet":"{subnet}",{fields},"expires_at":{exp}}}"#),
    )
    .unwrap();
    k
}

fn wait_for(what: &str, log: &Path, f: impl FnMut() -> bool) {
    agent::wait_for(what, 10, log, f);
}

#[test]
fn host_gw_routes_follow_leases_and_uninstall_cleans_up() {
    if !common::require_root() {
        return;
    }
    let ns = node();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "10.77.0.0/16", "host-gw");
    let peer = write_lease(dir.path(), "10.77.5.0/24", "peer", "192.168.77.2");
    let log = dir.path().join("agent.log");
    let mut agent = agent::start(ns.name(), &cfg, &log);
    let subnet_file = dir.path().join("run/flannel/subnet.json");
    wait_for("lease published", &log, || subnet_file.exists());
    let published = std::fs::read_to_string(&subnet_file).unwrap();
    assert!(
        !published.contains("10.77.5.0"),
        "took a held subnet: {published}"
    );
    let route = "10.77.5.0/24 via 192.168.77.2 dev eth0 proto 77";
    wait_for("peer route", &log, || {
        ns.exec(&["ip", "route"]).contains(route)
    });

    // A peer off this node's L2 segment is refused by name, not routed.
    write_lease(dir.path(), "10.77.6.0/24", "far", "10.9.9.9");
    wait_for("refusal logged", &log, || agent::logged(&log, "\"far\""));
    let metrics = metrics(&ns);
    assert!(
        metrics.contains("unicni_agent_refused_peers 1"),
        "{metrics}"
    );
    assert!(!ns.exec(&["ip", "route"]).contains("10.77.6.0"));
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("not on the L2 segment"));

    // A peer whose lease is gone loses its route; it comes back with the lease.
    std::fs::remove_file(&peer).unwrap();
    wait_for("route removed", &log, || {
        !ns.exec(&["ip", "route"]).contains("10.77.5.0")
    });
    write_lease(dir.path(), "10.77.5.0/24", "peer", "192.168.77.2");
    wait_for("route back", &log, || {
        ns.exec(&["ip", "route"]).contains(route)
    });

    // Stop: readiness withdrawn, datapath kept for the next start.
    agent.terminate();
    assert!(!subnet_file.exists());
    assert!(ns.exec(&["ip", "route"]).contains(route));
    // No lease published: a pod ADD is told to try again later (CNI code 11), and why.
    let conf = serde_json::json!({
        "cniVersion": "1.1.0", "name": "t", "type": "unicni", "backend": "flannel",
        "clusterNetwork": "10.77.0.0/16", "runDir": dir.path().join("run"),
        "stateDir": dir.path().join("state"),
    });
    let add = common::cni("ADD", "c-not-ready", &ns.0.path, &conf);
    assert!(!add.ok);
    let err: serde_json::Value = serde_json::from_str(&add.stdout).unwrap();
    assert_eq!(err["code"], 11, "{}", add.stdout);
    assert!(
        err["msg"].as_str().unwrap().contains("agent")
            || err["details"].as_str().unwrap_or("").contains("agent"),
        "{}",
        add.stdout
    );
    let table = ns.exec(&["nft", "list", "tables"]);
    assert!(
        table.contains("unicni_"),
        "masquerade table expected: {table}"
    );

    let out = agent::uninstall(Some(ns.name()), &[], &cfg, dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!ns.exec(&["ip", "route"]).contains("proto 77"));
    assert!(!ns.exec(&["nft", "list", "tables"]).contains("unicni_"));
}

#[test]
fn exhausted_network_is_refused_clearly() {
    if !common::require_root() {
        return;
    }
    let ns = node();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "10.78.0.0/23", "vxlan");
    write_lease(dir.path(), "10.78.0.0/24", "other", "192.168.77.2");
    write_lease(dir.path(), "10.78.1.0/24", "third", "192.168.77.3");
    let out = agent::run_agent(ns.name(), &cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("no free /24 subnet")
            && err.contains("10.78.0.0/23")
            && err.contains("\"me\""),
        "{err}"
    );
    assert!(!dir.path().join("run/flannel/subnet.json").exists());
}

#[test]
fn vpc_route_without_a_reachable_cloud_is_refused_before_touching_anything() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "10.79.0.0/16", "vpc-route");
    // A cloud that refuses connections: the agent must stop before the store.
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(
        "\n[cloud]\nregion = \"cn-hangzhou\"\nendpoint = \"http://127.0.0.1:9\"\n\
         metadata_endpoint = \"http://127.0.0.1:9\"\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let out = agent::unicni(&["agent", "--config"], &cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("vpc-route") && err.contains("127.0.0.1:9"),
        "{err}"
    );
    assert!(!dir.path().join("store").exists());
}

#[test]
fn vxlan_deletions_are_repaired_at_once_not_at_the_next_pass() {
    if !common::require_root() {
        return;
    }
    let ns = node();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "10.81.0.0/16", "vxlan");
    // A periodic pass only every 60 s: repairs within seconds must come from kernel events.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("reconcile_seconds = 1", "reconcile_seconds = 60");
    std::fs::write(&cfg, text).unwrap();
    write_lease_record(
        dir.path(),
        "10.81.9.0/24",
        r#""node":"peer","public_ip":"192.168.77.2","vtep_mac":"02:aa:bb:cc:dd:ee","mode":"vxlan""#,
    );
    let log = dir.path().join("agent.log");
    let _agent = agent::start(ns.name(), &cfg, &log);
    let route = "10.81.9.0/24 via 10.81.9.0 dev flannel.1 proto 77 onlink";
    wait_for("peer programmed", &log, || {
        ns.exec(&["ip", "route"]).contains(route)
    });
    let mac = ns.exec(&["cat", "/sys/class/net/flannel.1/address"]);
    let details = ns.exec(&["ip", "-d", "link", "show", "flannel.1"]);
    assert!(
        details.contains("vxlan id 1 ")
            && details.contains("dstport 8472")
            && details.contains("nolearning"),
        "{details}"
    );
    assert!(
        details.contains("mtu 1450"),
        "underlay 1500 - 50: {details}"
    );
    assert_eq!(
        ns.exec(&["ip", "neigh", "show", "dev", "flannel.1"]).trim(),
        "10.81.9.0 lladdr 02:aa:bb:cc:dd:ee PERMANENT"
    );
    assert!(ns
        .exec(&["bridge", "fdb", "show", "dev", "flannel.1"])
        .contains("02:aa:bb:cc:dd:ee dst 192.168.77.2 self permanent"));

    let quick = |what: &str, f: &mut dyn FnMut() -> bool| {
        let until = Instant::now() + Duration::from_secs(3);
        while !f() {
            assert!(Instant::now() < until, "not repaired within 3 s: {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    ns.exec(&["ip", "route", "del", "10.81.9.0/24"]);
    quick("route", &mut || ns.exec(&["ip", "route"]).contains(route));
    ns.exec(&["ip", "link", "del", "flannel.1"]);
    quick("device and route", &mut || {
        ns.exec(&["ip", "route"]).contains(route)
    });
    // The re-created device has the same MAC (derived from node name and VNI).
    assert_eq!(ns.exec(&["cat", "/sys/class/net/flannel.1/address"]), mac);
    ns.exec(&["ip", "neigh", "del", "10.81.9.0", "dev", "flannel.1"]);
    quick("neighbour", &mut || {
        ns.exec(&["ip", "neigh", "show", "dev", "flannel.1"])
            .contains("PERMANENT")
    });
}

#[test]
fn a_lost_lease_is_taken_again_with_the_same_subnet() {
    if !common::require_root() {
        return;
    }
    let ns = node();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "10.82.0.0/16", "host-gw");
    let log = dir.path().join("agent.log");
    let _agent = agent::start(ns.name(), &cfg, &log);
    let subnet_file = dir.path().join("run/flannel/subnet.json");
    wait_for("lease published", &log, || subnet_file.exists());
    let before = std::fs::read_to_string(&subnet_file).unwrap();
    // Someone removes the lease from the store (an operator, a store restore).
    let leases = dir.path().join("store/flannel/subnets");
    let mine = std::fs::read_dir(&leases)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_file(&mine).unwrap();
    // The next renewal (a third of the 10 s TTL) notices and takes the same subnet again.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let m = metrics(&ns);
        if m.contains("unicni_agent_lease_losses_total 1")
            && m.contains("unicni_agent_lease_held 1")
            && mine.exists()
        {
            break;
        }
        assert!(Instant::now() < until, "lease not re-taken: {m}");
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_for("lease file back", &log, || subnet_file.exists());
    assert_eq!(std::fs::read_to_string(&subnet_file).unwrap(), before);
}
