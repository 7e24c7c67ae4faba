//! `unicni cloud-sim`: the Alibaba Cloud ECS/VPC API and metadata emulator, standalone.

use anyhow::{Context as _, Result};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use unicni_cloud_sim::{CloudSim, SimConfig};

#[derive(clap::Args)]
#[command(
    long_about = "Runs an emulator of the Alibaba Cloud ECS (2014-05-26) and VPC (2016-04-28) \
                  RPC APIs unicni uses, and of the instance metadata service, on one HTTP \
                  address: the API at /, metadata at /latest/... (instance chosen by source \
                  address) and /instances/<id>/latest/..., admin at /_sim/.\n\n\
                  Requests must be signed (HMAC-SHA1, SignatureVersion 1.0) with an access \
                  key from the config (default: unicni-sim / unicni-sim-secret). Point \
                  unicni at it with cloud.endpoint and cloud.metadata_endpoint.\n\n\
                  On start it prints `endpoint=http://ADDR` on stdout. See docs/cloud.md."
)]
pub struct Args {
    /// Address to serve on; port 0 picks a free one.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// State file: loaded when it exists, rewritten after every change.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Emulator config (TOML): region, VPC, vSwitches, instances, keys, delays, faults.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the effective config as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Mirror every Available route entry as a kernel route in this network namespace
    /// (`<destination> via <next-hop instance's primary IP>`), removed with the entry:
    /// the emulator's namespace becomes the VPC router (what `unicni lab` does).
    #[arg(long)]
    pub mirror_routes: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let config = match &args.config {
        Some(p) => {
            SimConfig::load(p).with_context(|| format!("load emulator config {}", p.display()))?
        }
        None => SimConfig::default(),
    };
    if args.print_config {
        print!(
            "{}",
            toml::to_string_pretty(&config).context("render the config as TOML")?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let sim = CloudSim::new(config, args.state.clone()).context("start the cloud emulator")?;
    super::common::runtime()?.block_on(async move {
        if args.mirror_routes {
            tokio::spawn(super::cloud_sim_mirror::mirror(sim.clone(), sim.subscribe()));
        }
        let running = sim.start(args.listen).await.context("start the cloud emulator")?;
        println!("endpoint={}", running.endpoint());
        tracing::info!(endpoint = %running.endpoint(), state = ?args.state, "cloud emulator serving");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("install the SIGTERM handler")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        let sim = running.sim.clone();
        running.stop().await;
        sim.save().context("save the emulator state")?;
        Ok(ExitCode::SUCCESS)
    })
}
