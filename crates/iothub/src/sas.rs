//! Shared access signature tokens: signing (client) and parsing and verification (emulator).
//!
//! `SharedAccessSignature sr={urlenc(uri)}&sig={urlenc(b64(hmac))}&se={expiry}[&skn={policy}]`; the HMAC is
//! over the `sr` text exactly as sent, a newline, and the `se` text. The clock is always passed in.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::Sha256;

use super::connection_string::Secret;

type HmacSha256 = Hmac<Sha256>;

/// Keys are decoded leniently about trailing bits, as the SDKs do (`key=` decodes to two bytes).
const KEY_B64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// IoT Hub treats tokens as valid until five minutes after their expiry.
pub const MAX_CLOCK_SKEW_SECS: u64 = 300;

/// Everything outside `[A-Za-z0-9-_.~]` is percent-encoded, with upper-case hex.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a token field.
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, ENCODE).to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("the key is not valid base64")]
    KeyNotBase64,
    #[error("the token does not start with `SharedAccessSignature `")]
    NotSas,
    #[error("the token lacks `{0}`")]
    Missing(&'static str),
    #[error("the token's `se` is not a number of seconds")]
    BadExpiry,
    #[error("the token has a field that is not key=value")]
    Malformed,
}

/// HMAC-SHA256 of `data` with a base64 key, base64-encoded.
pub fn hmac_b64(key_b64: &str, data: &[u8]) -> Result<String, Error> {
    let key = KEY_B64.decode(key_b64).map_err(|_| Error::KeyNotBase64)?;
    let mut mac = HmacSha256::new_from_slice(&key).map_err(|_| Error::KeyNotBase64)?;
    mac.update(data);
    Ok(B64.encode(mac.finalize().into_bytes()))
}

/// Signs a token for `resource_uri` (no scheme, e.g. `myhub.azure-devices.net` or
/// `myhub.azure-devices.net/devices/d1`), valid until `expiry` (seconds since the epoch).
pub fn sign(
    resource_uri: &str,
    key_b64: &Secret,
    policy: Option<&str>,
    expiry: u64,
) -> Result<Secret, Error> {
    let sr = encode(resource_uri);
    let se = expiry.to_string();
    let sig = hmac_b64(key_b64.expose(), format!("{sr}\n{se}").as_bytes())?;
    let mut token = format!("SharedAccessSignature sr={sr}&sig={}&se={se}", encode(&sig));
    if let Some(p) = policy {
        token.push_str("&skn=");
        token.push_str(&encode(p));
    }
    Ok(Secret::new(token))
}

/// A parsed token. `sr_raw` and `se_raw` keep the text as sent, which is what was signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub(crate) sr_raw: String,
    pub(crate) se_raw: String,
    /// The signature, percent-decoded.
    pub(crate) sig: String,
    pub expiry: u64,
    /// The policy name, percent-decoded; `None` for device and module keys.
    pub key_name: Option<String>,
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

impl Token {
    pub fn parse(token: &str) -> Result<Token, Error> {
        let rest = token
            .trim()
            .strip_prefix("SharedAccessSignature ")
            .ok_or(Error::NotSas)?;
        let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
        for part in rest.split('&') {
            let (k, v) = part.split_once('=').ok_or(Error::Malformed)?;
            match k {
                "sr" => sr = Some(v),
                "sig" => sig = Some(v),
                "se" => se = Some(v),
                "skn" => skn = Some(v),
                _ => {}
            }
        }
        let sr_raw = sr.ok_or(Error::Missing("sr"))?.to_string();
        let se_raw = se.ok_or(Error::Missing("se"))?.to_string();
        let sig = decode(sig.ok_or(Error::Missing("sig"))?);
        let expiry = se_raw.parse::<u64>().map_err(|_| Error::BadExpiry)?;
        Ok(Token {
            sr_raw,
            se_raw,
            sig,
            expiry,
            key_name: skn.map(decode).filter(|s| !s.is_empty()),
        })
    }

    /// The resource URI, percent-decoded (e.g. `localhost:8443/devices/d1`).
    pub fn resource(&self) -> String {
        decode(&self.sr_raw)
    }

    /// Whether `key_b64` produced this token's signature (constant-time comparison).
    pub fn signed_with(&self, key_b64: &str) -> bool {
        let Ok(key) = KEY_B64.decode(key_b64) else {
            return false;
        };
        let Ok(sig) = B64.decode(self.sig.as_bytes()) else {
            return false;
        };
        let Ok(mut mac) = HmacSha256::new_from_slice(&key) else {
            return false;
        };
        mac.update(format!("{}\n{}", self.sr_raw, self.se_raw).as_bytes());
        mac.verify_slice(&sig).is_ok()
    }

    /// Whether the token is past its expiry plus the allowed clock skew at `now` (epoch seconds).
    pub fn expired(&self, now: u64) -> bool {
        now > self.expiry.saturating_add(MAX_CLOCK_SKEW_SECS)
    }
}

/// Whether `resource` (decoded, no scheme) covers `path` on `host` by whole segments: `host`,
/// `host/devices`, `host/devices/d1` and `host/devices/d1/modules/m1` cover what is below them.
/// A host with a port also matches without it, and the host compares case-insensitively.
pub fn scope_covers(resource: &str, host: &str, path_segments: &[&str]) -> bool {
    let resource = resource.trim_end_matches('/');
    let mut parts = resource.split('/');
    let Some(res_host) = parts.next() else {
        return false;
    };
    let host_no_port = host.split(':').next().unwrap_or(host);
    let res_host_no_port = res_host.split(':').next().unwrap_or(res_host);
    if !res_host.eq_ignore_ascii_case(host) && !res_host_no_port.eq_ignore_ascii_case(host_no_port)
    {
        return false;
    }
    let rest: Vec<&str> = parts.collect();
    if rest.len() > path_segments.len() {
        return false;
    }
    rest.iter().zip(path_segments).all(|(a, b)| a == b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLI_KEY: &str = "+XLy+MVZ+aTeOnVzN2kLeB16O+kSxmz6g3rS6fAf6rw=";

    fn field<'a>(token: &'a str, name: &str) -> Option<&'a str> {
        token
            .strip_prefix("SharedAccessSignature ")?
            .split('&')
            .find_map(|p| p.strip_prefix(&format!("{name}=")))
    }

    #[test]
    fn cli_device_vector_matches() {
        let t = sign(
            "iot-hub-for-test.azure-devices.net/devices/iot-device-for-test",
            &Secret::new(CLI_KEY),
            None,
            1471940363,
        )
        .unwrap();
        let t = t.expose();
        assert_eq!(
            field(t, "sr"),
            Some("iot-hub-for-test.azure-devices.net%2Fdevices%2Fiot-device-for-test")
        );
        assert_eq!(
            field(t, "sig"),
            Some("SIumZ1ACqqPJZ2okHDlW9MSYKykEpqsQY3z6FMOICd4%3D")
        );
        assert_eq!(field(t, "skn"), None);
        assert_eq!(field(t, "se"), Some("1471940363"));
    }

    #[test]
    fn cli_hub_policy_vector_matches() {
        let t = sign(
            "iot-hub-for-test.azure-devices.net",
            &Secret::new(CLI_KEY),
            Some("iothubowner"),
            1471940363,
        )
        .unwrap();
        assert_eq!(
            field(t.expose(), "sig"),
            Some("770sPjjYxRYpNz8%2FhEN7XR5XU5KDGYGTinSP8YyeTXw%3D")
        );
        assert_eq!(field(t.expose(), "skn"), Some("iothubowner"));
    }

    #[test]
    fn cli_module_vector_matches() {
        let t = sign(
            "iot-hub-for-test.azure-devices.net/devices/iot-device-for-test/modules/module-for-test",
            &Secret::new(CLI_KEY),
            Some("iothubowner"),
            1471940363,
        )
        .unwrap();
        assert_eq!(
            field(t.expose(), "sig"),
            Some("JwAxBBBPYA0E%2FTHdnrXzUfBfuZ7deH6pppCniJ23Uu0%3D")
        );
    }

    #[test]
    fn lower_case_escapes_change_the_signature() {
        let sig = hmac_b64(
            CLI_KEY,
            b"iot-hub-for-test.azure-devices.net%2fdevices%2fiot-device-for-test\n1471940363",
        )
        .unwrap();
        assert_eq!(sig, "kpPd03nBPQvmGX6lLUYgpB+VZN9uuoqsIw+8g4CkkAY=");
    }

    #[test]
    fn node_vectors_match() {
        // key = base64("password"); policy name encode('Me') -> encode%28%27Me%27%29
        let t = sign(
            "uri",
            &Secret::new("cGFzc3dvcmQ="),
            Some("encode('Me')"),
            12345,
        )
        .unwrap();
        assert_eq!(
            t.expose(),
            "SharedAccessSignature sr=uri&sig=kcWxXAK2OAaAoq2oCkaGzX2NMqDB8nCyNuq2fPYCDhk%3D&se=12345&skn=encode%28%27Me%27%29"
        );
        assert_eq!(
            hmac_b64("cGFzc3dvcmQ=", b"string-to-sign").unwrap(),
            "o1n1hiIVgzVA2+krq9ty1Z4xsIJKJZP3dYT8MOi65Y4="
        );
        let t = sign("host/devices/device", &Secret::new("key="), None, 12345).unwrap();
        assert_eq!(
            t.expose(),
            "SharedAccessSignature sr=host%2Fdevices%2Fdevice&sig=wM3XiP6gD960IxP7J5WHqnxQHEcWC6YaQCtoMT%2BkKHc%3D&se=12345"
        );
    }

    #[test]
    fn python_device_signing_vector_matches() {
        assert_eq!(
            hmac_b64(
                "NMgJDvdKTxjLi+xBxxkDDEwDJxEvOE5u8BiT0mVgPeg=",
                b"sign this message"
            )
            .unwrap(),
            "8NJRMT83CcplGrAGaUVIUM/md5914KpWVNngSVoF9/M="
        );
    }

    #[test]
    fn signed_token_parses_and_verifies() {
        let key = Secret::new(CLI_KEY);
        let t = sign("localhost:8443", &key, Some("iothubowner"), 1000).unwrap();
        let p = Token::parse(t.expose()).unwrap();
        assert_eq!(p.sr_raw, "localhost%3A8443");
        assert_eq!(p.resource(), "localhost:8443");
        assert_eq!(p.key_name.as_deref(), Some("iothubowner"));
        assert!(p.signed_with(CLI_KEY));
        assert!(!p.signed_with("cGFzc3dvcmQ="));
        assert!(!p.expired(1000 + MAX_CLOCK_SKEW_SECS));
        assert!(p.expired(1001 + MAX_CLOCK_SKEW_SECS));
    }

    #[test]
    fn signature_is_over_sr_as_sent() {
        // Python's quote_plus leaves `/` raw in sig and encodes `:` in sr; both must verify.
        let sr = "localhost:8443";
        let sig = hmac_b64(CLI_KEY, format!("{sr}\n99").as_bytes()).unwrap();
        let tok = format!(
            "SharedAccessSignature sr={sr}&sig={}&se=99&skn=iothubowner",
            sig.replace('+', "%2B").replace('=', "%3D")
        );
        assert!(Token::parse(&tok).unwrap().signed_with(CLI_KEY));
    }

    #[test]
    fn malformed_tokens_are_errors() {
        assert_eq!(Token::parse("Bearer x"), Err(Error::NotSas));
        assert_eq!(
            Token::parse("SharedAccessSignature sig=a&se=1"),
            Err(Error::Missing("sr"))
        );
        assert_eq!(
            Token::parse("SharedAccessSignature sr=a&sig=b&se=soon"),
            Err(Error::BadExpiry)
        );
        assert_eq!(
            Token::parse("SharedAccessSignature sr"),
            Err(Error::Malformed)
        );
    }

    #[test]
    fn scope_is_a_prefix_by_segment() {
        assert!(scope_covers("h:1", "h:1", &["devices", "d1"]));
        assert!(scope_covers("h", "h:1", &["devices", "d1"]));
        assert!(scope_covers(
            "h/devices/d1",
            "h",
            &["devices", "d1", "modules", "m"]
        ));
        assert!(!scope_covers("h/devices/d", "h", &["devices", "d1"]));
        assert!(!scope_covers("other", "h", &["devices"]));
        assert!(!scope_covers(
            "h/devices/d1/modules/m",
            "h",
            &["devices", "d1"]
        ));
    }
}
