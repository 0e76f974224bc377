//! Bucket names and object keys: what is accepted, in the one form it is stored in (SECURITY 41).
//! Keys are path-like (`avatars/2026/ada.png`) but never paths: the bytes live under a random
//! blob id, so a key cannot reach outside its bucket even if a check here were missed.

use crate::StorageError;

/// Longest object key, in bytes (S3's limit).
pub const MAX_KEY_BYTES: usize = 1024;

/// A bucket name: 3 to 63 of `a-z`, `0-9`, `-`, `.`, `_`, starting and ending with a letter or
/// digit, no `..`.
pub fn bucket_name(name: &str) -> Result<String, StorageError> {
    let bytes = name.as_bytes();
    let ok = (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(b))
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && !name.contains("..");
    if ok {
        Ok(name.to_owned())
    } else {
        Err(StorageError::invalid(
            "name",
            "bucket_name",
            "must be 3 to 63 of a-z, 0-9, -, . and _, starting and ending with a letter or digit",
        ))
    }
}

/// An object key: 1 to 1024 bytes of `/`-separated segments, none empty, `.` or `..`; no
/// leading or trailing `/`, no `\`, no control characters.
pub fn object_key(key: &str) -> Result<String, StorageError> {
    let refuse = |why: &'static str| Err(StorageError::invalid("key", "object_key", why));
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return refuse("must have 1 to 1024 bytes");
    }
    if key.chars().any(char::is_control) {
        return refuse("must have no control characters");
    }
    if key.contains('\\') {
        return refuse("must not contain `\\`");
    }
    if key
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return refuse("must be `/`-separated names, none empty, `.` or `..` (no leading `/`)");
    }
    Ok(key.to_owned())
}

/// A listing prefix: empty, or what could start a key (no `..` segment, no control characters).
pub fn prefix(prefix: &str) -> Result<String, StorageError> {
    if prefix.is_empty() {
        return Ok(String::new());
    }
    if prefix.len() > MAX_KEY_BYTES
        || prefix.chars().any(char::is_control)
        || prefix.starts_with('/')
        || prefix.split('/').any(|s| s == "." || s == "..")
    {
        return Err(StorageError::invalid(
            "prefix",
            "object_key",
            "must be the start of a key",
        ));
    }
    Ok(prefix.to_owned())
}

/// Whether `content_type` is allowed by `patterns` (`image/*`, `application/pdf`, `*/*`); an
/// empty list allows everything.
#[must_use]
pub fn type_allowed(patterns: &[String], content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    patterns.is_empty()
        || patterns.iter().any(|p| {
            let p = p.to_ascii_lowercase();
            p == "*/*"
                || p == essence
                || p.strip_suffix("/*")
                    .is_some_and(|major| essence.split('/').next() == Some(major))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_keys_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../b",
            "a/./b",
            "a//b",
            "a/",
            "a\\b",
            "a\u{0}b",
            "a\nb",
            "..",
            ".",
        ] {
            assert!(object_key(bad).is_err(), "{bad:?}");
        }
        assert!(object_key(&"a".repeat(1025)).is_err());
        for good in [
            "a",
            "avatars/2026/ada.png",
            "ünïcode/名前.txt",
            "a b/c..d",
            ".hidden",
        ] {
            assert_eq!(object_key(good).unwrap(), good);
        }
    }

    #[test]
    fn bucket_names_and_types() {
        assert!(bucket_name("avatars").is_ok());
        for bad in [
            "ab",
            "-ab",
            "ab-",
            "a..b",
            "Avatars",
            "a/b",
            &"a".repeat(64),
        ] {
            assert!(bucket_name(bad).is_err(), "{bad}");
        }
        let images = vec!["image/*".to_owned()];
        assert!(type_allowed(&images, "image/png"));
        assert!(type_allowed(&images, "IMAGE/JPEG; q=1"));
        assert!(!type_allowed(&images, "text/html"));
        assert!(!type_allowed(&images, "imagex/png"));
        assert!(type_allowed(&[], "text/html"));
    }
}
