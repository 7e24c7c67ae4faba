//! Links the unicni executables as position-dependent (non-PIE) programs.
//!
//! The container runtime executes the binary once per CNI request, so its start is on the
//! pod-start path. As a PIE, the dynamic loader first applies ~57,000 relative
//! relocations, copying every page they touch: about a third of the process's CPU time
//! before `main` (measured with perf on `CNI_COMMAND=VERSION`). A fixed load address
//! needs none. The cost is ASLR of the executable's own image (libraries, stack and heap
//! stay randomized), the default Go toolchain's trade-off too, whose CNI plugins are
//! built the same way.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
