//! Preconditions of the runtime tests: root and the runtimes' binaries.
//!
//! Under CI (`CI=true`) a missing precondition is a failure, so a broken CI image cannot
//! turn the suite green by skipping it; locally the test prints why and returns.

use std::path::{Path, PathBuf};

pub fn in_ci() -> bool {
    matches!(
        std::env::var("CI")
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Ok("true") | Ok("1") | Ok("yes")
    )
}

pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].iter().map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

/// What a test needs: tools on PATH and files (plugins, binaries) on disk.
pub struct Needs<'a> {
    pub tools: &'a [&'a str],
    pub files: &'a [&'a str],
}

/// True when the test can run. False (with a printed reason) when it should be skipped
/// locally. Panics under CI.
pub fn preflight(test: &str, needs: Needs<'_>) -> bool {
    let mut missing = Vec::new();
    if !nix::unistd::Uid::effective().is_root() {
        missing.push("root (it creates network namespaces, bridges and daemons)".to_string());
    }
    for tool in needs.tools {
        if which(tool).is_none() {
            missing.push(format!("`{tool}` on PATH"));
        }
    }
    for file in needs.files {
        if !Path::new(file).exists() {
            missing.push(file.to_string());
        }
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "{test} needs {}; install containerd, podman, runc, busybox-static, \
         containernetworking-plugins, iptables and iproute2 and run as root",
        missing.join(", ")
    );
    if in_ci() {
        panic!("{msg} (CI=true, so this is a failure, not a skip)");
    }
    eprintln!("SKIP {msg}");
    false
}

/// `if !require!(...) { return; }` in one line.
#[macro_export]
macro_rules! require {
    ($test:expr, tools: [$($t:expr),* $(,)?], files: [$($f:expr),* $(,)?]) => {
        if !$crate::runtimes::env::preflight(
            $test,
            $crate::runtimes::env::Needs { tools: &[$($t),*], files: &[$($f),*] },
        ) {
            return;
        }
    };
}
