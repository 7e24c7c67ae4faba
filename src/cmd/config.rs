//! `unicni config check`: validate a config file and show what is in effect.

use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Validate FILE (with UNICNI_* env overrides applied) and print the effective config.
    /// Every error names the key, the value and what is allowed.
    Check {
        file: PathBuf,
        /// Output format of the effective config.
        #[arg(long, default_value = "toml", value_parser = ["toml", "json"])]
        output: String,
    },
}

pub fn run(c: Command) -> Result<ExitCode> {
    match c {
        Command::Check { file, output } => {
            let config = super::common::load_config(&file)?.redacted();
            let text = if output == "json" {
                serde_json::to_string_pretty(&config)?
            } else {
                toml::to_string(&config)?
            };
            eprintln!("{}: valid", file.display());
            println!("{text}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
