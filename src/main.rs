//! unicni: one binary for a Kubernetes pod network.
//!
//! With `CNI_COMMAND` in the environment it is a CNI plugin (the container runtime
//! executes it); otherwise it is the command-line tool (install, agent, lab, plan, ...).

mod cli;
mod cmd;
mod factory;
mod logging;

use std::process::ExitCode;

fn main() -> ExitCode {
    if std::env::var_os("CNI_COMMAND").is_some() {
        return cmd::cni::run();
    }
    cli::run()
}
