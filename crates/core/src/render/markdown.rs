//! Markdown for pull-request comments: a summary table and per-device details collapsed. Past GitHub's
//! 65,536-character comment limit, it truncates and points to the JSON plan artifact.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};

use super::inline;
use crate::plan::rollout::SHOWN_PER_WAVE;
use crate::plan::{Action, Change, Plan, Rollout, Wave};

/// GitHub's limit for one comment.
pub const COMMENT_LIMIT: usize = 65_536;
/// Room kept for the truncation note and the closing lines.
const RESERVE: usize = 1_024;

fn escape(s: &str) -> String {
    s.replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The first addresses of a wave as code, `… and N more` for the rest.
fn first_addresses(w: &Wave) -> String {
    let mut cells: Vec<String> = w
        .twins
        .iter()
        .take(SHOWN_PER_WAVE)
        .map(|a| format!("`{}`", escape(&a.to_string())))
        .collect();
    if w.twins.len() > SHOWN_PER_WAVE {
        cells.push(format!("… and {} more", w.twins.len() - SHOWN_PER_WAVE));
    }
    cells.join(", ")
}

/// Renders a plan as markdown no longer than [`COMMENT_LIMIT`] characters, identical changes
/// grouped.
pub fn plan(out: &mut impl Write, plan: &Plan) -> io::Result<()> {
    plan_with(out, plan, false)
}

/// Renders a plan as markdown; `expand` shows every change on its own.
pub fn plan_with(out: &mut impl Write, plan: &Plan, expand: bool) -> io::Result<()> {
    let head = head(plan);
    let body = body(head.len(), &blocks_by_device(plan, expand));
    out.write_all(head.as_bytes())?;
    out.write_all(body.as_bytes())
}

/// The title, the summary table and line, the no-longer-declared hint and the rollout's waves.
fn head(plan: &Plan) -> String {
    let s = &plan.summary;
    let mut head = String::new();
    let _ = writeln!(
        head,
        "### twinops plan for `{}` (owner `{}`)\n",
        escape(&plan.hub),
        escape(&plan.owner)
    );
    let _ = writeln!(head, "| create | update | delete | unchanged | conflicts |");
    let _ = writeln!(head, "|---:|---:|---:|---:|---:|");
    let _ = writeln!(
        head,
        "| {} | {} | {} | {} | {} |\n",
        s.create, s.update, s.delete, s.unchanged, s.conflicts
    );
    let _ = writeln!(head, "{}\n", super::text::summary_line(plan));
    if let Some(hint) = super::text::no_longer_declared_hint(plan) {
        let _ = writeln!(head, "{}\n", escape(&hint));
    }
    if let Some(r) = &plan.rollout {
        rollout(&mut head, r);
    }
    head
}

/// The rollout's settings and one table row per wave.
fn rollout(head: &mut String, r: &Rollout) {
    let _ = writeln!(
        head,
        "**Rollout** `{}` in {} wave(s) of {} twin(s): {}.\n",
        super::text::short_id(r),
        r.waves.len(),
        r.twin_count(),
        escape(&super::text::settings(r))
    );
    if let Some(line) = super::text::continuation(r) {
        let _ = writeln!(head, "{}\n", escape(&line));
    }
    let _ = writeln!(head, "| wave | up to | twins | first twins |");
    let _ = writeln!(head, "|---:|---|---:|---|");
    for w in &r.waves {
        let _ = writeln!(
            head,
            "| {} | {} | {} | {} |",
            w.index,
            w.step,
            w.twins.len(),
            first_addresses(w)
        );
    }
    head.push('\n');
}

/// Each device's blocks: its changes with their diffs (identical changes of many twins as one
/// block, keyed by its words, unless `expand`), then its conflicts.
fn blocks_by_device(plan: &Plan, expand: bool) -> BTreeMap<String, Vec<String>> {
    let mut by_device: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let groups: Vec<Vec<&Change>> = if expand {
        plan.changes.iter().map(|c| vec![c]).collect()
    } else {
        super::text::groups(&plan.changes)
    };
    for g in groups {
        let (key, block) = change_block(&g);
        by_device.entry(key).or_default().push(block);
    }
    for k in &plan.conflicts {
        let keys = super::keys_suffix(&k.reason, &k.keys);
        by_device
            .entry(k.address.device.to_string())
            .or_default()
            .push(format!("! conflict {}: {}{keys}\n", k.address, k.reason));
    }
    for w in &plan.warnings {
        by_device
            .entry(w.address.device.to_string())
            .or_default()
            .push(format!("warning {}: {w}\n", w.address));
    }
    by_device
}

/// One change, or a group of identical ones, as a diff block, and the key it is listed under.
fn change_block(g: &[&Change]) -> (String, String) {
    let c = g[0];
    let sign = match c.action() {
        Action::Create => "+",
        Action::Update => "~",
        Action::Release => "=",
        Action::Delete => "-",
    };
    let adopt = super::text::adopt_mark(c);
    let (key, mut block) = if g.len() == 1 {
        (
            c.device_id().to_string(),
            format!(
                "{sign} {} {}{adopt}\n",
                super::text::kind_words(c.kind()),
                c.address()
            ),
        )
    } else {
        // Identical changes of many twins: one block, its count and first addresses.
        let words = super::text::group_words(g);
        let block = format!(
            "{sign} {words}{adopt}\n    ({})\n",
            super::text::group_addresses(g)
        );
        (words, block)
    };
    for line in super::text::ownership_lines(c) {
        // `!` leads a line in the diff so that a disruptive change stands out.
        let lead = if line.starts_with('!') { "" } else { "  " };
        let _ = writeln!(block, "  {lead}{line}");
    }
    for d in &c.shown_diff() {
        let b = d.before.as_ref().map(inline).unwrap_or_else(|| "∅".into());
        let a = d.after.as_ref().map(inline).unwrap_or_else(|| "∅".into());
        let _ = writeln!(block, "    {}: {b} -> {a}", d.path);
    }
    (key, block)
}

/// One collapsed section per device while the comment stays under [`COMMENT_LIMIT`] (after a head
/// of `head_len` bytes), then a note that points to the JSON plan.
fn body(head_len: usize, by_device: &BTreeMap<String, Vec<String>>) -> String {
    let mut body = String::new();
    let total = by_device.len();
    for (shown, (device, blocks)) in by_device.iter().enumerate() {
        let mut sec = format!(
            "<details><summary><code>{}</code> ({} change(s))</summary>\n\n```diff\n",
            escape(device),
            blocks.len()
        );
        for b in blocks {
            sec.push_str(&b.replace("```", "'''"));
        }
        sec.push_str("```\n</details>\n\n");
        if head_len + body.len() + sec.len() + RESERVE > COMMENT_LIMIT {
            let _ = writeln!(
                body,
                "**Truncated:** {} of {total} devices shown. The full plan is in the JSON plan artifact (`twinops plan --out plan.json`).",
                shown
            );
            break;
        }
        body.push_str(&sec);
    }
    body
}

/// Renders a drift report as markdown.
pub fn drift(out: &mut impl Write, r: &crate::plan::drift::Report) -> io::Result<()> {
    use crate::plan::drift::Class;
    let n = |c: Class| r.counts.get(c.key()).copied().unwrap_or(0);
    // One column per class, every class (a class with no items shows 0, not nothing).
    let head: Vec<&str> = Class::ALL.iter().map(|c| c.words()).collect();
    let counts: Vec<String> = Class::ALL.iter().map(|c| n(*c).to_string()).collect();
    let mut s = format!(
        "### twinops drift for `{}` (owner `{}`): {}\n\n| {} |\n|{}\n| {} |\n\n",
        escape(&r.hub),
        escape(&r.owner),
        if r.in_sync { "in sync" } else { "**drift**" },
        head.join(" | "),
        "---:|".repeat(head.len()),
        counts.join(" | ")
    );
    if !r.items.is_empty() {
        s.push_str("<details><summary>Items</summary>\n\n| class | identity | detail | keys |\n|---|---|---|---|\n");
        for (shown, i) in r.items.iter().enumerate() {
            let addr = i.address.to_string();
            let row = format!(
                "| {} | `{}` | {} | {} |\n",
                i.class.words(),
                escape(&addr),
                escape(&i.detail),
                escape(&i.keys.join(", "))
            );
            if s.len() + row.len() + RESERVE > COMMENT_LIMIT {
                s.push_str(&format!(
                    "\n**Truncated:** {shown} of {} items shown; run `twinops drift --format json` for all.\n",
                    r.items.len()
                ));
                break;
            }
            s.push_str(&row);
        }
        s.push_str("\n</details>\n");
    }
    out.write_all(s.as_bytes())
}
