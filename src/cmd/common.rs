//! What several subcommands share: loading the config, opening the store, the lock.

use anyhow::{bail, Context, Result};
use std::path::Path;
use unicni_config::{Config, LockRecord};
use unicni_core::{CreateOutcome, Store};

pub const LOCK_KEY: &str = "lock";

/// Where the config is and where the container runtime looks for CNI files; shared by
/// `install` and `uninstall` so the two always agree.
#[derive(clap::Args)]
pub struct NodePaths {
    /// The cluster's config file (TOML or YAML).
    #[arg(long, default_value = "/etc/unicni/unicni.toml")]
    pub config: std::path::PathBuf,
    /// Where the container runtime reads network configs.
    #[arg(long, default_value = "/etc/cni/net.d")]
    pub cni_conf_dir: std::path::PathBuf,
    /// Where the container runtime finds CNI plugins.
    #[arg(long, default_value = "/opt/cni/bin")]
    pub cni_bin_dir: std::path::PathBuf,
}

pub fn load_config(path: &Path) -> Result<Config> {
    unicni_config::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

pub fn node_name(c: &Config) -> String {
    c.node.name.clone().unwrap_or_else(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into())
    })
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Creates the lock on first use; afterwards refuses any drift of immutable fields.
/// Returns the record in force and whether this call created it.
pub async fn check_lock(store: &dyn Store, c: &Config) -> Result<(LockRecord, bool)> {
    let wanted = LockRecord::from_config(c, env!("CARGO_PKG_VERSION"), now());
    let body = serde_json::to_vec_pretty(&wanted)?;
    let existing = match store.create(LOCK_KEY, &body).await? {
        CreateOutcome::Created => return Ok((wanted, true)),
        CreateOutcome::Exists(bytes) => bytes,
    };
    let locked: LockRecord = serde_json::from_slice(&existing).with_context(|| {
        format!(
            "the lock record in {} is unreadable; inspect it with `unicni lock show`",
            store.describe()
        )
    })?;
    let drift = locked.drift(&wanted);
    if !drift.is_empty() {
        let lines: Vec<String> = drift.iter().map(|d| format!("  - {d}")).collect();
        bail!(
            "the config changes fields locked at cluster bootstrap (cluster {:?}, locked by unicni {}):\n{}\n\
             These fields cannot change for the life of the cluster; restore them in the config \
             (the lock is in {}).",
            locked.cluster,
            locked.created_by,
            lines.join("\n"),
            store.describe()
        );
    }
    let merged = locked.merged(&wanted);
    if merged != locked {
        store
            .put(LOCK_KEY, &serde_json::to_vec_pretty(&merged)?)
            .await?;
    }
    Ok((merged, false))
}

pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")
}

/// Writes `contents` to `path` atomically (temp file in the same directory, then rename).
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    Ok(unicni_fsutil::write_atomic(path, contents, mode)?)
}
