//! Password policy and hashing.
//!
//! - Policy (NIST SP 800-63B): a configurable minimum length (12 by default), up to
//!   [`MAX_PASSWORD_CHARS`] characters, no composition rules, an offline list of common
//!   passwords, and a strength estimate (zxcvbn) that refuses repetitive, sequential and
//!   keyboard-walk passwords and those built from the user's own context (the address, the
//!   tenant's name). The estimate costs about half a millisecond of CPU, so new passwords are
//!   checked on the hashing pool, in the same job as their hash.
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

/// The lowest zxcvbn score accepted: "safely unguessable", about 10^10 guesses, a strong
/// defence against online attacks and a reasonable one against an offline attack on bcrypt.
const MIN_SCORE: zxcvbn::Score = zxcvbn::Score::Three;

/// Length, common-password and strength rules.
#[derive(Debug, Clone, Copy)]
pub struct PasswordPolicy {
    pub min_chars: usize,
}

impl PasswordPolicy {
    /// Checks a new password. `inputs` are what the user's context makes easy to guess (the
    /// address, the tenant's name): each is refused as the password, and counts against its
    /// strength. The strength estimate takes up to a millisecond of CPU: off the async workers,
    /// call [`PasswordHasher::hash_new`], which checks and hashes in one job.
    pub fn check(&self, password: &str, field: &str, inputs: &[&str]) -> Result<(), AuthError> {
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
        if COMMON.contains(lowered.as_str()) || inputs.iter().any(|i| lowered == i.to_lowercase()) {
            return Err(AuthError::invalid(
                field,
                "too_common",
                "is too common or easy to guess; a few unrelated words make a strong passphrase",
            ));
        }
        let estimate = zxcvbn::zxcvbn(password, inputs);
        if estimate.score() < MIN_SCORE {
            let why = estimate
                .feedback()
                .and_then(zxcvbn::feedback::Feedback::warning)
                .map_or_else(String::new, |w| format!(" ({w})"));
            return Err(AuthError::invalid(
                field,
                "too_weak",
                format!(
                    "is too easy to guess{why}; a passphrase of four or more unrelated words \
                     is long, memorable and strong"
                ),
            ));
        }
        Ok(())
    }
}

/// The words a user's context makes easy to guess: the address, its local part and domain
/// labels, and the tenant's name and slug.
#[must_use]
pub fn context_words(email: Option<&str>, tenant: &[&str]) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    if let Some(email) = email {
        words.push(email.to_owned());
        if let Some((local, domain)) = email.split_once('@') {
            words.push(local.to_owned());
            words.extend(domain.split('.').map(str::to_owned));
        }
    }
    words.extend(tenant.iter().map(|t| (*t).to_owned()));
    words.retain(|w| w.chars().count() >= 3);
    words.sort_unstable();
    words.dedup();
    words
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
        // The estimator builds its dictionaries on first use (~0.1 s): now, not in a request.
        let _ = zxcvbn::zxcvbn("warm up the strength estimator", &[]);
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
        self.blocking(move || bcrypt::hash(input, cost).map_err(hashing))
            .await
    }

    /// Checks a new password against `policy` with the user's context `words` (see
    /// [`context_words`]), then hashes it: one job on the hashing pool, so neither the strength
    /// estimate nor bcrypt runs on an async worker.
    pub async fn hash_new(
        &self,
        password: &SecretString,
        policy: PasswordPolicy,
        field: &'static str,
        words: Vec<String>,
    ) -> Result<String, AuthError> {
        let password = password.clone();
        let cost = self.cost;
        self.blocking(move || {
            let text = password.expose_secret();
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            policy.check(text, field, &words)?;
            bcrypt::hash(prehash(text), cost).map_err(hashing)
        })
        .await
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
            .blocking(move || bcrypt::verify(input, &target).map_err(hashing))
            .await?;
        self.verifications.fetch_add(1, Ordering::Relaxed);
        Ok(matched && real)
    }

    /// Runs `work` on the hashing pool. A request that goes away before its turn costs nothing:
    /// queued work whose caller is gone is skipped.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, AuthError> + Send + 'static,
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
    }
}

#[expect(
    clippy::needless_pass_by_value,
    reason = "used as `map_err(hashing)`, which hands the error over"
)]
fn hashing(e: bcrypt::BcryptError) -> AuthError {
    AuthError::Hashing(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PasswordPolicy {
        PasswordPolicy { min_chars: 12 }
    }

    fn code(result: Result<(), AuthError>) -> String {
        match result {
            Ok(()) => "ok".to_owned(),
            Err(AuthError::Invalid(fields)) => fields[0].code.to_string(),
            Err(e) => format!("other: {e}"),
        }
    }

    /// A passphrase of unrelated words, `chars` characters long.
    fn passphrase(chars: usize) -> String {
        let words = [
            "orbit",
            "lantern",
            "quarry",
            "velvet",
            "juniper",
            "fathom",
            "cobalt",
            "meadow",
            "tundra",
            "saffron",
            "harbor",
            "pickle",
            "glacier",
            "nimbus",
            "walrus",
            "ember",
            "quiver",
            "basalt",
            "marzipan",
            "zephyr",
            "kettle",
            "obsidian",
            "plume",
            "wicket",
            "anchovy",
            "trellis",
            "gossamer",
            "hinterland",
            "mosaic",
            "sprocket",
            "lagoon",
            "bramble",
            "cinnabar",
            "dervish",
            "falconry",
            "gherkin",
            "isthmus",
            "jasmine",
            "kerosene",
            "lithograph",
            "monsoon",
            "nectarine",
            "opaline",
            "pewter",
            "rhubarb",
        ];
        words.join(" ").chars().take(chars).collect()
    }

    #[test]
    fn length_rules_count_characters() {
        let p = policy();
        assert_eq!(code(p.check("vX7#kq9!Lm2", "password", &[])), "too_short"); // 11
        assert_eq!(code(p.check("vX7#kq9!Lm2$", "password", &[])), "ok"); // 12
        for chars in [64, 128, 256] {
            assert_eq!(code(p.check(&passphrase(chars), "password", &[])), "ok");
        }
        assert_eq!(
            code(p.check("🔑🌲🐙🎻🦊🌵🍄🎲🪁🧭🪐🫖", "password", &[])),
            "ok",
            "12 emoji are 12 characters"
        );
        let long = passphrase(257);
        assert_eq!(long.chars().count(), 257);
        assert_eq!(code(p.check(&long, "password", &[])), "too_long");
    }

    #[test]
    fn common_passwords_and_the_address_are_refused() {
        let p = policy();
        for common in ["qwerty123456", "Password1234", "1q2w3e4r5t6y"] {
            assert_eq!(
                code(p.check(common, "password", &[])),
                "too_common",
                "{common}"
            );
        }
        let words = context_words(Some("alice@example.com"), &[]);
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        assert_eq!(
            code(p.check("Alice@Example.com", "password", &words)),
            "too_common"
        );
    }

    #[test]
    fn repetitive_sequential_and_keyboard_passwords_are_too_weak() {
        let p = policy();
        for weak in [
            "passwordpassword",
            "aaaaaaaaaaaa",
            "abcdefghijkl",
            "123456789012",
            "qwertyuiopas",
            "letmein12345",
            "xk9xk9xk9xk9xk9",
            "🔑🌲🐙🎻🔑🌲🐙🎻🔑🌲🐙🎻",
        ] {
            let result = p.check(weak, "password", &[]);
            assert_eq!(code(p.check(weak, "password", &[])), "too_weak", "{weak}");
            let Err(AuthError::Invalid(fields)) = result else {
                panic!("{weak} accepted");
            };
            assert!(
                fields[0].message.contains("passphrase"),
                "{}",
                fields[0].message
            );
        }
    }

    #[test]
    fn the_users_own_context_makes_a_password_weaker() {
        let p = policy();
        let candidate = "globex globex 2026";
        assert_eq!(code(p.check(candidate, "password", &[])), "ok");
        let words = context_words(Some("jo@globex.example"), &["Globex Corporation", "globex"]);
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        assert!(words.contains(&"globex"), "{words:?}");
        assert_eq!(code(p.check(candidate, "password", &words)), "too_weak");
    }

    #[tokio::test]
    async fn new_passwords_are_checked_and_hashed_in_one_job() {
        let hasher = PasswordHasher::new(4, 1).unwrap();
        let weak = SecretString::from("aaaaaaaaaaaa");
        let refused = hasher
            .hash_new(&weak, policy(), "password", Vec::new())
            .await;
        assert!(matches!(refused, Err(AuthError::Invalid(_))));
        let strong = SecretString::from(passphrase(40));
        let hash = hasher
            .hash_new(&strong, policy(), "password", Vec::new())
            .await
            .unwrap();
        assert!(hasher.verify(&strong, Some(&hash)).await.unwrap());
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
