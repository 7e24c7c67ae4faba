//! A directory of YAML manifests as a [`Snapshot`]: the policy source for the lab and for a
//! single node without an API server.
//!
//! Every `*.yaml`, `*.yml` and `*.json` file directly in the directory is read, in name
//! order, skipping hidden files (which also skips the `..data` entries of a mounted
//! ConfigMap). A file may hold several documents separated by `---`. Documents of kind
//! NetworkPolicy (`networking.k8s.io/v1`), Pod and Namespace (`v1`) are read; other kinds
//! are skipped, empty documents too. A NetworkPolicy with a field the API does not know is
//! refused rather than read without it (a misspelt `podSelector` would otherwise select every
//! pod). An object defined twice, or two running pods with one address, are errors. Errors
//! name the file, the document, the object and the field.

use std::collections::HashMap;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::model::{Namespace, Pod, Policy, Snapshot};

#[derive(Debug, Clone)]
pub struct ManifestDir {
    dir: PathBuf,
}

impl ManifestDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The manifest files, in the order they are read.
    pub fn files(&self) -> Result<Vec<PathBuf>> {
        unicni_fsutil::manifest_files(&self.dir).map_err(|source| Error::Io {
            path: self.dir.clone(),
            source,
        })
    }

    pub fn load(&self) -> Result<Snapshot> {
        let mut loader = Loader::default();
        for file in self.files()? {
            let text = fs::read_to_string(&file).map_err(|source| Error::Io {
                path: file.clone(),
                source,
            })?;
            loader.add(&file, &text)?;
        }
        Ok(loader.snapshot)
    }
}

/// Reads the manifests in `text` as if it were the only file, `file`, of a directory.
pub fn load_str(file: impl AsRef<Path>, text: &str) -> Result<Snapshot> {
    let mut loader = Loader::default();
    loader.add(file.as_ref(), text)?;
    Ok(loader.snapshot)
}

#[derive(Default)]
struct Loader {
    snapshot: Snapshot,
    /// Where each object was defined.
    defined: HashMap<String, PathBuf>,
    /// Which pod has each address.
    addresses: HashMap<IpAddr, String>,
}

impl Loader {
    fn add(&mut self, file: &Path, text: &str) -> Result<()> {
        // Once for the kinds, once more to read each document as its kind: serde_yaml names
        // the field and the line only when it reads the text itself.
        let mut headers = Vec::new();
        for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let header = serde_yaml::Value::deserialize(document)
                .map_err(|e| in_document(file, i, e.into()))?;
            headers.push(header);
        }
        for (i, (document, header)) in serde_yaml::Deserializer::from_str(text)
            .zip(headers)
            .enumerate()
        {
            self.document(file, document, &header)
                .map_err(|e| in_document(file, i, e))?;
        }
        Ok(())
    }

    fn document(
        &mut self,
        file: &Path,
        document: serde_yaml::Deserializer,
        header: &serde_yaml::Value,
    ) -> Result<()> {
        if header.is_null() {
            return Ok(());
        }
        let Some(kind) = header.get("kind").and_then(|k| k.as_str()) else {
            return Err(Error::invalid("object", "kind", "is missing"));
        };
        let object = object_name(kind, header);
        let expected = match kind {
            "NetworkPolicy" => "networking.k8s.io/v1",
            "Pod" | "Namespace" => "v1",
            _ => "",
        };
        match header.get("apiVersion").and_then(|v| v.as_str()) {
            Some(api) if !expected.is_empty() && api != expected => {
                return Err(Error::invalid(
                    object,
                    "apiVersion",
                    format!("{api:?} is not {expected}"),
                ))
            }
            _ => {}
        }
        match kind {
            "NetworkPolicy" => {
                let mut unknown = Vec::new();
                let policy: NetworkPolicy =
                    serde_ignored::deserialize(document, |path| unknown.push(field_path(&path)))?;
                if let Some(field) = unknown.into_iter().next() {
                    return Err(Error::invalid(object, field, "unknown field"));
                }
                let policy = Policy::from_k8s(&policy)?;
                self.define(object, file)?;
                self.snapshot.policies.push(policy);
            }
            "Pod" => {
                let pod = Pod::from_k8s(&core::Pod::deserialize(document)?)?;
                self.define(object.clone(), file)?;
                if !pod.host_network {
                    for (i, ip) in pod.ips.iter().enumerate() {
                        if let Some(owner) = self.addresses.insert(*ip, object.clone()) {
                            return Err(Error::invalid(
                                object,
                                format!("status.podIPs[{i}]"),
                                format!("{ip} is also the address of {owner}"),
                            ));
                        }
                    }
                }
                self.snapshot.pods.push(pod);
            }
            "Namespace" => {
                let namespace = Namespace::from_k8s(&core::Namespace::deserialize(document)?)?;
                self.define(object, file)?;
                self.snapshot
                    .namespaces
                    .insert(namespace.name.clone(), namespace);
            }
            "List" => {
                return Err(Error::invalid(
                    "List",
                    "kind",
                    "lists are not read: write one object per document",
                ))
            }
            _ => {}
        }
        Ok(())
    }

    fn define(&mut self, object: String, file: &Path) -> Result<()> {
        if let Some(first) = self.defined.get(&object) {
            return Err(Error::Duplicate {
                object,
                first: first.clone(),
            });
        }
        self.defined.insert(object, file.to_owned());
        Ok(())
    }
}

/// `Kind namespace/name`, or `Namespace name`, as far as the document says.
fn object_name(kind: &str, header: &serde_yaml::Value) -> String {
    let meta = |key: &str| {
        header
            .get("metadata")
            .and_then(|m| m.get(key))
            .and_then(|v| v.as_str())
    };
    let name = meta("name").unwrap_or_default();
    match kind {
        "Namespace" => format!("Namespace {name}"),
        _ => format!("{kind} {}/{name}", meta("namespace").unwrap_or("default")),
    }
}

fn in_document(file: &Path, index: usize, source: Error) -> Error {
    Error::Manifest {
        file: file.to_owned(),
        document: index + 1,
        source: Box::new(source),
    }
}

/// `spec.ingress[0].from` rather than serde_ignored's `spec.?.ingress.?.0.from`.
fn field_path(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        P::Map { parent, key } => match field_path(parent) {
            parent if parent.is_empty() => key.clone(),
            parent => format!("{parent}.{key}"),
        },
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            field_path(parent)
        }
    }
}
