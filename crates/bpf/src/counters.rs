//! The programs' counters: a per-CPU array of `u64` per program family, one slot per
//! counter, summed over CPUs when read.

use crate::{BpfError, Result};
use aya::maps::{MapData, PerCpuArray};

/// Counter `slot` of `stats`, summed over every CPU; `family` names the counters in an
/// error ("fast path", "policy", "Service load balancer").
pub(crate) fn read(stats: &PerCpuArray<MapData, u64>, slot: u32, family: &str) -> Result<u64> {
    let per_cpu = stats
        .get(&slot, 0)
        .map_err(|e| BpfError::from_err(format!("read {family} counters"), &e))?;
    Ok(per_cpu.iter().sum())
}
