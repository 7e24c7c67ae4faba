//! What a check reports.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Blocker,
}

impl Severity {
    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Blocker => "blocker",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub severity: Severity,
    /// The object concerned: `node/NAME`, `pod/NS/NAME`, `vswitch/ID`, `cluster`, ...
    pub object: String,
    pub message: String,
    /// What to do about it; `null` for plain information.
    pub remedy: Option<String>,
}

impl Finding {
    pub fn info(object: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Info,
            object: object.into(),
            message: message.into(),
            remedy: None,
        }
    }

    pub fn warning(
        object: impl Into<String>,
        message: impl Into<String>,
        remedy: impl Into<String>,
    ) -> Self {
        Self {
            severity: Severity::Warning,
            object: object.into(),
            message: message.into(),
            remedy: Some(remedy.into()),
        }
    }

    pub fn blocker(
        object: impl Into<String>,
        message: impl Into<String>,
        remedy: impl Into<String>,
    ) -> Self {
        Self {
            severity: Severity::Blocker,
            object: object.into(),
            message: message.into(),
            remedy: Some(remedy.into()),
        }
    }
}

/// The outcome of one check: the worst severity found, `pass` when nothing was found,
/// `skipped` when the check does not apply to this migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Info,
    Warning,
    Blocker,
    Skipped,
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Info => "info",
            Status::Warning => "warning",
            Status::Blocker => "blocker",
            Status::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub id: String,
    pub title: String,
    pub status: Status,
    /// One line a person reads first.
    pub summary: String,
    pub findings: Vec<Finding>,
}

impl CheckResult {
    pub fn new(id: &str, title: &str, summary: impl Into<String>, findings: Vec<Finding>) -> Self {
        let status = match findings.iter().map(|f| f.severity).max() {
            None => Status::Pass,
            Some(Severity::Info) => Status::Info,
            Some(Severity::Warning) => Status::Warning,
            Some(Severity::Blocker) => Status::Blocker,
        };
        Self {
            id: id.into(),
            title: title.into(),
            status,
            summary: summary.into(),
            findings,
        }
    }

    pub fn skipped(id: &str, title: &str, why: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            title: title.into(),
            status: Status::Skipped,
            summary: why.into(),
            findings: Vec::new(),
        }
    }

    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }
}
