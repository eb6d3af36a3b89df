//! Terraform-like text: one block per change (`+` create, `~` update, `-` delete), a line-level diff of
//! the owned JSON values, conflicts, and the closing summary line.

use std::fmt;
use std::io::{self, Write};

use serde_json::Value;
use similar::{ChangeTag, TextDiff};

use super::redact;
use crate::model::LEDGER_PATH;
use crate::plan::rollout::SHOWN_PER_WAVE;
use crate::plan::{Action, Change, Kind, Plan, Rollout, Wave};
use crate::report::{
    Doing, Event, Phase, ReadEstimate, Reason, Refusal, Report, RolloutEvent, Status, WaitReport,
    Warning,
};
use twinops_iothub::duration;

pub fn kind_words(k: Kind) -> &'static str {
    match k {
        Kind::CreateDevice => "create device",
        Kind::CreateModule => "create module",
        Kind::UpdateDevice => "update device identity",
        Kind::UpdateModule => "update module identity",
        Kind::UpdateDeviceTwin => "update device twin",
        Kind::UpdateModuleTwin => "update module twin",
        Kind::ReleaseDevice => "release device",
        Kind::ReleaseModule => "release module",
        Kind::DeleteModule => "delete module",
        Kind::DeleteDevice => "delete device",
        Kind::CreateConfiguration => "create configuration",
        Kind::UpdateConfiguration => "update configuration",
        Kind::DeleteConfiguration => "delete configuration",
        Kind::CreateDeployment => "create deployment",
        Kind::UpdateDeployment => "update deployment",
        Kind::DeleteDeployment => "delete deployment",
    }
}

pub(crate) fn sign(a: Action) -> char {
    match a {
        Action::Create => '+',
        Action::Update => '~',
        Action::Release => '=',
        Action::Delete => '-',
    }
}

/// ` (adopt)` on a change that takes over fields or keys this owner did not manage.
pub fn adopt_mark(c: &Change) -> &'static str {
    if c.adopts() { " (adopt)" } else { "" }
}

/// The lines of ownership a change carries beyond its diff (SPEC §15): what it adopts that already
/// matches, what it takes from other owners, what it releases, and what disrupts devices.
pub fn ownership_lines(c: &Change) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(d) = c.disruptive() {
        out.push(format!("! disruptive: {}", d.consequence()));
    }
    let Some(t) = c.twin_update() else {
        return out;
    };
    let changed: std::collections::BTreeSet<&str> =
        t.diff.iter().map(|d| d.path.as_str()).collect();
    for a in &t.adopted {
        let field = crate::plan::ledger::IdentityField::parse(a).is_some();
        if field {
            out.push(format!("adopt {a}"));
        } else if !changed.contains(a.as_str()) {
            out.push(format!("adopt {a} (already matches)"));
        }
    }
    for m in &t.forced {
        out.push(format!(
            "take {} from `{}` (--force-conflicts)",
            m.path, m.owner
        ));
    }
    for r in &t.released {
        match &r.stays {
            Some(v) => out.push(format!("release {} (stays {})", r.field, super::inline(v))),
            None => out.push(format!("release {}", r.field)),
        }
    }
    out
}

/// Values that fit on one line of this width are printed compactly; longer ones are spread over
/// lines so that their line diff shows what changed.
const INLINE_WIDTH: usize = 80;

fn pretty(v: &Value) -> String {
    let v = redact(v);
    if let Value::String(s) = &v
        && s == "(sensitive)"
    {
        return s.clone();
    }
    let compact = serde_json::to_string(&v).unwrap_or_default();
    if compact.len() <= INLINE_WIDTH {
        return compact;
    }
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

/// A line diff of two values, indented.
fn value_diff(
    out: &mut impl Write,
    before: Option<&Value>,
    after: Option<&Value>,
) -> io::Result<()> {
    let b = before.map(pretty).unwrap_or_default();
    let a = after.map(pretty).unwrap_or_default();
    if !b.contains('\n') && !a.contains('\n') {
        match (before, after) {
            (Some(_), Some(_)) => writeln!(out, "        {b} -> {a}")?,
            (None, Some(_)) => writeln!(out, "        + {a}")?,
            (Some(_), None) => writeln!(out, "        - {b} (removed)")?,
            (None, None) => {}
        }
        return Ok(());
    }
    let diff = TextDiff::from_lines(&b, &a);
    for ch in diff.iter_all_changes() {
        let mark = match ch.tag() {
            ChangeTag::Delete => '-',
            ChangeTag::Insert => '+',
            ChangeTag::Equal => ' ',
        };
        write!(out, "        {mark} {}", ch.value())?;
        if ch.missing_newline() {
            writeln!(out)?;
        }
    }
    Ok(())
}

fn change(out: &mut impl Write, c: &Change) -> io::Result<()> {
    writeln!(
        out,
        "  {} {} {}{}",
        sign(c.action()),
        kind_words(c.kind()),
        c.address(),
        adopt_mark(c)
    )?;
    for line in ownership_lines(c) {
        writeln!(out, "      {line}")?;
    }
    if let Change::DeleteDevice(d) = c {
        let modules: Vec<&str> = d.modules.iter().map(|m| m.as_str()).collect();
        if !modules.is_empty() {
            writeln!(
                out,
                "      - with its {} module(s): {}",
                modules.len(),
                modules.join(", ")
            )?;
        }
    }
    if c.action() == Action::Delete {
        return Ok(());
    }
    for d in &c.shown_diff() {
        if d.path == LEDGER_PATH {
            continue;
        }
        // A value set or removed whole fits on its path's line when it is short; a changed value
        // gets its own lines, diffed when it spans several.
        match (&d.before, &d.after) {
            (None, Some(a)) if !pretty(a).contains('\n') => {
                writeln!(out, "      + {} = {}", d.path, pretty(a))?;
                continue;
            }
            (Some(b), None) if !pretty(b).contains('\n') => {
                writeln!(out, "      - {} (was {})", d.path, pretty(b))?;
                continue;
            }
            (Some(b), Some(a)) if !pretty(b).contains('\n') && !pretty(a).contains('\n') => {
                writeln!(out, "      ~ {}: {} -> {}", d.path, pretty(b), pretty(a))?;
                continue;
            }
            _ => {}
        }
        let head = match (&d.before, &d.after) {
            (None, Some(_)) => '+',
            (Some(_), None) => '-',
            _ => '~',
        };
        writeln!(out, "      {head} {}", d.path)?;
        value_diff(out, d.before.as_ref(), d.after.as_ref())?;
    }
    if let Some(t) = c.twin_update()
        && t.diff.iter().any(|d| d.path == LEDGER_PATH)
    {
        writeln!(out, "      ~ ownership ledger ({LEDGER_PATH})")?;
    }
    Ok(())
}

/// One managed object's change as the text plan shows it (SPEC §16).
pub(crate) fn object_lines(c: &crate::plan::objects::ObjectChange) -> Vec<String> {
    use crate::plan::objects::ObjectChange;
    let kind = c.object().as_str();
    let mut lines = Vec::new();
    let (head, diff, preview) = match c {
        ObjectChange::Create {
            name,
            id,
            replaces: Some(old),
            diff,
            preview,
            ..
        } => (
            format!("± replace {kind} {name}: create {id}, then delete {old} once {id} is applied"),
            diff.clone(),
            preview.as_ref(),
        ),
        ObjectChange::Create {
            name,
            id,
            body,
            preview,
            ..
        } => {
            let mut d = vec![
                crate::plan::FieldDiff {
                    path: "target".into(),
                    before: None,
                    after: Some(serde_json::json!(body.target)),
                },
                crate::plan::FieldDiff {
                    path: "priority".into(),
                    before: None,
                    after: Some(serde_json::json!(body.priority)),
                },
            ];
            if !body.metrics.is_empty() {
                d.push(crate::plan::FieldDiff {
                    path: "metrics".into(),
                    before: None,
                    after: Some(serde_json::json!(body.metrics)),
                });
            }
            (
                format!("+ create {kind} {id} ({name})"),
                d,
                preview.as_ref(),
            )
        }
        ObjectChange::Update {
            name,
            id,
            diff,
            preview,
            ..
        } => (
            format!("~ update {kind} {id} ({name})"),
            diff.clone(),
            preview.as_ref(),
        ),
        // The delete that completes a replacement is shown with its create.
        ObjectChange::Delete {
            replaced_by: Some(_),
            ..
        } => return lines,
        ObjectChange::Delete { name, id, .. } => {
            (format!("- delete {kind} {id} ({name})"), vec![], None)
        }
    };
    lines.push(head);
    for d in &diff {
        let line = match (&d.before, &d.after) {
            (None, Some(a)) => format!("+ {} = {}", d.path, super::inline(a)),
            (Some(b), None) => format!("- {} (was {})", d.path, super::inline(b)),
            (Some(b), Some(a)) => {
                format!("~ {}: {} -> {}", d.path, super::inline(b), super::inline(a))
            }
            (None, None) => continue,
        };
        lines.push(format!("    {line}"));
    }
    if let Some(p) = preview {
        let first = if p.first.is_empty() {
            String::new()
        } else {
            let more = p.targeted.saturating_sub(p.first.len() as u64);
            let more = if more > 0 {
                format!(", … and {more} more")
            } else {
                String::new()
            };
            format!(": {}{more}", p.first.join(", "))
        };
        lines.push(format!("    targets {} now{first}", p.targeted));
    }
    lines
}

/// The managed objects' changes, conflicts, warnings and the ones no manifest declares.
fn objects(out: &mut impl Write, o: &crate::plan::objects::ObjectPlan) -> io::Result<()> {
    for c in &o.changes {
        for line in object_lines(c) {
            writeln!(out, "  {line}")?;
        }
    }
    for k in &o.conflicts {
        writeln!(
            out,
            "  ! conflict {} {}: {}",
            k.object.as_str(),
            k.name,
            k.reason
        )?;
    }
    for w in &o.warnings {
        writeln!(out, "  warning: {w}")?;
    }
    if !o.no_longer_declared.is_empty() {
        let ids: Vec<String> = o
            .no_longer_declared
            .iter()
            .map(|r| format!("{} {}", r.object.as_str(), r.id))
            .collect();
        writeln!(
            out,
            "  {} owned object(s) no longer declared ({}); --prune deletes them",
            ids.len(),
            ids.join(", ")
        )?;
    }
    Ok(())
}

/// `N owned identities are no longer declared (a, b, ...); --prune deletes them`, when there are.
pub fn no_longer_declared_hint(plan: &Plan) -> Option<String> {
    let gone = &plan.no_longer_declared;
    if gone.is_empty() {
        return None;
    }
    let shown: Vec<String> = gone.iter().take(5).map(ToString::to_string).collect();
    let more = if gone.len() > shown.len() {
        format!(", and {} more", gone.len() - shown.len())
    } else {
        String::new()
    };
    Some(format!(
        "{} owned identit{} no longer declared ({}{more}); --prune deletes them",
        gone.len(),
        if gone.len() == 1 { "y is" } else { "ies are" },
        shown.join(", ")
    ))
}

/// Changes in plan order, identical ones together (in the order their first member appears).
/// Identical means everything a group prints of its first member: kind, module ID, diff, the
/// ` (adopt)` mark and the ownership lines (disruption, adopted, forced and released fields).
pub fn groups(changes: &[Change]) -> Vec<Vec<&Change>> {
    // A map from each group's key to its place: one lookup per change, so a plan of 100,000
    // distinct changes groups in linear time.
    type Key = (Kind, Option<String>, String, bool, Vec<String>);
    let mut index: std::collections::HashMap<Key, usize> = std::collections::HashMap::new();
    let mut out: Vec<Vec<&Change>> = Vec::new();
    for c in changes {
        let key = (
            c.kind(),
            c.address().module_id().map(str::to_string),
            serde_json::to_string(&c.shown_diff()).unwrap_or_default(),
            c.adopts(),
            ownership_lines(c),
        );
        match index.get(&key) {
            Some(&i) => out[i].push(c),
            None => {
                index.insert(key, out.len());
                out.push(vec![c]);
            }
        }
    }
    out
}

/// `4980` as `4,980`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// The first addresses of a group, `a, b, c, … and N more`.
pub fn group_addresses(g: &[&Change]) -> String {
    let shown: Vec<String> = g.iter().take(3).map(|c| c.address().to_string()).collect();
    if g.len() > shown.len() {
        format!(
            "{}, … and {} more",
            shown.join(", "),
            thousands(g.len() - shown.len())
        )
    } else {
        shown.join(", ")
    }
}

/// What a group of identical changes is: `update 4,980 module twins */sensor`.
pub fn group_words(g: &[&Change]) -> String {
    let first = g[0];
    let kind = kind_words(first.kind());
    let (verb, noun) = kind.split_once(' ').unwrap_or((kind, ""));
    let module = first
        .address()
        .module
        .map(|m| format!(" */{m}"))
        .unwrap_or_default();
    format!("{verb} {} {noun}s{module}", thousands(g.len()))
}

fn group(out: &mut impl Write, g: &[&Change]) -> io::Result<()> {
    writeln!(
        out,
        "  {} {}{}",
        sign(g[0].action()),
        group_words(g),
        adopt_mark(g[0])
    )?;
    writeln!(out, "      ({})", group_addresses(g))?;
    // Device deletes take their modules with them, and those differ from device to device: the
    // group says how many go in all, and which first.
    if let Some(line) = deleted_modules_line(g) {
        writeln!(out, "      {line}")?;
        return Ok(());
    }
    // The members differ only in their address: the first one's lines stand for all.
    let mut one = Vec::new();
    change(&mut one, g[0])?;
    let text = String::from_utf8_lossy(&one);
    for line in text.lines().skip(1) {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// For a group of device deletes with modules: `- with their N module(s): d1/m1, d1/m2, … and K more`.
pub(crate) fn deleted_modules_line(g: &[&Change]) -> Option<String> {
    let modules: Vec<String> = g
        .iter()
        .filter_map(|c| match c {
            Change::DeleteDevice(d) => Some(d),
            _ => None,
        })
        .flat_map(|d| d.modules.iter().map(move |m| format!("{}/{m}", d.id)))
        .collect();
    if modules.is_empty() {
        return None;
    }
    let shown: Vec<&str> = modules.iter().take(5).map(String::as_str).collect();
    let more = if modules.len() > shown.len() {
        format!(", … and {} more", thousands(modules.len() - shown.len()))
    } else {
        String::new()
    };
    Some(format!(
        "- with their {} module(s): {}{more}",
        thousands(modules.len()),
        shown.join(", ")
    ))
}

/// The summary line.
pub fn summary_line(plan: &Plan) -> String {
    let s = &plan.summary;
    if !plan.has_differences() {
        return format!("No changes. {} twins match the manifests.", s.unchanged);
    }
    let release = if s.release > 0 {
        format!(", {} to release", s.release)
    } else {
        String::new()
    };
    let disruptive = if s.disruptive > 0 {
        format!(", {} disruptive", s.disruptive)
    } else {
        String::new()
    };
    let mut line = format!(
        "Plan: {} to create, {} to update, {} to delete{release}, {} unchanged{disruptive}.",
        s.create, s.update, s.delete, s.unchanged
    );
    if s.conflicts > 0 {
        line.push_str(&format!(" {} conflict(s).", s.conflicts));
    }
    line
}

/// Renders a plan.
pub fn plan(out: &mut impl Write, plan: &Plan) -> io::Result<()> {
    plan_with(out, plan, false)
}

/// Renders a plan; unless `expand`, changes that are identical but for their twin (same kind,
/// same module ID, same diff) are shown once, with their count and first addresses.
pub fn plan_with(out: &mut impl Write, plan: &Plan, expand: bool) -> io::Result<()> {
    if plan.has_differences() {
        writeln!(
            out,
            "twinops will perform these actions on {} (owner `{}`):",
            plan.hub, plan.owner
        )?;
        writeln!(out)?;
    }
    if expand {
        for c in &plan.changes {
            change(out, c)?;
        }
    } else {
        for g in groups(&plan.changes) {
            if g.len() == 1 {
                change(out, g[0])?;
            } else {
                group(out, &g)?;
            }
        }
    }
    for k in &plan.conflicts {
        let keys = super::keys_suffix(&k.reason, &k.keys);
        writeln!(out, "  ! conflict {}: {}{keys}", k.address, k.reason)?;
    }
    for w in &plan.warnings {
        writeln!(out, "  warning {}: {w}", w.address)?;
    }
    objects(out, &plan.objects)?;
    if let Some(r) = &plan.rollout {
        writeln!(out)?;
        rollout(out, r)?;
    }
    if plan.has_differences() {
        writeln!(out)?;
    }
    if let Some(hint) = no_longer_declared_hint(plan) {
        writeln!(out, "{hint}")?;
    }
    writeln!(out, "{}", summary_line(plan))
}

/// The rollout of a plan: a heading with its settings, then one line per wave.
fn rollout(out: &mut impl Write, r: &Rollout) -> io::Result<()> {
    writeln!(
        out,
        "Rollout {} in {} wave(s) of {} twin(s): {}.",
        short_id(r.id.as_str()),
        r.waves.len(),
        r.twin_count(),
        settings(r)
    )?;
    if let Some(line) = continuation(r) {
        writeln!(out, "  {line}")?;
    }
    for w in &r.waves {
        writeln!(out, "  {}", wave_line(w))?;
    }
    Ok(())
}

/// What a plan that continues a rollout does first, from the twins' ledgers.
pub fn continuation(r: &Rollout) -> Option<String> {
    let last = r.written?;
    let through = if last == 0 {
        "wave 0 was".to_string()
    } else {
        format!("waves 0-{last} were")
    };
    Some(match r.waves.iter().find(|w| w.index > last) {
        Some(next) => format!(
            "continues: {through} written by an earlier run (the twins' ledgers say so); apply checks wave {last} again before it writes wave {}",
            next.index
        ),
        None => format!(
            "continues: {through} written by an earlier run (the twins' ledgers say so); apply writes what is left of them and checks wave {last} again"
        ),
    })
}

/// The first 12 hex digits of a rollout ID, as people quote it.
pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// `bake 2m, timeout 10m, halt on more than 0% rejected or 0% pending at timeout, on halt stop`.
pub fn settings(r: &Rollout) -> String {
    format!(
        "bake {}, timeout {}, halt on more than {} rejected or {} pending at timeout, on halt {}",
        duration::format(r.bake),
        duration::format(r.timeout),
        r.halt.rejected,
        r.halt.pending,
        r.on_halt.as_str()
    )
}

/// `wave 1 (up to 5%): 3 twins: a, b, c` with at most [`SHOWN_PER_WAVE`] addresses.
fn wave_line(w: &Wave) -> String {
    let what = match w.step {
        crate::plan::WaveStep::First => "first".to_string(),
        step => format!("up to {step}"),
    };
    format!(
        "wave {} ({what}): {} twin(s): {}",
        w.index,
        w.twins.len(),
        first_addresses(w)
    )
}

/// The first addresses of a wave, `… and N more` for the rest.
pub fn first_addresses(w: &Wave) -> String {
    let shown: Vec<String> = w
        .twins
        .iter()
        .take(SHOWN_PER_WAVE)
        .map(ToString::to_string)
        .collect();
    let mut text = shown.join(", ");
    if w.twins.len() > SHOWN_PER_WAVE {
        text.push_str(&format!(", … and {} more", w.twins.len() - SHOWN_PER_WAVE));
    }
    text
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Applied => "applied",
        Status::Adopted => "adopted",
        Status::Unchanged => "unchanged",
        Status::Conflict => "CONFLICT",
        Status::Failed => "FAILED",
        Status::Skipped => "skipped",
        Status::Missing => "missing",
        Status::Reverted => "reverted",
    }
}

/// Renders an apply report: one line per item, then totals.
pub fn report(out: &mut impl Write, r: &Report) -> io::Result<()> {
    report_with(out, r, true)
}

/// Renders an apply report; unless `all` (`--quiet`), only the items that need attention (not
/// applied, adopted or unchanged) get a line of their own before the totals.
pub fn report_with(out: &mut impl Write, r: &Report, all: bool) -> io::Result<()> {
    for o in r.outcomes.iter().filter(|o| all || !o.took_effect()) {
        // An object's kind words name it already (`create deployment`): its ID follows alone.
        let address = match &o.address {
            crate::model::Address::Twin(t) => t.to_string(),
            crate::model::Address::Configuration(id) | crate::model::Address::Deployment(id) => {
                id.to_string()
            }
        };
        write!(
            out,
            "  {:<9} {} {address}",
            status_word(o.status),
            kind_words(o.kind),
        )?;
        let words = o.reason.as_ref().map(|r| Words(r).to_string());
        if let Some(w) = &words {
            write!(out, ": {w}")?;
        }
        let keys = super::keys_suffix(words.as_deref().unwrap_or(""), &o.keys);
        writeln!(out, "{keys}")?;
    }
    writeln!(
        out,
        "Apply {}: {} applied, {} adopted, {} unchanged, {} conflicts, {} failed, {} skipped.",
        if r.interrupted {
            "interrupted"
        } else if r.rollout.as_ref().is_some_and(|x| x.halted.is_some()) {
            "halted by the rollout"
        } else if r.ok() {
            "complete"
        } else {
            "finished with errors"
        },
        r.count(Status::Applied),
        r.count(Status::Adopted),
        r.count(Status::Unchanged),
        r.count(Status::Conflict),
        r.count(Status::Failed),
        r.count(Status::Skipped),
    )?;
    let reverted = r.count(Status::Reverted);
    if reverted > 0 {
        writeln!(
            out,
            "{reverted} twin(s) were written back to the values they had before this run (on_halt: revert)."
        )?;
    }
    if let Some(rollout) = &r.rollout {
        rollout_report(out, rollout)?;
    }
    let missing = r.count(Status::Missing);
    if missing > 0 {
        writeln!(
            out,
            "{missing} twin(s) were gone from the hub although a query still listed them (query rows lag behind); the next run creates them."
        )?;
    }
    Ok(())
}

/// The per-wave table of a delivered rollout, then the twins that stopped it.
pub fn rollout_report(out: &mut impl Write, r: &crate::report::RolloutReport) -> io::Result<()> {
    writeln!(out, "Rollout {}:", short_id(&r.id))?;
    writeln!(
        out,
        "  {:>4}  {:>6}  {:>12}  {:>8}  {:>7}  state",
        "wave", "twins", "acknowledged", "rejected", "pending"
    )?;
    for w in &r.waves {
        let state = match w.state {
            crate::report::WaveState::Passed if w.earlier => "passed (earlier run)",
            crate::report::WaveState::Passed => "passed",
            crate::report::WaveState::Failed => "FAILED",
            crate::report::WaveState::Written => "written",
            crate::report::WaveState::NotStarted => "not started",
            crate::report::WaveState::Accepted => "accepted as it stood (--resume)",
        };
        if w.earlier {
            // An earlier run's gate: this run has no counts of it.
            writeln!(
                out,
                "  {:>4}  {:>6}  {:>12}  {:>8}  {:>7}  {state}",
                w.index, w.twins, "-", "-", "-"
            )?;
            continue;
        }
        writeln!(
            out,
            "  {:>4}  {:>6}  {:>12}  {:>8}  {:>7}  {state}",
            w.index, w.twins, w.acknowledged, w.rejected, w.pending
        )?;
    }
    for t in &r.rejected {
        writeln!(
            out,
            "  rejected by the device: {}: {}",
            t.address,
            t.ad.as_deref().unwrap_or("(no description)")
        )?;
    }
    for t in &r.pending {
        writeln!(out, "  not acknowledged at timeout: {}", t.address)?;
    }
    Ok(())
}

/// Renders a drift report.
pub fn drift(out: &mut impl Write, r: &crate::plan::drift::Report) -> io::Result<()> {
    for i in &r.items {
        let keys = super::keys_suffix(&i.detail, &i.keys);
        writeln!(
            out,
            "  {:<36} {}: {}{keys}",
            i.class.words(),
            i.address,
            i.detail
        )?;
    }
    use crate::plan::drift::Class;
    let n = |k: Class| r.counts.get(k.key()).copied().unwrap_or(0);
    let optional = |k: Class| {
        let c = n(k);
        if c > 0 {
            format!("{c} {}, ", k.words())
        } else {
            String::new()
        }
    };
    writeln!(
        out,
        "Drift: {}; {} changed in hub, {}{}{}{} not yet acknowledged, {} also written by a configuration.",
        if r.in_sync { "in sync" } else { "DRIFT" },
        n(Class::ChangedInHub),
        optional(Class::NoLongerDeclared),
        optional(Class::RejectedByDevice),
        optional(Class::Stale),
        n(Class::NotAcknowledged),
        n(Class::Configuration)
    )
}

/// The per-twin table of `apply --wait`.
pub fn acknowledgements(out: &mut impl Write, wait: &WaitReport) -> io::Result<()> {
    acknowledgements_with(out, wait, true)
}

/// The per-twin table of `apply --wait`; unless `all` (`--quiet`), only the twins that did not
/// acknowledge get a row.
pub fn acknowledgements_with(out: &mut impl Write, wait: &WaitReport, all: bool) -> io::Result<()> {
    let items = &wait.twins;
    let width = items
        .iter()
        .map(|i| i.address.to_string().len())
        .max()
        .unwrap_or(8)
        .max(8);
    writeln!(out, "{:<width$}  {:<14}  after", "twin", "acknowledged")?;
    for i in items
        .iter()
        .filter(|i| all || i.acknowledged_after.is_none())
    {
        let a = i.address.to_string();
        match (&i.rejected, i.acknowledged_after) {
            (Some(why), _) => writeln!(out, "{a:<width$}  {:<14}  {why}", "NO (rejected)")?,
            (None, Some(d)) => {
                writeln!(out, "{a:<width$}  {:<14}  {:.1}s", "yes", d.as_secs_f64())?
            }
            (None, None) => writeln!(out, "{a:<width$}  {:<14}  -", "NO (timed out)")?,
        }
    }
    let acked = items
        .iter()
        .filter(|i| i.acknowledged_after.is_some())
        .count();
    writeln!(out, "Acknowledged: {acked} of {} twins.", items.len())?;
    for o in &wait.objects {
        let reported = o
            .reported_successful
            .map(|r| format!(", reported {r}/{}", o.targeted))
            .unwrap_or_default();
        let state = match (&o.done_after, o.failed.is_empty()) {
            (_, false) => format!("FAILED: {}", o.failed.join("; ")),
            (Some(d), true) => format!("done after {:.1}s", d.as_secs_f64()),
            (None, true) => "NOT DONE (timed out)".to_string(),
        };
        writeln!(
            out,
            "{}: applied {}/{}{reported}; {state}",
            o.address, o.applied, o.targeted
        )?;
    }
    Ok(())
}

/// A [`Reason`] in words, as the report's text and the JSON `detail` show it.
pub struct Words<'a>(pub &'a Reason);

impl fmt::Display for Words<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Reason::Interrupted => f.write_str("interrupted"),
            Reason::DeviceNotCreated => f.write_str("its device was not created"),
            Reason::AfterWaves => {
                f.write_str("not run: deletes run once every rollout wave has passed")
            }
            Reason::ExistedWithContent => f.write_str("already existed with this content"),
            Reason::ExistedContentApplied => f.write_str("already existed; twin content applied"),
            Reason::ExistsOwnedBy(o) => write!(f, "it already exists and is owned by `{o}`"),
            Reason::ChangingTooFast => {
                f.write_str("changing too fast: the etag moved on every resend")
            }
            Reason::Resent(n) => write!(f, "resent after {n} unrelated change(s)"),
            Reason::AlreadyAtTarget => f.write_str("already at the target"),
            Reason::OwnedKeysChanged => f.write_str(
                "owned keys were changed by someone else since the plan; not overwritten",
            ),
            Reason::PlanConflict(reason) => write!(f, "skipped at plan time: {reason}"),
            Reason::ObjectChanged => {
                f.write_str("changed or deleted on the hub since the plan; not overwritten")
            }
            Reason::ReplacementNotApplied(new) => write!(
                f,
                "kept: its replacement `{new}` was not applied to every targeted device in time (apply again to finish)"
            ),
            Reason::TakenOver(managed) => write!(
                f,
                "changed since the plan: {managed}; not overwritten"
            ),
            Reason::TwinGone => f.write_str("the twin no longer exists; the next run creates it"),
            Reason::IdentityChanged => f.write_str("the identity changed since the plan was made"),
            Reason::ModuleTwinChanged => {
                f.write_str("the module twin changed since the plan was made")
            }
            Reason::AlreadyGone => f.write_str("already gone"),
            Reason::ChangedNotDeleted => f.write_str("changed since the plan was made; not deleted"),
            Reason::ParentNotEdge(p) => write!(f, "parent `{p}` is not an edge device in the hub"),
            Reason::TwoWrites => f.write_str(
                "in two writes: IoT Hub detaches the parent of a device that stops being an edge device",
            ),
            Reason::ChangedBetweenWrites => f.write_str(
                "the identity changed between the two writes; its parent is not attached again",
            ),
            Reason::CreatedEnabledThenDisabled => {
                f.write_str("created enabled, disabled once its modules existed")
            }
            Reason::Hub {
                doing,
                error,
                refusal,
            } => {
                f.write_str(doing_words(*doing))?;
                match refusal {
                    None => f.write_str(error),
                    Some(r) => refusal_words(f, r, error),
                }
            }
            Reason::Row { code, status } => write!(f, "{code}: {status}"),
            Reason::Reverted => f.write_str("written back to its old values"),
            Reason::NotReverted(why) => write!(f, "written by the rollout; not reverted: {why}"),
            Reason::RevertConflict => f.write_str(
                "written by the rollout, then changed by someone else; not reverted",
            ),
            Reason::RevertFailed(why) => {
                write!(f, "written by the rollout; reverting failed: {}", Words(why))
            }
        }
    }
}

/// What a failed step was doing, as the prefix of its error.
fn doing_words(d: Doing) -> &'static str {
    match d {
        Doing::Writing => "",
        Doing::ReadingIdentity => "reading the identity: ",
        Doing::ReadingParent => "reading parent: ",
        Doing::ReadingExistingTwin => "reading the existing twin: ",
        Doing::ReReadingAfter412 => "re-reading after 412: ",
        Doing::AttachingParentAgain => "attaching the parent again: ",
        Doing::Disabling => "disabling it after its modules: ",
    }
}

/// Why the hub refused a module identity operation with 401, in words: the same for `apply`'s
/// outcomes and `connection-string`. `error` is the hub's error, said when the probe found the
/// device in order (a permission, then).
pub fn refusal(r: &Refusal, error: &str) -> String {
    struct Said<'a>(&'a Refusal, &'a str);
    impl fmt::Display for Said<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            refusal_words(f, self.0, self.1)
        }
    }
    Said(r, error).to_string()
}

fn refusal_words(f: &mut fmt::Formatter<'_>, r: &Refusal, error: &str) -> fmt::Result {
    match r {
        Refusal::DeviceMissing(d) => write!(
            f,
            "device `{d}` does not exist (IoT Hub answers module identity operations on a missing device with 401 under SAS)"
        ),
        Refusal::DeviceDisabled(d) => write!(
            f,
            "device `{d}` is disabled: under SAS IoT Hub refuses module identity operations on a disabled device (401); use --auth token (Entra ID), or enable the device first"
        ),
        // The hub client's error says what the 401 means under the policy used (a permission
        // the policy may lack, or a wrong key: never a missing permission under iothubowner).
        Refusal::Permission => f.write_str(error),
    }
}

/// An apply phase's name on the progress bar.
pub fn phase(p: Phase) -> String {
    match p {
        Phase::DeviceCreates => "device creates".into(),
        Phase::ModuleCreates => "module creates".into(),
        Phase::IdentityUpdates => "identity updates".into(),
        Phase::TwinPatches => "twin patches".into(),
        Phase::RolloutWave(i) => format!("rollout wave {i}"),
        Phase::RolloutRevert => "rollout revert".into(),
        Phase::ModuleDeletes => "module deletes".into(),
        Phase::DeviceDeletes => "device deletes".into(),
        Phase::ObjectWrites => "configuration and deployment writes".into(),
        Phase::ObjectDeletes => "configuration and deployment deletes".into(),
    }
}

/// The line a rollout's progress prints.
pub fn rollout_event(e: &RolloutEvent) -> String {
    match e {
        RolloutEvent::Continues { id, last, waves } => format!(
            "Rollout {} continues: the twins' ledgers say wave {last} of {waves} was the last one written.",
            short_id(id)
        ),
        RolloutEvent::Writing { wave, waves, twins } => {
            format!("Rollout wave {wave} of {waves}: writing {twins} twin(s)...")
        }
        RolloutEvent::Waiting {
            wave,
            waves,
            timeout,
            twins,
        } => format!(
            "Rollout wave {wave} of {waves}: waiting up to {} for {twins} twin(s) to acknowledge...",
            duration::format(*timeout)
        ),
        RolloutEvent::Passed { wave, waves, tally } => format!(
            "Rollout wave {wave} of {waves} passed: {} acknowledged, {} rejected, {} pending.",
            tally.acknowledged, tally.rejected, tally.pending
        ),
        RolloutEvent::Baking { bake, next } => {
            format!("Baking {} before wave {next}...", duration::format(*bake))
        }
        RolloutEvent::Reverting { twins } => format!(
            "on_halt: revert: writing {twins} twin(s) back to the values they had before this run..."
        ),
    }
}

/// A progress event as the one line people read (`None`: an event drawn as a bar, not a line).
pub fn event(e: &Event) -> Option<String> {
    match e {
        Event::Reading(r) => Some(reading(r)),
        Event::ReadVia { export: true, why } => {
            Some(format!("Reading the hub through an export job: {why}"))
        }
        Event::ReadVia { export: false, why } => {
            Some(format!("Reading the hub by queries and GETs: {why}"))
        }
        Event::Warning(w) => Some(warning(w)),
        Event::Rollout(r) => Some(rollout_event(r)),
        Event::Waiting { twins, limit } => Some(waiting(*twins, *limit)),
        Event::Phase { .. } | Event::Done(_) => None,
    }
}

/// `Reading …; estimated 9.0s at the chosen pace`.
pub fn reading(r: &ReadEstimate) -> String {
    let how = if r.whole_hub {
        format!("the whole hub by query (about {} pages)", r.query_requests)
    } else {
        format!(
            "{} twin(s): {} by query ({} request(s)), {} by GET",
            r.query_twins + r.get_twins,
            r.query_twins,
            r.query_requests,
            r.get_twins
        )
    };
    match r.estimated_seconds {
        Some(s) => format!("Reading {how}; estimated {s:.1}s at the chosen pace"),
        None => format!("Reading {how}"),
    }
}

pub fn warning(w: &Warning) -> String {
    match w {
        Warning::DisabledDevice(device) => format!(
            "warning: device `{device}` is disabled: under SAS, IoT Hub refuses module identity operations on a disabled device (401); use --auth token (Entra ID), or enable the device first"
        ),
        Warning::ManagedByDiffers {
            module,
            declared,
            hub,
        } => format!(
            "warning: module `{module}` declares managedBy `{declared}` but the hub has {}: managedBy is written only when a module is created, so it is left as it is",
            hub.as_ref()
                .map_or_else(|| "none".to_string(), |h| format!("`{h}`"))
        ),
    }
}

/// One line on what reading the hub cost, for stderr.
pub fn requests_line(plan: &Plan) -> String {
    let total: u64 = plan.requests.values().sum();
    let parts: Vec<String> = plan
        .requests
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let mut s = format!(
        "Read the hub with {total} request(s) ({})",
        parts.join(", ")
    );
    if let Some(r) = plan.read_seconds {
        s.push_str(&format!(" in {r:.1}s"));
        if let Some(e) = plan.estimated_read_seconds {
            s.push_str(&format!(" (estimated {e:.1}s)"));
        }
    }
    if let Some(c) = &plan.scope {
        s.push_str(&format!(
            "; {} twin(s) changed since {}",
            c.twins,
            &c.changed_from[..c.changed_from.len().min(12)]
        ));
    }
    if let Some(e) = plan.estimated_apply_seconds {
        s.push_str(&format!("; apply estimated at {e:.1}s at the chosen pace"));
    }
    s
}

/// The line `apply --wait` prints when it starts waiting.
pub fn waiting(twins: usize, limit: std::time::Duration) -> String {
    format!("Waiting up to {limit:?} for {twins} twin(s) to acknowledge their desired values...")
}
