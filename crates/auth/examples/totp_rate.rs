//! TOTP verifications per second on one core, as the server checks a code (RFC 6238, SHA-1,
//! 6 digits, 30 s; the previous, current and next step — three HMACs when the code is of the
//! next step, the worst case), beside SHA-256 digests of an opaque token (what every request
//! with a refresh token or API key already computes on the async workers):
//! `cargo run --release -p sovereign-auth --example totp_rate [SECONDS]`.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use totp_rs::{Algorithm, TOTP};

fn rate(seconds: f64, mut work: impl FnMut() -> bool) -> f64 {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut done = 0u64;
    while Instant::now() < deadline {
        for _ in 0..1000 {
            assert!(work());
        }
        done += 1000;
    }
    done as f64 / started.elapsed().as_secs_f64()
}

fn main() -> Result<(), totp_rs::TotpUrlError> {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3.0);
    let secret: Vec<u8> = (0u8..20)
        .map(|b| b.wrapping_mul(37).wrapping_add(11))
        .collect();
    let totp = TOTP::new(
        Algorithm::SHA1,
        6,
        0,
        30,
        secret,
        Some("sovereign".to_owned()),
        "bench@example.com".to_owned(),
    )?;
    let step: u64 = 60_000_000;
    let code = totp.generate(step * 30);
    // The server tries the previous, the current and the next step; this code is of the next.
    let totp_rate = rate(seconds, || {
        [step - 2, step - 1, step]
            .iter()
            .any(|s| totp.check(std::hint::black_box(&code), s * 30))
    });
    let token = "sovrt_0000000000000000000000000000001_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ";
    let digest_rate = rate(seconds, || {
        std::hint::black_box(Sha256::digest(std::hint::black_box(token.as_bytes())));
        true
    });
    // One line, machine-readable.
    println!(
        "totp_verifications_per_second={totp_rate:.0} sha256_digests_per_second={digest_rate:.0} ratio={:.3}",
        totp_rate / digest_rate
    );
    Ok(())
}
