//! `unicni install` and the cluster lock, through the real binary.

mod common;

use common::agent::{unicni, write_config as write_file};
use common::BIN;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn write_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    write_file(
        dir,
        format!(
            "[flannel]\nnetwork = \"10.90.0.0/16\"\nbridge = \"uinstall0\"\n{extra}\n\
             [store]\npath = \"{d}/store\"\n[node]\nname = \"node-a\"\nstate_dir = \"{d}/state\"\nrun_dir = \"{d}/run\"\n",
            d = dir.display()
        ),
    )
}

fn install(dir: &Path, config: &Path, env: &[(&str, &str)]) -> std::process::Output {
    Command::new(BIN)
        .args(["install", "--config"])
        .arg(config)
        .arg("--cni-conf-dir")
        .arg(dir.join("net.d"))
        .arg("--cni-bin-dir")
        .arg(dir.join("bin"))
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn first_install_writes_lock_conflist_and_binary() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(d.path(), "");
    let out = install(d.path(), &cfg, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let conf_path = d.path().join("net.d/10-unicni.conflist");
    let meta = std::fs::metadata(&conf_path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o644);
    let conf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&conf_path).unwrap()).unwrap();
    assert_eq!(conf["plugins"][0]["type"], "unicni");
    assert_eq!(conf["plugins"][0]["clusterNetwork"], "10.90.0.0/16");
    let subnet: ipnet::IpNet = conf["plugins"][0]["subnet"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(subnet.prefix_len(), 24);
    let bin = d.path().join("bin/unicni");
    assert_eq!(
        std::fs::metadata(&bin).unwrap().permissions().mode() & 0o777,
        0o755
    );
    assert_eq!(std::fs::read(&bin).unwrap(), std::fs::read(BIN).unwrap());
    // No temp files left next to the results.
    for dir in ["net.d", "bin"] {
        let names: Vec<_> = std::fs::read_dir(d.path().join(dir))
            .unwrap()
            .flatten()
            .collect();
        assert_eq!(names.len(), 1, "{dir}: {names:?}");
    }
    let show = lock_show(&cfg);
    assert!(show.status.success());
    let lock: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(lock["backend"], "flannel");
    assert_eq!(lock["mode"], "vxlan");
    assert_eq!(lock["cluster_cidr"], "10.90.0.0/16");
    // A second install of the same node keeps the node's subnet.
    assert!(install(d.path(), &cfg, &[]).status.success());
    let again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&conf_path).unwrap()).unwrap();
    assert_eq!(again["plugins"][0]["subnet"], conf["plugins"][0]["subnet"]);
}

#[test]
fn changed_immutable_fields_are_refused_by_name_and_change_nothing() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(d.path(), "");
    assert!(install(d.path(), &cfg, &[]).status.success());
    let conf_path = d.path().join("net.d/10-unicni.conflist");
    let before = std::fs::read(&conf_path).unwrap();
    let out = install(
        d.path(),
        &cfg,
        &[
            ("UNICNI_FLANNEL__MODE", "host-gw"),
            ("UNICNI_CLUSTER__SERVICE_CIDR", "10.100.0.0/16"),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("flannel.mode: locked \"vxlan\", config now \"host-gw\""),
        "{err}"
    );
    assert!(
        err.contains("cluster.service_cidr: locked \"10.96.0.0/12\", config now \"10.100.0.0/16\""),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&conf_path).unwrap(),
        before,
        "conflist changed"
    );
    // The cluster CIDR is immutable too.
    let out = install(
        d.path(),
        &cfg,
        &[("UNICNI_FLANNEL__NETWORK", "10.91.0.0/16")],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("flannel.network"));
}

#[test]
fn a_dual_stack_flannel_cluster_locks_its_ipv6_network() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(d.path(), "ipv6_network = \"fd00:10:90::/56\"");
    let dual = [("UNICNI_CLUSTER__IP_STACK", "dual")];
    let out = install(d.path(), &cfg, &dual);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The plugin's entry names the IPv6 network and the IPv6 subnet of the leased subnet.
    let conf = std::fs::read_to_string(d.path().join("net.d/10-unicni.conflist")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&conf).unwrap();
    let entry = &v["plugins"][0];
    assert_eq!(entry["ipv6ClusterNetwork"], "fd00:10:90::/56", "{conf}");
    assert_eq!(entry["subnet"], "10.90.0.0/24", "{conf}");
    assert_eq!(entry["ipv6Subnet"], "fd00:10:90::/64", "{conf}");
    // Another IPv6 network, node subnet size, or back to IPv4: refused by name.
    for (env, field) in [
        (
            [
                ("UNICNI_CLUSTER__IP_STACK", "dual"),
                ("UNICNI_FLANNEL__IPV6_NETWORK", "fd00:10:91::/56"),
            ],
            "flannel.ipv6_network: locked \"fd00:10:90::/56\", config now \"fd00:10:91::/56\"",
        ),
        (
            [
                ("UNICNI_CLUSTER__IP_STACK", "dual"),
                ("UNICNI_FLANNEL__IPV6_SUBNET_LEN", "72"),
            ],
            "flannel.ipv6_subnet_len: locked \"64\", config now \"72\"",
        ),
    ] {
        let out = install(d.path(), &cfg, &env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(field), "{err}");
    }
    let v4 = write_config(d.path(), "");
    let out = install(d.path(), &v4, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("cluster.ip_stack: locked \"dual\""),
        "{err}"
    );
    // The same config as before is still fine (`write_config` rewrote the one file).
    let cfg = write_config(d.path(), "ipv6_network = \"fd00:10:90::/56\"");
    assert!(install(d.path(), &cfg, &dual).status.success());
}

#[test]
fn mutable_fields_may_change() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(d.path(), "");
    assert!(install(d.path(), &cfg, &[]).status.success());
    let out = install(
        d.path(),
        &cfg,
        &[
            ("UNICNI_FLANNEL__MTU", "1400"),
            ("UNICNI_LOG__LEVEL", "debug"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let conf: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(d.path().join("net.d/10-unicni.conflist")).unwrap(),
    )
    .unwrap();
    assert_eq!(conf["plugins"][0]["mtu"], 1400);
}

#[test]
fn invalid_config_is_refused_before_anything_is_written() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(d.path(), "mode = \"ipip\"");
    let out = install(d.path(), &cfg, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("flannel.mode") && err.contains("ipip"),
        "{err}"
    );
    assert!(!d.path().join("net.d").exists());
    assert!(!d.path().join("store").exists());
    let check = unicni(&["config", "check"], &cfg);
    assert!(!check.status.success());
}

#[test]
fn lock_show_without_install_says_so() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write_config(d.path(), "");
    let out = lock_show(&cfg);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not been installed"));
}

#[test]
fn uninstall_removes_conflist_binary_bridge_and_rules() {
    if !nix::unistd::geteuid().is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "root-only test without root in CI"
        );
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let name = format!("uninst-{}", std::process::id());
    let bridge = format!("uun{:x}", std::process::id() & 0xffff);
    let cfg = write_config(d.path(), &format!("[cni]\nnetwork_name = \"{name}\"\n"));
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("uinstall0", &bridge);
    std::fs::write(&cfg, text).unwrap();
    assert!(install(d.path(), &cfg, &[]).status.success());
    // A pod makes the plugin build the bridge and the masquerade table.
    let ns = format!("unin{:x}", std::process::id() & 0xffff);
    assert!(Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .unwrap()
        .success());
    let conflist = std::fs::read_to_string(d.path().join("net.d/10-unicni.conflist")).unwrap();
    let mut add = Command::new(d.path().join("bin/unicni"))
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", "u1")
        .env("CNI_NETNS", format!("/var/run/netns/{ns}"))
        .env("CNI_IFNAME", "eth0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    add.stdin
        .take()
        .unwrap()
        .write_all(conflist.as_bytes())
        .unwrap();
    let added = add.wait_with_output().unwrap();
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stdout)
    );
    let table = format!("unicni_{}", name.replace('-', "_"));
    let has_table = || {
        Command::new("nft")
            .args(["list", "table", "ip", &table])
            .output()
            .unwrap()
            .status
            .success()
    };
    let has_bridge = || {
        Command::new("ip")
            .args(["link", "show", &bridge])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(has_table() && has_bridge());
    let out = common::agent::uninstall(None, &["--purge"], &cfg, d.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!has_table(), "nftables table {table} left behind");
    assert!(!has_bridge(), "bridge {bridge} left behind");
    assert!(!d.path().join("net.d/10-unicni.conflist").exists());
    assert!(!d.path().join("bin/unicni").exists());
}

/// A config on a store other than the file store; the flannel subnet and MTU are given so
/// that install touches nothing but the store (the lock).
fn write_store_config(dir: &Path, store: &str) -> std::path::PathBuf {
    write_file(
        dir,
        format!(
            "[flannel]\nnetwork = \"10.91.0.0/16\"\nnode_subnet = \"10.91.3.0/24\"\nmtu = 1450\n\
             [store]\n{store}\n[node]\nname = \"node-a\"\nstate_dir = \"{d}/state\"\nrun_dir = \"{d}/run\"\n",
            d = dir.display()
        ),
    )
}

fn lock_show(cfg: &Path) -> std::process::Output {
    unicni(&["lock", "show", "--config"], cfg)
}

/// Before install: "not installed"; after: the record install wrote, from the same store.
fn lock_show_round_trip(dir: &Path, cfg: &Path) {
    let before = lock_show(cfg);
    assert!(
        !before.status.success()
            && String::from_utf8_lossy(&before.stderr).contains("not been installed"),
        "{}",
        String::from_utf8_lossy(&before.stderr)
    );
    let out = install(dir, cfg, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let show = lock_show(cfg);
    assert!(
        show.status.success(),
        "{}",
        String::from_utf8_lossy(&show.stderr)
    );
    let lock: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(lock["backend"], "flannel");
    assert_eq!(lock["cluster_cidr"], "10.91.0.0/16", "{lock}");
}

#[test]
fn lock_show_reads_an_etcd_store() {
    let Some(etcd) = unicni_testkit::Etcd::start() else {
        return;
    };
    let url = &etcd.url;
    let d = tempfile::tempdir().unwrap();
    let cfg = write_store_config(
        d.path(),
        &format!("kind = \"etcd\"\nendpoints = [\"{url}\"]\nprefix = \"/lockshow\""),
    );
    lock_show_round_trip(d.path(), &cfg);
}

#[test]
fn lock_show_reads_a_kubernetes_store() {
    let api = unicni_kube_emulator::Emulator::new();
    let url = api.start();
    let d = tempfile::tempdir().unwrap();
    let kc = unicni_kube_emulator::kubeconfig(d.path(), &url);
    let cfg = write_store_config(
        d.path(),
        &format!("kind = \"kubernetes\"\nkubeconfig = \"{}\"", kc.display()),
    );
    lock_show_round_trip(d.path(), &cfg);
    // The record is the ConfigMap the API server holds, not a local file.
    assert!(api
        .get("/api/v1/configmaps", "kube-system", "unicni-lock")
        .is_some());
}
