//! `PositionLocation` addresses: which JobAG locations go to EURES and in what
//! form.
//!
//! Rules, in order:
//! 1. a location whose country is not a EURES country (or has no country) is
//!    left out; the country is written as EURES writes it (`GR` → `EL`);
//! 2. every text part is cleaned (forbidden characters removed, trimmed; empty
//!    means absent); a NUTS code is kept only when it is a NUTS-3 code of the
//!    location's own country (uppercased), else dropped, never guessed;
//! 3. duplicates go: two addresses are the same when every part is equal
//!    ignoring case and runs of whitespace; the first one is kept as written;
//! 4. a country-only address goes when a fuller address of the same country
//!    is present (EURES rejects that combination).
//!
//! The order of the remaining addresses is the order of the feed.

use std::collections::BTreeSet;

use super::text::clean_line;
use crate::codes::{eures_country_code, nuts_matches_country};
use crate::posting::Location;

/// One address as rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Address {
    pub line: Option<String>,
    pub city: Option<String>,
    /// NUTS-3 of `country`, uppercase.
    pub nuts: Option<String>,
    /// As EURES writes it (`EL` for Greece).
    pub country: &'static str,
    pub postal_code: Option<String>,
}

/// What makes two addresses the same: parts compared ignoring case and
/// whitespace runs.
type Key = (
    &'static str,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

impl Address {
    fn from_location(location: &Location) -> Option<Address> {
        let country = eures_country_code(location.country.as_deref()?)?;
        let nuts = location
            .nuts
            .as_deref()
            .map(|n| n.trim().to_ascii_uppercase())
            .filter(|n| nuts_matches_country(n, country));
        Some(Address {
            line: clean_line(location.address_line.as_deref()),
            city: clean_line(location.city.as_deref()),
            nuts,
            country,
            postal_code: clean_line(location.postal_code.as_deref()),
        })
    }

    /// Nothing but the country.
    pub(crate) fn is_country_only(&self) -> bool {
        self.line.is_none()
            && self.city.is_none()
            && self.nuts.is_none()
            && self.postal_code.is_none()
    }

    fn key(&self) -> Key {
        fn norm(part: &Option<String>) -> Option<String> {
            part.as_ref().map(|s| {
                s.split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .to_lowercase()
            })
        }
        (
            self.country,
            norm(&self.line),
            norm(&self.city),
            self.nuts.clone(),
            norm(&self.postal_code),
        )
    }
}

/// The addresses to render for `locations`, by the rules in the module docs.
/// Empty when no location is in the EURES area.
pub(crate) fn eures_addresses(locations: &[Location]) -> Vec<Address> {
    let mut seen: BTreeSet<Key> = BTreeSet::new();
    let mut addresses: Vec<Address> = locations
        .iter()
        .filter_map(Address::from_location)
        .filter(|a| seen.insert(a.key()))
        .collect();
    let fuller: BTreeSet<&'static str> = addresses
        .iter()
        .filter(|a| !a.is_country_only())
        .map(|a| a.country)
        .collect();
    addresses.retain(|a| !(a.is_country_only() && fuller.contains(a.country)));
    addresses
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(line: &str, postal: &str, city: &str, country: &str, nuts: &str) -> Location {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
        Location {
            address_line: some(line),
            postal_code: some(postal),
            city: some(city),
            country: some(country),
            nuts: some(nuts),
        }
    }

    #[test]
    fn country_only_next_to_a_fuller_address_of_the_same_country_goes() {
        let got = eures_addresses(&[
            loc("", "", "", "DK", ""),
            loc("Vermundsgade 38", "2100", "København Ø", "DK", "DK011"),
            loc("", "", "", "SE", ""),
        ]);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].city.as_deref(), Some("København Ø"));
        assert_eq!(got[1].country, "SE");
        assert!(got[1].is_country_only(), "no fuller SE address: kept");
    }

    #[test]
    fn duplicates_go_first_spelling_kept() {
        let got = eures_addresses(&[
            loc("Vermundsgade 38", "2100", "København Ø", "DK", "DK011"),
            loc(" vermundsgade  38 ", "2100", "KØBENHAVN Ø", "dk", "dk011"),
            loc("Vermundsgade 38", "2100", "København Ø", "DK", "DK011"),
            loc("", "", "", "DK", ""),
            loc("", "", "", "DK", ""),
        ]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].line.as_deref(), Some("Vermundsgade 38"));
        assert_eq!(got[0].nuts.as_deref(), Some("DK011"));
    }

    #[test]
    fn countries_outside_eures_and_foreign_nuts_are_dropped() {
        let got = eures_addresses(&[
            loc("1 Main St", "10001", "New York", "US", ""),
            loc("Odos 1", "54624", "Thessaloniki", "GR", "EL522"),
            loc("Storgatan 1", "11122", "Stockholm", "SE", "DK011"),
            loc("No country", "", "Nowhere", "", ""),
        ]);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].country, "EL");
        assert_eq!(got[0].nuts.as_deref(), Some("EL522"));
        assert_eq!(got[1].country, "SE");
        assert_eq!(
            got[1].nuts, None,
            "a Danish NUTS code does not belong to Sweden"
        );
    }

    #[test]
    fn only_country_only_addresses_of_one_country_collapse_to_one() {
        let got = eures_addresses(&[loc("", "", " ", "NO", ""), loc("", "", "", "no", "")]);
        assert_eq!(got.len(), 1);
        assert!(got[0].is_country_only());
        assert!(eures_addresses(&[]).is_empty());
    }
}
