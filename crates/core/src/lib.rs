//! twinops-core: the pure reconciler.
//!
//! Data flows down this list; nothing here does network, database, clock or randomness work (the
//! manifest loader reads the files it is given, and nothing else):
//!
//! - [`manifest`] reads YAML manifests into a validated [`model::Fleet`]: templates, ranges,
//!   `${device}` substitution, `${env:NAME}` secret references (the environment passed in, never
//!   read here), every validation rule with `file:line:column`, the ID and twin rules
//!   taken from `twinops-iothub` so that the loader and the emulator enforce one definition;
//!   `manifest::schema` is the format's JSON Schema for editors, built from the loader's own key lists.
//! - [`model`] holds the values the planner works on: what the manifests want and what the hub holds.
//! - [`plan`] diffs the fleet against the observed state through the ownership ledger into a
//!   [`plan::Plan`] of typed changes with minimal merge patches and the etags they were computed
//!   against; `plan::document` is the JSON plan document's form of a change (`format_version` 1), a
//!   derived serde enum whose types check a saved plan as it is read; `plan::secret` conceals
//!   sensitive values in plan documents and gets them back (with digest checks) when a saved plan is
//!   read; `plan::drift` classifies drift and device acknowledgements; `plan::rollout` puts the
//!   rolled-out twin updates into deterministic waves (SPEC §11) and holds the gate arithmetic.
//! - [`report`] is what an apply did, item by item (the executor fills it in).
//! - [`render`] turns plans, reports and drift into text, JSON and markdown, generic over the writer.

// What code outside this crate does not use is `pub(crate)`, so rustc reports what is dead.
#![warn(unreachable_pub)]

pub mod manifest;
pub mod model;
pub mod plan;
pub mod render;
pub mod report;
