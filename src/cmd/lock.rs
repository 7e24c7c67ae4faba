use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
    Show,
}

pub fn run(_c: Command) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
