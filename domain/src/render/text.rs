//! Text hygiene for the renderer: characters XML 1.0 forbids are removed from
//! every value, single-line values are trimmed, HTML values get their line
//! ends normalised. Escaping itself is quick-xml's job (see the writer).

/// Whether XML 1.0 allows `c` in a document (production `Char`):
/// `#x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]`.
/// Surrogates cannot occur in a Rust `char`, so what is left out are the C0
/// controls other than tab, line feed and carriage return, and U+FFFE/U+FFFF.
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c,
        '\u{9}' | '\u{A}' | '\u{D}'
        | '\u{20}'..='\u{D7FF}'
        | '\u{E000}'..='\u{FFFD}'
        | '\u{10000}'..='\u{10FFFF}')
}

/// `s` without the characters XML 1.0 forbids.
pub(crate) fn strip_forbidden(s: &str) -> String {
    s.chars().filter(|c| is_xml_char(*c)).collect()
}

/// A single-line value as rendered: forbidden characters removed, then
/// trimmed; `None` when nothing is left (absent means absent, never "null").
pub(crate) fn clean_line(s: Option<&str>) -> Option<String> {
    let cleaned = strip_forbidden(s?);
    let trimmed = cleaned.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

/// An HTML value (description, application instructions) as rendered in
/// CDATA: forbidden characters removed, `\r\n` and lone `\r` turned into `\n`
/// (an XML parser does that to CDATA anyway, so what we hash is what the
/// receiver reads), trimmed; `None` when nothing is left.
pub(crate) fn clean_html(s: Option<&str>) -> Option<String> {
    let cleaned = strip_forbidden(s?)
        .replace("\r\n", "\n")
        .replace('\r', "\n");
    let trimmed = cleaned.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_characters_go() {
        assert_eq!(strip_forbidden("a\u{1}b\u{b}c\u{c}d\u{0}e"), "abcde");
        assert_eq!(strip_forbidden("x\u{FFFE}\u{FFFF}y"), "xy");
        assert_eq!(
            strip_forbidden("\t\n\r æøå 🚀 \u{7f}"),
            "\t\n\r æøå 🚀 \u{7f}"
        );
    }

    #[test]
    fn lines_and_html() {
        assert_eq!(clean_line(Some("  Kbh Ø \u{1} ")).as_deref(), Some("Kbh Ø"));
        assert_eq!(clean_line(Some(" \u{1}\u{b} ")), None);
        assert_eq!(clean_line(None), None);
        assert_eq!(
            clean_html(Some(" <p>a</p>\r\n<p>b</p>\r ")).as_deref(),
            Some("<p>a</p>\n<p>b</p>")
        );
        assert_eq!(clean_html(Some("\r\n \u{0} ")), None);
    }
}
