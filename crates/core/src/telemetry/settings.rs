//! The logging settings: `DEBUG`, `LOG_LEVEL` and `LOG_FORMAT`.

use crate::setting;
use crate::settings::DefaultValue::{Computed, Value};
use crate::settings::{Environment, ReadSettings, Reader, SettingValue};

setting!(
    DEBUG,
    "DEBUG",
    Value("false"),
    "Verbose diagnostics: raises the default log level to `debug`. Refused in production."
);
setting!(
    LOG_LEVEL,
    "LOG_LEVEL",
    Computed("`info` (`debug` when `DEBUG` is on)"),
    "Log filter: a level (`info`) or per-crate directives (`info,sovereign_db=debug`)."
);
setting!(
    LOG_FORMAT,
    "LOG_FORMAT",
    Value("auto"),
    "`json`, `pretty`, or `auto`: readable in development, JSON in staging and production."
);

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Decided by the environment.
    #[default]
    Auto,
    /// One JSON object per line, for log shippers.
    Json,
    /// Human-readable, for terminals.
    Pretty,
}

impl SettingValue for LogFormat {
    const EXPECTED: &'static str = "json, pretty or auto";
    fn parse_setting(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "json" => Ok(Self::Json),
            "pretty" | "text" => Ok(Self::Pretty),
            _ => Err(format!("expected {}", Self::EXPECTED)),
        }
    }
}

/// What is logged, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// `DEBUG`: verbose diagnostics.
    pub debug: bool,
    /// An `EnvFilter` directive string.
    pub filter: String,
    /// Never `Auto`: resolved from the environment at load time.
    pub format: LogFormat,
}

impl ReadSettings for LogSettings {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        r.section("Logging");
        let environment = r.environment();
        let debug: bool = r.value(&DEBUG);
        if debug && environment == Environment::Production {
            r.problem(
                DEBUG.name,
                "DEBUG is on in production",
                "unset DEBUG (or set it to false); use LOG_LEVEL=debug briefly if you need more logs"
                    .to_owned(),
            );
        }
        let filter = r
            .optional::<String>(&LOG_LEVEL)
            .unwrap_or_else(|| if debug { "debug" } else { "info" }.to_owned());
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&filter) {
            r.problem(
                LOG_LEVEL.name,
                format!("`{filter}` is not a log filter: {e}"),
                "use a level (error, warn, info, debug, trace) or directives like info,sovereign_db=debug"
                    .to_owned(),
            );
        }
        let format = match r.value::<LogFormat>(&LOG_FORMAT) {
            LogFormat::Auto if environment.is_development() => LogFormat::Pretty,
            LogFormat::Auto => LogFormat::Json,
            explicit => explicit,
        };
        Some(Self {
            debug,
            filter,
            format,
        })
    }
}
