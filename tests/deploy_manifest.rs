//! The shipped DaemonSet manifest stays consistent with the binary: its config validates,
//! and the commands it runs exist.

mod common;

use common::BIN;
use std::process::Command;

#[test]
fn the_daemonset_config_validates_and_its_commands_exist() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/unicni.yaml"))
        .unwrap();
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("a ConfigMap");
    let toml = cm["data"]["unicni.toml"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = common::agent::write_config(dir.path(), toml);
    common::agent::unicni_ok(&["config", "check"], &path);

    let ds = docs
        .iter()
        .find(|d| d["kind"] == "DaemonSet")
        .expect("a DaemonSet");
    let spec = &ds["spec"]["template"]["spec"];
    let mut commands = Vec::new();
    for key in ["initContainers", "containers"] {
        for c in spec[key].as_sequence().unwrap() {
            let argv: Vec<String> = c["command"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_string())
                .collect();
            commands.push(argv);
        }
    }
    assert_eq!(commands.len(), 2);
    for argv in commands {
        assert_eq!(argv[0], "unicni");
        // `--help` parses every flag the manifest passes only if they exist; ask clap to
        // validate the real argument list with --help appended.
        let mut args = argv[1..].to_vec();
        args.push("--help".into());
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "{argv:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
