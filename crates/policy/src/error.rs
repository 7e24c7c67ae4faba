//! Errors of the policy crate.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An object that does not make a valid policy, pod or namespace; `field` is the path of
    /// the offending field in the object (`spec.ingress[0].ports[1].endPort`).
    #[error("{object}: {field}: {reason}")]
    Invalid {
        object: String,
        field: String,
        reason: String,
    },

    /// YAML that does not parse or does not have the shape of its kind; serde_yaml's message
    /// names the field and the line.
    #[error(transparent)]
    Yaml(#[from] serde_yaml::Error),

    /// The same object defined twice.
    #[error("{object} is already defined in {}", first.display())]
    Duplicate { object: String, first: PathBuf },

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    /// Any of the above, in a document of a manifest file (documents count from 1).
    #[error("{file}: document {document}: {source}", file = file.display())]
    Manifest {
        file: PathBuf,
        document: usize,
        source: Box<Error>,
    },
}

impl Error {
    pub(crate) fn invalid(
        object: impl Into<String>,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Invalid {
            object: object.into(),
            field: field.into(),
            reason: reason.into(),
        }
    }
}
