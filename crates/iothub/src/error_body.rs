//! IoT Hub's error codes and the two error body formats it answers with.
//!
//! Legacy: `{"Message":"ErrorCode:<Name>;<text>","ExceptionMessage":"Tracking ID:…"}`.
//! Structured: `{"Message":"{\"errorCode\":401002,\"trackingId\":…,\"message\":…}","ExceptionMessage":""}`.

use serde::{Deserialize, Serialize};

/// The error body as sent on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(rename = "Message")]
    pub message: String,
    #[serde(rename = "ExceptionMessage", default)]
    pub exception_message: String,
}

/// Error code names with their numbers; the hundreds give the HTTP status.
pub(crate) const CODES: &[(&str, u32)] = &[
    ("InvalidProtocolVersion", 400001),
    ("InvalidOperation", 400003),
    ("ArgumentInvalid", 400004),
    ("ArgumentNull", 400005),
    ("IotHubFormatError", 400006),
    ("DeviceDefinedMultipleTimes", 400011),
    ("DeserializationError", 400012),
    ("BulkRegistryOperationFailure", 400013),
    ("CannotRegisterModuleToModule", 400301),
    ("IotHubNotFound", 401001),
    ("IotHubUnauthorizedAccess", 401002),
    ("IotHubUnauthorized", 401003),
    ("IotHubSuspended", 403001),
    ("IotHubQuotaExceeded", 403002),
    ("DeviceNotFound", 404001),
    ("JobNotFound", 404002),
    ("ModuleNotFound", 404010),
    ("ConfigurationNotFound", 404011),
    ("DeviceAlreadyExists", 409001),
    ("ModuleAlreadyExistsOnDevice", 409301),
    ("ConfigurationAlreadyExists", 409005),
    ("PreconditionFailed", 412001),
    ("MessageTooLarge", 413001),
    ("TooManyDevices", 413002),
    ("TooManyModulesOnDevice", 413003),
    ("GenericTooManyRequests", 429000),
    ("ThrottlingException", 429001),
    ("ThrottleBacklogLimitExceeded", 429002),
    ("ThrottlingBacklogTimeout", 429003),
    ("ServerError", 500001),
    ("ServiceUnavailable", 503001),
];

/// The number of a named code, if known.
pub fn code_number(name: &str) -> Option<u32> {
    CODES.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
}

/// The name of a numbered code, if known.
pub(crate) fn code_name(number: u32) -> Option<&'static str> {
    CODES.iter().find(|(_, c)| *c == number).map(|(n, _)| *n)
}

/// The legacy body for `code` with a human `text` and a tracking ID; `timestamp` is `MM/dd/yyyy HH:mm:ss`.
pub fn legacy(code: &str, text: &str, tracking_id: &str, timestamp: &str) -> ErrorBody {
    ErrorBody {
        message: format!("ErrorCode:{code};{text}"),
        exception_message: format!("Tracking ID:{tracking_id}-G:0-TimeStamp:{timestamp}"),
    }
}

/// What a client can learn from an error body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed {
    pub code: Option<String>,
    pub message: Option<String>,
}

/// Reads either body format; unknown bodies give an empty result.
pub fn parse(body: &[u8]) -> Parsed {
    let Ok(b) = serde_json::from_slice::<ErrorBody>(body) else {
        return Parsed::default();
    };
    if let Ok(inner) = serde_json::from_str::<serde_json::Value>(&b.message)
        && inner.is_object()
    {
        let code = match inner.get("errorCode") {
            Some(serde_json::Value::Number(n)) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(|n| code_name(n).map(str::to_string).unwrap_or(n.to_string())),
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            _ => None,
        };
        let message = inner
            .get("message")
            .and_then(|m| m.as_str())
            .map(str::to_string);
        return Parsed { code, message };
    }
    if let Some(rest) = b.message.strip_prefix("ErrorCode:") {
        let (code, text) = rest.split_once(';').unwrap_or((rest, ""));
        return Parsed {
            code: Some(code.to_string()),
            message: Some(text.to_string()).filter(|t| !t.is_empty()),
        };
    }
    Parsed {
        code: None,
        message: Some(b.message).filter(|m| !m.is_empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_body_parses() {
        let p = parse(br#"{"Message":"ErrorCode:DeviceAlreadyExists;Conflict","ExceptionMessage":"Tracking ID:abc-G:11-TimeStamp:07/16/2016 00:12:41"}"#);
        assert_eq!(p.code.as_deref(), Some("DeviceAlreadyExists"));
        assert_eq!(p.message.as_deref(), Some("Conflict"));
    }

    #[test]
    fn structured_body_parses_with_numeric_code() {
        let p = parse(br#"{"Message":"{\"errorCode\":401002,\"trackingId\":\"84f2-G:6\",\"message\":\"Unauthorized\",\"timestampUtc\":\"2018-08-28T15:34:17.5432324Z\"}","ExceptionMessage":""}"#);
        assert_eq!(p.code.as_deref(), Some("IotHubUnauthorizedAccess"));
        assert_eq!(p.message.as_deref(), Some("Unauthorized"));
    }

    #[test]
    fn unknown_bodies_give_nothing() {
        assert_eq!(parse(b"<html>"), Parsed::default());
        assert_eq!(parse(b""), Parsed::default());
    }

    #[test]
    fn legacy_builder_round_trips() {
        let b = legacy(
            "PreconditionFailed",
            "etag mismatch",
            "t1",
            "01/02/2026 03:04:05",
        );
        let bytes = serde_json::to_vec(&b).unwrap();
        assert_eq!(parse(&bytes).code.as_deref(), Some("PreconditionFailed"));
        assert_eq!(code_number("PreconditionFailed"), Some(412001));
    }
}
