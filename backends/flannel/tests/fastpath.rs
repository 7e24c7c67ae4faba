//! Root-only: the flannel plugin with the eBPF same-node fast path (`flannel.fast_path`),
//! as the agent leaves it (programs pinned, the lease file naming the pin directory) and
//! the plugin uses it: ADD attaches the pod's veth and adds its endpoint, pods then reach
//! each other without the bridge, DEL removes both.

use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use unicni_core::{Attachment, AttachmentId, Backend, PodRef};
use unicni_flannel::{FlannelBackend, FlannelNetConf};
use unicni_net::NetNs;
use unicni_testkit::{require_root, Netns};

fn ip(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["-n", ns])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ip -n {ns} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ping(ns: &str, target: &str) -> bool {
    Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-c", "2", "-i", "0.2", "-W", "1", target,
        ])
        .output()
        .unwrap()
        .status
        .success()
}

struct Lab {
    node: String,
    pods: [String; 2],
    pin: PathBuf,
    dirs: tempfile::TempDir,
    /// Deleted after `Drop for Lab` has unpinned inside the node namespace.
    _namespaces: [Netns; 3],
}

impl Lab {
    fn new() -> Lab {
        let namespaces = ["ucffn", "ucffa", "ucffb"].map(Netns::with_lo_up);
        Lab {
            node: namespaces[0].name.clone(),
            pods: [namespaces[1].name.clone(), namespaces[2].name.clone()],
            pin: PathBuf::from(format!("/sys/fs/bpf/unicni-test-ff-{}", std::process::id())),
            dirs: tempfile::tempdir().unwrap(),
            _namespaces: namespaces,
        }
    }

    fn on_node<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        NetNs::open(std::path::Path::new(&format!(
            "/var/run/netns/{}",
            self.node
        )))
        .unwrap()
        .run(f)
        .unwrap()
    }

    fn conf(&self) -> FlannelNetConf {
        FlannelNetConf::from_json(&json!({
            "clusterNetwork": "10.246.0.0/16",
            "runDir": self.dirs.path().join("run"),
            "stateDir": self.dirs.path().join("state"),
            "ipMasq": false,
            "hairpin": false,
        }))
        .unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.pin.exists() {
            let pin = self.pin.clone();
            let _ = self.on_node(move || unicni_bpf::remove_all(&pin));
            let _ = std::fs::remove_dir_all(&self.pin);
        }
    }
}

/// A runtime of the calling thread, for the backend inside the node namespace (the
/// namespace is entered on that thread, never on a tokio worker).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn att(pod: &str, id: &str) -> Attachment {
    Attachment {
        id: AttachmentId::new(id, "eth0"),
        netns: Some(format!("/var/run/netns/{pod}").into()),
        pod: PodRef::default(),
    }
}

#[test]
fn plugin_adds_pods_to_the_fast_path_and_del_removes_them() {
    if !require_root() {
        return;
    }
    let lab = Lab::new();
    // The agent's part: programs loaded and pinned, the lease file names them.
    let pin = lab.pin.clone();
    lab.on_node(move || unicni_bpf::FastPath::load_or_adopt(&pin).map(|_| ()))
        .unwrap();
    let run = lab.dirs.path().join("run/flannel");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(
        run.join("subnet.json"),
        json!({"subnet": "10.246.1.0/24", "mtu": 1500, "fast_path": lab.pin}).to_string(),
    )
    .unwrap();

    let conf = lab.conf();
    let atts = [att(&lab.pods[0], "ffa"), att(&lab.pods[1], "ffb")];
    let results = lab.on_node(|| {
        runtime().block_on(async {
            let b = FlannelBackend::new("ff", &conf).unwrap();
            assert_eq!(b.network().fast_path.as_ref(), Some(&lab.pin));
            let mut out = Vec::new();
            for a in &atts {
                out.push(b.add(a).await.unwrap());
            }
            out
        })
    });
    let ips: Vec<String> = results
        .iter()
        .map(|r| r.ips[0].address.addr().to_string())
        .collect();
    let macs: Vec<String> = results
        .iter()
        .map(|r| r.interfaces[2].mac.clone())
        .collect();
    let pin = lab.pin.clone();
    let (endpoints, attachments) = lab.on_node(move || {
        let fp = unicni_bpf::FastPath::open(&pin).unwrap();
        (fp.endpoints().unwrap(), fp.attachments().unwrap())
    });
    assert_eq!(endpoints.len(), 2, "{endpoints:?}");
    assert_eq!(attachments.len(), 2, "{attachments:?}");
    for (e, want) in endpoints.iter().zip(&ips) {
        assert_eq!(&e.ip.to_string(), want);
    }

    // Static neighbours, then B's port off the bridge: only the fast path can deliver.
    for (i, j) in [(0, 1), (1, 0)] {
        ip(
            &lab.pods[i],
            &[
                "neigh",
                "replace",
                &ips[j],
                "lladdr",
                &macs[j],
                "dev",
                "eth0",
                "nud",
                "permanent",
            ],
        );
    }
    let stats = |lab: &Lab| {
        let pin = lab.pin.clone();
        lab.on_node(move || unicni_bpf::FastPath::open(&pin).unwrap().stats().unwrap())
    };
    let s0 = stats(&lab);
    assert!(ping(&lab.pods[0], &ips[1]), "pod a -> pod b");
    let host_b = &results[1].interfaces[1].name;
    ip(&lab.node, &["link", "set", host_b, "nomaster"]);
    assert!(
        ping(&lab.pods[0], &ips[1]),
        "pod a -> pod b without the bridge"
    );
    let s1 = stats(&lab);
    assert!(s1.redirected >= s0.redirected + 8, "{s0:?} -> {s1:?}");
    ip(&lab.node, &["link", "set", host_b, "master", "cni0"]);

    // DEL takes the endpoint and the programs away (twice: DEL repeats).
    let conf = lab.conf();
    lab.on_node(|| {
        runtime().block_on(async {
            let b = FlannelBackend::new("ff", &conf).unwrap();
            for a in &atts {
                b.del(a).await.unwrap();
                b.del(a).await.unwrap();
            }
        })
    });
    let pin = lab.pin.clone();
    let (endpoints, attachments) = lab.on_node(move || {
        let fp = unicni_bpf::FastPath::open(&pin).unwrap();
        (fp.endpoints().unwrap(), fp.attachments().unwrap())
    });
    assert!(endpoints.is_empty(), "{endpoints:?}");
    assert!(attachments.is_empty(), "{attachments:?}");
    assert_eq!(
        std::fs::read_dir(lab.pin.join("links")).unwrap().count(),
        0,
        "no tcx link pins left"
    );
}
