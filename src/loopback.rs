//! What counts as this machine: plain `http://` and unencrypted database
//! links are allowed to loopback hosts only (SPEC 6), and the configuration,
//! the HTTP clients and the PostgreSQL store all ask the same question here.
//!
//! Names only, never DNS: the answer must not change with a resolver.

use std::net::IpAddr;

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
    host.parse().is_ok_and(is_loopback_ip)
}

/// [`is_loopback_host`] of a parsed URL's host.
pub fn is_loopback_url_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(name) => is_loopback_host(name),
        url::Host::Ipv4(ip) => is_loopback_ip(IpAddr::V4(*ip)),
        url::Host::Ipv6(ip) => is_loopback_ip(IpAddr::V6(*ip)),
    }
}

/// `127.0.0.0/8`, `::1`, or an IPv4-mapped IPv6 address of the first.
fn is_loopback_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => {
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
        let url_host = |u: &str| {
            url::Url::parse(u)
                .ok()
                .and_then(|u| u.host().map(|h| is_loopback_url_host(&h)))
        };
        assert_eq!(url_host("http://[::ffff:127.0.0.1]:1/"), Some(true));
        assert_eq!(url_host("http://127.1.2.3/"), Some(true));
        assert_eq!(url_host("http://LOCALHOST/"), Some(true));
        assert_eq!(url_host("http://[::2]/"), Some(false));
        assert_eq!(url_host("http://10.0.0.1/"), Some(false));
    }
}
