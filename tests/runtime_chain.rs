//! unicni first in a conflist with the reference portmap and bandwidth after it, executed
//! the way libcni does, with the argument shapes the real runtimes use:
//! `CNI_NETNS=/proc/PID/ns/net` (ctr), loopback ADD before the network (CRI, podman),
//! DEL twice with the second one without a netns (CRI), VERSION probes (libcni).
//!
//! Needs root and the reference CNI plugins.

mod runtimes;

use runtimes::cniexec::{self, exec_plugin, Invocation};
use runtimes::guard::Defer;
use runtimes::netns::Netns;
use runtimes::network::{bandwidth_ifb_name, install, ruleset, Network, Plugin, UNICNI};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};

const CHAIN: &[&str] = &["portmap", "bandwidth"];

fn setup(defer: &mut Defer, chain: &[&str]) -> Network {
    let tmp = defer.temp_dir("unicni-chain-");
    install(plugin_under_test(), &tmp.join("cni"), chain, defer)
}

fn version_of(plugin: &Path, stdin_version: &str) -> Value {
    let mut child = Command::new(plugin)
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            json!({ "cniVersion": stdin_version })
                .to_string()
                .as_bytes(),
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{} VERSION (stdin cniVersion {stdin_version}) failed: {}{}",
        plugin.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{} VERSION printed no JSON ({e}): {}",
            plugin.display(),
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn supported(v: &Value) -> Vec<String> {
    v["supportedVersions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// libcni probes VERSION with the config's version on stdin; every version unicni claims
/// must be answered, whatever version the probe itself carries.
#[test]
fn version_probe_answers_for_every_config_version() {
    crate::require!("runtime_chain", tools: [], files: []);
    for probe in ["0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let v = version_of(Path::new(UNICNI), probe);
        let versions = supported(&v);
        for needed in ["0.4.0", "1.0.0", "1.1.0"] {
            assert!(
                versions.iter().any(|s| s == needed),
                "VERSION (probe {probe}) does not list {needed}: {v}"
            );
        }
    }
}

/// The conflist `unicni install` writes must be loadable by everything that reads it
/// here: libcni in containerd 1.6 and podman 4.3 refuse a 1.1.0 result, and the
/// reference plugins chained after unicni support at most 1.0.0.
#[test]
fn installed_conflist_version_is_supported_by_every_chained_plugin() {
    crate::require!(
        "runtime_chain",
        tools: ["ip"],
        files: ["/usr/lib/cni/portmap", "/usr/lib/cni/bandwidth"]
    );
    let mut defer = Defer::new();
    let net = setup(&mut defer, CHAIN);
    let list = net.conflist_json();
    let version = list["cniVersion"]
        .as_str()
        .expect("conflist has a cniVersion");
    if net.plugin == Plugin::Unicni {
        assert_eq!(
            list["plugins"][0]["type"],
            "unicni",
            "unicni must come first in {}",
            net.conflist.display()
        );
    }
    for plugin in list["plugins"].as_array().unwrap() {
        let kind = plugin["type"].as_str().unwrap();
        let v = version_of(&net.bin_dir.join(kind), version);
        assert!(
            supported(&v).iter().any(|s| s == version),
            "{} sets cniVersion {version}, which chained plugin {kind} does not support \
             ({v}); containerd and podman then refuse the whole network",
            net.conflist.display()
        );
    }
}

fn loopback_add(netns: &Netns, container_id: &str) {
    // CRI and podman bring lo up with the loopback plugin before the pod network.
    let inv = Invocation {
        container_id,
        netns: &netns.path,
        ifname: "lo",
        cni_args: "",
        runtime_config: json!({}),
    };
    let conf = json!({ "cniVersion": "1.0.0", "name": "cni-loopback", "type": "loopback" });
    exec_plugin(Path::new("/usr/lib/cni"), "loopback", "ADD", &inv, &conf)
        .unwrap_or_else(|e| panic!("loopback ADD: {e}"));
}

#[test]
fn chain_add_check_del_in_proc_pid_netns() {
    crate::require!(
        "runtime_chain",
        tools: ["ip", "nsenter", "unshare", "iptables-save"],
        files: [
            "/usr/lib/cni/portmap",
            "/usr/lib/cni/bandwidth",
            "/usr/lib/cni/loopback",
        ]
    );
    let mut defer = Defer::new();
    let net = setup(&mut defer, CHAIN);
    let list = net.conflist_json();
    let netns = Netns::new();
    let container_id = format!("{:0>64}", net.name);
    loopback_add(&netns, &container_id);

    let host_port = std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The shapes containerd's CRI sends (K8S_* args with IgnoreUnknown, capabilities).
    let cni_args = format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=unicni-test;K8S_POD_NAME={};\
         K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID=uid-{}",
        net.name, net.name
    );
    let inv = Invocation {
        container_id: &container_id,
        netns: &netns.path,
        ifname: "eth0",
        cni_args: &cni_args,
        runtime_config: json!({
            "portMappings": [
                { "hostPort": host_port, "containerPort": 8080, "protocol": "tcp" }
            ],
            "bandwidth": {
                "ingressRate": 10_000_000, "ingressBurst": 1_000_000,
                "egressRate": 10_000_000, "egressBurst": 1_000_000
            },
        }),
    };
    // Whatever happens below, portmap's chains and bandwidth's ifb must not outlive
    // the test: DEL the whole chain at the end (a no-op after the test's own DELs).
    cniexec::defer_del(
        &mut defer,
        "CNI DEL of the chain",
        list.clone(),
        net.bin_dir.clone(),
        container_id.clone(),
        "IgnoreUnknown=1",
        inv.runtime_config.clone(),
    );
    let result = cniexec::add(&list, &net.bin_dir, &inv).unwrap_or_else(|e| panic!("ADD: {e}"));

    // The last plugin's result is unicni's, passed through: same address, same interface.
    let ip_cidr = result["ips"][0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("final chain result has no ips: {result}"));
    let ip = ip_cidr.split('/').next().unwrap().to_string();
    let subnet: ipnet::Ipv4Net = net.subnet.parse().unwrap();
    assert!(
        subnet.contains(&ip.parse::<std::net::Ipv4Addr>().unwrap()),
        "got {ip}, outside {subnet}"
    );
    let eth0 = result["interfaces"]
        .as_array()
        .and_then(|ifs| ifs.iter().find(|i| i["name"] == "eth0"))
        .unwrap_or_else(|| panic!("final result lists no eth0: {result}"));
    assert_eq!(
        eth0["sandbox"], netns.path,
        "eth0's sandbox should be the CNI_NETNS given (/proc/PID/ns/net)"
    );
    let addr = netns.exec("ip", &["-4", "addr", "show", "dev", "eth0"]);
    assert!(
        String::from_utf8_lossy(&addr.stdout).contains(ip_cidr),
        "eth0 in {} does not carry {ip_cidr}: {}",
        netns.path,
        String::from_utf8_lossy(&addr.stdout)
    );
    let lo = netns.exec("ip", &["link", "show", "lo"]);
    assert!(
        String::from_utf8_lossy(&lo.stdout).contains("UP"),
        "loopback ADD left lo down"
    );
    let ping = netns.exec("ping", &["-c", "1", "-W", "2", &net.gateway]);
    assert!(
        ping.status.success(),
        "pod cannot ping its gateway {}",
        net.gateway
    );

    // portmap and bandwidth acted on unicni's result.
    let rules = ruleset();
    assert!(
        rules
            .lines()
            .any(|l| l.contains(&format!("{ip}:8080")) || (l.contains("DNAT") && l.contains(&ip))),
        "no DNAT to {ip}:8080 for hostPort {host_port} (portmap got no usable prevResult?)"
    );
    let ifb = bandwidth_ifb_name(&net.name, &container_id);
    assert!(
        runtimes::guard::link_exists(&ifb),
        "bandwidth created no ifb {ifb} (it needs the host veth from prevResult)"
    );

    // CHECK through the chain except portmap: Debian's portmap 1.1.1 fails CHECK on any
    // IPv4-only attachment ("could not check ipv6 dnat: chain CNI-DN-... not found"), on
    // the reference bridge exactly as on unicni (UNICNI_CHAIN_PLUGIN=reference shows it).
    let mut check_list = list.clone();
    check_list["plugins"]
        .as_array_mut()
        .unwrap()
        .retain(|p| p["type"] != "portmap");
    cniexec::check(&check_list, &net.bin_dir, &inv, &result)
        .unwrap_or_else(|e| panic!("CHECK: {e}"));

    // CRI: StopPodSandbox runs DEL with the netns, RemovePodSandbox again without one.
    cniexec::del(&list, &net.bin_dir, &inv, Some(&result)).unwrap_or_else(|e| panic!("DEL: {e}"));
    let no_netns = Invocation { netns: "", ..inv };
    cniexec::del(&list, &net.bin_dir, &no_netns, Some(&result))
        .unwrap_or_else(|e| panic!("second DEL with empty CNI_NETNS: {e}"));
    net.assert_released(&[&container_id], &[&ip]);
    drop(netns);
}

/// A DEL for a container unicni never saw, and for a netns that no longer exists (the
/// process behind /proc/PID/ns/net has exited), succeeds and changes nothing.
#[test]
fn del_of_unknown_container_and_vanished_proc_netns_succeeds() {
    crate::require!("runtime_chain", tools: ["ip", "unshare"], files: ["/usr/lib/cni/portmap"]);
    let mut defer = Defer::new();
    let net = setup(&mut defer, &["portmap"]);
    let list = net.conflist_json();
    let netns = Netns::new();
    let gone = netns.path.clone();
    drop(netns);
    let container_id = format!("{:0>64}", net.name);
    for ns in ["", gone.as_str()] {
        let inv = Invocation {
            container_id: &container_id,
            netns: ns,
            ifname: "eth0",
            cni_args: "IgnoreUnknown=1",
            runtime_config: json!({ "portMappings": [] }),
        };
        cniexec::del(&list, &net.bin_dir, &inv, None)
            .unwrap_or_else(|e| panic!("DEL with CNI_NETNS={ns:?} of an unknown container: {e}"));
    }
    net.assert_released(&[&container_id], &[]);
}

/// unicni; `UNICNI_CHAIN_PLUGIN=reference` runs the same checks on the reference bridge.
fn plugin_under_test() -> Plugin {
    match std::env::var("UNICNI_CHAIN_PLUGIN").as_deref() {
        Ok("reference") => Plugin::Reference,
        _ => Plugin::Unicni,
    }
}
