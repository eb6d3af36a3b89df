//! The emulator's wall clock, read here and nowhere else: seconds since the epoch (SAS token
//! expiry) and now in the forms IoT Hub writes (ISO 8601 with seven fractional digits, .NET ticks
//! for generation IDs, the legacy error body's `MM/dd/yyyy HH:mm:ss`).
//!
//! Everything else takes the time as an argument: `twinops-iothub` and `twin` stay clock-free, so
//! their rules are tested with fixed times.

/// Seconds since the Unix epoch (0 for a clock set before it).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Now as IoT Hub writes timestamps: UTC, seven fractional digits.
pub(crate) fn now() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:07}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond() / 100
    )
}

/// .NET ticks (100 ns since 0001-01-01) of now, the form of IoT Hub's generation IDs.
pub(crate) fn now_ticks() -> u64 {
    let unix_100ns = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 100;
    u64::try_from(unix_100ns).unwrap_or(0) + 621_355_968_000_000_000
}

/// Now as `MM/dd/yyyy HH:mm:ss` (the legacy error body's timestamp form).
pub(crate) fn error_timestamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:02}/{:02}/{:04} {:02}:{:02}:{:02}",
        u8::from(now.month()),
        now.day(),
        now.year(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_iot_hubs_shapes() {
        let iso = now();
        assert_eq!(iso.len(), "2026-01-01T00:00:00.0000000Z".len(), "{iso}");
        assert!(iso.ends_with('Z') && iso.as_bytes()[10] == b'T', "{iso}");
        let legacy = error_timestamp();
        assert_eq!(legacy.len(), "01/31/2026 12:00:00".len(), "{legacy}");
        assert_eq!(&legacy[2..3], "/", "{legacy}");
    }

    #[test]
    fn ticks_and_unix_seconds_tell_the_same_time() {
        let unix = unix_now();
        let from_ticks = (now_ticks() - 621_355_968_000_000_000) / 10_000_000;
        assert!(from_ticks.abs_diff(unix) <= 1, "{from_ticks} vs {unix}");
    }
}
