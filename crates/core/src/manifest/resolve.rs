//! Templates and layering: the set-wide template table (duplicates, unknown names, `extends` cycles) and
//! the merge of a device declaration's layers into one [`Resolved`] device, before IDs are expanded.
//!
//! Layer order: the device's templates in listed order, each after its own `extends` (depth-first), then
//! the device's own fields. A template reached twice (a diamond) is applied once, at its first place, so a
//! shared base never overrides what a later template set. Objects merge deeply, scalars and arrays replace,
//! `null` removes a key; modules merge per module ID; `ignore`/`sensitive` concatenate without duplicates.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::Sink;
use super::raw::{Device, Document, Field, Layer, Located, ModuleLayer, Template, TwinLayer};
use super::twin::shorten;
use super::yaml::{Entry, Kind, Node};
use crate::model::{AuthSpec, DeviceStatus, Location, PropertyPath};

/// Longest chain of `extends`; keeps layering recursion shallow whatever the input.
pub(super) const MAX_TEMPLATE_DEPTH: usize = 32;

/// A twin after layering: merged located values, not yet substituted.
#[derive(Debug, Clone, Default)]
pub(super) struct ResolvedTwin {
    pub tags: Vec<Entry>,
    pub desired: Vec<Entry>,
    pub ignore: Vec<PropertyPath>,
    pub sensitive: Vec<PropertyPath>,
}

#[derive(Debug, Clone)]
pub(super) struct ResolvedModule {
    /// Where the last layer that declared the module wrote its ID.
    pub loc: Location,
    pub managed_by: Option<String>,
    pub auth: Option<AuthSpec>,
    pub twin: ResolvedTwin,
}

/// One device declaration with all its layers applied. An identity field no layer declares (or
/// whose last declaration is `null`) is `None`: not managed.
#[derive(Debug, Clone, Default)]
pub(super) struct Resolved {
    pub status: Option<DeviceStatus>,
    pub status_reason: Option<String>,
    pub auth: Option<AuthSpec>,
    pub edge: Option<bool>,
    pub parent: Option<Located<String>>,
    pub twin: ResolvedTwin,
    /// By module ID, hence sorted.
    pub modules: BTreeMap<String, ResolvedModule>,
}

/// Every template of the set, with the edges and templates that layering must skip.
pub(super) struct Templates<'a> {
    all: Vec<&'a Template>,
    by_name: HashMap<&'a str, usize>,
    /// `(template, extends position)` edges that close a cycle.
    cut: HashSet<(usize, usize)>,
    /// Templates whose `extends` chain is too deep (reported).
    too_deep: HashSet<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Visit {
    New,
    Active,
    Done(usize),
}

impl<'a> Templates<'a> {
    /// Builds the table, reporting duplicate names, unknown `extends` and cycles.
    pub(super) fn new(docs: &'a [Document], sink: &mut Sink) -> Templates<'a> {
        let mut t = Templates {
            all: docs.iter().flat_map(|d| &d.templates).collect(),
            by_name: HashMap::new(),
            cut: HashSet::new(),
            too_deep: HashSet::new(),
        };
        for (i, template) in t.all.iter().enumerate() {
            match t.by_name.get(template.name.as_str()) {
                Some(&first) => sink.error(
                    &template.loc,
                    format!(
                        "template `{}` is already defined at {}",
                        shorten(&template.name),
                        t.all[first].loc
                    ),
                ),
                None => {
                    t.by_name.insert(&template.name, i);
                }
            }
        }
        t.check_graph(sink);
        t
    }

    fn lookup(&self, r: &Located<String>, sink: &mut Sink) -> Option<usize> {
        let found = self.by_name.get(r.value.as_str()).copied();
        if found.is_none() {
            sink.once(
                &r.loc,
                "unknown-template",
                format!("unknown template `{}`; no template of that name is defined in the manifest set", shorten(&r.value)),
            );
        }
        found
    }

    /// Depth-first walk without recursion: finds cycles and the height of every template.
    fn check_graph(&mut self, sink: &mut Sink) {
        let mut state = vec![Visit::New; self.all.len()];
        for root in 0..self.all.len() {
            if state[root] != Visit::New {
                continue;
            }
            state[root] = Visit::Active;
            let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
            while let Some(&mut (i, ref mut pos)) = stack.last_mut() {
                let template: &'a Template = self.all[i];
                let extends = &template.extends;
                if *pos < extends.len() {
                    let edge = *pos;
                    *pos += 1;
                    let Some(j) = self.lookup(&extends[edge], sink) else {
                        continue;
                    };
                    match state[j] {
                        Visit::New => {
                            state[j] = Visit::Active;
                            stack.push((j, 0));
                        }
                        Visit::Active => {
                            let from = stack.iter().position(|&(k, _)| k == j).unwrap_or(0);
                            let mut names: Vec<&str> = stack[from..]
                                .iter()
                                .map(|&(k, _)| self.all[k].name.as_str())
                                .collect();
                            names.push(&self.all[j].name);
                            sink.error(
                                &extends[edge].loc,
                                format!("template `extends` cycle: {}; templates may not extend themselves", names.join(" -> ")),
                            );
                            self.cut.insert((i, edge));
                        }
                        Visit::Done(_) => {}
                    }
                    continue;
                }
                let height = 1 + self.all[i]
                    .extends
                    .iter()
                    .enumerate()
                    .filter(|&(edge, _)| !self.cut.contains(&(i, edge)))
                    .filter_map(|(_, r)| {
                        match self.by_name.get(r.value.as_str()).map(|&j| state[j]) {
                            Some(Visit::Done(h)) => Some(h),
                            _ => None,
                        }
                    })
                    .max()
                    .unwrap_or(0);
                if height > MAX_TEMPLATE_DEPTH {
                    if self.all[i].extends.iter().all(|r| {
                        self.by_name
                            .get(r.value.as_str())
                            .is_none_or(|&j| !self.too_deep.contains(&j))
                    }) {
                        sink.error(
                            &self.all[i].loc,
                            format!(
                                "template `{}` extends templates more than {MAX_TEMPLATE_DEPTH} levels deep; flatten the chain",
                                shorten(&self.all[i].name)
                            ),
                        );
                    }
                    self.too_deep.insert(i);
                }
                state[i] = Visit::Done(height);
                stack.pop();
            }
        }
    }

    /// Merges a device declaration's layers.
    pub(super) fn resolve(&self, device: &Device, sink: &mut Sink) -> Resolved {
        let mut order = Vec::new();
        let mut seen = HashSet::new();
        for r in &device.templates {
            if let Some(i) = self.lookup(r, sink) {
                self.visit(i, &mut order, &mut seen);
            }
        }
        let mut resolved = Resolved::default();
        for i in order {
            apply(&mut resolved, &self.all[i].layer);
        }
        apply(&mut resolved, &device.layer);
        resolved
    }

    /// Recursion depth is bounded by [`MAX_TEMPLATE_DEPTH`]: deeper templates are skipped (reported).
    fn visit(&self, i: usize, order: &mut Vec<usize>, seen: &mut HashSet<usize>) {
        if self.too_deep.contains(&i) || !seen.insert(i) {
            return;
        }
        for (edge, r) in self.all[i].extends.iter().enumerate() {
            if self.cut.contains(&(i, edge)) {
                continue;
            }
            if let Some(&j) = self.by_name.get(r.value.as_str()) {
                self.visit(j, order, seen);
            }
        }
        order.push(i);
    }
}

fn set_option<T: Clone>(slot: &mut Option<T>, field: &Field<T>) {
    if let Some(v) = field {
        slot.clone_from(v);
    }
}

fn apply(to: &mut Resolved, layer: &Layer) {
    set_option(&mut to.status, &layer.status);
    set_option(&mut to.status_reason, &layer.status_reason);
    set_option(&mut to.auth, &layer.auth);
    set_option(&mut to.edge, &layer.edge);
    set_option(&mut to.parent, &layer.parent);
    apply_twin(&mut to.twin, &layer.twin);
    match &layer.modules {
        None => {}
        Some(None) => to.modules.clear(),
        Some(Some(modules)) => {
            for m in modules {
                apply_module(&mut to.modules, m);
            }
        }
    }
}

fn apply_module(modules: &mut BTreeMap<String, ResolvedModule>, layer: &ModuleLayer) {
    if layer.removed {
        modules.remove(&layer.id);
        return;
    }
    let m = modules
        .entry(layer.id.clone())
        .or_insert_with(|| ResolvedModule {
            loc: layer.loc.clone(),
            managed_by: None,
            auth: None,
            twin: ResolvedTwin::default(),
        });
    m.loc = layer.loc.clone();
    set_option(&mut m.managed_by, &layer.managed_by);
    set_option(&mut m.auth, &layer.auth);
    apply_twin(&mut m.twin, &layer.twin);
}

fn apply_twin(to: &mut ResolvedTwin, layer: &TwinLayer) {
    merge_section(&mut to.tags, layer.tags.as_ref());
    merge_section(&mut to.desired, layer.desired.as_ref());
    for p in &layer.ignore {
        if !to.ignore.contains(p) {
            to.ignore.push(p.clone());
        }
    }
    for p in &layer.sensitive {
        if !to.sensitive.contains(p) {
            to.sensitive.push(p.clone());
        }
    }
}

fn merge_section(to: &mut Vec<Entry>, layer: Option<&Node>) {
    match layer.map(|n| &n.kind) {
        Some(Kind::Null) => to.clear(),
        Some(Kind::Map(entries)) => merge(to, entries),
        _ => {}
    }
}

/// Deep merge of one layer's mapping into the accumulated one; `null` removes, scalars and arrays replace.
pub(super) fn merge(to: &mut Vec<Entry>, layer: &[Entry]) {
    let mut index: HashMap<String, usize> = to
        .iter()
        .enumerate()
        .map(|(i, e)| (e.key.clone(), i))
        .collect();
    let mut removed = vec![false; to.len()];
    for e in layer {
        let existing = index.get(&e.key).copied().filter(|&i| !removed[i]);
        match (&e.value.kind, existing) {
            (Kind::Null, Some(i)) => removed[i] = true,
            (Kind::Null, None) => {}
            (Kind::Map(inner), Some(i)) if matches!(to[i].value.kind, Kind::Map(_)) => {
                to[i].key_loc = e.key_loc.clone();
                if let Kind::Map(acc) = &mut to[i].value.kind {
                    merge(acc, inner);
                }
            }
            (_, Some(i)) => to[i] = placed(e),
            (_, None) => {
                index.insert(e.key.clone(), to.len());
                removed.push(false);
                to.push(placed(e));
            }
        }
    }
    let mut i = 0;
    to.retain(|_| {
        i += 1;
        !removed[i - 1]
    });
}

/// A layer entry as it enters the result: mappings lose their `null` members (nothing to remove there).
fn placed(e: &Entry) -> Entry {
    let value = match &e.value.kind {
        Kind::Map(inner) => {
            let mut fresh = Vec::new();
            merge(&mut fresh, inner);
            Node {
                loc: e.value.loc.clone(),
                kind: Kind::Map(fresh),
            }
        }
        _ => e.value.clone(),
    };
    Entry {
        key: e.key.clone(),
        key_loc: e.key_loc.clone(),
        value,
    }
}
