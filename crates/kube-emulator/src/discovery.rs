//! What the server says about itself: the resource types it knows (discovery at `/api`,
//! `/apis`, `/api/v1`, `/apis/<group>/<version>`), the OpenAPI v3 documents kubectl reads
//! to decide how to validate, and `/version`.
//!
//! Discovery is the legacy, unaggregated form (APIVersions, APIGroupList,
//! APIResourceList): a client that asks for the aggregated form
//! (`as=APIGroupDiscoveryList`) and gets `application/json` back falls back to it, as
//! client-go does against servers older than 1.26.

use serde_json::{json, Value};

/// A resource type the server knows.
pub struct Resource {
    /// `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// Has a `/status` subresource (served as the object itself).
    pub status: bool,
    /// In the `all` category (`kubectl get all`).
    pub all: bool,
}

/// `names`: plural, singular, kind.
const fn r(
    group: &'static str,
    names: (&'static str, &'static str, &'static str),
    namespaced: bool,
    short_names: &'static [&'static str],
    status: bool,
    all: bool,
) -> Resource {
    Resource {
        group,
        version: "v1",
        plural: names.0,
        singular: names.1,
        kind: names.2,
        namespaced,
        short_names,
        status,
        all,
    }
}

/// Every type discovery lists. Other paths of the same shape are still stored and served
/// (tests use made-up resources), they are just not discoverable.
pub const RESOURCES: &[Resource] = &[
    r(
        "",
        ("namespaces", "namespace", "Namespace"),
        false,
        &["ns"],
        true,
        false,
    ),
    r("", ("nodes", "node", "Node"), false, &["no"], true, false),
    r("", ("pods", "pod", "Pod"), true, &["po"], true, true),
    r(
        "",
        ("services", "service", "Service"),
        true,
        &["svc"],
        true,
        true,
    ),
    r(
        "",
        ("endpoints", "endpoints", "Endpoints"),
        true,
        &["ep"],
        false,
        false,
    ),
    r(
        "",
        ("configmaps", "configmap", "ConfigMap"),
        true,
        &["cm"],
        false,
        false,
    ),
    r("", ("secrets", "secret", "Secret"), true, &[], false, false),
    r(
        "",
        ("serviceaccounts", "serviceaccount", "ServiceAccount"),
        true,
        &["sa"],
        false,
        false,
    ),
    r(
        "",
        ("events", "event", "Event"),
        true,
        &["ev"],
        false,
        false,
    ),
    r(
        "apps",
        ("daemonsets", "daemonset", "DaemonSet"),
        true,
        &["ds"],
        true,
        true,
    ),
    r(
        "apps",
        ("deployments", "deployment", "Deployment"),
        true,
        &["deploy"],
        true,
        true,
    ),
    r(
        "networking.k8s.io",
        ("networkpolicies", "networkpolicy", "NetworkPolicy"),
        true,
        &["netpol"],
        false,
        false,
    ),
    r(
        "discovery.k8s.io",
        ("endpointslices", "endpointslice", "EndpointSlice"),
        true,
        &[],
        false,
        false,
    ),
    r(
        "coordination.k8s.io",
        ("leases", "lease", "Lease"),
        true,
        &[],
        false,
        false,
    ),
    // What `unicni manifests` prints besides the kinds above (RBAC, the priority class),
    // so `kubectl apply` of deploy/ works against the emulator.
    r(
        "rbac.authorization.k8s.io",
        ("clusterroles", "clusterrole", "ClusterRole"),
        false,
        &[],
        false,
        false,
    ),
    r(
        "rbac.authorization.k8s.io",
        (
            "clusterrolebindings",
            "clusterrolebinding",
            "ClusterRoleBinding",
        ),
        false,
        &[],
        false,
        false,
    ),
    r(
        "rbac.authorization.k8s.io",
        ("roles", "role", "Role"),
        true,
        &[],
        false,
        false,
    ),
    r(
        "rbac.authorization.k8s.io",
        ("rolebindings", "rolebinding", "RoleBinding"),
        true,
        &[],
        false,
        false,
    ),
    r(
        "scheduling.k8s.io",
        ("priorityclasses", "priorityclass", "PriorityClass"),
        false,
        &["pc"],
        false,
        false,
    ),
];

impl Resource {
    pub fn group_version(&self) -> String {
        match self.group {
            "" => self.version.to_string(),
            g => format!("{g}/{}", self.version),
        }
    }

    /// The all-namespaces collection path, the store's key (`/api/v1/pods`).
    pub fn collection(&self) -> String {
        match self.group {
            "" => format!("/api/{}/{}", self.version, self.plural),
            g => format!("/apis/{g}/{}/{}", self.version, self.plural),
        }
    }
}

/// The type of `apiVersion` + `kind`.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind && r.group_version() == api_version)
}

/// The type served at `api_version` (`v1`, `<group>/<version>`) under `plural`.
pub fn by_plural(api_version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.plural == plural && r.group_version() == api_version)
}

const VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

/// The discovery document or OpenAPI document at `path`, if it is one.
pub fn answer(path: &str) -> Option<Value> {
    let path = path.trim_end_matches('/');
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segs.as_slice() {
        ["version"] => Some(version()),
        ["api"] => Some(json!({
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [],
        })),
        ["api", "v1"] => Some(resource_list("v1")),
        ["apis"] => Some(json!({
            "kind": "APIGroupList", "apiVersion": "v1",
            "groups": groups().iter().map(|g| group(g)).collect::<Vec<_>>(),
        })),
        ["apis", g] if groups().contains(g) => Some(json!({
            "kind": "APIGroup", "apiVersion": "v1",
            "name": g, "versions": [{"groupVersion": format!("{g}/v1"), "version": "v1"}],
            "preferredVersion": {"groupVersion": format!("{g}/v1"), "version": "v1"},
        })),
        ["apis", g, "v1"] if groups().contains(g) => Some(resource_list(&format!("{g}/v1"))),
        ["openapi", "v3"] => Some(openapi_index()),
        ["openapi", "v3", "api", "v1"] => Some(openapi_document("v1")),
        ["openapi", "v3", "apis", g, "v1"] if groups().contains(g) => {
            Some(openapi_document(&format!("{g}/v1")))
        }
        _ => None,
    }
}

pub fn version() -> Value {
    json!({
        "major": "1", "minor": "32", "gitVersion": "v1.32.0-unicni-kube-sim",
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.23.0", "compiler": "gc",
        "platform": "linux/amd64",
    })
}

fn groups() -> Vec<&'static str> {
    let mut g: Vec<&str> = RESOURCES
        .iter()
        .map(|r| r.group)
        .filter(|g| !g.is_empty())
        .collect();
    g.dedup();
    g
}

fn group(name: &str) -> Value {
    let gv = format!("{name}/v1");
    json!({"name": name, "versions": [{"groupVersion": gv, "version": "v1"}],
           "preferredVersion": {"groupVersion": gv, "version": "v1"}})
}

fn resource_list(group_version: &str) -> Value {
    let mut resources = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group_version() == group_version)
    {
        let mut e = json!({
            "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
            "kind": r.kind, "verbs": VERBS,
        });
        if !r.short_names.is_empty() {
            e["shortNames"] = json!(r.short_names);
        }
        if r.all {
            e["categories"] = json!(["all"]);
        }
        resources.push(e);
        if r.status {
            resources.push(json!({
                "name": format!("{}/status", r.plural), "singularName": "",
                "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"],
            }));
        }
    }
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
           "resources": resources})
}

/// The OpenAPI v3 index: one document per group version.
fn openapi_index() -> Value {
    let mut paths = serde_json::Map::new();
    let mut gvs = vec!["v1".to_string()];
    gvs.extend(groups().iter().map(|g| format!("{g}/v1")));
    for gv in gvs {
        let rel = match gv.as_str() {
            "v1" => "api/v1".to_string(),
            other => format!("apis/{other}"),
        };
        paths.insert(
            rel.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{rel}?hash=unicni-kube-sim-1")}),
        );
    }
    json!({"paths": paths})
}

/// The OpenAPI v3 document of one group version: its paths and operations, without
/// schemas. kubectl reads two things from it: whether PATCH takes the `fieldValidation`
/// parameter (yes: so kubectl leaves validation to the server instead of validating
/// against a schema it would need), and whether PATCH takes a strategic merge patch
/// (not declared: with no schemas to compute one from, kubectl computes the patch from
/// the types compiled into it, which it does for every built-in type).
fn openapi_document(group_version: &str) -> Value {
    let mut paths = serde_json::Map::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group_version() == group_version)
    {
        let prefix = match r.group {
            "" => "/api/v1".to_string(),
            g => format!("/apis/{g}/v1"),
        };
        let item = match r.namespaced {
            true => format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural),
            false => format!("{prefix}/{}/{{name}}", r.plural),
        };
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let param = |name: &str, place: &str| json!({"name": name, "in": place, "schema": {"type": "string"}});
        let mut params = vec![param("name", "path")];
        if r.namespaced {
            params.push(param("namespace", "path"));
        }
        let op = |action: &str, extra: &[&str]| {
            let mut ps = params.clone();
            ps.extend(extra.iter().map(|p| param(p, "query")));
            json!({
                "operationId": format!("{action}{}", r.kind), "parameters": ps,
                "responses": {"200": {"description": "OK"}},
                "x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk,
            })
        };
        let mut patch = op(
            "patch",
            &["dryRun", "fieldManager", "fieldValidation", "force"],
        );
        patch["requestBody"] = json!({"content": {
            "application/json-patch+json": {"schema": {"type": "object"}},
            "application/merge-patch+json": {"schema": {"type": "object"}},
            "application/apply-patch+yaml": {"schema": {"type": "object"}},
        }});
        paths.insert(
            item,
            json!({
                "get": op("get", &[]),
                "put": op("put", &["dryRun", "fieldManager", "fieldValidation"]),
                "patch": patch,
                "delete": op("delete", &["dryRun", "propagationPolicy"]),
            }),
        );
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (unicni kube-sim)", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": {}},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_names_every_type_once() {
        let core = answer("/api/v1").unwrap();
        let names: Vec<&str> = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"nodes") && names.contains(&"nodes/status"));
        let groups = answer("/apis").unwrap();
        assert_eq!(groups["groups"].as_array().unwrap().len(), 6);
        let np = answer("/apis/networking.k8s.io/v1").unwrap();
        assert_eq!(np["resources"][0]["shortNames"][0], "netpol");
        assert!(answer("/apis/example.com/v1").is_none());
        assert_eq!(
            by_kind("networking.k8s.io/v1", "NetworkPolicy")
                .unwrap()
                .collection(),
            "/apis/networking.k8s.io/v1/networkpolicies"
        );
        let doc = answer("/openapi/v3/api/v1").unwrap();
        let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "ConfigMap"
        );
    }
}
