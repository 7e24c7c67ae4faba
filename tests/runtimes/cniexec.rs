//! Executes a conflist the way libcni does: ADD in order with each result passed on as
//! `prevResult`, DEL in reverse with the cached ADD result, runtime config only for the
//! capabilities a plugin declares. Used to clean up after `ctr run -d` (which never runs
//! DEL) and to test chaining without a runtime in between.

use super::guard::Defer;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use unicni_testkit::CniRun;

pub struct Invocation<'a> {
    pub container_id: &'a str,
    /// May be empty (DEL after the sandbox is gone, as CRI's RemovePodSandbox does).
    pub netns: &'a str,
    pub ifname: &'a str,
    pub cni_args: &'a str,
    /// `runtimeConfig` by capability name (`portMappings`, `bandwidth`, ...).
    pub runtime_config: Value,
}

#[derive(Debug)]
pub struct PluginError {
    pub plugin: String,
    pub command: String,
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} exited {:?}\nstdout: {}\nstderr: {}",
            self.plugin, self.command, self.status, self.stdout, self.stderr
        )
    }
}

/// Runs one plugin binary with the CNI environment and `conf` on stdin; returns stdout.
pub fn exec_plugin(
    bin_dir: &Path,
    kind: &str,
    command: &str,
    inv: &Invocation<'_>,
    conf: &Value,
) -> Result<String, PluginError> {
    let out = CniRun::new(bin_dir.join(kind), command)
        .clean_env()
        .container_id(inv.container_id)
        .netns(inv.netns)
        .ifname(inv.ifname)
        .args(inv.cni_args)
        .cni_path(bin_dir)
        .config(conf)
        .run();
    if out.ok {
        Ok(out.stdout)
    } else {
        Err(PluginError {
            plugin: kind.to_string(),
            command: command.to_string(),
            status: out.status.code(),
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }
}

/// The config one plugin of the list receives: its own object plus the list's name and
/// version, the runtime config it has capabilities for, and the previous result.
pub fn plugin_conf(
    list: &Value,
    plugin: &Value,
    inv: &Invocation<'_>,
    prev: Option<&Value>,
) -> Value {
    let mut conf: Map<String, Value> = plugin.as_object().cloned().unwrap_or_default();
    conf.insert("name".into(), list["name"].clone());
    conf.insert("cniVersion".into(), list["cniVersion"].clone());
    if let Some(caps) = plugin["capabilities"].as_object() {
        let mut rc = Map::new();
        for (cap, enabled) in caps {
            if enabled.as_bool() == Some(true) {
                if let Some(v) = inv.runtime_config.get(cap) {
                    rc.insert(cap.clone(), v.clone());
                }
            }
        }
        if !rc.is_empty() {
            conf.insert("runtimeConfig".into(), Value::Object(rc));
        }
    }
    if let Some(prev) = prev {
        conf.insert("prevResult".into(), prev.clone());
    }
    Value::Object(conf)
}

/// ADD through the whole list; returns the final result.
pub fn add(list: &Value, bin_dir: &Path, inv: &Invocation<'_>) -> Result<Value, PluginError> {
    let mut prev: Option<Value> = None;
    for plugin in list["plugins"].as_array().expect("conflist has plugins") {
        let kind = plugin["type"].as_str().expect("plugin has a type");
        let conf = plugin_conf(list, plugin, inv, prev.as_ref());
        let out = exec_plugin(bin_dir, kind, "ADD", inv, &conf)?;
        let result: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{kind} ADD printed no JSON result ({e}):\n{out}"));
        prev = Some(result);
    }
    Ok(prev.unwrap_or(json!({})))
}

/// CHECK through the whole list with the ADD result as `prevResult`.
pub fn check(
    list: &Value,
    bin_dir: &Path,
    inv: &Invocation<'_>,
    result: &Value,
) -> Result<(), PluginError> {
    for plugin in list["plugins"].as_array().unwrap() {
        let kind = plugin["type"].as_str().unwrap();
        let conf = plugin_conf(list, plugin, inv, Some(result));
        exec_plugin(bin_dir, kind, "CHECK", inv, &conf)?;
    }
    Ok(())
}

/// DEL through the list in reverse. Every plugin is run even when one fails (as libcni
/// does not, but a cleanup path must); the first error is returned.
pub fn del(
    list: &Value,
    bin_dir: &Path,
    inv: &Invocation<'_>,
    result: Option<&Value>,
) -> Result<(), PluginError> {
    let mut first_err = None;
    for plugin in list["plugins"].as_array().unwrap().iter().rev() {
        let kind = plugin["type"].as_str().unwrap();
        let conf = plugin_conf(list, plugin, inv, result);
        if let Err(e) = exec_plugin(bin_dir, kind, "DEL", inv, &conf) {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Registers a DEL through the whole list with `defer`, with no namespace and interface
/// `eth0` (as a runtime cleaning up after a sandbox that is gone): whatever fails in the
/// test, what ADD set up does not outlive it. A failing cleanup DEL is reported, not fatal.
pub fn defer_del(
    defer: &mut Defer,
    what: &str,
    list: Value,
    bin_dir: PathBuf,
    container_id: String,
    cni_args: &'static str,
    runtime_config: Value,
) {
    defer.push(what, move || {
        let inv = Invocation {
            container_id: &container_id,
            netns: "",
            ifname: "eth0",
            cni_args,
            runtime_config,
        };
        if let Err(e) = del(&list, &bin_dir, &inv, None) {
            eprintln!("cleanup: {e}");
        }
    });
}
