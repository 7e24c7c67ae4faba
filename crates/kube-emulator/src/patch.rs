//! The three patch types of the API: JSON merge patch (RFC 7386), JSON patch (RFC 6902),
//! both from the `json-patch` crate, and strategic merge patch, here.
//!
//! A strategic merge patch is a merge patch that knows, per field, how a list merges: a
//! list of objects with a merge key (containers by `name`, conditions by `type`) merges
//! element by element, a list of scalars with strategy `merge` (finalizers, podCIDRs) is
//! a set union, every other list is replaced. The keys come from the Go types' `patchStrategy`
//! and `patchMergeKey` tags; [`list_strategy`] has those of the kinds served here. The
//! directives kubectl writes are honoured: `$patch: replace|delete|merge`, `$retainKeys`,
//! `$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>` (the items it names
//! first, in its order; items only on the server after them).

use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Json(#[from] json_patch::PatchError),
}

/// How a list at a field merges.
#[derive(Clone, Copy, PartialEq, Debug)]
enum ListStrategy {
    /// Objects merged by the value of this key.
    Key(&'static str),
    /// Scalars: the union.
    Set,
    /// Replaced whole.
    Replace,
}

/// The list strategy of the field at `path` (field names from the object's root, list
/// positions left out) in an object of `kind`. Pod template fields (`spec.template.spec...`
/// in workloads) are the Pod's.
fn list_strategy(kind: &str, path: &[String]) -> ListStrategy {
    use ListStrategy::*;
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    match p.as_slice() {
        ["metadata", "ownerReferences"] => return Key("uid"),
        ["metadata", "finalizers"] => return Set,
        _ => {}
    }
    // The pod spec: at `spec` of a Pod, at `spec.template.spec` of a workload.
    let pod_spec = match (kind, p.as_slice()) {
        ("Pod", ["spec", rest @ ..]) => Some(rest),
        (_, ["spec", "template", "spec", rest @ ..]) => Some(rest),
        _ => None,
    };
    if let Some(rest) = pod_spec {
        return match rest {
            ["containers" | "initContainers" | "ephemeralContainers"] => Key("name"),
            ["containers" | "initContainers" | "ephemeralContainers", field] => match *field {
                "ports" => Key("containerPort"),
                "env" => Key("name"),
                "volumeMounts" => Key("mountPath"),
                "volumeDevices" => Key("devicePath"),
                "resizePolicy" => Replace,
                _ => Replace,
            },
            ["volumes" | "imagePullSecrets" | "resourceClaims" | "schedulingGates"] => Key("name"),
            ["hostAliases"] => Key("ip"),
            ["topologySpreadConstraints"] => Key("topologyKey"),
            _ => Replace,
        };
    }
    match (kind, p.as_slice()) {
        ("Pod", ["status", "conditions"]) => Key("type"),
        ("Pod", ["status", "podIPs" | "hostIPs"]) => Key("ip"),
        ("Node", ["spec", "podCIDRs"]) => Set,
        ("Node", ["status", "conditions" | "addresses"]) => Key("type"),
        ("Service", ["spec", "ports"]) => Key("port"),
        ("DaemonSet" | "Deployment", ["status", "conditions"]) => Key("type"),
        _ => Replace,
    }
}

/// Applies a JSON merge patch.
pub fn merge(into: &mut Value, patch: &Value) {
    json_patch::merge(into, patch);
}

/// Applies a JSON patch (a list of operations).
pub fn json(into: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| PatchError::Invalid(format!("invalid JSON patch: {e}")))?;
    json_patch::patch(into, &ops)?;
    Ok(())
}

/// Applies a strategic merge patch to an object of `kind`.
pub fn strategic(into: &mut Value, patch: &Value, kind: &str) -> Result<(), PatchError> {
    let Value::Object(p) = patch else {
        return Err(PatchError::Invalid(
            "a strategic merge patch must be a JSON object".into(),
        ));
    };
    if !into.is_object() {
        *into = Value::Object(Map::new());
    }
    let mut path = Vec::new();
    merge_map(into, p, kind, &mut path)
}

fn merge_map(
    into: &mut Value,
    patch: &Map<String, Value>,
    kind: &str,
    path: &mut Vec<String>,
) -> Result<(), PatchError> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut clean = patch.clone();
            clean.remove("$patch");
            *into = Value::Object(strip(&clean));
            return Ok(());
        }
        Some("delete") => {
            *into = Value::Null;
            return Ok(());
        }
        Some("merge") | None => {}
        Some(other) => {
            return Err(PatchError::Invalid(format!(
                "unknown patch directive $patch: {other}"
            )))
        }
    }
    if !into.is_object() {
        *into = Value::Object(Map::new());
    }
    let Value::Object(target) = into else {
        unreachable!("made an object above")
    };
    if let Some(Value::Array(keep)) = patch.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        target.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, v) in patch {
        if k.starts_with("$setElementOrder/") || k == "$retainKeys" || k == "$patch" {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(have)), Value::Array(gone)) = (target.get_mut(field), v) {
                have.retain(|x| !gone.contains(x));
            }
            continue;
        }
        if v.is_null() {
            target.remove(k);
            continue;
        }
        path.push(k.clone());
        let slot = target.entry(k.clone()).or_insert(Value::Null);
        match v {
            Value::Object(m) => {
                merge_map(slot, m, kind, path)?;
                if slot.is_null() {
                    target.remove(k);
                }
            }
            Value::Array(items) => merge_list(slot, items, kind, path)?,
            other => *slot = other.clone(),
        }
        path.pop();
    }
    for (k, order) in patch {
        let (Some(field), Value::Array(order)) = (k.strip_prefix("$setElementOrder/"), order)
        else {
            continue;
        };
        path.push(field.to_string());
        let strategy = list_strategy(kind, path);
        path.pop();
        if let Some(Value::Array(items)) = target.get_mut(field) {
            reorder(items, order, strategy);
        }
    }
    Ok(())
}

/// Puts the items named in `order` (by merge key, or by value for scalars) first, in that
/// order; the others (only on the server) follow in the order they had.
fn reorder(items: &mut Vec<Value>, order: &[Value], strategy: ListStrategy) {
    let id = |v: &Value| -> Value {
        match strategy {
            ListStrategy::Key(key) => v.get(key).cloned().unwrap_or(Value::Null),
            _ => v.clone(),
        }
    };
    let mut rest = std::mem::take(items);
    for o in order {
        let want = id(o);
        if let Some(n) = rest.iter().position(|i| id(i) == want) {
            items.push(rest.remove(n));
        }
    }
    items.extend(rest);
}

fn merge_list(
    into: &mut Value,
    items: &[Value],
    kind: &str,
    path: &mut Vec<String>,
) -> Result<(), PatchError> {
    // `[{"$patch": "replace"}, ...]`: the rest replaces the list.
    let replace = items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"));
    let strategy = list_strategy(kind, path);
    let have = match into {
        Value::Array(a) if !replace => std::mem::take(a),
        _ => Vec::new(),
    };
    let out = match strategy {
        ListStrategy::Replace => items
            .iter()
            .filter(|i| i.get("$patch").is_none())
            .map(|i| match i {
                Value::Object(m) => Value::Object(strip(m)),
                v => v.clone(),
            })
            .collect(),
        _ if replace => items
            .iter()
            .filter(|i| i.get("$patch").is_none())
            .cloned()
            .collect(),
        ListStrategy::Set => {
            let mut out = have;
            for i in items {
                if !out.contains(i) {
                    out.push(i.clone());
                }
            }
            out
        }
        ListStrategy::Key(key) => {
            let mut out = have;
            for i in items {
                let Value::Object(m) = i else {
                    return Err(PatchError::Invalid(format!(
                        "{}: list items must be objects with the merge key {key}",
                        path.join(".")
                    )));
                };
                let Some(id) = m.get(key) else {
                    return Err(PatchError::Invalid(format!(
                        "{}: an item has no merge key {key}",
                        path.join(".")
                    )));
                };
                let at = out.iter().position(|o| o.get(key) == Some(id));
                match (m.get("$patch").and_then(Value::as_str), at) {
                    (Some("delete"), Some(n)) => {
                        out.remove(n);
                    }
                    (Some("delete"), None) => {}
                    (_, Some(n)) => merge_map(&mut out[n], m, kind, path)?,
                    (_, None) => {
                        let mut fresh = Value::Object(Map::new());
                        merge_map(&mut fresh, m, kind, path)?;
                        out.push(fresh);
                    }
                }
            }
            out
        }
    };
    *into = Value::Array(out);
    Ok(())
}

/// A patch map's content without directives and nulls, as stored when it replaces.
fn strip(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
        .map(|(k, v)| {
            let v = match v {
                Value::Object(inner) => Value::Object(strip(inner)),
                other => other.clone(),
            };
            (k.clone(), v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_merge_by_name_and_other_lists_replace() {
        let mut pod = json!({"kind": "Pod", "spec": {
            "containers": [{"name": "a", "image": "x", "env": [{"name": "E", "value": "1"}]},
                           {"name": "b", "image": "y"}],
            "tolerations": [{"key": "t"}]}});
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [{"name": "a", "image": "x2", "env": [{"name": "F", "value": "2"}]},
                           {"name": "b", "$patch": "delete"}, {"name": "c", "image": "z"}],
            "tolerations": [{"key": "u"}]}});
        strategic(&mut pod, &patch, "Pod").unwrap();
        let c = &pod["spec"]["containers"];
        assert_eq!(c.as_array().unwrap().len(), 2);
        assert_eq!(
            (c[0]["image"].as_str(), c[1]["name"].as_str()),
            (Some("x2"), Some("c"))
        );
        assert_eq!(c[0]["env"].as_array().unwrap().len(), 2);
        assert_eq!(pod["spec"]["tolerations"], json!([{"key": "u"}]));
        let reorder =
            json!({"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}]}});
        strategic(&mut pod, &reorder, "Pod").unwrap();
        assert_eq!(pod["spec"]["containers"][0]["name"], "c");
    }

    #[test]
    fn node_sets_conditions_and_deletions() {
        let mut node = json!({"metadata": {"annotations": {"a": "1", "b": "2"}, "finalizers": ["x"]},
            "spec": {"podCIDRs": ["10.0.0.0/24"]},
            "status": {"conditions": [{"type": "Ready", "status": "False"}]}});
        let patch = json!({"metadata": {"annotations": {"a": null, "c": "3"}, "finalizers": ["y"],
                "$deleteFromPrimitiveList/finalizers": ["x"]},
            "spec": {"podCIDRs": ["fd00::/64"]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        strategic(&mut node, &patch, "Node").unwrap();
        assert_eq!(node["metadata"]["annotations"], json!({"b": "2", "c": "3"}));
        assert_eq!(node["metadata"]["finalizers"], json!(["y"]));
        assert_eq!(
            node["spec"]["podCIDRs"],
            json!(["10.0.0.0/24", "fd00::/64"])
        );
        assert_eq!(
            node["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}])
        );
        let replace = json!({"metadata": {"annotations": {"$patch": "replace", "z": "9"}}});
        strategic(&mut node, &replace, "Node").unwrap();
        assert_eq!(node["metadata"]["annotations"], json!({"z": "9"}));
        let retain = json!({"spec": {"$retainKeys": ["podCIDRs"], "podCIDRs": []}});
        strategic(&mut node, &json!({"spec": {"x": 1}}), "Node").unwrap();
        strategic(&mut node, &retain, "Node").unwrap();
        assert!(node["spec"]["x"].is_null());
    }

    #[test]
    fn json_patch_and_its_errors() {
        let mut o = json!({"metadata": {"annotations": {"a": "1"}}});
        let ops = json!([{"op": "replace", "path": "/metadata/annotations/a", "value": "2"},
                         {"op": "add", "path": "/metadata/labels", "value": {"l": "x"}}]);
        json(&mut o, &ops).unwrap();
        assert_eq!(o["metadata"]["annotations"]["a"], "2");
        assert_eq!(o["metadata"]["labels"]["l"], "x");
        let bad = json!([{"op": "test", "path": "/metadata/annotations/a", "value": "1"}]);
        assert!(json(&mut o, &bad).is_err());
    }
}
