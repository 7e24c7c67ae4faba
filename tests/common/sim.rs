//! `unicni cloud-sim` on a loopback port, stopped when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use unicni_testkit::KillOnDrop;

pub struct Sim {
    _child: KillOnDrop,
    pub endpoint: String,
}

/// Starts the emulator with `config` and waits for the `endpoint=` line it prints.
pub fn start(config: &Path) -> Sim {
    let mut child = Command::new(super::BIN)
        .args(["cloud-sim", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let endpoint = line
        .trim()
        .strip_prefix("endpoint=")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Sim {
        _child: KillOnDrop(child),
        endpoint,
    }
}

/// Starts the emulator on a small zone-a cloud written to `dir/sim.toml`: a node vSwitch
/// `vsw-node` (192.168.0.0/24), a pod vSwitch `vsw-pod` (192.168.16.0/20, plus `pod_ipv6`
/// when given) and `instances` as (id, instance type) on the node vSwitch.
pub fn start_zone(dir: &Path, pod_ipv6: Option<&str>, instances: &[(&str, &str)]) -> Sim {
    let vswitch = |id: &str, cidr: &str| {
        format!("[[vswitches]]\nid = \"{id}\"\nzone = \"cn-hangzhou-a\"\ncidr = \"{cidr}\"\n")
    };
    let mut toml = String::from("security_groups = [\"sg-t\"]\n");
    toml += &vswitch("vsw-node", "192.168.0.0/24");
    toml += &vswitch("vsw-pod", "192.168.16.0/20");
    if let Some(v6) = pod_ipv6 {
        toml += &format!("ipv6_cidr = \"{v6}\"\n");
    }
    for (id, ty) in instances {
        toml += &format!(
            "[[instances]]\nid = \"{id}\"\ninstance_type = \"{ty}\"\nvswitch_id = \"vsw-node\"\n"
        );
    }
    let path = dir.join("sim.toml");
    std::fs::write(&path, toml).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    start(&path)
}
