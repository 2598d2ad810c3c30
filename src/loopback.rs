//! What counts as this machine: plain `http://` and unencrypted database
//! links are allowed to loopback hosts only (SPEC 6), and the configuration,
//! the HTTP clients and the PostgreSQL store all ask the same question here.
//!
//! Names only, never DNS: the answer must not change with a resolver.

/// Whether `host` (a database host, or a URL's host text) names this
/// machine over its loopback interface: `localhost`, `127.0.0.0/8` or
/// `::1` (IPv4-mapped included). Any other name counts as remote even when
/// it resolves to a local address: the decision must not depend on DNS.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.eq_ignore_ascii_case("localhost") || host.eq_ignore_ascii_case("localhost.") {
        return true;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(std::net::IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        Err(_) => false,
    }
}

/// [`is_loopback_host`] of a parsed URL's host.
pub fn is_loopback_url_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(name) => is_loopback_host(name),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_decided_by_the_text_alone() {
        assert!(is_loopback_host("[::1]"));
        assert!(is_loopback_host("127.0.0.1"));
        assert!(is_loopback_host("127.8.9.10"));
        assert!(is_loopback_host("::ffff:127.0.0.1"));
        assert!(is_loopback_host(" LocalHost. "));
        assert!(!is_loopback_host("0.0.0.0"));
        assert!(!is_loopback_host("db.example"));
        assert!(!is_loopback_host("localhost.example"));
        assert!(!is_loopback_host("/var/run/postgresql"));
    }
}
