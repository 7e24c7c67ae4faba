//! `unicni cloud-sim`: the Alibaba Cloud ECS/VPC API and metadata emulator, standalone.

use anyhow::{Context as _, Result};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use unicni_cloud_sim::materialize::{self, Materializer};
use unicni_cloud_sim::mirror::RouteMirror;
use unicni_cloud_sim::{CloudSim, Profile, SimConfig};

#[derive(clap::Args)]
#[command(
    long_about = "Runs an emulator of the Alibaba Cloud ECS (2014-05-26) and VPC (2016-04-28) \
                  RPC APIs unicni uses, and of the instance metadata service, on one HTTP \
                  address: the API at /, metadata at /latest/... (instance chosen by source \
                  address) and /instances/<id>/latest/..., admin at /_sim/.\n\n\
                  Requests must be signed (V3 ACS3-HMAC-SHA256, or V2 HMAC-SHA1) with an \
                  access key from the config (default: unicni-sim / unicni-sim-secret). Point \
                  unicni at it with cloud.endpoint and cloud.metadata_endpoint.\n\n\
                  --profile realistic makes each call and each asynchronous state take \
                  about as long as on the vendor's cloud.\n\n\
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
    /// Latency profile, overriding the config's `profile`: `default` (no call latency,
    /// the config's delays), `none` (nothing waits) or `realistic` (the vendor's figures,
    /// see docs/cloud.md, "Latency profiles").
    #[arg(long, value_name = "NAME", value_parser = clap::value_parser!(Profile))]
    pub profile: Option<Profile>,
    /// Print the effective config as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Mirror every Available route entry as a kernel route in this network namespace
    /// (`<destination> via <next-hop instance's primary IP>`), removed with the entry:
    /// the emulator's namespace becomes the VPC router (what `unicni lab` does).
    #[arg(long)]
    pub mirror_routes: bool,
    /// Make attached ENIs real links: an ENI attached to an instance named in
    /// `--instance-netns` becomes `ethN` (the ENI's MAC) in that namespace, veth-paired with
    /// a port of `--vpc-bridge`; each secondary IP gets a /32 route to it on the bridge.
    /// Detach removes the link. See docs/cloud.md.
    #[arg(long)]
    pub materialize_enis: bool,
    /// Which network namespace (a name under /var/run/netns) is which instance, for
    /// `--materialize-enis`; repeat per instance.
    #[arg(long, value_name = "INSTANCE=NETNS", value_parser = materialize::parse_instance_netns)]
    pub instance_netns: Vec<(String, String)>,
    /// The bridge in this namespace that is the vSwitch, for `--materialize-enis`.
    #[arg(long, value_name = "BRIDGE", default_value = "br0")]
    pub vpc_bridge: String,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let mut config = match &args.config {
        Some(p) => {
            SimConfig::load(p).with_context(|| format!("load emulator config {}", p.display()))?
        }
        None => SimConfig::default(),
    };
    if let Some(p) = args.profile {
        config.profile = p;
    }
    if args.print_config {
        print!(
            "{}",
            toml::to_string_pretty(&config).context("render the config as TOML")?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if !args.instance_netns.is_empty() && !args.materialize_enis {
        anyhow::bail!("--instance-netns is only used with --materialize-enis; add that flag");
    }
    let sim = CloudSim::new(config, args.state.clone()).context("start the cloud emulator")?;
    if args.materialize_enis {
        Materializer::new(
            args.instance_netns.iter().cloned().collect(),
            args.vpc_bridge.clone(),
        )
        .spawn(&sim)
        .context("start the ENI materializer thread")?;
    }
    super::common::runtime()?.block_on(async move {
        if args.mirror_routes {
            RouteMirror::spawn(&sim).context("mirror routes into this namespace")?;
        }
        let running = sim.start(args.listen).await.context("start the cloud emulator")?;
        println!("endpoint={}", running.endpoint());
        tracing::info!(endpoint = %running.endpoint(), state = ?args.state, profile = %sim.profile(), "cloud emulator serving");
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
