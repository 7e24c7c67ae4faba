//! `unicni lab`: a cluster network on this machine, built through the real code paths.
//!
//! Today the lab is one node: it installs unicni into a private conf/bin dir, creates pod
//! namespaces, attaches them by executing the installed plugin exactly as a runtime
//! would (CNI ADD with env + stdin), checks connectivity with real pings, and tears it
//! all down. Everything it creates carries the `ulab` prefix so `unicni lab down` can
//! find it again after a crash.

mod checks;
mod pods;
mod topology;

use anyhow::Result;
use std::process::ExitCode;
use topology::Lab;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Build the lab, run the connectivity checks, tear it down (the default).
    Run {
        /// Pods to create.
        #[arg(long, default_value_t = 2)]
        pods: usize,
        /// Leave the lab up after the checks (remove it with `unicni lab down`).
        #[arg(long)]
        keep: bool,
        /// Print the check results as JSON on stdout.
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
    },
    /// Remove everything a lab created, also after a crash.
    Down,
}

pub fn run(args: Args) -> Result<ExitCode> {
    match args.command.unwrap_or(Command::Run {
        pods: 2,
        keep: false,
        output: "table".into(),
    }) {
        Command::Run { pods, keep, output } => run_lab(pods.max(2), keep, &output),
        Command::Down => {
            Lab::new()?.destroy()?;
            eprintln!("lab removed");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_lab(pod_count: usize, keep: bool, output: &str) -> Result<ExitCode> {
    let lab = Lab::new()?;
    // A previous run may have crashed: start from nothing.
    lab.destroy()?;
    let outcome = (|| -> Result<Vec<checks::CheckResult>> {
        step(1, 4, "installing unicni into the lab (config, lock, conflist, binary)");
        lab.install()?;
        step(2, 4, &format!("creating {pod_count} pods through CNI ADD"));
        let pods = (1..=pod_count)
            .map(|i| {
                let pod = lab.add_pod(i)?;
                eprintln!("      pod {} in netns {} got {}", pod.name, pod.netns, pod.ip);
                Ok(pod)
            })
            .collect::<Result<Vec<_>>>()?;
        step(3, 4, "checking connectivity");
        Ok(checks::run(&lab, &pods))
    })();
    let results = match outcome {
        Ok(r) => r,
        Err(e) => {
            if !keep {
                let _ = lab.destroy();
            }
            return Err(e);
        }
    };
    let failed = checks::print(&results, output);
    if keep {
        eprintln!("lab left up; remove it with `unicni lab down`");
    } else {
        step(4, 4, "tearing down (CNI DEL, namespaces, bridge, rules)");
        lab.teardown_pods(pod_count)?;
        lab.destroy()?;
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn step(n: usize, of: usize, what: &str) {
    eprintln!("[{n}/{of}] {what}");
}
