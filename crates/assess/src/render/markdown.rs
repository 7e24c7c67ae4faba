use super::shown;
use crate::Report;
use std::fmt::Write;

/// Table cells cannot hold `|` or line breaks.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Migration assessment: {}\n", cell(&r.cluster));
    let _ = writeln!(
        out,
        "**{} ({}) → {} ({})** — {} nodes, {} pods. Target: {}.\n",
        r.from.backend,
        r.from.mode,
        r.to.backend,
        r.to.mode,
        r.summary.nodes,
        r.summary.pods,
        r.target_source
    );
    let _ = writeln!(
        out,
        "**Verdict: `{}`** {}\n",
        r.verdict.as_str(),
        super::counts(r)
    );
    out.push_str("## Checks\n\n| check | status | summary |\n|---|---|---|\n");
    for c in &r.checks {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} |",
            c.id,
            c.status.as_str(),
            cell(&c.summary)
        );
    }
    for i in &r.ignored {
        let _ = writeln!(out, "| `{i}` | ignored | left out with `--ignore` |");
    }
    out.push_str("\n## Findings\n\n");
    let mut any = false;
    for c in &r.checks {
        let (list, hidden) = shown(&c.findings);
        if list.is_empty() {
            continue;
        }
        any = true;
        let _ = writeln!(out, "### `{}` — {}\n", c.id, cell(&c.title));
        out.push_str("| severity | object | message | remedy |\n|---|---|---|---|\n");
        for f in list {
            let _ = writeln!(
                out,
                "| {} | `{}` | {} | {} |",
                f.severity.as_str(),
                cell(&f.object),
                cell(&f.message),
                cell(f.remedy.as_deref().unwrap_or(""))
            );
        }
        if hidden > 0 {
            let _ = writeln!(
                out,
                "\n_{hidden} more findings; `--output json` lists all._"
            );
        }
        out.push('\n');
    }
    if !any {
        out.push_str("None.\n\n");
    }
    let p = &r.migration_path;
    let _ = writeln!(
        out,
        "## Migration path: `{}`\n\n{}\n",
        p.strategy.as_str(),
        cell(&p.reason)
    );
    for s in &p.steps {
        let _ = writeln!(out, "{}. **{}** — {}", s.order, s.action, cell(&s.detail));
    }
    if !r.not_derived.is_empty() {
        out.push_str("\n## Not derived from the inventory\n\n");
        for n in &r.not_derived {
            let _ = writeln!(out, "- {n}");
        }
    }
    out
}
