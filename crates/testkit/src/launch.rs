//! Executing a [`CniRun`] through a launcher such as `ip netns exec <node>`, as the lab
//! does: its nodes are namespaces, and the runtime on a node runs the plugin there. The
//! lab reports a failed execution as an error to its user instead of panicking.

use crate::{CniOutput, CniRun};
use std::io::Write;
use std::process::Command;

impl CniRun {
    /// Runs the plugin as `launcher... <plugin>` (e.g. `["ip", "netns", "exec", ns]`) with
    /// the environment, working directory and stdin [`CniRun::run`] would give it; an empty
    /// launcher runs the plugin itself. Unlike `run`, a plugin that cannot be executed or
    /// waited for is an error. `clean_env` is not carried through a launcher.
    pub fn try_run_via(&self, launcher: &[&str]) -> std::io::Result<CniOutput> {
        let plugin = self.command();
        let mut c = match launcher.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(plugin.get_program());
                c
            }
            None => Command::new(plugin.get_program()),
        };
        c.args(plugin.get_args());
        for (k, v) in plugin.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        if let Some(dir) = plugin.get_current_dir() {
            c.current_dir(dir);
        }
        let mut child = c
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // As in `spawn`: a plugin that exits before reading its stdin has answered.
        let _ = stdin.write_all(&self.stdin);
        drop(stdin);
        let out = child.wait_with_output()?;
        Ok(CniOutput {
            ok: out.status.success(),
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::CniRun;

    #[test]
    fn a_launcher_runs_the_plugin_with_the_runtime_environment_and_stdin() {
        // `env` as launcher prints the environment it passes on, then the plugin (`cat`)
        // echoes stdin.
        let out = CniRun::new("cat", "ADD")
            .container_id("c9")
            .stdin("conf")
            .try_run_via(&["sh", "-c", "env | grep '^CNI_' | sort; exec \"$0\""])
            .unwrap();
        assert!(out.ok, "{}", out.stderr);
        assert!(out.stdout.contains("CNI_COMMAND=ADD"), "{}", out.stdout);
        assert!(out.stdout.contains("CNI_CONTAINERID=c9"), "{}", out.stdout);
        assert!(out.stdout.ends_with("conf"), "{}", out.stdout);
    }

    #[test]
    fn a_launcher_that_cannot_be_executed_is_an_error_not_a_panic() {
        let r = CniRun::new("cat", "DEL").try_run_via(&["/nonexistent/launcher"]);
        assert!(r.is_err());
    }
}
