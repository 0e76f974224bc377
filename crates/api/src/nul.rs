//! U+0000 never reaches the database: PostgreSQL cannot store it in text or jsonb, and a query
//! carrying one fails with a server error. One check at the edge covers every way in — a path
//! segment (`404 not_found`: no resource has such a name), a query parameter or any string of a
//! JSON body, keys included (`422 nul_character`, naming the field).

use actix_web::http::Uri;
use serde_json::Value;
use sovereign_core::{ErrorKind, FieldError};

use crate::error::ApiError;

const CODE: &str = "nul_character";

/// Refuses a URI whose path or query carries an encoded U+0000 (`%00`). A raw NUL byte cannot
/// reach here: the HTTP parser refuses it in the request line.
pub(crate) fn check_uri(uri: &Uri) -> Result<(), ApiError> {
    if uri.path().contains("%00") {
        return Err(ApiError::of_kind(
            ErrorKind::NotFound,
            "not_found",
            "No resource has a name containing U+0000.",
        ));
    }
    let Some(query) = uri.query().filter(|q| q.contains("%00")) else {
        return Ok(());
    };
    let field = url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, value)| key.contains('\0') || value.contains('\0'))
        .map_or_else(String::new, |(key, _)| key.replace('\0', "\\u0000"));
    Err(refusal(field, "in the query"))
}

/// Refuses a JSON body with a `\u0000` escape in any string (the only way JSON spells U+0000;
/// a raw control character is invalid JSON and refused by the parser anyway). The scan costs
/// one pass over the bytes; the field is found only when there is one.
pub(crate) fn check_json(body: &[u8]) -> Result<(), ApiError> {
    if !has_nul_escape(body) {
        return Ok(());
    }
    let field = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|value| path_to_nul(&value, String::new()))
        .unwrap_or_default();
    Err(refusal(field, "in the request body"))
}

fn refusal(field: String, place: &str) -> ApiError {
    ApiError::of_kind(
        ErrorKind::Validation,
        CODE,
        format!("Text {place} contains U+0000, which cannot be stored."),
    )
    .with_fields(vec![FieldError::new(
        field,
        CODE,
        "must not contain U+0000",
    )])
}

/// Whether `body` holds the escape `\u0000` (a backslash that is itself escaped, `\\u0000`, is
/// the text "\u0000", not U+0000).
fn has_nul_escape(body: &[u8]) -> bool {
    let mut at = 0;
    while let Some(found) = memchr::memchr(b'\\', &body[at..]) {
        let escape = at + found;
        match body.get(escape + 1) {
            Some(b'u') if body.get(escape + 2..escape + 6) == Some(b"0000") => return true,
            Some(_) => at = escape + 2,
            None => return false,
        }
    }
    false
}

/// Where the first string (or key) with U+0000 is, as `a.b[2].c`.
fn path_to_nul(value: &Value, path: String) -> Option<String> {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::String(s) if s.contains('\0') => Some(path),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| path_to_nul(item, format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            if key.contains('\0') {
                Some(join(&key.replace('\0', "\\u0000")))
            } else {
                path_to_nul(item, join(key))
            }
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_real_escape_counts() {
        assert!(has_nul_escape(br#"{"a":"x\u0000y"}"#));
        assert!(
            !has_nul_escape(br#"{"a":"x\\u0000y"}"#),
            "an escaped backslash"
        );
        assert!(
            has_nul_escape(br#"{"a":"x\\\u0000"}"#),
            "a backslash, then U+0000"
        );
        assert!(!has_nul_escape(br#"{"a":"\u00001"}"#.split_at(8).0));
        assert!(!has_nul_escape(br#"{"a":"\u0001"}"#));
        assert!(!has_nul_escape(b"{\"a\":\"\\"));
    }

    #[test]
    fn the_field_is_named() {
        let e = check_json(br#"{"points":[{"id":"1"},{"payload":{"k":"v\u0000"}}]}"#).unwrap_err();
        assert_eq!(e.code(), CODE);
        assert_eq!(e.problem("r").errors[0].field, "points[1].payload.k");
        let e = check_json(br#"{"a\u0000b":1}"#).unwrap_err();
        assert_eq!(e.problem("r").errors[0].field, "a\\u0000b");
    }

    #[test]
    fn uris_are_checked_in_the_path_and_the_query() {
        let path: Uri = "/api/v1/vector/collections/a%00b".parse().unwrap();
        assert_eq!(check_uri(&path).unwrap_err().code(), "not_found");
        let query: Uri = "/api/v1/users?limit=5&search=%00".parse().unwrap();
        let e = check_uri(&query).unwrap_err();
        assert_eq!(e.code(), CODE);
        assert_eq!(e.problem("r").errors[0].field, "search");
        let fine: Uri = "/api/v1/users?search=%2500".parse().unwrap();
        assert!(check_uri(&fine).is_ok());
    }
}
