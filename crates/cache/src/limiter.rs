//! Rate limiting with GCRA (the generic cell rate algorithm) on the cache.
//!
//! A [`Quota`] of `limit` per `period` admits one request every `period / limit` on average and
//! bursts of up to `limit`. The state per key is one timestamp (the "theoretical arrival time"),
//! updated atomically: by a Lua script on Redis's own clock, so every instance agrees, or by a
//! per-key compute in-process.
//!
//! When Redis fails or hangs, [`RateLimiter`] does not allow everything: it falls back to an
//! in-process limiter with a stricter quota (`limit / fallback_divisor`), logs the transition
//! once, and returns to Redis as soon as it answers again.

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::Cache;

pub use sovereign_core::quota::{Quota, QuotaParseError};

fn period_us(quota: Quota) -> u64 {
    u64::try_from(quota.period().as_micros()).unwrap_or(u64::MAX)
}

fn emission_us(quota: Quota) -> u64 {
    (period_us(quota) / u64::from(quota.limit())).max(1)
}

/// The decision for a GCRA step's outcome: `used_us` is how far the theoretical arrival time
/// is ahead of now, `retry_us` how long until the request would be admitted.
fn decide(quota: Quota, allowed: bool, used_us: u64, retry_us: u64) -> Decision {
    let remaining = if allowed {
        period_us(quota).saturating_sub(used_us) / emission_us(quota)
    } else {
        0
    };
    Decision {
        allowed,
        quota,
        remaining: u32::try_from(remaining)
            .unwrap_or(u32::MAX)
            .min(quota.limit()),
        reset_after: Duration::from_micros(used_us),
        retry_after: (!allowed).then(|| Duration::from_micros(retry_us)),
        degraded: false,
    }
}

/// Who a limit applies to.
#[derive(Debug, Clone, Copy)]
pub enum RateKey<'a> {
    /// A client address, as resolved through trusted proxies.
    Ip(IpAddr),
    /// An account (user id, or a normalised e-mail address before login).
    Account(&'a str),
    /// An API key, by its public identifier — never the secret.
    ApiKey(&'a str),
    Tenant(&'a str),
}

impl fmt::Display for RateKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ip(ip) => write!(f, "ip:{ip}"),
            Self::Account(id) => write!(f, "account:{id}"),
            Self::ApiKey(id) => write!(f, "key:{id}"),
            Self::Tenant(id) => write!(f, "tenant:{id}"),
        }
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The quota that was enforced (the stricter one when degraded).
    pub quota: Quota,
    /// Requests still admitted right now.
    pub remaining: u32,
    /// Until the key is back to a full burst.
    pub reset_after: Duration,
    /// When refused: until a retry would be admitted.
    pub retry_after: Option<Duration>,
    /// True when the shared store failed and the in-process fallback decided.
    pub degraded: bool,
}

/// Checks requests against quotas, keyed by policy name and [`RateKey`].
#[derive(Debug)]
pub struct RateLimiter {
    cache: Cache,
    fallback: Option<Cache>,
    divisor: u32,
    degraded: AtomicBool,
}

impl RateLimiter {
    /// A limiter storing its state in `cache` under `<namespace>rl:`. With a Redis cache, the
    /// in-process fallback enforces `quota.stricter(fallback_divisor)` while Redis fails.
    #[must_use]
    pub fn new(cache: &Cache, fallback_divisor: u32) -> Self {
        let fallback = (cache.backend() == crate::BackendKind::Redis)
            .then(|| Cache::in_memory(cache.namespace().trim_end_matches(':')));
        Self {
            cache: cache.scoped("rl"),
            fallback: fallback.map(|c| c.scoped("rl")),
            divisor: fallback_divisor.max(1),
            degraded: AtomicBool::new(false),
        }
    }

    /// True while decisions come from the in-process fallback.
    #[must_use]
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    /// Counts one request by `key` against `quota` under the policy `policy`.
    pub async fn check(&self, policy: &str, key: RateKey<'_>, quota: Quota) -> Decision {
        let name = format!("{}{policy}:{key}", self.cache.namespace());
        let cost = 1;
        match self
            .cache
            .gcra(&name, emission_us(quota), period_us(quota), cost)
            .await
        {
            Ok((allowed, used, retry)) => {
                if self.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!("rate limiter recovered: the shared store answers again");
                }
                decide(quota, allowed, used, retry)
            }
            Err(e) => {
                if !self.degraded.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        error = %e,
                        divisor = self.divisor,
                        "rate limiter degraded: the shared store failed; enforcing stricter in-process limits"
                    );
                }
                let strict = quota.stricter(self.divisor);
                let (allowed, used, retry) = match &self.fallback {
                    Some(local) => {
                        let name = format!("{}{policy}:{key}", local.namespace());
                        local
                            .gcra(&name, emission_us(strict), period_us(strict), cost)
                            .await
                            // The in-process backend cannot fail; refuse if it somehow did.
                            .unwrap_or((false, period_us(strict), emission_us(strict)))
                    }
                    None => (false, period_us(strict), emission_us(strict)),
                };
                Decision {
                    degraded: true,
                    ..decide(strict, allowed, used, retry)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_report_remaining_requests_and_retry_time() {
        let quota = Quota::new(4, Duration::from_secs(4)).unwrap();
        // Three of four used: one second of emission each.
        let d = decide(quota, true, 3_000_000, 0);
        assert_eq!((d.remaining, d.retry_after), (1, None));
        let d = decide(quota, false, 4_000_000, 250_000);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.retry_after, Some(Duration::from_millis(250)));
        assert_eq!(d.reset_after, Duration::from_secs(4));
    }
}
