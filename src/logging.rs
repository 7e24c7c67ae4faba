//! Logs go to stderr through tracing; stdout belongs to results (CNI JSON, reports).

use tracing_subscriber::EnvFilter;

/// Installs the stderr subscriber. `UNICNI_LOG` (a tracing filter) wins over `default`.
pub fn init(default: &str) {
    let filter = EnvFilter::try_from_env("UNICNI_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// The CNI plugin's subscriber: warnings and errors, or `UNICNI_LOG` when set. Without
/// the variable it skips the directive parser, which a plugin started once per pod
/// would otherwise run every time.
pub fn init_plugin() {
    if std::env::var_os("UNICNI_LOG").is_some() {
        return init("warn");
    }
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
