//! The settings mechanism: how every crate reads its own settings from the environment (and an
//! optional `.env` file), validates them, and documents them.
//!
//! Each crate owns its settings: a plain struct, the [`SettingSpec`]s of its variables
//! (declared with [`setting!`](crate::setting)) and a [`ReadSettings`] implementation that reads
//! them through a [`Reader`]. The reader collects every problem instead of stopping at the first,
//! each with a suggestion, so an operator fixes the whole configuration in one go; the binary
//! composes the crates' groups into one configuration and loads it once, at start-up. There is
//! no global: whoever needs a setting receives it.
//!
//! Variable names follow the earlier Python version where it had them (`DATABASE_URL`,
//! `VALKEY_URL`/`REDIS_URL`, `SECRET_KEY`, `BACKEND_CORS_ORIGINS`, …). [`documented`] lists
//! every variable a group reads, in order and by section; the configuration reference in the
//! docs is generated from it.

mod reader;
mod secret;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

pub use reader::{DefaultValue, Documented, Reader, SettingIssue, SettingSpec, SettingValue};
pub use secret::SecretUrl;

/// Declares a `static` [`SettingSpec`]: its variable name, default and description, and
/// `secret` for values never to be shown.
///
/// ```
/// use sovereign_core::setting;
/// use sovereign_core::settings::DefaultValue::Value;
///
/// setting!(GREETING, "GREETING", Value("hello"), "What the service says first.");
/// assert_eq!(GREETING.name, "GREETING");
/// ```
#[macro_export]
macro_rules! setting {
    ($ident:ident, $name:literal, $default:expr, $description:literal) => {
        static $ident: $crate::settings::SettingSpec = $crate::settings::SettingSpec {
            name: $name,
            default: $default,
            description: $description,
            secret: false,
        };
    };
    ($ident:ident, $name:literal, $default:expr, $description:literal, secret) => {
        static $ident: $crate::settings::SettingSpec = $crate::settings::SettingSpec {
            name: $name,
            default: $default,
            description: $description,
            secret: true,
        };
    };
}

/// A group of settings one crate owns, and how it is read and validated.
pub trait ReadSettings: Sized {
    /// Reads and validates the group, recording every problem and warning in the reader.
    /// `None` only when a value the group cannot do without is missing or unusable; the reader
    /// then holds the problem.
    fn read(r: &mut Reader<'_>) -> Option<Self>;
}

/// Settings that loaded, with warnings worth logging at start-up.
#[derive(Debug)]
pub struct Loaded<T> {
    pub settings: T,
    pub warnings: Vec<SettingIssue>,
}

/// Every problem that keeps the configuration from loading.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<SettingIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "invalid configuration: {n} problem{}",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

/// Loads a group from the process environment, reading `.env` in the working directory first
/// when it exists (real environment variables win).
pub fn load<T: ReadSettings>() -> Result<Loaded<T>, ConfigError> {
    let mut vars: HashMap<String, String> = HashMap::new();
    let mut dotenv_problem = None;
    match dotenvy::from_path_iter(".env") {
        Ok(iter) => {
            for item in iter {
                match item {
                    Ok((k, v)) => {
                        vars.insert(k, v);
                    }
                    Err(e) => {
                        dotenv_problem = Some(e.to_string());
                        break;
                    }
                }
            }
        }
        Err(e) if e.not_found() => {}
        Err(e) => dotenv_problem = Some(e.to_string()),
    }
    // `std::env::vars` panics on a variable that is not UTF-8; none of ours can be, so any
    // such variable is someone else's and is skipped.
    vars.extend(
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
    );
    let result = from_vars(vars);
    match dotenv_problem {
        None => result,
        Some(message) => {
            let issue = SettingIssue {
                setting: ".env",
                message: format!("could not be read: {message}"),
                suggestion: Some("fix the line it names, or remove the file".to_owned()),
            };
            let mut problems = vec![issue];
            if let Err(e) = result {
                problems.extend(e.problems);
            }
            Err(ConfigError { problems })
        }
    }
}

/// Loads a group from the given variables only (tests use this; nothing global is read).
pub fn from_vars<T, I, K, V>(vars: I) -> Result<Loaded<T>, ConfigError>
where
    T: ReadSettings,
    I: IntoIterator<Item = (K, V)>,
    K: Into<String>,
    V: Into<String>,
{
    let vars: HashMap<String, String> = vars
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    let mut r = Reader::new(&vars);
    let settings = T::read(&mut r);
    match settings {
        Some(settings) if r.problems.is_empty() => Ok(Loaded {
            settings,
            warnings: r.warnings,
        }),
        _ => Err(ConfigError {
            problems: r.problems,
        }),
    }
}

/// The group with every value at its documented default (as an empty environment gives it).
/// Fails only for a group with required settings.
pub fn defaults<T: ReadSettings>() -> Result<T, ConfigError> {
    from_vars::<T, _, String, String>([]).map(|loaded| loaded.settings)
}

/// What `read` gives in an empty environment: every documented default. For groups without
/// required settings, whose `Default` is this.
pub fn with_defaults<T>(read: impl FnOnce(&mut Reader<'_>) -> T) -> T {
    read(&mut Reader::new(&HashMap::new()))
}

/// Every setting a group reads, in the order it reads them, with its section.
#[must_use]
pub fn documented<T: ReadSettings>() -> Vec<Documented> {
    let vars = HashMap::new();
    let mut r = Reader::new(&vars);
    let _ = T::read(&mut r);
    r.specs
}

/// The number of CPUs this process may use (at least 1), the base of several defaults.
#[must_use]
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// Where the service runs; stricter rules apply outside development.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Environment {
    #[default]
    Development,
    Staging,
    Production,
}

impl Environment {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Staging => "staging",
            Self::Production => "production",
        }
    }

    #[must_use]
    pub fn is_development(self) -> bool {
        self == Self::Development
    }

    #[must_use]
    pub fn is_production(self) -> bool {
        self == Self::Production
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Environment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "development" | "dev" | "local" => Ok(Self::Development),
            "staging" | "stage" => Ok(Self::Staging),
            "production" | "prod" => Ok(Self::Production),
            _ => Err("expected development, staging or production".to_owned()),
        }
    }
}

impl SettingValue for Environment {
    const EXPECTED: &'static str = "development, staging or production";
    fn parse_setting(text: &str) -> Result<Self, String> {
        text.parse()
    }
}

/// Whether `host` (a name or an address) is this machine.
#[must_use]
pub fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests;
