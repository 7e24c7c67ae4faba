//! Reading the config: file (TOML or YAML) merged under `UNICNI_*` environment overrides.

use crate::{validate, Config, ConfigError};
use figment::providers::{Env, Format as _, Toml, Yaml};
use figment::Figment;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Yaml,
}

impl Format {
    /// `.yaml` / `.yml` are YAML, anything else TOML.
    pub fn from_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml") | Some("yml") => Format::Yaml,
            _ => Format::Toml,
        }
    }
}

/// Environment overrides: `UNICNI_SECTION__KEY=value`. Only variables with a `__` are
/// config keys, so that `UNICNI_CONFIG`-style variables of the binary never collide.
fn env() -> Env {
    Env::prefixed("UNICNI_")
        .filter(|k| k.as_str().contains("__"))
        .split("__")
}

/// Loads, applies env overrides, and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    load_named(&text, Format::from_path(path), &path.display().to_string())
}

/// Like [`load`], from text (tests, stdin).
pub fn load_str(text: &str, format: Format) -> Result<Config, ConfigError> {
    load_named(text, format, "<inline>")
}

fn load_named(text: &str, format: Format, name: &str) -> Result<Config, ConfigError> {
    let base = Figment::new();
    let fig = match format {
        Format::Toml => base.merge(Toml::string(text)),
        Format::Yaml => base.merge(Yaml::string(text)),
    }
    .merge(env());
    let config: Config = fig.extract().map_err(|e| ConfigError::Parse {
        path: name.to_string(),
        message: describe_figment_errors(e),
    })?;
    let errors = validate::validate(&config);
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(errors))
    }
}

fn describe_figment_errors(err: figment::Error) -> String {
    err.into_iter()
        .map(|e| {
            let key = if e.path.is_empty() {
                String::new()
            } else {
                format!("key `{}`: ", e.path.join("."))
            };
            format!("{key}{}", e.kind)
        })
        .collect::<Vec<_>>()
        .join("; ")
}
