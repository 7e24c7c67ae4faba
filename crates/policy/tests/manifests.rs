//! Loading a directory of manifests, and errors that say where the problem is.

use std::fs;
use std::net::IpAddr;

use unicni_policy::{load_str, ManifestDir};

/// One valid policy that the error tests break a field of (the leading blank line is part of
/// the line numbers they expect).
const POLICY: &str = concat!("\n", include_str!("data/shop-web.yaml"));

#[test]
fn loads_every_manifest_of_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("10-policy.yaml"), POLICY).unwrap();
    fs::write(
        dir.path().join("20-objects.yml"),
        r#"
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: a}}
---
# An empty document and a kind that is not read.
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: shop, labels: {app: web}}
spec:
  nodeName: node-a
  containers: [{name: web, ports: [{name: http, containerPort: 8080}, {containerPort: 22}]}]
status: {phase: Running, podIPs: [{ip: 10.1.0.5}, {ip: "fd01::5"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: job-1, labels: {app: job}}
spec: {containers: [{name: job}]}
status: {phase: Succeeded, podIP: 10.1.0.5}
"#,
    )
    .unwrap();
    fs::write(
        dir.path().join("30-more.json"),
        r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}}"#,
    )
    .unwrap();
    // Not read: hidden, or not a manifest.
    fs::write(dir.path().join(".hidden.yaml"), "kind: [").unwrap();
    fs::write(dir.path().join("README.md"), "kind: [").unwrap();
    fs::create_dir(dir.path().join("sub.yaml")).unwrap();

    let manifests = ManifestDir::new(dir.path());
    let names: Vec<String> = manifests
        .files()
        .unwrap()
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["10-policy.yaml", "20-objects.yml", "30-more.json"]);

    let s = manifests.load().unwrap();
    assert_eq!(s.policies.len(), 1);
    assert_eq!(s.policies[0].namespace, "shop");
    assert!(s.policies[0].ingress.is_some() && s.policies[0].egress.is_none());
    assert_eq!(s.namespaces.keys().collect::<Vec<_>>(), ["other", "shop"]);
    assert_eq!(s.namespace_labels("shop")["team"], "a");
    assert_eq!(
        s.namespace_labels("shop")["kubernetes.io/metadata.name"],
        "shop"
    );

    assert_eq!(s.pods.len(), 2);
    let web = &s.pods[0];
    assert_eq!(
        web.ips,
        [
            "10.1.0.5".parse::<IpAddr>().unwrap(),
            "fd01::5".parse().unwrap()
        ]
    );
    assert_eq!(web.node.as_deref(), Some("node-a"));
    assert_eq!(web.ports.len(), 1, "only named ports");
    assert_eq!(
        web.named_port("http", unicni_policy::Protocol::Tcp),
        Some(8080)
    );
    // A finished pod keeps no address (and does not clash with web-1's).
    let job = &s.pods[1];
    assert_eq!((job.namespace.as_str(), job.ips.len()), ("default", 0));
}

#[test]
fn an_empty_directory_is_an_empty_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let s = ManifestDir::new(dir.path()).load().unwrap();
    assert!(s.pods.is_empty() && s.policies.is_empty() && s.namespaces.is_empty());
    let missing = ManifestDir::new(dir.path().join("nope"))
        .load()
        .unwrap_err();
    assert!(missing.to_string().contains("nope"), "{missing}");
}

fn error(text: &str) -> String {
    load_str("policies/app.yaml", text).unwrap_err().to_string()
}

#[test]
fn unknown_policy_fields_are_refused() {
    let e = error(&POLICY.replace("    - podSelector: {}", "    - podselector: {}"));
    assert_eq!(
        e,
        "policies/app.yaml: document 1: NetworkPolicy shop/web: \
         spec.ingress[0].from[0].podselector: unknown field"
    );
    let e = error(&POLICY.replace("  podSelector:", "  podSelectr:"));
    assert!(
        e.ends_with("NetworkPolicy shop/web: spec.podSelectr: unknown field"),
        "{e}"
    );
}

#[test]
fn yaml_errors_name_the_document_field_and_line() {
    let text = format!(
        "{POLICY}---\n{}",
        POLICY.replace("    - podSelector: {}", "    ports: [{port: [80]}]")
    );
    let e = error(&text);
    assert!(
        e.starts_with("policies/app.yaml: document 2: spec.ingress[0].ports[0].port: invalid type"),
        "{e}"
    );
    assert!(e.contains("line 19"), "{e}");

    let e = error("kind: NetworkPolicy\nmetadata: [\n");
    assert!(e.starts_with("policies/app.yaml: document 1: "), "{e}");
}

#[test]
fn invalid_policies_name_the_field() {
    let cases = [
        (
            "    - ipBlock: {cidr: 10.0.0.0/33}",
            "spec.ingress[0].from[0].ipBlock.cidr: \"10.0.0.0/33\" is not a CIDR",
        ),
        (
            "    - ipBlock: {cidr: 10.0.0.0/16, except: [10.1.0.0/24]}",
            "spec.ingress[0].from[0].ipBlock.except[0]: 10.1.0.0/24 is not strictly inside cidr 10.0.0.0/16",
        ),
        (
            "    - ipBlock: {cidr: 10.0.0.0/16}\n      podSelector: {}",
            "spec.ingress[0].from[0]: ipBlock cannot be combined with podSelector or namespaceSelector",
        ),
        (
            "    - {}",
            "spec.ingress[0].from[0]: needs podSelector, namespaceSelector or ipBlock",
        ),
        (
            "    ports: [{port: 90, endPort: 80}]",
            "spec.ingress[0].ports[0].endPort: 80 is below port 90",
        ),
        (
            "    ports: [{port: http, endPort: 80}]",
            "spec.ingress[0].ports[0].endPort: needs a numeric port, not a named one",
        ),
        (
            "    ports: [{endPort: 80}]",
            "spec.ingress[0].ports[0].endPort: needs a numeric port",
        ),
        (
            "    ports: [{port: 0}]",
            "spec.ingress[0].ports[0].port: 0 is not a port (1-65535)",
        ),
        (
            "    ports: [{port: 80, protocol: ICMP}]",
            "spec.ingress[0].ports[0].protocol: \"ICMP\" is not one of TCP, UDP, SCTP",
        ),
        (
            "    - podSelector: {matchExpressions: [{key: app, operator: in, values: [a]}]}",
            "spec.ingress[0].from[0].podSelector.matchExpressions[0].operator: \"in\" is not one of In, NotIn, Exists, DoesNotExist",
        ),
    ];
    for (line, expected) in cases {
        let text = POLICY.replace("    - podSelector: {}", line);
        let e = error(&text);
        assert_eq!(
            e,
            format!("policies/app.yaml: document 1: NetworkPolicy shop/web: {expected}"),
            "for {line:?}"
        );
    }
    let e = error(&format!("{POLICY}  policyTypes: [Ingres]\n"));
    assert!(
        e.ends_with("spec.policyTypes[0]: \"Ingres\" is not one of Ingress, Egress"),
        "{e}"
    );
    let e = error(&POLICY.replace("networking.k8s.io/v1", "extensions/v1beta1"));
    assert!(
        e.ends_with("NetworkPolicy shop/web: apiVersion: \"extensions/v1beta1\" is not networking.k8s.io/v1"),
        "{e}"
    );
}

#[test]
fn missing_kind_lists_and_duplicates_are_errors() {
    assert_eq!(
        error("apiVersion: v1\nmetadata: {name: x}\n"),
        "policies/app.yaml: document 1: object: kind: is missing"
    );
    assert!(error("apiVersion: v1\nkind: List\nitems: []\n").contains("lists are not read"));

    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("a.yaml"), POLICY).unwrap();
    fs::write(dir.path().join("b.yaml"), format!("---\n{POLICY}")).unwrap();
    let e = ManifestDir::new(dir.path()).load().unwrap_err().to_string();
    let first = dir.path().join("a.yaml");
    let second = dir.path().join("b.yaml");
    assert_eq!(
        e,
        format!(
            "{}: document 1: NetworkPolicy shop/web is already defined in {}",
            second.display(),
            first.display()
        )
    );
}

#[test]
fn pods_with_one_address_are_an_error() {
    let pod = |name: &str| {
        format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\n\
             spec: {{containers: [{{name: c}}]}}\nstatus: {{podIPs: [{{ip: 10.0.0.1}}]}}\n"
        )
    };
    let e = error(&format!("{}{}", pod("one"), pod("two")));
    assert_eq!(
        e,
        "policies/app.yaml: document 2: Pod default/two: status.podIPs[0]: \
         10.0.0.1 is also the address of Pod default/one"
    );
    let e = error(&pod("one").replace("10.0.0.1", "10.0.0"));
    assert!(
        e.ends_with("Pod default/one: status.podIPs[0].ip: \"10.0.0\" is not an IP address"),
        "{e}"
    );
}
