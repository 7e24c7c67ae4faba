//! The lab's emulated ENIs are real (root): through the real Alibaba client against the
//! lab's emulator, an ENI attached to node 1's instance appears as a link with the ENI's
//! MAC in node 1's namespace; a secondary IP assigned through the API and configured on
//! that link is reachable from the VPC namespace through that link; unassign removes the
//! VPC's route, detach removes the link. An ENI of a pod vSwitch has all its addresses
//! routed (primary, secondary, IPv6), moves into a pod namespace and back as an
//! exclusive-ENI pod takes it, answers the VPC host over both families from there, and
//! detach removes it wherever it is.

mod common;

use common::lab::{wait_for, Lab};

use serde_json::Value;
use std::net::Ipv4Addr;
use std::process::{Command, Output};
use std::time::Duration;
use unicni_cloud::poll::{wait_eni_status, PollPolicy};
use unicni_cloud::{Cloud, CreateEniRequest, EniStatus, IpRequest};

fn ip(args: &[&str]) -> Output {
    Command::new("ip").args(args).output().unwrap()
}

/// The links of `ns` as `ip -j -s link` objects.
fn links(ns: &str) -> Vec<Value> {
    let out = ip(&["-n", ns, "-j", "-s", "link", "show"]);
    serde_json::from_slice::<Value>(&out.stdout)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

fn link_with_mac(ns: &str, mac: &str) -> Option<Value> {
    links(ns).into_iter().find(|l| {
        l["address"]
            .as_str()
            .is_some_and(|a| a.eq_ignore_ascii_case(mac))
    })
}

fn vpc_route(ns: &str, ip4: Ipv4Addr) -> String {
    let out = ip(&["-n", ns, "route", "show", &format!("{ip4}/32")]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `lab up` of one vpc-route node with `pods` pods; fails the test with its output
/// unless it succeeds.
fn one_vpc_route_node(lab: &Lab, pods: &str) {
    let args = [
        "up",
        "--mode",
        "vpc-route",
        "--nodes",
        "1",
        "--pods-per-node",
    ];
    lab.ok(&[&args[..], &[pods]].concat());
}

#[test]
fn lab_materializes_attached_enis_and_routes_their_ips() {
    if !common::require_root() {
        return;
    }
    let lab = Lab::new("ce");
    one_vpc_route_node(&lab, "1");
    let (vpc, n1) = (lab.ns("vpc"), lab.ns("n1"));
    let instance = format!("i-ulab{}-n1", lab.id);
    with_lab_cloud(&lab, &instance.clone(), |cloud| async move {
        let eni = create_eni(&cloud, "vsw-lab", 0, 0).await;
        attach_and_wait(&cloud, &eni.id, &instance).await;
        wait_for(
            &format!("a link with MAC {} in {n1}", eni.mac),
            Duration::from_secs(10),
            || link_with_mac(&n1, &eni.mac).is_some(),
        );
        let link = link_with_mac(&n1, &eni.mac).unwrap();
        let name = link["ifname"].as_str().unwrap().to_string();
        assert_ne!(name, "eth0", "the ENI must be a link of its own");

        let ips = cloud
            .assign_private_ip_addresses(&eni.id, IpRequest::Count(1))
            .await
            .unwrap();
        assert_eq!(ips.len(), 1, "one secondary IP asked for: {ips:?}");
        let sec = ips[0];
        wait_for(
            &format!("the VPC route to {sec}/32"),
            Duration::from_secs(10),
            || vpc_route(&vpc, sec).contains("br0"),
        );
        // What the terway backend will do with the IP: put it on the ENI's link.
        let add = ip(&["-n", &n1, "addr", "add", &format!("{sec}/32"), "dev", &name]);
        assert!(add.status.success(), "{add:?}");
        let rx = |l: &Value| l["stats64"]["rx"]["packets"].as_u64().unwrap_or(0);
        let before = rx(&link_with_mac(&n1, &eni.mac).unwrap());
        let ping = Command::new("ip")
            .args([
                "netns", "exec", &vpc, "ping", "-c", "3", "-i", "0.2", "-W", "2",
            ])
            .arg(sec.to_string())
            .output()
            .unwrap();
        assert!(
            ping.status.success(),
            "ping {sec} from {vpc} failed:\n{}",
            String::from_utf8_lossy(&ping.stdout)
        );
        let after = rx(&link_with_mac(&n1, &eni.mac).unwrap());
        assert!(
            after >= before + 3,
            "the pings must arrive through the ENI link {name} (rx {before} -> {after})"
        );

        cloud
            .unassign_private_ip_addresses(&eni.id, &[sec])
            .await
            .unwrap();
        wait_for(
            &format!("the VPC route to {sec}/32 to go"),
            Duration::from_secs(10),
            || vpc_route(&vpc, sec).is_empty(),
        );

        detach_and_wait(&cloud, &eni.id, &instance).await;
        wait_for(
            &format!("the link with MAC {} to leave {n1}", eni.mac),
            Duration::from_secs(10),
            || link_with_mac(&n1, &eni.mac).is_none(),
        );
    });
}

/// Runs `body` with the lab's cloud as node `instance`'s `[cloud]` section has it (the
/// lab's own credentials file and endpoint). The emulator listens inside the VPC
/// namespace: the client runs there, on a thread of its own with a single-threaded runtime.
fn with_lab_cloud<F: std::future::Future<Output = ()>>(
    lab: &Lab,
    instance: &str,
    body: impl FnOnce(unicni_cloud::AlibabaCloud) -> F + Send,
) {
    let cfg = unicni_config::CloudConfig {
        region: Some("cn-hangzhou".into()),
        endpoint: Some("http://192.168.250.1:8070".into()),
        metadata_endpoint: Some(format!("http://192.168.250.1:8070/instances/{instance}")),
        credentials_file: Some(format!("/run/unicni-lab-{}/cloud/credentials.toml", lab.id)),
        ..Default::default()
    };
    let vpc = lab.ns("vpc");
    let vpc_ns =
        unicni_net::NetNs::open(std::path::Path::new(&format!("/var/run/netns/{vpc}"))).unwrap();
    vpc_ns
        .run(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let cloud = unicni_cloud::from_config(&cfg).await.unwrap();
                body(cloud).await;
            });
        })
        .unwrap();
}

/// A new ENI in vSwitch `vsw` with the lab's security group and `secondary` IPv4 and
/// `ipv6` IPv6 addresses besides its primary one.
async fn create_eni(
    cloud: &impl Cloud,
    vsw: &str,
    secondary: u32,
    ipv6: u32,
) -> unicni_cloud::NetworkInterface {
    cloud
        .create_network_interface(&CreateEniRequest {
            vswitch_id: vsw.into(),
            security_group_ids: vec!["sg-lab".into()],
            secondary_ip_count: secondary,
            ipv6_count: ipv6,
            ..Default::default()
        })
        .await
        .unwrap()
}

/// Attaches ENI `id` to `instance` and waits until the cloud says it is InUse.
async fn attach_and_wait(cloud: &impl Cloud, id: &str, instance: &str) {
    cloud.attach_network_interface(id, instance).await.unwrap();
    wait_eni_status(cloud, id, EniStatus::InUse, PollPolicy::default())
        .await
        .unwrap();
}

/// Detaches ENI `id` from `instance` and waits until the cloud says it is Available.
async fn detach_and_wait(cloud: &impl Cloud, id: &str, instance: &str) {
    cloud.detach_network_interface(id, instance).await.unwrap();
    wait_eni_status(cloud, id, EniStatus::Available, PollPolicy::default())
        .await
        .unwrap();
}

fn vpc_route6(ns: &str, ip6: std::net::Ipv6Addr) -> String {
    let out = ip(&["-n", ns, "-6", "route", "show", &format!("{ip6}/128")]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn neighbour(ns: &str, addr: &str) -> String {
    let out = ip(&["-n", ns, "neigh", "show", addr, "dev", "br0"]);
    String::from_utf8_lossy(&out.stdout).trim().to_lowercase()
}

fn ping(ns: &str, addr: &str) -> Output {
    Command::new("ip")
        .args([
            "netns", "exec", ns, "ping", "-c", "2", "-i", "0.2", "-W", "2", addr,
        ])
        .output()
        .unwrap()
}

#[test]
fn pod_vswitch_eni_routes_every_address_and_moves_into_a_pod() {
    if !common::require_root() {
        return;
    }
    let lab = Lab::new("cx");
    one_vpc_route_node(&lab, "0");
    let (vpc, n1, host) = (lab.ns("vpc"), lab.ns("n1"), lab.ns("host"));
    let pod = lab.ns("n1-px");
    assert!(ip(&["netns", "add", &pod]).status.success());
    let instance = format!("i-ulab{}-n1", lab.id);
    // The VPC router owns the pod vSwitches' gateways.
    let addrs =
        String::from_utf8_lossy(&ip(&["-n", &vpc, "addr", "show", "br0"]).stdout).into_owned();
    for gw in [
        "192.168.252.253/24",
        "192.168.253.253/24",
        "fd00:252::1/64",
        "fd00:253::1/64",
    ] {
        assert!(addrs.contains(gw), "br0 lacks {gw}:\n{addrs}");
    }
    with_lab_cloud(&lab, &instance.clone(), |cloud| async move {
        // An ENI cannot be attached across zones.
        let far = create_eni(&cloud, "vsw-zone-b", 0, 0).await;
        let e = cloud
            .attach_network_interface(&far.id, &instance)
            .await
            .unwrap_err();
        assert!(format!("{e}").contains("Zone"), "{e}");

        let eni = create_eni(&cloud, "vsw-pod-a", 1, 1).await;
        let primary = eni.primary_ip;
        let sec = *eni.secondary_ips().next().unwrap();
        let v6 = eni.ipv6s[0];
        assert!(primary.to_string().starts_with("192.168.252."), "{primary}");
        assert_ne!(
            v6.to_string(),
            "fd00:252::1",
            "the gateway is not handed out"
        );
        attach_and_wait(&cloud, &eni.id, &instance).await;
        wait_for(
            "the ENI link and its routes",
            Duration::from_secs(10),
            || {
                link_with_mac(&n1, &eni.mac).is_some()
                    && vpc_route(&vpc, primary).contains("br0")
                    && vpc_route(&vpc, sec).contains("br0")
                    && vpc_route6(&vpc, v6).contains("br0")
            },
        );
        for a in [primary.to_string(), sec.to_string(), v6.to_string()] {
            let n = neighbour(&vpc, &a);
            assert!(
                n.contains(&eni.mac.to_lowercase()) && n.contains("permanent"),
                "neighbour of {a}: {n}"
            );
        }
        let name = link_with_mac(&n1, &eni.mac).unwrap()["ifname"]
            .as_str()
            .unwrap()
            .to_string();

        // An exclusive-ENI pod takes the whole link, with the ENI's addresses.
        let moved = ip(&["-n", &n1, "link", "set", &name, "netns", &pod]);
        assert!(moved.status.success(), "{moved:?}");
        for args in [
            vec!["link", "set", "lo", "up"],
            vec!["link", "set", &name, "up"],
            vec!["addr", "add", "PRIMARY/24", "dev", &name],
            vec!["-6", "addr", "add", "V6/64", "dev", &name, "nodad"],
            vec!["route", "add", "default", "via", "192.168.252.253"],
            vec!["-6", "route", "add", "default", "via", "fd00:252::1"],
        ] {
            let args: Vec<String> = args
                .iter()
                .map(|a| {
                    a.replace("PRIMARY", &primary.to_string())
                        .replace("V6", &v6.to_string())
                })
                .collect();
            let mut all = vec!["-n".to_string(), pod.clone()];
            all.extend(args);
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            let out = ip(&all);
            assert!(out.status.success(), "ip {all:?}: {out:?}");
        }
        // The VPC host (its own subnet, behind the VPC router) reaches the pod.
        for a in [primary.to_string(), v6.to_string()] {
            let from = if a.contains(':') { &vpc } else { &host };
            let p = ping(from, &a);
            assert!(
                p.status.success(),
                "ping {a} from {from}:\n{}",
                String::from_utf8_lossy(&p.stdout)
            );
        }
        // ... and back into the node when the pod is gone.
        let back = ip(&["-n", &pod, "link", "set", &name, "netns", &n1]);
        assert!(back.status.success(), "{back:?}");
        assert!(link_with_mac(&n1, &eni.mac).is_some());
        assert!(link_with_mac(&pod, &eni.mac).is_none());

        // Detach cleans up also while a pod holds the link.
        let moved = ip(&["-n", &n1, "link", "set", &name, "netns", &pod]);
        assert!(moved.status.success(), "{moved:?}");
        detach_and_wait(&cloud, &eni.id, &instance).await;
        wait_for(
            "the ENI link and its routes to go",
            Duration::from_secs(10),
            || {
                link_with_mac(&pod, &eni.mac).is_none()
                    && link_with_mac(&n1, &eni.mac).is_none()
                    && vpc_route(&vpc, primary).is_empty()
                    && vpc_route(&vpc, sec).is_empty()
                    && vpc_route6(&vpc, v6).is_empty()
            },
        );
    });
}
