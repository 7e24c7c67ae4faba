//! Links the unicni executable for a fast start: the container runtime executes it once
//! per CNI request, so its start is on the pod-start path.
//!
//! - Position-dependent (non-PIE): as a PIE, the dynamic loader first applies ~57,000
//!   relative relocations, copying every page they touch: about a third of the process's
//!   CPU time before `main` (measured with perf on `CNI_COMMAND=VERSION`). A fixed load
//!   address needs none. The cost is ASLR of the executable's own image (libraries, stack
//!   and heap stay randomized), the default Go toolchain's trade-off too, whose CNI plugins
//!   are built the same way.
//! - Release builds linked by LLD (rustc's bundled one, the default for
//!   x86_64-unknown-linux-gnu since 1.90, or an `ld.lld` on PATH): the functions a CNI request runs
//!   (`layout/plugin-hot-symbols.txt`, recorded by `scripts/plugin-layout.sh`) are placed
//!   next to each other. Scattered over 31 MB of code, they cost one page fault per 64 KB
//!   window touched (56 on an ADD, each several microseconds in a VM); grouped, 7. A
//!   symbol the list names that no longer exists is skipped, so a stale list only costs
//!   speed (docs/plugin-start.md).

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-no-pie");
    if std::env::var("PROFILE").as_deref() != Ok("release") {
        return;
    }
    let order = Path::new(env!("CARGO_MANIFEST_DIR")).join("layout/plugin-hot-symbols.txt");
    println!("cargo:rerun-if-changed={}", order.display());
    println!("cargo:rerun-if-env-changed=PATH");
    if !on_path("ld.lld") && !rustc_links_with_lld() {
        println!(
            "cargo:warning=no LLD linker (rustc older than 1.90 and no ld.lld on PATH): the \
             CNI plugin's code is not grouped, and a pod's ADD pays more page faults"
        );
        return;
    }
    println!("cargo:rustc-link-arg-bins=-fuse-ld=lld");
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}

/// rustc 1.90 and later link x86_64-unknown-linux-gnu with their own LLD by default.
fn rustc_links_with_lld() -> bool {
    if std::env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu") {
        return false;
    }
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(out) = std::process::Command::new(rustc).arg("--version").output() else {
        return false;
    };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let text = String::from_utf8_lossy(&out.stdout);
    let minor = text
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.split('.').nth(1))
        .and_then(|m| m.parse::<u32>().ok());
    minor.is_some_and(|m| m >= 90)
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}
