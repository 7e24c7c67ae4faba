//! Executing a CNI plugin as a runtime does: the `CNI_*` environment, the network config
//! on stdin, the result or the error JSON on stdout, and the exit status.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

/// What a runtime passes to the plugin when nothing says otherwise.
const DEFAULT_CNI_PATH: &str = "/opt/cni/bin";
const DEFAULT_IFNAME: &str = "eth0";
/// The `PATH` a plugin sees under [`CniRun::clean_env`], as a runtime's minimal one.
const CLEAN_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// One plugin execution, built up and then [run](CniRun::run) or [spawned](CniRun::spawn).
///
/// `CNI_COMMAND` is set from [`CniRun::new`], `CNI_IFNAME` defaults to `eth0` and
/// `CNI_PATH` to `/opt/cni/bin`; everything else is what the builder sets.
#[derive(Debug, Clone)]
pub struct CniRun {
    program: PathBuf,
    /// In order; `None` removes a variable the environment would otherwise pass on.
    env: Vec<(String, Option<String>)>,
    clean_env: bool,
    current_dir: Option<PathBuf>,
    pub stdin: Vec<u8>,
}

impl CniRun {
    pub fn new(program: impl AsRef<Path>, command: &str) -> CniRun {
        CniRun {
            program: program.as_ref().to_path_buf(),
            env: Vec::new(),
            clean_env: false,
            current_dir: None,
            stdin: Vec::new(),
        }
        .set("CNI_COMMAND", Some(command))
        .set("CNI_IFNAME", Some(DEFAULT_IFNAME))
        .set("CNI_PATH", Some(DEFAULT_CNI_PATH))
    }

    /// Sets (`Some`) or removes (`None`) one variable, replacing an earlier setting.
    pub fn set(mut self, key: &str, value: Option<&str>) -> CniRun {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.map(str::to_string)));
        self
    }

    pub fn container_id(self, id: &str) -> CniRun {
        self.set("CNI_CONTAINERID", Some(id))
    }

    /// `CNI_NETNS`; an empty path is passed as empty, as CRI's second DEL does.
    pub fn netns(self, path: impl AsRef<Path>) -> CniRun {
        let path = path.as_ref().display().to_string();
        self.set("CNI_NETNS", Some(&path))
    }

    pub fn ifname(self, name: &str) -> CniRun {
        self.set("CNI_IFNAME", Some(name))
    }

    pub fn cni_path(self, dirs: impl AsRef<Path>) -> CniRun {
        let dirs = dirs.as_ref().display().to_string();
        self.set("CNI_PATH", Some(&dirs))
    }

    /// `CNI_ARGS`, e.g. `IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p`.
    pub fn args(self, args: &str) -> CniRun {
        self.set("CNI_ARGS", Some(args))
    }

    /// The network configuration on stdin.
    pub fn config(mut self, conf: &Value) -> CniRun {
        self.stdin = conf.to_string().into_bytes();
        self
    }

    /// Raw stdin, for input that is not a JSON value.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> CniRun {
        self.stdin = bytes.into();
        self
    }

    /// Starts the plugin with only `PATH` and the `CNI_*` variables, as containerd and
    /// CRI-O do, instead of inheriting the test's environment.
    pub fn clean_env(mut self) -> CniRun {
        self.clean_env = true;
        self
    }

    /// The directory the plugin runs in (a runtime's own, usually `/`).
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> CniRun {
        self.current_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// The command with environment and pipes set, for callers that need more (an extra
    /// variable, a failpoint, reading stderr while it runs).
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        if self.clean_env {
            c.env_clear().env("PATH", CLEAN_PATH);
        }
        for (k, v) in &self.env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        if let Some(dir) = &self.current_dir {
            c.current_dir(dir);
        }
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Starts the plugin and writes stdin (then closes it); the caller waits.
    pub fn spawn(&self) -> Child {
        // ETXTBSY: a plugin file a test has just written can still be open for writing in
        // a child another test thread forked before it execs (the descriptor is
        // close-on-exec, so only for that instant); the harness waits it out.
        let mut tries = 0;
        let mut child = loop {
            match self.command().spawn() {
                Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) && tries < 50 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                r => {
                    break r.unwrap_or_else(|e| {
                        panic!("cannot execute CNI plugin {}: {e}", self.program.display())
                    })
                }
            }
        };
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // A plugin may exit before reading stdin (a bad environment): that is its answer,
        // not a harness failure.
        let _ = stdin.write_all(&self.stdin);
        drop(stdin);
        child
    }

    /// Runs the plugin to completion.
    pub fn run(&self) -> CniOutput {
        let out = self.spawn().wait_with_output().unwrap_or_else(|e| {
            panic!("cannot wait for CNI plugin {}: {e}", self.program.display())
        });
        CniOutput {
            ok: out.status.success(),
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// What one plugin execution printed, and how it exited.
#[derive(Debug, Clone)]
pub struct CniOutput {
    /// Exit status 0.
    pub ok: bool,
    pub status: ExitStatus,
    /// Trimmed.
    pub stdout: String,
    pub stderr: String,
}

/// The spec's error object, as the plugin printed it.
#[derive(Debug, Clone, PartialEq)]
pub struct CniError {
    pub code: u64,
    pub msg: String,
    pub details: String,
    /// The whole object, `cniVersion` included.
    pub raw: Value,
}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[code {}] {}: {}", self.code, self.msg, self.details)
    }
}

impl CniOutput {
    /// stdout as JSON; panics with stdout and stderr when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {:?}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }

    /// The result on success (`null` when the command prints none, as DEL), the error
    /// object on failure. Panics when a failure prints no error object with a code.
    pub fn result(&self) -> Result<Value, CniError> {
        if self.ok {
            if self.stdout.is_empty() {
                return Ok(Value::Null);
            }
            return Ok(self.json());
        }
        let raw = self.json();
        let code = raw["code"].as_u64().unwrap_or_else(|| {
            panic!(
                "the plugin failed without an error code: {raw}\nstderr: {}",
                self.stderr
            )
        });
        Err(CniError {
            code,
            msg: raw["msg"].as_str().unwrap_or_default().to_string(),
            details: raw["details"].as_str().unwrap_or_default().to_string(),
            raw,
        })
    }

    /// The error code; panics when the plugin succeeded.
    pub fn code(&self) -> u64 {
        assert!(!self.ok, "expected an error, got success: {}", self.stdout);
        self.result().expect_err("a failure").code
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A stand-in plugin: echoes what a plugin sees (environment, stdin, working directory)
    /// as a result, or fails with an error object when the config asks it to.
    fn fake_plugin(dir: &Path) -> PathBuf {
        let path = dir.join("fake");
        std::fs::write(
            &path,
            r#"#!/bin/sh
conf=$(cat)
case "$conf" in
  *fail*) printf '{"cniVersion":"1.1.0","code":7,"msg":"invalid %s","details":"d"}\n' "$CNI_COMMAND"; exit 1 ;;
esac
printf '{"command":"%s","id":"%s","netns":"%s","ifname":"%s","path":"%s","args":"%s","home":"%s","cwd":"%s","stdin":%s}\n' \
  "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_NETNS" "$CNI_IFNAME" "$CNI_PATH" "$CNI_ARGS" "${HOME:-}" "$(pwd)" "$conf"
"#,
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn passes_the_runtime_environment_and_config_and_parses_the_result() {
        let dir = tempfile::tempdir().unwrap();
        let out = CniRun::new(fake_plugin(dir.path()), "ADD")
            .container_id("c1")
            .netns("/var/run/netns/x")
            .args("K8S_POD_NAME=p")
            .config(&serde_json::json!({"name": "n"}))
            .current_dir(dir.path())
            .run();
        let r = out.result().unwrap();
        assert_eq!(r["command"], "ADD");
        assert_eq!(r["id"], "c1");
        assert_eq!(r["netns"], "/var/run/netns/x");
        assert_eq!(r["ifname"], DEFAULT_IFNAME);
        assert_eq!(r["path"], DEFAULT_CNI_PATH);
        assert_eq!(r["args"], "K8S_POD_NAME=p");
        assert_eq!(r["stdin"]["name"], "n");
        assert_eq!(
            Path::new(r["cwd"].as_str().unwrap())
                .canonicalize()
                .unwrap(),
            dir.path().canonicalize().unwrap()
        );
        assert!(out.status.success());
    }

    #[test]
    fn clean_env_drops_the_callers_environment_and_unset_removes_a_variable() {
        let dir = tempfile::tempdir().unwrap();
        let run = CniRun::new(fake_plugin(dir.path()), "DEL")
            .container_id("c1")
            .set("CNI_IFNAME", None)
            .config(&serde_json::json!({}));
        assert_eq!(run.clone().clean_env().run().json()["home"], "");
        if std::env::var_os("HOME").is_some_and(|h| !h.is_empty()) {
            assert_ne!(run.clone().run().json()["home"], "", "inherited otherwise");
        }
        assert_eq!(run.run().json()["ifname"], "");
    }

    #[test]
    fn a_failure_is_the_error_object_with_its_code() {
        let dir = tempfile::tempdir().unwrap();
        let out = CniRun::new(fake_plugin(dir.path()), "CHECK")
            .config(&serde_json::json!({"x": "fail"}))
            .run();
        assert!(!out.ok);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(out.code(), 7);
        let e = out.result().unwrap_err();
        assert_eq!((e.msg.as_str(), e.details.as_str()), ("invalid CHECK", "d"));
        assert_eq!(e.raw["cniVersion"], "1.1.0");
    }
}
