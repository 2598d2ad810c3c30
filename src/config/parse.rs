//! How each kind of value is read from TOML or the environment, checked,
//! and written back (the defaults layer is the serialised [`Config`], so
//! every reader has a writer that round-trips).
//!
//! A refusal is a plain message; figment puts the key and the value's
//! origin in front of and after it.
//!
//! [`Config`]: super::Config

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serializer};

use super::checks::{
    check_database_url, check_http_url, check_log_filter, check_posting_url_template,
};
use super::{MAX_CONCURRENCY, MAX_PAGE_SIZE, MIN_AUDIT_DAYS};
use crate::domain::codes::NaceRevision;

/// Reads a `T` and holds it to `check`.
fn checked<'de, D, T>(de: D, check: impl FnOnce(&T) -> Result<(), String>) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let value = T::deserialize(de)?;
    check(&value).map_err(D::Error::custom)?;
    Ok(value)
}

/// Text held to `check`.
fn checked_text<'de, D: Deserializer<'de>>(
    de: D,
    check: impl FnOnce(&str) -> Result<(), String>,
) -> Result<String, D::Error> {
    let text = lenient_string(de)?;
    check(&text).map_err(D::Error::custom)?;
    Ok(text)
}

fn at_least_one<T: PartialOrd + From<u8>>(value: &T) -> Result<(), String> {
    if *value >= T::from(1) {
        Ok(())
    } else {
        Err("must be at least 1".to_owned())
    }
}

pub(super) fn database_url<'de, D: Deserializer<'de>>(de: D) -> Result<String, D::Error> {
    checked_text(de, check_database_url)
}

pub(super) fn jobag_base_url<'de, D: Deserializer<'de>>(de: D) -> Result<String, D::Error> {
    checked_text(de, check_http_url)
}

pub(super) fn eures_base_url<'de, D: Deserializer<'de>>(de: D) -> Result<String, D::Error> {
    checked_text(de, check_http_url)
}

pub(super) fn party_id<'de, D: Deserializer<'de>>(de: D) -> Result<String, D::Error> {
    checked_text(de, |id| {
        if id.trim().is_empty() {
            Err("must not be empty".to_owned())
        } else {
            Ok(())
        }
    })
}

pub(super) fn log_level<'de, D: Deserializer<'de>>(de: D) -> Result<String, D::Error> {
    checked_text(de, check_log_filter)
}

pub(super) fn page_size<'de, D: Deserializer<'de>>(de: D) -> Result<u32, D::Error> {
    checked(de, |size: &u32| {
        if (1..=MAX_PAGE_SIZE).contains(size) {
            Ok(())
        } else {
            Err(format!("must be 1–{MAX_PAGE_SIZE}"))
        }
    })
}

pub(super) fn concurrency<'de, D: Deserializer<'de>>(de: D) -> Result<usize, D::Error> {
    checked(de, |n: &usize| {
        if (1..=MAX_CONCURRENCY).contains(n) {
            Ok(())
        } else {
            Err(format!("must be 1–{MAX_CONCURRENCY}"))
        }
    })
}

pub(super) fn max_attempts<'de, D: Deserializer<'de>>(de: D) -> Result<u32, D::Error> {
    checked(de, at_least_one::<u32>)
}

pub(super) fn audit_days<'de, D: Deserializer<'de>>(de: D) -> Result<u32, D::Error> {
    checked(de, |days: &u32| {
        if *days >= MIN_AUDIT_DAYS {
            Ok(())
        } else {
            Err(format!("must be at least {MIN_AUDIT_DAYS}"))
        }
    })
}

/// `jobag.poll_interval_ms`: whole milliseconds, at least 1 (a zero pause
/// would poll an empty feed in a busy loop).
pub(super) fn poll_interval<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    checked(de, at_least_one::<u64>).map(Duration::from_millis)
}

/// `eures.request_timeout_ms`: whole milliseconds, at least 1.
pub(super) fn request_timeout<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    checked(de, at_least_one::<u64>).map(Duration::from_millis)
}

/// A duration written in whole milliseconds.
pub(super) fn write_millis<S: Serializer>(duration: &Duration, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}

/// Whole seconds, 0 meaning none.
pub(super) fn optional_seconds<'de, D: Deserializer<'de>>(
    de: D,
) -> Result<Option<Duration>, D::Error> {
    let seconds = u64::deserialize(de)?;
    Ok((seconds > 0).then(|| Duration::from_secs(seconds)))
}

pub(super) fn write_optional_seconds<S: Serializer>(
    duration: &Option<Duration>,
    ser: S,
) -> Result<S::Ok, S::Error> {
    ser.serialize_u64(duration.map_or(0, |d| d.as_secs()))
}

/// `"2"` or `"2.1"`; also the numbers 2 and 2.1, which is how the
/// environment's `EURES_SYNC__JOBAG__NACE_REVISION=2.1` arrives.
pub(super) fn nace_revision<'de, D: Deserializer<'de>>(de: D) -> Result<NaceRevision, D::Error> {
    let text = lenient_string(de)?;
    NaceRevision::parse(&text).ok_or_else(|| D::Error::custom("must be \"2\" or \"2.1\""))
}

pub(super) fn write_nace_revision<S: Serializer>(
    revision: &NaceRevision,
    ser: S,
) -> Result<S::Ok, S::Error> {
    ser.serialize_str(match revision {
        NaceRevision::Rev2 => "2",
        NaceRevision::Rev2_1 => "2.1",
    })
}

/// `""` (or blanks) is none; anything else an http(s) URL template with
/// `{id}`, kept trimmed.
pub(super) fn posting_url_template<'de, D: Deserializer<'de>>(
    de: D,
) -> Result<Option<String>, D::Error> {
    let text = lenient_string(de)?;
    let template = text.trim();
    if template.is_empty() {
        return Ok(None);
    }
    check_posting_url_template(template).map_err(D::Error::custom)?;
    Ok(Some(template.to_owned()))
}

pub(super) fn write_optional_text<S: Serializer>(
    text: &Option<String>,
    ser: S,
) -> Result<S::Ok, S::Error> {
    ser.serialize_str(text.as_deref().unwrap_or(""))
}

/// A file that may be absent: `""` (or blanks) is none, anything else the
/// path, trimmed.
pub(super) fn optional_path<'de, D: Deserializer<'de>>(de: D) -> Result<Option<PathBuf>, D::Error> {
    let text = lenient_string(de)?;
    let text = text.trim();
    Ok((!text.is_empty()).then(|| PathBuf::from(text)))
}

pub(super) fn write_optional_path<S: Serializer>(
    path: &Option<PathBuf>,
    ser: S,
) -> Result<S::Ok, S::Error> {
    match path {
        Some(path) => match path.to_str() {
            Some(text) => ser.serialize_str(text),
            None => Err(serde::ser::Error::custom("a path that is not UTF-8")),
        },
        None => ser.serialize_str(""),
    }
}

/// `""` (or nothing) is none, anything else must be a socket address.
pub(super) fn optional_addr<'de, D: Deserializer<'de>>(
    de: D,
) -> Result<Option<SocketAddr>, D::Error> {
    let text = lenient_string(de)?;
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| D::Error::custom("not a socket address: write host:port, e.g. 0.0.0.0:9465"))
}

pub(super) fn write_optional_addr<S: Serializer>(
    addr: &Option<SocketAddr>,
    ser: S,
) -> Result<S::Ok, S::Error> {
    match addr {
        Some(addr) => ser.collect_str(addr),
        None => ser.serialize_str(""),
    }
}

/// Accepts a string, or a number or boolean written where a string is meant:
/// the environment carries only text, and figment parses
/// `EURES_SYNC__EURES__PARTY_ID=12345` as a number.
fn lenient_string<'de, D: Deserializer<'de>>(de: D) -> Result<String, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_string<E: serde::de::Error>(self, v: String) -> Result<String, E> {
            Ok(v)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_char<E: serde::de::Error>(self, v: char) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    de.deserialize_any(V)
}
