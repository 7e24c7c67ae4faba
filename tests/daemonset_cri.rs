//! The DaemonSet that `unicni manifests` renders, run the way the kubelet runs it: the
//! image scripts/image.sh builds, imported into a containerd whose CRI plugin runs the pod
//! template (tests/runtimes/kubelet.rs), against `unicni kube-sim` as the API server. The
//! node is a network namespace: containerd, the API server and the host-network pod all
//! live in it, so nothing touches the machine's own network. A pod created through CRI
//! afterwards gets its address from the plugin the init container installed.
//!
//! Needs root, podman, containerd, runc, curl and nft.

mod runtimes;

use runtimes::containerd::{Containerd, CRI_NAMESPACE};
use runtimes::cri::{Cri, PodSpec};
use runtimes::guard::{Daemon, Defer};
use runtimes::image::{write_images, IMAGE_REF};
use runtimes::kubelet::{Kubelet, Node};
use runtimes::util::{run, wait_for};
use serde_yaml::Value;
use std::path::Path;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;
use unicni_testkit::{unique, Netns};

const BIN: &str = env!("CARGO_BIN_EXE_unicni");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const API_PORT: u16 = 6443;

/// Builds the image from the binary under test; returns the OCI archive.
fn build_image(dir: &Path, image: &str, defer: &mut Defer) -> std::path::PathBuf {
    let archive = dir.join("unicni-image.tar");
    let out = Command::new(Path::new(ROOT).join("scripts/image.sh"))
        .env("UNICNI_IMAGE_BINARY", BIN)
        .env("UNICNI_IMAGE", image)
        .env("UNICNI_IMAGE_ARCHIVE", &archive)
        .output()
        .unwrap();
    let image = image.to_string();
    defer.push(format!("podman rmi {image}"), move || {
        let _ = Command::new("podman")
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            .args(["rmi", "--force", &image])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    });
    assert!(
        out.status.success(),
        "scripts/image.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    archive
}

/// containerd with its CRI plugin, started inside the node's namespace.
fn start_containerd(netns: &str, dir: &Path, conf_dir: &Path, bin_dir: &Path) -> Containerd {
    let config = Containerd::write_cri_config(dir, bin_dir, conf_dir);
    // In the node's network namespace with a mount namespace of its own, whose /sys
    // is the node's (the plugin finds the node's links there, as on a real node) with
    // the machine's cgroup mounts bound back in (runc needs them).
    let cgroups = dir.join("cgroup");
    std::fs::create_dir_all(&cgroups).unwrap();
    let script = format!(
        "mount --rbind /sys/fs/cgroup {cg} && mount -t sysfs sysfs /sys && \
             mount --rbind {cg} /sys/fs/cgroup && exec containerd --config {config}",
        cg = cgroups.display(),
        config = config.display()
    );
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/run/netns/{netns}")).args([
        "unshare",
        "--mount",
        "--propagation",
        "slave",
        "sh",
        "-c",
        &script,
    ]);
    Containerd::spawn(dir, cmd)
}

fn docs(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// The cluster both tests share: an API server (in the first node's namespace, on its
/// underlay address), the image, the sandbox image.
struct Cluster {
    api_dir: PathBuf,
    api_host: String,
    archive: PathBuf,
    sandbox_image: PathBuf,
    image: String,
    _api: Daemon,
}

/// One node: its namespace (underlay `eth0`), containerd, its CNI directories and the
/// kubelet-like runner. Fields drop in order: runner, runtime, namespace.
struct TestNode {
    kubelet: Kubelet,
    ctrd: Containerd,
    ns: Netns,
    dir: PathBuf,
    conf_dir: PathBuf,
    bin_dir: PathBuf,
}

/// Two namespaces joined by a veth pair, each end `eth0`: `a` gets .1, `b` .2 of
/// 192.168.79.0/24.
fn node_namespaces(two: bool) -> (Netns, Option<Netns>) {
    let a = Netns::with_lo_up("udsa");
    let b = two.then(|| Netns::with_lo_up("udsb"));
    let mut cmds: Vec<Vec<String>> = Vec::new();
    let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    match &b {
        Some(b) => {
            cmds.push(v(&[
                "ip", "link", "add", "eth0", "netns", &a.name, "type", "veth", "peer", "name",
                "eth0", "netns", &b.name,
            ]));
            cmds.push(v(&[
                "ip",
                "-n",
                &b.name,
                "addr",
                "add",
                "192.168.79.2/24",
                "dev",
                "eth0",
            ]));
            cmds.push(v(&["ip", "-n", &b.name, "link", "set", "eth0", "up"]));
        }
        None => {
            cmds.push(v(&[
                "ip", "-n", &a.name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
            ]));
            cmds.push(v(&["ip", "-n", &a.name, "link", "set", "eth1", "up"]));
        }
    }
    cmds.push(v(&[
        "ip",
        "-n",
        &a.name,
        "addr",
        "add",
        "192.168.79.1/24",
        "dev",
        "eth0",
    ]));
    cmds.push(v(&["ip", "-n", &a.name, "link", "set", "eth0", "up"]));
    for c in cmds {
        run(Command::new(&c[0]).args(&c[1..]));
    }
    (a, b)
}

fn node_yaml(name: &str, cidr: &str, ip: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\nspec:\n  podCIDR: {cidr}\n\
         status:\n  addresses:\n  - type: InternalIP\n    address: {ip}\n"
    )
}

impl Cluster {
    /// kube-sim in namespace `ns` on 192.168.79.1, seeded with `nodes`; the image built.
    fn start(tmp: &Path, ns: &Netns, nodes: &str, defer: &mut Defer) -> Cluster {
        Cluster::start_on(tmp, ns, "192.168.79.1", nodes, defer)
    }

    /// kube-sim in namespace `ns` on `api_host` (an address of that namespace).
    fn start_on(tmp: &Path, ns: &Netns, api_host: &str, nodes: &str, defer: &mut Defer) -> Cluster {
        let api_dir = tmp.join("api");
        let seed = tmp.join("nodes.yaml");
        std::fs::write(&seed, nodes).unwrap();
        let api_host = api_host.to_string();
        let api_log = std::fs::File::create(tmp.join("kube-sim.log")).unwrap();
        let api = Command::new("ip")
            .args(["netns", "exec", &ns.name, BIN, "kube-sim", "--listen"])
            .arg(format!("{api_host}:{API_PORT}"))
            .arg("--dir")
            .arg(&api_dir)
            .arg("--seed")
            .arg(&seed)
            .stdout(Stdio::null())
            .stderr(api_log)
            .spawn()
            .unwrap();
        let api = Daemon::new("kube-sim", api);
        wait_for("kube-sim ready", Duration::from_secs(30), || {
            api_dir.join("ready").exists().then_some(())
        });
        let image = format!("localhost/{}:test", unique("unicni-ds"));
        let archive = build_image(tmp, &image, defer);
        let (_, sandbox_image) = write_images(tmp);
        Cluster {
            api_dir,
            api_host,
            archive,
            sandbox_image,
            image,
            _api: api,
        }
    }

    fn kubectl(&self, ns: &Netns, args: &[&str]) -> String {
        run(Command::new("ip")
            .args(["netns", "exec", &ns.name, "kubectl", "--kubeconfig"])
            .arg(self.api_dir.join("kubeconfig"))
            .args(args))
    }

    /// A node named `name` in `ns`: containerd with both images, CNI directories with the
    /// reference loopback plugin (a node's runtime brings it; unicni brings only itself).
    fn node(
        &self,
        tmp: &Path,
        name: &str,
        ns: Netns,
        defer: &mut Defer,
        objects: Vec<Value>,
    ) -> TestNode {
        let dir = tmp.join(name);
        let (conf_dir, bin_dir) = (dir.join("cni/net.d"), dir.join("cni/bin"));
        std::fs::create_dir_all(&bin_dir).unwrap();
        std::fs::copy("/usr/lib/cni/loopback", bin_dir.join("loopback"))
            .expect("the reference loopback plugin (containernetworking-plugins)");
        let ctrd = start_containerd(&ns.name, &dir.join("containerd"), &conf_dir, &bin_dir);
        run(ctrd
            .ctr(CRI_NAMESPACE)
            .args(["images", "import"])
            .arg(&self.sandbox_image));
        run(ctrd
            .ctr(CRI_NAMESPACE)
            .args(["images", "import"])
            .arg(&self.archive));
        let cgroup_parent = format!("/{}", unique("unicni-ds-"));
        defer.cgroup(&cgroup_parent);
        let kubelet = Kubelet::connect(
            &ctrd.socket,
            Node {
                name: name.into(),
                netns: ns.name.clone(),
                api_host: self.api_host.clone(),
                api_port: API_PORT,
                service_account: self.api_dir.join("serviceaccount"),
                dir: dir.join("kubelet"),
                cgroup_parent,
            },
            objects,
        );
        TestNode {
            kubelet,
            ctrd,
            ns,
            dir,
            conf_dir,
            bin_dir,
        }
    }
}

/// `unicni manifests` of a flannel vxlan config over `network`, for a node whose private
/// directories are under `dir` (the manifests name the CNI directories; the config the
/// state and run directories).
fn manifests(image: &str, dir: &Path, network: &str, net_name: &str) -> (Vec<Value>, Value) {
    manifests_of(
        image,
        dir,
        &format!(
            "[cluster]\nname = \"ds\"\n[backend]\nkind = \"flannel\"\n\
             [flannel]\nnetwork = \"{network}\"\nmode = \"vxlan\"\ninterface = \"eth0\"\n\
             [cni]\nnetwork_name = \"{net_name}\"\n"
        ),
    )
}

/// `unicni manifests` of the config `head` (cluster, backend, cni, cloud sections) with
/// the Kubernetes store and the node's state and run directories under `dir`.
fn manifests_of(image: &str, dir: &Path, head: &str) -> (Vec<Value>, Value) {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("unicni.toml");
    std::fs::write(
        &config,
        format!(
            "{head}[store]\nkind = \"kubernetes\"\n\
             [node]\nstate_dir = \"{d}/node/state\"\nrun_dir = \"{d}/node/run\"\n\
             [agent]\nreconcile_seconds = 1\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let yaml = run(Command::new(BIN)
        .args(["manifests", "--config"])
        .arg(&config)
        .args(["--image", image, "--cni-conf-dir"])
        .arg(dir.join("cni/net.d"))
        .arg("--cni-bin-dir")
        .arg(dir.join("cni/bin")));
    let objects = docs(&yaml);
    let ds = objects
        .iter()
        .find(|o| o["kind"] == "DaemonSet")
        .expect("a DaemonSet")
        .clone();
    (objects, ds)
}

/// The network namespace of a running CRI container, as `/proc/PID/ns/net` of its task.
fn container_netns(ctrd: &Containerd, container: &str) -> PathBuf {
    let tasks = run(ctrd.ctr(CRI_NAMESPACE).args(["tasks", "ls"]));
    let pid = tasks
        .lines()
        .find(|l| l.starts_with(container))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("container {container} has no task: {tasks}"));
    PathBuf::from(format!("/proc/{pid}/ns/net"))
}

/// What a TCP conversation between two pods saw: exchanges completed, the longest wait
/// for one, and the first error (a reset, a timeout or a byte that came back wrong).
struct TcpTally {
    exchanges: u64,
    bytes: u64,
    longest: Duration,
    error: Option<String>,
}

/// An echo server in the namespace `server_ns` on `addr` and a client in `client_ns`
/// that sends 1 KiB requests (a running counter pattern) every 20 ms over one connection
/// and checks every byte of each response, until `stop` is set. The sockets are created
/// inside the pods' namespaces; the threads that use them are ordinary threads.
fn tcp_conversation(
    server_ns: PathBuf,
    client_ns: PathBuf,
    addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<TcpTally> {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    let listener =
        unicni_testkit::in_netns_at(&server_ns, move || std::net::TcpListener::bind(addr))
            .unwrap_or_else(|e| panic!("bind {addr} in the server pod: {e}"));
    std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        loop {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if c.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut conn = unicni_testkit::in_netns_at(&client_ns, move || {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
    })
    .unwrap_or_else(|e| panic!("connect to {addr} from the client pod: {e}"));
    conn.set_nodelay(true).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    std::thread::spawn(move || {
        let mut tally = TcpTally {
            exchanges: 0,
            bytes: 0,
            longest: Duration::ZERO,
            error: None,
        };
        let mut counter: u64 = 0;
        let mut back = vec![0u8; 1024];
        while !stop.load(Ordering::SeqCst) {
            let req: Vec<u8> = (0..1024u64)
                .map(|i| ((counter * 1024 + i) % 251) as u8)
                .collect();
            let t = std::time::Instant::now();
            let res = conn
                .write_all(&req)
                .and_then(|_| conn.read_exact(&mut back));
            if let Err(e) = res {
                tally.error = Some(format!("exchange {counter}: {e}"));
                break;
            }
            if back != req {
                let at = back.iter().zip(&req).position(|(a, b)| a != b).unwrap();
                tally.error = Some(format!("exchange {counter}: byte {at} came back wrong"));
                break;
            }
            tally.longest = tally.longest.max(t.elapsed());
            tally.exchanges += 1;
            tally.bytes += 1024;
            counter += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = conn.shutdown(std::net::Shutdown::Both);
        tally
    })
}

#[test]
fn flannel_daemonset_runs_through_cri_install_then_a_ready_agent() {
    if !unicni_testkit::require_root() {
        return;
    }
    let mut defer = Defer::new();
    let tmp = defer.temp_dir("unicni-ds-");
    let (ns, _) = node_namespaces(false);
    let cluster = Cluster::start(
        &tmp,
        &ns,
        &node_yaml("node-a", "10.81.3.0/24", "192.168.79.1"),
        &mut defer,
    );
    let (objects, ds) = manifests(
        &cluster.image,
        &tmp.join("node-a"),
        "10.81.0.0/16",
        &unique("ds"),
    );
    let mut node = cluster.node(&tmp, "node-a", ns, &mut defer, objects);

    let pod = node
        .kubelet
        .run_daemonset(&ds)
        .unwrap_or_else(|e| panic!("running the DaemonSet's pod: {e}"));
    let outcome = node
        .kubelet
        .wait_ready(&ds, &pod, "agent", Duration::from_secs(60))
        .and_then(|_| {
            let live = Duration::from_secs(10);
            node.kubelet
                .wait_probe(&ds, &pod, "agent", "livenessProbe", live)
        });
    // A pod the node then runs gets its network from the plugin the init container
    // installed (CRI reads the conflist from the directory the DaemonSet mounted).
    let app = outcome.as_ref().ok().map(|_| {
        let mut cri = Cri::connect(&node.ctrd.socket);
        wait_for("CRI NetworkReady", Duration::from_secs(30), || {
            cri.network_ready().then_some(())
        });
        let spec = PodSpec {
            name: unique("app"),
            cgroup_parent: node.kubelet.node.cgroup_parent.clone(),
            ..Default::default()
        };
        let log_dir = tmp.join("app-logs");
        std::fs::create_dir_all(&log_dir).unwrap();
        let res = cri.run_pod(&spec, &log_dir).map(|p| {
            let ip = cri.pod_ip(&p);
            let _ = cri.stop_pod(&p.id);
            let _ = cri.remove_pod(&p.id);
            ip
        });
        res.map_err(|e| e.to_string())
    });
    let install_log = pod.log("install");
    let agent_log = pod.log("agent");
    node.kubelet.remove(&pod);
    outcome.unwrap_or_else(|e| panic!("{e}\ninstall log:\n{install_log}"));
    let app_ip = app
        .unwrap()
        .unwrap_or_else(|e| panic!("RunPodSandbox of an app pod: {e}\nagent log:\n{agent_log}"));
    let app_ip: std::net::Ipv4Addr = app_ip
        .parse()
        .unwrap_or_else(|_| panic!("app pod IP {app_ip:?}"));
    assert!(
        "10.81.3.0/24"
            .parse::<ipnet::Ipv4Net>()
            .unwrap()
            .contains(&app_ip),
        "app pod {app_ip} outside the node's spec.podCIDR"
    );

    // What the init container did, seen from the node.
    let conflist = std::fs::read_to_string(node.conf_dir.join("10-unicni.conflist"))
        .unwrap_or_else(|e| panic!("conflist: {e}\ninstall log:\n{install_log}"));
    assert!(conflist.contains("\"type\": \"unicni\""), "{conflist}");
    assert!(
        node.bin_dir.join("unicni").exists(),
        "the plugin binary on the node"
    );
    assert!(
        install_log.contains("cluster lock created"),
        "install ran against the API server: {install_log}"
    );
    // What the agent did: the node's lease from spec.podCIDR (the node name came from
    // fieldRef spec.nodeName), published through the API with the service account.
    let lease = std::fs::read_to_string(node.dir.join("node/run/flannel/subnet.json"))
        .unwrap_or_else(|e| panic!("lease file: {e}\nagent log:\n{agent_log}"));
    assert!(lease.contains("10.81.3.0/24"), "{lease}");
    let annotations = cluster.kubectl(
        &node.ns,
        &[
            "get",
            "node",
            "node-a",
            "-o",
            "jsonpath={.metadata.annotations}",
        ],
    );
    assert!(
        annotations.contains("192.168.79.1"),
        "node annotations: {annotations}"
    );
}

/// The lock seen from the runner: a second node whose ConfigMap changes a locked field
/// (the cluster CIDR) fails in its init container with the drift message, and its agent
/// never starts.
#[test]
fn a_second_node_with_a_changed_locked_field_fails_in_install_and_never_becomes_ready() {
    if !unicni_testkit::require_root() {
        return;
    }
    let mut defer = Defer::new();
    let tmp = defer.temp_dir("unicni-ds-");
    let (a_ns, b_ns) = node_namespaces(true);
    let nodes = node_yaml("node-a", "10.81.3.0/24", "192.168.79.1")
        + &node_yaml("node-b", "10.81.4.0/24", "192.168.79.2");
    let cluster = Cluster::start(&tmp, &a_ns, &nodes, &mut defer);
    let net_name = unique("ds");

    let (objects, ds) = manifests(
        &cluster.image,
        &tmp.join("node-a"),
        "10.81.0.0/16",
        &net_name,
    );
    let mut a = cluster.node(&tmp, "node-a", a_ns, &mut defer, objects);
    let pod = a
        .kubelet
        .run_daemonset(&ds)
        .unwrap_or_else(|e| panic!("node-a: {e}"));
    let ready = a
        .kubelet
        .wait_ready(&ds, &pod, "agent", Duration::from_secs(60));
    a.kubelet.remove(&pod);
    ready.unwrap_or_else(|e| panic!("node-a: {e}"));

    let (objects, ds) = manifests(
        &cluster.image,
        &tmp.join("node-b"),
        "10.82.0.0/16",
        &net_name,
    );
    let mut b = cluster.node(&tmp, "node-b", b_ns.unwrap(), &mut defer, objects);
    let err = match b.kubelet.run_daemonset(&ds) {
        Ok(pod) => {
            b.kubelet.remove(&pod);
            panic!("node-b's pod ran with a changed cluster CIDR")
        }
        Err(e) => e,
    };
    assert!(err.contains("init container install exited"), "{err}");
    assert!(
        err.contains("locked at cluster bootstrap")
            && err.contains("10.81.0.0/16")
            && err.contains("10.82.0.0/16"),
        "the drift message names the field, old and new value: {err}"
    );
    assert!(
        !b.conf_dir.join("10-unicni.conflist").exists(),
        "a refused node gets no conflist"
    );
}

/// A rolling update as the DaemonSet controller does it with maxUnavailable 1: the
/// node's pod is deleted and a pod of the new image (a new build) takes its place, while
/// two pods on the node ping each other and talk over an open TCP connection (1 KiB
/// request/response every 20 ms, every byte checked). No packet is lost and the
/// connection never stalls or breaks: the datapath stays in the
/// kernel while the agent is replaced, and the new install rewrites the conflist in place.
#[test]
fn replacing_the_daemonset_pod_loses_no_pod_traffic_and_uninstall_leaves_the_node_clean() {
    if !unicni_testkit::require_root() {
        return;
    }
    let mut defer = Defer::new();
    let tmp = defer.temp_dir("unicni-ds-");
    let (ns, _) = node_namespaces(false);
    let cluster = Cluster::start(
        &tmp,
        &ns,
        &node_yaml("node-a", "10.81.3.0/24", "192.168.79.1"),
        &mut defer,
    );
    let dir = tmp.join("node-a");
    let net_name = unique("ds");
    let (objects, ds) = manifests(&cluster.image, &dir, "10.81.0.0/16", &net_name);
    let mut node = cluster.node(&tmp, "node-a", ns, &mut defer, objects);
    let old = node
        .kubelet
        .run_daemonset(&ds)
        .unwrap_or_else(|e| panic!("old pod: {e}"));
    node.kubelet
        .wait_ready(&ds, &old, "agent", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("old pod: {e}"));

    // Two application pods with a busybox container each.
    let mut cri = Cri::connect(&node.ctrd.socket);
    wait_for("CRI NetworkReady", Duration::from_secs(30), || {
        cri.network_ready().then_some(())
    });
    let log_dir = tmp.join("app-logs");
    std::fs::create_dir_all(&log_dir).unwrap();
    let mut apps = Vec::new();
    for _ in 0..2 {
        let spec = PodSpec {
            name: unique("app"),
            cgroup_parent: node.kubelet.node.cgroup_parent.clone(),
            ..Default::default()
        };
        let pod = cri
            .run_pod(&spec, &log_dir)
            .unwrap_or_else(|e| panic!("app pod: {e}"));
        let ip = cri.pod_ip(&pod);
        let c = cri
            .start_container(&pod, "app", IMAGE_REF, &["/bin/sleep", "3600"])
            .unwrap_or_else(|e| panic!("app container: {e}"));
        apps.push((pod, ip, c));
    }
    let (from, to) = (apps[0].2.clone(), apps[1].1.clone());

    // The new build, imported on the node as the kubelet's image pull would.
    let new_image = format!("localhost/{}:new", unique("unicni-ds"));
    let new_archive = build_image(&tmp.join("new"), &new_image, &mut defer);
    run(node
        .ctrd
        .ctr(CRI_NAMESPACE)
        .args(["images", "import"])
        .arg(&new_archive));
    let (_, new_ds) = manifests(&new_image, &dir, "10.81.0.0/16", &net_name);

    // An open TCP connection between the pods, exchanging data throughout.
    let server_ns = container_netns(&node.ctrd, &apps[1].2);
    let client_ns = container_netns(&node.ctrd, &apps[0].2);
    let port = unicni_testkit::free_port();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let talker = tcp_conversation(
        server_ns,
        client_ns,
        std::net::SocketAddr::new(to.parse().unwrap(), port),
        stop.clone(),
    );

    // 60 pings, 0.2 s apart, while the pod is replaced.
    let socket = node.ctrd.socket.clone();
    let pinger = std::thread::spawn(move || {
        let mut cri = Cri::connect(&socket);
        cri.exec(&from, &["ping", "-c", "60", "-i", "0.2", "-W", "1", &to])
    });
    std::thread::sleep(Duration::from_secs(2));
    node.kubelet.remove(&old);
    let new = node.kubelet.run_daemonset(&new_ds);
    let ready = new.as_ref().map_err(|e| e.clone()).and_then(|p| {
        node.kubelet
            .wait_ready(&new_ds, p, "agent", Duration::from_secs(60))
    });
    let (code, ping) = pinger.join().unwrap();
    // The connection keeps working with the new agent in place, then closes cleanly.
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let tcp = talker.join().unwrap();
    for (pod, _, _) in &apps {
        let _ = cri.stop_pod(&pod.id);
        let _ = cri.remove_pod(&pod.id);
    }
    if let Ok(p) = &new {
        node.kubelet.remove(p);
    }
    ready.unwrap_or_else(|e| panic!("new pod: {e}"));
    assert_eq!(code, 0, "ping during the update: {ping}");
    assert!(
        ping.contains("60 packets transmitted, 60 packets received"),
        "ping lost packets while the DaemonSet pod was replaced: {ping}"
    );
    assert!(
        tcp.error.is_none(),
        "the TCP connection between the pods broke while the DaemonSet pod was replaced \
         after {} exchanges ({} bytes): {}",
        tcp.exchanges,
        tcp.bytes,
        tcp.error.unwrap_or_default()
    );
    // 14 s of pings at one exchange per ~20 ms: a stalled connection shows as few
    // exchanges or a long wait for one.
    assert!(
        tcp.exchanges >= 200,
        "only {} TCP exchanges while the pod was replaced",
        tcp.exchanges
    );
    assert!(
        tcp.longest < Duration::from_secs(1),
        "a TCP exchange waited {:?} during the replacement",
        tcp.longest
    );

    // Removal: the DaemonSet's pod is gone (above); `unicni uninstall` on the node leaves
    // it as it was before the DaemonSet came.
    let ns = &node.ns.name;
    let out = run(Command::new("ip")
        .args(["netns", "exec", ns, BIN, "uninstall", "--purge", "--config"])
        .arg(dir.join("unicni.toml"))
        .arg("--cni-conf-dir")
        .arg(&node.conf_dir)
        .arg("--cni-bin-dir")
        .arg(&node.bin_dir));
    let links = run(Command::new("ip").args(["-n", ns, "-o", "link", "show"]));
    let mut names: Vec<&str> = links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n))
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["eth0", "eth1", "lo"],
        "links left on the node: {links}\n{out}"
    );
    let tables = run(Command::new("ip").args(["netns", "exec", ns, "nft", "list", "tables"]));
    assert!(!tables.contains("unicni"), "nftables left: {tables}");
    let routes = run(Command::new("ip").args(["-n", ns, "route", "show", "table", "all"]));
    assert!(!routes.contains("10.81."), "routes left: {routes}");
    assert!(!node.conf_dir.join("10-unicni.conflist").exists());
    assert!(!node.bin_dir.join("unicni").exists());
}

/// Removes a lab (its processes, namespaces and directory) on drop.
struct LabGuard(unicni_lab::Lab);

impl Drop for LabGuard {
    fn drop(&mut self) {
        let _ = unicni_lab::destroy(&self.0);
    }
}

/// terway shared-eni through the runner on a node of the lab's VPC, whose cloud is
/// `unicni cloud-sim` (the node's instance, its metadata service, ENIs materialized as
/// links in the node's namespace). The credentials come as the manifests expect them: the
/// Secret mounted where `cloud.credentials_file` points. The agent becomes ready, and a pod
/// created through CRI gets a VPC address of the pod vSwitch from the ENI pool.
#[test]
fn terway_daemonset_runs_through_cri_against_cloud_sim_and_pods_get_vpc_addresses() {
    if !unicni_testkit::require_root() {
        return;
    }
    // Declared first, dropped last: the lab outlives the node and its runtime.
    let id = format!("d{:05}", std::process::id() % 100_000);
    let lab = LabGuard(unicni_lab::Lab {
        prefix: format!("ulab{id}"),
        root: PathBuf::from(format!("/run/unicni-lab-{id}")),
        exe: PathBuf::from(BIN),
    });
    let _ = unicni_lab::destroy(&lab.0);
    let mut defer = Defer::new();
    let tmp = defer.temp_dir("unicni-ds-");
    lab.0
        .vpc_node_with_cloud(1)
        .unwrap_or_else(|e| panic!("the lab's VPC and cloud: {e:#}"));
    let node_ip = lab.0.node_ip(1);
    let ns_name = lab.0.node_ns(1);
    let ns = Netns {
        path: format!("/var/run/netns/{ns_name}"),
        name: ns_name,
    };
    let cluster = Cluster::start_on(
        &tmp,
        &ns,
        &node_ip,
        &node_yaml("node-t", "10.99.0.0/24", &node_ip),
        &mut defer,
    );
    let dir = tmp.join("node-t");
    let cloud = lab.0.cloud_section(1);
    let (mut objects, ds) = manifests_of(
        &cluster.image,
        &dir,
        &format!(
            "[cluster]\nname = \"dst\"\n[backend]\nkind = \"terway\"\n\
             [terway]\nmode = \"shared-eni\"\nvswitches = [\"{vsw}\"]\n\
             security_groups = [\"{sg}\"]\n[terway.pool]\nmin = 2\nmax = 5\n\
             [cni]\nnetwork_name = \"{net}\"\n{cloud}",
            vsw = unicni_lab::NODE_VSWITCH,
            sg = unicni_lab::SECURITY_GROUP,
            net = unique("dst"),
        ),
    );
    // The credentials Secret, as an operator would create it from the key pair.
    let creds_path = cloud
        .lines()
        .find_map(|l| l.strip_prefix("credentials_file = "))
        .map(|v| v.trim_matches('"').to_string())
        .expect("the lab's cloud section names a credentials file");
    let creds = std::fs::read_to_string(&creds_path).unwrap();
    let file = Path::new(&creds_path)
        .file_name()
        .unwrap()
        .to_string_lossy();
    let namespace = ds["metadata"]["namespace"].as_str().unwrap().to_string();
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {}\n  namespace: {namespace}\n\
         stringData:\n  {file}: {:?}\n",
        unicni_deploy::CREDENTIALS_SECRET,
        creds
    );
    objects.extend(docs(&secret));
    let mut node = cluster.node(&tmp, "node-t", ns, &mut defer, objects);

    let pod = node
        .kubelet
        .run_daemonset(&ds)
        .unwrap_or_else(|e| panic!("running terway's DaemonSet pod: {e}"));
    let ready = node
        .kubelet
        .wait_ready(&ds, &pod, "agent", Duration::from_secs(90));
    let app = ready.as_ref().ok().map(|_| {
        let mut cri = Cri::connect(&node.ctrd.socket);
        wait_for("CRI NetworkReady", Duration::from_secs(30), || {
            cri.network_ready().then_some(())
        });
        let spec = PodSpec {
            name: unique("app"),
            cgroup_parent: node.kubelet.node.cgroup_parent.clone(),
            ..Default::default()
        };
        let log_dir = tmp.join("app-logs");
        std::fs::create_dir_all(&log_dir).unwrap();
        let res = cri.run_pod(&spec, &log_dir).map(|p| {
            let ip = cri.pod_ip(&p);
            // The VPC reaches the pod: its address is an ENI's, routed by the VPC router
            // (which owns the pod vSwitch's gateway .253 and the nodes' router .1).
            let ping = cri
                .start_container(&p, "app", IMAGE_REF, &["/bin/sleep", "3600"])
                .map(|c| cri.exec(&c, &["ping", "-c", "3", "-W", "2", "192.168.250.1"]))
                .map_err(|e| e.to_string());
            let _ = cri.stop_pod(&p.id);
            let _ = cri.remove_pod(&p.id);
            (ip, ping)
        });
        res.map_err(|e| e.to_string())
    });
    let install_log = pod.log("install");
    let agent_log = pod.log("agent");
    node.kubelet.remove(&pod);
    ready.unwrap_or_else(|e| {
        panic!("terway's agent: {e}\ninstall log:\n{install_log}\nagent log:\n{agent_log}")
    });
    let (app_ip, ping) = app
        .unwrap()
        .unwrap_or_else(|e| panic!("RunPodSandbox of an app pod: {e}\nagent log:\n{agent_log}"));
    let app_ip: std::net::Ipv4Addr = app_ip
        .parse()
        .unwrap_or_else(|_| panic!("app pod IP {app_ip:?}\nagent log:\n{agent_log}"));
    let (code, ping) = ping.unwrap_or_else(|e| panic!("app container: {e}"));
    assert_eq!(
        code, 0,
        "the pod {app_ip} cannot reach the VPC router through its ENI: {ping}"
    );
    assert!(
        "192.168.252.0/24"
            .parse::<ipnet::Ipv4Net>()
            .unwrap()
            .contains(&app_ip),
        "app pod {app_ip} outside the pod vSwitch {}",
        unicni_lab::NODE_VSWITCH
    );
}
