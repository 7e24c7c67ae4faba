//! `unicni manifests` for every backend, mode and policy setting: the objects validate
//! against Kubernetes 1.32's OpenAPI schema (kubernetes-validate, the upstream schemas,
//! installed by scripts/setup.sh), grant no more than the backend uses, mount no more of
//! the host than it needs, and run commands the binary has. deploy/unicni.yaml is the
//! output for deploy/configs/flannel-vxlan.toml and must stay so.

mod common;

use common::BIN;
use serde_yaml::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const KUBERNETES: &str = "1.32.0";

fn validator() -> PathBuf {
    let venv = std::env::var("UNICNI_SDK_VENV").unwrap_or_else(|_| "/opt/unicni-sdk-venv".into());
    let exe = Path::new(&venv).join("bin/kubernetes-validate");
    assert!(
        exe.exists(),
        "{} is missing: run scripts/setup.sh (it installs kubernetes-validate into {venv})",
        exe.display()
    );
    exe
}

fn manifests(config: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(["manifests", "--config"])
        .arg(config)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn manifests_ok(config: &Path, env: &[(&str, &str)]) -> String {
    let out = manifests(config, env);
    assert!(
        out.status.success(),
        "unicni manifests --config {} {env:?}: {}",
        config.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn docs(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str) -> Option<&'a Value> {
    docs.iter().find(|d| d["kind"] == kind)
}

fn strs(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| s.iter().map(|x| x.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn configs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("deploy/configs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

/// Verbs granted on `resource` by the ClusterRole (empty when it has no rule for it).
fn verbs(docs: &[Value], resource: &str) -> Vec<String> {
    let Some(role) = find(docs, "ClusterRole") else {
        return Vec::new();
    };
    role["rules"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|r| strs(&r["resources"]).iter().any(|x| x == resource))
        .flat_map(|r| strs(&r["verbs"]))
        .collect()
}

fn host_paths(ds: &Value) -> Vec<String> {
    ds["spec"]["template"]["spec"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v["hostPath"]["path"].as_str().map(str::to_string))
        .collect()
}

/// Every variant: each config in deploy/configs with policy off and on.
#[test]
fn every_backend_mode_and_policy_validates_and_grants_only_what_it_uses() {
    let validate = validator();
    let dir = tempfile::tempdir().unwrap();
    let files = configs();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into())
        .collect();
    for want in [
        "flannel-vxlan",
        "flannel-host-gw",
        "flannel-vpc-route",
        "terway-shared-eni",
        "terway-exclusive-eni",
        "terway-ebpf",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "deploy/configs/{want}.toml missing"
        );
    }
    for (file, name) in files.iter().zip(&names) {
        for policy in ["false", "true"] {
            let what = format!("{name} policy={policy}");
            let yaml = manifests_ok(file, &[("UNICNI_POLICY__ENABLED", policy)]);
            let out_file = dir.path().join(format!("{name}-{policy}.yaml"));
            std::fs::write(&out_file, &yaml).unwrap();
            let out = Command::new(&validate)
                .args(["-k", KUBERNETES, "--strict", "--quiet"])
                .arg(&out_file)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{what}: not valid for Kubernetes {KUBERNETES}:\n{}{}\n{yaml}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let d = docs(&yaml);
            check_variant(&what, name, policy == "true", &d);
        }
    }
}

fn check_variant(what: &str, name: &str, policy: bool, d: &[Value]) {
    let terway = name.starts_with("terway");
    let ebpf = name.ends_with("ebpf");

    // RBAC: nothing wildcard, and exactly the resources the backend and policy use.
    for kind in ["ClusterRole", "Role"] {
        for r in d.iter().filter(|x| x["kind"] == kind) {
            for rule in r["rules"].as_sequence().unwrap() {
                for key in ["verbs", "resources", "apiGroups"] {
                    assert!(
                        !strs(&rule[key]).iter().any(|x| x.contains('*')),
                        "{what}: wildcard {key} in {kind}: {rule:?}"
                    );
                }
            }
        }
    }
    let pods = verbs(d, "pods");
    if terway {
        assert!(
            ["get", "list", "watch"]
                .iter()
                .all(|v| pods.contains(&v.to_string())),
            "{what}: terway watches this node's pods and GETs a late one: {pods:?}"
        );
        assert!(
            verbs(d, "nodes").is_empty(),
            "{what}: terway needs no nodes"
        );
        // Pool exhaustion as the node's SufficientIP condition and Events about the node.
        assert_eq!(verbs(d, "nodes/status"), ["get", "patch"], "{what}");
        assert_eq!(verbs(d, "events"), ["create", "patch"], "{what}");
    } else {
        assert_eq!(
            verbs(d, "nodes"),
            ["get", "list", "watch", "patch"],
            "{what}: flannel's leases are a watched Node cache"
        );
        if !policy {
            assert!(
                pods.is_empty(),
                "{what}: flannel without policy reads no pods"
            );
        }
    }
    let np = verbs(d, "networkpolicies");
    if policy {
        assert_eq!(np, ["list", "watch"], "{what}");
        assert!(pods.contains(&"watch".into()), "{what}: {pods:?}");
        assert!(verbs(d, "namespaces").contains(&"watch".into()), "{what}");
    } else {
        assert!(np.is_empty(), "{what}: no policy, no networkpolicies");
    }
    for v in [
        "update",
        "delete",
        "create",
        "deletecollection",
        "escalate",
        "bind",
    ] {
        for res in ["nodes", "pods", "namespaces", "networkpolicies"] {
            assert!(!verbs(d, res).contains(&v.into()), "{what}: {v} {res}");
        }
    }
    let store = d
        .iter()
        .find(|x| x["kind"] == "Role")
        .unwrap_or_else(|| panic!("{what}: no store Role"));
    assert_eq!(
        store["metadata"]["namespace"],
        unicni_store::open::KUBE_NAMESPACE,
        "{what}: the store's ConfigMaps are where the Kubernetes store writes them"
    );
    assert_eq!(strs(&store["rules"][0]["resources"]), ["configmaps"]);

    // The DaemonSet.
    let ds = find(d, "DaemonSet").unwrap_or_else(|| panic!("{what}: no DaemonSet"));
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(
        ds["spec"]["updateStrategy"]["type"], "RollingUpdate",
        "{what}"
    );
    assert!(
        !ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"].is_null(),
        "{what}: maxUnavailable"
    );
    assert_eq!(spec["hostNetwork"], true, "{what}");
    assert_eq!(spec["priorityClassName"], "system-node-critical", "{what}");
    assert_eq!(spec["serviceAccountName"], "unicni", "{what}");
    let init = &spec["initContainers"][0];
    let agent = &spec["containers"][0];
    assert_eq!(strs(&init["command"])[1], "install", "{what}");
    assert_eq!(strs(&agent["command"])[1], "agent", "{what}");
    for c in [init, agent] {
        assert_eq!(
            c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName",
            "{what}: node name from the downward API"
        );
    }
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &agent[probe]["httpGet"];
        assert_eq!(get["path"], path, "{what}: {probe}");
        assert_eq!(get["port"], 9099, "{what}: {probe} on agent.listen's port");
    }
    assert!(
        init["securityContext"]["privileged"].is_null(),
        "{what}: install needs no privilege"
    );

    // Host paths: the CNI directories, the node's state and run directories, bpffs only
    // with eBPF or policy, the netns directory only for terway; never a whole system dir.
    let paths = host_paths(ds);
    let mut allowed = vec![
        "/etc/cni/net.d",
        "/opt/cni/bin",
        "/var/lib/unicni",
        "/run/unicni",
    ];
    if ebpf || policy {
        allowed.push("/sys/fs/bpf");
        assert!(paths.contains(&"/sys/fs/bpf".into()), "{what}: bpffs");
    } else {
        assert!(
            !paths.contains(&"/sys/fs/bpf".into()),
            "{what}: no eBPF, no bpffs"
        );
    }
    if terway {
        allowed.push("/var/run/netns");
        assert!(
            paths.contains(&"/var/run/netns".into()),
            "{what}: pods' netns"
        );
    }
    for p in &paths {
        assert!(
            allowed.contains(&p.as_str()),
            "{what}: host path {p} not needed"
        );
    }
    for forbidden in [
        "/",
        "/etc",
        "/var",
        "/usr",
        "/proc",
        "/sys",
        "/run",
        "/var/run",
        "/lib/modules",
    ] {
        assert!(
            !paths.contains(&forbidden.into()),
            "{what}: mounts {forbidden}"
        );
    }
    let mounts: Vec<String> = [init, agent]
        .iter()
        .flat_map(|c| c["volumeMounts"].as_sequence().unwrap().iter())
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect();
    for v in spec["volumes"].as_sequence().unwrap() {
        let n = v["name"].as_str().unwrap();
        assert!(
            mounts.iter().any(|m| m == n),
            "{what}: volume {n} never mounted"
        );
    }
    let secret = spec["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| !v["secret"].is_null());
    if terway {
        let s = secret.unwrap_or_else(|| panic!("{what}: credentials Secret"));
        assert_eq!(s["secret"]["secretName"], "unicni-cloud-credentials");
    } else {
        assert!(secret.is_none(), "{what}: no credentials_file, no Secret");
    }

    // The ConfigMap's config is one the binary accepts, and the commands exist.
    let toml = find(d, "ConfigMap").unwrap()["data"]["unicni.toml"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: ConfigMap data unicni.toml"));
    let dir = tempfile::tempdir().unwrap();
    let path = common::agent::write_config(dir.path(), toml);
    common::agent::unicni_ok(&["config", "check"], &path);
    for c in [init, agent] {
        let argv = strs(&c["command"]);
        assert_eq!(
            argv[0], "/usr/local/bin/unicni",
            "{what}: the image's binary"
        );
        let mut args = argv[1..].to_vec();
        args.push("--help".into());
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "{what}: {argv:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The RAM role needs no Secret; a key pair in the config (it would become a ConfigMap)
/// and a per-node store are refused with what to do instead.
#[test]
fn credentials_come_from_a_secret_or_the_ram_role_and_bad_configs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let base =
        std::fs::read_to_string(Path::new(ROOT).join("deploy/configs/terway-shared-eni.toml"))
            .unwrap();
    let ram_role: String = base
        .lines()
        .filter(|l| !l.starts_with("credentials_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    let p = common::agent::write_config(dir.path(), &ram_role);
    let d = docs(&manifests_ok(&p, &[]));
    let spec = &find(&d, "DaemonSet").unwrap()["spec"]["template"]["spec"];
    assert!(
        !serde_yaml::to_string(spec).unwrap().contains("secret"),
        "RAM role: no Secret"
    );

    // A credentials file means a Secret only where the node roles call the cloud.
    for (config, secret) in [("flannel-vpc-route", true), ("flannel-vxlan", false)] {
        let f = Path::new(ROOT).join(format!("deploy/configs/{config}.toml"));
        let env = [("UNICNI_CLOUD__CREDENTIALS_FILE", "/etc/unicni-cloud/c.json")];
        let d = docs(&manifests_ok(&f, &env));
        let spec = &find(&d, "DaemonSet").unwrap()["spec"]["template"]["spec"];
        let has = spec["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|v| v["secret"]["secretName"] == "unicni-cloud-credentials");
        assert_eq!(has, secret, "{config} with cloud.credentials_file");
    }

    for (env, says) in [
        (
            vec![("UNICNI_CLOUD__ACCESS_KEY_SECRET", "s3cr3t")],
            "Secret unicni-cloud-credentials",
        ),
        (
            vec![("UNICNI_STORE__KIND", "file")],
            "store.kind = \"kubernetes\"",
        ),
        (
            vec![("UNICNI_STORE__KUBECONFIG", "/root/kc")],
            "unset store.kubeconfig",
        ),
        (
            vec![("UNICNI_TERWAY__POD_INFO_DIR", "/tmp/x")],
            "unset terway.pod_info_dir",
        ),
    ] {
        let out = manifests(&p, &env);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{env:?} accepted");
        assert!(err.contains(says), "{env:?}: {err}");
        assert!(!err.contains("s3cr3t"), "the secret leaked: {err}");
        assert!(out.stdout.is_empty(), "{env:?}: printed objects anyway");
    }
}

/// deploy/unicni.yaml is `unicni manifests` of deploy/configs/flannel-vxlan.toml.
#[test]
fn the_shipped_manifest_is_generated_and_up_to_date() {
    let cfg = Path::new(ROOT).join("deploy/configs/flannel-vxlan.toml");
    let fresh = manifests_ok(&cfg, &[]);
    let shipped = std::fs::read_to_string(Path::new(ROOT).join("deploy/unicni.yaml")).unwrap();
    assert!(
        shipped == fresh,
        "deploy/unicni.yaml is stale: regenerate it with\n  \
         unicni manifests --config deploy/configs/flannel-vxlan.toml > deploy/unicni.yaml"
    );
}
