//! The plan for people: aligned columns (also used by `unicni assess`'s table).

use crate::plan::{Plan, PodsPerNode};
use std::fmt::Write as _;

/// Left-aligned columns, each line prefixed by `indent`; the last column is not padded.
pub fn columns(rows: &[Vec<String>], indent: &str) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = indent.to_string();
        for (i, cell) in r.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < r.len() {
                line.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Prefix mode (`terway.ip_prefix = true`): what the /28 prefixes give each type.
fn prefix_rows(out: &mut String, list: &[crate::plan::TerwayPods]) {
    if list.iter().all(|t| t.prefix.is_none()) {
        return;
    }
    let _ = writeln!(
        out,
        "\nPrefix mode (terway.ip_prefix): /28 prefixes, (IPv4 per ENI - 1) x 16 addresses per ENI:"
    );
    let mut rows = vec![[
        "INSTANCE TYPE",
        "PREFIXES/ENI",
        "ADDRESSES/ENI",
        "ADDRESSES",
        "PODS",
        "IPV6 /80S",
        "LIMITED BY",
    ]
    .map(String::from)
    .to_vec()];
    for t in list {
        if let Some(p) = &t.prefix {
            rows.push(vec![
                t.instance_type.clone(),
                p.prefixes_per_eni.to_string(),
                p.addresses_per_eni.to_string(),
                p.addresses.to_string(),
                p.pods.to_string(),
                p.ipv6_prefixes.to_string(),
                p.limited_by.clone(),
            ]);
        }
    }
    out.push_str(&columns(&rows, "  "));
}

/// The plan of cluster `cluster` as `unicni plan --output table` prints it.
pub fn table(cluster: &str, p: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Capacity of cluster {cluster:?}: {} ({})",
        p.backend, p.mode
    );
    let _ = writeln!(out, "\nMax nodes: {}", p.max_nodes);
    let _ = writeln!(out, "  because {}", p.max_nodes_reason);
    let mut rows = vec![vec!["LIMIT".to_string(), "NODES".into(), "DETAIL".into()]];
    rows.extend(
        p.node_limits
            .iter()
            .map(|l| vec![l.limit.clone(), l.nodes.to_string(), l.detail.clone()]),
    );
    let _ = writeln!(out, "\nLimits considered:");
    out.push_str(&columns(&rows, "  "));
    match &p.pods_per_node {
        PodsPerNode::Uniform(n) => {
            let _ = writeln!(
                out,
                "\nPods per node: {n} ({} addresses per node subnet)",
                p.addresses_per_node.unwrap_or(0)
            );
        }
        PodsPerNode::PerInstanceType(list) => {
            let _ = writeln!(out, "\nPods per node (mode {}):", p.mode);
            let mut rows = vec![[
                "INSTANCE TYPE",
                "ENIS",
                "IPV4/ENI",
                "IPV6/ENI",
                "SHARED",
                "EXCLUSIVE",
                "NOTE",
            ]
            .map(String::from)
            .to_vec()];
            for t in list {
                let mut note = Vec::new();
                if !t.shared_admitted {
                    note.push("shared: not admitted (<= 11 pods)");
                }
                if !t.shared_dual_stack {
                    note.push("no shared dual stack");
                }
                rows.push(vec![
                    t.instance_type.clone(),
                    t.enis.to_string(),
                    t.ipv4_per_eni.to_string(),
                    t.ipv6_per_eni.to_string(),
                    t.shared.to_string(),
                    t.exclusive.to_string(),
                    note.join("; "),
                ]);
            }
            if list.is_empty() {
                rows.push(vec!["(none configured)".into()]);
            }
            out.push_str(&columns(&rows, "  "));
            prefix_rows(&mut out, list);
        }
    }
    let _ = match p.pod_addresses.total {
        Some(n) => writeln!(out, "\nPod addresses: {n} ({})", p.pod_addresses.source),
        None => writeln!(out, "\nPod addresses: {}", p.pod_addresses.source),
    };
    if !p.pod_addresses.by_zone.is_empty() {
        let rows: Vec<Vec<String>> = p
            .pod_addresses
            .by_zone
            .iter()
            .map(|(z, n)| vec![z.clone(), n.to_string()])
            .collect();
        out.push_str(&columns(&rows, "  "));
    }
    if let Some(v6) = &p.ipv6 {
        let _ = writeln!(
            out,
            "\nIPv6 network: {} (/{} per node; {})",
            v6.network, v6.node_subnet_len, v6.detail
        );
    }
    if p.warnings.is_empty() {
        let _ = writeln!(out, "\nWarnings: none");
    } else {
        let _ = writeln!(out, "\nWarnings:");
        for w in &p.warnings {
            let _ = writeln!(out, "  - {w}");
        }
    }
    out
}
