//! `ctr run --cni` with unicni: the container gets its address from unicni and reaches
//! the gateway, and killing the task runs ctr's DEL, which releases the address.
//!
//! `ctr` has no flags for CNI dirs: it uses the alphabetically first file in
//! /etc/cni/net.d and plugins from /opt/cni/bin, and passes `CNI_NETNS=/proc/PID/ns/net`.
//! The test places its files there and restores both directories afterwards.
//!
//! Needs root, containerd, runc and busybox-static.

mod runtimes;

use runtimes::cniexec;
use runtimes::containerd::Containerd;
use runtimes::guard::{Daemon, Defer};
use runtimes::image::{write_images, IMAGE_REF};
use runtimes::network::{install, Network, Plugin};
use runtimes::util::{output, wait_for};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const CONF_DIR: &str = "/etc/cni/net.d";
const BIN_DIR: &str = "/opt/cni/bin";

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Puts the network's conflist first in /etc/cni/net.d and its plugins into /opt/cni/bin.
fn place_for_ctr(net: &Network, defer: &mut Defer) {
    let conf_name = format!("00-{}.conflist", net.name);
    let conflist = std::fs::read(&net.conflist).unwrap();
    defer.place_file(&Path::new(CONF_DIR).join(&conf_name), &conflist, 0o644);
    for entry in std::fs::read_dir(&net.bin_dir).unwrap().flatten() {
        let body = std::fs::read(entry.path()).unwrap();
        defer.place_file(&Path::new(BIN_DIR).join(entry.file_name()), &body, 0o755);
    }
    let mut files: Vec<String> = std::fs::read_dir(CONF_DIR)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".conf") || n.ends_with(".conflist") || n.ends_with(".json"))
        .collect();
    files.sort();
    assert_eq!(
        files.first(),
        Some(&conf_name),
        "ctr would not pick our conflist: {CONF_DIR} sorts {files:?}"
    );
}

fn task_pid(ctrd: &Containerd, ns: &str, id: &str) -> Option<u32> {
    let out = output(ctrd.ctr(ns).args(["task", "ls"]));
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        (cols.len() >= 3 && cols[0] == id && cols[2] == "RUNNING")
            .then(|| cols[1].parse().ok())
            .flatten()
    })
}

fn eth0_ipv4(pid: u32) -> Option<String> {
    let out = output(Command::new("nsenter").args([
        &format!("--net=/proc/{pid}/ns/net"),
        "--",
        "ip",
        "-j",
        "-4",
        "addr",
        "show",
        "dev",
        "eth0",
    ]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v[0]["addr_info"][0]["local"].as_str().map(String::from)
}

fn ctr_run_cni(plugin: Plugin) {
    crate::require!(
        "runtime_ctr",
        tools: ["containerd", "ctr", "runc", "ip", "nsenter", "iptables-save"],
        files: ["/usr/lib/cni/loopback", runtimes::image::BUSYBOX]
    );
    // /etc/cni/net.d and /opt/cni/bin are the host's: one ctr test at a time.
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut defer = Defer::new();
    let tmp = defer.temp_dir("unicni-ctr-");
    let net = install(plugin, &tmp.join("cni"), &[], &mut defer);
    place_for_ctr(&net, &mut defer);
    let (_, oci) = write_images(&tmp);
    let ctrd = Containerd::start(&tmp.join("containerd"), &net, &oci);

    // ctr puts the task's cgroup under "/<namespace>": a namespace of our own keeps that
    // cgroup ours to remove.
    let ns = format!("unicni-test-{}", net.name);
    defer.cgroup(&format!("/{ns}"));
    ctrd.import(&ns, &oci);
    let id = net.name.clone();
    // libcni's container ID for ctr is "<namespace>-<id>".
    let cni_id = format!("{ns}-{id}");
    let log = std::fs::File::create(tmp.join("ctr-run.log")).unwrap();
    // Not detached: when the task ends, this ctr runs CNI DEL and deletes the container.
    let child = ctrd
        .ctr(&ns)
        .args(["run", "--cni", "--rm", IMAGE_REF, &id, "/bin/sleep", "600"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn ctr run");
    let mut ctr_run = Daemon::new("ctr run --cni", child);
    // If the test fails before ctr's own DEL ran, undo ADD by hand (ctr -d would never).
    cniexec::defer_del(
        &mut defer,
        "CNI DEL for the ctr container",
        net.conflist_json(),
        net.bin_dir.clone(),
        cni_id.clone(),
        "",
        serde_json::json!({}),
    );

    let pid = wait_for("ctr task to run", Duration::from_secs(30), || {
        if !ctr_run.alive() {
            panic!(
                "ctr run --cni exited early:\n{}",
                std::fs::read_to_string(tmp.join("ctr-run.log")).unwrap_or_default()
            );
        }
        task_pid(&ctrd, &ns, &id)
    });
    let ip = wait_for("eth0 to get an address", Duration::from_secs(10), || {
        eth0_ipv4(pid)
    });
    let subnet: ipnet::Ipv4Net = net.subnet.parse().unwrap();
    assert!(
        subnet.contains(&ip.parse::<std::net::Ipv4Addr>().unwrap()),
        "ctr container got {ip}, outside the node subnet {subnet}"
    );
    assert_eq!(
        net.bridge_ports().len(),
        1,
        "one host veth on {}",
        net.bridge
    );

    let out = output(ctrd.ctr(&ns).args([
        "task",
        "exec",
        "--exec-id",
        "ping-gw",
        &id,
        "ping",
        "-c",
        "2",
        "-W",
        "2",
        &net.gateway,
    ]));
    assert!(
        out.status.success(),
        "ctr container ({ip}) cannot ping its gateway {}:\n{}{}",
        net.gateway,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The task kill path: ctr notices the exit, runs DEL, removes the container.
    runtimes::util::run(ctrd.ctr(&ns).args(["task", "kill", "-s", "SIGKILL", &id]));
    wait_for(
        "ctr run to exit after the kill",
        Duration::from_secs(20),
        || (!ctr_run.alive()).then_some(()),
    );
    let log = std::fs::read_to_string(tmp.join("ctr-run.log")).unwrap_or_default();
    assert!(
        !log.contains("network remove error")
            && !log.to_lowercase().contains("failed to destroy network"),
        "ctr's CNI DEL failed:\n{log}"
    );
    net.assert_released(&[&cni_id], &[&ip]);
}

#[test]
fn ctr_run_cni_on_unicni() {
    ctr_run_cni(Plugin::Unicni);
}

#[test]
fn ctr_run_cni_on_reference_bridge() {
    ctr_run_cni(Plugin::Reference);
}
