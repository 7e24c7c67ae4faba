//! `unicni install`: run once per node (the DaemonSet's init container) to validate the
//! config, check the cluster lock, write the conflist and copy the binary.

use super::common::{self, write_atomic};
use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use unicni_config::Config;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub paths: common::NodePaths,
    /// A node agent (`unicni agent`) provides this node's subnet lease: write the conflist
    /// without a subnet (the plugin reads the agent's lease file and answers "try again
    /// later" until it exists) and leave leasing to the agent.
    #[arg(long)]
    pub with_agent: bool,
}

pub fn run(args: Args) -> Result<ExitCode> {
    let config = common::load_config(&args.paths.config)?;
    let rt = common::runtime()?;
    let backend = crate::factory::installer(&config);
    // Before the lock: a node that cannot host the mode must not create the cluster.
    rt.block_on(backend.admit())?;
    let store = rt.block_on(unicni_store::open(&config.store))?;
    let (lock, created) = rt.block_on(common::check_lock(store.as_ref(), &config))?;
    if created {
        eprintln!(
            "cluster lock created in {} (backend {} / {})",
            store.describe(),
            lock.backend,
            lock.mode
        );
    } else {
        eprintln!("config matches the cluster lock in {}", store.describe());
    }
    let entry = rt.block_on(backend.entry(store.as_ref(), args.with_agent))?;
    let version = conflist_version(&config, &args.paths.cni_bin_dir);
    let conflist = conflist(&config, &entry.plugin, &version);
    let conf_path = args.paths.cni_conf_dir.join(&config.cni.conf_name);
    write_atomic(
        &conf_path,
        serde_json::to_string_pretty(&conflist)?.as_bytes(),
        0o644,
    )?;
    eprintln!("wrote {} ({})", conf_path.display(), entry.summary);
    let bin = install_binary(&args.paths.cni_bin_dir)?;
    eprintln!("installed {}", bin.display());
    Ok(ExitCode::SUCCESS)
}

/// The plugin list the runtime executes: unicni first (`entry`, the backend's fields),
/// then the configured chain.
pub fn conflist(c: &Config, entry: &Value, version: &str) -> Value {
    let mut first = json!({ "type": crate::cmd::cni::PLUGIN_TYPE });
    if let (Some(o), Some(fields)) = (first.as_object_mut(), entry.as_object()) {
        for (k, v) in fields {
            o.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    // The plugin registers each pod with the eBPF Service load balancer (pinned by the
    // agent under this directory); absent, an ADD never opens a map for it.
    if c.services.enabled {
        first[crate::cmd::cni::SERVICES_FIELD] = json!({ "pin_dir": c.bpf.pin_dir });
    }
    let mut plugins = vec![first];
    for p in &c.cni.chain {
        plugins.push(match p.as_str() {
            "portmap" => {
                json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true})
            }
            "bandwidth" => json!({"type": "bandwidth", "capabilities": {"bandwidth": true}}),
            other => json!({"type": other}),
        });
    }
    json!({
        "cniVersion": version,
        "name": c.cni.network_name,
        "plugins": plugins,
    })
}

/// The conflist's cniVersion: `cni.version`, lowered to the highest version every chained
/// plugin says it supports (a plugin refuses a config newer than it knows, and the runtime
/// then drops the whole network).
fn conflist_version(c: &Config, bin_dir: &Path) -> String {
    let mut version = c.cni.version.clone();
    for plugin in &c.cni.chain {
        let exe = bin_dir.join(plugin);
        let supported: Vec<String> = std::process::Command::new(&exe)
            .env("CNI_COMMAND", "VERSION")
            .stdin(std::process::Stdio::null())
            .output()
            .ok()
            .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
            .and_then(|v| {
                v["supportedVersions"].as_array().map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
            })
            .unwrap_or_default();
        if supported.is_empty() {
            eprintln!(
                "warning: chained plugin {} did not answer VERSION; is it in {}?",
                plugin,
                bin_dir.display()
            );
            continue;
        }
        if !supported.contains(&version) {
            if let Some(best) = supported
                .iter()
                .filter(|v| unicni_cni::SUPPORTED_VERSIONS.contains(&v.as_str()))
                .filter(|v| unicni_cni::version::at_least(&version, v))
                .max_by(|a, b| {
                    if unicni_cni::version::at_least(a, b) {
                        std::cmp::Ordering::Greater
                    } else {
                        std::cmp::Ordering::Less
                    }
                })
            {
                eprintln!("{plugin} supports up to {best}: writing cniVersion {best}");
                version = best.clone();
            }
        }
    }
    version
}

/// Copies the running binary to `<dir>/unicni` atomically, unless it already runs from there.
fn install_binary(dir: &Path) -> Result<PathBuf> {
    let me = std::env::current_exe().context("locate the running binary")?;
    let target = dir.join(crate::cmd::cni::PLUGIN_TYPE);
    if let (Ok(a), Ok(b)) = (me.canonicalize(), target.canonicalize()) {
        if a == b {
            return Ok(target);
        }
    }
    let bytes = std::fs::read(&me).with_context(|| format!("read {}", me.display()))?;
    write_atomic(&target, &bytes, 0o755)?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_services_field_names_the_pin_dir_only_when_services_are_enabled() {
        let mut c = Config::default();
        let entry = json!({"backend": "flannel"});
        let off = conflist(&c, &entry, "1.1.0");
        assert!(off["plugins"][0].get("services").is_none(), "{off}");
        c.services.enabled = true;
        c.bpf.pin_dir = "/sys/fs/bpf/n1".into();
        let on = conflist(&c, &entry, "1.1.0");
        assert_eq!(
            on["plugins"][0]["services"],
            json!({"pin_dir": "/sys/fs/bpf/n1"})
        );
        assert_eq!(on["plugins"][0]["backend"], "flannel");
    }
}
