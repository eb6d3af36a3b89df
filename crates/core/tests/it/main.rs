//! The integration tests of twinops-core, one test binary: manifests loaded from files (the example
//! fleet, the rules with every message snapshotted (the hub objects' in `manifest_objects`), the hostile corpus, the JSON Schema checked by a real
//! validator) and the renderers' snapshots.
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

mod manifest_corpus;
mod manifest_load;
mod manifest_objects;
mod manifest_rules;
mod manifest_schema;
mod patch_property;
mod plan_document;
mod plan_scope;
mod render_snapshots;
