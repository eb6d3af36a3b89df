//! Plans and reports as text, JSON and markdown (PURE: generic over `io::Write`, no terminal access).
//! Sensitive values, already digests in the plan, are shown as `(sensitive)`.

pub mod markdown;
pub mod text;

use std::io::{self, Write};

use serde_json::Value;

use crate::plan::is_sensitive_digest;

/// Replaces sensitive digests anywhere in a value by `(sensitive)`.
pub fn redact(v: &Value) -> Value {
    match v {
        v if is_sensitive_digest(v) => Value::String("(sensitive)".into()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), redact(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(redact).collect()),
        other => other.clone(),
    }
}

/// An outcome in JSON reports: `{kind, device_id, module_id, status, detail, keys}`, its reason
/// in the words the text report shows.
impl serde::Serialize for crate::report::Outcome {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        struct Doc<'a> {
            kind: crate::plan::Kind,
            #[serde(flatten)]
            address: &'a crate::model::Address,
            status: crate::report::Status,
            #[serde(skip_serializing_if = "Option::is_none")]
            detail: Option<String>,
            #[serde(skip_serializing_if = "<[String]>::is_empty")]
            keys: &'a [String],
        }
        Doc {
            kind: self.kind,
            address: &self.address,
            status: self.status,
            detail: self.reason.as_ref().map(|r| text::Words(r).to_string()),
            keys: &self.keys,
        }
        .serialize(s)
    }
}

/// Pretty JSON of a serializable value followed by a newline.
pub fn json<T: serde::Serialize>(out: &mut impl Write, v: &T) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, v)?;
    writeln!(out)
}

/// A value as one line of JSON, `(sensitive)` for digests.
pub fn inline(v: &Value) -> String {
    let v = redact(v);
    match &v {
        Value::String(s) if s == "(sensitive)" => s.clone(),
        other => other.to_string(),
    }
}

/// ` [k1, k2]` for the keys a reason does not already name (a conflict's reason names the paths
/// other owners manage; a resend's names none), or nothing.
pub(crate) fn keys_suffix(reason: &str, keys: &[String]) -> String {
    let unnamed: Vec<&str> = keys
        .iter()
        .map(String::as_str)
        .filter(|k| !reason.contains(k))
        .collect();
    if unnamed.is_empty() {
        String::new()
    } else {
        format!(" [{}]", unnamed.join(", "))
    }
}
