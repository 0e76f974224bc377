//! How long one password verification takes at a bcrypt cost (default 12), in this build:
//! `cargo run --release -p sovereign-auth --example hash_time [COST] [ROUNDS]`.
//! `cargo xtask bench auth` uses it to compute the login limit (cores ÷ hash time).

use std::time::Instant;

use secrecy::SecretString;
use sovereign_auth::{AuthError, PasswordHasher};

#[tokio::main]
async fn main() -> Result<(), AuthError> {
    let mut args = std::env::args().skip(1);
    let cost = args.next().and_then(|a| a.parse().ok()).unwrap_or(12);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let hasher = PasswordHasher::new(cost, 1)?;
    let password = SecretString::from("correct horse battery staple");
    let hash = hasher.hash(&password).await?;
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        assert!(hasher.verify(&password, Some(&hash)).await?);
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    // One line, machine-readable: cost and median milliseconds.
    println!("cost={cost} median_ms={:.1}", times[times.len() / 2]);
    Ok(())
}
