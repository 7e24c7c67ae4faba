//! `unicni plan`: the capacity of the cluster one config file describes.

use anyhow::{Context as _, Result};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use unicni_capacity::{plan, InstanceTypeTable, Plan, PlanInput, PodsPerNode};

#[derive(clap::Args)]
#[command(
    after_help = "Computes the capacity of the cluster a config file describes: the maximum \
                  number of nodes and which limit sets it (flannel: node subnets of the \
                  cluster network, the route-table quota in vpc-route mode \
                  (cloud.route_table_quota, 200 by default, 1,000 at most); both: the \
                  cluster size limit, 5,000 nodes by default, 15,000 at most), pods per node \
                  (flannel: the node subnet minus network, broadcast and gateway; terway: \
                  per instance type in terway.instance_types, shared = (ENIs - 1) x IPv4 per \
                  ENI, exclusive = ENIs - 1), the pod addresses available, and warnings.\n\n\
                  Instance-type limits come from the table built into unicni; \
                  --instance-types adds or replaces entries. vSwitch free addresses come \
                  from an inventory file (--inventory, as `unicni assess export` writes).\n\n\
                  Exit codes: 0 success (warnings included), 1 error."
)]
pub struct Args {
    /// The unicni config file (TOML, or YAML by extension; UNICNI_* env overrides apply).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: PathBuf,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Instance-type ENI limits (YAML, or JSON by extension) that add to or replace the
    /// built-in table: `version: 1` and `instance_types: [{name, enis, ipv4_per_eni,
    /// ipv6_per_eni}]`.
    #[arg(long, value_name = "FILE")]
    pub instance_types: Option<PathBuf>,
    /// An inventory file whose `cloud.vswitches` give the free addresses of the
    /// configured terway vSwitches.
    #[arg(long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,
    /// The cluster's node quota when it is not the platform default of 5,000 (15,000 at most).
    #[arg(long, value_name = "NODES")]
    pub cluster_node_limit: Option<u64>,
    /// Ask the cloud API the config's [cloud] section names: instance-type limits of
    /// terway.instance_types (DescribeInstanceTypes, overlaid on the built-in table and
    /// any --instance-types file) and the free addresses of terway.vswitches
    /// (DescribeVSwitches, unless --inventory gives them).
    #[arg(long)]
    pub from_cloud: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// The plan as JSON (shape documented in docs/plan-assess.md).
    Json,
}

/// The instance-type table: built-in, overlaid with an override file when given.
///
/// The live source is the cloud API's DescribeInstanceTypes (`unicni_cloud::Cloud::
/// describe_instance_types`): a caller with a cloud client converts its answer with
/// `InstanceTypeTable::from_limits` and overlays it here the same way.
pub fn instance_types(file: Option<&PathBuf>) -> Result<InstanceTypeTable> {
    let table = InstanceTypeTable::builtin();
    Ok(match file {
        Some(f) => table.overlay(InstanceTypeTable::load(f)?),
        None => table,
    })
}

/// What the cloud API says about the configured instance types and vSwitches.
fn from_cloud(
    config: &unicni_config::Config,
) -> Result<(InstanceTypeTable, Vec<unicni_capacity::VSwitch>)> {
    use unicni_cloud::Cloud as _;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let cloud = unicni_cloud::from_config(&config.cloud)
            .await
            .context("connect to the cloud API named in [cloud]")?;
        let limits = cloud
            .describe_instance_types(&config.terway.instance_types)
            .await
            .context("DescribeInstanceTypes")?;
        let table = InstanceTypeTable::from_limits(
            limits
                .into_iter()
                .map(|l| unicni_capacity::InstanceTypeLimits {
                    name: l.instance_type,
                    enis: l.eni_quantity.into(),
                    ipv4_per_eni: l.ipv4_per_eni.into(),
                    ipv6_per_eni: l.ipv6_per_eni.into(),
                })
                .collect(),
            "cloud API (DescribeInstanceTypes)",
        );
        let mut vswitches = Vec::new();
        if !config.terway.vswitches.is_empty() {
            for v in cloud
                .describe_vswitches(None, &config.terway.vswitches)
                .await
                .context("DescribeVSwitches")?
            {
                vswitches.push(unicni_capacity::VSwitch {
                    cidr: v.cidr.parse().with_context(|| {
                        format!("vSwitch {} has an unreadable CIDR {:?}", v.id, v.cidr)
                    })?,
                    id: v.id,
                    zone: v.zone_id,
                    free_ips: v.available_ip_count,
                });
            }
        }
        anyhow::Ok((table, vswitches))
    })
}

pub fn run(args: Args) -> Result<ExitCode> {
    let config = unicni_config::load(&args.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut table = instance_types(args.instance_types.as_ref())?;
    let inventory = match &args.inventory {
        Some(f) => Some(unicni_assess::Inventory::load(f)?),
        None => None,
    };
    let mut cloud_vswitches = None;
    if args.from_cloud {
        let (live, vswitches) = from_cloud(&config)?;
        table = table.overlay(live);
        cloud_vswitches = Some(vswitches);
    }
    let vswitches = inventory
        .as_ref()
        .map(|i| i.cloud.vswitches.as_slice())
        .or(cloud_vswitches.as_deref());
    let plan = plan(&PlanInput {
        config: &config,
        instance_types: &table,
        vswitches,
        cluster_node_limit: args.cluster_node_limit,
    })
    .with_context(|| format!("planning the cluster of {}", args.config.display()))?;
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
        Output::Table => print!("{}", table_text(&config.cluster.name, &plan)),
    }
    Ok(ExitCode::SUCCESS)
}

fn columns(rows: &[Vec<String>], indent: &str) -> String {
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

fn table_text(cluster: &str, p: &Plan) -> String {
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
