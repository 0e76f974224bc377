//! Request extractors with problem-body errors.
//!
//! [`Json`] replaces `actix_web::web::Json`: it requires a JSON content type (415), enforces the
//! configured size limit while reading, also for chunked bodies (413), tells malformed JSON (400)
//! from well-formed JSON of the wrong shape (422, with the path of the offending field), and runs
//! the body's `validator` rules (422, one entry per field).

use std::borrow::Cow;

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_LENGTH;
use actix_web::web::{self, BytesMut};
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use sovereign_core::{ErrorKind, FieldError};
use validator::{Validate, ValidationErrors, ValidationErrorsKind};

use crate::error::ApiError;
use crate::settings::ServerSettings;
use crate::state::AppState;

/// A body limit from the server's settings (their documented defaults outside an application).
fn server_settings(req: &HttpRequest, limit: impl Fn(&ServerSettings) -> usize) -> usize {
    match req.app_data::<web::Data<AppState>>() {
        Some(state) => limit(&state.settings.server),
        None => limit(&ServerSettings::default()),
    }
}

/// A JSON request body, deserialised and validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: DeserializeOwned + Validate + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = server_settings(req, |s| s.json_limit);
        let body = read_json::<T>(req, payload, limit);
        Box::pin(async move { body.await.map(Json) })
    }
}

/// Like [`Json`], with the larger limit of bulk routes (`JSON_BULK_LIMIT_BYTES`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkJson<T>(pub T);

impl<T> BulkJson<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: DeserializeOwned + Validate + 'static> FromRequest for BulkJson<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = server_settings(req, |s| s.bulk_json_limit);
        let body = read_json::<T>(req, payload, limit);
        Box::pin(async move { body.await.map(BulkJson) })
    }
}

/// A body type a domain crate validates itself (with field paths in its errors), so the HTTP
/// layer only parses it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Unchecked<T>(pub T);

impl<T> Validate for Unchecked<T> {
    fn validate(&self) -> Result<(), ValidationErrors> {
        Ok(())
    }
}

/// Reads a JSON body of at most `limit` bytes (also when chunked), then parses and validates it.
fn read_json<T: DeserializeOwned + Validate + 'static>(
    req: &HttpRequest,
    payload: &mut Payload,
    limit: usize,
) -> LocalBoxFuture<'static, Result<T, ApiError>> {
    let checked = check_content_type(req).and_then(|()| check_declared_length(req, limit));
    let mut payload = payload.take();
    Box::pin(async move {
        let declared = checked?;
        let mut body = BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(payload_error)?;
            if body.len() + chunk.len() > limit {
                return Err(too_large(limit));
            }
            body.extend_from_slice(&chunk);
        }
        crate::nul::check_json(&body)?;
        let value = parse::<T>(&body)?;
        value.validate().map_err(|e| validation_error(&e))?;
        Ok(value)
    })
}

fn check_content_type(req: &HttpRequest) -> Result<(), ApiError> {
    let is_json = match req.mime_type() {
        Ok(Some(mime)) => {
            mime.type_() == "application"
                && (mime.subtype() == "json" || mime.suffix().is_some_and(|s| s == "json"))
        }
        _ => false,
    };
    if is_json {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "This endpoint accepts only JSON bodies.",
        )
        .with_suggestion("send the header Content-Type: application/json"))
    }
}

fn check_declared_length(req: &HttpRequest, limit: usize) -> Result<Option<usize>, ApiError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    match declared {
        Some(len) if len > limit => Err(too_large(limit)),
        other => Ok(other),
    }
}

pub(crate) fn too_large(limit: usize) -> ApiError {
    ApiError::of_kind(
        ErrorKind::TooLarge,
        "payload_too_large",
        format!("The request body exceeds the limit of {limit} bytes."),
    )
    .with_suggestion("send a smaller body, e.g. split a batch into several requests")
}

fn payload_error(e: PayloadError) -> ApiError {
    match e {
        PayloadError::Overflow => too_large(0),
        other => ApiError::of_kind(
            ErrorKind::BadRequest,
            "payload_error",
            format!("The request body could not be read: {other}"),
        ),
    }
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // Every request body is a JSON object. serde would also fill a struct from an array
    // (`[null, null]`), which no client means.
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(ApiError::of_kind(
            ErrorKind::Validation,
            "invalid_body",
            "The request body must be a JSON object, not an array.",
        )
        .with_fields(vec![FieldError::new(
            "",
            "invalid",
            "expected a JSON object",
        )]));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| json_error(&e))?;
    de.end().map_err(|e| malformed(&e))?;
    Ok(value)
}

fn malformed(e: &serde_json::Error) -> ApiError {
    ApiError::of_kind(
        ErrorKind::BadRequest,
        "malformed_json",
        format!("The request body is not valid JSON: {e}."),
    )
    .with_suggestion("check the body with a JSON validator")
}

fn json_error(e: &serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    use serde_json::error::Category;
    let inner = e.inner();
    match inner.classify() {
        Category::Syntax | Category::Eof | Category::Io => malformed(inner),
        Category::Data => {
            let message = inner.to_string();
            let field = field_of(&e.path().to_string(), &message);
            ApiError::of_kind(
                ErrorKind::Validation,
                "invalid_body",
                format!("The request body does not match the expected schema: {message}."),
            )
            .with_fields(vec![FieldError::new(field, "invalid", message)])
        }
    }
}

/// The field a serde data error is about. For a missing field serde reports the enclosing
/// object's path and names the field only in the message.
fn field_of(path: &str, message: &str) -> String {
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match (path, missing) {
        (".", Some(name)) => name.to_owned(),
        (parent, Some(name)) => format!("{parent}.{name}"),
        (path, None) => path.to_owned(),
    }
}

fn validation_error(errors: &ValidationErrors) -> ApiError {
    let mut fields = Vec::new();
    flatten(errors, "", &mut fields);
    ApiError::of_kind(
        ErrorKind::Validation,
        "validation_failed",
        "Some fields are invalid; see `errors`.",
    )
    .with_fields(fields)
}

fn flatten(errors: &ValidationErrors, prefix: &str, out: &mut Vec<FieldError>) {
    let join = |name: &str| {
        if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}.{name}")
        }
    };
    let mut entries: Vec<_> = errors.errors().iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    for (name, kind) in entries {
        match kind {
            ValidationErrorsKind::Field(list) => {
                for e in list {
                    let message = e
                        .message
                        .as_ref()
                        .map_or_else(|| describe(&e.code, &e.params), ToString::to_string);
                    out.push(FieldError::new(join(name), e.code.clone(), message));
                }
            }
            ValidationErrorsKind::Struct(inner) => flatten(inner, &join(name), out),
            ValidationErrorsKind::List(items) => {
                for (index, inner) in items {
                    flatten(inner, &format!("{}[{index}]", join(name)), out);
                }
            }
        }
    }
}

/// A readable message for validator's built-in codes when the rule gave none.
fn describe(
    code: &str,
    params: &std::collections::HashMap<Cow<'static, str>, serde_json::Value>,
) -> String {
    let param = |k: &str| params.get(k).map(ToString::to_string);
    match code {
        "length" => match (param("min"), param("max")) {
            (Some(min), Some(max)) => format!("must be between {min} and {max} characters long"),
            (Some(min), None) => format!("must be at least {min} characters long"),
            (None, Some(max)) => format!("must be at most {max} characters long"),
            _ => "has an invalid length".to_owned(),
        },
        "range" => match (param("min"), param("max")) {
            (Some(min), Some(max)) => format!("must be between {min} and {max}"),
            (Some(min), None) => format!("must be at least {min}"),
            (None, Some(max)) => format!("must be at most {max}"),
            _ => "is out of range".to_owned(),
        },
        "email" => "must be an email address".to_owned(),
        "url" => "must be a URL".to_owned(),
        "required" => "is required".to_owned(),
        other => format!("is invalid ({other})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_unknown_fields_name_the_field() {
        assert_eq!(
            field_of(".", "missing field `email` at line 1 column 2"),
            "email"
        );
        assert_eq!(
            field_of("user.role", "unknown field `role`, expected one of `name`"),
            "user.role"
        );
        assert_eq!(field_of("user", "missing field `name`"), "user.name");
        assert_eq!(
            field_of("items[3].qty", "invalid type: string"),
            "items[3].qty"
        );
    }

    #[derive(serde::Deserialize, Validate)]
    struct Inner {
        #[validate(range(min = 1, max = 5))]
        qty: u32,
    }

    #[derive(serde::Deserialize, Validate)]
    struct Outer {
        #[validate(length(min = 3))]
        name: String,
        #[validate(nested)]
        items: Vec<Inner>,
    }

    #[test]
    fn nested_validation_errors_are_flattened_with_paths() {
        let body = br#"{"name":"ab","items":[{"qty":1},{"qty":9}]}"#;
        let value: Outer = parse(body).unwrap();
        let err = validation_error(&value.validate().unwrap_err());
        let problem = err.problem("r");
        let fields: Vec<(&str, &str)> = problem
            .errors
            .iter()
            .map(|f| (f.field.as_str(), f.code.as_str()))
            .collect();
        assert_eq!(fields, [("items[1].qty", "range"), ("name", "length")]);
        assert_eq!(
            problem.errors[1].message,
            "must be at least 3 characters long"
        );
    }

    #[test]
    fn trailing_garbage_is_malformed() {
        let err = parse::<serde_json::Value>(b"{} x").unwrap_err();
        assert_eq!(err.code(), "malformed_json");
    }
}
