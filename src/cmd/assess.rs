//! `unicni assess`: can this cluster move to the other backend, what blocks it, and how.

use anyhow::{bail, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use unicni_assess::render::{self, Format};
use unicni_assess::{assess, CheckId, FailOn, Inventory, Options};
use unicni_capacity::InstanceTypeTable;
use unicni_config::BackendKind;

#[derive(clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Reads a cluster (an inventory file, or live through a kubeconfig) and \
                  assesses moving it to the --to backend. Each check reports findings with a \
                  severity (info, warning, blocker), the object concerned, a message and a \
                  remedy:\n\n\
                  \x20 current-backend    the backend and mode in use now\n\
                  \x20 node-capacity      pods running per node vs the target's per-node limit \
                  (terway: instance-type ENI limits; flannel: node subnet size)\n\
                  \x20 lost-features      NetworkPolicy, fixed IPs, dual stack, pod-level \
                  vSwitch/security group, load balancer to pod, source IP, cross-cluster traffic\n\
                  \x20 vswitch-ips        terway: free vSwitch addresses per zone vs pods there\n\
                  \x20 cidr-conflicts     target ranges vs VPC, vSwitches, service CIDR, other clusters\n\
                  \x20 node-limits        node count vs cluster size limit and vpc-route route-table budget\n\
                  \x20 flannel-subnets    flannel: node subnets in the cluster network vs nodes\n\
                  \x20 host-dependencies  NodePort services, hostPort and hostNetwork pods\n\
                  \x20 pods-not-running   pods Pending, Failed or Unknown\n\n\
                  It ends with a verdict (ready, ready-with-warnings, blocked) and an ordered \
                  migration path (node pool by node pool, or a new cluster at once, with the \
                  reason).\n\n\
                  The target's settings come from --config, else the inventory's `target` \
                  section, else unicni's defaults adapted to the cluster (a flannel network \
                  that overlaps nothing, every known vSwitch for terway).\n\n\
                  Exit codes: 0 ready, 2 warnings, 3 blockers, 1 error; --fail-on blocker \
                  makes warnings exit 0, --fail-on never always exits 0 unless an error occurs."
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The backend to assess a move to.
    #[arg(long, required = true, value_parser = backend_kind())]
    pub to: Option<BackendKind>,
    /// An inventory file (YAML or JSON; schema in docs/plan-assess.md).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "kubeconfig",
        required_unless_present = "kubeconfig"
    )]
    pub inventory: Option<PathBuf>,
    /// Read the cluster live through this kubeconfig (read-only: list and get).
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The target's unicni config file; its backend.kind must match --to.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Instance-type ENI limits adding to or replacing the built-in table.
    #[arg(long, value_name = "FILE")]
    pub instance_types: Option<PathBuf>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// From which verdict on the exit code is non-zero.
    #[arg(long, value_enum, default_value_t = FailOnArg::Warning)]
    pub fail_on: FailOnArg,
    /// Leave out these checks (repeat, or separate with commas).
    #[arg(long, value_name = "CHECK", value_delimiter = ',', num_args = 1..)]
    pub ignore: Vec<String>,
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// Write an inventory of a live cluster (nodes, pods, services, network policies, the
    /// current network) to a file that `unicni assess --inventory` reads. The cloud's
    /// vSwitch free addresses and route-table budget are not in the Kubernetes API: add
    /// them under `cloud:` in the file (docs/plan-assess.md).
    Export(ExportArgs),
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// The kubeconfig of the cluster; $KUBECONFIG or ~/.kube/config when unset.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// Where to write the inventory; stdout when unset.
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Encoding of the inventory (JSON is faster to read for large clusters).
    #[arg(long, short = 'o', value_enum, default_value_t = ExportFormat::Yaml)]
    pub output: ExportFormat,
}

/// `--to`: one of the factory's backend kinds.
fn backend_kind() -> impl clap::builder::TypedValueParser<Value = BackendKind> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(crate::factory::kind_names()).map(|name: String| {
        crate::factory::kind_named(&name).expect("the parser admits only the factory's kinds")
    })
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Output {
    /// Aligned columns for people (at most 20 findings per check).
    Table,
    /// The full report (shape in docs/plan-assess.md).
    Json,
    /// The full report as YAML.
    Yaml,
    /// For tickets and pull requests.
    Markdown,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum FailOnArg {
    /// Warnings exit 2, blockers 3.
    Warning,
    /// Only blockers exit non-zero (3).
    Blocker,
    /// Always exit 0 (report only).
    Never,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    Yaml,
    Json,
}

pub fn run(args: Args) -> Result<ExitCode> {
    if let Some(Command::Export(e)) = args.command {
        return export(e);
    }
    let Some(to) = args.to else {
        bail!(
            "--to {} is required",
            crate::factory::kind_names().join("|")
        );
    };
    let ignore = args
        .ignore
        .iter()
        .map(|s| s.parse::<CheckId>())
        .collect::<Result<Vec<_>, _>>()?;
    let inventory = match (&args.inventory, &args.kubeconfig) {
        (Some(f), _) => Inventory::load(f)?,
        (None, Some(k)) => live_inventory(Some(k))?,
        (None, None) => bail!("give the cluster with --inventory FILE or --kubeconfig PATH"),
    };
    let target_config = match &args.config {
        Some(f) => Some((
            unicni_config::load(f).map_err(|e| anyhow::anyhow!("{e}"))?,
            format!("--config {}", f.display()),
        )),
        None => None,
    };
    let options = Options {
        to,
        target_config,
        instance_types: InstanceTypeTable::builtin_with(args.instance_types.as_deref())?,
        ignore,
    };
    let report = assess(&inventory, &options)?;
    let format = match args.output {
        Output::Table => Format::Table,
        Output::Json => Format::Json,
        Output::Yaml => Format::Yaml,
        Output::Markdown => Format::Markdown,
    };
    print!("{}", render::render(&report, format)?);
    let fail_on = match args.fail_on {
        FailOnArg::Warning => FailOn::Warning,
        FailOnArg::Blocker => FailOn::Blocker,
        FailOnArg::Never => FailOn::Never,
    };
    Ok(ExitCode::from(report.exit_code(fail_on)))
}

/// Reads the cluster through the Kubernetes API (read-only: list and get).
fn live_inventory(kubeconfig: Option<&PathBuf>) -> Result<Inventory> {
    let inventory = unicni_assess::live::inventory(kubeconfig.map(PathBuf::as_path));
    Ok(super::common::runtime()?.block_on(inventory)?)
}

fn export(args: ExportArgs) -> Result<ExitCode> {
    let inv = live_inventory(args.kubeconfig.as_ref())?;
    let text = match args.output {
        ExportFormat::Yaml => inv.to_yaml(),
        ExportFormat::Json => inv.to_json(),
    };
    match &args.file {
        Some(f) => std::fs::write(f, text)
            .map_err(|e| anyhow::anyhow!("cannot write the inventory to {}: {e}", f.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
