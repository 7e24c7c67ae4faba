use thiserror::Error;

#[derive(Debug, Error)]
pub enum AssessError {
    #[error("cannot read inventory {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The parser's message is kept whole: it names the field, the line and the column.
    #[error("inventory {path} is malformed: {message}")]
    Parse { path: String, message: String },
    #[error("inventory {path}: field `{field}` = {value}: {expected}")]
    Invalid {
        path: String,
        field: String,
        value: String,
        expected: String,
    },
    #[error("target config: {0}")]
    TargetConfig(String),
    #[error("unknown check {0:?}; the checks are: {1}")]
    UnknownCheck(String, String),
    /// Reading a live cluster failed; the message names the API object and the cause.
    #[error("live cluster: {0}")]
    Live(String),
    #[error("cannot render the report as {format}: {message}")]
    Render { format: String, message: String },
}
