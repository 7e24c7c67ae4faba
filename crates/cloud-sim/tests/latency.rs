//! Latency profiles are applied to real requests, and the request log counts what the
//! production client sends.

use std::sync::Arc;
use std::time::{Duration, Instant};
use unicni_cloud::credentials::{Credentials, StaticProvider};
use unicni_cloud::poll::wait_eni_status;
use unicni_cloud::*;
use unicni_cloud_sim::*;

const KEY: &str = "lat-key";
const SECRET: &str = "lat-secret-value";

fn config(profile: Profile) -> SimConfig {
    SimConfig {
        credentials: vec![AccessKey {
            access_key_id: KEY.into(),
            access_key_secret: SECRET.into(),
        }],
        vswitches: vec![VSwitchSpec {
            id: "vsw-big".into(),
            zone: "cn-hangzhou-a".into(),
            cidr: "192.168.64.0/20".into(),
            ipv6_cidr: None,
        }],
        instances: vec![InstanceSpec {
            id: "i-lat".into(),
            instance_type: "ecs.g7.large".into(),
            vswitch_id: "vsw-big".into(),
            primary_ip: None,
            metadata_addresses: vec![],
            ram_role: None,
        }],
        profile,
        ..Default::default()
    }
}

async fn start(cfg: SimConfig) -> (RunningSim, AlibabaCloud) {
    let sim = CloudSim::new(cfg, None).unwrap();
    let running = sim.start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let client = AlibabaCloud::new(
        ClientOptions::for_region("cn-hangzhou", Some(&running.endpoint())),
        Arc::new(StaticProvider(Credentials::new(KEY, SECRET))),
    )
    .unwrap();
    (running, client)
}

fn poll() -> PollPolicy {
    PollPolicy {
        interval: Duration::from_millis(50),
        timeout: Duration::from_secs(15),
    }
}

fn eni_req() -> CreateEniRequest {
    CreateEniRequest {
        vswitch_id: "vsw-big".into(),
        security_group_ids: vec!["sg-sim".into()],
        ..Default::default()
    }
}

/// Times one CreateNetworkInterface, AssignPrivateIpAddresses, AttachNetworkInterface
/// (until InUse) and DescribeVSwitches call.
async fn time_calls(c: &AlibabaCloud) -> [Duration; 4] {
    let t = Instant::now();
    let eni = c.create_network_interface(&eni_req()).await.unwrap();
    let create = t.elapsed();
    let t = Instant::now();
    c.assign_private_ip_addresses(&eni.id, IpRequest::Count(1))
        .await
        .unwrap();
    let assign = t.elapsed();
    let t = Instant::now();
    c.attach_network_interface(&eni.id, "i-lat").await.unwrap();
    wait_eni_status(c, &eni.id, EniStatus::InUse, poll())
        .await
        .unwrap();
    let attach = t.elapsed();
    let t = Instant::now();
    c.describe_vswitches(None, &["vsw-big".to_string()])
        .await
        .unwrap();
    let describe = t.elapsed();
    [create, assign, attach, describe]
}

#[tokio::test]
async fn realistic_profile_delays_each_call_and_none_does_not() {
    let (sim, c) = start(config(Profile::Realistic)).await;
    assert_eq!(sim.sim.profile(), Profile::Realistic);
    let [create, assign, attach, describe] = time_calls(&c).await;
    // The realistic figures less their jitter (docs/cloud.md, "Latency profiles"):
    // CreateNetworkInterface 1000±300, AssignPrivateIpAddresses 500±100,
    // AttachNetworkInterface 300±100 and then Attaching 3000±1000, Describe* 100±50.
    assert!(create >= Duration::from_millis(700), "create {create:?}");
    assert!(assign >= Duration::from_millis(400), "assign {assign:?}");
    assert!(attach >= Duration::from_millis(2200), "attach {attach:?}");
    assert!(
        describe >= Duration::from_millis(50),
        "describe {describe:?}"
    );
    sim.stop().await;

    let (sim, c) = start(config(Profile::None)).await;
    let [create, assign, attach, describe] = time_calls(&c).await;
    for (what, d) in [
        ("create", create),
        ("assign", assign),
        ("attach", attach),
        ("describe", describe),
    ] {
        assert!(
            d < Duration::from_millis(150),
            "{what} took {d:?} under none"
        );
    }
    sim.stop().await;
}

#[tokio::test]
async fn default_profile_keeps_the_configured_delays() {
    let mut cfg = config(Profile::Default);
    cfg.attach_delay_ms = 250;
    let (sim, c) = start(cfg).await;
    let eni = c.create_network_interface(&eni_req()).await.unwrap();
    let t = Instant::now();
    c.attach_network_interface(&eni.id, "i-lat").await.unwrap();
    assert_eq!(
        c.describe_network_interfaces(&EniFilter {
            ids: vec![eni.id.clone()],
            ..Default::default()
        })
        .await
        .unwrap()[0]
            .status,
        EniStatus::Attaching
    );
    wait_eni_status(&c, &eni.id, EniStatus::InUse, poll())
        .await
        .unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    sim.stop().await;
}

#[tokio::test]
async fn listing_1200_enis_takes_three_requests_of_500() {
    let (sim, c) = start(config(Profile::None)).await;
    sim.sim.with_state(false, |st| {
        for _ in 0..1200 {
            st.create_eni_record(
                "vsw-big",
                None,
                0,
                0,
                vec!["sg-sim".into()],
                vec![],
                "Secondary",
            )
            .unwrap();
        }
    });
    let before = sim.sim.requests().len();
    let all = c
        .describe_network_interfaces(&EniFilter::default())
        .await
        .unwrap();
    // 1,200 seeded plus the instance's primary ENI.
    assert_eq!(all.len(), 1201);
    let calls: Vec<RequestRecord> = sim.sim.requests()[before..].to_vec();
    assert_eq!(calls.len(), 3, "{calls:#?}");
    for (i, r) in calls.iter().enumerate() {
        assert_eq!(r.action, "DescribeNetworkInterfaces");
        assert_eq!(r.status, 200);
        assert_eq!(r.params.get("MaxResults").map(String::as_str), Some("500"));
        assert!(!r.params.contains_key("PageNumber"), "{r:?}");
        assert_eq!(r.params.contains_key("NextToken"), i > 0, "{r:?}");
    }
    assert_eq!(sim.sim.request_counts()["DescribeNetworkInterfaces"], 3);
    sim.stop().await;
}
