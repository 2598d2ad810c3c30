//! The `PositionOpening` check every PUT's document goes through: well
//! formed, namespace well formed, and an HR-XML 3.2 root.

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

/// The namespace the `PositionOpening` root must be in (SPEC 5).
pub const HR_XML_NAMESPACE: &str = "http://www.hr-xml.org/3";

/// Whether `c` may appear in an XML 1.0 document.
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Checks that `xml` is a well-formed, namespace-well-formed document whose
/// root is an HR-XML 3.2 `PositionOpening`. Reads every event, so a defect
/// anywhere in the document is found. The error says what is wrong.
pub fn check_position_opening(xml: &str) -> Result<(), String> {
    if let Some((at, c)) = xml.char_indices().find(|&(_, c)| !xml_char(c)) {
        return Err(format!(
            "character U+{:04X} at byte {at} is not allowed in XML 1.0",
            c as u32
        ));
    }
    let mut reader = NsReader::from_str(xml);
    let mut depth = 0usize;
    let mut root_seen = false;
    loop {
        let (ns, event) = match reader.read_resolved_event() {
            Ok(step) => step,
            Err(e) => {
                let at = reader.error_position();
                return Err(format!("not well-formed XML at byte {at}: {e}"));
            }
        };
        if let ResolveResult::Unknown(prefix) = &ns {
            return Err(format!("undeclared namespace prefix {prefix:?}"));
        }
        let ns_is_hr = matches!(&ns, ResolveResult::Bound(n) if n.0 == HR_XML_NAMESPACE);
        match event {
            Event::Start(e) => {
                open_element(&e, depth, &mut root_seen, ns_is_hr)?;
                depth += 1;
            }
            Event::Empty(e) => open_element(&e, depth, &mut root_seen, ns_is_hr)?,
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::Text(t) => {
                if depth == 0 && !t.chars().all(|c| matches!(c, ' ' | '\t' | '\n' | '\r')) {
                    return Err("text outside the root element".into());
                }
            }
            Event::CData(_) if depth == 0 => return Err("CDATA outside the root element".into()),
            Event::GeneralRef(r) => {
                if depth == 0 {
                    return Err("reference outside the root element".into());
                }
                if r.is_char_ref() {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) if xml_char(c) => {}
                        _ => return Err(format!("invalid character reference &{};", &*r)),
                    }
                } else {
                    let name: &str = &r;
                    if !matches!(name, "amp" | "lt" | "gt" | "quot" | "apos") {
                        return Err(format!("undefined entity &{name};"));
                    }
                }
            }
            Event::Eof => break,
            Event::CData(_)
            | Event::Comment(_)
            | Event::Decl(_)
            | Event::PI(_)
            | Event::DocType(_) => {}
        }
    }
    if !root_seen {
        return Err("no root element".into());
    }
    if depth != 0 {
        return Err(format!("{depth} element(s) not closed at end of document"));
    }
    Ok(())
}

/// Checks an opening (or empty) element; the first one is the root.
fn open_element(
    e: &BytesStart<'_>,
    depth: usize,
    root_seen: &mut bool,
    ns_is_hr: bool,
) -> Result<(), String> {
    check_attributes(e)?;
    if depth == 0 {
        if *root_seen {
            return Err("more than one root element".into());
        }
        *root_seen = true;
        check_root(e, ns_is_hr)?;
    }
    Ok(())
}

fn check_attributes(e: &BytesStart<'_>) -> Result<(), String> {
    for attr in e.attributes() {
        let attr = attr.map_err(|e| format!("malformed attribute: {e}"))?;
        attr.normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| format!("bad attribute value: {e}"))?;
    }
    Ok(())
}

fn check_root(e: &BytesStart<'_>, ns_is_hr: bool) -> Result<(), String> {
    let local = e.local_name();
    if local.as_ref() != "PositionOpening" {
        return Err(format!(
            "root element is {:?}, expected PositionOpening",
            e.name().as_ref()
        ));
    }
    if !ns_is_hr {
        return Err(format!(
            "PositionOpening must be in namespace {HR_XML_NAMESPACE}"
        ));
    }
    for (name, want) in [("majorVersionID", "3"), ("minorVersionID", "2")] {
        let value = e
            .try_get_attribute(name)
            .map_err(|err| format!("malformed attribute: {err}"))?
            .map(|a| {
                a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .map(|v| v.into_owned())
            });
        match value {
            None => return Err(format!("PositionOpening lacks {name}=\"{want}\"")),
            Some(Ok(v)) if v == want => {}
            Some(Ok(v)) => {
                return Err(format!(
                    "PositionOpening has {name}=\"{v}\", expected \"{want}\""
                ));
            }
            Some(Err(err)) => return Err(format!("bad attribute value: {err}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<PositionOpening xmlns="http://www.hr-xml.org/3" xmlns:oa="http://www.openapplications.org/oagis/9" majorVersionID="3" minorVersionID="2">
  <DocumentID schemeID="JOBAG">x</DocumentID>
  <PositionTitle>Udvikler &amp; tester &#xF8;</PositionTitle>
  <oa:CityName>København Ø</oa:CityName>
  <PositionFormattedDescription><Content><![CDATA[<p>hi</p>]]></Content></PositionFormattedDescription>
  <Empty/>
</PositionOpening>
"#;

    #[test]
    fn accepts_a_valid_document() {
        assert_eq!(check_position_opening(OK), Ok(()));
        let empty_root = r#"<PositionOpening xmlns="http://www.hr-xml.org/3" majorVersionID="3" minorVersionID="2"/>"#;
        assert_eq!(check_position_opening(empty_root), Ok(()));
    }

    #[test]
    fn rejects_bad_documents() {
        let cases = [
            ("", "no root"),
            ("not xml", "text outside"),
            (&OK.replace("</PositionOpening>", ""), "not closed"),
            (
                &OK.replace("</PositionTitle>", "</Title>"),
                "not well-formed",
            ),
            (
                &OK.replace(" majorVersionID=\"3\"", ""),
                "lacks majorVersionID",
            ),
            (
                &OK.replace("minorVersionID=\"2\"", "minorVersionID=\"1\""),
                "minorVersionID=\"1\"",
            ),
            (
                &OK.replace("xmlns=\"http://www.hr-xml.org/3\"", ""),
                "namespace",
            ),
            (
                &OK.replace("PositionOpening", "JobPosting"),
                "expected PositionOpening",
            ),
            (&OK.replace("&amp;", "&nbsp;"), "undefined entity"),
            (&OK.replace("&amp;", "&"), "not well-formed"),
            (&OK.replace("&#xF8;", "&#x1;"), "character reference"),
            (
                &OK.replace("tester", "te\u{1}ster"),
                "not allowed in XML 1.0",
            ),
            (
                &OK.replace("<Empty/>", "<x:Empty/>"),
                "undeclared namespace prefix",
            ),
            (&format!("{OK}<PositionOpening/>"), "more than one root"),
            (
                &OK.replace("schemeID=\"JOBAG\"", "schemeID=\"A\" schemeID=\"B\""),
                "attribute",
            ),
        ];
        for (doc, want) in cases {
            let err = check_position_opening(doc).expect_err(want);
            assert!(err.contains(want), "{want:?} not in {err:?}");
        }
    }
}
