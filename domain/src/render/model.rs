//! From a JobAG posting to the validated, normalised content of one EURES
//! document. Everything that can make a posting invalid is decided here, in
//! document order, and named by its JobAG field; optional parts that do not
//! validate are dropped, never guessed. The writer (the parent module) only
//! serialises what this builds.

use chrono::NaiveDate;

use super::address::{Address, eures_addresses};
use super::html::{Html, Links, formatted};
use super::link::{email_text, url_text};
use super::text::{clean_line, strip_forbidden};
use super::{DocumentSettings, Invalid};
use crate::codes::{
    DRIVING_LICENCE_CLASSES, cefr_valid, esco_occupation_uri, isco_concept_code, isco_valid,
    iso639_1_valid, nace_to_eures,
};
use crate::posting::{
    Application, ConsentScope, EmploymentType, PostingFields, Requirements, Salary, WorkingTime,
};

/// Longest `PositionTitle`, in characters, after trimming.
pub(crate) const MAX_TITLE_CHARS: usize = 200;

/// Largest description accepted, in bytes after cleaning. EURES documents
/// are job ads, not archives: a megabyte of description is a broken feed,
/// and refusing it keeps every document far below a gateway's 413.
pub(crate) const MAX_DESCRIPTION_BYTES: usize = 256 * 1024;

/// The content of one `PositionOpening`, every value final (cleaned, mapped).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Document {
    pub id: String,
    pub party_id: String,
    /// ISO 639-1, lowercase.
    pub language: String,
    pub eures_flag: bool,
    /// `ApplicationMethod/Instructions`, HTML for CDATA.
    pub application: Html,
    pub title: String,
    /// At least one.
    pub locations: Vec<Address>,
    pub organization: Organization,
    pub positions: u32,
    pub category: JobCategory,
    pub offering: Option<&'static str>,
    pub qualifications: Qualifications,
    /// HTML for CDATA.
    pub description: Html,
    pub start_date: Option<NaiveDate>,
    pub immediate_start: bool,
    pub schedule: Option<&'static str>,
    pub remuneration: Option<Remuneration>,
    pub close_date: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Organization {
    pub name: String,
    /// The CVR number as given (cleaned).
    pub legal_id: Option<String>,
    /// NACE in EURES form (`J62.0.1`), section letter of the configured
    /// revision.
    pub industry: Option<String>,
}

/// The occupation, in the code list EURES gets it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JobCategory {
    /// Four-digit ISCO-08 code.
    Isco(String),
    /// Canonical ESCO occupation URI (never an ISCO concept: those travel
    /// as `Isco`).
    Esco(String),
}

impl JobCategory {
    /// The code list attributes of `JobCategoryCode` (and of the experience's
    /// `CategoryCode`), in writing order: all three, or EURES rejects the
    /// document (BR-COM-55).
    pub fn list_attributes(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            JobCategory::Isco(_) => &[
                ("listName", "ISCO2008"),
                ("listVersionID", "2008"),
                ("listURI", "http://ec.europa.eu/esco/ConceptScheme/ISCO2008"),
            ],
            JobCategory::Esco(_) => &[
                ("listName", "ESCO_Occupations"),
                ("listVersionID", "ESCOv1"),
                ("listURI", "https://ec.europa.eu/esco/portal"),
            ],
        }
    }

    pub fn code(&self) -> &str {
        match self {
            JobCategory::Isco(code) | JobCategory::Esco(code) => code,
        }
    }
}

/// `PositionQualifications`; rendered only when not empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Qualifications {
    pub languages: Vec<LanguageCompetency>,
    /// ISCED 2011 level 0..=8.
    pub education: Option<u8>,
    /// Whole years (months / 12 rounded down), at least 1.
    pub experience_years: Option<u32>,
    /// Directive 2006/126/EC categories.
    pub licences: Vec<&'static str>,
}

impl Qualifications {
    pub fn is_empty(&self) -> bool {
        self.languages.is_empty()
            && self.education.is_none()
            && self.experience_years.is_none()
            && self.licences.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LanguageCompetency {
    /// ISO 639-1, lowercase.
    pub code: String,
    /// CEFR A1..C2 when the posting gives one.
    pub level: Option<String>,
}

/// `OfferedRemunerationPackage/RemunerationRange`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Remuneration {
    /// ISO 4217, uppercase.
    pub currency: String,
    pub minimum: Option<String>,
    pub maximum: Option<String>,
    /// `Hour`, `Day`, `Week`, `Month` or `Year`.
    pub interval: Option<&'static str>,
}

fn invalid(field: &str, why: &str) -> Invalid {
    Invalid {
        field: field.to_string(),
        why: why.to_string(),
    }
}

/// Validates and normalises `fields` into the document for posting `id`.
/// The first failure, in document order, is returned.
pub(crate) fn build(
    id: &str,
    fields: &PostingFields,
    settings: &DocumentSettings,
) -> Result<Document, Invalid> {
    let id = clean_line(Some(id)).ok_or_else(|| invalid("id", "missing"))?;
    let party_id =
        clean_line(Some(&settings.party_id)).ok_or_else(|| invalid("eures.party_id", "missing"))?;
    let language = language(fields.language.as_deref())?;
    let scope = fields.eures_consent_scope.unwrap_or_default();
    let application = match scope {
        ConsentScope::PostingAndContact => application(fields.application.as_ref())
            .ok_or_else(|| invalid("application", "needs a url, an email or instructions"))?,
        ConsentScope::Posting => {
            posting_only_application(&id, fields.application.as_ref(), settings)
                .ok_or_else(|| invalid("application", "no way to apply without personal data"))?
        }
    };
    let title = title(fields.title.as_deref())?;
    let locations = match fields.locations.as_deref() {
        None | Some([]) => return Err(invalid("locations", "missing")),
        Some(locations) => eures_addresses(locations),
    };
    if locations.is_empty() {
        return Err(invalid("locations", "no location in a EURES country"));
    }
    let employer = fields.employer.as_ref();
    let organization = Organization {
        name: clean_line(employer.and_then(|e| e.name.as_deref()))
            .ok_or_else(|| invalid("employer.name", "missing"))?,
        legal_id: clean_line(employer.and_then(|e| e.cvr.as_deref())),
        industry: employer
            .and_then(|e| e.nace.as_deref())
            .and_then(|nace| nace_to_eures(nace, settings.nace_revision)),
    };
    let category = category(fields)?;
    let qualifications = fields
        .requirements
        .as_ref()
        .map(qualifications)
        .unwrap_or_default();
    // The description's mailto: links name a person as surely as the
    // application email does.
    let links = match scope {
        ConsentScope::PostingAndContact => Links::WebAndMail,
        ConsentScope::Posting => Links::Web,
    };
    let description = formatted(fields.description.as_deref(), links)
        .ok_or_else(|| invalid("description", "missing or empty"))?;
    if description.as_str().len() > MAX_DESCRIPTION_BYTES {
        return Err(invalid(
            "description",
            &format!("longer than {} KiB", MAX_DESCRIPTION_BYTES / 1024),
        ));
    }
    let close_date = fields
        .application_deadline
        .or_else(|| fields.publication_end.map(|end| end.date_naive()))
        .ok_or_else(|| {
            invalid(
                "application_deadline",
                "missing, and no publication_end to fall back on",
            )
        })?;
    Ok(Document {
        id,
        party_id,
        language,
        eures_flag: fields.eures_flag.unwrap_or(false),
        application,
        title,
        locations,
        organization,
        positions: fields.positions.unwrap_or(1).max(1),
        category,
        offering: fields.employment_type.map(offering_type),
        qualifications,
        description,
        start_date: fields.start_date,
        immediate_start: fields.start_asap.unwrap_or(false),
        schedule: fields.working_time.map(|w| match w {
            WorkingTime::FullTime => "FullTime",
            WorkingTime::PartTime => "PartTime",
        }),
        remuneration: fields.salary.as_ref().and_then(remuneration),
        close_date,
    })
}

/// ISO 639-1, trimmed and lowercased before the check (`DA` is `da`).
fn language(language: Option<&str>) -> Result<String, Invalid> {
    let code = language
        .map(|l| l.trim().to_ascii_lowercase())
        .filter(|l| !l.is_empty())
        .ok_or_else(|| invalid("language", "missing"))?;
    if iso639_1_valid(&code) {
        Ok(code)
    } else {
        Err(invalid("language", "not an ISO 639-1 code"))
    }
}

fn title(title: Option<&str>) -> Result<String, Invalid> {
    let title = title.ok_or_else(|| invalid("title", "missing"))?;
    let cleaned = strip_forbidden(title);
    let trimmed = cleaned.trim();
    match trimmed.chars().count() {
        0 => Err(invalid("title", "empty")),
        n if n > MAX_TITLE_CHARS => Err(invalid("title", "longer than 200 characters")),
        _ => Ok(trimmed.to_string()),
    }
}

/// The `Instructions` HTML: the application URL, the application email
/// (each as escaped text) and the employer's instructions (sanitized HTML),
/// each present one on its own line, in that order. A URL or an email that
/// is not one ([`url_text`], [`email_text`]) counts as absent. `None` when
/// nothing is left.
fn application(application: Option<&Application>) -> Option<Html> {
    let application = application?;
    let url = clean_line(application.url.as_deref()).and_then(|u| url_text(&u));
    let email = clean_line(application.email.as_deref()).and_then(|e| email_text(&e));
    let instructions = formatted(application.instructions.as_deref(), Links::WebAndMail);
    let parts: Vec<String> = [url, email, instructions.map(|i| i.as_str().to_string())]
        .into_iter()
        .flatten()
        .collect();
    // The lines are sanitized again as one value: the joined text is what
    // must come back unchanged from the sanitizer.
    Html::sanitized(&parts.join("\n"), Links::WebAndMail)
}

/// The `Instructions` HTML when the consent covers the posting only: the
/// application URL, else the posting's own page from
/// `jobag.posting_url_template`, as escaped text. An email or free text may
/// name a person, so neither is ever used. `None` when there is no URL at
/// all.
fn posting_only_application(
    id: &str,
    application: Option<&Application>,
    settings: &DocumentSettings,
) -> Option<Html> {
    let url = application
        .and_then(|a| clean_line(a.url.as_deref()))
        .and_then(|u| url_text(&u))
        .or_else(|| {
            let template = settings.posting_url_template.as_deref()?;
            url_text(&template.replace("{id}", id))
        })?;
    Html::sanitized(&url, Links::Web)
}

/// The occupation in the code list EURES accepts (BR-COM-29): an ESCO
/// occupation URI goes in `ESCO_Occupations`; an ESCO URI naming an ISCO
/// concept (`.../esco/isco/C2512`) is that ISCO-08 code; else the four-digit
/// `isco`. Any other `esco_uri` (a skill, a malformed URI) is ignored when
/// `isco` is usable and makes the posting invalid when it is not.
fn category(fields: &PostingFields) -> Result<JobCategory, Invalid> {
    let occupation = fields.occupation.as_ref();
    let esco_uri = occupation
        .and_then(|o| o.esco_uri.as_deref())
        .filter(|uri| !uri.trim().is_empty());
    if let Some(uri) = esco_uri {
        if let Some(occupation) = esco_occupation_uri(uri) {
            return Ok(JobCategory::Esco(occupation));
        }
        if let Some(code) = isco_concept_code(uri) {
            return Ok(JobCategory::Isco(code));
        }
    }
    let isco = occupation
        .and_then(|o| o.isco.as_deref())
        .map(str::trim)
        .filter(|code| isco_valid(code))
        .map(|code| JobCategory::Isco(code.to_string()));
    match (isco, esco_uri) {
        (Some(isco), _) => Ok(isco),
        (None, Some(_)) => Err(invalid(
            "occupation",
            "esco_uri is neither an ESCO occupation nor an ISCO concept, and no four-digit ISCO-08 code",
        )),
        (None, None) => Err(invalid(
            "occupation",
            "needs a four-digit ISCO-08 code or an ESCO occupation URI",
        )),
    }
}

/// SPEC 5 mapping of `employment_type` to `PositionOfferingTypeCode`.
pub(crate) fn offering_type(employment_type: EmploymentType) -> &'static str {
    match employment_type {
        EmploymentType::Permanent => "DirectHire",
        EmploymentType::Temporary => "Temporary",
        EmploymentType::Seasonal => "Seasonal",
        EmploymentType::Contract => "Contract",
        EmploymentType::Apprenticeship => "Apprenticeship",
        EmploymentType::Internship => "Internship",
        EmploymentType::Volunteer => "Volunteer",
    }
}

/// Requirements that validate; every invalid item is dropped on its own.
fn qualifications(requirements: &Requirements) -> Qualifications {
    let mut languages: Vec<LanguageCompetency> = Vec::new();
    for wanted in requirements.languages.iter().flatten() {
        let Some(code) = wanted
            .code
            .as_deref()
            .map(|c| c.trim().to_ascii_lowercase())
            .filter(|c| iso639_1_valid(c))
        else {
            continue;
        };
        let level = match wanted.level.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(level) => match level.to_ascii_uppercase() {
                level if cefr_valid(&level) => Some(level),
                // A level we cannot read: the whole item goes rather than
                // claiming a requirement the employer did not state.
                _ => continue,
            },
        };
        if languages.iter().all(|known| known.code != code) {
            languages.push(LanguageCompetency { code, level });
        }
    }
    let mut licences: Vec<&'static str> = Vec::new();
    for class in requirements.driving_licences.iter().flatten() {
        let class = class.trim().to_ascii_uppercase();
        if let Some(known) = DRIVING_LICENCE_CLASSES.iter().find(|c| **c == class)
            && !licences.contains(known)
        {
            licences.push(known);
        }
    }
    Qualifications {
        languages,
        education: requirements.education_isced.filter(|level| *level <= 8),
        experience_years: requirements
            .experience_months
            .map(|months| months / 12)
            .filter(|years| *years >= 1),
        licences,
    }
}

/// A salary renders only with an ISO 4217-shaped currency and at least one
/// usable amount (finite, not negative, below 10^12); a minimum above the
/// maximum drops the salary. An unknown period drops only the interval code.
fn remuneration(salary: &Salary) -> Option<Remuneration> {
    let currency = salary.currency.as_deref()?.trim().to_ascii_uppercase();
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let usable = |v: Option<f64>| v.filter(|v| v.is_finite() && *v >= 0.0 && *v < 1e12);
    let (min, max) = (usable(salary.min), usable(salary.max));
    if let (Some(min), Some(max)) = (min, max)
        && min > max
    {
        return None;
    }
    if min.is_none() && max.is_none() {
        return None;
    }
    let interval = match salary
        .period
        .as_deref()
        .map(|p| p.trim().to_ascii_lowercase())
    {
        Some(p) if p == "hour" => Some("Hour"),
        Some(p) if p == "day" => Some("Day"),
        Some(p) if p == "week" => Some("Week"),
        Some(p) if p == "month" => Some("Month"),
        Some(p) if p == "year" => Some("Year"),
        _ => None,
    };
    Some(Remuneration {
        currency,
        minimum: min.map(amount),
        maximum: max.map(amount),
        interval,
    })
}

/// `45000` for a whole amount, `187.50` otherwise: two decimals, the same
/// text for the same number on every run.
fn amount(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::posting::LanguageRequirement;

    #[test]
    fn amounts_are_stable_text() {
        assert_eq!(amount(45000.0), "45000");
        assert_eq!(amount(187.5), "187.50");
        assert_eq!(amount(0.0), "0");
        assert_eq!(amount(999_999_999_999.0), "999999999999");
    }

    #[test]
    fn salary_rules() {
        let s = |min, max, cur: &str, period: &str| Salary {
            min,
            max,
            currency: Some(cur.to_string()),
            period: Some(period.to_string()),
        };
        let r = remuneration(&s(Some(45000.0), Some(55000.0), "dkk", "Month")).expect("valid");
        assert_eq!(r.currency, "DKK");
        assert_eq!(r.interval, Some("Month"));
        assert_eq!(r.minimum.as_deref(), Some("45000"));
        assert_eq!(remuneration(&s(Some(5.0), Some(4.0), "DKK", "hour")), None);
        assert_eq!(remuneration(&s(None, None, "DKK", "hour")), None);
        assert_eq!(remuneration(&s(Some(-1.0), None, "DKK", "hour")), None);
        assert_eq!(remuneration(&s(Some(1.0), None, "kr.", "hour")), None);
        let r = remuneration(&s(None, Some(300.0), "EUR", "fortnight")).expect("valid");
        assert_eq!((r.minimum, r.interval), (None, None));
    }

    #[test]
    fn requirements_drop_invalid_items_only() {
        let req = Requirements {
            education_isced: Some(9),
            experience_months: Some(35),
            languages: Some(vec![
                LanguageRequirement {
                    code: Some("EN".into()),
                    level: Some("b2".into()),
                },
                LanguageRequirement {
                    code: Some("xx".into()),
                    level: Some("B2".into()),
                },
                LanguageRequirement {
                    code: Some("de".into()),
                    level: Some("Z9".into()),
                },
                LanguageRequirement {
                    code: Some("da".into()),
                    level: None,
                },
                LanguageRequirement {
                    code: Some("en".into()),
                    level: Some("C2".into()),
                },
            ]),
            driving_licences: Some(vec!["b".into(), "Q".into(), "C1E".into(), "B".into()]),
        };
        let q = qualifications(&req);
        assert_eq!(
            q.languages,
            vec![
                LanguageCompetency {
                    code: "en".into(),
                    level: Some("B2".into())
                },
                LanguageCompetency {
                    code: "da".into(),
                    level: None
                },
            ]
        );
        assert_eq!(q.education, None);
        assert_eq!(q.experience_years, Some(2));
        assert_eq!(q.licences, vec!["B", "C1E"]);
        let q = qualifications(&Requirements {
            experience_months: Some(11),
            ..Requirements::default()
        });
        assert!(q.is_empty(), "under a year is no stated requirement");
    }
}
