//! `unicni lab bench`: placeholder until the measurement lands.

use super::topology::Lab;
use anyhow::Result;
use std::process::ExitCode;

pub fn run(_lab: &Lab, _seconds: u32, _output: &str) -> Result<ExitCode> {
    anyhow::bail!("unicni lab bench is not implemented yet")
}
