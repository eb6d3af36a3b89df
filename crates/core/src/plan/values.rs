//! The values a twin change carries: a twin's tags and desired properties as content or merge patch
//! ([`TwinPatch`]), and the owned values the 412 rule compares ([`OwnedValues`]).

use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Value, json};

use crate::model::{JsonMap, Section};

/// Tags and desired properties: a twin's content at creation, or a merge patch of an existing twin.
/// In plan documents: `{"tags": {…}, "properties": {"desired": {…}}}`, empty sections left out.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(from = "PatchDoc")]
pub struct TwinPatch {
    pub tags: JsonMap,
    pub desired: JsonMap,
}

impl TwinPatch {
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.desired.is_empty()
    }

    /// The document form, which is also IoT Hub's twin PATCH body.
    pub fn to_value(&self) -> Value {
        let mut p = JsonMap::new();
        if !self.tags.is_empty() {
            p.insert("tags".into(), Value::Object(self.tags.clone()));
        }
        if !self.desired.is_empty() {
            p.insert("properties".into(), json!({"desired": self.desired}));
        }
        Value::Object(p)
    }
}

impl Serialize for TwinPatch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(s)
    }
}

/// A twin patch as read: nothing but `tags` and `properties.desired`, each an object.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchDoc {
    #[serde(default)]
    tags: JsonMap,
    #[serde(default)]
    properties: PropertiesDoc,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PropertiesDoc {
    #[serde(default)]
    desired: JsonMap,
}

impl From<PatchDoc> for TwinPatch {
    fn from(doc: PatchDoc) -> TwinPatch {
        TwinPatch {
            tags: doc.tags,
            desired: doc.properties.desired,
        }
    }
}

/// The owned values of one twin as the 412 rule compares them: `{"tags": {K: v|null}, "desired":
/// {K: v|null}}` over fixed keys, ignored paths removed and sensitive values as digests.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnedValues {
    pub tags: JsonMap,
    pub desired: JsonMap,
}

impl OwnedValues {
    pub fn section(&self, s: Section) -> &JsonMap {
        match s {
            Section::Tags => &self.tags,
            Section::Desired => &self.desired,
        }
    }

    /// The owned keys whose values differ from `other` (`tags.K`, `desired.K`).
    pub fn changed_keys(&self, other: &OwnedValues) -> Vec<String> {
        let mut out = Vec::new();
        for s in [Section::Tags, Section::Desired] {
            let theirs = other.section(s);
            for (k, v) in self.section(s) {
                if theirs.get(k) != Some(v) {
                    out.push(format!("{}.{k}", s.as_str()));
                }
            }
        }
        out
    }
}
