//! CNI plugin mode: one request from the runtime, answered on stdout.
//!
//! Results and errors are JSON on stdout (libcni reads errors there); logs go to stderr.
//! The exit status is 0 on success and 1 on error.

use serde_json::Value;
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;
use unicni_cni::{code, result, version, CniError, Command, NetConf, Request, LATEST};
use unicni_core::{Attachment, AttachmentId, NodeStatus, PodRef};

pub const PLUGIN_TYPE: &str = "unicni";
/// unicni's conflist field when `services.enabled`: `{"pin_dir": <bpf.pin_dir>}`.
pub const SERVICES_FIELD: &str = "services";

pub fn run() -> ExitCode {
    crate::logging::init_plugin();
    let mut stdin = Vec::new();
    // DEL and VERSION may come with an empty stdin; a read error is a decode failure later.
    let _ = std::io::stdin().read_to_end(&mut stdin);
    let reply_version = peek_version(&stdin);
    match handle(&stdin) {
        Ok(Some(out)) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            println!("{}", e.to_json(&reply_version));
            ExitCode::FAILURE
        }
    }
}

/// The version to answer errors in: the config's own when it is one we speak.
fn peek_version(stdin: &[u8]) -> String {
    serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().map(str::to_string))
        .filter(|v| version::SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| LATEST.to_string())
}

fn handle(stdin: &[u8]) -> Result<Option<String>, CniError> {
    let req = Request::from_env(|k| std::env::var(k).ok())?;
    if req.command == Command::Version {
        return Ok(Some(version_reply(stdin)));
    }
    require_netns(&req)?;
    let conf = NetConf::parse(stdin, PLUGIN_TYPE)?;
    require_version(&conf, &req)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            CniError::new(
                code::IO_FAILURE,
                "cannot start the plugin runtime",
                e.to_string(),
            )
        })?;
    runtime.block_on(dispatch(req, conf))
}

fn version_reply(stdin: &[u8]) -> String {
    serde_json::json!({
        "cniVersion": peek_version(stdin),
        "supportedVersions": version::SUPPORTED_VERSIONS,
    })
    .to_string()
}

fn require_version(conf: &NetConf, req: &Request) -> Result<(), CniError> {
    let need = match req.command {
        Command::Check => "0.4.0",
        Command::Status | Command::Gc => "1.1.0",
        _ => return Ok(()),
    };
    if version::at_least(&conf.cni_version, need) {
        Ok(())
    } else {
        Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "{:?} needs cniVersion {need} or later, the config says {}",
                req.command, conf.cni_version
            ),
            "raise cniVersion in the network configuration",
        ))
    }
}

fn attachment(req: &Request) -> Attachment {
    Attachment {
        id: AttachmentId::new(&req.container_id, &req.ifname),
        netns: req.netns.clone(),
        pod: PodRef {
            namespace: req.args.get("K8S_POD_NAMESPACE").map(str::to_string),
            name: req.args.get("K8S_POD_NAME").map(str::to_string),
            uid: req.args.get("K8S_POD_UID").map(str::to_string),
        },
    }
}

/// ADD and CHECK need a network namespace that exists; name the variable when it does not.
/// Checked with the rest of the environment, before the backend reserves anything.
fn require_netns(req: &Request) -> Result<(), CniError> {
    if !matches!(req.command, Command::Add | Command::Check) {
        return Ok(());
    }
    let path = req.netns.as_deref().unwrap_or(Path::new(""));
    unicni_net::NetNs::open(path).map(|_| ()).map_err(|e| {
        CniError::new(
            code::INVALID_ENV,
            "invalid environment variable CNI_NETNS",
            e.to_string(),
        )
    })
}

async fn dispatch(req: Request, conf: NetConf) -> Result<Option<String>, CniError> {
    let backend = crate::factory::plugin(&conf.raw, &conf.name)?;
    let services = services::Registration::from_conf(&conf.raw)?;
    match req.command {
        Command::Add => {
            // Registered first: a pod whose namespace the load balancer cannot serve is
            // refused before the backend builds anything, and undone if the backend fails.
            let netns = req.netns.as_deref().unwrap_or(Path::new(""));
            if let Some(s) = &services {
                s.register(netns)?;
            }
            match backend.add(&attachment(&req)).await {
                Ok(res) => Ok(Some(result::render(&res, &conf.cni_version).to_string())),
                Err(e) => {
                    if let Some(s) = &services {
                        s.unregister(Some(netns));
                    }
                    Err(e.into())
                }
            }
        }
        Command::Del => {
            if let Some(s) = &services {
                s.unregister(req.netns.as_deref().filter(|p| !p.as_os_str().is_empty()));
            }
            backend.del(&attachment(&req)).await?;
            Ok(None)
        }
        Command::Check => {
            let expected = conf
                .prev_result
                .as_ref()
                .map(result::prev_result_addresses)
                .unwrap_or_default();
            backend.check(&attachment(&req), &expected).await?;
            Ok(None)
        }
        Command::Status => match backend.status().await? {
            NodeStatus::Ready => Ok(None),
            NodeStatus::NotReady(why) => Err(CniError::new(
                code::NOT_AVAILABLE,
                "plugin not available",
                why,
            )),
        },
        Command::Gc => {
            let valid = conf.valid_attachments.clone().ok_or_else(|| {
                CniError::new(
                    code::INVALID_CONFIG,
                    "invalid network configuration: field \"cni.dev/valid-attachments\"",
                    "GC needs the list of attachments to keep",
                )
            })?;
            let released = backend.gc(&valid).await?;
            tracing::info!(released, kept = valid.len(), "garbage collection done");
            Ok(None)
        }
        Command::Version => unreachable!("answered before parsing the config"),
    }
}

/// The pod's side of the eBPF Service load balancer: the pod's network namespace is
/// registered in the maps the agent pinned, so the load balancer acts on its sockets.
mod services {
    use serde_json::Value;
    use std::path::{Path, PathBuf};
    use unicni_cni::{code, CniError};

    pub struct Registration {
        pin_dir: PathBuf,
    }

    impl Registration {
        /// From unicni's conflist entry: `None` unless the config enables Services.
        pub fn from_conf(entry: &Value) -> Result<Option<Registration>, CniError> {
            let Some(field) = entry.get(super::SERVICES_FIELD) else {
                return Ok(None);
            };
            let pin_dir = field
                .get("pin_dir")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    CniError::new(
                        code::INVALID_CONFIG,
                        "invalid network configuration: field \"services.pin_dir\"",
                        "expected the agent's bpf.pin_dir as a string; run `unicni install` again",
                    )
                })?;
            Ok(Some(Registration {
                pin_dir: PathBuf::from(pin_dir),
            }))
        }

        pub fn register(&self, netns: &Path) -> Result<(), CniError> {
            imp::register(&self.pin_dir, netns).map_err(|e| {
                CniError::new(
                    code::TRY_AGAIN,
                    format!(
                        "register the pod's network namespace {} with the eBPF Service load balancer",
                        netns.display()
                    ),
                    format!(
                        "{e}; is the unicni agent running with services.enabled (maps under {}/services)?",
                        self.pin_dir.display()
                    ),
                )
            })
        }

        /// Best effort: a DEL must succeed when the load balancer (or the namespace) is gone.
        pub fn unregister(&self, netns: Option<&Path>) {
            if let Err(e) = imp::unregister(&self.pin_dir, netns) {
                tracing::warn!("unregister the pod from the eBPF Service load balancer: {e}");
            }
        }
    }

    mod imp {
        use std::path::Path;
        use unicni_services::{Error, Lb};

        /// The maps the agent pinned; `None` when it never loaded the load balancer (eBPF
        /// unavailable and `bpf.fallback`: Services are kube-proxy's, nothing to register).
        fn open(pin_dir: &Path) -> Result<Option<Lb>, Error> {
            match Lb::open(pin_dir) {
                Ok(lb) => Ok(Some(lb)),
                Err(e) if e.is_not_loaded() => Ok(None),
                Err(e) => Err(e),
            }
        }

        pub fn register(pin_dir: &Path, netns: &Path) -> Result<(), Error> {
            match open(pin_dir)? {
                Some(mut lb) => lb.register_pod(netns).map(|_| ()),
                None => {
                    tracing::info!(
                        "no eBPF Service load balancer under {}: the pod is not registered",
                        pin_dir.display()
                    );
                    Ok(())
                }
            }
        }

        /// Without the namespace (CRI's second DEL) there is nothing to look up: its
        /// cookie, the key, is never reused, so a stale entry matches nothing.
        pub fn unregister(pin_dir: &Path, netns: Option<&Path>) -> Result<(), Error> {
            let (Some(netns), Some(mut lb)) = (netns, open(pin_dir)?) else {
                return Ok(());
            };
            lb.unregister_pod(netns).map(|_| ())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::services::Registration;
    use serde_json::json;

    #[test]
    fn the_services_field_is_optional_and_checked() {
        assert!(Registration::from_conf(&json!({"type": "unicni"}))
            .unwrap()
            .is_none());
        assert!(
            Registration::from_conf(&json!({"services": {"pin_dir": "/sys/fs/bpf/x"}}))
                .unwrap()
                .is_some()
        );
        let e = Registration::from_conf(&json!({"services": {"pin_dir": 7}}))
            .err()
            .unwrap()
            .to_json("1.1.0");
        assert!(
            e.contains("\"code\":7") && e.contains("services.pin_dir"),
            "{e}"
        );
    }

    /// Nothing pinned (eBPF unavailable and `bpf.fallback`): an ADD registers nothing and
    /// goes on; a DEL too.
    #[test]
    fn no_load_balancer_pinned_means_nothing_to_register() {
        let dir = tempfile::tempdir().unwrap();
        let r = Registration::from_conf(&json!({"services": {"pin_dir": dir.path()}}))
            .unwrap()
            .unwrap();
        r.register(std::path::Path::new("/proc/self/ns/net"))
            .unwrap();
        r.unregister(Some(std::path::Path::new("/proc/self/ns/net")));
        r.unregister(None);
    }
}
