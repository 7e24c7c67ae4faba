//! Compiles the C eBPF programs under `<workspace>/bpf/` with clang into OUT_DIR, where
//! `src/objects.rs` embeds them. Rust eBPF would need nightly; C needs only clang.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (source `bpf/<src>.c`, object `OUT_DIR/<obj>.o`, extra clang flags). `fastpath_v3` is
/// the same program built for another instruction set: different code, same behaviour,
/// which is what the tests of an upgrade in place need.
const PROGRAMS: &[(&str, &str, &[&str])] = &[
    ("fastpath", "fastpath", &[]),
    ("reject", "reject", &[]),
    ("fastpath", "fastpath_v3", &["-mcpu=v3"]),
    ("terway", "terway", &[]),
    ("terway", "terway_v3", &["-mcpu=v3"]),
    ("policy", "policy", &[]),
    ("policy", "policy_v3", &["-mcpu=v3"]),
    ("services", "services", &[]),
    ("services", "services_v3", &["-mcpu=v3"]),
];

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let src_dir = manifest.join("../../bpf");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_string());
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-changed={}", src_dir.display());

    check_clang(&clang);
    // With -target bpf clang does not add the multiarch include directory, where Debian
    // keeps <asm/types.h> (pulled in by <linux/types.h>).
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let multiarch = Path::new("/usr/include").join(format!("{arch}-linux-gnu"));

    for (name, obj_name, extra) in PROGRAMS {
        let src = src_dir.join(format!("{name}.c"));
        println!("cargo:rerun-if-changed={}", src.display());
        let obj = out_dir.join(format!("{obj_name}.o"));
        let mut cmd = Command::new(&clang);
        cmd.args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
            .args(*extra)
            .arg("-I")
            .arg(&src_dir);
        if multiarch.is_dir() {
            cmd.arg("-idirafter").arg(&multiarch);
        }
        cmd.arg("-c").arg(&src).arg("-o").arg(&obj);
        let out = cmd.output().unwrap_or_else(|e| {
            fail(&format!(
                "could not run {clang} to compile {}: {e}",
                src.display()
            ))
        });
        if !out.status.success() {
            fail(&format!(
                "clang failed to compile {} (exit {}):\n{}\nThe eBPF build needs clang and \
                 the libbpf headers (Debian: apt-get install clang libbpf-dev).",
                src.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    println!(
        "cargo:rerun-if-changed={}",
        src_dir.join("fastpath.h").display()
    );
}

fn check_clang(clang: &str) {
    match Command::new(clang).arg("--version").output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => fail(&format!(
            "`{clang} --version` failed ({}); unicni-bpf compiles its eBPF programs with clang",
            o.status
        )),
        Err(e) => fail(&format!(
            "clang was not found ({clang}: {e}). unicni-bpf compiles its eBPF programs (bpf/*.c) \
             with clang at build time: install it (Debian: apt-get install clang libbpf-dev) \
             or point the CLANG environment variable at a clang binary"
        )),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    println!("cargo:warning={}", msg.lines().next().unwrap_or(msg));
    std::process::exit(1);
}
