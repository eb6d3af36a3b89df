//! Model values as IoT Hub request bodies: the one place where the model's authentication and identity
//! fields become wire JSON (the reverse of [`super::observe`]). Never keys: a SAS identity is sent with
//! an empty `symmetricKey` so that the hub generates its keys, and updates echo what the hub holds.

use twinops_core::model::{AuthSpec, DeviceStatus};
use twinops_iothub::wire::{Authentication, SymmetricKey, X509Thumbprint};

/// The `authentication` block of a create or an auth change.
pub(super) fn authentication(auth: &AuthSpec) -> Authentication {
    Authentication {
        symmetric_key: matches!(auth, AuthSpec::Sas).then(SymmetricKey::default),
        x509_thumbprint: match auth {
            AuthSpec::X509 { primary, secondary } => Some(X509Thumbprint {
                primary_thumbprint: Some(primary.clone()),
                secondary_thumbprint: secondary.clone(),
            }),
            _ => None,
        },
        kind: Some(auth.kind()),
    }
}

pub(super) fn status(s: DeviceStatus) -> String {
    s.as_str().to_string()
}
