//! `unicni lock show`: the cluster's immutable settings as recorded at bootstrap.

use anyhow::{bail, Result};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Print the lock record from the store the config names.
    Show {
        #[arg(long, default_value = "/etc/unicni/unicni.toml")]
        config: PathBuf,
    },
}

pub fn run(c: Command) -> Result<ExitCode> {
    match c {
        Command::Show { config } => {
            let config = super::common::load_config(&config)?;
            let rt = super::common::runtime()?;
            let store = rt.block_on(unicni_store::open(&config.store))?;
            match rt.block_on(store.get(super::common::LOCK_KEY))? {
                Some(bytes) => {
                    let v: serde_json::Value = serde_json::from_slice(&bytes)?;
                    println!("{}", serde_json::to_string_pretty(&v)?);
                    Ok(ExitCode::SUCCESS)
                }
                None => bail!(
                    "no lock record in {}: this cluster has not been installed yet (run `unicni install`)",
                    store.describe()
                ),
            }
        }
    }
}
