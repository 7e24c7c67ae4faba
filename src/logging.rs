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

/// The CNI plugin's subscriber: warnings and errors, or `UNICNI_LOG` when set (then the
/// full one). A plugin process lives for one request and rarely logs; the fmt subscriber's
/// span registry (a slab sized for 4,096 threads, callsite registration) was a twentieth
/// of an ADD's page faults, so without the variable events go through [`Warnings`].
pub fn init_plugin() {
    if std::env::var_os("UNICNI_LOG").is_some() {
        return init("warn");
    }
    let _ = tracing::subscriber::set_global_default(Warnings(|line: &str| eprintln!("{line}")));
}

/// Writes each warning or error as one line on stderr: `LEVEL message key=value...`.
/// Spans are not tracked (the plugin's events carry their context as fields).
struct Warnings<W>(W);

impl<W: Fn(&str) + Send + Sync + 'static> tracing::Subscriber for Warnings<W> {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= tracing::Level::WARN
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::WARN)
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut line = event.metadata().level().to_string();
        event.record(&mut Fields(&mut line));
        (self.0)(&line);
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        let _ = if field.name() == "message" {
            write!(self.0, " {value:?}")
        } else {
            write!(self.0, " {}={value:?}", field.name())
        };
    }
}

#[cfg(test)]
mod tests {
    use super::Warnings;
    use std::sync::{Arc, Mutex};

    #[test]
    fn plugin_lines_carry_level_message_and_fields_and_skip_info() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let subscriber = Warnings(move |l: &str| sink.lock().unwrap().push(l.to_string()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("not shown");
            tracing::warn!(veth = "uc1", error = %"gone", "pod runs without the fast path");
            tracing::error!("[code 4] bad netns");
        });
        assert_eq!(
            *lines.lock().unwrap(),
            vec![
                "WARN pod runs without the fast path veth=\"uc1\" error=gone".to_string(),
                "ERROR [code 4] bad netns".to_string(),
            ]
        );
    }
}
