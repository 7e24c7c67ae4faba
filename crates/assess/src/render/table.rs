use super::shown;
use crate::Report;
use std::fmt::Write;
use unicni_capacity::render::columns;

pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Migration assessment of cluster {:?}: {} ({}) -> {} ({})",
        r.cluster, r.from.backend, r.from.mode, r.to.backend, r.to.mode
    );
    let _ = writeln!(
        out,
        "{} nodes, {} pods; target: {}",
        r.summary.nodes, r.summary.pods, r.target_source
    );
    out.push('\n');

    let mut rows = vec![vec!["CHECK".into(), "STATUS".into(), "SUMMARY".into()]];
    for c in &r.checks {
        rows.push(vec![
            c.id.clone(),
            c.status.as_str().into(),
            c.summary.clone(),
        ]);
    }
    for i in &r.ignored {
        rows.push(vec![
            i.clone(),
            "ignored".into(),
            "left out with --ignore".into(),
        ]);
    }
    out.push_str(&columns(&rows, ""));

    let mut rows = vec![vec![
        "SEVERITY".into(),
        "CHECK".into(),
        "OBJECT".into(),
        "MESSAGE".into(),
    ]];
    let mut notes = Vec::new();
    for c in &r.checks {
        let (list, hidden) = shown(&c.findings);
        for f in list {
            rows.push(vec![
                f.severity.as_str().into(),
                c.id.clone(),
                f.object.clone(),
                f.message.clone(),
            ]);
            if let Some(remedy) = &f.remedy {
                rows.push(vec![
                    String::new(),
                    String::new(),
                    String::new(),
                    format!("-> {remedy}"),
                ]);
            }
        }
        if hidden > 0 {
            notes.push(format!(
                "{hidden} more findings of {} (use --output json for all)",
                c.id
            ));
        }
    }
    if rows.len() > 1 {
        out.push('\n');
        out.push_str(&columns(&rows, ""));
        for n in notes {
            let _ = writeln!(out, "... {n}");
        }
    }

    out.push('\n');
    let _ = writeln!(out, "VERDICT: {} {}", r.verdict.as_str(), super::counts(r));
    let p = &r.migration_path;
    let _ = writeln!(out, "MIGRATION PATH: {}", p.strategy.as_str());
    let _ = writeln!(out, "  {}", p.reason);
    let rows: Vec<Vec<String>> = p
        .steps
        .iter()
        .map(|s| {
            vec![
                format!("  {}.", s.order),
                s.action.clone(),
                s.detail.clone(),
            ]
        })
        .collect();
    out.push_str(&columns(&rows, ""));
    if !r.not_derived.is_empty() {
        out.push('\n');
        let _ = writeln!(out, "NOT DERIVED FROM THE INVENTORY:");
        for n in &r.not_derived {
            let _ = writeln!(out, "  - {n}");
        }
    }
    out
}
