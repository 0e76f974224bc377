//! Password policy and hashing.
//!
//! - Policy (NIST SP 800-63B): a configurable minimum length (12 by default), up to
//!   [`MAX_PASSWORD_CHARS`] characters, no composition rules, and an offline list of common
//!   passwords.
//! - bcrypt reads only 72 bytes. Passwords are first digested (SHA-256, base64: 44 bytes), so
//!   every character counts and long passphrases work; two passwords sharing 72 bytes do not
//!   verify for each other.
//! - Hashing runs on a pool of its own, `concurrency` threads at a lowered CPU priority (nice
//!   10): a login storm queues there, and the threads serving HTTP are scheduled ahead of it, so
//!   other requests stay fast while every spare cycle still goes to hashing.
//! - An unknown account is checked against a dummy hash of the same cost, so a miss takes as
//!   long as a hit.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use crate::AuthError;

/// Longest password accepted, in characters.
pub const MAX_PASSWORD_CHARS: usize = 256;

static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../data/common-passwords.txt")
        .lines()
        .collect()
});

/// Length and common-password rules.
#[derive(Debug, Clone, Copy)]
pub struct PasswordPolicy {
    pub min_chars: usize,
}

impl PasswordPolicy {
    /// Checks a new password. `email` is refused as a password too.
    pub fn check(&self, password: &str, field: &str, email: Option<&str>) -> Result<(), AuthError> {
        let chars = password.chars().count();
        if chars < self.min_chars {
            return Err(AuthError::invalid(
                field,
                "too_short",
                format!("must have at least {} characters", self.min_chars),
            ));
        }
        if chars > MAX_PASSWORD_CHARS {
            return Err(AuthError::invalid(
                field,
                "too_long",
                format!("must have at most {MAX_PASSWORD_CHARS} characters"),
            ));
        }
        let lowered = password.to_lowercase();
        if COMMON.contains(lowered.as_str()) || email.is_some_and(|e| lowered == e) {
            return Err(AuthError::invalid(
                field,
                "too_common",
                "is too common or easy to guess; a few unrelated words make a strong passphrase",
            ));
        }
        Ok(())
    }
}

/// bcrypt on a pool of low-priority threads, which bounds concurrent hashes.
#[derive(Clone)]
pub struct PasswordHasher {
    cost: u32,
    pool: Arc<HashPool>,
    dummy: Arc<str>,
    verifications: Arc<AtomicU64>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("cost", &self.cost)
            .field("threads", &self.pool.threads)
            .finish_non_exhaustive()
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Threads that do nothing but hash, at a lower CPU priority than everything else. They end when
/// the last [`PasswordHasher`] sharing them is dropped.
struct HashPool {
    jobs: std::sync::mpsc::Sender<Job>,
    threads: usize,
}

/// About nice 10 (the crate maps its 0–99 scale onto nice 19 … -20; 23 gives 9 on Linux).
const HASH_THREAD_PRIORITY: u8 = 23;

impl HashPool {
    fn start(threads: usize) -> Result<Self, AuthError> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("password-hash-{i}"))
                .spawn(move || {
                    if let Ok(priority) = HASH_THREAD_PRIORITY.try_into()
                        && let Err(e) = thread_priority::set_current_thread_priority(
                            thread_priority::ThreadPriority::Crossplatform(priority),
                        )
                    {
                        tracing::debug!(error = ?e, "cannot lower the hashing thread's priority");
                    }
                    loop {
                        let job = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| AuthError::Config(format!("cannot start hashing threads: {e}")))?;
        }
        Ok(Self { jobs, threads })
    }
}

/// What bcrypt is given: the password's SHA-256 in base64 (44 bytes, under bcrypt's 72).
fn prehash(password: &str) -> String {
    STANDARD.encode(Sha256::digest(password.as_bytes()))
}

impl PasswordHasher {
    /// A hasher of `cost` allowing `concurrency` hashes at once. Computes the dummy hash once.
    pub fn new(cost: u32, concurrency: usize) -> Result<Self, AuthError> {
        let dummy = bcrypt::hash(prehash("sovereign dummy password"), cost)
            .map_err(|e| AuthError::Config(format!("bcrypt cost {cost}: {e}")))?;
        Ok(Self {
            cost,
            pool: Arc::new(HashPool::start(concurrency.max(1))?),
            dummy: Arc::from(dummy),
            verifications: Arc::new(AtomicU64::new(0)),
        })
    }

    /// How many verifications this hasher (and its clones) ran, dummy ones included.
    #[must_use]
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// A hash of `password` to store.
    pub async fn hash(&self, password: &SecretString) -> Result<String, AuthError> {
        let input = prehash(password.expose_secret());
        let cost = self.cost;
        self.blocking(move || bcrypt::hash(input, cost)).await
    }

    /// Whether `password` matches `hash`; with no hash (unknown account), checks a dummy hash
    /// so the answer takes as long, and is `false`.
    pub async fn verify(
        &self,
        password: &SecretString,
        hash: Option<&str>,
    ) -> Result<bool, AuthError> {
        let input = prehash(password.expose_secret());
        let (target, real) = match hash {
            Some(h) => (h.to_owned(), true),
            None => (self.dummy.to_string(), false),
        };
        let matched = self
            .blocking(move || bcrypt::verify(input, &target))
            .await?;
        self.verifications.fetch_add(1, Ordering::Relaxed);
        Ok(matched && real)
    }

    /// Runs `work` on the hashing pool. A request that goes away before its turn costs nothing:
    /// queued work whose caller is gone is skipped.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, bcrypt::BcryptError> + Send + 'static,
    ) -> Result<T, AuthError> {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            if !done.is_closed() {
                let _ = done.send(work());
            }
        });
        self.pool
            .jobs
            .send(job)
            .map_err(|_| AuthError::Hashing("the hashing pool has stopped".to_owned()))?;
        result
            .await
            .map_err(|_| AuthError::Hashing("a hashing thread died".to_owned()))?
            .map_err(|e| AuthError::Hashing(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PasswordPolicy {
        PasswordPolicy { min_chars: 12 }
    }

    #[test]
    fn length_rules_count_characters() {
        let p = policy();
        assert!(p.check("a1b2c3d4e5f", "password", None).is_err()); // 11
        assert!(p.check("a1b2c3d4e5fz", "password", None).is_ok()); // 12
        assert!(
            p.check(
                &"xk9".repeat(21).chars().take(64).collect::<String>(),
                "password",
                None
            )
            .is_ok()
        );
        assert!(
            p.check(&"plum tree ".repeat(13)[..128], "password", None)
                .is_ok()
        );
        assert!(
            p.check(&"🔑🌲🐙🎻".repeat(3), "password", None).is_ok(),
            "12 emoji are 12 characters"
        );
        assert!(p.check(&"z".repeat(257), "password", None).is_err());
    }

    #[test]
    fn common_passwords_and_the_address_are_refused() {
        let p = policy();
        for common in ["qwerty123456", "Password1234", "1q2w3e4r5t6y"] {
            let e = p.check(common, "password", None);
            assert!(
                matches!(e, Err(AuthError::Invalid(ref f)) if f[0].code == "too_common"),
                "{common}"
            );
        }
        assert!(
            p.check("alice@example.com", "password", Some("alice@example.com"))
                .is_err()
        );
    }

    #[tokio::test]
    async fn long_passwords_are_not_truncated() {
        let hasher = PasswordHasher::new(4, 2).unwrap();
        let shared = "x".repeat(72);
        let a = SecretString::from(format!("{shared}-one"));
        let b = SecretString::from(format!("{shared}-two"));
        let hash = hasher.hash(&a).await.unwrap();
        assert!(hasher.verify(&a, Some(&hash)).await.unwrap());
        assert!(!hasher.verify(&b, Some(&hash)).await.unwrap());
        let emoji = SecretString::from("🔑".repeat(64));
        let hash = hasher.hash(&emoji).await.unwrap();
        assert!(hasher.verify(&emoji, Some(&hash)).await.unwrap());
        assert!(
            !hasher
                .verify(&SecretString::from("🔑".repeat(63)), Some(&hash))
                .await
                .unwrap()
        );
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_threads_run_at_a_lower_priority() {
        let hasher = PasswordHasher::new(4, 2).unwrap();
        // Field 19 of /proc/<pid>/task/<tid>/stat is the thread's nice value. The threads name
        // themselves and lower their priority as they start: wait (bounded) until both have.
        let nices = || {
            let mut nices = Vec::new();
            for task in std::fs::read_dir("/proc/self/task").unwrap() {
                let dir = task.unwrap().path();
                let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
                if name.starts_with("password-hash") {
                    let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
                    if let Some(end) = stat.rfind(')') {
                        let nice = stat[end + 2..]
                            .split(' ')
                            .nth(16)
                            .and_then(|n| n.parse::<i32>().ok());
                        nices.push(nice.unwrap_or(0));
                    }
                }
            }
            nices
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut seen = nices();
        while !(seen.len() == 2 && seen.iter().all(|n| (5..=15).contains(n))) {
            assert!(
                std::time::Instant::now() < deadline,
                "hashing threads: {seen:?}"
            );
            tokio::task::yield_now().await;
            seen = nices();
        }
        drop(hasher);
    }

    #[tokio::test]
    async fn unknown_accounts_never_verify() {
        let hasher = PasswordHasher::new(4, 1).unwrap();
        let pw = SecretString::from("sovereign dummy password");
        assert!(
            !hasher.verify(&pw, None).await.unwrap(),
            "the dummy hash must not match"
        );
        assert!(hasher.hash(&pw).await.unwrap().starts_with("$2b$04$"));
    }
}
