//! The CNI network a runtime test runs on: unicni installed by `unicni install`, or the
//! reference bridge + host-local (the harness's control, and the bench's baseline). Both
//! chain the reference plugins a test asks for after the main plugin.

use crate::runtimes::guard::Defer;
use crate::runtimes::util::{free_subnet, output, run, unique};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const REFERENCE_DIR: &str = "/usr/lib/cni";
pub const UNICNI: &str = env!("CARGO_BIN_EXE_unicni");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plugin {
    Unicni,
    /// The reference `bridge` + `host-local`: proves the harness, and is the bench baseline.
    Reference,
}

impl Plugin {
    pub fn label(self) -> &'static str {
        match self {
            Plugin::Unicni => "unicni",
            Plugin::Reference => "bridge",
        }
    }
}

pub struct Network {
    pub plugin: Plugin,
    pub name: String,
    pub bridge: String,
    pub subnet: String,
    pub gateway: String,
    pub conf_dir: PathBuf,
    pub bin_dir: PathBuf,
    pub conflist: PathBuf,
    /// Where address reservations live (checked for leaks).
    pub state_dirs: Vec<PathBuf>,
    pub chain: Vec<String>,
    /// The unicni config file (unicni only).
    pub config: Option<PathBuf>,
}

/// Installs a network under `dir` (conf dir `dir/net.d`, bin dir `dir/bin`), registering
/// the removal of its bridge with `defer`.
pub fn install(plugin: Plugin, dir: &Path, chain: &[&str], defer: &mut Defer) -> Network {
    let name = unique("urt");
    let bridge = unique("urb");
    let (subnet, third) = free_subnet();
    let gateway = format!("10.213.{third}.1");
    let conf_dir = dir.join("net.d");
    let bin_dir = dir.join("bin");
    std::fs::create_dir_all(&conf_dir).unwrap();
    std::fs::create_dir_all(&bin_dir).unwrap();
    defer.link(&bridge);

    // The runtimes look every plugin up in one bin dir: loopback (CRI, podman) and the chain.
    for p in chain.iter().copied().chain(["loopback"]) {
        let link = bin_dir.join(p);
        if !link.exists() {
            std::os::unix::fs::symlink(Path::new(REFERENCE_DIR).join(p), link).unwrap();
        }
    }

    let chain: Vec<String> = chain.iter().map(|s| s.to_string()).collect();
    let (conflist, state_dirs, config) = match plugin {
        Plugin::Reference => {
            for p in ["bridge", "host-local"] {
                std::os::unix::fs::symlink(Path::new(REFERENCE_DIR).join(p), bin_dir.join(p))
                    .unwrap();
            }
            let ipam_dir = dir.join("ipam");
            let mut plugins = vec![json!({
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "dataDir": ipam_dir,
                    "ranges": [[{ "subnet": subnet, "gateway": gateway }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                },
            })];
            plugins.extend(chain.iter().map(|p| chained_plugin(p)));
            let conflist = conf_dir.join("10-reference.conflist");
            let body = json!({ "cniVersion": "1.0.0", "name": name, "plugins": plugins });
            std::fs::write(&conflist, serde_json::to_vec_pretty(&body).unwrap()).unwrap();
            (conflist, vec![ipam_dir], None)
        }
        Plugin::Unicni => {
            let state = dir.join("state");
            let run_dir = dir.join("run");
            let store = dir.join("store");
            let config = dir.join("unicni.toml");
            std::fs::write(
                &config,
                unicni_config(&name, &bridge, &subnet, &state, &run_dir, &store, &chain),
            )
            .unwrap();
            let out = output(
                Command::new(UNICNI)
                    .arg("install")
                    .arg("--config")
                    .arg(&config)
                    .arg("--cni-conf-dir")
                    .arg(&conf_dir)
                    .arg("--cni-bin-dir")
                    .arg(&bin_dir),
            );
            assert!(
                out.status.success(),
                "unicni install failed ({}):\nstdout: {}\nstderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let conflist = conf_dir.join("10-unicni.conflist");
            assert!(
                conflist.is_file(),
                "unicni install succeeded but wrote no {}",
                conflist.display()
            );
            assert!(
                bin_dir.join("unicni").is_file(),
                "unicni install succeeded but copied no unicni into {}",
                bin_dir.display()
            );
            (conflist, vec![state, run_dir, store], Some(config))
        }
    };
    Network {
        plugin,
        name,
        bridge,
        subnet,
        gateway,
        conf_dir,
        bin_dir,
        conflist,
        state_dirs,
        chain,
        config,
    }
}

fn chained_plugin(kind: &str) -> Value {
    match kind {
        "portmap" => json!({ "type": "portmap", "capabilities": { "portMappings": true } }),
        "bandwidth" => json!({ "type": "bandwidth", "capabilities": { "bandwidth": true } }),
        other => json!({ "type": other }),
    }
}

pub fn unicni_config(
    name: &str,
    bridge: &str,
    subnet: &str,
    state: &Path,
    run_dir: &Path,
    store: &Path,
    chain: &[String],
) -> String {
    let template = include_str!("../../testdata/runtimes/unicni.toml");
    let chain = chain
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    template
        .replace("@NAME@", name)
        .replace("@BRIDGE@", bridge)
        .replace("@SUBNET@", subnet)
        .replace("@STATE@", &state.display().to_string())
        .replace("@RUN@", &run_dir.display().to_string())
        .replace("@STORE@", &store.display().to_string())
        .replace("@CHAIN@", &chain)
}

impl Network {
    pub fn conflist_json(&self) -> Value {
        serde_json::from_slice(&std::fs::read(&self.conflist).unwrap())
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", self.conflist.display()))
    }

    /// Host links enslaved to this network's bridge (one host veth per attached pod).
    pub fn bridge_ports(&self) -> Vec<String> {
        if !crate::runtimes::guard::link_exists(&self.bridge) {
            return Vec::new();
        }
        let out = run(Command::new("ip").args(["-j", "link", "show", "master", &self.bridge]));
        let links: Value = serde_json::from_str(if out.trim().is_empty() { "[]" } else { &out })
            .expect("ip -j link output");
        links
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l["ifname"].as_str().map(String::from))
            .collect()
    }

    /// Asserts nothing of these attachments is left on the host: no port on the bridge, no
    /// bandwidth ifb, no iptables/nftables rule naming the container or its IP, no
    /// reservation file naming or holding either.
    pub fn assert_released(&self, container_ids: &[&str], ips: &[&str]) {
        let ports = self.bridge_ports();
        assert!(
            ports.is_empty(),
            "links still attached to bridge {} after removal: {ports:?}",
            self.bridge
        );
        if self.chain.iter().any(|c| c == "bandwidth") {
            for id in container_ids {
                let ifb = bandwidth_ifb_name(&self.name, id);
                assert!(
                    !crate::runtimes::guard::link_exists(&ifb),
                    "bandwidth ifb {ifb} of container {id} left on the host"
                );
            }
        }
        let rules = ruleset();
        for needle in container_ids.iter().chain(ips) {
            let hits: Vec<&str> = rules.lines().filter(|l| l.contains(needle)).collect();
            assert!(
                hits.is_empty(),
                "firewall rules still mention {needle} after removal:\n{}",
                hits.join("\n")
            );
        }
        for dir in &self.state_dirs {
            for file in files_under(dir) {
                let fname = file.file_name().unwrap().to_string_lossy().into_owned();
                // host-local remembers the last address it handed out (not a reservation).
                if fname.starts_with("last_reserved_ip") || fname == "lock" {
                    continue;
                }
                for ip in ips {
                    assert!(
                        fname != *ip,
                        "reservation file {} for {ip} left after removal",
                        file.display()
                    );
                }
                let body =
                    String::from_utf8_lossy(&std::fs::read(&file).unwrap_or_default()).into_owned();
                for id in container_ids {
                    assert!(
                        !body.contains(id),
                        "{} still mentions container {id} after removal:\n{body}",
                        file.display()
                    );
                }
            }
        }
    }
}

/// The reference bandwidth plugin's ifb name: "bwp" + the start of sha512(network + id).
pub fn bandwidth_ifb_name(network: &str, container_id: &str) -> String {
    use sha2::{Digest, Sha512};
    let hex = format!("{:x}", Sha512::digest(format!("{network}{container_id}")));
    format!("bwp{}", &hex[..12])
}

/// iptables (both backends) and nftables rules as text.
pub fn ruleset() -> String {
    let mut all = String::new();
    for (prog, args) in [
        ("iptables-save", &[][..]),
        ("iptables-legacy-save", &[][..]),
        ("nft", &["list", "ruleset"][..]),
    ] {
        if crate::runtimes::env::which(prog).is_some() {
            let out = output(Command::new(prog).args(args));
            all.push_str(&String::from_utf8_lossy(&out.stdout));
        }
    }
    all
}

pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else if p.is_file() {
            out.push(p);
        }
    }
    out
}
