//! Reading typed values from a map of environment variables while collecting every problem.
//!
//! Each read names a [`SettingSpec`]; the reader records the spec (under the section being
//! read), so loading settings from an empty environment yields the complete, documented list.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use secrecy::SecretString;

use url::Url;

use super::{Environment, SecretUrl};
use crate::quota::Quota;

static ENVIRONMENT: SettingSpec = SettingSpec {
    name: "ENVIRONMENT",
    default: DefaultValue::Value("development"),
    description: "Deployment environment: `development`, `staging` or `production`. Staging and production enforce a strong `SECRET_KEY`, JSON logs and no `DEBUG`.",
    secret: false,
};

/// How a setting gets its value when the variable is not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// This literal value, parsed like user input.
    Value(&'static str),
    /// Derived from other settings or the machine; the text says how.
    Computed(&'static str),
    /// Unset means the feature is off.
    Unset,
    /// The setting must be given.
    Required,
}

impl fmt::Display for DefaultValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Value(v) => write!(f, "`{v}`"),
            Self::Computed(how) => f.write_str(how),
            Self::Unset => f.write_str("unset"),
            Self::Required => f.write_str("required"),
        }
    }
}

/// The documentation of one setting: its variable name, default and meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingSpec {
    pub name: &'static str,
    pub default: DefaultValue,
    pub description: &'static str,
    /// Secret values are never echoed in messages, logs or `Debug` output.
    pub secret: bool,
}

/// One problem (or warning) found while loading settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingIssue {
    /// The environment variable concerned.
    pub setting: &'static str,
    pub message: String,
    /// What to do about it.
    pub suggestion: Option<String>,
}

impl fmt::Display for SettingIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.setting, self.message)?;
        if let Some(suggestion) = &self.suggestion {
            write!(f, "\n    suggestion: {suggestion}")?;
        }
        Ok(())
    }
}

/// A type that can be read from a setting's text.
pub trait SettingValue: Sized {
    /// Describes acceptable text, for messages ("a whole number", "true or false").
    const EXPECTED: &'static str;
    fn parse_setting(text: &str) -> Result<Self, String>;
}

impl SettingValue for bool {
    const EXPECTED: &'static str = "true or false";
    fn parse_setting(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(format!("expected {}", Self::EXPECTED)),
        }
    }
}

macro_rules! integer_setting {
    ($($t:ty),*) => {$(
        impl SettingValue for $t {
            const EXPECTED: &'static str = "a whole number";
            fn parse_setting(text: &str) -> Result<Self, String> {
                text.parse().map_err(|e| format!("expected {}: {e}", Self::EXPECTED))
            }
        }
    )*};
}
integer_setting!(u16, u32, u64, usize);

impl SettingValue for Quota {
    const EXPECTED: &'static str = "a rate such as 10/minute";
    fn parse_setting(text: &str) -> Result<Self, String> {
        text.parse()
            .map_err(|e: crate::quota::QuotaParseError| e.to_string())
    }
}

impl SettingValue for String {
    const EXPECTED: &'static str = "text";
    fn parse_setting(text: &str) -> Result<Self, String> {
        Ok(text.to_owned())
    }
}

impl SettingValue for Url {
    const EXPECTED: &'static str = "a URL";
    fn parse_setting(text: &str) -> Result<Self, String> {
        Url::parse(text).map_err(|e| format!("not a valid URL ({e})"))
    }
}

fn issue(
    setting: &'static str,
    message: impl Into<String>,
    suggestion: impl Into<Option<String>>,
) -> SettingIssue {
    SettingIssue {
        setting,
        message: message.into(),
        suggestion: suggestion.into(),
    }
}

/// A setting as documented: the section it is read in, and its spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Documented {
    pub section: &'static str,
    pub spec: &'static SettingSpec,
}

/// Reads settings from a map of variables, collecting every problem and warning instead of
/// stopping at the first, and recording which settings exist.
///
/// Each crate reads its own settings with it (see [`super::ReadSettings`]); the environment
/// (`ENVIRONMENT`) is read first, when the reader is made, because the rules of several crates
/// depend on it.
pub struct Reader<'a> {
    vars: &'a HashMap<String, String>,
    environment: Environment,
    section: &'static str,
    pub(super) specs: Vec<Documented>,
    pub(super) problems: Vec<SettingIssue>,
    pub(super) warnings: Vec<SettingIssue>,
}

impl<'a> Reader<'a> {
    #[must_use]
    pub fn new(vars: &'a HashMap<String, String>) -> Self {
        let mut reader = Self {
            vars,
            environment: Environment::Development,
            section: "General",
            specs: Vec::new(),
            problems: Vec::new(),
            warnings: Vec::new(),
        };
        reader.environment = reader.value(&ENVIRONMENT);
        reader
    }

    /// Where the service runs, as `ENVIRONMENT` says.
    #[must_use]
    pub fn environment(&self) -> Environment {
        self.environment
    }

    /// Settings read from now on are documented under this heading.
    pub fn section(&mut self, title: &'static str) {
        self.section = title;
    }

    /// The trimmed, non-empty text of a variable, recording the spec as read.
    pub fn raw(&mut self, spec: &'static SettingSpec) -> Option<&'a str> {
        if !self.specs.iter().any(|d| d.spec.name == spec.name) {
            self.specs.push(Documented {
                section: self.section,
                spec,
            });
        }
        self.vars
            .get(spec.name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// Records a problem: loading fails, and the operator is told this with the others.
    pub fn problem(
        &mut self,
        setting: &'static str,
        message: impl Into<String>,
        suggestion: impl Into<Option<String>>,
    ) {
        self.problems.push(issue(setting, message, suggestion));
    }

    /// Records a warning, logged at start-up.
    pub fn warning(
        &mut self,
        setting: &'static str,
        message: impl Into<String>,
        suggestion: impl Into<Option<String>>,
    ) {
        self.warnings.push(issue(setting, message, suggestion));
    }

    fn parse_text<T: SettingValue>(&mut self, spec: &'static SettingSpec, text: &str) -> Option<T> {
        match T::parse_setting(text) {
            Ok(value) => Some(value),
            Err(why) => {
                let shown = if spec.secret {
                    "the value".to_owned()
                } else {
                    format!("`{text}`")
                };
                let suggestion = match spec.default {
                    DefaultValue::Value(d) => {
                        format!(
                            "set {} to {}, or unset it to use `{d}`",
                            spec.name,
                            T::EXPECTED
                        )
                    }
                    _ => format!("set {} to {}", spec.name, T::EXPECTED),
                };
                self.problem(spec.name, format!("{shown} is invalid: {why}"), suggestion);
                None
            }
        }
    }

    /// The user's value if set and valid. Unset gives `None`; so does an invalid value, which is
    /// recorded as a problem. A `Required` setting that is unset is a problem too.
    pub fn optional<T: SettingValue>(&mut self, spec: &'static SettingSpec) -> Option<T> {
        match self.raw(spec) {
            Some(text) => self.parse_text(spec, text),
            None => {
                if spec.default == DefaultValue::Required {
                    self.problem(
                        spec.name,
                        "is required but not set",
                        format!("set {}: {}", spec.name, spec.description),
                    );
                }
                None
            }
        }
    }

    /// The user's value if set and valid, else the spec's literal default.
    pub fn value<T: SettingValue + Default>(&mut self, spec: &'static SettingSpec) -> T {
        if let Some(v) = self.optional(spec) {
            return v;
        }
        match spec.default {
            DefaultValue::Value(d) => T::parse_setting(d).unwrap_or_else(|why| {
                self.problem(
                    spec.name,
                    format!("built-in default is invalid: {why}"),
                    None,
                );
                T::default()
            }),
            _ => T::default(),
        }
    }

    /// Like [`Reader::value`] for integers, with an inclusive range check.
    pub fn bounded<T>(&mut self, spec: &'static SettingSpec, min: T, max: T) -> T
    where
        T: SettingValue + Default + PartialOrd + Copy + fmt::Display,
    {
        let v: T = self.value(spec);
        if v < min || v > max {
            self.problem(
                spec.name,
                format!("{v} is out of range"),
                format!("set {} to a value from {min} to {max}", spec.name),
            );
        }
        v
    }
}

impl Reader<'_> {
    /// A duration setting given in milliseconds, within an inclusive range.
    pub fn millis(&mut self, spec: &'static SettingSpec, min: u64, max: u64) -> Duration {
        Duration::from_millis(self.bounded(spec, min, max))
    }

    /// A duration setting given in seconds, within an inclusive range.
    pub fn seconds(&mut self, spec: &'static SettingSpec, min: u64, max: u64) -> Duration {
        Duration::from_secs(self.bounded(spec, min, max))
    }

    /// A URL that may carry a password: redacted in every message.
    pub fn secret_url(&mut self, spec: &'static SettingSpec) -> Option<SecretUrl> {
        self.optional::<Url>(spec).map(SecretUrl::new)
    }

    /// A secret text (a key, a token, a password): never shown.
    pub fn secret(&mut self, spec: &'static SettingSpec) -> Option<SecretString> {
        self.raw(spec)
            .map(|text| SecretString::from(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_accept_the_usual_spellings() {
        for t in ["true", "TRUE", "1", "yes", "on"] {
            assert_eq!(bool::parse_setting(t), Ok(true), "{t}");
        }
        for f in ["false", "False", "0", "no", "off"] {
            assert_eq!(bool::parse_setting(f), Ok(false), "{f}");
        }
        assert!(bool::parse_setting("maybe").is_err());
    }

    static SECRET: SettingSpec = SettingSpec {
        name: "A_SECRET",
        default: DefaultValue::Unset,
        description: "x",
        secret: true,
    };

    #[test]
    fn invalid_secret_values_are_not_echoed() {
        let vars = HashMap::from([("A_SECRET".to_owned(), "hunter2-not-a-url".to_owned())]);
        let mut r = Reader::new(&vars);
        let parsed: Option<Url> = r.optional(&SECRET);
        assert!(parsed.is_none());
        let text = r.problems[0].to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("A_SECRET"), "{text}");
    }
}
