//! vpc-route mode against the cloud emulator started in-process: the real `unicni-cloud`
//! client creates each node's entry, removes a departed node's, and reports the quota.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use unicni_cloud_sim::{CloudSim, InstanceSpec, RunningSim, SimConfig};
use unicni_flannel::lease::Lease;
use unicni_flannel::vpcroute::{connect, VpcRoutes};

const NETWORK: &str = "10.244.0.0/16";

async fn sim(quota: u32, nodes: usize) -> RunningSim {
    let cfg = SimConfig {
        route_pending_ms: 50,
        route_table_quota: quota,
        instances: (1..=nodes)
            .map(|i| InstanceSpec {
                id: format!("i-node{i}"),
                instance_type: "ecs.g7.large".into(),
                vswitch_id: "vsw-sim-a".into(),
                primary_ip: Some(format!("192.168.0.{}", 10 + i)),
                metadata_addresses: vec![],
                ram_role: None,
            })
            .collect(),
        ..Default::default()
    };
    let sim = CloudSim::new(cfg, None).unwrap();
    sim.start("127.0.0.1:0".parse::<SocketAddr>().unwrap())
        .await
        .unwrap()
}

async fn node(s: &RunningSim, i: usize) -> VpcRoutes {
    let cfg = unicni_config::CloudConfig {
        region: Some("cn-hangzhou".into()),
        endpoint: Some(s.endpoint()),
        metadata_endpoint: Some(s.metadata_endpoint(&format!("i-node{i}"))),
        access_key_id: Some("unicni-sim".into()),
        access_key_secret: Some("unicni-sim-secret".into()),
        ..Default::default()
    };
    connect(&cfg, NETWORK.parse().unwrap()).await.unwrap()
}

fn lease(i: usize) -> Lease {
    Lease {
        node: format!("n{i}"),
        subnet: format!("10.244.{i}.0/24"),
        ..Lease::default()
    }
}

/// (destination, next hop, status) of the table's custom entries, sorted.
fn table(s: &RunningSim) -> Vec<(String, String, String)> {
    let st = s.sim.snapshot();
    let mut v: Vec<_> = st
        .route_tables
        .values()
        .flat_map(|t| t.entries.iter())
        .filter(|e| e.entry_type == "Custom")
        .map(|e| {
            (
                e.destination_cidr.clone(),
                e.next_hop_id.clone(),
                e.status.clone(),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_follow_leases_and_quota_is_reported() {
    let s = sim(3, 4).await;
    let mut nodes = Vec::new();
    for i in 1..=4 {
        nodes.push(node(&s, i).await);
    }
    assert_eq!(nodes[0].instance, "i-node1");
    let all: Vec<Lease> = (1..=4).map(lease).collect();
    for i in 0..3 {
        let p = nodes[i].reconcile(&all[i], &all[..3]).await.unwrap();
        assert!(p.own_available, "node {} entry available", i + 1);
    }
    let want: Vec<_> = (1..=3)
        .map(|i| {
            (
                format!("10.244.{i}.0/24"),
                format!("i-node{i}"),
                "Available".to_string(),
            )
        })
        .collect();
    assert_eq!(table(&s), want);
    // Every node sees the two others' entries as its peers.
    let p = nodes[0].reconcile(&all[0], &all[..3]).await.unwrap();
    assert_eq!((p.pass.peers, p.entries, p.pass.repaired), (2, 3, 0));

    // A fourth node does not fit a quota of 3: a typed, explained error, nothing created.
    let err = nodes[3].reconcile(&all[3], &all).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, unicni_core::Error::Exhausted(_)), "{msg}");
    assert!(
        msg.contains("QuotaExceeded") && msg.contains("10.244.4.0/24"),
        "{msg}"
    );
    assert_eq!(table(&s).len(), 3);

    // Node 2 leaves (its lease is gone): the next pass of a remaining node removes its
    // entry, which makes room for node 4.
    let remaining = [all[0].clone(), all[2].clone(), all[3].clone()];
    let p = nodes[0].reconcile(&all[0], &remaining).await.unwrap();
    assert_eq!(p.pass.removed, 1, "{p:?}");
    let until = Instant::now() + Duration::from_secs(5);
    while table(&s).iter().any(|e| e.0 == "10.244.2.0/24") {
        assert!(Instant::now() < until, "entry of node 2 not deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let p = nodes[3].reconcile(&all[3], &remaining).await.unwrap();
    assert!(p.own_available);
    let dests: Vec<String> = table(&s).into_iter().map(|e| e.0).collect();
    assert_eq!(dests, ["10.244.1.0/24", "10.244.3.0/24", "10.244.4.0/24"]);
    s.stop().await;
}
