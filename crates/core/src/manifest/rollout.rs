//! The `rollout` block as written (SPEC §11): turns one located node into a [`RolloutSpec`], reporting
//! every problem at its `file:line:column`.
//!
//! Owns the block's shape and its own rules (wave steps, durations through the one duration grammar
//! of `twinops_iothub::duration`, halt shares, `on_halt`). That a set holds at most one block is a
//! set-wide rule and lives in the loader.

use std::time::Duration;

use super::Sink;
use super::raw::{mapping, string, type_error};
use super::twin::{self, Names, Scope};
use super::yaml::{Entry, Kind, Node};
use crate::model::{
    DEFAULT_BAKE, DEFAULT_TIMEOUT, Halt, JsonMap, Location, OnHalt, RolloutSpec, Section, Share,
    Step,
};

pub(super) const ROLLOUT_KEYS: &[&str] = &["waves", "first", "bake", "timeout", "halt", "on_halt"];
pub(super) const FIRST_KEYS: &[&str] = &["tags"];
pub(super) const HALT_KEYS: &[&str] = &["rejected", "pending"];
/// The values `on_halt` takes.
pub(super) const ON_HALTS: [OnHalt; 2] = [OnHalt::Stop, OnHalt::Revert];
const WAVE_FORMS: &str = "a share such as `5%`, a count such as `10`, or `all`";
const WAVES_EXAMPLE: &str = "e.g. [5%, 25%, 100%] or [10, 100, all]";

/// Converts `rollout: {...}`; `None` when anything in it is invalid (already reported).
pub(super) fn rollout(e: &Entry, sink: &mut Sink) -> Option<RolloutSpec> {
    let before = sink.diagnostics.len();
    let fields = mapping(&e.value, "`rollout`", ROLLOUT_KEYS, sink)?;
    let mut spec = RolloutSpec {
        waves: Vec::new(),
        first: None,
        bake: DEFAULT_BAKE,
        timeout: DEFAULT_TIMEOUT,
        halt: Halt::default(),
        on_halt: OnHalt::default(),
        location: e.key_loc.clone(),
    };
    for f in fields {
        let v = &f.value;
        match f.key.as_str() {
            "waves" => spec.waves = waves(v, sink),
            "first" => spec.first = first(v, sink),
            "bake" => spec.bake = duration(v, "`rollout.bake`", sink).unwrap_or(DEFAULT_BAKE),
            "timeout" => {
                if let Some(d) = duration(v, "`rollout.timeout`", sink) {
                    if d.is_zero() {
                        sink.error(
                            &v.loc,
                            "`rollout.timeout` is 0s; a wave needs time to pass its gate, e.g. 10m"
                                .to_string(),
                        );
                    }
                    spec.timeout = d;
                }
            }
            "halt" => spec.halt = halt(v, sink),
            "on_halt" => spec.on_halt = on_halt(v, sink).unwrap_or_default(),
            _ => {}
        }
    }
    if !fields.iter().any(|f| f.key == "waves") {
        sink.error(
            &e.value.loc,
            format!("`rollout` needs `waves`, {WAVES_EXAMPLE}"),
        );
    }
    (sink.diagnostics.len() == before).then_some(spec)
}

/// One written step and where it was written.
struct Written {
    step: Step,
    loc: Location,
}

fn waves(v: &Node, sink: &mut Sink) -> Vec<Step> {
    let Kind::Seq(items) = &v.kind else {
        type_error::<()>(
            v,
            "`rollout.waves`",
            &format!("a sequence of waves, {WAVES_EXAMPLE}"),
            sink,
        );
        return Vec::new();
    };
    if items.is_empty() {
        sink.error(
            &v.loc,
            format!("`rollout.waves` is empty; it needs at least one wave, {WAVES_EXAMPLE}"),
        );
        return Vec::new();
    }
    let written: Vec<Option<Written>> = items.iter().map(|n| step(n, sink)).collect();
    let Some(written) = written.into_iter().collect::<Option<Vec<Written>>>() else {
        return Vec::new();
    };
    let share = written.iter().find(|w| matches!(w.step, Step::Share(_)));
    let count = written.iter().find(|w| matches!(w.step, Step::Count(_)));
    if let (Some(s), Some(c)) = (share, count) {
        let (later, earlier) = if s.loc > c.loc { (s, c) } else { (c, s) };
        sink.error(
            &later.loc,
            format!(
                "wave `{}` mixes shares and counts with `{}` at {}; `waves` holds either shares (5%, 25%, 100%) or counts (10, 100, all)",
                later.step, earlier.step, earlier.loc
            ),
        );
        return Vec::new();
    }
    let mut ok = true;
    for pair in written.windows(2) {
        let (prev, next) = (&pair[0], &pair[1]);
        if rank(next.step) <= rank(prev.step) {
            sink.error(
                &next.loc,
                format!(
                    "wave `{}` is not more than the wave before it (`{}`); waves are cumulative, so each must cover more twins than the one before",
                    next.step, prev.step
                ),
            );
            ok = false;
        }
    }
    if let Some(last) = written.last()
        && !last.step.covers_all()
    {
        let end = if share.is_some() { "100%" } else { "all" };
        sink.error(
            &last.loc,
            format!(
                "the last wave is `{}`; the last wave must cover every twin rolled out, so end `waves` with `{end}`",
                last.step
            ),
        );
        ok = false;
    }
    if !ok {
        return Vec::new();
    }
    written.into_iter().map(|w| w.step).collect()
}

/// Orders steps of one kind; `all` is above every count and share.
fn rank(step: Step) -> u64 {
    match step {
        Step::Share(s) => u64::from(s.basis_points()),
        Step::Count(c) => c,
        Step::All => u64::MAX,
    }
}

fn step(n: &Node, sink: &mut Sink) -> Option<Written> {
    let at = |step| {
        Some(Written {
            step,
            loc: n.loc.clone(),
        })
    };
    match &n.kind {
        Kind::Str(s) if s == "all" => at(Step::All),
        Kind::Str(s) if s.ends_with('%') => match Share::parse(s) {
            Some(share) if share > Share::ZERO => at(Step::Share(share)),
            _ => {
                sink.error(
                    &n.loc,
                    format!(
                        "wave `{}` is not a valid share; a wave share is more than 0% and at most 100%, with at most two decimals, e.g. 5% or 12.5%",
                        twin::shorten(s)
                    ),
                );
                None
            }
        },
        Kind::Str(s) => {
            sink.error(
                &n.loc,
                format!(
                    "wave `{}` is invalid; a wave is {WAVE_FORMS}",
                    twin::shorten(s)
                ),
            );
            None
        }
        Kind::Int(i) => match u64::try_from(*i) {
            Ok(c) if c >= 1 => at(Step::Count(c)),
            _ => {
                sink.error(
                    &n.loc,
                    format!("wave count {i} is invalid; a wave count is a whole number of twins, at least 1"),
                );
                None
            }
        },
        _ => type_error(n, "a wave", WAVE_FORMS, sink),
    }
}

fn first(v: &Node, sink: &mut Sink) -> Option<JsonMap> {
    let fields = mapping(v, "`rollout.first`", FIRST_KEYS, sink)?;
    let Some(tags) = fields.iter().find(|f| f.key == "tags") else {
        sink.error(
            &v.loc,
            "`rollout.first` needs `tags`, e.g. {tags: {ring: canary}}".to_string(),
        );
        return None;
    };
    let Kind::Map(entries) = &tags.value.kind else {
        return type_error(&tags.value, "`rollout.first.tags`", "a mapping", sink);
    };
    if entries.is_empty() {
        sink.error(
            &tags.value.loc,
            "`rollout.first.tags` is empty; name the tags that mark the first twins, e.g. {ring: canary}"
                .to_string(),
        );
        return None;
    }
    twin::check_section(Section::Tags, &tags.value, Scope::Rollout, sink);
    let names = Names {
        device: "",
        module: None,
    };
    Some(twin::to_json(entries, names, sink))
}

/// A duration in the one grammar (`30s`, `5m`, `1h`, bare seconds); `None` when reported.
fn duration(v: &Node, what: &str, sink: &mut Sink) -> Option<Duration> {
    let text = match &v.kind {
        Kind::Str(s) => s.clone(),
        Kind::Int(i) => i.to_string(),
        Kind::Float(f) => f.to_string(),
        _ => {
            return type_error(
                v,
                what,
                "a duration such as 30s, 5m or 1h, or a number of seconds",
                sink,
            );
        }
    };
    match twinops_iothub::duration::parse(&text) {
        Ok(d) => Some(d),
        Err(e) => {
            sink.error(&v.loc, format!("{what} is invalid: {e}"));
            None
        }
    }
}

fn halt(v: &Node, sink: &mut Sink) -> Halt {
    let mut halt = Halt::default();
    let Some(fields) = mapping(v, "`rollout.halt`", HALT_KEYS, sink) else {
        return halt;
    };
    for f in fields {
        let what = format!("`rollout.halt.{}`", f.key);
        let share = match &f.value.kind {
            Kind::Str(s) => Share::parse(s).or_else(|| {
                sink.error(
                    &f.value.loc,
                    format!(
                        "{what} `{}` is not a valid share; write 0% to 100% with at most two decimals, e.g. 0% or 2.5%",
                        twin::shorten(s)
                    ),
                );
                None
            }),
            _ => type_error(&f.value, &what, "a share such as 0% or 5%", sink),
        };
        match (f.key.as_str(), share) {
            ("rejected", Some(s)) => halt.rejected = s,
            ("pending", Some(s)) => halt.pending = s,
            _ => {}
        }
    }
    halt
}

fn on_halt(v: &Node, sink: &mut Sink) -> Option<OnHalt> {
    let text = string(v, "`rollout.on_halt`", sink)?;
    match ON_HALTS.iter().find(|o| o.as_str() == text) {
        Some(o) => Some(*o),
        None => {
            sink.error(
                &v.loc,
                format!(
                    "on_halt `{}` is invalid; allowed: {}",
                    twin::shorten(text),
                    ON_HALTS.map(OnHalt::as_str).join(", ")
                ),
            );
            None
        }
    }
}
