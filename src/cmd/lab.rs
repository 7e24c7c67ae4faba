//! `unicni lab`: the harness lives in crates/lab (`unicni-lab`); this is the call.

pub use unicni_lab::Args;

pub fn run(args: Args) -> anyhow::Result<std::process::ExitCode> {
    unicni_lab::run(args)
}
