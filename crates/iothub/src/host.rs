//! Host names as the client and the emulator meet them: a hub's `HostName` (with an optional
//! port) and a storage URL's host (IPv6 in brackets).

use std::net::IpAddr;

/// Whether `host` is this machine: `localhost` or a loopback address, with or without a port.
/// Takes a URL's host (`[::1]`), a connection string's `HostName` (`127.0.0.1:8443`,
/// `[::1]:8443`) and a bare address (`::1`). Local hubs are not paced, and storage on loopback
/// (Azurite) may be plain http.
pub fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // `[v6]` or `[v6]:port`.
        match rest.split_once(']') {
            Some((v6, tail)) if tail.is_empty() || tail.starts_with(':') => v6,
            _ => return false,
        }
    } else if host.parse::<IpAddr>().is_ok() {
        host // a bare address: IPv6 has colons of its own
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_with_or_without_a_port_are_recognised() {
        for host in [
            "127.0.0.1:8443",
            "127.0.0.1",
            "127.5.6.7",
            "localhost:1",
            "localhost",
            "LOCALHOST",
            "[::1]:8443",
            "[::1]",
            "::1",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "example.com",
            "example.com:443",
            "hub.azure-devices.net",
            "10.0.0.1:8443",
            "[2001:db8::1]:8443",
            "2001:db8::1",
            "localhost.example.com",
            "[::1",
            "[::1]x",
            "",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
