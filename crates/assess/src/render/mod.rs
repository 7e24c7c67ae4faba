//! Turning a report into text: an aligned table for people, Markdown for tickets, JSON and
//! YAML for machines (the full report, stable shape: docs/plan-assess.md).

mod markdown;
mod table;

use crate::{AssessError, Finding, Report};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Yaml,
    Markdown,
}

/// Findings shown per check in the table and Markdown; JSON and YAML carry all of them.
pub const FINDINGS_PER_CHECK: usize = 20;

pub fn render(report: &Report, format: Format) -> Result<String, AssessError> {
    let err = |format: &str, e: String| AssessError::Render {
        format: format.into(),
        message: e,
    };
    match format {
        Format::Table => Ok(table::render(report)),
        Format::Markdown => Ok(markdown::render(report)),
        Format::Json => serde_json::to_string_pretty(report)
            .map(|s| s + "\n")
            .map_err(|e| err("json", e.to_string())),
        Format::Yaml => serde_yaml::to_string(report).map_err(|e| err("yaml", e.to_string())),
    }
}

/// The findings of a check worth showing first: the worst first, then in check order.
pub(crate) fn shown(findings: &[Finding]) -> (Vec<&Finding>, usize) {
    let mut v: Vec<&Finding> = findings.iter().collect();
    v.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let hidden = v.len().saturating_sub(FINDINGS_PER_CHECK);
    v.truncate(FINDINGS_PER_CHECK);
    (v, hidden)
}

/// `(N blockers, N warnings, N info)`, after the verdict in every human format.
pub(crate) fn counts(r: &Report) -> String {
    format!(
        "({} blockers, {} warnings, {} info)",
        r.summary.blockers, r.summary.warnings, r.summary.info
    )
}
