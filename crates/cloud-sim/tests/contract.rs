//! Contract tests: the production client (`unicni_cloud::AlibabaCloud`, only the
//! endpoint differs) against the emulator started in-process on 127.0.0.1:0.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;
use unicni_cloud::credentials::{Credentials, RamRoleProvider, StaticProvider};
use unicni_cloud::poll::{wait_eni_status, wait_route_entry_available};
use unicni_cloud::*;
use unicni_cloud_sim::*;

const KEY: &str = "test-key";
const SECRET: &str = "test-secret-value";

fn config() -> SimConfig {
    SimConfig {
        credentials: vec![AccessKey {
            access_key_id: KEY.into(),
            access_key_secret: SECRET.into(),
        }],
        vswitches: vec![
            VSwitchSpec {
                id: "vsw-a".into(),
                zone: "cn-hangzhou-a".into(),
                cidr: "192.168.0.0/24".into(),
                ipv6_cidr: Some("2408:4000:1:100::/64".into()),
            },
            VSwitchSpec {
                id: "vsw-tiny".into(),
                zone: "cn-hangzhou-a".into(),
                cidr: "192.168.9.0/29".into(),
                ipv6_cidr: None,
            },
            VSwitchSpec {
                id: "vsw-b".into(),
                zone: "cn-hangzhou-b".into(),
                cidr: "192.168.1.0/24".into(),
                ipv6_cidr: None,
            },
        ],
        instances: vec![
            InstanceSpec {
                id: "i-node1".into(),
                instance_type: "ecs.g7.large".into(),
                vswitch_id: "vsw-a".into(),
                primary_ip: Some("192.168.0.10".into()),
                metadata_addresses: vec![],
                ram_role: Some("unicni-role".into()),
            },
            InstanceSpec {
                id: "i-node2".into(),
                instance_type: "ecs.c6.large".into(),
                vswitch_id: "vsw-a".into(),
                primary_ip: None,
                metadata_addresses: vec!["127.0.0.1".into()],
                ram_role: None,
            },
        ],
        attach_delay_ms: 150,
        detach_delay_ms: 150,
        route_pending_ms: 150,
        route_table_quota: 3,
        ..Default::default()
    }
}

fn fast_opts(endpoint: &str) -> ClientOptions {
    let mut o = ClientOptions::for_region("cn-hangzhou", Some(endpoint));
    o.retry = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
    };
    o.page_size = 2;
    o
}

fn client_with(endpoint: &str, id: &str, secret: &str) -> AlibabaCloud {
    AlibabaCloud::new(
        fast_opts(endpoint),
        Arc::new(StaticProvider(Credentials::new(id, secret))),
    )
    .unwrap()
}

async fn start(cfg: SimConfig) -> (RunningSim, AlibabaCloud) {
    let sim = CloudSim::new(cfg, None).unwrap();
    let running = sim.start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let client = client_with(&running.endpoint(), KEY, SECRET);
    (running, client)
}

fn poll() -> PollPolicy {
    PollPolicy {
        interval: Duration::from_millis(30),
        timeout: Duration::from_secs(5),
    }
}

fn eni_req(vsw: &str, secondary: u32, ipv6: u32) -> CreateEniRequest {
    CreateEniRequest {
        vswitch_id: vsw.into(),
        security_group_ids: vec!["sg-sim".into()],
        secondary_ip_count: secondary,
        ipv6_count: ipv6,
        tags: vec![("owner".into(), "unicni".into())],
        ..Default::default()
    }
}

/// An ENI created by `eni_req(vsw, secondary, ipv6)`, attached to `instance` and InUse.
async fn in_use_eni(
    c: &AlibabaCloud,
    vsw: &str,
    secondary: u32,
    ipv6: u32,
    instance: &str,
) -> NetworkInterface {
    let eni = c
        .create_network_interface(&eni_req(vsw, secondary, ipv6))
        .await
        .unwrap();
    c.attach_network_interface(&eni.id, instance).await.unwrap();
    wait_eni_status(c, &eni.id, EniStatus::InUse, poll())
        .await
        .unwrap();
    eni
}

#[tokio::test]
async fn eni_lifecycle_with_async_attach_and_detach() {
    let (sim, c) = start(config()).await;
    let mut events = sim.sim.subscribe();

    let eni = c
        .create_network_interface(&eni_req("vsw-a", 2, 1))
        .await
        .unwrap();
    assert_eq!(eni.status, EniStatus::Available);
    assert_eq!(eni.private_ips.len(), 3);
    assert_eq!(eni.ipv6s.len(), 1);
    assert_eq!(eni.zone_id, "cn-hangzhou-a");
    assert!(eni.mac.starts_with("00:16:3e:"));

    c.attach_network_interface(&eni.id, "i-node1")
        .await
        .unwrap();
    let now = c
        .describe_network_interfaces(&EniFilter {
            ids: vec![eni.id.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        now[0].status,
        EniStatus::Attaching,
        "attach is asynchronous"
    );
    let inuse = wait_eni_status(&c, &eni.id, EniStatus::InUse, poll())
        .await
        .unwrap();
    assert_eq!(inuse.instance_id.as_deref(), Some("i-node1"));

    // The lab learns of it through events.
    let mut saw_attach = false;
    while let Ok(ev) = events.try_recv() {
        if matches!(&ev, SimEvent::EniAttached { eni_id, instance_id, .. } if *eni_id == eni.id && instance_id == "i-node1")
        {
            saw_attach = true;
        }
    }
    assert!(saw_attach);

    // Deleting an attached ENI is refused with the vendor's state error.
    let err = c.delete_network_interface(&eni.id).await.unwrap_err();
    // ECS ENI APIs' error tables: HTTP 400 InvalidOperation.InvalidEniState.
    assert!(matches!(err, CloudError::InvalidEniState(_)), "{err}");
    assert_eq!(err.code(), Some("InvalidOperation.InvalidEniState"));
    assert_eq!(err.api().unwrap().http_status, 400);

    c.detach_network_interface(&eni.id, "i-node1")
        .await
        .unwrap();
    let avail = wait_eni_status(&c, &eni.id, EniStatus::Available, poll())
        .await
        .unwrap();
    assert_eq!(avail.instance_id, None);
    c.delete_network_interface(&eni.id).await.unwrap();
    unicni_cloud::poll::wait_eni_deleted(&c, &eni.id, poll())
        .await
        .unwrap();

    let err = c.delete_network_interface(&eni.id).await.unwrap_err();
    assert!(matches!(err, CloudError::NotFound(_)), "{err}");
    assert_eq!(err.code(), Some("InvalidEniId.NotFound"));
    sim.stop().await;
}

#[tokio::test]
async fn private_and_ipv6_addresses() {
    let (sim, c) = start(config()).await;
    let eni = in_use_eni(&c, "vsw-a", 0, 0, "i-node1").await;

    let got = c
        .assign_private_ip_addresses(&eni.id, IpRequest::Count(2))
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    let exact: Ipv4Addr = "192.168.0.200".parse().unwrap();
    let got2 = c
        .assign_private_ip_addresses(&eni.id, IpRequest::Exact(vec![exact]))
        .await
        .unwrap();
    assert_eq!(got2, vec![exact]);

    // g7.large allows 6 IPv4 per ENI: primary + 3 secondaries so far, 3 more do not fit.
    let err = c
        .assign_private_ip_addresses(&eni.id, IpRequest::Count(3))
        .await
        .unwrap_err();
    // ECS AssignPrivateIpAddresses error codes: the per-ENI limit is a 403
    // MaxEniPrivateIpsCountExceeded, not the vSwitch's QuotaExceeded.PrivateIpAddress.
    assert!(matches!(err, CloudError::EniIpv4Full(_)), "{err}");
    assert!(err.is_eni_full());
    assert_eq!(err.code(), Some("MaxEniPrivateIpsCountExceeded"));
    assert_eq!(err.api().unwrap().http_status, 403);
    assert!(!err.api().unwrap().request_id.is_empty());

    c.unassign_private_ip_addresses(&eni.id, &[exact])
        .await
        .unwrap();
    let err = c
        .unassign_private_ip_addresses(&eni.id, &[exact])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidIp.IpUnassigned"));

    let v6 = c
        .assign_ipv6_addresses(&eni.id, IpRequest::Count(2))
        .await
        .unwrap();
    assert_eq!(v6.len(), 2);
    let fixed: Ipv6Addr = "2408:4000:1:100::abcd".parse().unwrap();
    assert_eq!(
        c.assign_ipv6_addresses(&eni.id, IpRequest::Exact(vec![fixed]))
            .await
            .unwrap(),
        vec![fixed]
    );
    // ECS AssignIpv6Addresses error codes: past the per-ENI limit, 403
    // MaxEniIpv6IpsCountExceeded.
    let err = c
        .assign_ipv6_addresses(&eni.id, IpRequest::Count(64))
        .await
        .unwrap_err();
    assert!(matches!(err, CloudError::EniIpv6Full(_)), "{err}");
    assert_eq!(err.code(), Some("MaxEniIpv6IpsCountExceeded"));
    assert_eq!(err.api().unwrap().http_status, 403);
    c.unassign_ipv6_addresses(&eni.id, &v6).await.unwrap();
    let seen = c
        .describe_network_interfaces(&EniFilter {
            ids: vec![eni.id.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(seen[0].ipv6s, vec![fixed]);
    assert_eq!(seen[0].secondary_ips().count(), 2);
    sim.stop().await;
}

#[tokio::test]
async fn vswitch_out_of_ips_and_eni_quota() {
    let (sim, c) = start(config()).await;
    // A /29 has 4 usable addresses: an ENI with 2 secondaries takes 3 of them.
    let tiny = c
        .create_network_interface(&eni_req("vsw-tiny", 2, 0))
        .await
        .unwrap();
    // ECS AssignPrivateIpAddresses error codes: the vSwitch out of addresses is a 400
    // QuotaExceeded.PrivateIpAddress, "Don't have enough private IPs in this switch".
    let err = c
        .assign_private_ip_addresses(&tiny.id, IpRequest::Count(2))
        .await
        .unwrap_err();
    assert!(matches!(err, CloudError::VSwitchExhausted(_)), "{err}");
    assert_eq!(err.code(), Some("QuotaExceeded.PrivateIpAddress"));
    assert_eq!(err.api().unwrap().http_status, 400);
    c.assign_private_ip_addresses(&tiny.id, IpRequest::Count(1))
        .await
        .unwrap();
    let err = c
        .create_network_interface(&eni_req("vsw-tiny", 0, 0))
        .await
        .unwrap_err();
    assert!(matches!(err, CloudError::VSwitchExhausted(_)), "{err}");
    assert_eq!(err.code(), Some("InvalidVSwitchId.IpNotEnough"));
    let vsw = c
        .describe_vswitches(None, &["vsw-tiny".into()])
        .await
        .unwrap();
    assert_eq!(vsw[0].available_ip_count, 0);

    // c6.large has 2 ENIs: the primary and one more.
    let e1 = c
        .create_network_interface(&eni_req("vsw-a", 0, 0))
        .await
        .unwrap();
    let e2 = c
        .create_network_interface(&eni_req("vsw-a", 0, 0))
        .await
        .unwrap();
    c.attach_network_interface(&e1.id, "i-node2").await.unwrap();
    let err = c
        .attach_network_interface(&e2.id, "i-node2")
        .await
        .unwrap_err();
    assert!(matches!(err, CloudError::EniQuotaExceeded(_)), "{err}");
    assert_eq!(err.code(), Some("EniPerInstanceLimitExceeded"));

    // Zone mismatch and unknown IDs.
    let eb = c
        .create_network_interface(&eni_req("vsw-b", 0, 0))
        .await
        .unwrap();
    // ECS AssignIpv6Addresses error codes: a vSwitch without IPv6 is
    // InvalidVSwitch.Ipv6NotTurnOn.
    let err = c
        .assign_ipv6_addresses(&eb.id, IpRequest::Count(1))
        .await
        .unwrap_err();
    assert!(matches!(err, CloudError::VSwitchIpv6Off(_)), "{err}");
    assert_eq!(err.code(), Some("InvalidVSwitch.Ipv6NotTurnOn"));
    let err = c
        .attach_network_interface(&eb.id, "i-node1")
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some("InvalidOperation.AvailabilityZoneMismatch")
    );
    let err = c
        .create_network_interface(&eni_req("vsw-nope", 0, 0))
        .await
        .unwrap_err();
    assert!(matches!(err, CloudError::NotFound(_)), "{err}");
    sim.stop().await;
}

#[tokio::test]
async fn client_token_makes_create_idempotent() {
    let (sim, c) = start(config()).await;
    let mut req = eni_req("vsw-a", 1, 0);
    req.client_token = Some("token-123".into());
    let a = c.create_network_interface(&req).await.unwrap();
    let b = c.create_network_interface(&req).await.unwrap();
    assert_eq!(a.id, b.id);
    let all = c
        .describe_network_interfaces(&EniFilter {
            vswitch_id: Some("vsw-a".into()),
            status: Some(EniStatus::Available),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 1, "the retried create made no second ENI");
    sim.stop().await;
}

#[tokio::test]
async fn pagination_page_number_and_next_token() {
    let (sim, c) = start(config()).await;
    for _ in 0..5 {
        c.create_network_interface(&eni_req("vsw-a", 0, 0))
            .await
            .unwrap();
    }
    // page_size is 2: 5 secondary + 2 primary ENIs take 4 pages.
    let all = c
        .describe_network_interfaces(&EniFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 7);
    let tagged = c
        .describe_network_interfaces(&EniFilter {
            tags: vec![("owner".into(), "unicni".into())],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(tagged.len(), 5);

    // NextToken style, over the whole instance-type table.
    let types = c.describe_instance_types(&[]).await.unwrap();
    assert!(types.len() > 50, "{}", types.len());
    let one = c
        .describe_instance_types(&["ecs.c7.4xlarge".into()])
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!((one[0].eni_quantity - 1) * one[0].ipv4_per_eni, 210);
    assert_eq!(one[0].ipv6_per_eni, 30);

    let vsws = c.describe_vswitches(Some("vpc-sim"), &[]).await.unwrap();
    assert_eq!(vsws.len(), 3);
    let tables = c.describe_route_tables("vpc-sim").await.unwrap();
    assert_eq!(tables.len(), 1);
    assert_eq!(tables[0].id, "vtb-sim");
    sim.stop().await;
}

#[tokio::test]
async fn route_entries_pending_conflict_quota() {
    let (sim, c) = start(config()).await;
    let req = |cidr: &str, node: &str| CreateRouteEntryRequest {
        route_table_id: "vtb-sim".into(),
        destination_cidr: cidr.into(),
        next_hop_type: "Instance".into(),
        next_hop_id: node.into(),
        client_token: None,
    };
    let id = c
        .create_route_entry(&req("10.244.0.0/24", "i-node1"))
        .await
        .unwrap();
    let entries = c.describe_route_entries("vtb-sim").await.unwrap();
    let e = entries.iter().find(|e| e.id == id).unwrap();
    assert_eq!(e.status, RouteEntryStatus::Pending);

    // While it is pending the table is busy: a client with a single attempt sees
    // TaskConflict; the default client retries through it.
    let mut once = fast_opts(&sim.endpoint());
    once.retry.max_attempts = 1;
    let single = AlibabaCloud::new(
        once,
        Arc::new(StaticProvider(Credentials::new(KEY, SECRET))),
    )
    .unwrap();
    let err = single
        .create_route_entry(&req("10.244.1.0/24", "i-node2"))
        .await
        .unwrap_err();
    assert!(matches!(err, CloudError::TaskConflict(_)), "{err}");

    let avail = wait_route_entry_available(&c, "vtb-sim", &id, poll())
        .await
        .unwrap();
    assert_eq!(avail.destination_cidr, "10.244.0.0/24");
    assert_eq!(avail.next_hop_id, "i-node1");

    let mut slow = fast_opts(&sim.endpoint());
    slow.retry = RetryPolicy {
        max_attempts: 10,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(300),
    };
    let patient = AlibabaCloud::new(
        slow,
        Arc::new(StaticProvider(Credentials::new(KEY, SECRET))),
    )
    .unwrap();
    let id2 = patient
        .create_route_entry(&req("10.244.1.0/24", "i-node2"))
        .await
        .unwrap();
    // This one is created while id2 is pending: the retry loop absorbs the conflict.
    let id3 = patient
        .create_route_entry(&req("10.244.2.0/24", "i-node2"))
        .await
        .unwrap();
    wait_route_entry_available(&c, "vtb-sim", &id3, poll())
        .await
        .unwrap();

    let err = c
        .create_route_entry(&req("10.244.2.0/24", "i-node1"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidCIDRBlock.Duplicate"));
    // Quota is 3 custom entries in this config.
    let err = c
        .create_route_entry(&req("10.244.3.0/24", "i-node1"))
        .await
        .unwrap_err();
    assert!(matches!(err, CloudError::QuotaExceeded(_)), "{err}");
    assert_eq!(err.code(), Some("QuotaExceeded.VpcRouteEntryNum"));

    // Entries of a table come in pages of 2 (the vSwitch system routes included).
    let all = c.describe_route_entries("vtb-sim").await.unwrap();
    assert_eq!(all.iter().filter(|e| e.entry_type == "Custom").count(), 3);
    assert_eq!(all.iter().filter(|e| e.entry_type == "System").count(), 3);

    patient.delete_route_entry("vtb-sim", &id2).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = c.describe_route_entries("vtb-sim").await.unwrap();
        if !left.iter().any(|e| e.id == id2) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "entry was never deleted"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let err = patient
        .delete_route_entry("vtb-sim", &id2)
        .await
        .unwrap_err();
    assert!(matches!(err, CloudError::NotFound(_)), "{err}");
    sim.stop().await;
}

#[tokio::test]
async fn throttling_is_retried_then_surfaces() {
    let (sim, c) = start(config()).await;
    // Two throttled answers, then success: the client's backoff hides them.
    sim.sim.faults().inject(
        "DescribeVSwitches",
        unicni_cloud_sim::faults::throttled(),
        2,
    );
    let v = c.describe_vswitches(None, &["vsw-a".into()]).await.unwrap();
    assert_eq!(v[0].id, "vsw-a");

    // Always throttled: after max_attempts the typed error comes back.
    let mut f = FaultConfig::default();
    f.actions.insert(
        "DescribeRouteTableList".into(),
        FaultSpec {
            throttle_rate: 1.0,
            ..Default::default()
        },
    );
    sim.sim.set_faults(f).unwrap();
    let err = c.describe_route_tables("vpc-sim").await.unwrap_err();
    assert!(matches!(err, CloudError::Throttling(_)), "{err}");
    assert_eq!(err.code(), Some("Throttling.User"));

    // Server errors are retried too.
    sim.sim.faults().inject(
        "DescribeInstanceTypes",
        ApiError::new(503, "ServiceUnavailable", "x"),
        3,
    );
    assert_eq!(
        c.describe_instance_types(&["ecs.g6.large".into()])
            .await
            .unwrap()
            .len(),
        1
    );

    // Latency is added.
    let mut f = FaultConfig::default();
    f.default.latency_ms = 200;
    sim.sim.set_faults(f).unwrap();
    let t = tokio::time::Instant::now();
    c.describe_route_tables("vpc-sim").await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(200));
    sim.stop().await;
}

#[tokio::test]
async fn task_conflict_and_not_found_are_typed() {
    let (sim, c) = start(config()).await;
    sim.sim.faults().inject(
        "DeleteRouteEntry",
        ApiError::new(400, "TaskConflict", "busy"),
        10,
    );
    let err = c.delete_route_entry("vtb-sim", "rte-x").await.unwrap_err();
    assert!(matches!(err, CloudError::TaskConflict(_)), "{err}");
    let err = c.describe_route_entries("vtb-nope").await.unwrap_err();
    assert!(matches!(err, CloudError::NotFound(_)), "{err}");
    assert_eq!(err.code(), Some("InvalidRouteTableId.NotFound"));
    sim.stop().await;
}

#[tokio::test]
async fn wrong_signature_and_unknown_key_are_refused() {
    let (sim, _) = start(config()).await;
    let wrong = client_with(&sim.endpoint(), KEY, "not-the-secret");
    let err = wrong
        .describe_vswitches(Some("vpc-sim"), &[])
        .await
        .unwrap_err();
    assert!(matches!(err, CloudError::AuthFailure(_)), "{err}");
    assert_eq!(err.code(), Some("SignatureDoesNotMatch"));
    // The secret never appears in what the error says.
    assert!(!format!("{err} {err:?}").contains("not-the-secret"));

    let unknown = client_with(&sim.endpoint(), "nobody", SECRET);
    let err = unknown
        .describe_vswitches(Some("vpc-sim"), &[])
        .await
        .unwrap_err();
    assert!(matches!(err, CloudError::AuthFailure(_)), "{err}");
    assert_eq!(err.code(), Some("InvalidAccessKeyId.NotFound"));

    // A hand-made request with a tampered parameter is refused as well.
    let url = format!(
        "{}/?Action=DescribeVSwitches&Version=2016-04-28&AccessKeyId={KEY}&SignatureMethod=HMAC-SHA1\
         &SignatureVersion=1.0&SignatureNonce=n1&Timestamp=2030-01-01T00%3A00%3A00Z&Format=JSON&Signature=AAAA",
        sim.endpoint()
    );
    let resp = reqwest_get(&url).await;
    assert_eq!(resp.0, 400);
    assert!(
        resp.1.contains("\"Code\":\"SignatureDoesNotMatch\""),
        "{}",
        resp.1
    );
    assert!(resp.1.contains("\"RequestId\""), "{}", resp.1);
    sim.stop().await;
}

async fn reqwest_get(url: &str) -> (u16, String) {
    // A raw HTTP/1.1 request keeps reqwest out of this crate's dev-dependencies.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let status = buf[9..12].parse().unwrap();
    let body = buf.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[tokio::test]
async fn metadata_per_instance_and_ram_role_credentials() {
    let (sim, c) = start(config()).await;
    let eni = in_use_eni(&c, "vsw-a", 1, 1, "i-node1").await;

    let md = MetadataClient::new(Some(&sim.metadata_endpoint("i-node1"))).unwrap();
    assert_eq!(md.instance_id().await.unwrap(), "i-node1");
    assert_eq!(md.region_id().await.unwrap(), "cn-hangzhou");
    assert_eq!(md.zone_id().await.unwrap(), "cn-hangzhou-a");
    assert_eq!(md.vpc_id().await.unwrap(), "vpc-sim");
    assert_eq!(md.vswitch_id().await.unwrap(), "vsw-a");
    assert_eq!(md.instance_type().await.unwrap(), "ecs.g7.large");
    let macs = md.macs().await.unwrap();
    assert_eq!(macs.len(), 2);
    assert!(macs.contains(&eni.mac));
    let m = md.eni(&eni.mac).await.unwrap();
    assert_eq!(m.eni_id, eni.id);
    assert_eq!(m.gateway, "192.168.0.253".parse::<Ipv4Addr>().unwrap());
    assert_eq!(m.private_ipv4s, eni.private_ips);
    assert_eq!(m.ipv6s, eni.ipv6s);
    assert_eq!(m.vswitch_cidr, "192.168.0.0/24");
    let primary = md.eni(&md.mac().await.unwrap()).await.unwrap();
    assert_eq!(
        primary.primary_ip,
        "192.168.0.10".parse::<Ipv4Addr>().unwrap()
    );
    assert!(primary.ipv6s.is_empty());

    // Selection by source address: 127.0.0.1 is listed for i-node2.
    let by_src = MetadataClient::new(Some(&sim.endpoint())).unwrap();
    assert_eq!(by_src.instance_id().await.unwrap(), "i-node2");

    // Without the token the service refuses.
    let (status, _) =
        reqwest_get(&format!("{}/latest/meta-data/instance-id", sim.endpoint())).await;
    assert_eq!(status, 401);

    // The RAM role's STS credentials are accepted by the API.
    let role = RamRoleProvider::new(Arc::new(md), None);
    let via_role = AlibabaCloud::new(fast_opts(&sim.endpoint()), Arc::new(role)).unwrap();
    assert_eq!(
        via_role
            .describe_route_tables("vpc-sim")
            .await
            .unwrap()
            .len(),
        1
    );
    sim.stop().await;
}

#[tokio::test]
async fn state_survives_restart_and_settles_in_flight_changes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state.json");
    let mut cfg = config();
    cfg.attach_delay_ms = 60_000;
    let sim = CloudSim::new(cfg.clone(), Some(file.clone())).unwrap();
    let running = sim.start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let c = client_with(&running.endpoint(), KEY, SECRET);
    let eni = c
        .create_network_interface(&eni_req("vsw-a", 2, 0))
        .await
        .unwrap();
    c.attach_network_interface(&eni.id, "i-node1")
        .await
        .unwrap();
    running.stop().await;

    let again = CloudSim::new(cfg, Some(file)).unwrap();
    let st = again.snapshot();
    let saved = &st.enis[&eni.id];
    assert_eq!(
        saved.status, "InUse",
        "an attach in flight completes on load"
    );
    assert_eq!(saved.secondary_ips.len(), 2);
    assert!(st.vswitches["vsw-a"].used.contains(&eni.primary_ip));
}

#[tokio::test]
async fn from_config_builds_the_production_client() {
    let (sim, _) = start(config()).await;
    let cfg = unicni_config::CloudConfig {
        kind: unicni_config::schema::CloudKind::Emulator,
        region: None,
        endpoint: Some(sim.endpoint()),
        metadata_endpoint: Some(sim.metadata_endpoint("i-node1")),
        access_key_id: Some(KEY.into()),
        access_key_secret: Some(SECRET.into()),
        credentials_file: None,
        route_table_quota: None,
        signature_version: unicni_config::SignatureVersion::V3,
    };
    let c = unicni_cloud::from_config(&cfg).await.unwrap();
    assert_eq!(
        c.region(),
        "cn-hangzhou",
        "region learned from the metadata service"
    );
    assert_eq!(
        c.describe_vswitches(Some("vpc-sim"), &[])
            .await
            .unwrap()
            .len(),
        3
    );
    let shown = format!("{c:?}");
    assert!(!shown.contains(SECRET), "{shown}");
    sim.stop().await;
}

// ---------------------------------------------------------------------------------------
// Issue 14: paging, response fields and the ENI's Deleting state as the vendor documents
// them (ECS API reference: DescribeNetworkInterfaces, CreateNetworkInterface,
// DeleteNetworkInterface, DescribeInstanceTypes).

/// A region whose vSwitch holds more ENIs than one page of either style.
fn paging_config() -> SimConfig {
    let mut cfg = config();
    cfg.vswitches.push(VSwitchSpec {
        id: "vsw-big".into(),
        zone: "cn-hangzhou-a".into(),
        cidr: "192.168.64.0/22".into(),
        ipv6_cidr: None,
    });
    cfg
}

/// Adds `n` unattached ENIs on vsw-big straight into the state (no API calls).
fn seed_enis(sim: &CloudSim, n: usize) {
    sim.with_state(false, |st| {
        for _ in 0..n {
            st.create_eni_record(
                "vsw-big",
                None,
                0,
                0,
                vec!["sg-sim".into()],
                vec![("owner".into(), "seed".into())],
                "Secondary",
            )
            .unwrap();
        }
    });
}

fn raw(sim: &CloudSim, kv: &[(&str, &str)]) -> Result<serde_json::Value, ApiError> {
    let mut p = unicni_cloud_sim::params::Params::default();
    p.0.insert("Version".into(), unicni_cloud::client::ECS_VERSION.into());
    for (k, v) in kv {
        p.0.insert(k.to_string(), v.to_string());
    }
    sim.with_state(false, |st| unicni_cloud_sim::api::dispatch(st, &p))
}

fn eni_ids(doc: &serde_json::Value) -> Vec<String> {
    doc["NetworkInterfaceSets"]["NetworkInterfaceSet"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["NetworkInterfaceId"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn describe_enis_pages_by_number_with_the_documented_limits() {
    let sim = CloudSim::new(paging_config(), None).unwrap();
    seed_enis(&sim, 23); // + 2 primary ENIs = 25
    let act = ("Action", "DescribeNetworkInterfaces");
    let mut seen = Vec::new();
    for (page, want) in [("1", 10), ("2", 10), ("3", 5), ("4", 0)] {
        let doc = raw(&sim, &[act, ("PageNumber", page), ("PageSize", "10")]).unwrap();
        assert_eq!(doc["TotalCount"], 25);
        assert_eq!(doc["PageNumber"].to_string(), page);
        assert_eq!(doc["PageSize"], 10);
        assert!(doc.get("NextToken").is_none(), "{doc}");
        let ids = eni_ids(&doc);
        assert_eq!(ids.len(), want, "page {page}");
        seen.extend(ids);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 25);
    // Default PageSize 10; PageSize 1..=1000.
    let doc = raw(&sim, &[act]).unwrap();
    assert_eq!((eni_ids(&doc).len(), &doc["PageSize"]), (10, &10.into()));
    assert_eq!(
        eni_ids(&raw(&sim, &[act, ("PageSize", "1000")]).unwrap()).len(),
        25
    );
    for bad in ["0", "1001"] {
        let e = raw(&sim, &[act, ("PageSize", bad)]).unwrap_err();
        assert_eq!(
            (e.status, e.code.as_str()),
            (400, "InvalidParameter"),
            "{e:?}"
        );
    }
}

#[test]
fn describe_enis_pages_by_token_with_the_documented_limits() {
    let sim = CloudSim::new(paging_config(), None).unwrap();
    seed_enis(&sim, 23);
    let act = ("Action", "DescribeNetworkInterfaces");
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let mut kv = vec![act, ("MaxResults", "10")];
        if !token.is_empty() {
            kv.push(("NextToken", token.as_str()));
        }
        let doc = raw(&sim, &kv).unwrap();
        pages += 1;
        // The token style answers NextToken, not the numbered style's fields.
        for absent in ["TotalCount", "PageNumber", "PageSize"] {
            assert!(doc.get(absent).is_none(), "{absent} in {doc}");
        }
        seen.extend(eni_ids(&doc));
        token = doc["NextToken"].as_str().unwrap().to_string();
        if token.is_empty() {
            break;
        }
        assert!(pages < 10, "NextToken never ends");
    }
    assert_eq!(pages, 3);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 25);
    // MaxResults 10..=500: below 10 reads as 10, above 500 as 500 (not refused).
    let doc = raw(&sim, &[act, ("MaxResults", "3")]).unwrap();
    assert_eq!(eni_ids(&doc).len(), 10);
    let doc = raw(&sim, &[act, ("MaxResults", "600")]).unwrap();
    assert_eq!(
        (eni_ids(&doc).len(), doc["NextToken"].as_str()),
        (25, Some(""))
    );
    let e = raw(&sim, &[act, ("NextToken", "garbage")]).unwrap_err();
    assert_eq!(e.code, "InvalidNextToken.Malformed");
}

#[test]
fn responses_carry_only_the_vendors_fields() {
    let sim = CloudSim::new(paging_config(), None).unwrap();
    let doc = raw(
        &sim,
        &[
            ("Action", "CreateNetworkInterface"),
            ("VSwitchId", "vsw-big"),
            ("SecurityGroupIds.1", "sg-sim"),
        ],
    )
    .unwrap();
    assert!(doc["NetworkInterfaceId"].is_string(), "{doc}");
    assert!(doc.get("InstanceId").is_none(), "{doc}");
    let doc = raw(&sim, &[("Action", "DescribeInstanceTypes")]).unwrap();
    assert!(doc.get("TotalCount").is_none(), "{doc}");
    assert!(doc["NextToken"].is_string(), "{doc}");
}

#[tokio::test]
async fn client_reads_every_page_with_next_token() {
    let cfg = paging_config();
    let (sim, c) = start(cfg).await;
    // More than one page of the client's 500.
    seed_enis(&sim.sim, 510);
    let all = c
        .describe_network_interfaces(&EniFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 512);
    let mut ids: Vec<_> = all.iter().map(|e| e.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 512, "a page read twice");
    let seeded = c
        .describe_network_interfaces(&EniFilter {
            tags: vec![("owner".into(), "seed".into())],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(seeded.len(), 510);
    sim.stop().await;
}

#[tokio::test]
async fn deleted_eni_is_deleting_then_gone() {
    let mut cfg = paging_config();
    cfg.delete_delay_ms = 300;
    let (sim, c) = start(cfg).await;
    let free_before = sim.sim.snapshot().vswitches["vsw-a"].available();
    let eni = c
        .create_network_interface(&eni_req("vsw-a", 2, 0))
        .await
        .unwrap();
    assert_eq!(eni.instance_id, None);
    c.delete_network_interface(&eni.id).await.unwrap();

    let seen = c
        .describe_network_interfaces(&EniFilter {
            ids: vec![eni.id.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].status, EniStatus::Deleting);
    let by_status = c
        .describe_network_interfaces(&EniFilter {
            status: Some(EniStatus::Deleting),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_status.len(), 1);
    // Its addresses stay taken until it is gone.
    assert_eq!(
        sim.sim.snapshot().vswitches["vsw-a"].available(),
        free_before - 3
    );
    // A second delete meets the state, not a missing ENI.
    let err = c.delete_network_interface(&eni.id).await.unwrap_err();
    assert_eq!(
        err.code(),
        Some("InvalidOperation.InvalidEniState"),
        "{err}"
    );

    unicni_cloud::poll::wait_eni_deleted(&c, &eni.id, poll())
        .await
        .unwrap();
    assert!(!sim.sim.snapshot().enis.contains_key(&eni.id));
    assert_eq!(
        sim.sim.snapshot().vswitches["vsw-a"].available(),
        free_before
    );
    let err = c.delete_network_interface(&eni.id).await.unwrap_err();
    assert_eq!(err.code(), Some("InvalidEniId.NotFound"), "{err}");
    sim.stop().await;
}

#[tokio::test]
async fn ipv4_and_ipv6_prefixes() {
    use ipnet::{Ipv4Net, Ipv6Net};
    let (sim, c) = start(config()).await;
    // g7.large: 6 IPv4 slots per ENI; the primary takes one, a secondary another.
    let eni = in_use_eni(&c, "vsw-a", 1, 0, "i-node1").await;
    let single: Vec<Ipv4Addr> = eni.secondary_ips().copied().collect();

    let got = c.assign_ipv4_prefixes(&eni.id, 3).await.unwrap();
    assert_eq!(got.len(), 3);
    let vsw: Ipv4Net = "192.168.0.0/24".parse().unwrap();
    for n in &got {
        assert_eq!(n.prefix_len(), 28, "{n}");
        assert_eq!(n.network(), n.addr(), "{n} is aligned");
        assert!(vsw.contains(n), "{n} inside the vSwitch");
        for ip in single.iter().chain([&eni.primary_ip]) {
            assert!(!n.contains(ip), "{n} overlaps the single address {ip}");
        }
    }
    // One slot left: two prefixes do not fit, and the per-ENI code is the addresses'.
    let err = c.assign_ipv4_prefixes(&eni.id, 2).await.unwrap_err();
    assert!(matches!(err, CloudError::EniIpv4Full(_)), "{err}");
    assert_eq!(err.code(), Some("MaxEniPrivateIpsCountExceeded"));
    assert_eq!(err.api().unwrap().http_status, 403);
    // More than 10 in one call is a parameter error, whatever the room.
    let err = c.assign_ipv4_prefixes(&eni.id, 11).await.unwrap_err();
    assert_eq!(err.code(), Some("InvalidParameter"), "{err}");
    // A single address never lands in a prefix either.
    let more = c
        .assign_private_ip_addresses(&eni.id, IpRequest::Count(1))
        .await
        .unwrap();
    assert!(got.iter().all(|n| !n.contains(&more[0])));

    let seen = c
        .describe_network_interfaces(&EniFilter {
            ids: vec![eni.id.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(seen[0].ipv4_prefixes, got);

    c.unassign_ipv4_prefixes(&eni.id, &got[..1]).await.unwrap();
    let err = c
        .unassign_ipv4_prefixes(&eni.id, &got[..1])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidIp.IpUnassigned"));
    let seen = c
        .describe_network_interfaces(&EniFilter {
            ids: vec![eni.id.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(seen[0].ipv4_prefixes, got[1..].to_vec());

    // IPv6: one /80 per ENI.
    let v6 = c.assign_ipv6_prefixes(&eni.id, 1).await.unwrap();
    assert_eq!(v6.len(), 1);
    assert_eq!(v6[0].prefix_len(), 80);
    let vsw6: Ipv6Net = "2408:4000:1:100::/64".parse().unwrap();
    assert!(vsw6.contains(&v6[0]));
    let err = c.assign_ipv6_prefixes(&eni.id, 1).await.unwrap_err();
    assert!(matches!(err, CloudError::EniIpv6Full(_)), "{err}");
    c.unassign_ipv6_prefixes(&eni.id, &v6).await.unwrap();

    // A vSwitch without a free aligned /28 answers as out of addresses.
    let tiny = in_use_eni(&c, "vsw-tiny", 0, 0, "i-node1").await;
    let err = c.assign_ipv4_prefixes(&tiny.id, 1).await.unwrap_err();
    assert!(matches!(err, CloudError::VSwitchExhausted(_)), "{err}");
    assert_eq!(err.code(), Some("QuotaExceeded.PrivateIpAddress"));

    // Prefixes at creation; and back to the vSwitch once the ENI is deleted.
    let created = c
        .create_network_interface(&CreateEniRequest {
            ipv4_prefix_count: 2,
            ipv6_prefix_count: 1,
            ..eni_req("vsw-a", 0, 0)
        })
        .await
        .unwrap();
    assert_eq!(created.ipv4_prefixes.len(), 2);
    assert_eq!(created.ipv6_prefixes.len(), 1);
    assert!(created
        .ipv4_prefixes
        .iter()
        .all(|n| !got.contains(n) || n == &got[0]));
    c.delete_network_interface(&created.id).await.unwrap();
    unicni_cloud::poll::wait_eni_deleted(&c, &created.id, poll())
        .await
        .unwrap();
    let again = c
        .create_network_interface(&CreateEniRequest {
            ipv4_prefix_count: 2,
            ..eni_req("vsw-a", 0, 0)
        })
        .await
        .unwrap();
    assert_eq!(again.ipv4_prefixes, created.ipv4_prefixes);
    sim.stop().await;
}
