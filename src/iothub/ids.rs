//! IoT Hub's identity rules, used by the manifest loader's mirror, the client and the emulator.

/// At most this many modules on one device.
pub const MAX_MODULES_PER_DEVICE: usize = 50;

/// Whether `id` is a valid device or module ID: 1..=128 of `A-Za-z0-9-:.+%_#*?!(),=@;$'`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b':'
                        | b'.'
                        | b'+'
                        | b'%'
                        | b'_'
                        | b'#'
                        | b'*'
                        | b'?'
                        | b'!'
                        | b'('
                        | b')'
                        | b','
                        | b'='
                        | b'@'
                        | b';'
                        | b'$'
                        | b'\''
                )
        })
}

/// The modules IoT Hub creates on an edge device.
pub const EDGE_SYSTEM_MODULES: &[&str] = &["$edgeAgent", "$edgeHub"];

pub fn is_system_module(id: &str) -> bool {
    EDGE_SYSTEM_MODULES.contains(&id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_rules_follow_iot_hub() {
        assert!(is_valid_id("myFirstDevice"));
        assert!(is_valid_id("$edgeAgent"));
        assert!(is_valid_id("a:b.c+d%e_f#g*h?i!j(k)l,m=n@o;p'q"));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("has space"));
        assert!(!is_valid_id("slash/no"));
        assert!(!is_valid_id("ü"));
        assert!(is_valid_id(&"a".repeat(128)));
        assert!(!is_valid_id(&"a".repeat(129)));
    }
}
