//! Code lists of the EURES exchange: countries, NACE, ISCO, CEFR, licences.

/// EU-27 plus Iceland, Liechtenstein, Norway and Switzerland, ISO 3166-1
/// alpha-2 (Greece as `GR`; `EL` is accepted too).
pub fn is_eures_country(code: &str) -> bool {
    const EURES: [&str; 32] = [
        "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "EL", "HU", "IE",
        "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI",
        "NO", "CH",
    ];
    EURES.contains(&code.trim().to_ascii_uppercase().as_str())
}
