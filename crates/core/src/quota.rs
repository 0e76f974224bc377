//! Rates such as `10/minute`: how settings express rate-limit policies.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// `limit` requests per `period`, with bursts of up to `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    limit: u32,
    period: Duration,
}

impl Quota {
    /// One request per second: the floor when nothing else is known.
    pub const ONE_PER_SECOND: Self = Self {
        limit: 1,
        period: Duration::from_secs(1),
    };

    /// `None` when `limit` is zero or `period` is shorter than a millisecond.
    #[must_use]
    pub fn new(limit: u32, period: Duration) -> Option<Self> {
        (limit > 0 && period >= Duration::from_millis(1)).then_some(Self { limit, period })
    }

    /// `limit` requests per minute.
    #[must_use]
    pub fn per_minute(limit: u32) -> Option<Self> {
        Self::new(limit, Duration::from_secs(60))
    }

    #[must_use]
    pub fn limit(&self) -> u32 {
        self.limit
    }

    #[must_use]
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The same period with `limit / divisor` requests (at least one).
    #[must_use]
    pub fn stricter(&self, divisor: u32) -> Self {
        Self {
            limit: (self.limit / divisor.max(1)).max(1),
            period: self.period,
        }
    }
}

/// The floor, [`Quota::ONE_PER_SECOND`]; settings declare their own defaults.
impl Default for Quota {
    fn default() -> Self {
        Self::ONE_PER_SECOND
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.period.as_millis();
        if ms.is_multiple_of(1000) {
            write!(f, "{}/{}s", self.limit, ms / 1000)
        } else {
            write!(f, "{}/{}ms", self.limit, ms)
        }
    }
}

/// Why a quota could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a rate: write LIMIT/PERIOD, e.g. 10/minute, 300/5m or 20/10s")]
pub struct QuotaParseError(String);

impl FromStr for Quota {
    type Err = QuotaParseError;

    /// `10/minute`, `10/min`, `300/5m`, `20/10s`, `1000/hour`, `50/500ms`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || QuotaParseError(text.to_owned());
        let (limit, period) = text.trim().split_once('/').ok_or_else(error)?;
        let limit: u32 = limit.trim().parse().map_err(|_| error())?;
        let period = period.trim();
        let split = period
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(error)?;
        let (count, unit) = period.split_at(split);
        let count: u64 = if count.is_empty() {
            1
        } else {
            count.parse().map_err(|_| error())?
        };
        let unit_ms: u64 = match unit {
            "ms" => 1,
            "s" | "sec" | "second" | "seconds" => 1000,
            "m" | "min" | "minute" | "minutes" => 60_000,
            "h" | "hour" | "hours" => 3_600_000,
            "d" | "day" | "days" => 86_400_000,
            _ => return Err(error()),
        };
        let ms = count.checked_mul(unit_ms).ok_or_else(error)?;
        Self::new(limit, Duration::from_millis(ms)).ok_or_else(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_parse_in_the_documented_forms() {
        let q = |s: &str| s.parse::<Quota>().map(|q| (q.limit(), q.period()));
        assert_eq!(q("10/minute"), Ok((10, Duration::from_secs(60))));
        assert_eq!(q("10/min"), Ok((10, Duration::from_secs(60))));
        assert_eq!(q("300/5m"), Ok((300, Duration::from_secs(300))));
        assert_eq!(q(" 20 / 10s "), Ok((20, Duration::from_secs(10))));
        assert_eq!(q("1000/hour"), Ok((1000, Duration::from_secs(3600))));
        assert_eq!(q("50/500ms"), Ok((50, Duration::from_millis(500))));
        for bad in [
            "",
            "10",
            "0/min",
            "10/0s",
            "ten/min",
            "10/fortnight",
            "10/-1s",
        ] {
            assert!(bad.parse::<Quota>().is_err(), "{bad:?} parsed");
        }
        assert_eq!(
            "10/minute".parse::<Quota>().map(|q| q.to_string()),
            Ok("10/60s".to_owned())
        );
    }

    #[test]
    fn stricter_quotas_keep_at_least_one_request() {
        let quota = Quota::per_minute(10).unwrap();
        assert_eq!(quota.stricter(4).limit(), 2);
        assert_eq!(quota.stricter(100).limit(), 1);
        assert_eq!(quota.stricter(0).limit(), 10);
    }
}
