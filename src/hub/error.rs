//! Typed client errors: one variant per thing a caller does differently, classified by HTTP status and
//! `iothub-errorcode`, never by message text.

use std::time::Duration;

use twinops_iothub::error_code::{ErrorCode, Meaning, meaning};

/// An error from IoT Hub or the way to it. Messages never contain keys or tokens.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not found ({code}): {message}")]
    NotFound { code: ErrorCode, message: String },
    #[error("already exists ({code}): {message}")]
    AlreadyExists { code: ErrorCode, message: String },
    #[error("precondition failed ({code}): the etag no longer matches")]
    PreconditionFailed { code: ErrorCode, message: String },
    #[error("throttled ({code}): {message}")]
    Throttled {
        code: ErrorCode,
        message: String,
        retry_after: Option<Duration>,
    },
    /// A quota that a few seconds' wait does not restore (IoT Hub's daily message quota, or the
    /// one import/export job a hub runs at a time).
    #[error("quota exceeded ({code}): {message}")]
    QuotaExceeded { code: ErrorCode, message: String },
    /// The hub is suspended: nothing works until its owner resumes it.
    #[error("the hub is suspended ({code}): {message}")]
    Suspended { code: ErrorCode, message: String },
    #[error("unauthorized ({code}): {message}{}", permission_hint(.needs))]
    Unauthorized {
        code: ErrorCode,
        message: String,
        /// What the refused request needs: the IoT Hub permission (`ServiceConnect`,
        /// `RegistryRead`, `RegistryWrite`) and the SAS policy that was used, when known.
        needs: Option<Permission>,
    },
    #[error("rejected with HTTP {status} ({code}): {message}")]
    Rejected {
        status: u16,
        code: ErrorCode,
        message: String,
    },
    #[error("unavailable, HTTP {status} ({code}): {message}")]
    Unavailable {
        status: u16,
        code: ErrorCode,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The request did not get an answer: no connection, a reset, a timeout. Worth retrying.
    #[error("transport error: {what}")]
    Transport {
        /// `timed out`, `could not connect`, `request failed` or `reading the answer failed`.
        what: &'static str,
        #[source]
        source: reqwest::Error,
    },
    /// The hub's answer is not the JSON it should be: asking again gives the same answer.
    #[error("decoding {what}")]
    Decode {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// A request body could not be written: a bug or bad input, never worth retrying.
    #[error("encoding {what}")]
    Encode {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// The key could not sign a SAS token (not base64): retrying cannot help.
    #[error("signing a SAS token")]
    Sign(#[source] twinops_iothub::sas::Error),
    /// An answer twinops cannot act on safely (a twin without an etag, an undecodable row):
    /// asking again gives the same answer.
    #[error("unusable answer from the hub: {0}")]
    Invalid(String),
    /// The TLS handshake failed (an untrusted or invalid certificate, or no TLS at all):
    /// retrying cannot help. Shown as one line that leads with the fix and says why in words
    /// ([`tls_line`]); the source is kept for `{:?}`, never printed.
    #[error("{}", tls_line(.0))]
    Tls(#[source] reqwest::Error),
}

/// The permission a request needed and the SAS policy that lacked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    pub permission: &'static str,
    pub policy: Option<String>,
}

/// The policy that holds every permission: a 401 under it cannot be a missing permission.
const OWNER_POLICY: &str = "iothubowner";

/// What a 401 means for the request that got it. Under `iothubowner` the key is wrong or was
/// rotated; under another policy either the policy lacks the permission or its key is wrong,
/// and the hub's answer does not say which.
fn permission_hint(needs: &Option<Permission>) -> String {
    match needs {
        Some(Permission {
            policy: Some(policy),
            ..
        }) if policy == OWNER_POLICY => format!(
            "; the policy `{policy}` has every permission, so the connection string's key is wrong or was rotated: take the connection string again"
        ),
        Some(Permission {
            permission,
            policy: Some(policy),
        }) => format!(
            "; this request needs the {permission} permission: the policy `{policy}` may lack it, or its key is wrong or was rotated"
        ),
        Some(Permission {
            permission,
            policy: None,
        }) => format!("; this request needs the {permission} permission"),
        None => String::new(),
    }
}

/// The rustls error somewhere in `err`'s causes. An `io::Error` hides the error it wraps from
/// `source()`, so each one is opened, however deep they nest.
pub(crate) fn find_rustls<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    if let Some(r) = err.downcast_ref::<rustls::Error>() {
        return Some(r);
    }
    if let Some(io) = err.downcast_ref::<std::io::Error>()
        && let Some(inner) = io.get_ref()
        && let Some(r) = find_rustls(inner)
    {
        return Some(r);
    }
    err.source().and_then(find_rustls)
}

/// What fixes an untrusted certificate: SPEC §14 wants it first.
const TRUST_THE_CA: &str = "pass the CA certificate the hub's certificate is signed with as --ca-cert FILE (or TWINOPS_CA_CERT; the emulator prints it as `ca certificate:`)";

/// A failed TLS handshake as one line: the fix, then why in words. rustls' own messages print
/// its enums in Rust's debug form (`UnsupportedSignatureAlgorithmForPublicKeyContext { … }`),
/// so none of its text is used.
fn tls_line(e: &reqwest::Error) -> String {
    let (fix, why) = match find_rustls(e) {
        Some(r) => tls_words(r),
        None => (
            TRUST_THE_CA.to_string(),
            "the hub's certificate could not be verified".to_string(),
        ),
    };
    format!("{fix}: the TLS handshake failed ({why})")
}

/// The fix and the reason for one rustls error.
fn tls_words(e: &rustls::Error) -> (String, String) {
    use rustls::CertificateError as C;
    let said = |fix: &str, why: &str| (fix.to_string(), why.to_string());
    let untrusted = || {
        said(
            TRUST_THE_CA,
            "the hub's certificate is not signed by a CA this machine trusts",
        )
    };
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            // A signature for another kind of key: a trusted certificate has the issuer's name
            // but is not the CA that signed (Debian's RSA `CN=localhost` snakeoil against the
            // emulator's ECDSA `CN=localhost`), so the fix is the same as for an unknown issuer.
            C::UnknownIssuer
            | C::BadSignature
            | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => untrusted(),
            #[allow(deprecated)] // rustls still returns the context-free form from older verifiers
            C::UnsupportedSignatureAlgorithm | C::UnsupportedSignatureAlgorithmContext { .. } => said(
                "have the hub's certificate signed with ECDSA (P-256 or P-384), Ed25519 or RSA",
                "its signature algorithm is not one twinops can verify",
            ),
            C::NotValidForName => said(
                "use the host name the hub's certificate is made for in HostName (the emulator makes it for --hostname, localhost and its IP)",
                "the hub's certificate is for another host name",
            ),
            C::NotValidForNameContext { expected, presented } => (
                "use the host name the hub's certificate is made for in HostName (the emulator makes it for --hostname, localhost and its IP)".to_string(),
                format!(
                    "the hub's certificate is for {}, not {}",
                    if presented.is_empty() {
                        "no host name".to_string()
                    } else {
                        presented.join(", ")
                    },
                    expected.to_str()
                ),
            ),
            C::Expired | C::ExpiredContext { .. } => said(
                "renew the hub's certificate, or set this machine's clock right",
                "the hub's certificate has expired",
            ),
            C::NotValidYet | C::NotValidYetContext { .. } => said(
                "set this machine's clock right, or give the hub a certificate valid now",
                "the hub's certificate is not valid yet",
            ),
            C::Revoked => said(
                "give the hub a new certificate",
                "the hub's certificate was revoked",
            ),
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => said(
                "give the hub a certificate for TLS servers (extended key usage serverAuth)",
                "the hub's certificate is not for a TLS server",
            ),
            C::BadEncoding => said(
                "give the hub a well-formed certificate",
                "the hub's certificate cannot be read",
            ),
            _ => said(TRUST_THE_CA, "the hub's certificate is not accepted"),
        },
        rustls::Error::InvalidMessage(_)
        | rustls::Error::InappropriateMessage { .. }
        | rustls::Error::InappropriateHandshakeMessage { .. } => said(
            "check that the hub's HostName and port serve HTTPS",
            "the answer is not TLS",
        ),
        rustls::Error::NoCertificatesPresented => said(
            "give the hub a certificate",
            "the hub sent no certificate",
        ),
        rustls::Error::PeerIncompatible(_) => said(
            "serve TLS 1.2 or 1.3 at the hub",
            "the hub offers no TLS version or cipher suite twinops supports",
        ),
        rustls::Error::AlertReceived(_) => said(
            "check the hub's TLS set-up (its own log says why)",
            "the hub ended the handshake",
        ),
        _ => said(
            "check the hub's TLS set-up",
            "the handshake broke off",
        ),
    }
}

/// An error with its causes, `: `-separated, for one-line reports (outcomes, logs).
pub struct Chain<'a>(&'a Error);

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        // A TLS error's line already says why in words; its causes would repeat it as rustls
        // prints it (Rust's debug form of its enums).
        if matches!(self.0, Error::Tls(_)) {
            return Ok(());
        }
        let mut source = std::error::Error::source(self.0);
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl Error {
    /// Whether trying again later may succeed: throttling, server errors, timeouts and resets.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Throttled { .. } | Error::Unavailable { .. } | Error::Transport { .. }
        )
    }

    /// This error and its causes on one line.
    pub fn chain(&self) -> Chain<'_> {
        Chain(self)
    }

    /// The wait the hub asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Throttled { retry_after, .. } | Error::Unavailable { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// IoT Hub's error code, when the hub answered with one.
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            Error::NotFound { code, .. }
            | Error::AlreadyExists { code, .. }
            | Error::PreconditionFailed { code, .. }
            | Error::Throttled { code, .. }
            | Error::QuotaExceeded { code, .. }
            | Error::Suspended { code, .. }
            | Error::Unauthorized { code, .. }
            | Error::Rejected { code, .. }
            | Error::Unavailable { code, .. } => Some(code),
            _ => None,
        }
    }

    /// IoT Hub's message, when the hub answered with one (else the error in words).
    pub fn message(&self) -> String {
        match self {
            Error::NotFound { message, .. }
            | Error::AlreadyExists { message, .. }
            | Error::PreconditionFailed { message, .. }
            | Error::Throttled { message, .. }
            | Error::QuotaExceeded { message, .. }
            | Error::Suspended { message, .. }
            | Error::Unauthorized { message, .. }
            | Error::Rejected { message, .. }
            | Error::Unavailable { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// Classifies a failed response.
    pub fn from_response(
        status: u16,
        header_code: Option<&str>,
        retry_after: Option<Duration>,
        body: &[u8],
    ) -> Error {
        let parsed = twinops_iothub::error_body::parse(body);
        let code = header_code
            .map(ErrorCode::parse)
            .or(parsed.code)
            .unwrap_or_else(|| ErrorCode::Other(format!("Http{status}")));
        let message = parsed
            .message
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
        match meaning(status, &code) {
            Meaning::NotFound => Error::NotFound { code, message },
            Meaning::AlreadyExists => Error::AlreadyExists { code, message },
            Meaning::PreconditionFailed => Error::PreconditionFailed { code, message },
            Meaning::Throttled => Error::Throttled {
                code,
                message,
                retry_after,
            },
            Meaning::QuotaExceeded => Error::QuotaExceeded { code, message },
            Meaning::Suspended => Error::Suspended { code, message },
            Meaning::Unauthorized => Error::Unauthorized {
                code,
                message,
                needs: None,
            },
            Meaning::Unavailable => Error::Unavailable {
                status,
                code,
                message,
                retry_after,
            },
            Meaning::Rejected => Error::Rejected {
                status,
                code,
                message,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_header_classify_errors() {
        let e = Error::from_response(409, Some("DeviceAlreadyExists"), None, b"");
        assert!(
            matches!(e, Error::AlreadyExists { ref code, .. } if *code == ErrorCode::DeviceAlreadyExists)
        );
        assert!(!e.is_retryable());
        let e = Error::from_response(
            429,
            None,
            None,
            br#"{"Message":"ErrorCode:ThrottlingException;Wait 10 seconds","ExceptionMessage":""}"#,
        );
        assert!(
            matches!(e, Error::Throttled { ref code, .. } if *code == ErrorCode::ThrottlingException)
        );
        assert!(e.is_retryable());
        assert!(Error::from_response(503, None, None, b"").is_retryable());
        assert!(!Error::from_response(400, None, None, b"bad").is_retryable());
        assert!(matches!(
            Error::from_response(412, None, None, b""),
            Error::PreconditionFailed { .. }
        ));
        assert!(matches!(
            Error::from_response(401, Some("IotHubUnauthorizedAccess"), None, b""),
            Error::Unauthorized { .. }
        ));
        assert!(Error::from_response(404, None, None, b"").is_not_found());
    }

    /// Every TLS failure is told in words with its fix first: nothing of rustls' own text (which
    /// prints its enums in Rust's debug form) reaches the line.
    #[test]
    fn every_tls_failure_is_words_that_lead_with_the_fix() {
        use rustls::CertificateError as C;
        use rustls::pki_types::{ServerName, UnixTime};
        let at = UnixTime::since_unix_epoch(Duration::from_secs(1_700_000_000));
        #[allow(deprecated)]
        let certificate = [
            C::BadEncoding,
            C::Expired,
            C::ExpiredContext {
                time: at,
                not_after: at,
            },
            C::NotValidYet,
            C::NotValidYetContext {
                time: at,
                not_before: at,
            },
            C::Revoked,
            C::UnhandledCriticalExtension,
            C::UnknownIssuer,
            C::UnknownRevocationStatus,
            C::ExpiredRevocationList,
            C::BadSignature,
            C::UnsupportedSignatureAlgorithm,
            C::UnsupportedSignatureAlgorithmContext {
                signature_algorithm_id: vec![6, 8, 42, 134, 72, 206, 61, 4, 3, 4],
                supported_algorithms: Vec::new(),
            },
            C::UnsupportedSignatureAlgorithmForPublicKeyContext {
                signature_algorithm_id: vec![6, 8, 42, 134, 72, 206, 61, 4, 3, 2],
                public_key_algorithm_id: vec![6, 9, 42, 134, 72, 134, 247, 13, 1, 1, 1, 5, 0],
            },
            C::NotValidForName,
            C::NotValidForNameContext {
                expected: ServerName::try_from("hub.example").unwrap().to_owned(),
                presented: vec!["localhost".into(), "127.0.0.1".into()],
            },
            C::InvalidPurpose,
            C::InvalidOcspResponse,
            C::ApplicationVerificationFailure,
            C::Other(rustls::OtherError(std::sync::Arc::new(
                std::io::Error::other("Opaque { detail: [1, 2] }"),
            ))),
        ]
        .map(rustls::Error::InvalidCertificate);
        let others = [
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
            rustls::Error::PeerIncompatible(rustls::PeerIncompatible::EcPointsExtensionRequired),
            rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure),
            rustls::Error::NoCertificatesPresented,
            rustls::Error::DecryptError,
        ];
        for e in certificate.iter().chain(&others) {
            let (fix, why) = tls_words(e);
            let line = format!("{fix}: {why}");
            assert!(
                !line.contains(['{', '}', '[', ']']) && !line.contains("Context"),
                "{e:?} reads {line}"
            );
            assert!(
                fix.chars().next().is_some_and(|c| c.is_lowercase()),
                "{line}"
            );
        }
        let (fix, why) = tls_words(&certificate[7]);
        assert!(fix.starts_with("pass the CA certificate") && fix.contains("--ca-cert"));
        assert_eq!(
            why,
            "the hub's certificate is not signed by a CA this machine trusts"
        );
        assert_eq!(
            tls_words(&certificate[13]),
            tls_words(&certificate[7]),
            "another key type"
        );
        let (_, why) = tls_words(&certificate[15]);
        assert_eq!(
            why,
            "the hub's certificate is for localhost, 127.0.0.1, not hub.example"
        );
    }

    #[test]
    fn a_401_under_iothubowner_is_a_wrong_key_and_under_another_policy_either() {
        let refused = |policy: Option<&str>| Error::Unauthorized {
            code: ErrorCode::IotHubUnauthorizedAccess,
            message: "Unauthorized".into(),
            needs: Some(Permission {
                permission: "ServiceConnect",
                policy: policy.map(str::to_string),
            }),
        };
        let owner = refused(Some("iothubowner")).to_string();
        assert!(owner.contains("key is wrong or was rotated"), "{owner}");
        assert!(!owner.contains("lack"), "{owner}");
        let other = refused(Some("registryReadWrite")).to_string();
        assert!(
            other.contains("needs the ServiceConnect permission: the policy `registryReadWrite` may lack it, or its key is wrong or was rotated"),
            "{other}"
        );
        let token = refused(None).to_string();
        assert!(
            token.ends_with("needs the ServiceConnect permission"),
            "{token}"
        );
    }

    #[test]
    fn an_exhausted_quota_is_not_reported_as_a_missing_permission() {
        let body = br#"{"Message":"{\"errorCode\":403002,\"message\":\"Total number of messages on IotHub exceeded the allocated quota\"}","ExceptionMessage":""}"#;
        let e = Error::from_response(403, None, None, body);
        assert!(
            matches!(e, Error::QuotaExceeded { ref code, .. } if *code == ErrorCode::IotHubQuotaExceeded),
            "{e:?}"
        );
        assert!(!e.is_retryable());
        assert!(!e.to_string().contains("permission"), "{e}");
        assert!(matches!(
            Error::from_response(403, Some("IotHubSuspended"), None, b""),
            Error::Suspended { .. }
        ));
    }

    #[test]
    fn decoding_encoding_and_signing_errors_are_not_retried_and_keep_their_cause() {
        let json_err = serde_json::from_slice::<serde_json::Value>(b"{").unwrap_err();
        let e = Error::Decode {
            what: "a query page".into(),
            source: json_err,
        };
        assert!(!e.is_retryable());
        assert!(std::error::Error::source(&e).is_some());
        assert!(
            e.chain()
                .to_string()
                .starts_with("decoding a query page: EOF"),
            "{}",
            e.chain()
        );
        let sign = twinops_iothub::sas::sign(
            "h",
            &twinops_iothub::connection_string::Secret::new("%%%".to_string()),
            None,
            1,
        )
        .unwrap_err();
        let e = Error::Sign(sign);
        assert!(!e.is_retryable());
        assert_eq!(
            e.chain().to_string(),
            "signing a SAS token: the key is not valid base64"
        );
    }
}
