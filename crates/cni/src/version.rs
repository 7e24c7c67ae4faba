//! Which spec versions unicni speaks.

use crate::{code, CniError};

pub const LATEST: &str = "1.1.0";
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// Versions whose results carry `ips[].version` (dropped in 1.0.0).
pub fn has_ip_version_field(v: &str) -> bool {
    v.starts_with("0.")
}

/// Whether `v` (a supported version) is at least `min`.
pub fn at_least(v: &str, min: &str) -> bool {
    parse(v) >= parse(min)
}

fn parse(v: &str) -> (u32, u32, u32) {
    let mut it = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
    )
}

pub fn check_supported(v: &str) -> Result<(), CniError> {
    if SUPPORTED_VERSIONS.contains(&v) {
        Ok(())
    } else {
        Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!("incompatible CNI version {v:?}"),
            format!("this plugin supports {}", SUPPORTED_VERSIONS.join(", ")),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering() {
        assert!(at_least("1.1.0", "1.0.0"));
        assert!(at_least("0.4.0", "0.4.0"));
        assert!(!at_least("0.3.1", "0.4.0"));
    }

    #[test]
    fn unknown_version_is_code_1() {
        assert_eq!(check_supported("2.0.0").unwrap_err().code, 1);
        assert!(check_supported("0.4.0").is_ok());
    }
}
