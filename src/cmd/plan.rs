//! `unicni plan`: the capacity of the cluster one config file describes.

use anyhow::{Context as _, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use unicni_capacity::{plan, render, InstanceTypeTable, PlanInput};

#[derive(clap::Args)]
#[command(
    after_help = "Computes the capacity of the cluster a config file describes: the maximum \
                  number of nodes and which limit sets it (flannel: node subnets of the \
                  cluster network, the route-table quota in vpc-route mode \
                  (cloud.route_table_quota, 200 by default, 1,000 at most); both: the \
                  cluster size limit, 5,000 nodes by default, 15,000 at most), pods per node \
                  (flannel: the node subnet minus network, broadcast and gateway; terway: \
                  per instance type in terway.instance_types, shared = (ENIs - 1) x IPv4 per \
                  ENI, exclusive = ENIs - 1; with terway.ip_prefix, (ENIs - 1) x (IPv4 per ENI - 1) \
                  x 16 addresses capped by --max-pods), the pod addresses available \
                  (prefix mode: in whole /28 blocks), and warnings.\n\n\
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
    /// The kubelet's maxPods (default 110, Kubernetes' default). With terway.ip_prefix =
    /// true a node's /28 prefixes hold far more addresses than a kubelet runs pods, so
    /// this caps pods per node; without prefixes the ENIs are the cap.
    #[arg(long, value_name = "PODS")]
    pub max_pods: Option<u64>,
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

pub fn run(args: Args) -> Result<ExitCode> {
    let config = unicni_config::load(&args.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut table = InstanceTypeTable::builtin_with(args.instance_types.as_deref())?;
    let inventory = match &args.inventory {
        Some(f) => Some(unicni_assess::Inventory::load(f)?),
        None => None,
    };
    let mut cloud_vswitches = None;
    if args.from_cloud {
        let (live, vswitches) = super::common::runtime()?.block_on(async {
            let cloud = unicni_cloud::from_config(&config.cloud)
                .await
                .context("connect to the cloud API named in [cloud]")?;
            anyhow::Ok(unicni_capacity::cloud::describe(&cloud, &config).await?)
        })?;
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
        max_pods: args.max_pods,
    })
    .with_context(|| format!("planning the cluster of {}", args.config.display()))?;
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
        Output::Table => print!("{}", render::table(&config.cluster.name, &plan)),
    }
    Ok(ExitCode::SUCCESS)
}
