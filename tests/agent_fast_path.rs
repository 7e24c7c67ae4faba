//! `unicni agent` with `flannel.fast_path = true` on one node namespace (root): the agent
//! loads and pins the eBPF fast path and tells the plugin through the lease file; a
//! restarted agent adopts the pins; `unicni uninstall` removes every pin. Where eBPF cannot
//! be used (a pin directory off bpffs), the agent runs without it when `bpf.fallback`
//! allows, and refuses to start otherwise.

mod common;

use common::agent::{self, metrics, NodeNs};
use std::path::{Path, PathBuf};

fn node() -> NodeNs {
    NodeNs::new("uafp", "192.168.78.1/24")
}

/// Removes a pin directory whatever happens (the test's, never the node's default).
struct Pins(PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = unicni_bpf::remove_all(&self.0);
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A bpffs of the test's own, outside /sys: `ip netns exec` mounts a fresh sysfs over /sys
/// (hiding the host's /sys/fs/bpf), other mounts stay visible. Unmounted on drop.
struct Bpffs(PathBuf);

impl Bpffs {
    fn new() -> Bpffs {
        let dir = PathBuf::from(format!("/run/{}", common::unique("unicni-test-bpffs-")));
        std::fs::create_dir_all(&dir).unwrap();
        unicni_testkit::cmd::must(&["mount", "-t", "bpf", "bpf", dir.to_str().unwrap()]);
        Bpffs(dir)
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = unicni_testkit::cmd::run(&["umount", &self.0.to_string_lossy()]);
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn config(dir: &Path, pin: &Path, fallback: bool) -> PathBuf {
    agent::write_config(
        dir,
        format!(
            "[cluster]\nname = \"t\"\n[flannel]\nnetwork = \"10.79.0.0/16\"\nmode = \"host-gw\"\n\
             interface = \"eth0\"\nmasquerade = false\nfast_path = true\n\
             [bpf]\npin_dir = \"{pin}\"\nfallback = {fallback}\n\
             [cni]\nnetwork_name = \"{net}\"\n[store]\nkind = \"file\"\npath = \"{d}/store\"\n\
             [node]\nname = \"me\"\nstate_dir = \"{d}/state\"\nrun_dir = \"{d}/run\"\n\
             [agent]\nreconcile_seconds = 1\n",
            pin = pin.display(),
            net = common::unique("t"),
            d = dir.display()
        ),
    )
}

fn wait_for(what: &str, log: &Path, f: impl FnMut() -> bool) {
    agent::wait_for(what, 10, log, f);
}

#[test]
fn agent_loads_the_fast_path_tells_the_plugin_adopts_it_and_uninstall_removes_it() {
    if !common::require_root() {
        return;
    }
    let ns = node();
    let dir = tempfile::tempdir().unwrap();
    let fs = Bpffs::new();
    let pins = Pins(fs.0.join("unicni"));
    let cfg = config(dir.path(), &pins.0, false);
    let log = dir.path().join("agent.log");
    let subnet_file = dir.path().join("run/flannel/subnet.json");

    let mut agent = agent::start(ns.name(), &cfg, &log);
    wait_for("lease published", &log, || subnet_file.exists());
    let published: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&subnet_file).unwrap()).unwrap();
    assert_eq!(
        published["fast_path"].as_str(),
        Some(pins.0.to_str().unwrap()),
        "{published}"
    );
    for f in [
        "progs/uc_fastpath",
        "progs/uc_fastpath_eg",
        "maps/endpoints",
    ] {
        assert!(pins.0.join(f).exists(), "{f} pinned");
    }
    let metrics = metrics(&ns);
    assert!(metrics.contains("unicni_agent_fast_path 1"), "{metrics}");

    // Stopped: the pins stay (traffic of existing pods keeps its fast path); a restart
    // adopts them.
    agent.terminate();
    assert!(pins.0.join("progs/uc_fastpath").exists());
    let mut agent = agent::start(ns.name(), &cfg, &log);
    wait_for("lease published again", &log, || subnet_file.exists());
    wait_for("adopted", &log, || {
        agent::logged(&log, "eBPF fast path ready")
    });
    agent.terminate();

    let out = agent::uninstall(Some(ns.name()), &[], &cfg, dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("removed eBPF programs"), "{stderr}");
    assert!(!pins.0.exists(), "uninstall leaves nothing pinned");
}

#[test]
fn without_usable_ebpf_the_agent_falls_back_or_refuses_as_configured() {
    if !common::require_root() {
        return;
    }
    let ns = node();
    let dir = tempfile::tempdir().unwrap();
    // Not on a bpf filesystem and not under /sys/fs/bpf: eBPF cannot be used there.
    let off = PathBuf::from(format!("/run/{}", common::unique("unicni-test-nobpf-")));
    let _cleanup = Pins(off.clone());
    let subnet_file = dir.path().join("run/flannel/subnet.json");

    let cfg = config(dir.path(), &off, true);
    let log = dir.path().join("fallback.log");
    let mut agent = agent::start(ns.name(), &cfg, &log);
    wait_for("lease published", &log, || subnet_file.exists());
    let published = std::fs::read_to_string(&subnet_file).unwrap();
    assert!(!published.contains("fast_path"), "{published}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("eBPF cannot be used on this node") && text.contains("bpf.fallback = true"),
        "{text}"
    );
    let metrics = metrics(&ns);
    assert!(metrics.contains("unicni_agent_fast_path 0"), "{metrics}");
    agent.terminate();

    let cfg = config(dir.path(), &off, false);
    let out = agent::run_agent(ns.name(), &cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("bpf.fallback = false"), "{stderr}");
    assert!(stderr.contains(&off.display().to_string()), "{stderr}");
    assert!(!subnet_file.exists(), "not ready: no lease file");
}
