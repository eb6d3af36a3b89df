//! The emulator's domain errors and their conversion, at the HTTP edge only, into IoT Hub's error
//! responses: the status, the `iothub-errorcode` header and the legacy body
//! `{"Message":"ErrorCode:<Name>;<text>","ExceptionMessage":"Tracking ID:…"}`.
//!
//! Texts name IDs and rules, never keys or tokens.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::clock;
use twinops_iothub::error_code::ErrorCode;
use twinops_iothub::{ERROR_CODE_HEADER, error_body};

/// One variant per answer IoT Hub gives.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Error {
    #[error("api-version is missing or not supported")]
    InvalidProtocolVersion,
    #[error("{0}")]
    ArgumentInvalid(String),
    #[error("{0}")]
    Deserialization(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    SystemModule(String),
    #[error("{0}")]
    DeviceNotFound(String),
    #[error("{device}/{module}")]
    ModuleNotFound { device: String, module: String },
    #[error("{0}")]
    DeviceAlreadyExists(String),
    #[error("{device}/{module}")]
    ModuleAlreadyExists { device: String, module: String },
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    MessageTooLarge(String),
    #[error("{0}")]
    TooManyDevices(String),
    #[error("device {0} has the maximum number of modules")]
    TooManyModules(String),
    #[error("{0}")]
    RouteNotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    ConfigurationNotFound(String),
    #[error("{0}")]
    ConfigurationAlreadyExists(String),
    /// Configuration content that is not `properties.desired...`, or an edge deployment without
    /// `$edgeAgent`.
    #[error("{0}")]
    InvalidConfigurationContent(String),
    /// An unquoted `If-Match` on a configuration: live hubs answer 409.
    #[error("{0}")]
    UnquotedEtag(String),
    /// An import or export job is already running: one at a time per hub.
    #[error("{0}")]
    JobQuotaExceeded(String),
    #[error("{0}")]
    JobNotFound(String),
    /// The storage container of an import or export job cannot be used (a bad SAS, a missing
    /// container, a store that cannot be reached). The text never holds the container URI.
    #[error("{0}")]
    BlobContainerValidation(String),
    /// Over quota (throttling) or an injected 429; holds the operation type.
    #[error("The request has been throttled. Wait 10 seconds and try again. Operation type: {0}")]
    Throttled(String),
    /// A throttled configuration write: live hubs shape configuration writes (about one a
    /// second) and answer one that waited too long `ThrottlingBacklogTimeout` (live-hub.md).
    #[error("The request has been throttled. Wait 10 seconds and try again. Operation type: {0}")]
    BacklogTimeout(String),
    /// An injected 503.
    #[error("{0}")]
    Unavailable(String),
    /// The store failed; the request may be retried.
    #[error("{0}")]
    Server(String),
}

impl Error {
    /// IoT Hub's error code name (`iothub-errorcode`).
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidProtocolVersion => ErrorCode::InvalidProtocolVersion,
            Error::ArgumentInvalid(_) => ErrorCode::ArgumentInvalid,
            Error::Deserialization(_) => ErrorCode::DeserializationError,
            Error::Unauthorized(_) => ErrorCode::IotHubUnauthorizedAccess,
            Error::SystemModule(_) => ErrorCode::SystemModuleModifyUnauthorizedAccess,
            Error::DeviceNotFound(_) => ErrorCode::DeviceNotFound,
            Error::ModuleNotFound { .. } => ErrorCode::ModuleNotFound,
            Error::DeviceAlreadyExists(_) => ErrorCode::DeviceAlreadyExists,
            Error::ModuleAlreadyExists { .. } => ErrorCode::ModuleAlreadyExistsOnDevice,
            Error::PreconditionFailed(_) => ErrorCode::PreconditionFailed,
            Error::MessageTooLarge(_) => ErrorCode::MessageTooLarge,
            Error::TooManyDevices(_) => ErrorCode::TooManyDevices,
            Error::TooManyModules(_) => ErrorCode::TooManyModulesOnDevice,
            Error::RouteNotFound(_) => ErrorCode::NotFound,
            Error::MethodNotAllowed(_) => ErrorCode::InvalidOperation,
            Error::ConfigurationNotFound(_) => ErrorCode::ConfigurationNotFound,
            Error::ConfigurationAlreadyExists(_) => ErrorCode::ConfigurationAlreadyExists,
            Error::InvalidConfigurationContent(_) => ErrorCode::InvalidConfigurationContent,
            Error::UnquotedEtag(_) => ErrorCode::PreconditionFailed,
            Error::JobQuotaExceeded(_) => ErrorCode::JobQuotaExceeded,
            Error::JobNotFound(_) => ErrorCode::JobNotFound,
            Error::BlobContainerValidation(_) => ErrorCode::BlobContainerValidationError,
            Error::Throttled(_) => ErrorCode::ThrottlingException,
            Error::BacklogTimeout(_) => ErrorCode::ThrottlingBacklogTimeout,
            Error::Unavailable(_) => ErrorCode::ServiceUnavailable,
            Error::Server(_) => ErrorCode::ServerError,
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Error::InvalidProtocolVersion
            | Error::ArgumentInvalid(_)
            | Error::Deserialization(_)
            | Error::InvalidConfigurationContent(_)
            | Error::BlobContainerValidation(_) => StatusCode::BAD_REQUEST,
            Error::JobQuotaExceeded(_) => StatusCode::FORBIDDEN,
            Error::Unauthorized(_) | Error::SystemModule(_) => StatusCode::UNAUTHORIZED,
            Error::DeviceNotFound(_)
            | Error::ModuleNotFound { .. }
            | Error::RouteNotFound(_)
            | Error::ConfigurationNotFound(_)
            | Error::JobNotFound(_) => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::DeviceAlreadyExists(_)
            | Error::ModuleAlreadyExists { .. }
            | Error::ConfigurationAlreadyExists(_)
            | Error::UnquotedEtag(_) => StatusCode::CONFLICT,
            Error::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Error::MessageTooLarge(_) | Error::TooManyDevices(_) | Error::TooManyModules(_) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Error::Throttled(_) | Error::BacklogTimeout(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Server(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The text after `ErrorCode:<Name>;` in the body.
    pub(crate) fn text(&self) -> String {
        match self {
            Error::InvalidProtocolVersion => "BadRequest".to_string(),
            Error::Unauthorized(_) => "Unauthorized".to_string(),
            Error::DeviceAlreadyExists(_)
            | Error::ModuleAlreadyExists { .. }
            | Error::ConfigurationAlreadyExists(_) => format!("Conflict: {self}"),
            _ => self.to_string(),
        }
    }
}

impl From<redb::Error> for Error {
    fn from(e: redb::Error) -> Self {
        Error::Server(format!("storage: {e}"))
    }
}

macro_rules! storage_error {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::from(redb::Error::from(e))
            }
        }
    )*};
}
storage_error!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// A 32-hex-digit tracking ID, as IoT Hub puts in every error.
pub(crate) fn tracking_id() -> String {
    crate::random_hex(16)
}

/// The legacy error response for a code name, status and text.
pub(crate) fn response(status: StatusCode, code: &ErrorCode, text: &str) -> Response {
    let body = error_body::legacy(code, text, &tracking_id(), &clock::error_timestamp());
    let mut resp = (status, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(code.as_str()) {
        resp.headers_mut().insert(ERROR_CODE_HEADER, v);
    }
    resp
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if let Error::Server(msg) = &self {
            tracing::error!(error = %msg, "request failed in the store");
        }
        let mut resp = response(self.status(), &self.code(), &self.text());
        if let Error::Throttled(_) | Error::BacklogTimeout(_) = self {
            // Live hubs close the connection after a 429 (and send no Retry-After), so a client
            // must reconnect cleanly. HTTP/2 has no such header: hyper leaves it out there.
            resp.headers_mut().insert(
                axum::http::header::CONNECTION,
                HeaderValue::from_static("close"),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_their_statuses() {
        assert_eq!(
            Error::DeviceAlreadyExists("d".into()).status(),
            StatusCode::CONFLICT
        );
        assert_eq!(
            Error::TooManyModules("d".into()).code(),
            ErrorCode::TooManyModulesOnDevice
        );
        assert_eq!(
            Error::InvalidProtocolVersion.status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            Error::Unauthorized("expired".into()).status(),
            StatusCode::UNAUTHORIZED
        );
        // Every code the emulator sends whose number IoT Hub publishes agrees on the status.
        for e in [
            Error::InvalidProtocolVersion,
            Error::ArgumentInvalid(String::new()),
            Error::DeviceNotFound(String::new()),
            Error::PreconditionFailed(String::new()),
            Error::TooManyDevices(String::new()),
            Error::MessageTooLarge(String::new()),
            Error::ConfigurationNotFound(String::new()),
            Error::ConfigurationAlreadyExists(String::new()),
            Error::JobQuotaExceeded(String::new()),
            Error::JobNotFound(String::new()),
            Error::Throttled(String::new()),
            Error::BacklogTimeout(String::new()),
            Error::Unavailable(String::new()),
            Error::Server(String::new()),
        ] {
            let n = e.code().number().unwrap();
            assert_eq!(u32::from(e.status().as_u16()), n / 1000, "{}", e.code());
        }
    }

    #[tokio::test]
    async fn response_carries_header_and_legacy_body() {
        let resp = Error::DeviceNotFound("d1".into()).into_response();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(resp.headers()[ERROR_CODE_HEADER], "DeviceNotFound");
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["Message"], "ErrorCode:DeviceNotFound;d1");
        let em = body["ExceptionMessage"].as_str().unwrap();
        let re_ok = em.starts_with("Tracking ID:")
            && em.contains("-G:0-TimeStamp:")
            && em["Tracking ID:".len()..]
                .chars()
                .take(32)
                .all(|c| c.is_ascii_hexdigit());
        assert!(re_ok, "{em}");
        assert_eq!(
            error_body::parse(&bytes).code,
            Some(ErrorCode::DeviceNotFound)
        );
    }
}
