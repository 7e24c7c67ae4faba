//! The report: every check's result, the verdict, the migration path, the exit code.

use crate::checks::{self, CheckId};
use crate::context::{Context, Options, Target};
use crate::path::{self, MigrationPath};
use crate::{AssessError, CheckResult, Inventory, Severity};
use serde::{Deserialize, Serialize};

/// Identifies the JSON/YAML shape; bumped only on incompatible changes.
pub const SCHEMA: &str = "unicni.io/assessment/v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Ready,
    ReadyWithWarnings,
    Blocked,
}

impl Verdict {
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Ready => "ready",
            Verdict::ReadyWithWarnings => "ready-with-warnings",
            Verdict::Blocked => "blocked",
        }
    }
}

/// From which verdict on the exit code is non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailOn {
    /// Warnings exit 2, blockers 3 (the default).
    #[default]
    Warning,
    /// Only blockers exit non-zero (3); warnings exit 0.
    Blocker,
    /// Always 0: report only.
    Never,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub backend: String,
    pub mode: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub nodes: u64,
    pub pods: u64,
    pub info: u64,
    pub warnings: u64,
    pub blockers: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub cluster: String,
    pub from: Network,
    pub to: Network,
    /// Where the target config came from.
    pub target_source: String,
    pub summary: Summary,
    pub checks: Vec<CheckResult>,
    /// Checks left out with `--ignore`.
    pub ignored: Vec<String>,
    pub verdict: Verdict,
    pub migration_path: MigrationPath,
    /// What the inventory's source could not tell (e.g. the cloud section of a kubectl
    /// List): the checks that need it judged without it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_derived: Vec<String>,
}

impl Report {
    /// 0 ready, 2 warnings, 3 blockers, as `fail_on` allows.
    pub fn exit_code(&self, fail_on: FailOn) -> u8 {
        match (self.verdict, fail_on) {
            (_, FailOn::Never) | (Verdict::Ready, _) => 0,
            (Verdict::ReadyWithWarnings, FailOn::Warning) => 2,
            (Verdict::ReadyWithWarnings, FailOn::Blocker) => 0,
            (Verdict::Blocked, _) => 3,
        }
    }
}

pub fn assess(inv: &Inventory, opts: &Options) -> Result<Report, AssessError> {
    let target = Target::resolve(inv, opts)?;
    let cx = Context::new(inv, &target, &opts.instance_types);
    let checks = checks::run_all(&cx, &opts.ignore);
    let count = |s: Severity| checks.iter().map(|c| c.count(s) as u64).sum::<u64>();
    let (info, warnings, blockers) = (
        count(Severity::Info),
        count(Severity::Warning),
        count(Severity::Blocker),
    );
    let verdict = if blockers > 0 {
        Verdict::Blocked
    } else if warnings > 0 {
        Verdict::ReadyWithWarnings
    } else {
        Verdict::Ready
    };
    let migration_path = path::plan(&cx, &checks);
    Ok(Report {
        schema: SCHEMA.into(),
        cluster: inv.cluster.name.clone(),
        from: Network {
            backend: cx.current_backend().into(),
            mode: cx.current_mode().into(),
        },
        to: Network {
            backend: target.backend().as_str().into(),
            mode: target.mode().into(),
        },
        target_source: target.source.clone(),
        summary: Summary {
            nodes: inv.nodes.len() as u64,
            pods: inv.pods.len() as u64,
            info,
            warnings,
            blockers,
        },
        ignored: CheckId::ALL
            .iter()
            .filter(|c| opts.ignore.contains(c))
            .map(|c| c.as_str().to_string())
            .collect(),
        checks,
        verdict,
        migration_path,
        not_derived: inv.not_derived.clone(),
    })
}
