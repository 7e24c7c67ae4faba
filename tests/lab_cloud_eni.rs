//! The lab's emulated ENIs are real (root): through the real Alibaba client against the
//! lab's emulator, an ENI attached to node 1's instance appears as a link with the ENI's
//! MAC in node 1's namespace; a secondary IP assigned through the API and configured on
//! that link is reachable from the VPC namespace through that link; unassign removes the
//! VPC's route, detach removes the link.

mod common;

use common::lab::Lab;

use serde_json::Value;
use std::net::Ipv4Addr;
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use unicni_cloud::poll::{wait_eni_status, PollPolicy};
use unicni_cloud::{Cloud, CreateEniRequest, EniStatus, IpRequest};

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + timeout;
    while !f() {
        assert!(
            Instant::now() < until,
            "timed out after {timeout:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

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

#[test]
fn lab_materializes_attached_enis_and_routes_their_ips() {
    if !common::require_root() {
        return;
    }
    let lab = Lab::new("ce");
    let up = lab.unicni(&[
        "up",
        "--mode",
        "vpc-route",
        "--nodes",
        "1",
        "--pods-per-node",
        "1",
    ]);
    assert!(
        up.status.success(),
        "lab up failed:\n{}\n{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );
    let (vpc, n1) = (lab.ns("vpc"), lab.ns("n1"));
    let instance = format!("i-ulab{}-n1", lab.id);
    // The lab's own credentials file and endpoint, as a node's `[cloud]` section has them.
    let cfg = unicni_config::CloudConfig {
        region: Some("cn-hangzhou".into()),
        endpoint: Some("http://192.168.250.1:8070".into()),
        metadata_endpoint: Some(format!("http://192.168.250.1:8070/instances/{instance}")),
        credentials_file: Some(format!("/run/unicni-lab-{}/cloud/credentials.toml", lab.id)),
        ..Default::default()
    };
    // The emulator listens inside the VPC namespace: the client runs there, on a thread of
    // its own with a single-threaded runtime.
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
                let eni = cloud
                    .create_network_interface(&CreateEniRequest {
                        vswitch_id: "vsw-lab".into(),
                        security_group_ids: vec!["sg-sim".into()],
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                cloud
                    .attach_network_interface(&eni.id, &instance)
                    .await
                    .unwrap();
                wait_eni_status(&cloud, &eni.id, EniStatus::InUse, PollPolicy::default())
                    .await
                    .unwrap();
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

                cloud
                    .detach_network_interface(&eni.id, &instance)
                    .await
                    .unwrap();
                wait_eni_status(&cloud, &eni.id, EniStatus::Available, PollPolicy::default())
                    .await
                    .unwrap();
                wait_for(
                    &format!("the link with MAC {} to leave {n1}", eni.mac),
                    Duration::from_secs(10),
                    || link_with_mac(&n1, &eni.mac).is_none(),
                );
            });
        })
        .unwrap();
}
