//! podman with its CNI network backend on a network `unicni install` set up: two
//! containers get addresses, ping each other, and removal releases the addresses.
//!
//! Needs root, podman, runc, busybox-static and the reference CNI plugins.

mod runtimes;

use runtimes::guard::Defer;
use runtimes::image::write_images;
use runtimes::network::{install, Plugin};
use runtimes::podman::{Podman, IMAGE};

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn two_containers_ping_and_release(plugin: Plugin) {
    crate::require!(
        "runtime_podman",
        tools: ["podman", "runc", "conmon", "ip", "iptables-save"],
        files: ["/usr/lib/cni/portmap", "/usr/lib/cni/loopback", runtimes::image::BUSYBOX]
    );
    // One podman test at a time: they share the host's blob-info cache, which is removed
    // after the test when it did not exist before.
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut defer = Defer::new();
    defer.restore_absent(std::path::Path::new("/var/lib/containers"));
    let tmp = defer.temp_dir("unicni-podman-");
    let net = install(plugin, &tmp.join("cni"), &["portmap"], &mut defer);
    let (rootfs, _) = write_images(&tmp);
    let cgroup_parent = format!("/unicni-test-{}", net.name);
    defer.cgroup(&cgroup_parent);
    let podman = Podman::new(&tmp.join("podman"), &net);
    podman.import(&rootfs);

    let networks = podman.run(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(
        networks.lines().any(|l| l.trim() == net.name),
        "podman does not list network {} from {}:\n{networks}",
        net.name,
        net.conflist.display()
    );

    let names = [format!("{}-a", net.name), format!("{}-b", net.name)];
    for name in &names {
        podman.run(&[
            "run",
            "--detach",
            "--name",
            name,
            "--network",
            &net.name,
            "--cap-add",
            "NET_RAW",
            "--cgroup-parent",
            &cgroup_parent,
            IMAGE,
            "/bin/sleep",
            "infinity",
        ]);
    }
    let ids: Vec<String> = names
        .iter()
        .map(|n| {
            podman
                .run(&["inspect", "--format", "{{.Id}}", n])
                .trim()
                .to_string()
        })
        .collect();
    let ips: Vec<String> = names.iter().map(|n| podman.ip(n, &net.name)).collect();
    let subnet: ipnet::Ipv4Net = net.subnet.parse().unwrap();
    for (name, ip) in names.iter().zip(&ips) {
        let addr: std::net::Ipv4Addr = ip
            .parse()
            .unwrap_or_else(|_| panic!("container {name} has no IPv4 address: {ip:?}"));
        assert!(
            subnet.contains(&addr),
            "container {name} got {ip}, outside the node subnet {subnet}"
        );
    }
    assert_ne!(ips[0], ips[1], "both containers got the same address");

    // The address inside the container is the one podman reports.
    let addr = podman.run(&["exec", &names[0], "ip", "-4", "addr", "show", "eth0"]);
    assert!(
        addr.contains(&format!("{}/", ips[0])),
        "eth0 in {} does not carry {}:\n{addr}",
        names[0],
        ips[0]
    );
    for (from, to) in [(0, 1), (1, 0)] {
        let out = podman.output(&["exec", &names[from], "ping", "-c", "2", "-W", "2", &ips[to]]);
        assert!(
            out.status.success(),
            "{} cannot ping {} ({}):\n{}{}",
            names[from],
            names[to],
            ips[to],
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    podman.run(&["rm", "--force", "--time", "0", &names[0], &names[1]]);
    let left = podman.run(&["ps", "--all", "--quiet"]);
    assert!(
        left.trim().is_empty(),
        "podman still lists containers: {left}"
    );
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let ip_refs: Vec<&str> = ips.iter().map(String::as_str).collect();
    net.assert_released(&id_refs, &ip_refs);

    // The addresses are free again: a new container may be given one of them, and the
    // network still works after the release.
    let name_c = format!("{}-c", net.name);
    podman.run(&[
        "run",
        "--detach",
        "--name",
        &name_c,
        "--network",
        &net.name,
        "--cgroup-parent",
        &cgroup_parent,
        IMAGE,
        "/bin/sleep",
        "infinity",
    ]);
    let ip_c = podman.ip(&name_c, &net.name);
    assert!(
        subnet.contains(&ip_c.parse::<std::net::Ipv4Addr>().unwrap()),
        "container {name_c} got {ip_c}, outside {subnet}"
    );
    podman.run(&["rm", "--force", "--time", "0", &name_c]);
}

#[test]
fn podman_containers_on_unicni() {
    two_containers_ping_and_release(Plugin::Unicni);
}

#[test]
fn podman_containers_on_reference_bridge() {
    two_containers_ping_and_release(Plugin::Reference);
}
