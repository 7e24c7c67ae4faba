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
