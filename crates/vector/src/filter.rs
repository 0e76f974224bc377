//! The payload filter language and its translation to SQL.
//!
//! A [`Filter`] combines conditions with `must` (all hold), `should` (at least one holds, when
//! any are given) and `must_not` (none holds). A condition tests one payload key — `match` a
//! value or any of several, a numeric `range`, or `exists` — or is itself a filter. Keys must
//! be indexed in the collection (`POST …/index`), which makes them the allow-list: no text of a
//! request reaches SQL except as a bound parameter or as a key that passed that check. The
//! type a key is indexed as, a [`PayloadKind`], decides which conditions it supports.
//!
//! This module stands alone in the crate: the data model uses its types, never the reverse.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sovereign_core::FieldError;

/// Deepest nesting of filters, counting the outermost.
pub const MAX_DEPTH: usize = 4;
/// Most conditions in one filter, counting nested ones.
pub const MAX_CONDITIONS: usize = 64;
/// Most values of one `any`.
pub const MAX_ANY: usize = 1000;

/// The type of an indexed payload key, which decides the conditions it supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum PayloadKind {
    /// Strings: `match` (value, any) and `exists`.
    Keyword,
    /// Whole numbers: `match`, `range` and `exists`.
    Integer,
    /// Numbers: `match`, `range` and `exists`.
    Float,
    /// Booleans: `match` and `exists`.
    Bool,
}

impl PayloadKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Keyword => "keyword",
            Self::Integer => "integer",
            Self::Float => "float",
            Self::Bool => "bool",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "keyword" => Some(Self::Keyword),
            "integer" => Some(Self::Integer),
            "float" => Some(Self::Float),
            "bool" => Some(Self::Bool),
            _ => None,
        }
    }

    pub(crate) fn is_numeric(self) -> bool {
        matches!(self, Self::Integer | Self::Float)
    }
}

/// A boolean combination of payload conditions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "must": [{"key": "category", "match": {"any": ["news", "blog"]}}],
    "must_not": [{"key": "year", "range": {"lt": 2020}}]
})))]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Every condition holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub must: Vec<Condition>,
    /// At least one condition holds (when there are any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub should: Vec<Condition>,
    /// No condition holds. A point without the key does not match the condition, so it passes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub must_not: Vec<Condition>,
}

/// One test of a payload key (`key` with exactly one of `match`, `range`, `exists`), or a
/// nested filter (`must` / `should` / `must_not`, without `key`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Condition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub matches: Option<Match>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<Range>,
    /// `true`: the key is present and not null. `false`: it is absent or null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(no_recursion))]
    pub must: Option<Vec<Condition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(no_recursion))]
    pub should: Option<Vec<Condition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(no_recursion))]
    pub must_not: Option<Vec<Condition>>,
}

/// Equality with one value, or with any of several (exactly one of the two).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Match {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub value: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<Object>>))]
    pub any: Option<Vec<Value>>,
}

/// Numeric bounds; at least one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Range {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gt: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gte: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lt: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lte: Option<f64>,
}

/// A value bound to a placeholder of the generated SQL.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Bind {
    Json(Value),
    JsonArray(Vec<Value>),
    Float(f64),
}

/// SQL for a `WHERE` clause and the values of its placeholders, numbered from the `first`
/// given to [`compile`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SqlFilter {
    pub sql: String,
    pub binds: Vec<Bind>,
}

/// Whether `key` is a payload key the filter language accepts: a dotted path of up to four
/// identifiers. The database function that builds payload indexes checks the same rule.
#[must_use]
pub fn valid_key(key: &str) -> bool {
    let segments: Vec<&str> = key.split('.').collect();
    segments.len() <= 4
        && segments.iter().all(|s| {
            let mut chars = s.chars();
            matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
                && s.len() <= 64
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// Whether a JSON value holds U+0000 in a key or a string, which `jsonb` cannot store.
#[must_use]
pub fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// The JSON value at `key`, as SQL. Identical to the expression of the payload index, so the
/// planner can use it.
pub(crate) fn key_expr(key: &str) -> String {
    format!("(payload #> '{{{}}}'::text[])", key.replace('.', ","))
}

/// The numeric value at `key` (NULL when it is not a number), as SQL; the expression of the
/// numeric payload index.
pub(crate) fn numeric_expr(key: &str) -> String {
    let path = format!("'{{{}}}'::text[]", key.replace('.', ","));
    format!(
        "(CASE WHEN jsonb_typeof(payload #> {path}) = 'number' THEN (payload #> {path})::float8 END)"
    )
}

/// Checks `filter` against the collection's indexed keys and translates it. `field` names the
/// filter in error messages (`filter`); placeholders start at `$first`.
pub(crate) fn compile(
    filter: &Filter,
    indexed: &BTreeMap<String, PayloadKind>,
    field: &str,
    first: usize,
) -> Result<SqlFilter, Vec<FieldError>> {
    let mut compiler = Compiler {
        indexed,
        errors: Vec::new(),
        binds: Vec::new(),
        first,
        conditions: 0,
    };
    let sql = compiler.filter(&filter.must, &filter.should, &filter.must_not, field, 1);
    if compiler.conditions > MAX_CONDITIONS {
        compiler.errors.push(FieldError::new(
            field,
            "too_many_conditions",
            format!("at most {MAX_CONDITIONS} conditions"),
        ));
    }
    if compiler.errors.is_empty() {
        Ok(SqlFilter {
            sql,
            binds: compiler.binds,
        })
    } else {
        Err(compiler.errors)
    }
}

struct Compiler<'a> {
    indexed: &'a BTreeMap<String, PayloadKind>,
    errors: Vec<FieldError>,
    binds: Vec<Bind>,
    first: usize,
    conditions: usize,
}

impl Compiler<'_> {
    fn placeholder(&mut self, bind: Bind) -> String {
        self.binds.push(bind);
        format!("${}", self.first + self.binds.len() - 1)
    }

    fn error(&mut self, field: String, code: &'static str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, code, message));
    }

    fn filter(
        &mut self,
        must: &[Condition],
        should: &[Condition],
        must_not: &[Condition],
        field: &str,
        depth: usize,
    ) -> String {
        if depth > MAX_DEPTH {
            self.error(
                field.to_owned(),
                "too_deep",
                format!("filters nest at most {MAX_DEPTH} deep"),
            );
            return "false".to_owned();
        }
        let mut parts = Vec::new();
        for (i, c) in must.iter().enumerate() {
            parts.push(self.condition(c, &format!("{field}.must[{i}]"), depth));
        }
        if !should.is_empty() {
            let any: Vec<String> = should
                .iter()
                .enumerate()
                .map(|(i, c)| self.condition(c, &format!("{field}.should[{i}]"), depth))
                .collect();
            parts.push(format!("({})", any.join(" OR ")));
        }
        for (i, c) in must_not.iter().enumerate() {
            let sql = self.condition(c, &format!("{field}.must_not[{i}]"), depth);
            // Two-valued: a missing key makes the condition NULL, and NOT NULL would drop the
            // point; "must not match" keeps it.
            parts.push(format!("NOT coalesce({sql}, false)"));
        }
        if parts.is_empty() {
            "true".to_owned()
        } else {
            format!("({})", parts.join(" AND "))
        }
    }

    fn condition(&mut self, c: &Condition, field: &str, depth: usize) -> String {
        self.conditions += 1;
        let nested = c.must.is_some() || c.should.is_some() || c.must_not.is_some();
        let tests = usize::from(c.matches.is_some())
            + usize::from(c.range.is_some())
            + usize::from(c.exists.is_some());
        match (&c.key, nested, tests) {
            (None, true, 0) => self.filter(
                c.must.as_deref().unwrap_or_default(),
                c.should.as_deref().unwrap_or_default(),
                c.must_not.as_deref().unwrap_or_default(),
                field,
                depth + 1,
            ),
            (Some(key), false, 1) => self.field_condition(c, key, field),
            _ => {
                self.error(
                    field.to_owned(),
                    "invalid_condition",
                    "a condition is either `key` with exactly one of `match`, `range` and \
                     `exists`, or a nested filter (`must`, `should`, `must_not`)",
                );
                "false".to_owned()
            }
        }
    }

    fn field_condition(&mut self, c: &Condition, key: &str, field: &str) -> String {
        let Some(kind) = self.indexed.get(key).copied() else {
            let known: Vec<&str> = self.indexed.keys().map(String::as_str).collect();
            let message = if known.is_empty() {
                format!("`{key}` is not an indexed payload key; this collection has none")
            } else {
                format!(
                    "`{key}` is not an indexed payload key; indexed: {}",
                    known.join(", ")
                )
            };
            self.error(format!("{field}.key"), "key_not_indexed", message);
            return "false".to_owned();
        };
        let expr = key_expr(key);
        if let Some(exists) = c.exists {
            let present = format!("coalesce(jsonb_typeof({expr}), 'null') <> 'null'");
            return if exists {
                format!("({present})")
            } else {
                format!("(NOT ({present}))")
            };
        }
        if let Some(range) = &c.range {
            if !kind.is_numeric() {
                self.error(
                    format!("{field}.range"),
                    "range_on_non_numeric",
                    format!(
                        "`{key}` is indexed as {}; ranges need integer or float",
                        kind.as_str()
                    ),
                );
                return "false".to_owned();
            }
            let bounds = [
                ("gt", ">", range.gt),
                ("gte", ">=", range.gte),
                ("lt", "<", range.lt),
                ("lte", "<=", range.lte),
            ];
            let numeric = numeric_expr(key);
            let mut sql = String::new();
            for (name, op, bound) in bounds {
                let Some(bound) = bound else { continue };
                if !bound.is_finite() {
                    self.error(
                        format!("{field}.range.{name}"),
                        "not_finite",
                        "must be a finite number",
                    );
                    continue;
                }
                let p = self.placeholder(Bind::Float(bound));
                if !sql.is_empty() {
                    sql.push_str(" AND ");
                }
                let _ = write!(sql, "{numeric} {op} {p}");
            }
            if sql.is_empty() {
                self.error(
                    format!("{field}.range"),
                    "empty_range",
                    "give at least one of gt, gte, lt, lte",
                );
                return "false".to_owned();
            }
            return format!("({sql})");
        }
        let Some(m) = &c.matches else {
            return "false".to_owned();
        };
        match (&m.value, &m.any) {
            (Some(value), None) => {
                if !self.value_fits(kind, value, &format!("{field}.match.value"), key) {
                    return "false".to_owned();
                }
                let p = self.placeholder(Bind::Json(value.clone()));
                format!("({expr} = {p}::jsonb)")
            }
            (None, Some(values)) => {
                if values.is_empty() || values.len() > MAX_ANY {
                    self.error(
                        format!("{field}.match.any"),
                        "invalid_length",
                        format!("give 1 to {MAX_ANY} values"),
                    );
                    return "false".to_owned();
                }
                let mut ok = true;
                for (i, v) in values.iter().enumerate() {
                    ok &= self.value_fits(kind, v, &format!("{field}.match.any[{i}]"), key);
                }
                if !ok {
                    return "false".to_owned();
                }
                let p = self.placeholder(Bind::JsonArray(values.clone()));
                format!("({expr} = ANY({p}::jsonb[]))")
            }
            _ => {
                self.error(
                    format!("{field}.match"),
                    "invalid_match",
                    "give exactly one of `value` and `any`",
                );
                "false".to_owned()
            }
        }
    }

    fn value_fits(&mut self, kind: PayloadKind, value: &Value, field: &str, key: &str) -> bool {
        if has_nul(value) {
            self.error(
                field.to_owned(),
                "nul_character",
                "strings cannot contain U+0000",
            );
            return false;
        }
        let fits = match kind {
            PayloadKind::Keyword => value.is_string(),
            PayloadKind::Integer => value.is_i64() || value.is_u64(),
            PayloadKind::Float => value.is_number(),
            PayloadKind::Bool => value.is_boolean(),
        };
        if !fits {
            self.error(
                field.to_owned(),
                "wrong_type",
                format!(
                    "`{key}` is indexed as {}; this value is not one",
                    kind.as_str()
                ),
            );
        }
        fits
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn indexed() -> BTreeMap<String, PayloadKind> {
        BTreeMap::from([
            ("category".to_owned(), PayloadKind::Keyword),
            ("year".to_owned(), PayloadKind::Integer),
            ("meta.score".to_owned(), PayloadKind::Float),
            ("public".to_owned(), PayloadKind::Bool),
        ])
    }

    fn parse(v: Value) -> Filter {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn keys_are_dotted_identifiers() {
        for ok in ["a", "category", "_x", "meta.lang", "a.b.c.d", "A1_b"] {
            assert!(valid_key(ok), "{ok}");
        }
        for bad in [
            "",
            "1a",
            "a-b",
            "a..b",
            "a.b.c.d.e",
            "a'b",
            "a b",
            "ключ",
            &"a".repeat(65),
        ] {
            assert!(!valid_key(bad), "{bad}");
        }
    }

    #[test]
    fn every_operator_becomes_bound_sql() {
        let f = parse(json!({
            "must": [
                {"key": "category", "match": {"value": "news"}},
                {"key": "year", "range": {"gte": 2000, "lt": 2010}},
                {"key": "meta.score", "exists": true}
            ],
            "should": [
                {"key": "category", "match": {"any": ["a", "b"]}},
                {"must": [{"key": "public", "match": {"value": true}}]}
            ],
            "must_not": [{"key": "year", "match": {"value": 2005}}]
        }));
        let sql = compile(&f, &indexed(), "filter", 3).unwrap();
        assert_eq!(
            sql.binds,
            [
                Bind::Json(json!("news")),
                Bind::Float(2000.0),
                Bind::Float(2010.0),
                Bind::JsonArray(vec![json!("a"), json!("b")]),
                Bind::Json(json!(true)),
                Bind::Json(json!(2005)),
            ]
        );
        for placeholder in ["$3", "$4", "$5", "$6", "$7", "$8"] {
            assert!(sql.sql.contains(placeholder), "{}", sql.sql);
        }
        assert!(!sql.sql.contains("news"), "values are bound, not inlined");
        assert!(sql.sql.contains("(payload #> '{meta,score}'::text[])"));
        assert!(sql.sql.contains("NOT coalesce("));
    }

    #[test]
    fn unindexed_keys_wrong_types_and_malformed_conditions_are_listed() {
        let f = parse(json!({
            "must": [
                {"key": "author", "match": {"value": "x"}},
                {"key": "category", "range": {"gt": 1}},
                {"key": "year", "match": {"value": "2001"}},
                {"key": "year", "match": {"value": 1, "any": [1]}},
                {"key": "year"},
                {"key": "year", "exists": true, "range": {"gt": 1}},
                {"key": "year", "range": {}},
                {"key": "year", "match": {"any": []}}
            ]
        }));
        let errors = compile(&f, &indexed(), "filter", 1).unwrap_err();
        let got: Vec<(&str, &str)> = errors
            .iter()
            .map(|e| (e.field.as_str(), e.code.as_ref()))
            .collect();
        assert_eq!(
            got,
            [
                ("filter.must[0].key", "key_not_indexed"),
                ("filter.must[1].range", "range_on_non_numeric"),
                ("filter.must[2].match.value", "wrong_type"),
                ("filter.must[3].match", "invalid_match"),
                ("filter.must[4]", "invalid_condition"),
                ("filter.must[5]", "invalid_condition"),
                ("filter.must[6].range", "empty_range"),
                ("filter.must[7].match.any", "invalid_length"),
            ]
        );
    }

    #[test]
    fn depth_and_size_are_bounded() {
        let mut c = json!({"key": "year", "exists": true});
        for _ in 0..MAX_DEPTH {
            c = json!({"must": [c]});
        }
        let errors = compile(&parse(json!({"must": [c]})), &indexed(), "filter", 1).unwrap_err();
        assert_eq!(errors[0].code, "too_deep");

        let many: Vec<_> = (0..=MAX_CONDITIONS)
            .map(|_| json!({"key": "year", "exists": true}))
            .collect();
        let errors = compile(&parse(json!({"must": many})), &indexed(), "filter", 1).unwrap_err();
        assert_eq!(errors[0].code, "too_many_conditions");
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_value::<Filter>(json!({"must": [], "or": []})).is_err());
        assert!(
            serde_json::from_value::<Filter>(json!({"must": [{"key": "a", "regex": "x"}]}))
                .is_err()
        );
    }
}
