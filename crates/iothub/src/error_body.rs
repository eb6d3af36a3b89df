//! The two error body formats IoT Hub answers with (its codes are [`crate::error_code`]).
//!
//! Legacy: `{"Message":"ErrorCode:<Name>;<text>","ExceptionMessage":"Tracking ID:…"}`.
//! Structured: `{"Message":"{\"errorCode\":401002,\"trackingId\":…,\"message\":…}","ExceptionMessage":""}`.

use serde::{Deserialize, Serialize};

use crate::error_code::ErrorCode;

/// The error body as sent on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(rename = "Message")]
    pub message: String,
    #[serde(rename = "ExceptionMessage", default)]
    pub exception_message: String,
}

/// The legacy body for `code` with a human `text` and a tracking ID; `timestamp` is `MM/dd/yyyy HH:mm:ss`.
pub fn legacy(code: &ErrorCode, text: &str, tracking_id: &str, timestamp: &str) -> ErrorBody {
    ErrorBody {
        message: format!("ErrorCode:{code};{text}"),
        exception_message: format!("Tracking ID:{tracking_id}-G:0-TimeStamp:{timestamp}"),
    }
}

/// What a client can learn from an error body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed {
    pub code: Option<ErrorCode>,
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
                .map(ErrorCode::from_number),
            Some(serde_json::Value::String(s)) => Some(ErrorCode::parse(s)),
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
            code: Some(ErrorCode::parse(code)),
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
        assert_eq!(p.code, Some(ErrorCode::DeviceAlreadyExists));
        assert_eq!(p.message.as_deref(), Some("Conflict"));
    }

    #[test]
    fn structured_body_parses_with_numeric_code() {
        let p = parse(br#"{"Message":"{\"errorCode\":401002,\"trackingId\":\"84f2-G:6\",\"message\":\"Unauthorized\",\"timestampUtc\":\"2018-08-28T15:34:17.5432324Z\"}","ExceptionMessage":""}"#);
        assert_eq!(p.code, Some(ErrorCode::IotHubUnauthorizedAccess));
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
            &ErrorCode::PreconditionFailed,
            "etag mismatch",
            "t1",
            "01/02/2026 03:04:05",
        );
        let bytes = serde_json::to_vec(&b).unwrap();
        assert_eq!(parse(&bytes).code, Some(ErrorCode::PreconditionFailed));
    }
}
