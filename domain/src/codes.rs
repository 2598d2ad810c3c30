//! Code lists of the EURES exchange: countries, NUTS regions, NACE, ISCO/ESCO,
//! CEFR, driving licences and ISO 639-1 languages.
//!
//! Everything here is a pure function over static tables: no allocation beyond
//! the returned value, no IO, no clock. Where a validator is strict (exact
//! shape, exact case), the renderer normalises its input first (trim, case) and
//! then asks; the lenient entry points ([`eures_country_code`],
//! [`nace_to_eures`], [`nuts_matches_country`]) say so in their docs.

/// EURES countries as EURES writes them: the EU-27 (Greece as `EL`) plus
/// Iceland, Liechtenstein, Norway and Switzerland. Sorted, for binary search.
const EURES_COUNTRIES: [&str; 31] = [
    "AT", "BE", "BG", "CH", "CY", "CZ", "DE", "DK", "EE", "EL", "ES", "FI", "FR", "HR", "HU", "IE",
    "IS", "IT", "LI", "LT", "LU", "LV", "MT", "NL", "NO", "PL", "PT", "RO", "SE", "SI", "SK",
];

/// EU-27 plus Iceland, Liechtenstein, Norway and Switzerland, ISO 3166-1
/// alpha-2 (Greece as `GR`; `EL` is accepted too). Case-insensitive, trimmed.
pub fn is_eures_country(code: &str) -> bool {
    eures_country_code(code).is_some()
}

/// The country code EURES writes for an ISO 3166-1 alpha-2 code of a EURES
/// country: the ISO code itself, except Greece (`GR`) which EURES writes `EL`.
/// `EL` is accepted as input too. Case-insensitive and trimmed; `None` for
/// anything outside the EURES area (or not a country code at all).
pub fn eures_country_code(iso: &str) -> Option<&'static str> {
    let code = iso.trim();
    if code.len() != 2 || !code.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let upper = code.to_ascii_uppercase();
    let wanted = if upper == "GR" { "EL" } else { upper.as_str() };
    EURES_COUNTRIES
        .binary_search(&wanted)
        .ok()
        .map(|i| EURES_COUNTRIES[i])
}

/// Whether `nuts` has the shape of a NUTS-3 code of the given country: the
/// country prefix as EURES writes it (`EL` for Greece, `DK` for Denmark...)
/// followed by three ASCII letters or digits, five characters in all
/// (`DK011`, `EL303`). `eures_country_code` may be given as the ISO code
/// (`GR` is mapped to `EL`). Both arguments are trimmed and compared
/// case-insensitively. This checks the shape and the country, not that the
/// region exists.
pub fn nuts_matches_country(nuts: &str, eures_country_code: &str) -> bool {
    let Some(country) = self::eures_country_code(eures_country_code) else {
        return false;
    };
    let nuts = nuts.trim().as_bytes();
    nuts.len() == 5
        && nuts[..2].eq_ignore_ascii_case(country.as_bytes())
        && nuts[2..].iter().all(u8::is_ascii_alphanumeric)
}

/// The NACE revision JobAG's codes come from (`jobag.nace_revision`): the
/// section letter of a division depends on it, because Rev. 2.1 moved the
/// section boundaries from division 58 on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NaceRevision {
    /// NACE Rev. 2 (Danish DB07).
    #[default]
    Rev2,
    /// NACE Rev. 2.1 (Danish DB25).
    Rev2_1,
}

impl NaceRevision {
    /// The configuration value: `"2"` or `"2.1"`.
    pub fn parse(value: &str) -> Option<NaceRevision> {
        match value.trim() {
            "2" => Some(NaceRevision::Rev2),
            "2.1" => Some(NaceRevision::Rev2_1),
            _ => None,
        }
    }

    /// `(first division, last division, section)` of this revision.
    fn sections(self) -> &'static [(u8, u8, char)] {
        match self {
            NaceRevision::Rev2 => &[
                (1, 3, 'A'),
                (5, 9, 'B'),
                (10, 33, 'C'),
                (35, 35, 'D'),
                (36, 39, 'E'),
                (41, 43, 'F'),
                (45, 47, 'G'),
                (49, 53, 'H'),
                (55, 56, 'I'),
                (58, 63, 'J'),
                (64, 66, 'K'),
                (68, 68, 'L'),
                (69, 75, 'M'),
                (77, 82, 'N'),
                (84, 84, 'O'),
                (85, 85, 'P'),
                (86, 88, 'Q'),
                (90, 93, 'R'),
                (94, 96, 'S'),
                (97, 98, 'T'),
                (99, 99, 'U'),
            ],
            // Rev. 2.1 folds division 45 into 46 and 47, splits J into
            // publishing and broadcasting (J) and telecommunication and
            // computing (K), and shifts every later section by one letter.
            NaceRevision::Rev2_1 => &[
                (1, 3, 'A'),
                (5, 9, 'B'),
                (10, 33, 'C'),
                (35, 35, 'D'),
                (36, 39, 'E'),
                (41, 43, 'F'),
                (46, 47, 'G'),
                (49, 53, 'H'),
                (55, 56, 'I'),
                (58, 60, 'J'),
                (61, 63, 'K'),
                (64, 66, 'L'),
                (68, 68, 'M'),
                (69, 75, 'N'),
                (77, 82, 'O'),
                (84, 84, 'P'),
                (85, 85, 'Q'),
                (86, 88, 'R'),
                (90, 93, 'S'),
                (94, 96, 'T'),
                (97, 98, 'U'),
                (99, 99, 'V'),
            ],
        }
    }
}

/// The section letter of a division (`62` → `J` in Rev. 2, `K` in Rev.
/// 2.1). `None` for a number that is not a division of that revision (`04`,
/// `34`, `40`, and `45` in Rev. 2.1, ...).
pub fn nace_section(division: u8, revision: NaceRevision) -> Option<char> {
    revision
        .sections()
        .iter()
        .find(|(first, last, _)| (*first..=*last).contains(&division))
        .map(|(_, _, section)| *section)
}

/// Every class of NACE rev. 2 (615), written per group: the three digits of
/// the group, a colon, the last digit of each class in that group.
/// `"620:1239"` stands for 62.01, 62.02, 62.03 and 62.09.
const NACE_REV2_CLASSES: &str = "\
011:1234569 012:123456789 013:0 014:12345679 015:0 016:1234 017:0 \
021:0 022:0 023:0 024:0 031:12 032:12 \
051:0 052:0 061:0 062:0 071:0 072:19 081:12 089:1239 091:0 099:0 \
101:123 102:0 103:129 104:12 105:12 106:12 107:123 108:1234569 109:12 \
110:1234567 120:0 131:0 132:0 133:0 139:1234569 141:12349 142:0 143:19 \
151:12 152:0 161:0 162:12349 171:12 172:12349 181:1234 182:0 191:0 192:0 \
201:1234567 202:0 203:0 204:12 205:1239 206:0 211:0 212:0 221:19 222:1239 \
231:12349 232:0 233:12 234:12349 235:12 236:123459 237:0 239:19 \
241:0 242:0 243:1234 244:123456 245:1234 \
251:12 252:19 253:0 254:0 255:0 256:12 257:123 259:12349 \
261:12 262:0 263:0 264:0 265:12 266:0 267:0 268:0 \
271:12 272:0 273:123 274:0 275:12 279:0 \
281:12345 282:123459 283:0 284:19 289:1234569 291:0 292:0 293:12 \
301:12 302:0 303:0 304:0 309:129 310:1239 \
321:123 322:0 323:0 324:0 325:0 329:19 331:12345679 332:0 \
351:1234 352:123 353:0 360:0 370:0 381:12 382:12 383:12 390:0 \
411:0 412:0 421:123 422:12 429:19 431:123 432:129 433:12349 439:19 \
451:19 452:0 453:12 454:0 \
461:123456789 462:1234 463:123456789 464:123456789 465:12 466:1234569 467:1234567 469:0 \
471:19 472:1234569 473:0 474:123 475:12349 476:12345 477:123456789 478:129 479:19 \
491:0 492:0 493:129 494:12 495:0 501:0 502:0 503:0 504:0 511:0 512:12 \
521:0 522:12349 531:0 532:0 551:0 552:0 553:0 559:0 561:0 562:19 563:0 \
581:12349 582:19 591:1234 592:0 601:0 602:0 611:0 612:0 613:0 619:0 \
620:1239 631:12 639:19 641:19 642:0 643:0 649:129 651:12 652:0 653:0 \
661:129 662:129 663:0 681:0 682:0 683:12 691:0 692:0 701:0 702:12 \
711:12 712:0 721:19 722:0 731:12 732:0 741:0 742:0 743:0 749:0 750:0 \
771:12 772:129 773:123459 774:0 781:0 782:0 783:0 791:12 799:0 \
801:0 802:0 803:0 811:0 812:129 813:0 821:19 822:0 823:0 829:129 \
841:123 842:12345 843:0 851:0 852:0 853:12 854:12 855:1239 856:0 \
861:0 862:123 869:0 871:0 872:0 873:0 879:0 881:0 889:19 \
900:1234 910:1234 920:0 931:1239 932:19 941:12 942:0 949:129 \
951:12 952:123459 960:12349 970:0 981:0 982:0 990:0";

/// Whether the four digits `dddd` are a class of NACE rev. 2.
fn is_nace_rev2_class(digits: &[u8; 4]) -> bool {
    NACE_REV2_CLASSES.split_ascii_whitespace().any(|entry| {
        let (group, classes) = entry.split_at(3);
        group.as_bytes() == &digits[..3] && classes.as_bytes()[1..].contains(&digits[3])
    })
}

/// Maps a NACE class to the form EURES wants (BR-COM-20): the section
/// letter of `revision`, the division **without a leading zero**, `.` the
/// group digit, `.` the class digit (`62.01` → `J62.0.1`, `01.13` →
/// `A1.1.3`, `08.12` → `B8.1.2`).
///
/// Accepts `62.01` and `6201` (trimmed). The division must exist in
/// `revision`. For Rev. 2 the class must be one of its 615 classes (the list
/// is embedded); for Rev. 2.1, whose class list is not embedded, a class of a
/// Rev. 2.1 division is taken as given. Any other shape, a group or division
/// alone, gives `None`: nothing is guessed.
pub fn nace_to_eures(nace: &str, revision: NaceRevision) -> Option<String> {
    let code = nace.trim().as_bytes();
    let digits: [u8; 4] = match code {
        [a, b, b'.', c, d] | [a, b, c, d] => [*a, *b, *c, *d],
        _ => return None,
    };
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if revision == NaceRevision::Rev2 && !is_nace_rev2_class(&digits) {
        return None;
    }
    let division = (digits[0] - b'0') * 10 + (digits[1] - b'0');
    let section = nace_section(division, revision)?;
    Some(format!(
        "{section}{division}.{}.{}",
        char::from(digits[2]),
        char::from(digits[3])
    ))
}

/// Whether `code` is an ISCO-08 unit group code: exactly four ASCII digits
/// (the first digit is the major group, 0-9). Not trimmed.
pub fn isco_valid(code: &str) -> bool {
    code.len() == 4 && code.bytes().all(|b| b.is_ascii_digit())
}

/// The canonical form of an ESCO occupation URI, or `None` when `uri` is not
/// one: `http(s)://data.europa.eu/esco/occupation/<uuid>` (trimmed, scheme
/// case-insensitive, UUID in 8-4-4-4-12 hex), canonically `http://` with a
/// lowercase UUID. The `ESCO_Occupations` list holds these only (BR-COM-29).
pub fn esco_occupation_uri(uri: &str) -> Option<String> {
    let uuid = esco_path(uri)?.strip_prefix("occupation/")?;
    is_uuid(uuid).then(|| {
        format!(
            "http://data.europa.eu/esco/occupation/{}",
            uuid.to_ascii_lowercase()
        )
    })
}

/// The ISCO-08 code an ESCO ISCO concept URI names
/// (`http(s)://data.europa.eu/esco/isco/C2512` → `2512`, written with `C` or
/// `c` in the wild), four digits only: shorter ISCO groups are not
/// occupations. `None` for anything else.
pub fn isco_concept_code(uri: &str) -> Option<String> {
    let isco = esco_path(uri)?.strip_prefix("isco/")?;
    let digits = isco.strip_prefix('C').or_else(|| isco.strip_prefix('c'))?;
    isco_valid(digits).then(|| digits.to_string())
}

/// What follows `http(s)://data.europa.eu/esco/` in `uri` (trimmed).
fn esco_path(uri: &str) -> Option<&str> {
    let uri = uri.trim();
    let rest = strip_prefix_ignore_case(uri, "http://")
        .or_else(|| strip_prefix_ignore_case(uri, "https://"))?;
    rest.strip_prefix("data.europa.eu/esco/")
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether `level` is a CEFR level: `A1`, `A2`, `B1`, `B2`, `C1` or `C2`
/// (uppercase, not trimmed).
pub fn cefr_valid(level: &str) -> bool {
    matches!(level, "A1" | "A2" | "B1" | "B2" | "C1" | "C2")
}

/// Driving licence categories of Directive 2006/126/EC, in the Directive's
/// order.
pub const DRIVING_LICENCE_CLASSES: [&str; 15] = [
    "AM", "A1", "A2", "A", "B1", "B", "BE", "C1", "C1E", "C", "CE", "D1", "D1E", "D", "DE",
];

/// Whether `class` is a driving licence category of Directive 2006/126/EC
/// (uppercase, not trimmed).
pub fn driving_licence_valid(class: &str) -> bool {
    DRIVING_LICENCE_CLASSES.contains(&class)
}

/// ISO 639-1 two-letter language codes (183; the withdrawn `bh` excluded).
/// Sorted, for binary search.
const ISO_639_1: [&str; 183] = [
    "aa", "ab", "ae", "af", "ak", "am", "an", "ar", "as", "av", "ay", "az", "ba", "be", "bg", "bi",
    "bm", "bn", "bo", "br", "bs", "ca", "ce", "ch", "co", "cr", "cs", "cu", "cv", "cy", "da", "de",
    "dv", "dz", "ee", "el", "en", "eo", "es", "et", "eu", "fa", "ff", "fi", "fj", "fo", "fr", "fy",
    "ga", "gd", "gl", "gn", "gu", "gv", "ha", "he", "hi", "ho", "hr", "ht", "hu", "hy", "hz", "ia",
    "id", "ie", "ig", "ii", "ik", "io", "is", "it", "iu", "ja", "jv", "ka", "kg", "ki", "kj", "kk",
    "kl", "km", "kn", "ko", "kr", "ks", "ku", "kv", "kw", "ky", "la", "lb", "lg", "li", "ln", "lo",
    "lt", "lu", "lv", "mg", "mh", "mi", "mk", "ml", "mn", "mr", "ms", "mt", "my", "na", "nb", "nd",
    "ne", "ng", "nl", "nn", "no", "nr", "nv", "ny", "oc", "oj", "om", "or", "os", "pa", "pi", "pl",
    "ps", "pt", "qu", "rm", "rn", "ro", "ru", "rw", "sa", "sc", "sd", "se", "sg", "si", "sk", "sl",
    "sm", "sn", "so", "sq", "sr", "ss", "st", "su", "sv", "sw", "ta", "te", "tg", "th", "ti", "tk",
    "tl", "tn", "to", "tr", "ts", "tt", "tw", "ty", "ug", "uk", "ur", "uz", "ve", "vi", "vo", "wa",
    "wo", "xh", "yi", "yo", "za", "zh", "zu",
];

/// Whether `code` is an ISO 639-1 language code: two lowercase ASCII letters
/// that the standard assigns (`da`, `en`; not `dk`, not `EN`). Not trimmed.
pub fn iso639_1_valid(code: &str) -> bool {
    code.len() == 2
        && code.bytes().all(|b| b.is_ascii_lowercase())
        && ISO_639_1.binary_search(&code).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eures_countries() {
        assert_eq!(eures_country_code("GR"), Some("EL"));
        assert_eq!(eures_country_code(" gr "), Some("EL"));
        assert_eq!(eures_country_code("EL"), Some("EL"));
        assert_eq!(eures_country_code("dk"), Some("DK"));
        assert_eq!(eures_country_code("NO"), Some("NO"));
        assert_eq!(eures_country_code("CH"), Some("CH"));
        for outside in ["US", "GB", "UK", "TR", "", "D", "DKK", "1A", "ÆØ"] {
            assert_eq!(eures_country_code(outside), None, "{outside}");
            assert!(!is_eures_country(outside), "{outside}");
        }
        assert!(is_eures_country("GR"));
        assert!(is_eures_country("el"));
        assert!(EURES_COUNTRIES.windows(2).all(|w| w[0] < w[1]), "sorted");
    }

    #[test]
    fn nuts_shape_and_country() {
        assert!(nuts_matches_country("DK011", "DK"));
        assert!(nuts_matches_country("dk050", "dk"));
        assert!(nuts_matches_country("EL303", "EL"));
        assert!(nuts_matches_country("EL303", "GR"));
        assert!(nuts_matches_country("NO081", "NO"));
        assert!(
            !nuts_matches_country("GR303", "EL"),
            "Greece's NUTS prefix is EL"
        );
        assert!(!nuts_matches_country("SE110", "DK"));
        assert!(!nuts_matches_country("DK01", "DK"));
        assert!(!nuts_matches_country("DK0111", "DK"));
        assert!(!nuts_matches_country("DK-11", "DK"));
        assert!(!nuts_matches_country("US123", "US"));
        assert!(!nuts_matches_country("", "DK"));
    }

    #[test]
    fn nace_mapping_table() {
        use NaceRevision::{Rev2, Rev2_1};
        for (nace, revision, eures) in [
            ("62.01", Rev2, Some("J62.0.1")),
            ("62.01", Rev2_1, Some("K62.0.1")),
            ("43.21", Rev2, Some("F43.2.1")),
            ("01.13", Rev2, Some("A1.1.3")),
            ("08.12", Rev2, Some("B8.1.2")),
            ("08.12", Rev2_1, Some("B8.1.2")),
            ("01.11", Rev2, Some("A1.1.1")),
            ("99.00", Rev2, Some("U99.0.0")),
            ("99.00", Rev2_1, Some("V99.0.0")),
            ("58.11", Rev2_1, Some("J58.1.1")),
            ("64.19", Rev2_1, Some("L64.1.9")),
            ("45.20", Rev2, Some("G45.2.0")),
            ("45.20", Rev2_1, None),
            ("04.00", Rev2, None),
            ("04.00", Rev2_1, None),
            ("6201", Rev2, Some("J62.0.1")),
            (" 86.10 ", Rev2, Some("Q86.1.0")),
            ("33.17", Rev2, Some("C33.1.7")),
            ("09.10", Rev2, Some("B9.1.0")),
            ("35.11", Rev2, Some("D35.1.1")),
            ("68.20", Rev2, Some("L68.2.0")),
            ("84.11", Rev2, Some("O84.1.1")),
            ("97.00", Rev2, Some("T97.0.0")),
            ("62.07", Rev2, None),
            ("62.0", Rev2, None),
            ("62", Rev2_1, None),
            ("62.011", Rev2, None),
            ("6a.01", Rev2_1, None),
            ("62,01", Rev2, None),
            ("J62.0.1", Rev2, None),
            ("", Rev2_1, None),
        ] {
            assert_eq!(
                nace_to_eures(nace, revision).as_deref(),
                eures,
                "{nace:?} {revision:?}"
            );
        }
    }

    /// Division by division, written out from the two classifications'
    /// section tables rather than derived from the code's ranges: the
    /// character at index `d` is the section of division `d`, `-` for none.
    #[test]
    fn nace_sections_division_by_division() {
        let rev2 = concat!(
            "-AAA-BBBBB",
            "CCCCCCCCCC",
            "CCCCCCCCCC",
            "CCCC-DEEEE",
            "-FFF-GGG-H",
            "HHHH-II-JJ",
            "JJJJKKK-LM",
            "MMMMMM-NNN",
            "NNN-OPQQQ-",
            "RRRRSSSTTU",
        );
        let rev2_1 = concat!(
            "-AAA-BBBBB",
            "CCCCCCCCCC",
            "CCCCCCCCCC",
            "CCCC-DEEEE",
            "-FFF--GG-H",
            "HHHH-II-JJ",
            "JKKKLLL-MN",
            "NNNNNN-OOO",
            "OOO-PQRRR-",
            "SSSSTTTUUV",
        );
        for (revision, table) in [(NaceRevision::Rev2, rev2), (NaceRevision::Rev2_1, rev2_1)] {
            assert_eq!(table.len(), 100);
            for (division, want) in table.chars().enumerate() {
                let division = u8::try_from(division).expect("below 100");
                let want = (want != '-').then_some(want);
                assert_eq!(
                    nace_section(division, revision),
                    want,
                    "{revision:?} division {division:02}"
                );
                // The whole mapping agrees: a class of that division gets
                // the letter and the division without a leading zero.
                let class = format!("{division:02}.00");
                let mapped = nace_to_eures(&class, revision);
                if revision == NaceRevision::Rev2_1 {
                    assert_eq!(
                        mapped,
                        want.map(|s| format!("{s}{division}.0.0")),
                        "{class}"
                    );
                } else if let Some(mapped) = mapped {
                    assert_eq!(Some(mapped), want.map(|s| format!("{s}{division}.0.0")));
                }
            }
            assert_eq!(nace_section(100, revision), None);
        }
        assert_eq!(NaceRevision::parse("2"), Some(NaceRevision::Rev2));
        assert_eq!(NaceRevision::parse(" 2.1 "), Some(NaceRevision::Rev2_1));
        for bad in ["", "1.1", "2.0", "rev2", "21"] {
            assert_eq!(NaceRevision::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn nace_table_has_the_615_rev2_classes_in_known_divisions() {
        let mut classes = 0;
        for entry in NACE_REV2_CLASSES.split_ascii_whitespace() {
            let (group, rest) = entry.split_at(3);
            assert!(rest.starts_with(':') && rest.len() > 1, "{entry}");
            assert!(group.bytes().all(|b| b.is_ascii_digit()), "{entry}");
            let division: u8 = group[..2].parse().expect("digits");
            assert!(
                nace_section(division, NaceRevision::Rev2).is_some(),
                "{entry}"
            );
            classes += rest.len() - 1;
        }
        assert_eq!(classes, 615);
    }

    #[test]
    fn isco() {
        assert!(isco_valid("2512"));
        assert!(isco_valid("0110"));
        for bad in ["251", "25120", "25a2", " 2512", "", "٢٥١٢"] {
            assert!(!isco_valid(bad), "{bad:?}");
        }
    }

    #[test]
    fn esco_uris() {
        let occ = "http://data.europa.eu/esco/occupation/f2b15a0e-e65a-438a-affb-29b9d50b77d1";
        assert_eq!(esco_occupation_uri(occ).as_deref(), Some(occ));
        assert_eq!(
            esco_occupation_uri(
                "HTTPS://data.europa.eu/esco/occupation/F2B15A0E-E65A-438A-AFFB-29B9D50B77D1"
            )
            .as_deref(),
            Some(occ)
        );
        for isco in [
            "http://data.europa.eu/esco/isco/C2512",
            "http://data.europa.eu/esco/isco/c2512",
            " https://data.europa.eu/esco/isco/C2512",
        ] {
            assert_eq!(isco_concept_code(isco).as_deref(), Some("2512"), "{isco}");
            assert_eq!(esco_occupation_uri(isco), None, "{isco}");
        }
        assert_eq!(isco_concept_code(occ), None);
        for bad in [
            "http://data.europa.eu/esco/isco/C251",
            "http://data.europa.eu/esco/isco/2512",
            "http://data.europa.eu/esco/skill/f2b15a0e-e65a-438a-affb-29b9d50b77d1",
            "http://data.europa.eu/esco/occupation/not-a-uuid",
            "http://data.europa.eu/esco/occupation/f2b15a0e-e65a-438a-affb-29b9d50b77d1/x",
            "ftp://data.europa.eu/esco/isco/C2512",
            "http://example.com/esco/isco/C2512",
            "",
        ] {
            assert_eq!(esco_occupation_uri(bad), None, "{bad}");
            assert_eq!(isco_concept_code(bad), None, "{bad}");
        }
    }

    #[test]
    fn cefr_licences_languages() {
        for ok in ["A1", "A2", "B1", "B2", "C1", "C2"] {
            assert!(cefr_valid(ok));
        }
        for bad in ["a1", "C3", "B", "", " B2"] {
            assert!(!cefr_valid(bad), "{bad:?}");
        }
        for ok in DRIVING_LICENCE_CLASSES {
            assert!(driving_licence_valid(ok));
        }
        for bad in ["b", "E", "CE1", "BE ", "T", ""] {
            assert!(!driving_licence_valid(bad), "{bad:?}");
        }
        for ok in ["da", "en", "de", "el", "no", "nb", "sv", "fi", "is", "zu"] {
            assert!(iso639_1_valid(ok), "{ok}");
        }
        for bad in ["dk", "EN", "eng", "e", "", "xx", "bh", "d1"] {
            assert!(!iso639_1_valid(bad), "{bad:?}");
        }
        assert!(ISO_639_1.windows(2).all(|w| w[0] < w[1]), "sorted");
    }
}
