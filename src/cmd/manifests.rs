//! `unicni manifests`: the Kubernetes objects that run unicni on every node, for one
//! config (printed as YAML; `kubectl apply -f -` takes them). The rendering lives in
//! `unicni-deploy`; the backend's needs come from its install half (the factory).

use super::common;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The cluster's config file (TOML or YAML); it becomes the ConfigMap.
    #[arg(long)]
    pub config: PathBuf,
    /// The image reference (`scripts/image.sh` prints it).
    #[arg(long, default_value = concat!("localhost/unicni:", env!("CARGO_PKG_VERSION")))]
    pub image: String,
    /// Namespace of the DaemonSet, its ServiceAccount and ConfigMap (the store's records
    /// stay in kube-system).
    #[arg(long, default_value = "unicni-system")]
    pub namespace: String,
    /// The container runtime's CNI config directory on the nodes.
    #[arg(long, default_value = "/etc/cni/net.d")]
    pub cni_conf_dir: String,
    /// The container runtime's CNI plugin directory on the nodes.
    #[arg(long, default_value = "/opt/cni/bin")]
    pub cni_bin_dir: String,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let config = common::load_config(&args.config)?;
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("read {}", args.config.display()))?;
    // The containers read the file by its format's extension, whatever it is called here.
    let yaml = matches!(
        args.config.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    let ext = if yaml { "yaml" } else { "toml" };
    let needs = crate::factory::installer(&config).deploy_needs();
    let mut opts = unicni_deploy::Options::new(&args.image, &format!("unicni.{ext}"), &text);
    opts.namespace = args.namespace;
    opts.cni_conf_dir = args.cni_conf_dir;
    opts.cni_bin_dir = args.cni_bin_dir;
    let objects = unicni_deploy::render(&config, &needs, &opts)
        .with_context(|| format!("manifests for {}", args.config.display()))?;
    let yaml = unicni_deploy::to_yaml(&objects, &config, &needs)?;
    std::io::stdout()
        .write_all(yaml.as_bytes())
        .context("write the manifests to stdout")?;
    Ok(ExitCode::SUCCESS)
}
