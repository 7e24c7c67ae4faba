//! Server-side printing: the `Table` form of a get, list or watch, asked for by
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` (what `kubectl get` sends). The
//! columns follow the API server's printers for the kinds served here, shortened (no
//! column for things nothing here sets, such as nominated nodes); other kinds get Name and
//! Age.

use serde_json::{json, Value};
use std::time::SystemTime;

/// Whether an Accept header asks for a Table.
pub fn wanted(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table") && first.contains("g=meta.k8s.io"))
}

fn col(name: &str, kind: &str, priority: u8) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({"name": name, "type": kind, "format": format, "description": "", "priority": priority})
}

/// The columns of `kind` (as `(name, type, priority)`; priority 1 shows with `-o wide`).
fn columns(kind: &str) -> Vec<(&'static str, &'static str, u8)> {
    let s = "string";
    match kind {
        "Namespace" => vec![("Name", s, 0), ("Status", s, 0), ("Age", s, 0)],
        "Node" => vec![
            ("Name", s, 0),
            ("Status", s, 0),
            ("Roles", s, 0),
            ("Age", s, 0),
            ("Version", s, 0),
            ("Internal-IP", s, 1),
            ("Pod-CIDR", s, 1),
        ],
        "Pod" => vec![
            ("Name", s, 0),
            ("Ready", s, 0),
            ("Status", s, 0),
            ("Restarts", "integer", 0),
            ("Age", s, 0),
            ("IP", s, 1),
            ("Node", s, 1),
        ],
        "ConfigMap" | "Secret" => vec![("Name", s, 0), ("Data", "integer", 0), ("Age", s, 0)],
        "Service" => vec![
            ("Name", s, 0),
            ("Type", s, 0),
            ("Cluster-IP", s, 0),
            ("Port(s)", s, 0),
            ("Age", s, 0),
        ],
        "NetworkPolicy" => vec![("Name", s, 0), ("Pod-Selector", s, 0), ("Age", s, 0)],
        "EndpointSlice" => vec![
            ("Name", s, 0),
            ("AddressType", s, 0),
            ("Endpoints", s, 0),
            ("Age", s, 0),
        ],
        "Lease" => vec![("Name", s, 0), ("Holder", s, 0), ("Age", s, 0)],
        "Event" => event_columns(),
        _ => vec![("Name", s, 0), ("Age", s, 0)],
    }
}

fn none_if_empty(v: String) -> Value {
    if v.is_empty() {
        "<none>".into()
    } else {
        v.into()
    }
}

fn cell(kind: &str, column: &str, o: &Value) -> Value {
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    match (kind, column) {
        ("Event", c) => event_cell(c, o),
        (_, "Name") => o["metadata"]["name"].clone(),
        (_, "Age") => age(o["metadata"]["creationTimestamp"].as_str()).into(),
        ("Namespace", "Status") => o["status"]["phase"].as_str().unwrap_or("Active").into(),
        ("Node", "Status") => {
            let ready = o["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .map(|c| c["status"].clone());
            let mut s = match ready.as_ref().and_then(Value::as_str) {
                Some("True") => "Ready".to_string(),
                Some("False") => "NotReady".to_string(),
                _ => "Unknown".to_string(),
            };
            if o["spec"]["unschedulable"] == true {
                s.push_str(",SchedulingDisabled");
            }
            s.into()
        }
        ("Node", "Roles") => {
            let roles: Vec<&str> = o["metadata"]["labels"]
                .as_object()
                .map(|l| {
                    l.keys()
                        .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                        .collect()
                })
                .unwrap_or_default();
            none_if_empty(roles.join(","))
        }
        ("Node", "Version") => text(&o["status"]["nodeInfo"]["kubeletVersion"]).into(),
        ("Node", "Internal-IP") => none_if_empty(
            o["status"]["addresses"]
                .as_array()
                .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
                .map(|a| text(&a["address"]))
                .unwrap_or_default(),
        ),
        ("Node", "Pod-CIDR") => none_if_empty(text(&o["spec"]["podCIDR"])),
        ("Pod", "Ready") => {
            let total = o["spec"]["containers"].as_array().map_or(0, Vec::len);
            let ready = o["status"]["containerStatuses"]
                .as_array()
                .map_or(0, |c| c.iter().filter(|c| c["ready"] == true).count());
            format!("{ready}/{total}").into()
        }
        ("Pod", "Status") => {
            if !o["metadata"]["deletionTimestamp"].is_null() {
                "Terminating".into()
            } else {
                o["status"]["reason"]
                    .as_str()
                    .or(o["status"]["phase"].as_str())
                    .unwrap_or("Pending")
                    .into()
            }
        }
        ("Pod", "Restarts") => o["status"]["containerStatuses"]
            .as_array()
            .map_or(0, |c| {
                c.iter()
                    .map(|c| c["restartCount"].as_u64().unwrap_or(0))
                    .sum::<u64>()
            })
            .into(),
        ("Pod", "IP") => none_if_empty(text(&o["status"]["podIP"])),
        ("Pod", "Node") => none_if_empty(text(&o["spec"]["nodeName"])),
        ("ConfigMap" | "Secret", "Data") => {
            let n = |f: &str| o[f].as_object().map_or(0, |m| m.len());
            (n("data") + n("binaryData") + n("stringData")).into()
        }
        ("Service", "Type") => o["spec"]["type"].as_str().unwrap_or("ClusterIP").into(),
        ("Service", "Cluster-IP") => none_if_empty(text(&o["spec"]["clusterIP"])),
        ("Service", "Port(s)") => {
            let ports: Vec<String> = o["spec"]["ports"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            let proto = p["protocol"].as_str().unwrap_or("TCP");
                            match p["nodePort"].as_u64() {
                                Some(np) => format!("{}:{np}/{proto}", p["port"]),
                                None => format!("{}/{proto}", p["port"]),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            none_if_empty(ports.join(","))
        }
        ("NetworkPolicy", "Pod-Selector") => {
            let labels: Vec<String> = o["spec"]["podSelector"]["matchLabels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect()
                })
                .unwrap_or_default();
            none_if_empty(labels.join(","))
        }
        ("EndpointSlice", "AddressType") => text(&o["addressType"]).into(),
        ("EndpointSlice", "Endpoints") => {
            let addrs: Vec<String> = o["endpoints"]
                .as_array()
                .map(|es| {
                    es.iter()
                        .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
                        .map(|a| text(&a))
                        .collect()
                })
                .unwrap_or_default();
            none_if_empty(addrs.join(","))
        }
        ("Lease", "Holder") => none_if_empty(text(&o["spec"]["holderIdentity"])),
        _ => "".into(),
    }
}

/// The API server's columns of core v1 Events (`kubectl get events`).
fn event_columns() -> Vec<(&'static str, &'static str, u8)> {
    let s = "string";
    vec![
        ("Last Seen", s, 0),
        ("Type", s, 0),
        ("Reason", s, 0),
        ("Object", s, 0),
        ("Message", s, 0),
        ("Source", s, 1),
        ("First Seen", s, 1),
        ("Count", "integer", 1),
        ("Name", s, 1),
    ]
}

fn event_cell(column: &str, o: &Value) -> Value {
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    // Events written with only `eventTime` (events.k8s.io) have no last/first timestamps.
    let when = |field: &str| {
        o[field]
            .as_str()
            .or(o["eventTime"].as_str())
            .or(o["metadata"]["creationTimestamp"].as_str())
            .map(|t| age(Some(t)))
            .unwrap_or_else(|| "<unknown>".into())
    };
    match column {
        "Last Seen" => when("lastTimestamp").into(),
        "First Seen" => when("firstTimestamp").into(),
        "Type" => text(&o["type"]).into(),
        "Reason" => text(&o["reason"]).into(),
        "Object" => {
            let kind = text(&o["involvedObject"]["kind"]).to_ascii_lowercase();
            format!("{kind}/{}", text(&o["involvedObject"]["name"])).into()
        }
        "Message" => text(&o["message"]).into(),
        "Source" => {
            let component = text(&o["source"]["component"]);
            match text(&o["source"]["host"]) {
                h if h.is_empty() => component.into(),
                h => format!("{component}, {h}").into(),
            }
        }
        "Count" => o["count"].as_i64().unwrap_or(1).into(),
        "Name" => o["metadata"]["name"].clone(),
        _ => "".into(),
    }
}

fn row(kind: &str, cols: &[(&str, &str, u8)], o: &Value) -> Value {
    let cells: Vec<Value> = cols.iter().map(|(c, _, _)| cell(kind, c, o)).collect();
    json!({"cells": cells, "object": {
        "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}})
}

/// A Table of `objects` of `kind`, with the list metadata `meta`.
pub fn of(kind: &str, objects: &[&Value], meta: Value) -> Value {
    let cols = columns(kind);
    let defs: Vec<Value> = cols.iter().map(|(n, t, p)| col(n, t, *p)).collect();
    let rows: Vec<Value> = objects.iter().map(|o| row(kind, &cols, o)).collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
           "columnDefinitions": defs, "rows": rows})
}

/// Seconds since the epoch of an RFC 3339 UTC timestamp (`2025-01-01T00:00:00Z`).
fn parse_time(t: &str) -> Option<i64> {
    let (date, time) = t.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut h = time.split(':').map(|x| x.parse::<f64>());
    let (hh, mm, ss) = (h.next()?.ok()?, h.next()?.ok()?, h.next()?.ok()?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh as i64 * 3600 + mm as i64 * 60 + ss as i64)
}

/// The age of an object as kubectl shows it (`45s`, `3m12s`, `5h`, `2d3h`).
fn age(created: Option<&str>) -> String {
    let Some(then) = created.and_then(parse_time) else {
        return "<unknown>".into();
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    human(now - then)
}

fn human(secs: i64) -> String {
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86_400);
    match () {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 && s % 60 != 0 => format!("{m}m{}s", s % 60),
        _ if m < 180 => format!("{m}m"),
        _ if h < 8 && m % 60 != 0 => format!("{h}h{}m", m % 60),
        _ if h < 48 => format!("{h}h"),
        _ if h < 24 * 8 && h % 24 != 0 => format!("{d}d{}h", h % 24),
        _ if d < 365 * 2 => format!("{d}d"),
        _ if d < 365 * 8 => format!("{}y{}d", d / 365, d % 365),
        _ => format!("{}y", d / 365),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_cells() {
        assert_eq!(parse_time("1970-01-02T00:00:01Z"), Some(86_401));
        assert_eq!(parse_time("2000-03-01T00:00:00Z"), Some(951_868_800));
        assert_eq!(human(59), "59s");
        assert_eq!(human(192), "3m12s");
        assert_eq!(human(5 * 3600), "5h");
        assert_eq!(human(51 * 3600), "2d3h");
        let node = json!({"metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "nodeInfo": {"kubeletVersion": "v1.32.0"}}});
        let t = of("Node", &[&node], json!({}));
        assert_eq!(t["rows"][0]["cells"][1], "Ready");
        assert_eq!(t["rows"][0]["cells"][2], "control-plane");
        assert_eq!(t["rows"][0]["cells"][4], "v1.32.0");
        assert!(wanted(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        ));
        assert!(!wanted("application/json"));
    }

    #[test]
    fn event_cells() {
        let ev = json!({"metadata": {"name": "n1.abc", "namespace": "default"},
            "involvedObject": {"kind": "Node", "name": "n1"}, "type": "Warning",
            "reason": "InsufficientIP", "message": "vsw-a is out of addresses", "count": 3,
            "source": {"component": "unicni-agent", "host": "n1"}});
        let t = of("Event", &[&ev], json!({}));
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[0], "<unknown>", "no timestamp");
        assert_eq!(cells[1], "Warning");
        assert_eq!(cells[2], "InsufficientIP");
        assert_eq!(cells[3], "node/n1");
        assert_eq!(cells[4], "vsw-a is out of addresses");
        assert_eq!(cells[5], "unicni-agent, n1");
        assert_eq!(cells[7], 3);
        assert_eq!(cells[8], "n1.abc");
    }
}
