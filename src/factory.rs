//! The one factory: the only place in the binary that names a backend. A validated config
//! (install, uninstall, lock, agent) or a conflist entry (the plugin) becomes a backend
//! here; everything else talks to the traits of `unicni_core`.

use serde_json::Value;
use std::sync::Arc;
use unicni_cni::{code, CniError};
use unicni_config::{BackendKind, Config};
use unicni_core::{Backend, BackendModule, Install, NodeAgent};

/// Every kind a config or a conflist may name, in the order messages list them.
const KINDS: [BackendKind; 2] = [BackendKind::Flannel, BackendKind::Terway];

/// The kinds as configs, conflists and the command line spell them.
pub fn kind_names() -> Vec<&'static str> {
    KINDS.iter().map(|k| k.as_str()).collect()
}

/// The kind spelled `name`, if there is one.
pub fn kind_named(name: &str) -> Option<BackendKind> {
    KINDS.iter().copied().find(|k| k.as_str() == name)
}

/// The module of one backend kind.
pub fn module(kind: BackendKind) -> &'static dyn BackendModule {
    match kind {
        BackendKind::Flannel => &unicni_flannel::FlannelModule,
        BackendKind::Terway => &unicni_terway::TerwayModule,
    }
}

/// The install half of the backend a validated config names.
pub fn installer(config: &Config) -> Box<dyn Install> {
    module(config.backend.kind).installer(config)
}

/// The node half of the backend a validated config names: the agent of node `node`.
pub async fn node_agent(config: &Config, node: &str) -> unicni_core::Result<Arc<dyn NodeAgent>> {
    module(config.backend.kind).node(config, node).await
}

/// The plugin half for one CNI invocation, from unicni's conflist entry of network
/// `network_name`: its `backend` field names the kind.
pub fn plugin(entry: &Value, network_name: &str) -> Result<Box<dyn Backend>, CniError> {
    let kind = entry_kind(entry)?;
    Ok(module(kind).plugin(entry, network_name)?)
}

fn entry_kind(entry: &Value) -> Result<BackendKind, CniError> {
    let allowed = || format!("allowed values: {}", kind_names().join(", "));
    match entry.get("backend") {
        // Conflists written before the field existed are flannel's (the first backend,
        // and still the config's default kind): a node upgraded in place keeps working.
        None => Ok(BackendKind::Flannel),
        Some(Value::String(s)) => kind_named(s).ok_or_else(|| {
            CniError::new(
                code::INVALID_CONFIG,
                format!("invalid network configuration: field \"backend\" = {s:?}"),
                allowed(),
            )
        }),
        Some(other) => Err(CniError::new(
            code::INVALID_CONFIG,
            format!("invalid network configuration: field \"backend\" = {other}: not a string"),
            allowed(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn backend_field_must_be_a_known_string() {
        assert_eq!(entry_kind(&json!({})).unwrap(), BackendKind::Flannel);
        assert_eq!(
            entry_kind(&json!({"backend": "terway"})).unwrap(),
            BackendKind::Terway
        );
        for bad in [
            json!(42),
            json!(true),
            json!(["flannel"]),
            json!({"kind": "flannel"}),
            json!(null),
            json!("calico"),
        ] {
            let e = entry_kind(&json!({ "backend": bad })).unwrap_err();
            let text = e.to_json("1.1.0");
            assert!(text.contains("\"code\":7"), "{bad}: {text}");
            assert!(text.contains("backend"), "{bad}: {text}");
            assert!(text.contains("flannel, terway"), "{bad}: {text}");
        }
    }
}
