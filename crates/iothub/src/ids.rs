//! IoT Hub's identity rules, used by the manifest loader's mirror, the client and the emulator.

/// At most this many modules on one device.
pub const MAX_MODULES_PER_DEVICE: usize = 50;

/// Longest device or module ID (all allowed characters are ASCII, so bytes and characters agree).
pub const MAX_ID_LEN: usize = 128;

/// The symbols IoT Hub allows in IDs besides ASCII letters and digits.
pub const ID_SYMBOLS: &str = "-:.+%_#*?!(),=@;$'";

/// Whether `c` may appear in a device or module ID.
pub fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || ID_SYMBOLS.contains(c)
}

/// Whether `id` is a valid device or module ID: 1..=128 of `A-Za-z0-9-:.+%_#*?!(),=@;$'`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.chars().all(is_id_char)
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
