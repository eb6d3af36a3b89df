//! IoT Hub's error codes, defined once for the client and the emulator: the names the
//! `iothub-errorcode` header and the error bodies carry, their published numbers (the hundreds give
//! the HTTP status), and what a status plus a code means to a caller ([`Meaning`]).
//!
//! A code this crate does not know is kept as the hub sent it ([`ErrorCode::Other`]): the hub adds
//! codes, and a client must still report them.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident = $number:expr),* $(,)?) => {
        /// One of IoT Hub's error codes.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $name,)*
            /// A code not listed here, as the hub sent it.
            Other(String),
        }

        impl ErrorCode {
            /// Every known code.
            pub const KNOWN: &'static [ErrorCode] = &[$(ErrorCode::$name),*];

            /// The name on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    $(ErrorCode::$name => stringify!($name),)*
                    ErrorCode::Other(text) => text,
                }
            }

            /// IoT Hub's published number (`404001`), when it has one.
            pub fn number(&self) -> Option<u32> {
                match self {
                    $(ErrorCode::$name => $number,)*
                    ErrorCode::Other(_) => None,
                }
            }
        }
    };
}

codes! {
    InvalidProtocolVersion = Some(400001),
    InvalidOperation = Some(400003),
    ArgumentInvalid = Some(400004),
    ArgumentNull = Some(400005),
    IotHubFormatError = Some(400006),
    DeviceDefinedMultipleTimes = Some(400011),
    DeserializationError = Some(400012),
    BulkRegistryOperationFailure = Some(400013),
    /// The storage container of an import or export job cannot be used (a bad SAS, no access).
    BlobContainerValidationError = None,
    CannotRegisterModuleToModule = Some(400301),
    /// A configuration's content or target condition is not one IoT Hub accepts.
    InvalidConfigurationContent = None,
    IotHubNotFound = Some(401001),
    IotHubUnauthorizedAccess = Some(401002),
    IotHubUnauthorized = Some(401003),
    /// `$edgeAgent` and `$edgeHub` cannot be changed through the registry.
    SystemModuleModifyUnauthorizedAccess = None,
    /// The hub is suspended (its subscription, or by its owner).
    IotHubSuspended = Some(403001),
    /// The hub's daily message quota is used up: refused until it resets (midnight UTC).
    IotHubQuotaExceeded = Some(403002),
    /// An import or export job is already running (one at a time per hub).
    JobQuotaExceeded = Some(403003),
    DeviceNotFound = Some(404001),
    JobNotFound = Some(404002),
    ModuleNotFound = Some(404010),
    ConfigurationNotFound = Some(404011),
    /// No such route (the emulator's answer to an unknown path).
    NotFound = None,
    DeviceAlreadyExists = Some(409001),
    ConfigurationAlreadyExists = Some(409005),
    ModuleAlreadyExistsOnDevice = Some(409301),
    PreconditionFailed = Some(412001),
    MessageTooLarge = Some(413001),
    TooManyDevices = Some(413002),
    TooManyModulesOnDevice = Some(413003),
    GenericTooManyRequests = Some(429000),
    ThrottlingException = Some(429001),
    ThrottleBacklogLimitExceeded = Some(429002),
    ThrottlingBacklogTimeout = Some(429003),
    ServerError = Some(500001),
    ServiceUnavailable = Some(503001),
}

impl ErrorCode {
    /// Reads a code name; one this crate does not know is kept as [`ErrorCode::Other`].
    pub fn parse(text: &str) -> ErrorCode {
        ErrorCode::KNOWN
            .iter()
            .find(|c| c.as_str() == text)
            .cloned()
            .unwrap_or_else(|| ErrorCode::Other(text.to_string()))
    }

    /// The code of a published number (the structured error body carries numbers).
    pub fn from_number(number: u32) -> ErrorCode {
        ErrorCode::KNOWN
            .iter()
            .find(|c| c.number() == Some(number))
            .cloned()
            .unwrap_or_else(|| ErrorCode::Other(number.to_string()))
    }

    /// The HTTP status its number gives (`404001` → 404).
    pub fn status(&self) -> Option<u16> {
        self.number().and_then(|n| u16::try_from(n / 1000).ok())
    }

    /// Whether a bulk row or a create failed because the identity exists already.
    pub fn is_already_exists(&self) -> bool {
        matches!(
            self,
            ErrorCode::DeviceAlreadyExists | ErrorCode::ModuleAlreadyExistsOnDevice
        )
    }
}

impl From<&str> for ErrorCode {
    fn from(text: &str) -> ErrorCode {
        ErrorCode::parse(text)
    }
}

impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ErrorCode, D::Error> {
        Ok(ErrorCode::parse(&String::deserialize(d)?))
    }
}

/// What a failed answer means to a caller: one variant per thing a caller does differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meaning {
    NotFound,
    AlreadyExists,
    PreconditionFailed,
    /// Too many requests: wait and try again.
    Throttled,
    /// A quota that waiting a few seconds does not restore: the daily message quota, or the one
    /// import/export job a hub runs at a time.
    QuotaExceeded,
    /// The hub is suspended: nothing works until its owner resumes it.
    Suspended,
    /// The credentials or the policy's permissions do not allow this request.
    Unauthorized,
    /// The service failed or timed out: trying again may succeed.
    Unavailable,
    /// Any other refusal of the request as sent.
    Rejected,
}

/// Decides what an HTTP status and an error code mean. The code decides where the status alone
/// would mislead: a 403 for an exhausted quota is no missing permission.
pub fn meaning(status: u16, code: &ErrorCode) -> Meaning {
    match (status, code) {
        (403, ErrorCode::IotHubQuotaExceeded | ErrorCode::JobQuotaExceeded) => {
            Meaning::QuotaExceeded
        }
        (403, ErrorCode::IotHubSuspended) => Meaning::Suspended,
        (401 | 403, _) => Meaning::Unauthorized,
        (404, _) => Meaning::NotFound,
        (409, _) => Meaning::AlreadyExists,
        (412, _) => Meaning::PreconditionFailed,
        (429, _) => Meaning::Throttled,
        (408 | 500 | 502 | 503 | 504, _) => Meaning::Unavailable,
        _ => Meaning::Rejected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_code_reads_back_from_its_name_and_number() {
        for c in ErrorCode::KNOWN {
            assert_eq!(&ErrorCode::parse(c.as_str()), c);
            if let Some(n) = c.number() {
                assert_eq!(&ErrorCode::from_number(n), c);
                assert!((400..600).contains(&c.status().unwrap_or(0)), "{c}");
            }
        }
        assert_eq!(
            ErrorCode::parse("SomethingNew"),
            ErrorCode::Other("SomethingNew".into())
        );
        assert_eq!(ErrorCode::from_number(499999).as_str(), "499999");
    }

    #[test]
    fn codes_serialize_as_their_names() {
        let c: ErrorCode = serde_json::from_str("\"DeviceAlreadyExists\"").unwrap();
        assert!(c.is_already_exists());
        assert_eq!(
            serde_json::to_string(&ErrorCode::ModuleNotFound).unwrap(),
            "\"ModuleNotFound\""
        );
    }

    #[test]
    fn an_exhausted_quota_is_no_missing_permission() {
        assert_eq!(
            meaning(403, &ErrorCode::IotHubQuotaExceeded),
            Meaning::QuotaExceeded
        );
        assert_eq!(
            meaning(403, &ErrorCode::JobQuotaExceeded),
            Meaning::QuotaExceeded
        );
        assert_eq!(
            meaning(403, &ErrorCode::IotHubSuspended),
            Meaning::Suspended
        );
        assert_eq!(
            meaning(401, &ErrorCode::IotHubUnauthorizedAccess),
            Meaning::Unauthorized
        );
        assert_eq!(
            meaning(403, &ErrorCode::Other("Forbidden".into())),
            Meaning::Unauthorized
        );
        assert_eq!(
            meaning(429, &ErrorCode::ThrottlingBacklogTimeout),
            Meaning::Throttled
        );
        assert_eq!(meaning(400, &ErrorCode::ArgumentInvalid), Meaning::Rejected);
        assert_eq!(
            meaning(503, &ErrorCode::ServiceUnavailable),
            Meaning::Unavailable
        );
    }
}
