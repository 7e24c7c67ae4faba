//! `unicni install` with the terway backend asks the metadata service and the cloud API
//! (the emulator, started here on a loopback port) what the node's instance type can host,
//! and refuses a node that cannot host the configured mode, with the reason.

mod common;

fn start_sim(dir: &std::path::Path) -> common::sim::Sim {
    common::sim::start_zone(
        dir,
        Some("fd00:16::/64"),
        &[
            ("i-small", "ecs.g6.large"),
            ("i-g6x", "ecs.g6.xlarge"),
            ("i-g7", "ecs.g7.large"),
        ],
    )
}

/// Runs `unicni install` for `instance` in `mode`/`stack`; (success, stderr, conflist).
fn install(
    endpoint: &str,
    dir: &std::path::Path,
    instance: &str,
    mode: &str,
    stack: &str,
) -> (bool, String, String) {
    let d = dir.join(format!("{instance}-{mode}-{stack}"));
    let [net_d, bin] = ["net.d", "bin"].map(|name| {
        let p = d.join(name);
        std::fs::create_dir_all(&p).unwrap();
        p.display().to_string()
    });
    let config = common::agent::write_config(
        &d,
        format!(
            "[cluster]\nip_stack = \"{stack}\"\n[backend]\nkind = \"terway\"\n[terway]\nmode = \"{mode}\"\n\
             vswitches = [\"vsw-pod\"]\n[store]\nkind = \"file\"\npath = \"{store}\"\n\
             [node]\nstate_dir = \"{d}/state\"\nrun_dir = \"{d}/run\"\n\
             [cloud]\nregion = \"cn-hangzhou\"\nendpoint = \"{endpoint}\"\n\
             metadata_endpoint = \"{endpoint}/instances/{instance}\"\n\
             access_key_id = \"unicni-sim\"\naccess_key_secret = \"unicni-sim-secret\"\n",
            store = d.join("store").display(),
            d = d.display(),
        ),
    );
    let out = common::agent::unicni(
        &[
            "install",
            "--cni-conf-dir",
            &net_d,
            "--cni-bin-dir",
            &bin,
            "--config",
        ],
        &config,
    );
    let conflist = std::fs::read_to_string(d.join("net.d/10-unicni.conflist")).unwrap_or_default();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        conflist,
    )
}

#[test]
fn install_admits_or_refuses_by_instance_type_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_sim(dir.path());
    let endpoint = sim.endpoint.clone();

    let (ok, err, conf) = install(&endpoint, dir.path(), "i-small", "shared-eni", "ipv4");
    assert!(!ok, "ecs.g6.large must be refused in shared mode");
    assert!(
        err.contains("ecs.g6.large") && err.contains("6 pods") && err.contains("more than 11"),
        "{err}"
    );
    assert!(conf.is_empty(), "a refused node must not get a conflist");
    assert!(
        !dir.path().join("i-small-shared-eni-ipv4/store").exists()
            || std::fs::read_dir(dir.path().join("i-small-shared-eni-ipv4/store"))
                .unwrap()
                .next()
                .is_none(),
        "a refused node must not create the cluster lock"
    );

    let (ok, err, _) = install(&endpoint, dir.path(), "i-g6x", "shared-eni", "dual");
    assert!(!ok);
    assert!(
        err.contains("IPv6") && err.contains("ecs.g6.xlarge"),
        "{err}"
    );

    // The same small type is fine in exclusive mode (ENIs − 1 = 1 pod).
    let (ok, err, _) = install(&endpoint, dir.path(), "i-small", "exclusive-eni", "ipv4");
    assert!(ok, "{err}");

    let (ok, err, conf) = install(&endpoint, dir.path(), "i-g7", "shared-eni", "dual");
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&conf).unwrap();
    let first = &v["plugins"][0];
    assert_eq!(first["backend"], "terway");
    assert_eq!(first["mode"], "shared-eni");
    assert!(
        first["socket"]
            .as_str()
            .unwrap()
            .ends_with("/run/terway.sock"),
        "{first}"
    );
}
