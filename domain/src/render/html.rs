//! The HTML a public portal may receive (SPEC 5): the description and the
//! application instructions are reduced to an allow-list of formatting
//! elements by `ammonia` (an HTML5 parser, not patterns), so scripts, styles,
//! event attributes, iframes and `javascript:` links never leave the agent.
//!
//! Allowed: `p`, `br`, `ul`, `ol`, `li`, `b`, `strong`, `i`, `em`, `h1`-`h6`,
//! and `a` with an `http`, `https` or `mailto` `href` (nothing else on any
//! element). Another element is dropped and its text kept, except for the
//! elements whose content is code or hidden markup, which go with their
//! content. Comments go.
//!
//! Most descriptions are plain text: a text without `<`, `>`, `&` or a
//! no-break space is its own sanitized form (the serializer writes exactly
//! those four differently), so it skips the parser. A property test holds
//! the shortcut to the full path.

use std::borrow::Cow;
use std::sync::LazyLock;

use super::text::clean_html;

/// Elements a EURES description may keep.
const ALLOWED: [&str; 15] = [
    "p", "br", "ul", "ol", "li", "b", "strong", "i", "em", "h1", "h2", "h3", "h4", "h5", "h6",
];

/// Elements removed together with everything inside them: their content is
/// code, styling or a document of its own, never text for a job seeker.
const DROPPED_WITH_CONTENT: [&str; 14] = [
    "script", "style", "iframe", "frame", "frameset", "noscript", "template", "object", "embed",
    "applet", "svg", "math", "title", "textarea",
];

static POLICY: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let mut policy = ammonia::Builder::empty();
    policy
        .add_tags(ALLOWED)
        .add_tags(["a"])
        .add_tag_attributes("a", ["href"])
        .add_url_schemes(["http", "https", "mailto"])
        .url_relative(ammonia::UrlRelative::Deny)
        // The portal decides how it opens links; a `rel` we add would make
        // ordinary markup differ from what the employer wrote.
        .link_rel(None)
        .strip_comments(true)
        .add_clean_content_tags(DROPPED_WITH_CONTENT);
    policy
});

/// Whether `html` may hold markup or characters the serializer rewrites.
fn needs_sanitizing(html: &str) -> bool {
    // `\r`, NUL and a leading BOM are rewritten by the HTML parser's input
    // stream preprocessing even in plain text.
    html.contains(['<', '>', '&', '\u{a0}', '\r', '\0', '\u{feff}'])
}

/// `html` reduced to the allow-list.
pub(crate) fn sanitize(html: &str) -> Cow<'_, str> {
    if needs_sanitizing(html) {
        Cow::Owned(sanitize_always(html))
    } else {
        Cow::Borrowed(html)
    }
}

/// The full path, without the plain-text shortcut.
fn sanitize_always(html: &str) -> String {
    POLICY.clean(html).to_string()
}

/// A formatted value (description, application instructions) as rendered in
/// CDATA: cleaned of what XML forbids ([`clean_html`]), sanitized, trimmed;
/// `None` when nothing is left (a description that was only a script).
pub(crate) fn formatted(s: Option<&str>) -> Option<String> {
    let cleaned = clean_html(s)?;
    let sanitized = sanitize(&cleaned);
    let trimmed = sanitized.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ordinary_danish_formatting_is_unchanged() {
        for html in [
            "<p>Vi søger en <strong>erfaren</strong> udvikler til vores team i Århus.</p>",
            "<h2>Dine opgaver</h2>\n<ul>\n<li>Udvikling af <em>nye</em> løsninger</li>\n<li>Drift</li>\n</ul>",
            "<p>Løn &amp; vilkår efter overenskomst.<br>Tiltrædelse snarest.</p>",
            "<ol><li><b>Fed</b></li><li><i>Kursiv</i></li></ol><h1>A</h1><h6>B</h6>",
            "<p>Læs mere på <a href=\"https://jobnet.dk/job/1?a=1&amp;b=2\">Jobnet</a> eller skriv til <a href=\"mailto:job@firma.dk\">os</a>.</p>",
            "Ren tekst uden opmærkning, med æøå og ÆØÅ.",
        ] {
            assert_eq!(sanitize(html), html);
            assert_eq!(sanitize_always(html), html, "{html}");
        }
    }

    #[test]
    fn hostile_html_never_passes() {
        for (html, want) in [
            ("<p>a</p><script>alert('x')</script>", "<p>a</p>"),
            ("<style>p{color:red}</style><p>b</p>", "<p>b</p>"),
            (
                "<p onclick=\"steal()\" style=\"x\" class=\"c\">c</p>",
                "<p>c</p>",
            ),
            ("<a href=\"javascript:alert(1)\">d</a>", "<a>d</a>"),
            ("<a href=\" JavaScript:alert(1)\">d</a>", "<a>d</a>"),
            ("<a href=\"/relative\">e</a>", "<a>e</a>"),
            (
                "<a href=\"https://x.dk\" target=\"_blank\" onmouseover=\"y()\">f</a>",
                "<a href=\"https://x.dk\">f</a>",
            ),
            ("<iframe src=\"https://evil\">g</iframe>h", "h"),
            ("<img src=x onerror=alert(1)>i", "i"),
            ("<svg><script>alert(1)</script></svg>j", "j"),
            ("<div><span>k</span></div>", "k"),
            ("<!-- comment -->l", "l"),
            ("<p>m<script>alert(1)", "<p>m</p>"),
            ("<scr<script>ipt>alert(1)</script>", "ipt&gt;alert(1)"),
            ("<object data=\"x\">n</object><embed src=\"y\">", ""),
        ] {
            assert_eq!(sanitize(html), want, "{html}");
        }
        assert_eq!(formatted(Some("  <script>x</script>  ")), None);
    }

    /// Markup and text pieces, hostile and ordinary, for the properties.
    fn html() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            "[a-zA-Zæøå .,:!?-]{0,12}",
            any::<char>().prop_map(String::from),
            Just("<p>".to_string()),
            Just("</p>".to_string()),
            Just("<br>".to_string()),
            Just("<strong>".to_string()),
            Just("</strong>".to_string()),
            Just("<ul><li>".to_string()),
            Just("</li></ul>".to_string()),
            Just("<script>".to_string()),
            Just("</script>".to_string()),
            Just("<style>".to_string()),
            Just("<iframe src=x>".to_string()),
            Just("<a href=\"javascript:alert(1)\">".to_string()),
            Just("<a href=\"https://jobnet.dk\" onclick=\"x()\">".to_string()),
            Just("</a>".to_string()),
            Just("<p onmouseover=\"x()\">".to_string()),
            Just("&amp;".to_string()),
            Just("&".to_string()),
            Just(">".to_string()),
            Just("\u{a0}".to_string()),
            Just("<!--".to_string()),
            Just("-->".to_string()),
            Just("\n".to_string()),
        ];
        prop::collection::vec(piece, 0..30).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn the_shortcut_equals_the_full_path(text in html()) {
            let (short, full) = (sanitize(&text), sanitize_always(&text));
            prop_assert_eq!(short.as_ref(), full.as_str());
        }

        #[test]
        fn no_hostile_markup_survives(text in html()) {
            let clean = sanitize(&text);
            let lower = clean.to_ascii_lowercase();
            for hostile in ["<script", "<style", "<iframe", "javascript:", "onclick", "onmouseover", "<!--"] {
                prop_assert!(!lower.contains(hostile), "{hostile} in {clean}");
            }
            // Read again by an HTML parser (the portal's), the output is
            // still harmless. Not byte-identical in every case: the HTML
            // tree builder re-nests misnested anchors inside lists.
            let again = sanitize(&clean).to_ascii_lowercase();
            for hostile in ["<script", "<style", "<iframe", "javascript:", "onclick", "onmouseover", "<!--"] {
                prop_assert!(!again.contains(hostile), "{hostile} in {again}");
            }
        }
    }
}
