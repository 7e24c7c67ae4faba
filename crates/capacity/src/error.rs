use thiserror::Error;

#[derive(Debug, Error)]
pub enum CapacityError {
    #[error("cannot read instance-type file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The message of the YAML/JSON parser is kept whole: it names the field, line and column.
    #[error("instance-type file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("instance-type file {path}: {message}")]
    Invalid { path: String, message: String },
    #[error(
        "instance type {name:?} is not in the {source_desc}; pass `--instance-types FILE` with \
         its ENI limits (see docs/plan-assess.md for the format)"
    )]
    UnknownInstanceType { name: String, source_desc: String },
    #[error("config field `{key}` = {value:?}: {message}")]
    Config {
        key: String,
        value: String,
        message: String,
    },
    #[cfg(feature = "cloud")]
    #[error("{action} (asked for the plan): {source}")]
    Cloud {
        action: &'static str,
        #[source]
        source: Box<unicni_cloud::CloudError>,
    },
    #[cfg(feature = "cloud")]
    #[error("the cloud API's answer cannot be planned with: {message}")]
    CloudAnswer { message: String },
}
