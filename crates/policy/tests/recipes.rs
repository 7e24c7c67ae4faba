//! The upstream NetworkPolicy recipes over one small cluster, each with flows that must pass
//! and flows that must be dropped. Every flow is decided twice, by the reference evaluator
//! and by the compiled form, and both must give the expected verdict.

use std::net::IpAddr;

use unicni_policy::{compile, evaluate, load_str, Direction, Protocol, Snapshot, Verdict};

const TCP: Protocol = Protocol::Tcp;
const UDP: Protocol = Protocol::Udp;
const ICMP: Protocol = Protocol::Other(1);

/// Namespaces default (no labels), prod (env=prod, team=a), other (team=b), and their pods.
const CLUSTER: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: default}
---
apiVersion: v1
kind: Namespace
metadata: {name: prod, labels: {env: prod, team: a}}
---
apiVersion: v1
kind: Namespace
metadata: {name: other, labels: {team: b}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default, labels: {app: web, role: frontend}}
spec:
  containers:
  - name: web
    image: nginx
    ports:
    - {name: http, containerPort: 8080}
    - {name: metrics, containerPort: 9090, protocol: TCP}
status: {podIPs: [{ip: 10.0.0.10}, {ip: "fd00::10"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: default, labels: {app: db}}
spec:
  containers: [{name: db, ports: [{name: postgres, containerPort: 5432}]}]
status: {podIP: 10.0.0.11}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default, labels: {app: client}}
spec: {containers: [{name: c}]}
status: {podIPs: [{ip: 10.0.0.12}, {ip: "fd00::12"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: api, namespace: prod, labels: {app: api}}
spec:
  containers: [{name: api, ports: [{name: http, containerPort: 80}]}]
status: {podIP: 10.0.1.10}
---
apiVersion: v1
kind: Pod
metadata: {name: monitor, namespace: prod, labels: {app: monitor, role: monitoring}}
spec: {containers: [{name: m}]}
status: {podIP: 10.0.1.11}
---
apiVersion: v1
kind: Pod
metadata: {name: monitor, namespace: other, labels: {role: monitoring}}
spec: {containers: [{name: m}]}
status: {podIP: 10.0.2.10}
---
apiVersion: v1
kind: Pod
metadata: {name: dns, namespace: other, labels: {k8s-app: kube-dns}}
spec:
  containers:
  - name: dns
    ports:
    - {name: dns, containerPort: 53, protocol: UDP}
    - {name: dns-tcp, containerPort: 53, protocol: TCP}
status: {podIP: 10.0.2.53}
---
apiVersion: v1
kind: Pod
metadata: {name: node-exporter, namespace: other, labels: {app: exporter}}
spec: {hostNetwork: true, containers: [{name: e}]}
status: {podIP: 192.168.0.1}
"#;

fn cluster_with(policies: &str) -> Snapshot {
    load_str("test.yaml", &format!("{CLUSTER}\n---\n{policies}")).unwrap()
}

/// `ns/name` is the pod's first address, anything else an address.
fn ip(snapshot: &Snapshot, end: &str) -> IpAddr {
    if let Some((ns, name)) = end.split_once('/') {
        let pod = snapshot
            .pods
            .iter()
            .find(|p| p.namespace == ns && p.name == name)
            .unwrap_or_else(|| panic!("no pod {end}"));
        pod.ips[0]
    } else {
        end.parse().unwrap()
    }
}

fn verdict(s: &Snapshot, src: &str, dst: &str, proto: Protocol, port: u16) -> Verdict {
    let (src_ip, dst_ip) = (ip(s, src), ip(s, dst));
    let reference = evaluate(s, src_ip, dst_ip, proto, port);
    let compiled = compile(s).verdict(src_ip, dst_ip, proto, port);
    assert_eq!(
        reference, compiled,
        "evaluate and compile disagree on {src} -> {dst} {proto}/{port}"
    );
    reference
}

#[track_caller]
fn allow(s: &Snapshot, src: &str, dst: &str, proto: Protocol, port: u16) {
    let v = verdict(s, src, dst, proto, port);
    assert_eq!(v, Verdict::Allow, "{src} -> {dst} {proto}/{port}");
}

#[track_caller]
fn deny(s: &Snapshot, src: &str, dst: &str, proto: Protocol, port: u16, at: Direction) {
    let v = verdict(s, src, dst, proto, port);
    assert_eq!(v, Verdict::Deny(at), "{src} -> {dst} {proto}/{port}");
}

use Direction::{Egress, Ingress};

#[test]
fn no_policy_allows_everything() {
    let s = cluster_with("");
    allow(&s, "default/client", "default/web", TCP, 1);
    allow(&s, "8.8.8.8", "prod/api", UDP, 53);
    allow(&s, "prod/api", "8.8.8.8", ICMP, 0);
}

#[test]
fn deny_all_ingress() {
    let s = cluster_with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny-ingress, namespace: default}
spec:
  podSelector: {}
  policyTypes: [Ingress]
"#,
    );
    deny(&s, "default/client", "default/web", TCP, 8080, Ingress);
    deny(&s, "prod/api", "default/db", TCP, 5432, Ingress);
    deny(&s, "8.8.8.8", "default/web", ICMP, 0, Ingress);
    // Egress of the namespace and other namespaces are left alone.
    allow(&s, "default/client", "prod/api", TCP, 80);
    allow(&s, "default/web", "8.8.8.8", UDP, 53);
    allow(&s, "other/monitor", "prod/api", TCP, 80);
}

#[test]
fn deny_all_ingress_without_policy_types() {
    // No policyTypes, no rules: an Ingress policy that allows nothing.
    let s = cluster_with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-deny-all}
spec:
  podSelector: {matchLabels: {app: web}}
"#,
    );
    deny(&s, "default/client", "default/web", TCP, 8080, Ingress);
    allow(&s, "default/client", "default/db", TCP, 5432);
    allow(&s, "default/web", "default/db", TCP, 5432);
}

#[test]
fn allow_all_ingress() {
    let s = cluster_with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny-ingress, namespace: default}
spec:
  podSelector: {}
  policyTypes: [Ingress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-all-ingress, namespace: default}
spec:
  podSelector: {}
  ingress:
  - {}
"#,
    );
    allow(&s, "default/client", "default/web", TCP, 8080);
    allow(&s, "8.8.8.8", "default/db", UDP, 999);
    allow(&s, "other/monitor", "default/web", ICMP, 0);
}

#[test]
fn deny_all_egress() {
    let s = cluster_with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny-egress, namespace: default}
spec:
  podSelector: {}
  policyTypes: [Egress]
"#,
    );
    deny(&s, "default/web", "prod/api", TCP, 80, Egress);
    deny(&s, "default/client", "default/web", TCP, 8080, Egress);
    deny(&s, "default/client", "8.8.8.8", UDP, 53, Egress);
    // Ingress into the namespace is not affected.
    allow(&s, "prod/api", "default/web", TCP, 8080);
    allow(&s, "8.8.8.8", "default/db", TCP, 5432);
}

#[test]
fn allow_same_namespace_only() {
    let s = cluster_with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-from-other-namespaces, namespace: default}
spec:
  podSelector: {}
  ingress:
  - from:
    - podSelector: {}
"#,
    );
    allow(&s, "default/client", "default/web", TCP, 8080);
    allow(&s, "default/web", "default/db", UDP, 5432);
    deny(&s, "prod/api", "default/web", TCP, 8080, Ingress);
    deny(&s, "other/monitor", "default/db", TCP, 5432, Ingress);
    deny(&s, "8.8.8.8", "default/web", TCP, 8080, Ingress);
    // A host-network pod is not a pod peer: its address is the node's.
    deny(&s, "192.168.0.1", "default/web", TCP, 8080, Ingress);
}

#[test]
fn allow_from_labelled_namespace() {
    let s = cluster_with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-allow-prod, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {env: prod}}
"#,
    );
    allow(&s, "prod/api", "default/web", TCP, 8080);
    allow(&s, "prod/monitor", "default/web", TCP, 9090);
    deny(&s, "other/monitor", "default/web", TCP, 8080, Ingress);
    // The policy's own namespace is not labelled env=prod.
    deny(&s, "default/client", "default/web", TCP, 8080, Ingress);
    deny(&s, "8.8.8.8", "default/web", TCP, 8080, Ingress);
    // Other pods of the namespace are not selected.
    allow(&s, "other/monitor", "default/db", TCP, 5432);
}

#[test]
fn allow_from_namespace_by_name_with_expressions() {
    let s = cluster_with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-allow-not-prod, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from:
    - namespaceSelector:
        matchExpressions:
        - {key: kubernetes.io/metadata.name, operator: In, values: [other, default]}
        - {key: env, operator: DoesNotExist}
"#,
    );
    allow(&s, "other/monitor", "default/web", TCP, 8080);
    allow(&s, "default/client", "default/web", TCP, 8080);
    deny(&s, "prod/api", "default/web", TCP, 8080, Ingress);
}

#[test]
fn allow_from_labelled_pods_in_labelled_namespace() {
    // namespaceSelector and podSelector in one peer: both must match (AND).
    let s = cluster_with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-allow-monitoring-team-b, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {team: b}}
      podSelector: {matchLabels: {role: monitoring}}
"#,
    );
    allow(&s, "other/monitor", "default/web", TCP, 9090);
    // role=monitoring but in team a.
    deny(&s, "prod/monitor", "default/web", TCP, 9090, Ingress);
    // team b but not role=monitoring.
    deny(&s, "other/dns", "default/web", TCP, 9090, Ingress);

    // The same selectors as two peers: either suffices (OR).
    let s = cluster_with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-allow-monitoring-or-team-b, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {team: b}}
    - podSelector: {matchLabels: {role: monitoring}}
"#,
    );
    allow(&s, "other/monitor", "default/web", TCP, 9090);
    allow(&s, "other/dns", "default/web", TCP, 9090);
    // A podSelector alone means the policy's namespace: prod/monitor is not in it.
    deny(&s, "prod/monitor", "default/web", TCP, 9090, Ingress);
    deny(&s, "default/client", "default/web", TCP, 9090, Ingress);
}

#[test]
fn ip_block_with_except() {
    let s = cluster_with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-access, namespace: default}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from:
    - ipBlock: {cidr: 172.17.0.0/16, except: [172.17.1.0/24]}
    ports:
    - {protocol: TCP, port: 5432}
  egress:
  - to:
    - ipBlock: {cidr: 10.0.0.0/24}
    ports:
    - {protocol: TCP, port: 5978}
"#,
    );
    allow(&s, "172.17.0.5", "default/db", TCP, 5432);
    allow(&s, "172.17.255.255", "default/db", TCP, 5432);
    deny(&s, "172.17.1.5", "default/db", TCP, 5432, Ingress);
    deny(&s, "172.17.0.5", "default/db", TCP, 5433, Ingress);
    deny(&s, "172.17.0.5", "default/db", UDP, 5432, Ingress);
    deny(&s, "8.8.8.8", "default/db", TCP, 5432, Ingress);
    // ipBlock matches pod addresses too: the client is outside 172.17/16.
    deny(&s, "default/client", "default/db", TCP, 5432, Ingress);

    allow(&s, "default/db", "default/web", TCP, 5978);
    allow(&s, "default/db", "10.0.0.200", TCP, 5978);
    deny(&s, "default/db", "10.0.1.10", TCP, 5978, Egress);
    deny(&s, "default/db", "default/web", TCP, 8080, Egress);
}

#[test]
fn ip_block_ipv6() {
    let s = cluster_with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-v6, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from:
    - ipBlock: {cidr: "fd00::/64", except: ["fd00::12/128"]}
"#,
    );
    allow(&s, "fd00::99", "fd00::10", TCP, 8080);
    deny(&s, "fd00::12", "fd00::10", TCP, 8080, Ingress);
    deny(&s, "10.0.0.12", "10.0.0.10", TCP, 8080, Ingress);
}

#[test]
fn named_port() {
    let s = cluster_with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-http, namespace: default}
spec:
  podSelector: {}
  ingress:
  - ports:
    - port: http
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-http, namespace: prod}
spec:
  podSelector: {}
  ingress:
  - ports:
    - port: http
"#,
    );
    // "http" is 8080 on web, 80 on api.
    allow(&s, "8.8.8.8", "default/web", TCP, 8080);
    allow(&s, "8.8.8.8", "fd00::10", TCP, 8080);
    deny(&s, "8.8.8.8", "default/web", TCP, 80, Ingress);
    deny(&s, "8.8.8.8", "default/web", UDP, 8080, Ingress);
    allow(&s, "default/web", "prod/api", TCP, 80);
    deny(&s, "default/web", "prod/api", TCP, 8080, Ingress);
    // db has no port named http: nothing gets in.
    deny(&s, "default/client", "default/db", TCP, 5432, Ingress);
    deny(&s, "default/client", "default/db", TCP, 8080, Ingress);
}

#[test]
fn named_port_egress_resolves_on_each_destination() {
    let s = cluster_with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-http-only, namespace: default}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress:
  - ports:
    - {port: http}
    - {port: dns, protocol: UDP}
"#,
    );
    allow(&s, "default/client", "default/web", TCP, 8080);
    allow(&s, "default/client", "prod/api", TCP, 80);
    allow(&s, "default/client", "other/dns", UDP, 53);
    deny(&s, "default/client", "default/web", TCP, 80, Egress);
    deny(&s, "default/client", "prod/api", TCP, 8080, Egress);
    // dns is UDP on the dns pod: TCP 53 is dns-tcp, not dns.
    deny(&s, "default/client", "other/dns", TCP, 53, Egress);
    // Not a pod: a named port cannot match.
    deny(&s, "default/client", "8.8.8.8", TCP, 80, Egress);
}

#[test]
fn end_port_range() {
    let s = cluster_with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-port-range, namespace: default}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock: {cidr: 10.0.0.0/16}
    ports:
    - {protocol: TCP, port: 32000, endPort: 32768}
"#,
    );
    allow(&s, "default/client", "default/web", TCP, 32000);
    allow(&s, "default/client", "prod/api", TCP, 32500);
    allow(&s, "default/client", "10.0.200.1", TCP, 32768);
    deny(&s, "default/client", "default/web", TCP, 31999, Egress);
    deny(&s, "default/client", "default/web", TCP, 32769, Egress);
    deny(&s, "default/client", "default/web", UDP, 32000, Egress);
    deny(&s, "default/client", "10.1.0.1", TCP, 32000, Egress);
}

#[test]
fn egress_deny_with_dns_allowed() {
    let s = cluster_with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny-egress, namespace: default}
spec:
  podSelector: {}
  policyTypes: [Egress]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-dns, namespace: default}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
"#,
    );
    allow(&s, "default/client", "other/dns", UDP, 53);
    allow(&s, "default/client", "other/dns", TCP, 53);
    allow(&s, "default/web", "8.8.8.8", UDP, 53);
    allow(&s, "fd00::10", "2001:4860:4860::8888", UDP, 53);
    deny(&s, "default/client", "default/web", TCP, 8080, Egress);
    deny(&s, "default/client", "other/dns", UDP, 54, Egress);
    deny(&s, "default/client", "8.8.8.8", ICMP, 0, Egress);
    deny(&s, "default/web", "8.8.8.8", TCP, 443, Egress);
    // Ingress stays open.
    allow(&s, "prod/api", "default/web", TCP, 8080);
}

#[test]
fn egress_dns_to_kube_dns_pods_only() {
    let s = cluster_with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-kube-dns, namespace: default}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - to:
    - namespaceSelector: {}
      podSelector: {matchLabels: {k8s-app: kube-dns}}
    ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
"#,
    );
    allow(&s, "default/client", "other/dns", UDP, 53);
    allow(&s, "default/client", "other/dns", TCP, 53);
    deny(&s, "default/client", "8.8.8.8", UDP, 53, Egress);
    deny(&s, "default/client", "other/monitor", UDP, 53, Egress);
}

#[test]
fn pod_selected_by_two_policies_gets_the_union() {
    let s = cluster_with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-client, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from:
    - podSelector: {matchLabels: {app: client}}
    ports:
    - {port: 8080}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: frontend-metrics-from-prod, namespace: default}
spec:
  podSelector:
    matchExpressions:
    - {key: role, operator: In, values: [frontend, backend]}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {env: prod}}
    ports:
    - {port: metrics}
"#,
    );
    allow(&s, "default/client", "default/web", TCP, 8080);
    allow(&s, "prod/monitor", "default/web", TCP, 9090);
    allow(&s, "prod/api", "default/web", TCP, 9090);
    deny(&s, "default/client", "default/web", TCP, 9090, Ingress);
    deny(&s, "prod/api", "default/web", TCP, 8080, Ingress);
    deny(&s, "other/monitor", "default/web", TCP, 9090, Ingress);
}

#[test]
fn both_ends_must_allow() {
    let s = cluster_with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-egress-to-web, namespace: default}
spec:
  podSelector: {matchLabels: {app: client}}
  egress:
  - to:
    - podSelector: {matchLabels: {app: web}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-ingress-from-prod, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {env: prod}}
"#,
    );
    // client-egress-to-web has egress rules and no policyTypes: it is Ingress and Egress,
    // and allows no ingress into the client.
    deny(&s, "default/web", "default/client", TCP, 1, Ingress);
    // Allowed out of the client, not into web.
    deny(&s, "default/client", "default/web", TCP, 8080, Ingress);
    // Into web from prod, yes; out of the client to prod, no.
    allow(&s, "prod/api", "default/web", TCP, 8080);
    deny(&s, "default/client", "prod/api", TCP, 80, Egress);
}

#[test]
fn rules_of_a_type_not_listed_are_ignored() {
    let s = cluster_with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress-only, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  ingress:
  - from:
    - podSelector: {matchLabels: {app: nothing}}
  egress:
  - {}
"#,
    );
    allow(&s, "8.8.8.8", "default/web", TCP, 8080);
    allow(&s, "default/web", "8.8.8.8", TCP, 443);
}

#[test]
fn compile_shape() {
    let s = cluster_with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from:
    - podSelector: {matchLabels: {app: client}}
    - ipBlock: {cidr: 172.17.0.0/16, except: [172.17.0.0/17]}
    ports:
    - {port: http}
    - {protocol: UDP}
"#,
    );
    let node_pods = unicni_policy::compile_where(&s, |p| p.name == "web");
    let ips: Vec<String> = node_pods.pods.keys().map(|ip| ip.to_string()).collect();
    assert_eq!(ips, ["10.0.0.10", "fd00::10"]);
    let web = &node_pods.pods[&"10.0.0.10".parse::<IpAddr>().unwrap()];
    assert_eq!(web.pod, "default/web");
    assert!(!web.egress.isolated && web.egress.allow.is_empty());
    assert!(web.ingress.isolated);
    let entries: Vec<String> = web
        .ingress
        .allow
        .iter()
        .map(|e| {
            let remote = match e.remote {
                unicni_policy::Remote::Any => "any".to_string(),
                unicni_policy::Remote::Net(n) => n.to_string(),
            };
            let proto = e.protocol.map_or("any".to_string(), |p| p.to_string());
            format!("{remote} {proto} {}-{}", e.ports.first, e.ports.last)
        })
        .collect();
    assert_eq!(
        entries,
        [
            "10.0.0.12/32 TCP 8080-8080",
            "10.0.0.12/32 UDP 0-65535",
            "172.17.128.0/17 TCP 8080-8080",
            "172.17.128.0/17 UDP 0-65535",
            "fd00::12/128 TCP 8080-8080",
            "fd00::12/128 UDP 0-65535",
        ]
    );
}
