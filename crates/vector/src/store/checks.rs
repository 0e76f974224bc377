//! Checks of the input the operations receive: names, point ids, payloads, texts and vectors.
//! Each names the field at fault; none copies its input, except to return it in the form it is
//! stored (an id made canonical, a payload as JSON text, a vector divided to unit length).

use std::borrow::Cow;

use serde_json::{Map, Value};
use sovereign_core::FieldError;
use uuid::Uuid;

use super::MAX_IDS;
use super::targets::Target;
use crate::embed::{MAX_TEXT_CHARS, length};
use crate::error::VectorError;
use crate::filter;
use crate::model::{Distance, MAX_PAYLOAD_BYTES, MAX_POINT_ID_CHARS};

pub(super) fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A point id as stored: UUIDs in their canonical lower-case form, other strings as given.
pub(super) fn point_id(id: &str, field: &str, errors: &mut Vec<FieldError>) -> String {
    if let Ok(uuid) = Uuid::parse_str(id) {
        return uuid.hyphenated().to_string();
    }
    let chars = id.chars().count();
    if chars == 0 || chars > MAX_POINT_ID_CHARS || id.chars().any(char::is_control) {
        errors.push(FieldError::new(
            field,
            "invalid_id",
            format!("ids are 1–{MAX_POINT_ID_CHARS} printable characters"),
        ));
    }
    id.to_owned()
}

pub(super) fn checked_ids(ids: &[String], field: &str) -> Result<Vec<String>, VectorError> {
    if ids.is_empty() || ids.len() > MAX_IDS {
        return Err(VectorError::invalid(
            field,
            "invalid_length",
            format!("give 1 to {MAX_IDS} ids"),
        ));
    }
    let mut errors = Vec::new();
    let ids = ids
        .iter()
        .enumerate()
        .map(|(i, id)| point_id(id, &format!("{field}[{i}]"), &mut errors))
        .collect();
    if errors.is_empty() {
        Ok(ids)
    } else {
        Err(VectorError::Invalid(errors))
    }
}

/// A payload PostgreSQL can store — at most `MAX_PAYLOAD_BYTES` serialised, and no U+0000 in a
/// key or a string (JSON allows it, `jsonb` does not) — as the JSON text it is sent as.
pub(super) fn payload_json(
    payload: &Map<String, Value>,
    field: &str,
    errors: &mut Vec<FieldError>,
) -> String {
    let json = serde_json::to_string(payload).unwrap_or_default();
    if json.len() > MAX_PAYLOAD_BYTES {
        errors.push(FieldError::new(
            field,
            "too_large",
            format!("at most {} KiB", MAX_PAYLOAD_BYTES / 1024),
        ));
    }
    if payload
        .iter()
        .any(|(k, v)| k.contains('\0') || filter::has_nul(v))
    {
        errors.push(FieldError::new(
            field,
            "nul_character",
            "keys and strings cannot contain U+0000",
        ));
    }
    json
}

pub(super) fn check_text(text: &str, field: &str, errors: &mut Vec<FieldError>) {
    let chars = text.chars().count();
    if text.trim().is_empty() || chars > MAX_TEXT_CHARS {
        errors.push(FieldError::new(
            field,
            "invalid_text",
            format!("1 to {MAX_TEXT_CHARS} characters, not only spaces"),
        ));
    }
}

/// Checks a vector's length and values. Cosine collections hold and search unit vectors: for
/// them, this returns the length to divide `v` by (see [`divided`]); otherwise `None`.
pub(super) fn check_vector(
    target: &Target,
    v: &[f32],
    field: &str,
) -> Result<Option<f32>, VectorError> {
    if v.len() != target.dimension() {
        return Err(VectorError::DimensionMismatch {
            field: field.to_owned(),
            expected: target.dimension(),
            got: v.len(),
        });
    }
    if v.iter().any(|x| !x.is_finite()) {
        return Err(VectorError::invalid(
            field,
            "not_finite",
            "numbers must be finite",
        ));
    }
    if target.collection.distance != Distance::Cosine {
        return Ok(None);
    }
    match length(v) {
        Some(length) => Ok(Some(length)),
        None => Err(VectorError::invalid(
            field,
            "zero_vector",
            "a cosine collection cannot hold or search for the zero vector",
        )),
    }
}

/// The values of a checked vector as stored or searched: divided by what [`check_vector`]
/// returned, when it returned a length (exactly as `normalize` divides, value by value).
pub(super) fn divided(v: &[f32], divisor: Option<f32>) -> impl ExactSizeIterator<Item = f32> + '_ {
    v.iter().map(move |&x| divisor.map_or(x, |n| x / n))
}

/// A checked vector as stored or searched: borrowed when it is used as it is.
pub(super) fn as_stored(v: &[f32], divisor: Option<f32>) -> Cow<'_, [f32]> {
    match divisor {
        None => Cow::Borrowed(v),
        Some(_) => Cow::Owned(divided(v, divisor).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::normalize;

    #[test]
    fn a_divided_vector_is_the_normalised_one() {
        let v = [3.0_f32, -4.0, 0.1, 1e-3];
        let divisor = length(&v);
        let mut normalised = v;
        assert!(normalize(&mut normalised));
        assert_eq!(divided(&v, divisor).collect::<Vec<_>>(), normalised);
        assert_eq!(*as_stored(&v, divisor), normalised);
        assert!(matches!(as_stored(&v, None), Cow::Borrowed(b) if b == v));
        assert_eq!(length(&[0.0, 0.0]), None);
    }
}
