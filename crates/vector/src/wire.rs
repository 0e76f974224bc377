//! Reading requests exactly as the OpenAPI document describes them.
//!
//! Two things serde does not do on its own: refuse unknown fields in a struct that flattens
//! another one into itself (`deny_unknown_fields` does not work together with `flatten`), and
//! read `16.0` as the whole number JSON Schema's `integer` says it is.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

/// The last, flattened field of a request that flattens another: it takes every field no
/// other part took and refuses the first one, so unknown fields fail as they do elsewhere.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NoOtherFields;

impl<'de> Deserialize<'de> for NoOtherFields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Rest;
        impl<'de> Visitor<'de> for Rest {
            type Value = NoOtherFields;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("no other fields")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoOtherFields, A::Error> {
                match map.next_key::<String>()? {
                    Some(key) => Err(de::Error::custom(format_args!("unknown field `{key}`"))),
                    None => Ok(NoOtherFields),
                }
            }
        }
        deserializer.deserialize_map(Rest)
    }
}

/// Whole numbers written either way (`16` or `16.0`), within the target type's range.
pub mod whole {
    use super::{Deserializer, PhantomData, Visitor, de, fmt};

    /// For `#[serde(deserialize_with = "whole::number")]`.
    pub fn number<'de, D, T>(deserializer: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<u64>,
    {
        deserializer.deserialize_any(Whole(PhantomData))
    }

    /// For an optional field: `null` is `None`.
    pub fn optional<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<u64>,
    {
        deserializer.deserialize_option(Optional(PhantomData))
    }

    struct Whole<T>(PhantomData<T>);

    impl<T: TryFrom<u64>> Visitor<'_> for Whole<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a whole number in the field's range")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            T::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            u64::try_from(v)
                .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
                .and_then(|v| self.visit_u64(v))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
            // Every whole f64 below 2^64 converts exactly.
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "a whole value in range converts exactly"
            )]
            if v.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&v) {
                self.visit_u64(v as u64)
            } else {
                Err(E::invalid_value(de::Unexpected::Float(v), &self))
            }
        }
    }

    struct Optional<T>(PhantomData<T>);

    impl<'de, T: TryFrom<u64>> Visitor<'de> for Optional<T> {
        type Value = Option<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a whole number or null")
        }

        fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<T>, D::Error> {
            number(deserializer).map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::{NoOtherFields, whole};

    #[derive(Debug, Deserialize)]
    struct Inner {
        #[serde(default, deserialize_with = "whole::number")]
        limit: u16,
        #[serde(default, deserialize_with = "whole::optional")]
        ef: Option<u32>,
    }

    #[derive(Debug, Deserialize)]
    struct Outer {
        #[serde(default)]
        text: Option<String>,
        #[serde(flatten)]
        inner: Inner,
        #[serde(flatten)]
        _rest: NoOtherFields,
    }

    fn parse(text: &str) -> Result<Outer, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn whole_numbers_are_read_either_way_and_fractions_and_overflow_refused() {
        let read = parse(r#"{"limit": 1220.0, "ef": 7}"#).unwrap();
        assert_eq!((read.inner.limit, read.inner.ef), (1220, Some(7)));
        let read = parse(r#"{"limit": 3, "ef": 40.0}"#).unwrap();
        assert_eq!((read.inner.limit, read.inner.ef), (3, Some(40)));
        assert_eq!(parse(r#"{"ef": null}"#).unwrap().inner.ef, None);
        for bad in [
            r#"{"limit": 1.5}"#,
            r#"{"limit": -1}"#,
            r#"{"limit": 65536}"#,
            r#"{"limit": 1e300}"#,
            r#"{"limit": "3"}"#,
            r#"{"ef": 2.5}"#,
        ] {
            let error = parse(bad).unwrap_err();
            assert!(error.contains("whole number"), "{bad}: {error}");
        }
    }

    #[test]
    fn fields_nobody_takes_are_refused_by_name() {
        let read = parse(r#"{"text": "a", "limit": 2}"#).unwrap();
        assert_eq!(read.text.as_deref(), Some("a"));
        let error = parse(r#"{"text": "a", "limit": 2, "lmit": 3}"#).unwrap_err();
        assert!(error.contains("unknown field `lmit`"), "{error}");
    }
}
