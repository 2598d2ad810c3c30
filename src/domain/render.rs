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
//!   `RemunerationTypeCode` `BasePay`, `MinimumAmount` and `MaximumAmount`
//!   (each when given, `currencyID` ISO 4217) and
//!   `RemunerationRateIntervalCode` (`Hour`, `Day`, `Week`, `Month`, `Year`).
//!   These names follow HR-XML 3 `RemunerationType` vocabulary; they were not
//!   checked against the 3.2 XSD, which is not available here.
//! - **StartDate** is `PositionPeriod/StartDate/FormattedDateTime`
//!   (`YYYY-MM-DD`), never a free `DateText`.
//! - **ApplicationCloseDate** is `application_deadline`; when JobAG sends
//!   none, it is the UTC calendar date of `publication_end` (the posting
//!   stops being available on Jobnet then, so no application can be made
//!   through it afterwards). With neither the posting is invalid
//!   (`application_deadline`).
//! - **ApplicationMethod/Instructions** lists the application URL, the
//!   application email and the employer's instructions, each present one on
//!   its own line. Contact person data (`contact`) is never rendered.
//! - **JobCategoryCode** is ESCO (`ESCO_Occupations`, `ESCOv1`) when a valid
//!   ESCO URI is given, written in its canonical form (`http://`, lowercase
//!   UUID, `C` in ISCO concept URIs); otherwise ISCO-08.
//! - Codes are normalised before they are checked (`DA` → `da`, `b2` → `B2`,
//!   `gr` → `EL`); language codes are written lowercase everywhere.

mod address;
mod model;
mod text;

use std::io;

use quick_xml::Writer;
use quick_xml::escape::partial_escape;
use quick_xml::events::{BytesCData, BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use sha2::{Digest, Sha256};

use self::model::{Document, Qualifications, Remuneration};
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

/// Renders the EURES document for posting `id`, requested by `party_id`
/// (`eures.party_id`).
///
/// Fails, naming the JobAG field, when a required value is missing or
/// invalid: `language` (ISO 639-1), `application` (no URL, email or
/// instructions), `title` (1..=200 characters after trimming), `locations`
/// (none in a EURES country), `employer.name`, `occupation` (no four-digit
/// ISCO-08 code, no ESCO URI), `description`, `application_deadline` (and no
/// `publication_end`). The first failure in document order is reported.
pub fn render(id: &str, fields: &PostingFields, party_id: &str) -> Result<String, Invalid> {
    let document = model::build(id, fields, party_id)?;
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
    x.cdata("Instructions", &doc.application)?;
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
    x.cdata("Content", &doc.description)?;
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
        x.text("MinimumAmount", &[("currencyID", &r.currency)], minimum)?;
    }
    if let Some(maximum) = &r.maximum {
        x.text("MaximumAmount", &[("currencyID", &r.currency)], maximum)?;
    }
    x.optional_text("RemunerationRateIntervalCode", r.interval)?;
    x.close("RemunerationRange")?;
    x.close("OfferedRemunerationPackage")
}
