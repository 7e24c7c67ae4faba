//! containerd's CRI plugin (the kubelet's path) running pods on a network that
//! `unicni install` set up, with the reference portmap and bandwidth chained after it.
//!
//! Needs root, containerd, runc, busybox-static and the reference CNI plugins.

mod runtimes;

use runtimes::containerd::Containerd;
use runtimes::cri::{Cri, Pod, PodSpec};
use runtimes::guard::{mounts_under, Defer};
use runtimes::image::{write_images, IMAGE_REF};
use runtimes::network::{install, Network, Plugin};
use std::io::Read;
use std::time::Duration;

const CHAIN: &[&str] = &["portmap", "bandwidth"];

/// Pods created by the test; whatever the test did not remove is stopped and removed
/// through CRI (so CNI DEL runs) before containerd is stopped.
struct Pods {
    cri: Cri,
    ids: Vec<String>,
}

impl Pods {
    fn run(&mut self, spec: &PodSpec, log_dir: &std::path::Path) -> Pod {
        let pod = self
            .cri
            .run_pod(spec, log_dir)
            .unwrap_or_else(|e| panic!("RunPodSandbox {}: {e}", spec.name));
        self.ids.push(pod.id.clone());
        pod
    }

    fn stop_and_remove(&mut self, id: &str) {
        self.cri
            .stop_pod(id)
            .unwrap_or_else(|e| panic!("StopPodSandbox {id}: {e}"));
        self.cri
            .remove_pod(id)
            .unwrap_or_else(|e| panic!("RemovePodSandbox {id} (CNI DEL with empty netns): {e}"));
        self.ids.retain(|p| p != id);
    }
}

impl Drop for Pods {
    fn drop(&mut self) {
        for id in std::mem::take(&mut self.ids) {
            if let Err(e) = self.cri.stop_pod(&id) {
                eprintln!("cleanup: StopPodSandbox {id}: {e}");
            }
            if let Err(e) = self.cri.remove_pod(&id) {
                eprintln!("cleanup: RemovePodSandbox {id}: {e}");
            }
        }
    }
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The address this host reaches the world from (a hostPort is served on it).
fn node_ip(net: &Network) -> String {
    let out = runtimes::util::output(
        std::process::Command::new("ip").args(["-j", "-4", "route", "get", "1.1.1.1"]),
    );
    let routes: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    routes[0]["prefsrc"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| net.gateway.clone())
}

fn fetch(addr: &str) -> std::io::Result<String> {
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(3))?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    Ok(body)
}

fn two_pods_ping_hostport_and_clean_removal(plugin: Plugin) {
    crate::require!(
        "runtime_cri",
        tools: ["containerd", "ctr", "runc", "ip", "iptables-save", "unshare"],
        files: [
            "/usr/lib/cni/portmap",
            "/usr/lib/cni/bandwidth",
            "/usr/lib/cni/bridge",
            "/usr/lib/cni/host-local",
            "/usr/lib/cni/loopback",
            runtimes::image::BUSYBOX,
        ]
    );
    let mut defer = Defer::new();
    let tmp = defer.temp_dir("unicni-cri-");
    let net = install(plugin, &tmp.join("cni"), CHAIN, &mut defer);
    let (_, oci) = write_images(&tmp);
    let ctrd = Containerd::start(&tmp.join("containerd"), &net, &oci);
    let mut pods = Pods {
        cri: ctrd.cri(),
        ids: Vec::new(),
    };
    let logs = tmp.join("logs");
    std::fs::create_dir_all(&logs).unwrap();

    let cgroup_parent = format!("/unicni-test-{}", net.name);
    defer.cgroup(&cgroup_parent);
    let host_port = free_tcp_port();
    let mut spec_a = PodSpec {
        name: format!("{}-a", net.name),
        host_ports: vec![(8080, host_port as i32)],
        cgroup_parent: cgroup_parent.clone(),
        ..Default::default()
    };
    spec_a
        .annotations
        .insert("kubernetes.io/ingress-bandwidth".into(), "10M".into());
    spec_a
        .annotations
        .insert("kubernetes.io/egress-bandwidth".into(), "10M".into());
    let spec_b = PodSpec {
        name: format!("{}-b", net.name),
        cgroup_parent: cgroup_parent.clone(),
        ..Default::default()
    };
    let pod_a = pods.run(&spec_a, &logs);
    let pod_b = pods.run(&spec_b, &logs);
    let server = pods
        .cri
        .start_container(
            &pod_a,
            "server",
            IMAGE_REF,
            &[
                "/bin/sh",
                "-c",
                "while true; do echo hello-from-a | nc -l -p 8080; done",
            ],
        )
        .unwrap_or_else(|e| panic!("start server container: {e}"));
    let client = pods
        .cri
        .start_container(&pod_b, "client", IMAGE_REF, &["/bin/sleep", "infinity"])
        .unwrap_or_else(|e| panic!("start client container: {e}"));

    let ip_a = pods.cri.pod_ip(&pod_a);
    let ip_b = pods.cri.pod_ip(&pod_b);
    let subnet: ipnet::Ipv4Net = net.subnet.parse().unwrap();
    for (pod, ip) in [(&pod_a, &ip_a), (&pod_b, &ip_b)] {
        let addr: std::net::Ipv4Addr = ip
            .parse()
            .unwrap_or_else(|_| panic!("pod {} has no IPv4 address: {ip:?}", pod.id));
        assert!(
            subnet.contains(&addr),
            "pod {} got {ip}, outside the node subnet {subnet}",
            pod.id
        );
    }
    assert_ne!(ip_a, ip_b, "both pods got the same address");
    assert_eq!(
        net.bridge_ports().len(),
        2,
        "one host veth per pod on {}",
        net.bridge
    );

    let (code, out) = pods
        .cri
        .exec(&client, &["ping", "-c", "2", "-W", "2", &ip_a]);
    assert_eq!(code, 0, "pod b cannot ping pod a ({ip_a}):\n{out}");
    let (code, out) = pods
        .cri
        .exec(&server, &["ping", "-c", "2", "-W", "2", &ip_b]);
    assert_eq!(code, 0, "pod a cannot ping pod b ({ip_b}):\n{out}");
    let (code, out) = pods
        .cri
        .exec(&client, &["ping", "-c", "1", "-W", "2", &net.gateway]);
    assert_eq!(
        code, 0,
        "pod b cannot ping its gateway {}:\n{out}",
        net.gateway
    );

    // hostPort through the chained portmap: from the host to the node address.
    let target = format!("{}:{host_port}", node_ip(&net));
    let body = runtimes::util::wait_for(
        &format!("hostPort {target} to answer"),
        Duration::from_secs(10),
        || fetch(&target).ok().filter(|b| b.contains("hello-from-a")),
    );
    assert!(body.contains("hello-from-a"));

    // bandwidth chained after the main plugin got the prevResult and shaped the host veth.
    let ifb = runtimes::network::bandwidth_ifb_name(&net.name, &pod_a.id);
    assert!(
        runtimes::guard::link_exists(&ifb),
        "bandwidth (chained) created no ifb {ifb} for pod a: prevResult did not reach it?"
    );

    pods.stop_and_remove(&pod_a.id);
    pods.stop_and_remove(&pod_b.id);
    assert!(pods.cri.list_pods().is_empty(), "CRI still lists pods");
    net.assert_released(&[&pod_a.id, &pod_b.id], &[&ip_a, &ip_b]);
    let nsfs: Vec<_> = mounts_under(&ctrd.state)
        .into_iter()
        .filter(|m| m.to_string_lossy().contains("netns"))
        .collect();
    assert!(nsfs.is_empty(), "pod netns still mounted: {nsfs:?}");
    assert!(
        fetch(&target).is_err(),
        "hostPort {target} still answers after the pod was removed"
    );
}

#[test]
fn cri_pods_on_unicni() {
    two_pods_ping_hostport_and_clean_removal(Plugin::Unicni);
}

/// The same scenario on the reference bridge plugin: when this passes and the unicni one
/// fails, the difference is in unicni, not in the harness or the machine.
#[test]
fn cri_pods_on_reference_bridge() {
    two_pods_ping_hostport_and_clean_removal(Plugin::Reference);
}
