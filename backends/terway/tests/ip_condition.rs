//! The pool's exhaustion reaches the operator through Kubernetes: a vSwitch runs out in
//! the cloud emulator, the Node (on the emulated API server) gets `SufficientIP=False`
//! and a Warning Event naming the vSwitch; addresses come back, the condition turns True
//! with a Normal Event. `kubectl` (when installed) reads both as an operator would.

use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use unicni_cloud_sim::{CloudSim, FaultConfig, InstanceSpec, RunningSim, SimConfig, VSwitchSpec};
use unicni_core::{AttachmentId, PodRef};
use unicni_kube_emulator::Emulator;
use unicni_store::node_condition::NodeCondition;
use unicni_terway::ip_condition::{state_of, COMPONENT, CONDITION};
use unicni_terway::podinfo::PodInfo;
use unicni_terway::pool::{Pool, PoolError, PoolParams};
use unicni_terway::state::StateFile;

const INSTANCE: &str = "i-cond-1";
const NODE: &str = "node-cond-1";

mod sim_node;
use sim_node::{cloud, SimNode};

async fn sim() -> RunningSim {
    let vsw = |id: &str, cidr: &str| VSwitchSpec {
        id: id.into(),
        zone: "cn-hangzhou-a".into(),
        cidr: cidr.into(),
        ipv6_cidr: None,
    };
    let cfg = SimConfig {
        vswitches: vec![
            vsw("vsw-node", "192.168.0.0/24"),
            // 8 addresses, 4 reserved by the vendor: 4 usable.
            vsw("vsw-tiny", "192.168.12.0/29"),
        ],
        instances: vec![InstanceSpec {
            id: INSTANCE.into(),
            instance_type: "ecs.g7.large".into(),
            vswitch_id: "vsw-node".into(),
            primary_ip: Some("192.168.0.11".into()),
            metadata_addresses: vec![],
            ram_role: None,
        }],
        attach_delay_ms: 20,
        detach_delay_ms: 20,
        faults: FaultConfig::default(),
        ..Default::default()
    };
    CloudSim::new(cfg, None)
        .unwrap()
        .start("127.0.0.1:0".parse::<SocketAddr>().unwrap())
        .await
        .unwrap()
}

fn params() -> PoolParams {
    sim_node::params(INSTANCE, &["vsw-tiny"], 0, 20)
}

fn pod(name: &str) -> PodRef {
    PodRef {
        namespace: Some("default".into()),
        name: Some(name.into()),
        uid: None,
    }
}

fn condition(emu: &Emulator) -> Value {
    let node = emu.get("/api/v1/nodes", "", NODE).expect("the node");
    let conds = node["status"]["conditions"].as_array().cloned().unwrap();
    assert!(
        conds
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True"),
        "the kubelet's condition stays: {conds:?}"
    );
    conds
        .into_iter()
        .find(|c| c["type"] == CONDITION)
        .unwrap_or(Value::Null)
}

fn events(emu: &Emulator) -> Vec<Value> {
    let mut all: Vec<Value> = emu
        .list("/api/v1/events")
        .into_iter()
        .filter(|e| e["involvedObject"]["name"] == NODE)
        .collect();
    all.sort_by_key(|e| {
        e["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_string)
    });
    all
}

fn kubectl(kubeconfig: &std::path::Path, dir: &std::path::Path, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .args(args)
        .env("TMPDIR", dir)
        .env_remove("KUBECONFIG")
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vswitch_running_out_sets_the_node_condition_and_an_event_then_recovers() {
    let emu = Emulator::new();
    emu.put(
        "/api/v1/nodes",
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE},
               "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}}),
    );
    let url = emu.start();
    let dir = tempfile::tempdir().unwrap();
    let kc = unicni_kube_emulator::kubeconfig(dir.path(), &url);
    let client = unicni_store::kube::client(Some(&kc)).await.unwrap();
    let mut reporter = NodeCondition::new(client, NODE, CONDITION, COMPONENT);

    let s = sim().await;
    let c = cloud(&s).await;
    // Someone else takes all four addresses of the pool's only vSwitch.
    let other = c
        .create_network_interface(&unicni_cloud::CreateEniRequest {
            vswitch_id: "vsw-tiny".into(),
            security_group_ids: vec!["sg-sim".into()],
            secondary_ip_count: 3,
            ipv6_count: 0,
            ipv4_prefix_count: 0,
            ipv6_prefix_count: 0,
            description: None,
            tags: vec![],
            client_token: None,
        })
        .await
        .unwrap();
    let node = SimNode::at(&s.metadata_endpoint(INSTANCE));
    let state = tempfile::tempdir().unwrap();
    let pool = Pool::start(params(), c.clone(), node, StateFile::new(state.path()))
        .await
        .unwrap();

    // Before any shortage: True, and no Event (nothing happened).
    reporter
        .report(&state_of(&pool.stats().await))
        .await
        .unwrap();
    assert_eq!(condition(&emu)["status"], "True", "{:?}", condition(&emu));
    assert!(events(&emu).is_empty(), "{:?}", events(&emu));

    let id1 = AttachmentId::new("c1", "eth0");
    match pool
        .allocate(&id1, &pod("p1"), None, &PodInfo::default())
        .await
    {
        Err(PoolError::Exhausted(m)) => assert!(m.contains("vsw-tiny"), "{m}"),
        other => panic!("{other:?}"),
    }
    reporter
        .report(&state_of(&pool.stats().await))
        .await
        .unwrap();
    let cond = condition(&emu);
    assert_eq!(cond["status"], "False", "{cond:?}");
    assert_eq!(cond["reason"], "InsufficientIP", "{cond:?}");
    let msg = cond["message"].as_str().unwrap();
    assert!(
        msg.contains("vsw-tiny") && msg.contains("add a vSwitch"),
        "{msg}"
    );
    let ev = events(&emu);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["type"], "Warning");
    assert_eq!(ev[0]["reason"], "InsufficientIP");
    assert_eq!(ev[0]["involvedObject"]["kind"], "Node");
    assert!(ev[0]["message"].as_str().unwrap().contains("vsw-tiny"));

    // The same shortage again: no write at all until the repeat interval, then the one
    // Event's count goes up.
    let writes = |emu: &Emulator| {
        emu.counts()
            .iter()
            .filter(|((verb, _), _)| verb == "patch" || verb == "create")
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    let before = writes(&emu);
    for _ in 0..5 {
        reporter
            .report(&state_of(&pool.stats().await))
            .await
            .unwrap();
    }
    assert_eq!(writes(&emu), before, "{:?}", emu.counts());
    reporter.repeat = Duration::ZERO;
    reporter
        .report(&state_of(&pool.stats().await))
        .await
        .unwrap();
    let ev = events(&emu);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["count"], 2, "{ev:?}");
    reporter.repeat = Duration::from_secs(600);

    if let Some(out) = kubectl(&kc, dir.path(), &["get", "events", "-A"]) {
        assert!(
            out.contains("InsufficientIP") && out.contains(&format!("node/{NODE}")),
            "{out}"
        );
        let out = kubectl(&kc, dir.path(), &["describe", "node", NODE]).unwrap();
        assert!(
            out.contains("SufficientIP") && out.contains("vsw-tiny"),
            "{out}"
        );
        let events_section = out.split("Events:").nth(1).unwrap_or("");
        assert!(events_section.contains("InsufficientIP"), "{out}");
    }

    // The other ENI goes away: the vSwitch has room, the next pod gets an address, the
    // pool has grown and the condition turns back.
    c.delete_network_interface(&other.id).await.unwrap();
    // The emulator frees the addresses once the ENI is gone (Deleting first).
    let t0 = std::time::Instant::now();
    while c
        .describe_vswitches(None, &["vsw-tiny".to_string()])
        .await
        .unwrap()[0]
        .available_ip_count
        == 0
    {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the ENI was never deleted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pool.allocate(&id1, &pod("p1"), None, &PodInfo::default())
        .await
        .unwrap();
    reporter
        .report(&state_of(&pool.stats().await))
        .await
        .unwrap();
    let cond = condition(&emu);
    assert_eq!(cond["status"], "True", "{cond:?}");
    assert_eq!(cond["reason"], "SufficientIP", "{cond:?}");
    let ev = events(&emu);
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert_eq!(ev[1]["type"], "Normal");
    assert_eq!(ev[1]["reason"], "SufficientIP");
    s.stop().await;
}

/// A reporter started while the Node already says False (an agent restart during a
/// shortage) sends no second Event for the same shortage.
#[tokio::test]
async fn a_restart_during_a_shortage_sends_no_duplicate_event() {
    let emu = Emulator::new();
    emu.put(
        "/api/v1/nodes",
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE},
               "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
    );
    let url = emu.start();
    let dir = tempfile::tempdir().unwrap();
    let kc = unicni_kube_emulator::kubeconfig(dir.path(), &url);
    let short = unicni_store::node_condition::ConditionState {
        ok: false,
        reason: "InsufficientIP".into(),
        message: "new pods on this node cannot get an IP address: vsw-x".into(),
    };
    let client = unicni_store::kube::client(Some(&kc)).await.unwrap();
    NodeCondition::new(client.clone(), NODE, CONDITION, COMPONENT)
        .report(&short)
        .await
        .unwrap();
    assert_eq!(events(&emu).len(), 1);
    let mut again = NodeCondition::new(client, NODE, CONDITION, COMPONENT);
    again.report(&short).await.unwrap();
    assert_eq!(events(&emu).len(), 1, "{:?}", events(&emu));
    assert_eq!(condition(&emu)["status"], "False");
}
