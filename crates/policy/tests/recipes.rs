//! The upstream NetworkPolicy recipes over one small cluster, each with flows that must pass
//! and flows that must be dropped (tests/data/recipes.yaml). Every flow is decided twice, by the
//! reference evaluator and by the compiled form, and both must give the expected verdict.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::OnceLock;

use serde::Deserialize;
use unicni_policy::{compile, evaluate, load_str, Direction, Protocol, Snapshot, Verdict};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Recipes {
    cluster: String,
    recipes: BTreeMap<String, Recipe>,
    compile_shape: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Recipe {
    #[serde(default)]
    policies: String,
    /// `<src> -> <dst> <TCP|UDP|ICMP> <port> => allow`, or `=> deny <Ingress|Egress>`.
    flows: Vec<String>,
}

fn recipes() -> &'static Recipes {
    static RECIPES: OnceLock<Recipes> = OnceLock::new();
    RECIPES.get_or_init(|| {
        serde_yaml::from_str(include_str!("data/recipes.yaml")).expect("tests/data/recipes.yaml")
    })
}

fn cluster_with(policies: &str) -> Snapshot {
    let cluster = &recipes().cluster;
    load_str("test.yaml", &format!("{cluster}\n---\n{policies}")).unwrap()
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

/// One line of a recipe's `flows`: the flow and the verdict it must get.
fn expectation(line: &str) -> (&str, &str, Protocol, u16, Verdict) {
    let bad = || -> ! {
        panic!(
            "tests/data/recipes.yaml: flow {line:?} is not `<src> -> <dst> <proto> <port> => <verdict>`"
        )
    };
    let Some((flow, want)) = line.split_once(" => ") else {
        bad()
    };
    let [src, "->", dst, proto, port] = flow.split_whitespace().collect::<Vec<_>>()[..] else {
        bad()
    };
    let proto = match proto {
        "TCP" => Protocol::Tcp,
        "UDP" => Protocol::Udp,
        "ICMP" => Protocol::Other(1),
        _ => bad(),
    };
    let verdict = match want {
        "allow" => Verdict::Allow,
        "deny Ingress" => Verdict::Deny(Direction::Ingress),
        "deny Egress" => Verdict::Deny(Direction::Egress),
        _ => bad(),
    };
    let Ok(port) = port.parse() else { bad() };
    (src, dst, proto, port, verdict)
}

fn run(name: &str) {
    let recipe = &recipes().recipes[name];
    let s = cluster_with(&recipe.policies);
    assert!(!recipe.flows.is_empty(), "recipe {name} has no flows");
    for line in &recipe.flows {
        let (src, dst, proto, port, want) = expectation(line);
        let v = verdict(&s, src, dst, proto, port);
        assert_eq!(v, want, "{name}: {src} -> {dst} {proto}/{port}");
    }
}

/// One test per recipe of tests/data/recipes.yaml, and a test that none is left without one.
macro_rules! recipe_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                run(stringify!($name));
            }
        )*

        #[test]
        fn every_recipe_has_a_test() {
            let mut tested = vec![$(stringify!($name)),*];
            tested.sort_unstable();
            let listed: Vec<&str> = recipes().recipes.keys().map(String::as_str).collect();
            assert_eq!(listed, tested);
        }
    };
}

recipe_tests! {
    no_policy_allows_everything,
    deny_all_ingress,
    deny_all_ingress_without_policy_types,
    allow_all_ingress,
    deny_all_egress,
    allow_same_namespace_only,
    allow_from_labelled_namespace,
    allow_from_namespace_by_name_with_expressions,
    allow_from_labelled_pods_in_labelled_namespace,
    allow_from_labelled_pods_or_labelled_namespace,
    ip_block_with_except,
    ip_block_ipv6,
    named_port,
    named_port_egress_resolves_on_each_destination,
    end_port_range,
    egress_deny_with_dns_allowed,
    egress_dns_to_kube_dns_pods_only,
    pod_selected_by_two_policies_gets_the_union,
    both_ends_must_allow,
    rules_of_a_type_not_listed_are_ignored,
}

#[test]
fn compile_shape() {
    let s = cluster_with(&recipes().compile_shape);
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
