//! The application URL and email on their way into `Instructions` (SPEC 5):
//! a value is used only when it is what it claims to be, read by a real URL
//! parser or by the strict shape of an address, and it enters the HTML as
//! escaped text, never as markup or inside an attribute.
//!
//! Text rather than a link: SPEC 5 says such values are escaped, a value
//! that never lands in an `href` cannot bring a scheme of its own, and an
//! ordinary URL or address (no `&`, `<`, `>`) renders to the very bytes it
//! did before, so the content hash of a document already on EURES stays.

use url::Url;

use super::html::escape;

/// Longest local part of an address (RFC 5321, 4.5.3.1.1).
const MAX_LOCAL: usize = 64;
/// Longest domain of an address (RFC 5321, 4.5.3.1.2).
const MAX_DOMAIN: usize = 253;
/// Longest label of a domain.
const MAX_LABEL: usize = 63;

/// `url` as HTML text when it is an absolute `http` or `https` URL with a
/// host and no user information; `None` otherwise.
///
/// The URL is shown as written (escaped), not as the parser serialises it:
/// `æøå.dk` stays readable instead of turning into punycode. What the
/// parser would silently repair is refused instead, so the text shown is
/// the URL a browser opens: whitespace and controls (the parser drops tabs
/// and line ends), a missing `//` (`https:x.dk` is accepted by it), a
/// third slash before the host, and backslashes (read as `/`).
pub(crate) fn url_text(url: &str) -> Option<String> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let authority = if lower.starts_with("http://") {
        &url[7..]
    } else if lower.starts_with("https://") {
        &url[8..]
    } else {
        return None;
    };
    // `https:///x.dk` is read as `https://x.dk/`.
    if authority.starts_with('/') {
        return None;
    }
    if url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return None;
    }
    let parsed = Url::parse(url).ok()?;
    let web = matches!(parsed.scheme(), "http" | "https");
    let host = parsed.host_str().is_some_and(|h| !h.is_empty());
    let userinfo = !parsed.username().is_empty() || parsed.password().is_some();
    (web && host && !userinfo).then(|| escape(url))
}

/// `email` as HTML text when it is a strict `local@domain.tld`: the local
/// part atext characters (RFC 5322) in dot-separated runs, the domain at
/// least two labels of letters, digits and inner hyphens, the last not all
/// digits; `None` otherwise. Quoted local parts, comments, address literals
/// and non-ASCII addresses are refused: the value is shown to the public,
/// and what is refused counts as absent.
pub(crate) fn email_text(email: &str) -> Option<String> {
    let (local, domain) = email.split_once('@')?;
    let local_ok = !local.is_empty()
        && local.len() <= MAX_LOCAL
        && local
            .split('.')
            .all(|run| !run.is_empty() && run.bytes().all(is_atext));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = domain.len() <= MAX_DOMAIN
        && labels.len() >= 2
        && labels.iter().all(|label| is_ldh_label(label))
        && labels
            .last()
            .is_some_and(|tld| !tld.bytes().all(|b| b.is_ascii_digit()));
    (local_ok && domain_ok).then(|| escape(email))
}

/// RFC 5322 `atext`.
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

/// A DNS label of letters, digits and hyphens, not starting or ending with
/// a hyphen.
fn is_ldh_label(label: &str) -> bool {
    (1..=MAX_LABEL).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_a_browser_opens_as_shown_are_kept_escaped() {
        for (url, want) in [
            (
                "https://job.example.dk/apply",
                "https://job.example.dk/apply",
            ),
            ("HTTP://x.dk", "HTTP://x.dk"),
            ("https://æøå.dk/job/ø", "https://æøå.dk/job/ø"),
            (
                "https://job.example.dk/apply?id=1&x=2",
                "https://job.example.dk/apply?id=1&amp;x=2",
            ),
            (
                "https://x.dk/<script>alert(1)</script>",
                "https://x.dk/&lt;script&gt;alert(1)&lt;/script&gt;",
            ),
            (
                "https://x.dk/a\"><svg/onload=alert(1)>",
                "https://x.dk/a\"&gt;&lt;svg/onload=alert(1)&gt;",
            ),
            ("https://x.dk:8443/?q=]]>", "https://x.dk:8443/?q=]]&gt;"),
        ] {
            assert_eq!(url_text(url).as_deref(), Some(want), "{url}");
        }
    }

    #[test]
    fn what_is_not_an_http_url_with_a_host_is_absent() {
        for bad in [
            "javascript:alert(1)",
            "JavaScript://x.dk/%0aalert(1)",
            "data:text/html,<script>alert(1)</script>",
            "mailto:a@x.dk",
            "ftp://x.dk",
            "www.x.dk",
            "https://",
            "https:///path",
            "https:x.dk",
            "https:\\\\x.dk",
            "https://x.dk\\@evil.dk",
            "https://user:pw@x.dk",
            "https://user@x.dk",
            "https://a b.dk",
            "https://x.dk/a\"><svg onload=alert(1)>",
            "https://x.dk/\tx",
            "https://x.dk/\u{a0}",
            "https://[::1",
            "https://x.dk:99999/",
            "https://exa%mple.dk",
            "",
        ] {
            assert_eq!(url_text(bad), None, "{bad}");
        }
    }

    #[test]
    fn strict_addresses_only() {
        for (email, want) in [
            ("jobs@acme.dk", "jobs@acme.dk"),
            (
                "first.last+dk@mail.acme-group.co.uk",
                "first.last+dk@mail.acme-group.co.uk",
            ),
            ("a&b@x.dk", "a&amp;b@x.dk"),
            ("o'brien@x.ie", "o'brien@x.ie"),
            ("x@xn--6qq79v.xn--fiqs8s", "x@xn--6qq79v.xn--fiqs8s"),
        ] {
            assert_eq!(email_text(email).as_deref(), Some(want), "{email}");
        }
        for bad in [
            "jobs",
            "@acme.dk",
            "a@b",
            "a@@b.dk",
            "a@b@c.dk",
            "a b@c.dk",
            "a@.dk",
            "a@b.dk.",
            "a@b..dk",
            ".a@b.dk",
            "a.@b.dk",
            "a..b@c.dk",
            "a@-b.dk",
            "a@b-.dk",
            "a@b_c.dk",
            "a@1.2",
            "a@[127.0.0.1]",
            "\"a b\"@c.dk",
            "a(comment)@c.dk",
            "a<img/src/onerror=alert(1)>@x.dk",
            "a<img src=x onerror=alert(1)>@x.dk",
            "a@x.dk<script>",
            "søren@firma.dk",
            "a@æøå.dk",
            "a\n@x.dk",
            &format!("{}@x.dk", "a".repeat(65)),
            &format!("a@{}.dk", "b".repeat(64)),
        ] {
            assert_eq!(email_text(bad), None, "{bad}");
        }
    }
}
