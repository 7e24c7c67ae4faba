//! The ENI pool against the cloud emulator started in-process, through the real cloud
//! and metadata clients. The node's links are the only thing stood in for: an ENI's link
//! "appears" once the metadata service lists the ENI (tests/datapath.rs covers links).

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use unicni_cloud::Cloud;
use unicni_cloud_sim::{
    CloudSim, FaultConfig, FaultSpec, InstanceSpec, RunningSim, SimConfig, VSwitchSpec,
};
use unicni_core::{AttachmentId, PodRef};
use unicni_terway::podinfo::PodInfo;
use unicni_terway::pool::{Exhausted, Pool, PoolError, PoolParams};
use unicni_terway::state::StateFile;

const INSTANCE: &str = "i-pool-1";

mod sim_node;
use sim_node::{cloud, SimNode};

fn vsw(id: &str, zone: &str, cidr: &str) -> VSwitchSpec {
    VSwitchSpec {
        id: id.into(),
        zone: zone.into(),
        cidr: cidr.into(),
        ipv6_cidr: Some(format!("fd00:{}::/64", &cidr.split('.').nth(2).unwrap())),
    }
}

async fn sim(faults: FaultConfig) -> RunningSim {
    sim_with_attach(faults, 50).await
}

/// The emulator with ENIs that take `attach_ms` to attach.
async fn sim_with_attach(faults: FaultConfig, attach_ms: u64) -> RunningSim {
    let cfg = SimConfig {
        vswitches: vec![
            vsw("vsw-node", "cn-hangzhou-a", "192.168.0.0/24"),
            vsw("vsw-pod-a", "cn-hangzhou-a", "192.168.10.0/24"),
            vsw("vsw-pod-b", "cn-hangzhou-a", "192.168.11.0/24"),
            // 8 addresses, 4 reserved by the vendor: 4 usable.
            vsw("vsw-tiny", "cn-hangzhou-a", "192.168.12.0/29"),
            vsw("vsw-zone-b", "cn-hangzhou-b", "192.168.13.0/24"),
            // Four /28 blocks, of which the first (network address) and the last
            // (the vendor's three reserved) are never delegated: two prefixes.
            vsw("vsw-prefix", "cn-hangzhou-a", "192.168.14.0/26"),
        ],
        instances: vec![InstanceSpec {
            id: INSTANCE.into(),
            instance_type: "ecs.g7.large".into(),
            vswitch_id: "vsw-node".into(),
            primary_ip: Some("192.168.0.11".into()),
            metadata_addresses: vec![],
            ram_role: None,
        }],
        attach_delay_ms: attach_ms,
        detach_delay_ms: 50,
        faults,
        ..Default::default()
    };
    CloudSim::new(cfg, None)
        .unwrap()
        .start("127.0.0.1:0".parse::<SocketAddr>().unwrap())
        .await
        .unwrap()
}

fn params(vswitches: &[&str], min: usize, max: usize) -> PoolParams {
    sim_node::params(INSTANCE, vswitches, min, max)
}

async fn pool(s: &RunningSim, p: PoolParams, dir: &std::path::Path) -> Pool {
    let node = SimNode::at(&s.metadata_endpoint(INSTANCE));
    Pool::start(p, cloud(s).await, node, StateFile::new(dir))
        .await
        .unwrap()
}

fn pod(name: &str) -> PodRef {
    PodRef {
        namespace: Some("default".into()),
        name: Some(name.into()),
        uid: None,
    }
}

fn id(n: usize) -> AttachmentId {
    AttachmentId::new(format!("c{n}"), "eth0")
}

/// Every IPv4 address the emulator has on this node's secondary ENIs.
fn cloud_ips(s: &RunningSim) -> BTreeSet<Ipv4Addr> {
    s.sim
        .snapshot()
        .enis
        .values()
        .filter(|e| e.instance_id.as_deref() == Some(INSTANCE) && e.eni_type == "Secondary")
        .flat_map(|e| std::iter::once(e.primary_ip).chain(e.secondary_ips.iter().copied()))
        .collect()
}

fn leaked_enis(s: &RunningSim) -> usize {
    s.sim
        .snapshot()
        .enis
        .values()
        .filter(|e| e.status == "Available")
        .count()
}

#[tokio::test]
async fn warm_pool_grows_to_min_hands_out_distinct_ips_and_shrinks_to_max() {
    let s = sim(FaultConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pool(&s, params(&["vsw-pod-a"], 2, 3), dir.path()).await;
    p.maintain().await.unwrap();
    assert!(p.stats().await.idle >= 2, "{:?}", p.stats().await);
    let mut got = BTreeSet::new();
    for n in 0..8 {
        let net = p
            .allocate(&id(n), &pod(&format!("p{n}")), None, &PodInfo::default())
            .await
            .unwrap();
        let ip = net.ipv4.unwrap();
        assert!("192.168.10.0/24"
            .parse::<ipnet::Ipv4Net>()
            .unwrap()
            .contains(&ip));
        assert!(got.insert(ip), "{ip} handed out twice");
        assert_eq!(
            net.eni.gateway,
            "192.168.10.253".parse::<Ipv4Addr>().unwrap()
        );
    }
    // 8 pods on 6-address ENIs: a second ENI was created and attached.
    assert_eq!(p.stats().await.enis, 2);
    // Asking again for the same attachment returns the same address.
    let again = p
        .allocate(&id(0), &pod("p0"), None, &PodInfo::default())
        .await
        .unwrap();
    assert!(got.contains(&again.ipv4.unwrap()));
    for n in 0..8 {
        assert!(p.release(&id(n)).await.unwrap());
    }
    p.maintain().await.unwrap();
    let st = p.stats().await;
    assert!(st.idle <= 3, "pool above max after maintain: {st:?}");
    assert_eq!(cloud_ips(&s).len(), st.idle, "cloud and pool disagree");
    s.stop().await;
}

#[tokio::test]
async fn fixed_ip_comes_back_to_the_same_pod_name_and_expires() {
    let s = sim(FaultConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut pp = params(&["vsw-pod-a"], 0, 10);
    let p = pool(&s, pp.clone(), dir.path()).await;
    let fixed = PodInfo {
        fixed_ip: true,
        ..Default::default()
    };
    let a = p
        .allocate(&id(1), &pod("db-0"), None, &fixed)
        .await
        .unwrap();
    p.release(&id(1)).await.unwrap();
    // Someone else asks meanwhile: the held address is not theirs.
    let other = p
        .allocate(&id(2), &pod("web"), None, &PodInfo::default())
        .await
        .unwrap();
    assert_ne!(other.ipv4, a.ipv4);
    let b = p
        .allocate(&id(3), &pod("db-0"), None, &fixed)
        .await
        .unwrap();
    assert_eq!(
        a.ipv4, b.ipv4,
        "re-created fixed-IP pod must get its address back"
    );
    drop(p);
    // A zero hold expires at the next maintenance pass; the name then gets any address.
    pp.hold = Duration::ZERO;
    let p = pool(&s, pp, dir.path()).await;
    p.release(&id(3)).await.unwrap();
    assert_eq!(p.stats().await.held, 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    p.maintain().await.unwrap();
    assert_eq!(p.stats().await.held, 0);
    s.stop().await;
}

#[tokio::test]
async fn pinned_vswitch_is_honoured_and_bad_ones_are_refused_clearly() {
    let s = sim(FaultConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pool(&s, params(&["vsw-pod-a"], 0, 10), dir.path()).await;
    let pin = |v: &str| PodInfo {
        vswitches: vec![v.into()],
        ..Default::default()
    };
    let net = p
        .allocate(&id(1), &pod("pinned"), None, &pin("vsw-pod-b"))
        .await
        .unwrap();
    assert!("192.168.11.0/24"
        .parse::<ipnet::Ipv4Net>()
        .unwrap()
        .contains(&net.ipv4.unwrap()));
    assert_eq!(net.eni.vswitch_id, "vsw-pod-b");
    match p
        .allocate(&id(2), &pod("z"), None, &pin("vsw-zone-b"))
        .await
    {
        Err(PoolError::Invalid(m)) => assert!(m.contains("zone cn-hangzhou-b"), "{m}"),
        other => panic!("{other:?}"),
    }
    match p.allocate(&id(3), &pod("u"), None, &pin("vsw-nope")).await {
        Err(PoolError::Invalid(m)) => assert!(
            m.contains("vsw-nope") && m.contains("does not exist"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    s.stop().await;
}

#[tokio::test]
async fn a_vswitch_out_of_ips_is_skipped_then_the_pool_says_exhausted() {
    let s = sim(FaultConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pool(&s, params(&["vsw-tiny", "vsw-pod-b"], 0, 20), dir.path()).await;
    let mut got = BTreeSet::new();
    // ecs.g7.large: 2 secondary ENIs × 6 = 12 pods; vsw-tiny has 4 addresses.
    for n in 0..12 {
        let net = p
            .allocate(&id(n), &pod(&format!("p{n}")), None, &PodInfo::default())
            .await
            .unwrap_or_else(|e| panic!("pod {n}: {e}"));
        assert!(got.insert(net.ipv4.unwrap()));
    }
    match p
        .allocate(&id(99), &pod("one-too-many"), None, &PodInfo::default())
        .await
    {
        Err(PoolError::Exhausted(m)) => assert!(m.contains("ecs.g7.large"), "{m}"),
        other => panic!("{other:?}"),
    }
    // The operator sees it too (metrics and readiness read these).
    let st = p.stats().await;
    assert_eq!(st.exhausted, Some(Exhausted::EniQuota), "{st:?}");
    assert!(
        st.exhausted_reason
            .as_deref()
            .is_some_and(|r| r.contains("larger instance type")),
        "{st:?}"
    );
    s.stop().await;
}

#[tokio::test]
async fn throttling_and_failures_never_duplicate_and_gc_leaves_no_leak() {
    let spec = FaultSpec {
        throttle_rate: 0.3,
        failure_rate: 0.2,
        latency_ms: 0,
    };
    let s = sim(FaultConfig {
        default: spec,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let node = SimNode::at(&s.metadata_endpoint(INSTANCE));
    // Starting may itself fail under faults; an agent retries, so does the test.
    let p = loop {
        match Pool::start(
            params(&["vsw-pod-a"], 0, 2),
            cloud(&s).await,
            node.clone(),
            StateFile::new(dir.path()),
        )
        .await
        {
            Ok(p) => break Arc::new(p),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    // A burst: every ADD at once, each retried as the runtime retries a failed ADD.
    let mut burst = tokio::task::JoinSet::new();
    for n in 0..10 {
        let p = p.clone();
        burst.spawn(async move {
            // The plugin turns a failure into "try again"; the runtime retries.
            for _attempt in 0..20 {
                match p
                    .allocate(&id(n), &pod(&format!("p{n}")), None, &PodInfo::default())
                    .await
                {
                    Ok(net) => return Some(net.ipv4.unwrap()),
                    Err(PoolError::Exhausted(e)) => panic!("pod {n}: {e}"),
                    Err(_) => {}
                }
            }
            None
        });
    }
    let handed: Vec<Ipv4Addr> = burst.join_all().await.into_iter().flatten().collect();
    assert_eq!(handed.len(), 10, "every pod got an address within 20 tries");
    let distinct: BTreeSet<_> = handed.iter().collect();
    assert_eq!(
        distinct.len(),
        handed.len(),
        "duplicate address under faults: {handed:?}"
    );
    for n in 0..10 {
        p.release(&id(n)).await.unwrap();
    }
    s.sim.set_faults(FaultConfig::default()).unwrap();
    // After garbage collection with the faults gone: nothing beyond pool.max, no ENI
    // left unattached, and the cloud holds exactly what the pool knows.
    for _ in 0..3 {
        p.maintain().await.unwrap();
    }
    let st = p.stats().await;
    assert!(st.idle <= 2, "{st:?}");
    assert_eq!(cloud_ips(&s).len(), st.idle);
    assert_eq!(leaked_enis(&s), 0);
    s.stop().await;
}

#[tokio::test]
async fn agent_killed_mid_allocation_restarts_without_duplicates_or_leaks() {
    let s = sim(FaultConfig {
        default: FaultSpec {
            latency_ms: 30,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let p = Arc::new(pool(&s, params(&["vsw-pod-a"], 0, 3), dir.path()).await);
    let first = p
        .allocate(&id(0), &pod("p0"), None, &PodInfo::default())
        .await
        .unwrap();
    // Kill a burst of ADDs at several points of its cloud calls: the waiting ADDs are
    // cancelled, and so are the cloud calls (the runtime the agent runs on goes away).
    let rt_dir = dir.path().to_path_buf();
    for cut_ms in [5u64, 40, 80, 150] {
        let endpoint = s.endpoint();
        let md = s.metadata_endpoint(INSTANCE);
        let dir = rt_dir.clone();
        // An agent of its own: a runtime that is dropped at the cut, mid-burst (the
        // emulator keeps serving on the test's runtime meanwhile).
        tokio::task::spawn_blocking(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let cfg = unicni_config::CloudConfig {
                    region: Some("cn-hangzhou".into()),
                    endpoint: Some(endpoint),
                    access_key_id: Some("unicni-sim".into()),
                    access_key_secret: Some("unicni-sim-secret".into()),
                    ..Default::default()
                };
                let cloud: Arc<dyn Cloud> =
                    Arc::new(unicni_cloud::from_config(&cfg).await.unwrap());
                let node = SimNode::at(&md);
                let Ok(p) = Pool::start(
                    params(&["vsw-pod-a"], 0, 3),
                    cloud,
                    node,
                    StateFile::new(&dir),
                )
                .await
                else {
                    return;
                };
                let mut burst = tokio::task::JoinSet::new();
                for n in 1..12 {
                    let p = p.clone();
                    burst.spawn(async move {
                        let _ = p
                            .allocate(&id(n), &pod(&format!("p{n}")), None, &PodInfo::default())
                            .await;
                    });
                }
                tokio::time::sleep(Duration::from_millis(cut_ms)).await;
            });
            rt.shutdown_background();
        })
        .await
        .unwrap();
    }
    drop(p);
    let before: Vec<(Ipv4Addr, Option<String>)> = {
        let p = pool(&s, params(&["vsw-pod-a"], 0, 3), dir.path()).await;
        p.addresses().await
    };
    // The restarted agent: same state file, the cloud as the crash left it.
    let p = pool(&s, params(&["vsw-pod-a"], 0, 3), dir.path()).await;
    let again = p
        .allocate(&id(0), &pod("p0"), None, &PodInfo::default())
        .await
        .unwrap();
    assert_eq!(
        again.ipv4, first.ipv4,
        "a running pod's address changed across the restart"
    );
    let mut seen = BTreeSet::new();
    seen.insert(first.ipv4.unwrap());
    for n in 20..26 {
        let net = p
            .allocate(&id(n), &pod(&format!("q{n}")), None, &PodInfo::default())
            .await
            .unwrap();
        assert!(seen.insert(net.ipv4.unwrap()), "duplicate after restart");
    }
    // Holders from before the crash keep what they had; nobody else got those addresses.
    for (ip, holder) in before {
        if let Some(h) = holder {
            let owners: Vec<_> = p
                .addresses()
                .await
                .into_iter()
                .filter(|(i, _)| *i == ip)
                .collect();
            assert!(
                owners.iter().all(|(_, o)| o.as_deref() == Some(h.as_str())),
                "{ip}: {owners:?}"
            );
        }
    }
    for n in (0..12).chain(20..26) {
        p.release(&id(n)).await.unwrap();
    }
    p.maintain().await.unwrap();
    p.maintain().await.unwrap();
    let st = p.stats().await;
    assert_eq!(st.in_use, 0);
    assert!(st.idle <= 3, "{st:?}");
    assert_eq!(
        cloud_ips(&s).len(),
        st.idle,
        "the cloud holds addresses the pool forgot"
    );
    assert_eq!(leaked_enis(&s), 0, "an ENI was left unattached");
    s.stop().await;
}

#[test]
fn small_instance_types_are_refused_with_the_reason() {
    let t = unicni_capacity::InstanceTypeTable::builtin();
    let small = t.get("ecs.g6.large").unwrap();
    let e = unicni_terway::agent::admit(
        small,
        unicni_config::TerwayMode::SharedEni,
        unicni_config::IpStack::Ipv4,
    )
    .unwrap_err();
    assert!(e.contains("6 pods") && e.contains("more than 11"), "{e}");
    assert!(unicni_terway::agent::admit(
        small,
        unicni_config::TerwayMode::ExclusiveEni,
        unicni_config::IpStack::Ipv4
    )
    .is_ok());
    let g6x = t.get("ecs.g6.xlarge").unwrap();
    let e = unicni_terway::agent::admit(
        g6x,
        unicni_config::TerwayMode::SharedEni,
        unicni_config::IpStack::Dual,
    )
    .unwrap_err();
    assert!(e.contains("IPv6"), "{e}");
    let g7 = t.get("ecs.g7.large").unwrap();
    assert!(unicni_terway::agent::admit(
        g7,
        unicni_config::TerwayMode::SharedEni,
        unicni_config::IpStack::Dual
    )
    .is_ok());
}

/// Takes every free address of `vswitch` with an ENI outside the pool.
async fn fill_vswitch(s: &RunningSim, vswitch: &str, addresses: u32) {
    cloud(s)
        .await
        .create_network_interface(&unicni_cloud::CreateEniRequest {
            vswitch_id: vswitch.into(),
            security_group_ids: vec!["sg-sim".into()],
            secondary_ip_count: addresses - 1,
            ipv6_count: 0,
            ipv4_prefix_count: 0,
            ipv6_prefix_count: 0,
            description: None,
            tags: vec![],
            client_token: None,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_vswitch_the_cloud_calls_full_is_named_to_the_add_and_skipped_for_the_next() {
    let s = sim(FaultConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pool(&s, params(&["vsw-tiny", "vsw-pod-b"], 0, 20), dir.path()).await;
    let pin = PodInfo {
        vswitches: vec!["vsw-tiny".into()],
        ..Default::default()
    };
    // The pool's ENI in vsw-tiny takes one address (its primary) for this pod...
    let first = p.allocate(&id(1), &pod("p1"), None, &pin).await.unwrap();
    assert_eq!(first.eni.vswitch_id, "vsw-tiny");
    // ...then someone else takes the other three. The pool's ENI still has room, so the
    // cloud's answer (QuotaExceeded.PrivateIpAddress: the vSwitch, not the ENI) decides.
    fill_vswitch(&s, "vsw-tiny", 3).await;
    match p.allocate(&id(2), &pod("p2"), None, &pin).await {
        Err(PoolError::Exhausted(m)) => assert!(
            m.contains("vsw-tiny") && m.contains("QuotaExceeded.PrivateIpAddress"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    let st = p.stats().await;
    assert_eq!(st.exhausted, Some(Exhausted::Vswitch), "{st:?}");
    assert!(
        st.exhausted_reason
            .as_deref()
            .is_some_and(|r| r.contains("add a vSwitch")),
        "{st:?}"
    );
    // An unpinned pod skips the full vSwitch for the next configured one.
    let next = p
        .allocate(&id(3), &pod("p3"), None, &PodInfo::default())
        .await
        .unwrap();
    assert_eq!(next.eni.vswitch_id, "vsw-pod-b");
    assert!("192.168.11.0/24"
        .parse::<ipnet::Ipv4Net>()
        .unwrap()
        .contains(&next.ipv4.unwrap()));
    assert_ne!(next.eni.id, first.eni.id);
    s.stop().await;
}

#[tokio::test]
async fn an_eni_the_cloud_calls_full_makes_the_pool_use_another() {
    let s = sim(FaultConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut pp = params(&["vsw-pod-a"], 0, 20);
    // The pool's table says 20 addresses per ENI; the emulator's ecs.g7.large allows 6,
    // and answers the 7th with MaxEniPrivateIpsCountExceeded.
    pp.limits.ipv4_per_eni = 20;
    let p = pool(&s, pp, dir.path()).await;
    let mut by_eni = std::collections::BTreeMap::<String, usize>::new();
    for n in 0..7 {
        let net = p
            .allocate(&id(n), &pod(&format!("p{n}")), None, &PodInfo::default())
            .await
            .unwrap_or_else(|e| panic!("pod {n}: {e}"));
        *by_eni.entry(net.eni.id).or_default() += 1;
    }
    assert_eq!(by_eni.len(), 2, "{by_eni:?}");
    assert!(by_eni.values().any(|n| *n == 6), "{by_eni:?}");
    assert_eq!(p.stats().await.enis, 2);
    s.stop().await;
}

#[tokio::test]
async fn an_eni_full_of_ipv6_makes_the_dual_stack_pool_use_another() {
    let s = sim(FaultConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut pp = params(&["vsw-pod-a"], 0, 20);
    pp.dual = true;
    let p = pool(&s, pp, dir.path()).await;
    let first = p
        .allocate(&id(0), &pod("p0"), None, &PodInfo::default())
        .await
        .unwrap();
    assert!(first.ipv6.is_some());
    // The next IPv6 assignment on that ENI is refused as the vendor refuses a full ENI.
    s.sim.faults().inject(
        "AssignIpv6Addresses",
        unicni_cloud_sim::ApiError::new(
            403,
            "MaxEniIpv6IpsCountExceeded",
            "The IPv6 addresses of the ENI exceed the limit.",
        ),
        1,
    );
    let second = p
        .allocate(&id(1), &pod("p1"), None, &PodInfo::default())
        .await
        .unwrap();
    assert!(second.ipv6.is_some());
    assert_ne!(second.eni.id, first.eni.id);
    assert_eq!(p.stats().await.enis, 2);
    s.stop().await;
}

#[tokio::test]
async fn adds_with_an_idle_address_return_while_another_waits_for_a_new_eni() {
    // ENIs take 3 s to attach, as on a real cloud.
    let s = sim_with_attach(FaultConfig::default(), 3000).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pool(&s, params(&["vsw-pod-a"], 5, 10), dir.path()).await;
    // Warm: one ENI with 5 idle addresses.
    p.maintain().await.unwrap();
    assert_eq!(p.stats().await.idle, 5, "{:?}", p.stats().await);
    // A pod pinned to another vSwitch needs a new ENI: created and attached (3 s).
    let slow = {
        let p = p.clone();
        tokio::spawn(async move {
            let t = std::time::Instant::now();
            let pin = PodInfo {
                vswitches: vec!["vsw-pod-b".into()],
                ..Default::default()
            };
            let net = p.allocate(&id(100), &pod("pinned"), None, &pin).await;
            (net, t.elapsed())
        })
    };
    // Until its ENI is being created.
    let until = std::time::Instant::now() + Duration::from_secs(2);
    while p.stats().await.in_flight == 0 {
        assert!(std::time::Instant::now() < until, "{:?}", p.stats().await);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Five ADDs at once for the addresses the pool has: none waits for that ENI.
    let t = std::time::Instant::now();
    let mut burst = tokio::task::JoinSet::new();
    for n in 0..5 {
        let p = p.clone();
        burst.spawn(async move {
            let t = std::time::Instant::now();
            let net = p
                .allocate(&id(n), &pod(&format!("p{n}")), None, &PodInfo::default())
                .await
                .unwrap();
            (net.ipv4.unwrap(), t.elapsed())
        });
    }
    let fast = burst.join_all().await;
    let wall = t.elapsed();
    assert!(
        !slow.is_finished(),
        "the pinned ADD finished before its ENI attached"
    );
    for (ip, took) in &fast {
        assert!(
            *took < Duration::from_millis(500),
            "{ip} took {took:?} while an ENI attached (3 s)"
        );
        assert!("192.168.10.0/24"
            .parse::<ipnet::Ipv4Net>()
            .unwrap()
            .contains(ip));
    }
    assert!(wall < Duration::from_millis(500), "{wall:?}");
    let distinct: BTreeSet<_> = fast.iter().map(|(ip, _)| *ip).collect();
    assert_eq!(distinct.len(), 5);
    let (net, took) = slow.await.unwrap();
    let net = net.unwrap();
    assert_eq!(net.eni.vswitch_id, "vsw-pod-b");
    assert!(took >= Duration::from_secs(3), "{took:?}");
    s.stop().await;
}

#[tokio::test]
async fn a_burst_that_runs_a_vswitch_dry_gets_each_address_once_and_the_rest_are_told_which() {
    let s = sim(FaultConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pool(&s, params(&["vsw-tiny", "vsw-pod-b"], 0, 20), dir.path()).await;
    let pin = PodInfo {
        vswitches: vec!["vsw-tiny".into()],
        ..Default::default()
    };
    // vsw-tiny has 4 addresses; 8 pods pinned to it arrive at once.
    let mut burst = tokio::task::JoinSet::new();
    for n in 0..8 {
        let (p, pin) = (p.clone(), pin.clone());
        burst.spawn(async move {
            p.allocate(&id(n), &pod(&format!("p{n}")), None, &pin)
                .await
                .map(|net| net.ipv4.unwrap())
        });
    }
    let results = burst.join_all().await;
    let got: Vec<Ipv4Addr> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    let distinct: BTreeSet<_> = got.iter().collect();
    assert_eq!(distinct.len(), got.len(), "duplicate: {got:?}");
    assert_eq!(got.len(), 4, "{results:?}");
    for r in &results {
        if let Err(e) = r {
            match e {
                PoolError::Exhausted(m) => assert!(m.contains("vsw-tiny"), "{m}"),
                other => panic!("{other:?}"),
            }
        }
    }
    // The state file after a restart says what the pool said.
    let held: BTreeSet<_> = p
        .allocations()
        .await
        .into_iter()
        .map(|a| a.address)
        .collect();
    assert_eq!(held.len(), 4);
    drop(p);
    let p = pool(&s, params(&["vsw-tiny", "vsw-pod-b"], 0, 20), dir.path()).await;
    let again: BTreeSet<_> = p
        .allocations()
        .await
        .into_iter()
        .map(|a| a.address)
        .collect();
    assert_eq!(again, held);
    s.stop().await;
}

#[tokio::test]
async fn warm_up_pre_grow_and_idle_reclaim_in_batches() {
    let s = sim(FaultConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut pp = params(&["vsw-pod-a"], 0, 10);
    pp.warm_up = 4;
    pp.high_watermark_percent = 50;
    pp.idle_reclaim = Some(Duration::from_secs(1));
    pp.reclaim_batch = 2;
    let p = pool(&s, pp, dir.path()).await;
    let assigns = || {
        s.sim
            .request_counts()
            .get("AssignPrivateIpAddresses")
            .copied()
            .unwrap_or(0)
    };
    // Warm-up: the first pass asks for 4.
    p.maintain().await.unwrap();
    assert_eq!(p.stats().await.idle, 4, "{:?}", p.stats().await);
    let before = assigns();
    // Four pods take the four idle addresses without waiting; at half the pool in use
    // the pool asks the cloud for more on its own.
    for n in 0..4 {
        let t = std::time::Instant::now();
        p.allocate(&id(n), &pod(&format!("p{n}")), None, &PodInfo::default())
            .await
            .unwrap();
        assert!(
            t.elapsed() < Duration::from_millis(300),
            "{:?}",
            t.elapsed()
        );
    }
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while p.stats().await.idle < 4 {
        assert!(std::time::Instant::now() < until, "{:?}", p.stats().await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(assigns() > before, "no pre-grow call");
    assert_eq!(p.stats().await.waiting, 0);
    // All released: 8 idle, none needed (min 0). Reclaimed 2 per pass once idle 1 s.
    for n in 0..4 {
        p.release(&id(n)).await.unwrap();
    }
    p.maintain().await.unwrap();
    assert_eq!(p.stats().await.idle, 8, "nothing reclaimed before its time");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    p.maintain().await.unwrap();
    assert_eq!(p.stats().await.idle, 6, "one batch of 2");
    p.maintain().await.unwrap();
    assert_eq!(p.stats().await.idle, 4);
    assert_eq!(
        cloud_ips(&s).len(),
        4,
        "the cloud holds what the pool holds"
    );
    s.stop().await;
}

#[tokio::test]
async fn exclusive_pool_warm_reserve_never_fails_a_pod_it_can_host() {
    let s = sim(FaultConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    // ecs.g7.large: 2 ENIs for pods; the pool wants both ready.
    let mut pp = params(&["vsw-pod-a"], 2, 5);
    pp.exclusive = true;
    pp.high_watermark_percent = 80;
    let p = pool(&s, pp, dir.path()).await;
    // The warm-up pass and two pods at once.
    let warm = {
        let p = p.clone();
        tokio::spawn(async move { p.maintain().await })
    };
    let mut burst = tokio::task::JoinSet::new();
    for n in 0..2 {
        let p = p.clone();
        burst.spawn(async move {
            p.allocate(&id(n), &pod(&format!("x{n}")), None, &PodInfo::default())
                .await
        });
    }
    let got = burst.join_all().await;
    warm.await.unwrap().unwrap();
    let enis: BTreeSet<String> = got
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("{e}")).eni.id)
        .collect();
    assert_eq!(enis.len(), 2, "each pod its own ENI");
    s.stop().await;
}

#[tokio::test]
async fn an_idle_eni_of_another_vswitch_makes_room_for_a_pinned_pod() {
    let s = sim(FaultConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut pp = params(&["vsw-pod-a"], 2, 5);
    pp.exclusive = true;
    let p = pool(&s, pp, dir.path()).await;
    // The reserve takes both of ecs.g7.large's pod ENIs, in vsw-pod-a.
    p.maintain().await.unwrap();
    p.maintain().await.unwrap();
    assert_eq!(p.stats().await.enis, 2, "{:?}", p.stats().await);
    let pin = PodInfo {
        vswitches: vec!["vsw-pod-b".into()],
        ..Default::default()
    };
    let net = p.allocate(&id(1), &pod("b"), None, &pin).await.unwrap();
    assert_eq!(net.eni.vswitch_id, "vsw-pod-b");
    assert_eq!(p.stats().await.enis, 2);
    assert_eq!(leaked_enis(&s), 0);
    s.stop().await;
}

fn prefix_params(vswitches: &[&str]) -> PoolParams {
    PoolParams {
        ip_prefix: true,
        ..params(vswitches, 0, 1000)
    }
}

/// The /28 prefixes the emulator has on this node's secondary ENIs.
fn cloud_prefixes(s: &RunningSim) -> Vec<ipnet::Ipv4Net> {
    s.sim
        .snapshot()
        .enis
        .values()
        .filter(|e| e.instance_id.as_deref() == Some(INSTANCE) && e.eni_type == "Secondary")
        .flat_map(|e| e.ipv4_prefixes.iter().copied())
        .collect()
}

/// Calls that change the cloud (everything but the Describe* reads).
fn mutating_calls(s: &RunningSim) -> u64 {
    s.sim
        .request_counts()
        .iter()
        .filter(|(k, _)| !k.starts_with("Describe"))
        .map(|(_, v)| *v)
        .sum()
}

#[tokio::test]
async fn prefix_mode_hands_out_a_28_without_cloud_calls_and_reclaims_only_whole_prefixes() {
    let s = sim(FaultConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut pp = prefix_params(&["vsw-pod-a"]);
    pp.idle_reclaim = Some(Duration::from_millis(300));
    pp.reclaim_batch = 10;
    let p = pool(&s, pp, dir.path()).await;
    assert!(p.prefix_mode());
    // ecs.g7.large: 2 secondary ENIs × 5 prefixes × 16.
    assert_eq!(p.capacity(), 160);
    let first = p
        .allocate(&id(0), &pod("p0"), None, &PodInfo::default())
        .await
        .unwrap();
    let prefixes = cloud_prefixes(&s);
    assert_eq!(prefixes.len(), 1, "one /28 with the new ENI");
    let block = prefixes[0];
    assert!(block.contains(&first.ipv4.unwrap()));
    assert_eq!(
        s.sim.request_counts().get("AssignPrivateIpAddresses"),
        None,
        "the prefix came with CreateNetworkInterface"
    );
    // The other 15 addresses of the /28: no cloud call at all.
    let calls = mutating_calls(&s);
    let mut got = BTreeSet::from([first.ipv4.unwrap()]);
    for n in 1..16 {
        let net = p
            .allocate(&id(n), &pod(&format!("p{n}")), None, &PodInfo::default())
            .await
            .unwrap();
        let ip = net.ipv4.unwrap();
        assert!(block.contains(&ip), "{ip} outside {block}");
        assert!(got.insert(ip), "{ip} handed out twice");
    }
    assert_eq!(mutating_calls(&s), calls, "{:?}", s.sim.request_counts());
    // The 17th needs a second prefix: one AssignPrivateIpAddresses.
    let net = p
        .allocate(&id(16), &pod("p16"), None, &PodInfo::default())
        .await
        .unwrap();
    assert_eq!(
        s.sim.request_counts().get("AssignPrivateIpAddresses"),
        Some(&1)
    );
    let prefixes = cloud_prefixes(&s);
    assert_eq!(prefixes.len(), 2);
    let second = *prefixes.iter().find(|n| **n != block).unwrap();
    assert!(second.contains(&net.ipv4.unwrap()));
    // Everything released but p0: the second prefix is wholly free and goes; the first
    // holds p0 (15 idle addresses) and stays.
    for n in 1..17 {
        p.release(&id(n)).await.unwrap();
    }
    p.maintain().await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    p.maintain().await.unwrap();
    assert_eq!(
        cloud_prefixes(&s),
        vec![block],
        "only the wholly free prefix goes"
    );
    assert_eq!(p.stats().await.idle, 15);
    // p0 gone too: the ENI holds nothing and goes with its prefix.
    p.release(&id(0)).await.unwrap();
    p.maintain().await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    p.maintain().await.unwrap();
    assert!(cloud_prefixes(&s).is_empty());
    assert_eq!(p.stats().await.enis, 0, "{:?}", p.stats().await);
    assert_eq!(leaked_enis(&s), 0);
    s.stop().await;
}

#[tokio::test]
async fn prefix_mode_state_survives_a_restart_and_a_node_keeps_the_mode_it_joined_with() {
    let s = sim(FaultConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pool(&s, prefix_params(&["vsw-pod-a"]), dir.path()).await;
    for n in 0..3 {
        p.allocate(&id(n), &pod(&format!("p{n}")), None, &PodInfo::default())
            .await
            .unwrap();
    }
    let held: BTreeSet<_> = p
        .allocations()
        .await
        .into_iter()
        .map(|a| a.address)
        .collect();
    drop(p);
    let file = StateFile::new(dir.path());
    let st = file.load().unwrap();
    assert_eq!(st.prefix_mode, Some(true));
    let recorded: Vec<ipnet::IpNet> = st.prefixes.values().flatten().copied().collect();
    let cloud: Vec<ipnet::IpNet> = cloud_prefixes(&s).into_iter().map(Into::into).collect();
    assert_eq!(recorded, cloud, "the state file records the prefixes");
    // A stale record (say, written before a crash mid-call) is replaced by the cloud's.
    let mut stale = st.clone();
    stale.prefixes.clear();
    file.save(&stale).unwrap();
    // The config says single addresses now: the node joined with prefixes, keeps them.
    let p = pool(&s, params(&["vsw-pod-a"], 0, 1000), dir.path()).await;
    assert!(p.prefix_mode());
    let again: BTreeSet<_> = p
        .allocations()
        .await
        .into_iter()
        .map(|a| a.address)
        .collect();
    assert_eq!(again, held);
    let st = file.load().unwrap();
    assert_eq!(
        st.prefixes.values().flatten().count(),
        cloud_prefixes(&s).len()
    );
    let next = p
        .allocate(&id(3), &pod("p3"), None, &PodInfo::default())
        .await
        .unwrap();
    assert!(cloud_prefixes(&s)
        .iter()
        .any(|n| n.contains(&next.ipv4.unwrap())));
    s.stop().await;

    // A node that joined with single addresses keeps them when the config turns
    // prefix mode on: its pods stay on secondary addresses, no prefix is asked for.
    let s = sim(FaultConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pool(&s, params(&["vsw-pod-a"], 0, 1000), dir.path()).await;
    p.allocate(&id(0), &pod("p0"), None, &PodInfo::default())
        .await
        .unwrap();
    drop(p);
    let p = pool(&s, prefix_params(&["vsw-pod-a"]), dir.path()).await;
    assert!(!p.prefix_mode());
    let net = p
        .allocate(&id(1), &pod("p1"), None, &PodInfo::default())
        .await
        .unwrap();
    assert!(cloud_ips(&s).contains(&net.ipv4.unwrap()));
    assert!(cloud_prefixes(&s).is_empty());
    assert_eq!(
        StateFile::new(dir.path()).load().unwrap().prefix_mode,
        Some(false)
    );
    s.stop().await;
}

#[tokio::test]
async fn a_prefix_burst_that_runs_the_vswitch_out_of_28_blocks_gets_each_address_once() {
    let s = sim(FaultConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let p = pool(&s, prefix_params(&["vsw-prefix"]), dir.path()).await;
    // vsw-prefix has two free /28 blocks (32 addresses); 40 pods arrive at once.
    let mut burst = tokio::task::JoinSet::new();
    for n in 0..40 {
        let p = p.clone();
        burst.spawn(async move {
            p.allocate(&id(n), &pod(&format!("p{n}")), None, &PodInfo::default())
                .await
                .map(|net| net.ipv4.unwrap())
        });
    }
    let results = burst.join_all().await;
    let got: Vec<Ipv4Addr> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    let distinct: BTreeSet<_> = got.iter().collect();
    assert_eq!(distinct.len(), got.len(), "duplicate: {got:?}");
    assert_eq!(got.len(), 32, "{results:?}");
    let prefixes = cloud_prefixes(&s);
    assert_eq!(prefixes.len(), 2);
    assert!(got.iter().all(|ip| prefixes.iter().any(|n| n.contains(ip))));
    for r in &results {
        if let Err(e) = r {
            match e {
                PoolError::Exhausted(m) => assert!(m.contains("vsw-prefix"), "{m}"),
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(p.stats().await.exhausted, Some(Exhausted::Vswitch));
    // The state file after a restart says what the pool said.
    drop(p);
    let p = pool(&s, prefix_params(&["vsw-prefix"]), dir.path()).await;
    let again: BTreeSet<Ipv4Addr> = p
        .allocations()
        .await
        .into_iter()
        .filter_map(|a| match a.address {
            std::net::IpAddr::V4(ip) => Some(ip),
            _ => None,
        })
        .collect();
    assert_eq!(again, got.iter().copied().collect());
    s.stop().await;
}

#[tokio::test]
async fn dual_stack_prefix_mode_gives_each_pod_an_address_of_the_enis_80() {
    let s = sim(FaultConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut pp = prefix_params(&["vsw-pod-a"]);
    pp.dual = true;
    let p = pool(&s, pp, dir.path()).await;
    let mut v6 = BTreeSet::new();
    for n in 0..18 {
        let net = p
            .allocate(&id(n), &pod(&format!("p{n}")), None, &PodInfo::default())
            .await
            .unwrap();
        assert!(v6.insert(net.ipv6.unwrap()), "IPv6 handed out twice");
    }
    let snap = s.sim.snapshot();
    let enis: Vec<_> = snap
        .enis
        .values()
        .filter(|e| e.instance_id.as_deref() == Some(INSTANCE) && e.eni_type == "Secondary")
        .collect();
    assert_eq!(enis.len(), 1);
    assert_eq!(enis[0].ipv6_prefixes.len(), 1, "one /80 per ENI");
    assert!(enis[0].ipv6s.is_empty());
    let net = enis[0].ipv6_prefixes[0];
    assert!(v6.iter().all(|ip| net.contains(ip)));
    s.stop().await;
}
