//! A node namespace for agent tests and the agent process started in it.

use super::BIN;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use unicni_testkit::{wait_until, KillOnDrop, Netns};

/// A node's network namespace: loopback up and an underlay `eth0` (a veth whose peer `eth1`
/// stays in the namespace) holding `underlay`, e.g. `192.168.77.1/24`. Deleted on drop.
pub struct NodeNs(pub Netns);

impl NodeNs {
    pub fn new(prefix: &str, underlay: &str) -> NodeNs {
        let ns = Netns::with_lo_up(prefix);
        let node = NodeNs(ns);
        node.must(&[
            "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
        ]);
        node.must(&["ip", "addr", "add", underlay, "dev", "eth0"]);
        node.must(&["ip", "link", "set", "eth0", "up"]);
        node.must(&["ip", "link", "set", "eth1", "up"]);
        node
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// stdout of a command run inside, whatever its exit status.
    pub fn exec(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.0.exec(args).stdout).into_owned()
    }

    fn must(&self, args: &[&str]) {
        let out = self.0.exec(args);
        assert!(
            out.status.success(),
            "{args:?} in {}: {}",
            self.0.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `/metrics` of the agent listening on the default port inside namespace `ns`.
pub fn metrics(ns: &NodeNs) -> String {
    ns.exec(&["curl", "-sf", "http://127.0.0.1:9099/metrics"])
}

/// `unicni agent --config cfg` inside namespace `ns`, stderr to `log`; killed on drop.
pub fn start(ns: &str, cfg: &Path, log: &Path) -> KillOnDrop {
    let f = std::fs::File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    KillOnDrop(
        in_ns(ns, &["agent", "--config"])
            .arg(cfg)
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .expect("start the agent"),
    )
}

/// `unicni <args>` run inside namespace `ns`, for the caller to finish.
pub fn in_ns(ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, BIN]).args(args);
    c
}

/// `unicni agent --config cfg` run to completion inside namespace `ns` (a refusal).
pub fn run_agent(ns: &str, cfg: &Path) -> Output {
    in_ns(ns, &["agent", "--config"])
        .arg(cfg)
        .output()
        .expect("run the agent")
}

/// `unicni uninstall <extra> --config cfg` with the CNI directories under `dir`, inside
/// namespace `ns` when one is given.
pub fn uninstall(ns: Option<&str>, extra: &[&str], cfg: &Path, dir: &Path) -> Output {
    let mut c = match ns {
        Some(ns) => in_ns(ns, &["uninstall"]),
        None => {
            let mut c = Command::new(BIN);
            c.arg("uninstall");
            c
        }
    };
    c.args(extra)
        .arg("--config")
        .arg(cfg)
        .arg("--cni-conf-dir")
        .arg(dir.join("net.d"))
        .arg("--cni-bin-dir")
        .arg(dir.join("bin"))
        .output()
        .expect("run uninstall")
}

/// Waits up to `secs` for `f`, showing the agent log at `log` on timeout.
pub fn wait_for(what: &str, secs: u64, log: &Path, f: impl FnMut() -> bool) {
    let log = log.to_path_buf();
    wait_until(
        what,
        Duration::from_secs(secs),
        move || {
            format!(
                "; agent log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        },
        f,
    );
}

/// Whether the agent log at `log` says `text` yet.
pub fn logged(log: &Path, text: &str) -> bool {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains(text)
}

/// Writes `text` as `dir/unicni.toml` and returns its path.
pub fn write_config(dir: &Path, text: impl AsRef<str>) -> PathBuf {
    let p = dir.join("unicni.toml");
    std::fs::write(&p, text.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    p
}

/// `unicni <args> <path>` (a config file last, as most subcommands take it), its output
/// whatever the exit status.
pub fn unicni(args: &[&str], path: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("run unicni {args:?}: {e}"))
}

/// [`unicni`], asserting success (its stderr in the failure).
pub fn unicni_ok(args: &[&str], path: &Path) -> Output {
    let out = unicni(args, path);
    assert!(
        out.status.success(),
        "unicni {args:?} {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A listener on 127.0.0.1 inside network namespace `ns`, where the agent runs (bound from
/// a thread of its own), for a server the agent must reach on its loopback.
pub fn listen_in(ns: &str) -> std::net::TcpListener {
    unicni_testkit::in_netns(ns, || {
        std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")
    })
}
