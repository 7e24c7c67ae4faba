//! A network namespace held by a sleeping process, addressed as `/proc/PID/ns/net` (the
//! form `ctr run --cni` passes). Nothing is mounted, so nothing can leak on the host: the
//! namespace dies with the process.

use crate::runtimes::guard::Daemon;
use crate::runtimes::util::wait_for;
use std::process::{Command, Stdio};
use std::time::Duration;

pub struct Netns {
    holder: Daemon,
    pub path: String,
}

impl Netns {
    pub fn new() -> Self {
        let child = Command::new("unshare")
            .args(["--net", "--", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn unshare --net (util-linux)");
        let holder = Daemon::new("netns holder", child);
        let pid = holder.pid();
        let path = format!("/proc/{pid}/ns/net");
        let mine = std::fs::read_link("/proc/self/ns/net").unwrap();
        // unshare execs sleep only after entering the new namespace.
        wait_for(
            "the holder to enter its namespace",
            Duration::from_secs(5),
            || {
                let theirs = std::fs::read_link(&path).ok()?;
                (theirs != mine).then_some(())
            },
        );
        Self { holder, path }
    }

    pub fn pid(&self) -> u32 {
        self.holder.pid()
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, program: &str, args: &[&str]) -> std::process::Output {
        crate::runtimes::util::output(
            Command::new("nsenter")
                .arg(format!("--net={}", self.path))
                .arg("--")
                .arg(program)
                .args(args),
        )
    }
}
