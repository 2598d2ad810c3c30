//! HR-XML 3.2 `PositionOpening` renderer, EURES content format 1.3 (SPEC 5).
//!
//! [`render`] turns one JobAG posting into the document EURES receives, or
//! says which JobAG field makes it invalid ([`Invalid`]). [`content_hash`] is
//! the SHA-256 of that document, the value the EURES listing reports as
//! `contentSha256`.
//!
//! The same input always gives the same bytes: no clock, no hash-map
//! iteration, amounts formatted by fixed rules. An edit in JobAG that does not
//! change the document therefore leaves the hash alone.
//!
//! # Shape
//!
//! Element order is SPEC 5's table. The default namespace is
//! `http://www.hr-xml.org/3`; one prefix, `oa`, declared once on the root,
//! carries `http://www.openapplications.org/oagis/9` for the address parts.
//! Output is indented by two spaces; text is escaped by quick-xml (`<`, `>`,
//! `&`, and `\r` as `&#13;`), HTML (description, application instructions)
//! goes in CDATA, a `]]>` inside split across two sections
//! (`]]]]><![CDATA[>`). Characters XML 1.0 forbids are removed from every
//! value first.
//!
//! Where SPEC 5 leaves the form open, these choices hold:
//!
//! - **Address parts** follow the OAGIS 9 `AddressBaseType` sequence, as in
//!   the documents EURES accepts from Norway: `oa:AddressLine`,
//!   `oa:CityName`, `oa:CountrySubDivisionCode`, `CountryCode` (hr
//!   namespace), `oa:PostalCode`; absent parts are left out. Which locations
//!   are kept: see the `address` module (EURES countries only, foreign NUTS
//!   codes dropped, duplicates and redundant country-only addresses removed).
//! - **Experience** is `PositionQualifications/ExperienceSummary/
//!   ExperienceCategory` with a `CategoryCode` in the same code list and code
//!   as `JobCategoryCode`, and `Measure unitCode="year"` holding the whole
//!   years (months / 12 rounded down). Under one year states no requirement
//!   and is left out.
//! - **Qualifications** are written in the order `PositionCompetency` (one
//!   per language: `CompetencyID` ISO 639-1, `TaxonomyID` `language`,
//!   `RequiredProficiencyLevel/ScoreText` CEFR when given),
//!   `EducationRequirement/EducationLevelCode`, `ExperienceSummary`,
//!   `LicenseTypeCode` (one per class). Repeated languages or classes are
//!   written once (first wins); invalid items are dropped one by one.
//! - **Salary** is `OfferedRemunerationPackage/RemunerationRange` with
//!   `RemunerationTypeCode` `BasePay`, `RemunerationMinimumAmount` and
//!   `RemunerationMaximumAmount` (each when given, `currencyID` ISO 4217)
//!   and `RemunerationRateIntervalCode` (`Hour`, `Day`, `Week`, `Month`,
//!   `Year`): the element names the HR-XML 3.2 schema knows (SPEC 5).
//! - **StartDate** is `PositionPeriod/StartDate/FormattedDateTime`
//!   (`YYYY-MM-DD`), never a free `DateText`.
//! - **ApplicationCloseDate** is `application_deadline`; when JobAG sends
//!   none, it is the UTC calendar date of `publication_end` (the posting
//!   stops being available on Jobnet then, so no application can be made
//!   through it afterwards). With neither the posting is invalid
//!   (`application_deadline`).
//! - **ApplicationMethod/Instructions** lists the application URL, the
//!   application email and the employer's instructions, each present one on
//!   its own line: the URL and the email as escaped HTML text, each only
//!   when it is one (an `http(s)` URL with a host and no user information,
//!   read by a URL parser; a strict `local@domain.tld`), the instructions
//!   sanitized. Contact person data (`contact`) is never rendered. With
//!   `eures_consent_scope = "posting"` it holds the application URL alone,
//!   else `jobag.posting_url_template` with the id: no email, no free text
//!   (either may name a person), and the description keeps no `mailto:`
//!   link (its text stays).
//! - **HTML** (`Instructions`, `Content`) is held as the sanitizer's
//!   output and nothing else, and it is a fixed point of the sanitizer:
//!   sanitized again, it comes back byte for byte.
//! - **JobCategoryCode** is ESCO (`ESCO_Occupations`, `ESCOv1`) when an
//!   ESCO occupation URI is given, written in its canonical form (`http://`,
//!   lowercase UUID); an ESCO URI of an ISCO concept travels as that ISCO-08
//!   code; otherwise the ISCO-08 code given. Every code-list value carries
//!   `listName`, `listVersionID` and `listURI` (BR-COM-55).
//! - **IndustryCode** is the NACE class in EURES form, the division without
//!   a leading zero, the section letter of `jobag.nace_revision`.
//! - Codes are normalised before they are checked (`DA` → `da`, `b2` → `B2`,
//!   `gr` → `EL`); language codes are written lowercase everywhere.

mod address;
mod html;
mod link;
mod model;
mod text;

use std::io;

use quick_xml::Writer;
use quick_xml::escape::partial_escape;
use quick_xml::events::{BytesCData, BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use sha2::{Digest, Sha256};

pub use self::html::sanitize;
use self::model::{Document, Qualifications, Remuneration};
use super::codes::NaceRevision;
use super::posting::PostingFields;

/// The HR-XML 3 namespace, default namespace of the document.
pub const HR_NS: &str = "http://www.hr-xml.org/3";
/// The OAGIS 9 namespace of the address parts, prefix `oa`.
pub const OA_NS: &str = "http://www.openapplications.org/oagis/9";

/// Why a posting does not render to a valid PositionOpening.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {why}")]
pub struct Invalid {
    /// The JobAG field at fault, dotted (`employer.name`, `locations[0].country`).
    pub field: String,
    pub why: String,
}

/// What the document depends on besides the posting: the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentSettings {
    /// `PostingRequester/PartyID` (`eures.party_id`).
    pub party_id: String,
    /// The NACE revision of `employer.nace` (`jobag.nace_revision`): it
    /// decides the section letter of `IndustryCode`.
    pub nace_revision: NaceRevision,
    /// `jobag.posting_url_template`: where to apply, `{id}` standing for the
    /// posting's id, when the consent covers the posting only and the
    /// posting has no application URL of its own.
    pub posting_url_template: Option<String>,
}

impl Default for DocumentSettings {
    /// The configuration's defaults (`STAR-DK`, NACE Rev. 2).
    fn default() -> Self {
        DocumentSettings {
            party_id: "STAR-DK".to_string(),
            nace_revision: NaceRevision::Rev2,
            posting_url_template: None,
        }
    }
}

/// Renders the EURES document for posting `id` under `settings`.
///
/// Fails, naming the JobAG field, when a required value is missing or
/// invalid: `language` (ISO 639-1), `application` (no URL, email or
/// instructions), `title` (1..=200 characters after trimming), `locations`
/// (none in a EURES country), `employer.name`, `occupation` (no four-digit
/// ISCO-08 code, no ESCO URI), `description`, `application_deadline` (and no
/// `publication_end`). The first failure in document order is reported.
pub fn render(
    id: &str,
    fields: &PostingFields,
    settings: &DocumentSettings,
) -> Result<String, Invalid> {
    let document = model::build(id, fields, settings)?;
    let bytes = write_document(&document).map_err(|e| Invalid {
        field: "document".into(),
        why: format!("cannot be written: {e}"),
    })?;
    String::from_utf8(bytes).map_err(|e| Invalid {
        field: "document".into(),
        why: format!("not UTF-8: {e}"),
    })
}

/// Lowercase hex SHA-256 of the document string: the `contentSha256` the
/// EURES listing reports for it.
pub fn content_hash(xml: &str) -> String {
    hex::encode(Sha256::digest(xml.as_bytes()))
}

/// quick-xml writer with the few shapes this document needs.
struct Xml {
    writer: Writer<Vec<u8>>,
}

impl Xml {
    fn new() -> Self {
        Xml {
            writer: Writer::new_with_indent(Vec::with_capacity(4096), b' ', 2),
        }
    }

    fn open(&mut self, name: &str, attributes: &[(&str, &str)]) -> io::Result<()> {
        let start = BytesStart::new(name).with_attributes(attributes.iter().copied());
        self.writer.write_event(Event::Start(start))
    }

    fn close(&mut self, name: &str) -> io::Result<()> {
        self.writer.write_event(Event::End(BytesEnd::new(name)))
    }

    /// `<name attributes>text</name>`, text escaped by quick-xml.
    fn text(&mut self, name: &str, attributes: &[(&str, &str)], text: &str) -> io::Result<()> {
        self.open(name, attributes)?;
        self.writer
            .write_event(Event::Text(BytesText::from_escaped(partial_escape(text))))?;
        self.close(name)
    }

    /// `<name><![CDATA[html]]></name>`, any `]]>` split across sections.
    fn cdata(&mut self, name: &str, html: &str) -> io::Result<()> {
        self.open(name, &[])?;
        for section in BytesCData::escaped(html) {
            self.writer.write_event(Event::CData(section))?;
        }
        self.close(name)
    }

    fn optional_text(&mut self, name: &str, text: Option<&str>) -> io::Result<()> {
        match text {
            Some(text) => self.text(name, &[], text),
            None => Ok(()),
        }
    }
}

fn write_document(doc: &Document) -> io::Result<Vec<u8>> {
    let mut x = Xml::new();
    x.writer
        .write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    x.open(
        "PositionOpening",
        &[
            ("xmlns", HR_NS),
            ("xmlns:oa", OA_NS),
            ("majorVersionID", "3"),
            ("minorVersionID", "2"),
        ],
    )?;
    x.text(
        "DocumentID",
        &[
            ("schemeID", "JOBAG"),
            ("schemeAgencyID", "STAR"),
            ("schemeVersionID", "1.3"),
        ],
        &doc.id,
    )?;
    x.text("PositionOpeningStatusCode", &[("name", "Active")], "Active")?;
    x.open("PostingRequester", &[])?;
    x.text("PartyID", &[], &doc.party_id)?;
    x.close("PostingRequester")?;

    x.open("PositionProfile", &[("languageCode", &doc.language)])?;
    x.open("PostingInstruction", &[])?;
    if doc.eures_flag {
        x.text("PostingOptionCode", &[], "EURESFlag")?;
    }
    x.open("ApplicationMethod", &[])?;
    x.cdata("Instructions", doc.application.as_str())?;
    x.close("ApplicationMethod")?;
    x.close("PostingInstruction")?;
    x.text("PositionTitle", &[], &doc.title)?;
    for address in &doc.locations {
        x.open("PositionLocation", &[])?;
        x.open("Address", &[])?;
        x.optional_text("oa:AddressLine", address.line.as_deref())?;
        x.optional_text("oa:CityName", address.city.as_deref())?;
        x.optional_text("oa:CountrySubDivisionCode", address.nuts.as_deref())?;
        x.text("CountryCode", &[], address.country)?;
        x.optional_text("oa:PostalCode", address.postal_code.as_deref())?;
        x.close("Address")?;
        x.close("PositionLocation")?;
    }
    x.open("PositionOrganization", &[])?;
    x.open("OrganizationIdentifiers", &[])?;
    x.text("OrganizationName", &[], &doc.organization.name)?;
    x.optional_text("OrganizationLegalID", doc.organization.legal_id.as_deref())?;
    x.close("OrganizationIdentifiers")?;
    x.optional_text("IndustryCode", doc.organization.industry.as_deref())?;
    x.close("PositionOrganization")?;
    x.text("PositionOpenQuantity", &[], &doc.positions.to_string())?;
    x.text(
        "JobCategoryCode",
        doc.category.list_attributes(),
        doc.category.code(),
    )?;
    x.optional_text("PositionOfferingTypeCode", doc.offering)?;
    if !doc.qualifications.is_empty() {
        write_qualifications(&mut x, doc, &doc.qualifications)?;
    }
    x.open("PositionFormattedDescription", &[])?;
    x.cdata("Content", doc.description.as_str())?;
    x.close("PositionFormattedDescription")?;
    x.text("WorkingLanguageCode", &[], &doc.language)?;
    if let Some(start) = doc.start_date {
        x.open("PositionPeriod", &[])?;
        x.open("StartDate", &[])?;
        x.text(
            "FormattedDateTime",
            &[],
            &start.format("%Y-%m-%d").to_string(),
        )?;
        x.close("StartDate")?;
        x.close("PositionPeriod")?;
    }
    x.text(
        "ImmediateStartIndicator",
        &[],
        if doc.immediate_start { "true" } else { "false" },
    )?;
    x.optional_text("PositionScheduleTypeCode", doc.schedule)?;
    if let Some(remuneration) = &doc.remuneration {
        write_remuneration(&mut x, remuneration)?;
    }
    x.text(
        "ApplicationCloseDate",
        &[],
        &doc.close_date.format("%Y-%m-%d").to_string(),
    )?;
    x.close("PositionProfile")?;
    x.close("PositionOpening")?;
    Ok(x.writer.into_inner())
}

fn write_qualifications(x: &mut Xml, doc: &Document, q: &Qualifications) -> io::Result<()> {
    x.open("PositionQualifications", &[])?;
    for language in &q.languages {
        x.open("PositionCompetency", &[])?;
        x.text("CompetencyID", &[], &language.code)?;
        x.text("TaxonomyID", &[], "language")?;
        if let Some(level) = &language.level {
            x.open("RequiredProficiencyLevel", &[])?;
            x.text("ScoreText", &[], level)?;
            x.close("RequiredProficiencyLevel")?;
        }
        x.close("PositionCompetency")?;
    }
    if let Some(level) = q.education {
        x.open("EducationRequirement", &[])?;
        x.text(
            "EducationLevelCode",
            &[
                ("listName", "EURES_ISCEDEducationLevel"),
                ("listVersionID", "2011"),
                ("listURI", "https://ec.europa.eu/eures"),
            ],
            &level.to_string(),
        )?;
        x.close("EducationRequirement")?;
    }
    if let Some(years) = q.experience_years {
        x.open("ExperienceSummary", &[])?;
        x.open("ExperienceCategory", &[])?;
        x.text(
            "CategoryCode",
            doc.category.list_attributes(),
            doc.category.code(),
        )?;
        x.text("Measure", &[("unitCode", "year")], &years.to_string())?;
        x.close("ExperienceCategory")?;
        x.close("ExperienceSummary")?;
    }
    for class in &q.licences {
        x.text("LicenseTypeCode", &[], class)?;
    }
    x.close("PositionQualifications")
}

fn write_remuneration(x: &mut Xml, r: &Remuneration) -> io::Result<()> {
    x.open("OfferedRemunerationPackage", &[])?;
    x.open("RemunerationRange", &[])?;
    x.text("RemunerationTypeCode", &[], "BasePay")?;
    if let Some(minimum) = &r.minimum {
        x.text(
            "RemunerationMinimumAmount",
            &[("currencyID", &r.currency)],
            minimum,
        )?;
    }
    if let Some(maximum) = &r.maximum {
        x.text(
            "RemunerationMaximumAmount",
            &[("currencyID", &r.currency)],
            maximum,
        )?;
    }
    x.optional_text("RemunerationRateIntervalCode", r.interval)?;
    x.close("RemunerationRange")?;
    x.close("OfferedRemunerationPackage")
}

#[cfg(test)]
mod tests {
    use super::text::strip_forbidden;
    use super::*;
    use crate::posting::{
        Application, Contact, Employer, EmploymentType, Location, Occupation, Requirements, Salary,
        WorkingTime,
    };
    use chrono::{NaiveDate, TimeZone, Utc};
    use proptest::prelude::*;
    use quick_xml::events::Event;
    use quick_xml::name::ResolveResult;
    use quick_xml::reader::NsReader;

    /// One element read back: local names from the root, namespace, text.
    #[derive(Debug, Clone, PartialEq)]
    struct Element {
        path: String,
        ns: Option<String>,
        text: String,
        attributes: Vec<(String, String)>,
    }

    /// Parses `xml` to the end with quick-xml, resolving namespaces, entity
    /// and character references; fails on anything ill-formed.
    fn parse(xml: &str) -> Result<Vec<Element>, String> {
        let mut reader = NsReader::from_str(xml);
        let mut stack: Vec<usize> = Vec::new();
        let mut out: Vec<Element> = Vec::new();
        loop {
            let (ns, event) = reader.read_resolved_event().map_err(|e| e.to_string())?;
            let ns = match ns {
                ResolveResult::Bound(ns) => Some(ns.as_ref().to_string()),
                ResolveResult::Unbound => None,
                ResolveResult::Unknown(p) => return Err(format!("unknown prefix {p}")),
            };
            match event {
                Event::Start(e) => {
                    let local = e.local_name().as_ref().to_string();
                    let path = match stack.last() {
                        Some(&parent) => format!("{}/{local}", out[parent].path),
                        None => local,
                    };
                    let attributes = e
                        .attributes()
                        .map(|a| {
                            let a = a.map_err(|e| e.to_string())?;
                            let value = a
                                .normalized_value(quick_xml::XmlVersion::Explicit1_0)
                                .map_err(|e| e.to_string())?;
                            Ok((a.key.as_ref().to_string(), value.into_owned()))
                        })
                        .collect::<Result<Vec<_>, String>>()?;
                    stack.push(out.len());
                    out.push(Element {
                        path,
                        ns,
                        text: String::new(),
                        attributes,
                    });
                }
                Event::End(_) => {
                    stack.pop().ok_or("unbalanced end")?;
                }
                Event::Empty(_) => return Err("no empty elements expected".into()),
                Event::Text(t) => {
                    if let Some(&i) = stack.last() {
                        out[i].text.push_str(&t.xml10_content());
                    }
                }
                Event::CData(t) => {
                    if let Some(&i) = stack.last() {
                        out[i].text.push_str(&t.xml10_content());
                    }
                }
                Event::GeneralRef(r) => {
                    let c = match r.resolve_char_ref().map_err(|e| e.to_string())? {
                        Some(c) => c,
                        None => match r.as_ref() {
                            "amp" => '&',
                            "lt" => '<',
                            "gt" => '>',
                            "quot" => '"',
                            "apos" => '\'',
                            other => return Err(format!("unknown entity {other}")),
                        },
                    };
                    if let Some(&i) = stack.last() {
                        out[i].text.push(c);
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
        if stack.is_empty() {
            Ok(out)
        } else {
            Err("unclosed elements".into())
        }
    }

    fn texts<'a>(elements: &'a [Element], path: &str) -> Vec<&'a str> {
        elements
            .iter()
            .filter(|e| e.path == path)
            .map(|e| e.text.as_str())
            .collect()
    }

    fn one<'a>(elements: &'a [Element], path: &str) -> &'a str {
        match texts(elements, path)[..] {
            [text] => text,
            ref other => panic!("{path}: {other:?}"),
        }
    }

    const P: &str = "PositionOpening/PositionProfile";

    fn location(line: &str, postal: &str, city: &str, country: &str, nuts: &str) -> Location {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Location {
            address_line: some(line),
            postal_code: some(postal),
            city: some(city),
            country: some(country),
            nuts: some(nuts),
        }
    }

    /// A complete, valid posting.
    fn posting() -> PostingFields {
        PostingFields {
            eures_flag: Some(false),
            publication_end: Some(Utc.with_ymd_and_hms(2026, 12, 15, 23, 59, 59).unwrap()),
            title: Some("Softwareudvikler".into()),
            description: Some("<p>Vi søger en udvikler.</p>".into()),
            language: Some("da".into()),
            employer: Some(Employer {
                name: Some("Acme ApS".into()),
                cvr: Some("12345678".into()),
                nace: Some("62.01".into()),
            }),
            locations: Some(vec![location(
                "Vermundsgade 38",
                "2100",
                "København Ø",
                "DK",
                "DK011",
            )]),
            occupation: Some(Occupation {
                isco: Some("2512".into()),
                esco_uri: None,
            }),
            positions: Some(2),
            employment_type: Some(EmploymentType::Permanent),
            working_time: Some(WorkingTime::FullTime),
            start_date: NaiveDate::from_ymd_opt(2027, 1, 1),
            start_asap: Some(false),
            application_deadline: NaiveDate::from_ymd_opt(2026, 12, 10),
            application: Some(Application {
                url: Some("https://acme.dk/job/1".into()),
                email: None,
                instructions: None,
            }),
            contact: Some(Contact {
                name: Some("Jane Doe".into()),
                email: Some("jane.doe@acme.dk".into()),
                phone: Some("+4512345678".into()),
            }),
            requirements: Some(Requirements {
                education_isced: Some(6),
                experience_months: Some(24),
                languages: None,
                driving_licences: Some(vec!["B".into()]),
            }),
            salary: Some(Salary {
                min: Some(45000.0),
                max: Some(55000.0),
                currency: Some("DKK".into()),
                period: Some("month".into()),
            }),
            ..PostingFields::default()
        }
    }

    fn rendered(fields: &PostingFields) -> (String, Vec<Element>) {
        let xml = render(
            "a3f1c2d4-0000-4000-8000-000000000001",
            fields,
            &DocumentSettings::default(),
        )
        .expect("renders");
        let elements = parse(&xml).expect("well-formed");
        (xml, elements)
    }

    fn field_of(fields: &PostingFields) -> String {
        match render("x", fields, &DocumentSettings::default()) {
            Err(invalid) => invalid.field,
            Ok(xml) => panic!("expected invalid, got {xml}"),
        }
    }

    #[test]
    fn same_input_same_bytes_same_hash() {
        let fields = posting();
        let a = render("id-1", &fields, &DocumentSettings::default()).expect("renders");
        let b = render("id-1", &fields.clone(), &DocumentSettings::default()).expect("renders");
        assert_eq!(a, b);
        assert_eq!(content_hash(&a), content_hash(&b));
        assert_eq!(content_hash(&a).len(), 64);
        assert!(
            content_hash(&a)
                .bytes()
                .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        );
        let mut edited = fields;
        edited.title = Some("Softwareudvikler II".into());
        let c = render("id-1", &edited, &DocumentSettings::default()).expect("renders");
        assert_ne!(content_hash(&a), content_hash(&c));
    }

    #[test]
    fn content_hash_is_sha256_hex() {
        assert_eq!(
            content_hash(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            content_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn document_frame_and_order() {
        let (xml, el) = rendered(&posting());
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PositionOpening "));
        let root = &el[0];
        assert_eq!(root.path, "PositionOpening");
        assert_eq!(root.ns.as_deref(), Some(HR_NS));
        for (k, v) in [
            ("xmlns", HR_NS),
            ("xmlns:oa", OA_NS),
            ("majorVersionID", "3"),
            ("minorVersionID", "2"),
        ] {
            assert!(root.attributes.contains(&(k.into(), v.into())), "{k}");
        }
        let order: Vec<&str> = el
            .iter()
            .filter(|e| e.path.matches('/').count() == 2 && e.path.starts_with(P))
            .map(|e| e.path.rsplit('/').next().unwrap_or_default())
            .collect();
        assert_eq!(
            order,
            [
                "PostingInstruction",
                "PositionTitle",
                "PositionLocation",
                "PositionOrganization",
                "PositionOpenQuantity",
                "JobCategoryCode",
                "PositionOfferingTypeCode",
                "PositionQualifications",
                "PositionFormattedDescription",
                "WorkingLanguageCode",
                "PositionPeriod",
                "ImmediateStartIndicator",
                "PositionScheduleTypeCode",
                "OfferedRemunerationPackage",
                "ApplicationCloseDate",
            ]
        );
        assert_eq!(
            one(&el, "PositionOpening/DocumentID"),
            "a3f1c2d4-0000-4000-8000-000000000001"
        );
        assert_eq!(
            one(&el, "PositionOpening/PostingRequester/PartyID"),
            "STAR-DK"
        );
        assert_eq!(one(&el, &format!("{P}/PositionOpenQuantity")), "2");
        assert_eq!(one(&el, &format!("{P}/JobCategoryCode")), "2512");
        assert_eq!(
            one(&el, &format!("{P}/PositionOfferingTypeCode")),
            "DirectHire"
        );
        assert_eq!(one(&el, &format!("{P}/ApplicationCloseDate")), "2026-12-10");
        assert_eq!(
            one(
                &el,
                &format!("{P}/PositionPeriod/StartDate/FormattedDateTime")
            ),
            "2027-01-01"
        );
        assert_eq!(
            one(&el, &format!("{P}/PositionOrganization/IndustryCode")),
            "J62.0.1"
        );
        // Every element but the address parts is in the hr namespace.
        for e in &el {
            let oa = [
                "AddressLine",
                "CityName",
                "CountrySubDivisionCode",
                "PostalCode",
            ]
            .iter()
            .any(|p| e.path.ends_with(&format!("/Address/{p}")));
            let want = if oa { OA_NS } else { HR_NS };
            assert_eq!(e.ns.as_deref(), Some(want), "{}", e.path);
        }
    }

    #[test]
    fn required_fields_name_the_jobag_field() {
        type Edit = fn(&mut PostingFields);
        let cases: [(&str, Edit); 16] = [
            ("title", |f| f.title = None),
            ("title", |f| f.title = Some(" \u{1}\t ".into())),
            ("title", |f| f.title = Some("x".repeat(201))),
            ("description", |f| f.description = Some("  \u{b} ".into())),
            ("language", |f| f.language = None),
            ("language", |f| f.language = Some("dk".into())),
            ("employer.name", |f| f.employer = None),
            ("employer.name", |f| {
                if let Some(e) = f.employer.as_mut() {
                    e.name = Some("   ".into())
                }
            }),
            ("locations", |f| f.locations = None),
            ("locations", |f| {
                f.locations = Some(vec![location("1 Main St", "10001", "New York", "US", "")])
            }),
            ("occupation", |f| f.occupation = None),
            ("occupation", |f| {
                f.occupation = Some(Occupation {
                    isco: Some("251".into()),
                    esco_uri: Some("http://example.com/occupation/1".into()),
                })
            }),
            ("application", |f| f.application = None),
            ("application", |f| {
                f.application = Some(Application {
                    url: Some("javascript:alert(1)".into()),
                    email: Some("not an email".into()),
                    instructions: Some(" ".into()),
                })
            }),
            ("application_deadline", |f| {
                f.application_deadline = None;
                f.publication_end = None;
            }),
            ("title", |f| {
                f.title = None;
                f.description = None;
            }),
        ];
        for (field, edit) in cases {
            let mut fields = posting();
            edit(&mut fields);
            assert_eq!(field_of(&fields), field, "{fields:?}");
        }
        let invalid = render("x", &PostingFields::default(), &DocumentSettings::default())
            .expect_err("empty");
        assert_eq!(invalid.to_string(), "language: missing");
        let mut ok = posting();
        ok.title = Some(format!("  {}  ", "é".repeat(200)));
        assert!(
            render("x", &ok, &DocumentSettings::default()).is_ok(),
            "200 characters, not bytes"
        );
    }

    #[test]
    fn application_message_text() {
        let mut fields = posting();
        fields.application = None;
        let invalid = render("x", &fields, &DocumentSettings::default()).expect_err("invalid");
        assert_eq!(
            invalid,
            Invalid {
                field: "application".into(),
                why: "needs a url, an email or instructions".into()
            }
        );
    }

    #[test]
    fn contact_data_never_appears() {
        let mut fields = posting();
        fields.application = Some(Application {
            url: None,
            email: Some("jobs@acme.dk".into()),
            instructions: Some("<p>Skriv til os</p>".into()),
        });
        let (xml, el) = rendered(&fields);
        for secret in ["Jane Doe", "jane.doe@acme.dk", "+4512345678", "4512345678"] {
            assert!(!xml.contains(secret), "{secret} leaked");
        }
        assert_eq!(
            one(
                &el,
                &format!("{P}/PostingInstruction/ApplicationMethod/Instructions")
            ),
            "jobs@acme.dk\n<p>Skriv til os</p>"
        );
    }

    #[test]
    fn addresses_deduplicated_country_only_dropped_greece_is_el() {
        let mut fields = posting();
        fields.locations = Some(vec![
            location("", "", "", "DK", ""),
            location("Vermundsgade 38", "2100", "København Ø", "DK", "DK011"),
            location("Vermundsgade 38", "2100", "København Ø", "DK", "DK011"),
            location("", "", "Thessaloniki", "GR", "EL522"),
            location("", "", "", "GR", ""),
            location("1 Main St", "10001", "New York", "US", ""),
            location("", "", "Malmö", "SE", "DK011"),
        ]);
        let (_, el) = rendered(&fields);
        let a = format!("{P}/PositionLocation/Address");
        assert_eq!(texts(&el, &format!("{P}/PositionLocation")).len(), 3);
        assert_eq!(texts(&el, &format!("{a}/CountryCode")), ["DK", "EL", "SE"]);
        assert_eq!(
            texts(&el, &format!("{a}/CountrySubDivisionCode")),
            ["DK011", "EL522"]
        );
        assert_eq!(
            texts(&el, &format!("{a}/CityName")),
            ["København Ø", "Thessaloniki", "Malmö"]
        );
        // OAGIS order inside an address.
        let parts: Vec<&str> = el
            .iter()
            .skip_while(|e| e.path != a)
            .skip(1)
            .take_while(|e| e.path.starts_with(&format!("{a}/")))
            .map(|e| e.path.rsplit('/').next().unwrap_or_default())
            .collect();
        assert_eq!(
            parts,
            [
                "AddressLine",
                "CityName",
                "CountrySubDivisionCode",
                "CountryCode",
                "PostalCode"
            ]
        );
    }

    #[test]
    fn nace_mapping_in_the_document() {
        let rev2_1 = DocumentSettings {
            nace_revision: NaceRevision::Rev2_1,
            ..DocumentSettings::default()
        };
        for (nace, settings, want) in [
            ("62.01", DocumentSettings::default(), Some("J62.0.1")),
            ("62.01", rev2_1.clone(), Some("K62.0.1")),
            ("43.21", DocumentSettings::default(), Some("F43.2.1")),
            ("01.13", DocumentSettings::default(), Some("A1.1.3")),
            ("08.12", DocumentSettings::default(), Some("B8.1.2")),
            ("99.00", DocumentSettings::default(), Some("U99.0.0")),
            ("99.00", rev2_1.clone(), Some("V99.0.0")),
            ("04.00", DocumentSettings::default(), None),
            ("6201", DocumentSettings::default(), Some("J62.0.1")),
            ("rubbish", rev2_1, None),
        ] {
            let mut fields = posting();
            if let Some(e) = fields.employer.as_mut() {
                e.nace = Some(nace.into());
            }
            let xml = render("x", &fields, &settings).expect("renders");
            let el = parse(&xml).expect("well-formed");
            let got = texts(&el, &format!("{P}/PositionOrganization/IndustryCode"));
            assert_eq!(got.first().copied(), want, "{nace}");
        }
    }

    #[test]
    fn salary_uses_the_schema_names_inside_the_range() {
        let (xml, el) = rendered(&posting());
        let range = format!("{P}/OfferedRemunerationPackage/RemunerationRange");
        let children: Vec<&str> = el
            .iter()
            .filter(|e| e.path.starts_with(&format!("{range}/")))
            .map(|e| e.path.rsplit('/').next().unwrap_or_default())
            .collect();
        assert_eq!(
            children,
            [
                "RemunerationTypeCode",
                "RemunerationMinimumAmount",
                "RemunerationMaximumAmount",
                "RemunerationRateIntervalCode"
            ]
        );
        assert_eq!(
            one(&el, &format!("{range}/RemunerationMinimumAmount")),
            "45000"
        );
        assert!(!xml.contains("<MinimumAmount") && !xml.contains("<MaximumAmount"));
    }

    #[test]
    fn occupations_go_to_the_list_that_holds_them() {
        const ISCO: [(&str, &str); 3] = [
            ("listName", "ISCO2008"),
            ("listVersionID", "2008"),
            ("listURI", "http://ec.europa.eu/esco/ConceptScheme/ISCO2008"),
        ];
        const ESCO: [(&str, &str); 3] = [
            ("listName", "ESCO_Occupations"),
            ("listVersionID", "ESCOv1"),
            ("listURI", "https://ec.europa.eu/esco/portal"),
        ];
        let occ = "http://data.europa.eu/esco/occupation/f2b15a0e-e65a-438a-affb-29b9d50b77d1";
        for (isco, esco_uri, want) in [
            (Some("2512"), Some(occ), Ok((occ, ESCO))),
            (None, Some(occ), Ok((occ, ESCO))),
            (
                Some("2512"),
                Some("http://data.europa.eu/esco/isco/C7411"),
                Ok(("7411", ISCO)),
            ),
            (
                None,
                Some("https://data.europa.eu/esco/isco/c7411"),
                Ok(("7411", ISCO)),
            ),
            (
                Some("2512"),
                Some("http://data.europa.eu/esco/skill/f2b15a0e-e65a-438a-affb-29b9d50b77d1"),
                Ok(("2512", ISCO)),
            ),
            (
                None,
                Some("http://data.europa.eu/esco/skill/f2b15a0e-e65a-438a-affb-29b9d50b77d1"),
                Err("occupation"),
            ),
            (
                None,
                Some("http://data.europa.eu/esco/isco/C74"),
                Err("occupation"),
            ),
            (Some("2512"), None, Ok(("2512", ISCO))),
        ] {
            let mut fields = posting();
            fields.occupation = Some(Occupation {
                isco: isco.map(String::from),
                esco_uri: esco_uri.map(String::from),
            });
            match want {
                Err(field) => {
                    let invalid =
                        render("x", &fields, &DocumentSettings::default()).expect_err("invalid");
                    assert_eq!(invalid.field, field, "{esco_uri:?}");
                    assert!(invalid.why.contains("esco_uri"), "{invalid}");
                }
                Ok((code, list)) => {
                    let (_, el) = rendered(&fields);
                    let job = el
                        .iter()
                        .find(|e| e.path == format!("{P}/JobCategoryCode"))
                        .expect("job category");
                    assert_eq!(job.text, code, "{esco_uri:?}");
                    let attributes: Vec<(&str, &str)> = job
                        .attributes
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    assert_eq!(attributes, list, "{esco_uri:?}");
                }
            }
        }
    }

    #[test]
    fn hostile_text_is_escaped_cleaned_and_cdata_split() {
        let mut fields = posting();
        fields.title = Some("C++ & <Rust> \u{1}udvikler\u{b} 🚀".into());
        // The sanitizer's serializer writes `>` as `&gt;` in text and in
        // attribute values alike, so no HTML field carries a `]]>` into
        // CDATA any more; the writer still splits one (below).
        fields.description = Some(
            "<p>a ]]> b <a href=\"https://x.dk/?q=]]>\">c</a></p><script>alert('x')</script>\u{0}"
                .into(),
        );
        fields.application = Some(Application {
            url: Some("https://job.example.dk/?q=]]>&x=<b>".into()),
            email: None,
            instructions: None,
        });
        let (xml, el) = rendered(&fields);
        assert!(xml.contains("<PositionTitle>C++ &amp; &lt;Rust&gt; udvikler 🚀</PositionTitle>"));
        assert!(
            xml.contains("<![CDATA[<p>a ]]&gt; b <a href=\"https://x.dk/?q=]]&gt;\">c</a></p>]]>"),
            "{xml}"
        );
        assert!(
            xml.contains("<![CDATA[https://job.example.dk/?q=]]&gt;&amp;x=&lt;b&gt;]]>"),
            "{xml}"
        );
        assert!(!xml.chars().any(|c| !text::is_xml_char(c)));
        assert_eq!(
            one(&el, &format!("{P}/PositionTitle")),
            "C++ & <Rust> udvikler 🚀"
        );
        assert_eq!(
            one(&el, &format!("{P}/PositionFormattedDescription/Content")),
            "<p>a ]]&gt; b <a href=\"https://x.dk/?q=]]&gt;\">c</a></p>"
        );
        assert_eq!(
            one(
                &el,
                &format!("{P}/PostingInstruction/ApplicationMethod/Instructions")
            ),
            "https://job.example.dk/?q=]]&gt;&amp;x=&lt;b&gt;"
        );
    }

    #[test]
    fn cdata_splits_a_section_end() {
        let mut x = Xml::new();
        x.cdata("C", "a]]>b]]]]>c").expect("written");
        let xml = String::from_utf8(x.writer.into_inner()).expect("UTF-8");
        assert_eq!(
            xml,
            "<C><![CDATA[a]]]]><![CDATA[>b]]]]]]><![CDATA[>c]]></C>"
        );
        let el = parse(&xml).expect("well-formed");
        assert_eq!(one(&el, "C"), "a]]>b]]]]>c");
    }

    #[test]
    fn application_values_are_text_and_implausible_ones_absent() {
        let instructions = |url: Option<&str>, email: Option<&str>, text: Option<&str>| {
            let mut fields = posting();
            fields.application = Some(Application {
                url: url.map(String::from),
                email: email.map(String::from),
                instructions: text.map(String::from),
            });
            let (_, el) = rendered(&fields);
            one(
                &el,
                &format!("{P}/PostingInstruction/ApplicationMethod/Instructions"),
            )
            .to_string()
        };
        assert_eq!(
            instructions(
                Some("https://x.dk/<script>alert(1)</script>"),
                Some("a<img src=x onerror=alert(1)>@x.dk"),
                Some("<p onclick=\"x()\">Ring <a href=\"tel:+45\">os</a></p>"),
            ),
            "https://x.dk/&lt;script&gt;alert(1)&lt;/script&gt;\n<p>Ring <a>os</a></p>"
        );
        assert_eq!(
            instructions(
                Some("javascript:alert(1)//https://x.dk"),
                Some("jobs&co@x.dk"),
                None
            ),
            "jobs&amp;co@x.dk"
        );
        // Scope "posting": the URL alone, as text; the description loses its
        // mailto: link, not its text.
        let mut fields = posting();
        fields.eures_consent_scope = Some(crate::posting::ConsentScope::Posting);
        fields.application = Some(Application {
            url: Some("https://x.dk/a\"><svg/onload=alert(1)>".into()),
            email: Some("jobs@x.dk".into()),
            instructions: Some("<p>Ring til Jane</p>".into()),
        });
        fields.description = Some("<p><a href=\"mailto:jane@x.dk\">Jane</a></p>".into());
        let (xml, el) = rendered(&fields);
        assert_eq!(
            one(
                &el,
                &format!("{P}/PostingInstruction/ApplicationMethod/Instructions")
            ),
            "https://x.dk/a\"&gt;&lt;svg/onload=alert(1)&gt;"
        );
        assert_eq!(
            one(&el, &format!("{P}/PositionFormattedDescription/Content")),
            "<p><a>Jane</a></p>"
        );
        assert!(!xml.contains("jobs@x.dk") && !xml.contains("mailto:"));
    }

    #[test]
    fn esco_experience_and_fallback_close_date() {
        let mut fields = posting();
        fields.occupation = Some(Occupation {
            isco: Some("2512".into()),
            esco_uri: Some(
                "HTTP://data.europa.eu/esco/occupation/F2B15A0E-E65A-438A-AFFB-29B9D50B77D1".into(),
            ),
        });
        fields.application_deadline = None;
        // 00:30 in Copenhagen on 1 January is still 31 December in UTC.
        fields.publication_end = Some(Utc.with_ymd_and_hms(2026, 12, 31, 23, 30, 0).unwrap());
        let (_, el) = rendered(&fields);
        let job = el
            .iter()
            .find(|e| e.path == format!("{P}/JobCategoryCode"))
            .expect("job category");
        let occ = "http://data.europa.eu/esco/occupation/f2b15a0e-e65a-438a-affb-29b9d50b77d1";
        assert_eq!(job.text, occ);
        let q = format!("{P}/PositionQualifications/ExperienceSummary/ExperienceCategory");
        let category = el
            .iter()
            .find(|e| e.path == format!("{q}/CategoryCode"))
            .expect("experience category");
        assert_eq!(category.text, occ);
        assert_eq!(category.attributes, job.attributes, "same list as the job");
        assert_eq!(job.attributes.len(), 3, "BR-COM-55");
        let education = el
            .iter()
            .find(|e| e.path.ends_with("/EducationRequirement/EducationLevelCode"))
            .expect("education");
        assert_eq!(
            education.attributes,
            [
                (
                    "listName".to_string(),
                    "EURES_ISCEDEducationLevel".to_string()
                ),
                ("listVersionID".to_string(), "2011".to_string()),
                (
                    "listURI".to_string(),
                    "https://ec.europa.eu/eures".to_string()
                ),
            ]
        );
        assert_eq!(one(&el, &format!("{q}/Measure")), "2");
        assert_eq!(one(&el, &format!("{P}/ApplicationCloseDate")), "2026-12-31");
    }

    #[test]
    fn optional_parts_absent_means_absent() {
        let mut fields = posting();
        fields.employment_type = None;
        fields.working_time = None;
        fields.start_date = None;
        fields.requirements = None;
        fields.salary = None;
        fields.positions = Some(0);
        fields.employer = Some(Employer {
            name: Some("Acme ApS".into()),
            cvr: None,
            nace: None,
        });
        let (xml, el) = rendered(&fields);
        for absent in [
            "PositionOfferingTypeCode",
            "PositionScheduleTypeCode",
            "PositionPeriod",
            "PositionQualifications",
            "OfferedRemunerationPackage",
            "OrganizationLegalID",
            "IndustryCode",
            "PostingOptionCode",
            "null",
        ] {
            assert!(!xml.contains(absent), "{absent}");
        }
        assert_eq!(one(&el, &format!("{P}/PositionOpenQuantity")), "1");
        assert_eq!(one(&el, &format!("{P}/ImmediateStartIndicator")), "false");
    }

    /// Arbitrary text biased towards what breaks XML: markup, CDATA ends,
    /// forbidden controls, line ends, non-characters, astral characters.
    fn hostile() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            any::<char>().prop_map(String::from),
            Just("]]>".to_string()),
            Just("]]".to_string()),
            Just("<![CDATA[".to_string()),
            Just("&amp;".to_string()),
            Just("&".to_string()),
            Just("<".to_string()),
            Just("\u{1}".to_string()),
            Just("\u{b}".to_string()),
            Just("\u{0}".to_string()),
            Just("\r\n".to_string()),
            Just("\r".to_string()),
            Just("\u{FFFE}".to_string()),
            Just(" ".to_string()),
            "[a-zA-Zæøå]{1,6}",
        ];
        prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_text_gives_well_formed_xml(
            title in hostile(),
            description in hostile(),
            city in hostile(),
        ) {
            let mut fields = posting();
            fields.title = Some(title.clone());
            fields.description = Some(description.clone());
            fields.locations = Some(vec![location("", "", &city, "DK", "")]);
            let want_title = strip_forbidden(&title).trim().to_string();
            // What survives the allow-list (the sanitizer has tests of its own).
            let want_description = html::formatted(Some(&description), html::Links::WebAndMail)
                .map(|h| h.as_str().to_string())
                .unwrap_or_default();
            let description_empty = want_description.is_empty();
            match render("id-1", &fields, &DocumentSettings::default()) {
                Err(invalid) => {
                    let title_bad = want_title.is_empty() || want_title.chars().count() > 200;
                    prop_assert!(title_bad || description_empty, "{invalid}");
                    let want = if title_bad { "title" } else { "description" };
                    prop_assert_eq!(invalid.field, want);
                }
                Ok(xml) => {
                    prop_assert!(!xml.chars().any(|c| !text::is_xml_char(c)));
                    let el = parse(&xml).map_err(TestCaseError::fail)?;
                    prop_assert_eq!(one(&el, &format!("{P}/PositionTitle")), want_title.as_str());
                    let want_city = strip_forbidden(&city).trim().to_string();
                    let cities = texts(&el, &format!("{P}/PositionLocation/Address/CityName"));
                    if want_city.is_empty() {
                        prop_assert!(cities.is_empty());
                    } else {
                        prop_assert_eq!(cities, vec![want_city.as_str()]);
                    }
                    prop_assert_eq!(
                        one(&el, &format!("{P}/PositionFormattedDescription/Content")),
                        want_description.as_str()
                    );
                    let again = render("id-1", &fields, &DocumentSettings::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert_eq!(&xml, &again);
                    prop_assert!(!xml.contains("Jane Doe"));
                }
            }
        }
    }
}
