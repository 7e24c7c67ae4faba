//! The CNI environment: which command, on which container, netns and interface.

use crate::{code, CniArgs, CniError};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Version,
    Gc,
}

/// Everything a plugin invocation carries besides stdin.
#[derive(Debug, Clone)]
pub struct Request {
    pub command: Command,
    pub container_id: String,
    /// Empty or unset on some DELs (CRI's second DEL, a vanished sandbox).
    pub netns: Option<PathBuf>,
    pub ifname: String,
    pub args: CniArgs,
    pub path: Vec<PathBuf>,
}

fn invalid(var: &str, why: &str) -> CniError {
    CniError::new(
        code::INVALID_ENV,
        format!("invalid environment variable {var}"),
        why.to_string(),
    )
}

impl Request {
    /// Reads the request from an environment lookup (`std::env::var` in the binary).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Request, CniError> {
        let command = match get("CNI_COMMAND").as_deref() {
            Some("ADD") => Command::Add,
            Some("DEL") => Command::Del,
            Some("CHECK") => Command::Check,
            Some("STATUS") => Command::Status,
            Some("VERSION") => Command::Version,
            Some("GC") => Command::Gc,
            Some(other) => {
                return Err(invalid(
                    "CNI_COMMAND",
                    &format!("{other:?} is not one of ADD, DEL, CHECK, STATUS, VERSION, GC"),
                ))
            }
            None => return Err(invalid("CNI_COMMAND", "it is not set")),
        };
        let nonempty = |k: &str| get(k).filter(|v| !v.is_empty());
        let needs_attachment = matches!(command, Command::Add | Command::Del | Command::Check);
        let container_id = match nonempty("CNI_CONTAINERID") {
            Some(id) => {
                if !crate::is_spec_identifier(&id) {
                    return Err(invalid(
                        "CNI_CONTAINERID",
                        &format!(
                            "{id:?} must start with a letter or digit, followed by letters, \
                             digits, '_', '.' or '-'"
                        ),
                    ));
                }
                id
            }
            None if needs_attachment => {
                return Err(invalid(
                    "CNI_CONTAINERID",
                    "it is required for ADD, DEL and CHECK",
                ))
            }
            None => String::new(),
        };
        let ifname = match nonempty("CNI_IFNAME") {
            Some(n) => {
                if n.len() > 15
                    || n.contains('/')
                    || n.contains(':')
                    || n.chars().any(char::is_whitespace)
                    || n == "."
                    || n == ".."
                {
                    return Err(invalid(
                        "CNI_IFNAME",
                        &format!("{n:?} is not a valid interface name (1-15 characters, no '/', ':' or spaces)"),
                    ));
                }
                n
            }
            None if needs_attachment => {
                return Err(invalid(
                    "CNI_IFNAME",
                    "it is required for ADD, DEL and CHECK",
                ))
            }
            None => String::new(),
        };
        let netns = nonempty("CNI_NETNS").map(PathBuf::from);
        if netns.is_none() && matches!(command, Command::Add | Command::Check) {
            return Err(invalid("CNI_NETNS", "it is required for ADD and CHECK"));
        }
        let args = CniArgs::parse(&get("CNI_ARGS").unwrap_or_default())?;
        let path = get("CNI_PATH")
            .unwrap_or_default()
            .split(':')
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect();
        Ok(Request {
            command,
            container_id,
            netns,
            ifname,
            args,
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn req(vars: &[(&str, &str)]) -> Result<Request, CniError> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Request::from_env(|k| m.get(k).cloned())
    }

    #[test]
    fn add_needs_all_four() {
        let full = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/var/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
        ];
        assert!(req(&full).is_ok());
        for missing in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
            let vars: Vec<_> = full
                .iter()
                .copied()
                .filter(|(k, _)| *k != missing)
                .collect();
            let e = req(&vars).unwrap_err();
            assert_eq!(e.code, 4);
            assert!(e.msg.contains(missing), "{e}");
        }
    }

    #[test]
    fn del_accepts_empty_netns() {
        let r = req(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", ""),
            ("CNI_IFNAME", "eth0"),
        ])
        .unwrap();
        assert!(r.netns.is_none());
    }

    #[test]
    fn version_needs_only_command() {
        assert_eq!(
            req(&[("CNI_COMMAND", "VERSION")]).unwrap().command,
            Command::Version
        );
    }

    #[test]
    fn unknown_command_names_the_variable() {
        let e = req(&[("CNI_COMMAND", "ATTACH")]).unwrap_err();
        assert_eq!(e.code, 4);
        assert!(e.msg.contains("CNI_COMMAND"));
    }

    #[test]
    fn container_id_follows_the_spec() {
        for bad in [".", "..", "-c1", "_c1", ".c1", "c/1", "c:1", "c 1"] {
            let e = req(&[
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", bad),
                ("CNI_IFNAME", "eth0"),
            ])
            .unwrap_err();
            assert_eq!(e.code, 4, "{bad:?}");
            assert!(e.msg.contains("CNI_CONTAINERID"), "{bad:?}: {e}");
        }
        for good in ["c1", "0ab", "a.b_c-d", "f00dcafe"] {
            req(&[
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", good),
                ("CNI_IFNAME", "eth0"),
            ])
            .unwrap();
        }
    }

    #[test]
    fn ifname_follows_the_spec() {
        for bad in [".", "..", "a/b", "a:b", "a b", "a\tb", "sixteen-chars-xx"] {
            let e = req(&[
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_IFNAME", bad),
            ])
            .unwrap_err();
            assert_eq!(e.code, 4, "{bad:?}");
            assert!(e.msg.contains("CNI_IFNAME"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn bad_ifname_is_refused() {
        let e = req(&[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/x"),
            ("CNI_IFNAME", "a-very-long-interface-name"),
        ])
        .unwrap_err();
        assert!(e.msg.contains("CNI_IFNAME"));
    }
}
