//! The command line: one subcommand per role, each in its own module under `cmd/`.

use crate::cmd;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "unicni",
    version,
    about = "One binary for a Kubernetes pod network: CNI plugin, installer, agent, planner, lab",
    long_about = "unicni gives a Kubernetes cluster its pod network with one of two backends, \
                  chosen at install time and locked for the life of the cluster: flannel \
                  (a cluster CIDR leased per node) or terway (VPC addresses through ENIs).\n\n\
                  Executed with CNI_COMMAND set, it is the CNI plugin (spec 1.1)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the config, check the cluster lock, write the conflist and copy the binary.
    Install(cmd::install::Args),
    /// Remove what install, the agent and the datapath put on this node (per backend).
    Uninstall(cmd::uninstall::Args),
    /// Run the node agent: subnet lease, peers' routes (vxlan / host-gw), drift repair, metrics.
    Agent(cmd::agent::Args),
    /// Inspect the config file.
    #[command(subcommand)]
    Config(cmd::config::Command),
    /// Print the Kubernetes objects (RBAC, ConfigMap, DaemonSet) that run a config's backend.
    Manifests(cmd::manifests::Args),
    /// Inspect the cluster lock.
    #[command(subcommand)]
    Lock(cmd::lock::Command),
    /// A cluster on this machine: pods in network namespaces wired by the real plugin.
    Lab(cmd::lab::Args),
    /// Capacity of the cluster a config describes.
    Plan(cmd::plan::Args),
    /// Can this cluster move to the other backend, and how.
    Assess(cmd::assess::Args),
    /// Run the cloud API and metadata emulator.
    CloudSim(cmd::cloud_sim::Args),
    /// Run the emulated Kubernetes API server (HTTPS, tokens, kubeconfig).
    KubeSim(cmd::kube_sim::Args),
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    crate::logging::init("info");
    let outcome = match cli.command {
        Command::Install(a) => cmd::install::run(a),
        Command::Uninstall(a) => cmd::uninstall::run(a),
        Command::Agent(a) => cmd::agent::run(a),
        Command::Config(c) => cmd::config::run(c),
        Command::Lock(c) => cmd::lock::run(c),
        Command::Manifests(a) => cmd::manifests::run(a),
        Command::Lab(a) => cmd::lab::run(a),
        Command::Plan(a) => cmd::plan::run(a),
        Command::Assess(a) => cmd::assess::run(a),
        Command::CloudSim(a) => cmd::cloud_sim::run(a),
        Command::KubeSim(a) => cmd::kube_sim::run(a),
    };
    match outcome {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
