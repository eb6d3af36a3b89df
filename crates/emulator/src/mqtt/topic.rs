//! IoT Hub's MQTT topic names (reference §12): what a device publishes to, the filters it may
//! subscribe to, and the topics the hub answers on. Pure string work, no state.

/// Responses to twin GETs and reported patches.
pub const TWIN_RESPONSES: &str = "$iothub/twin/res/#";
/// Desired-property change notifications.
pub const DESIRED_CHANGES: &str = "$iothub/twin/PATCH/properties/desired/#";

const TWIN_GET: &str = "$iothub/twin/GET/";
const TWIN_REPORTED: &str = "$iothub/twin/PATCH/properties/reported/";

/// What a device's PUBLISH asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Inbound {
    /// `$iothub/twin/GET/?$rid={rid}`.
    TwinGet { rid: String },
    /// `$iothub/twin/PATCH/properties/reported/?$rid={rid}`.
    TwinReported { rid: String },
    /// Anything else (telemetry, method responses): accepted and dropped.
    Other,
}

/// The value of `name` in a topic's `?a=b&c=d` tail, as sent (not decoded: it is echoed back).
fn property<'t>(topic: &'t str, name: &str) -> Option<&'t str> {
    let (_, query) = topic.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// Classifies a device's PUBLISH topic. A twin request without `$rid` gets an empty one: the
/// hub must always answer, and the SDK waits forever otherwise.
pub(crate) fn classify(topic: &str) -> Inbound {
    let rid = || property(topic, "$rid").unwrap_or("").to_string();
    let path = topic.split_once('?').map_or(topic, |(p, _)| p);
    if path == TWIN_GET || path == TWIN_GET.trim_end_matches('/') {
        Inbound::TwinGet { rid: rid() }
    } else if path == TWIN_REPORTED || path == TWIN_REPORTED.trim_end_matches('/') {
        Inbound::TwinReported { rid: rid() }
    } else {
        Inbound::Other
    }
}

/// `$iothub/twin/res/{status}/?$rid={rid}[&$version={v}]`.
pub(crate) fn response(status: u16, rid: &str, version: Option<i64>) -> String {
    let mut t = format!("$iothub/twin/res/{status}/?$rid={rid}");
    if let Some(v) = version {
        t.push_str(&format!("&$version={v}"));
    }
    t
}

/// `$iothub/twin/PATCH/properties/desired/?$version={v}`.
pub(crate) fn desired_change(version: i64) -> String {
    format!("$iothub/twin/PATCH/properties/desired/?$version={version}")
}

/// Whether an identity may subscribe to `filter`: the twin filters, direct methods, and its own
/// cloud-to-device (devices) or input (modules) topics. IoT Hub supports no other filters.
pub(crate) fn may_subscribe(filter: &str, device: &str, module: Option<&str>) -> bool {
    if filter == TWIN_RESPONSES || filter == DESIRED_CHANGES || filter == "$iothub/methods/POST/#" {
        return true;
    }
    match module {
        None => filter == format!("devices/{device}/messages/devicebound/#"),
        Some(m) => filter == format!("devices/{device}/modules/{m}/inputs/#"),
    }
}

/// The `$version` in a topic (desired notifications and reported-patch responses).
pub fn version(topic: &str) -> Option<i64> {
    property(topic, "$version")?.parse().ok()
}

/// The status and `$rid` of a `$iothub/twin/res/{status}/?$rid=...` topic.
pub(crate) fn parse_response(topic: &str) -> Option<(u16, String)> {
    let rest = topic.strip_prefix("$iothub/twin/res/")?;
    let (status, _) = rest.split_once('/')?;
    Some((status.parse().ok()?, property(topic, "$rid")?.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twin_requests_carry_their_request_id() {
        assert_eq!(
            classify("$iothub/twin/GET/?$rid=0b6f"),
            Inbound::TwinGet { rid: "0b6f".into() }
        );
        assert_eq!(
            classify("$iothub/twin/PATCH/properties/reported/?$rid=7&x=y"),
            Inbound::TwinReported { rid: "7".into() }
        );
        assert_eq!(
            classify("$iothub/twin/GET/"),
            Inbound::TwinGet { rid: "".into() }
        );
        assert_eq!(classify("devices/d/messages/events/a=b"), Inbound::Other);
    }

    #[test]
    fn answers_name_status_request_and_version() {
        assert_eq!(response(200, "r1", None), "$iothub/twin/res/200/?$rid=r1");
        assert_eq!(
            response(204, "r2", Some(5)),
            "$iothub/twin/res/204/?$rid=r2&$version=5"
        );
        assert_eq!(version(&response(204, "r2", Some(5))), Some(5));
        assert_eq!(
            parse_response(&response(204, "r2", Some(5))),
            Some((204, "r2".into()))
        );
        assert_eq!(version(&desired_change(9)), Some(9));
    }

    #[test]
    fn only_iot_hub_filters_may_be_subscribed() {
        assert!(may_subscribe(TWIN_RESPONSES, "d", None));
        assert!(may_subscribe(DESIRED_CHANGES, "d", Some("m")));
        assert!(may_subscribe("devices/d/messages/devicebound/#", "d", None));
        assert!(!may_subscribe(
            "devices/e/messages/devicebound/#",
            "d",
            None
        ));
        assert!(may_subscribe(
            "devices/d/modules/m/inputs/#",
            "d",
            Some("m")
        ));
        assert!(!may_subscribe("#", "d", None));
    }
}
