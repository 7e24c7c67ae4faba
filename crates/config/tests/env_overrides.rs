//! Environment overrides, in a test binary of their own: the environment is process-wide
//! and must not leak into the other config tests running in parallel.

use unicni_config::{load_str, FlannelMode, Format};

// figment's Jail API fixes the closure's error type; its size is not ours to choose.
#[allow(clippy::result_large_err)]
#[test]
fn environment_overrides_any_key() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("UNICNI_FLANNEL__MODE", "host-gw");
        jail.set_env("UNICNI_FLANNEL__SUBNET_LEN", "26");
        jail.set_env("UNICNI_CLUSTER__NAME", "from-env");
        // Not a config key (no `__`): must not be read as one.
        jail.set_env("UNICNI_LOG", "debug");
        let c = load_str("[flannel]\nmode = \"vxlan\"\n", Format::Toml).unwrap();
        assert_eq!(c.flannel.mode, FlannelMode::HostGw);
        assert_eq!(c.flannel.subnet_len, 26);
        assert_eq!(c.cluster.name, "from-env");
        jail.set_env("UNICNI_FLANNEL__MODE", "ipip");
        let err = load_str("", Format::Toml).unwrap_err().to_string();
        assert!(
            err.contains("flannel.mode") && err.contains("ipip"),
            "{err}"
        );
        Ok(())
    });
}
