//! Markdown for pull-request comments: a summary table and per-device details collapsed. Past GitHub's
//! 65,536-character comment limit, it truncates and points to the JSON plan artifact.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};

use super::inline;
use crate::model::LEDGER_PATH;
use crate::plan::rollout::SHOWN_PER_WAVE;
use crate::plan::{Change, Plan, Rollout, Wave};

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
    for w in &plan.objects.warnings {
        let _ = writeln!(head, "> **warning:** {}\n", escape(&w.to_string()));
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
        super::text::short_id(r.id.as_str()),
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

/// One block of a section: its text, and the changes it stands for by kind (none for conflicts and
/// warnings), so that a truncated comment can still count what it leaves out.
struct Block {
    text: String,
    kind: Option<(crate::plan::Kind, usize)>,
}

/// Each device's blocks: its changes with their diffs (identical changes of many twins as one
/// block, keyed by its words, unless `expand`), then its conflicts.
fn blocks_by_device(plan: &Plan, expand: bool) -> BTreeMap<String, Vec<Block>> {
    let mut by_device: BTreeMap<String, Vec<Block>> = BTreeMap::new();
    let groups: Vec<Vec<&Change>> = if expand {
        plan.changes.iter().map(|c| vec![c]).collect()
    } else {
        super::text::groups(&plan.changes)
    };
    for g in groups {
        let (key, text) = change_block(&g);
        by_device.entry(key).or_default().push(Block {
            text,
            kind: Some((g[0].kind(), g.len())),
        });
    }
    let mut other = |device: String, text: String| {
        by_device
            .entry(device)
            .or_default()
            .push(Block { text, kind: None });
    };
    for k in &plan.conflicts {
        let keys = super::keys_suffix(&k.reason, &k.keys);
        other(
            k.address.device.to_string(),
            format!("! conflict {}: {}{keys}\n", k.address, k.reason),
        );
    }
    for w in &plan.warnings {
        other(
            w.address.device.to_string(),
            format!("warning {}: {w}\n", w.address),
        );
    }
    for c in &plan.objects.changes {
        let lines = super::text::object_lines(c);
        if lines.is_empty() {
            continue;
        }
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        by_device
            .entry(format!("{} {}", c.object().as_str(), c.name()))
            .or_default()
            .push(Block {
                text,
                kind: Some((crate::plan::Kind::of_object(c), 1)),
            });
    }
    for k in &plan.objects.conflicts {
        by_device
            .entry(format!("{} {}", k.object.as_str(), k.name))
            .or_default()
            .push(Block {
                text: format!("! conflict: {}\n", k.reason),
                kind: None,
            });
    }
    by_device
}

/// One change, or a group of identical ones, as a diff block, and the key it is listed under.
fn change_block(g: &[&Change]) -> (String, String) {
    let c = g[0];
    let sign = super::text::sign(c.action());
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
    // Device deletes take their modules with them: say which.
    match (g.len(), c) {
        (1, Change::DeleteDevice(d)) if !d.modules.is_empty() => {
            let modules: Vec<&str> = d.modules.iter().map(|m| m.as_str()).collect();
            let _ = writeln!(
                block,
                "    - with its {} module(s): {}",
                modules.len(),
                modules.join(", ")
            );
        }
        _ => {
            if let Some(line) = super::text::deleted_modules_line(g) {
                let _ = writeln!(block, "    {line}");
            }
        }
    }
    // As the text plan writes them: a key set (`+`), removed (`-`) or changed (`~`); the ledger as
    // one line, not its JSON.
    for d in &c.shown_diff() {
        if d.path == LEDGER_PATH {
            continue;
        }
        let line = match (&d.before, &d.after) {
            (None, Some(a)) => format!("+ {} = {}", d.path, inline(a)),
            (Some(b), None) => format!("- {} (was {})", d.path, inline(b)),
            (Some(b), Some(a)) => format!("~ {}: {} -> {}", d.path, inline(b), inline(a)),
            (None, None) => continue,
        };
        let _ = writeln!(block, "    {line}");
    }
    if let Some(t) = c.twin_update()
        && t.diff.iter().any(|d| d.path == LEDGER_PATH)
    {
        let _ = writeln!(block, "    ~ ownership ledger ({LEDGER_PATH})");
    }
    (key, block)
}

/// One collapsed section per device while the comment stays under [`COMMENT_LIMIT`] (after a head
/// of `head_len` bytes), then a note that says what was left out, by kind, and points to the JSON
/// plan: a truncated comment never leaves a whole kind of change unmentioned.
fn body(head_len: usize, by_device: &BTreeMap<String, Vec<Block>>) -> String {
    let mut body = String::new();
    let total = by_device.len();
    for (shown, (device, blocks)) in by_device.iter().enumerate() {
        let mut sec = format!(
            "<details><summary><code>{}</code> ({} change(s))</summary>\n\n```diff\n",
            escape(device),
            blocks.len()
        );
        for b in blocks {
            sec.push_str(&b.text.replace("```", "'''"));
        }
        sec.push_str("```\n</details>\n\n");
        if head_len + body.len() + sec.len() + RESERVE > COMMENT_LIMIT {
            let mut left: BTreeMap<crate::plan::Kind, usize> = BTreeMap::new();
            let mut other = 0;
            for blocks in by_device.values().skip(shown) {
                for b in blocks {
                    match b.kind {
                        Some((k, n)) => *left.entry(k).or_default() += n,
                        None => other += 1,
                    }
                }
            }
            let mut parts: Vec<String> = left
                .iter()
                .map(|(k, n)| format!("{} {}", super::text::thousands(*n), kind_plural(*k, *n)))
                .collect();
            if other > 0 {
                parts.push(format!("{other} conflict(s) or warning(s)"));
            }
            let _ = writeln!(
                body,
                "**Truncated:** {shown} of {total} sections shown; not shown: {}. The full plan is in the JSON plan artifact (`twinops plan --out plan.json`).",
                parts.join(", ")
            );
            break;
        }
        body.push_str(&sec);
    }
    body
}

/// `update device twin(s)` and the like, for a count of changes of a kind.
fn kind_plural(k: crate::plan::Kind, n: usize) -> String {
    let words = super::text::kind_words(k);
    if n == 1 {
        words.to_string()
    } else {
        format!("{words}s")
    }
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
