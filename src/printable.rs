//! Text from outside (JobAG, EURES, a ledger they filled) made safe to put
//! in front of a person: control characters, and the invisible ones that
//! reorder or hide text, are written as escapes, so a remote string cannot
//! move a terminal's cursor, recolour it, or pass for something else.
//! Everything else, Danish letters included, stays as it is.

use std::borrow::Cow;
use std::fmt::Write;

/// Characters a terminal may act on or that change how text reads without
/// being seen: C0, DEL and C1 controls, bidirectional overrides and
/// isolates, zero-width characters, line and paragraph separators.
fn is_hazard(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
        )
}

/// `s` with every hazardous character escaped as Rust writes it (`\n`,
/// `\u{1b}`); unchanged (and not copied) when it holds none.
pub fn text(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_hazard) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_hazard(c) {
            let _ = write!(out, "{}", c.escape_debug());
            // escape_debug leaves some of these as they are (they are
            // "printable" to it): those become \u{..}.
            if out.ends_with(c) {
                out.pop();
                let _ = write!(out, "{}", c.escape_unicode());
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// [`text`], cut to at most `max` characters (with `…` when cut): for a
/// value that is itself suspect, such as a reference that is no id.
pub fn short(s: &str, max: usize) -> String {
    let mut cut: String = s.chars().take(max).collect();
    if cut.len() < s.len() {
        cut.push('…');
    }
    text(&cut).into_owned()
}

/// A JSON document as text with the hazardous characters serde_json leaves
/// alone (it escapes only C0 controls) written as `\uXXXX` escapes: still
/// the same JSON, since outside strings JSON has only ASCII.
pub fn json(doc: &str) -> Cow<'_, str> {
    if !doc.chars().any(is_hazard_in_json) {
        return Cow::Borrowed(doc);
    }
    let mut out = String::with_capacity(doc.len() + 16);
    for c in doc.chars() {
        if is_hazard_in_json(c) {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Hazards left in serialized JSON: a raw newline or tab there is layout.
fn is_hazard_in_json(c: char) -> bool {
    is_hazard(c) && !matches!(c, '\n' | '\t' | '\r' | ' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_invisible_characters_are_escaped() {
        assert_eq!(text("Café København Ø"), "Café København Ø");
        assert!(matches!(text("plain"), Cow::Borrowed(_)));
        assert_eq!(
            text("a\u{1b}[31mred\nb\tc\u{7f}\u{9b}"),
            "a\\u{1b}[31mred\\nb\\tc\\u{7f}\\u{9b}"
        );
        assert_eq!(text("x\u{202e}y\u{200b}z"), "x\\u{202e}y\\u{200b}z");
        for c in (0u32..0x20).chain(0x7f..0xa0).filter_map(char::from_u32) {
            assert!(!text(&format!("a{c}b")).contains(c), "{c:?}");
        }
    }

    #[test]
    fn short_cuts_and_escapes() {
        assert_eq!(short("abc", 5), "abc");
        assert_eq!(short("abcdef", 3), "abc…");
        assert_eq!(short("\u{1b}bcdef", 2), "\\u{1b}b…");
    }

    #[test]
    fn json_stays_the_same_document() {
        let doc = serde_json::json!({"reason": "a\u{1b}b\u{9b}c\u{202e}d é\n"});
        let pretty = serde_json::to_string_pretty(&doc).unwrap();
        let safe = json(&pretty);
        assert!(!safe.contains(['\u{1b}', '\u{9b}', '\u{202e}']), "{safe}");
        assert!(safe.contains('é'));
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, doc);
    }
}
