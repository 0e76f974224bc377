//! Texts per second of the local embedder: `embed_time MODEL_DIR [THREADS] [BATCH]`.
//! Prints `texts_per_sec=N` (used by `cargo xtask bench vector` and for tuning).

use std::time::Instant;

use sovereign_vector::LocalEmbedder;

#[expect(clippy::print_stdout, reason = "a measuring tool")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or("usage: embed_time MODEL_DIR [THREADS] [BATCH]")?;
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let threads = args.next().map_or(Ok(cpus), |t| t.parse())?;
    let batch = args.next().map_or(Ok(32), |b| b.parse())?;
    let embedder = LocalEmbedder::load(std::path::Path::new(&dir), threads, batch)?;
    let texts = sample_texts(512);
    embedder.embed_blocking(&texts[..16])?;
    let started = Instant::now();
    embedder.embed_blocking(&texts)?;
    #[expect(clippy::cast_precision_loss, reason = "a rate")]
    let rate = texts.len() as f64 / started.elapsed().as_secs_f64();
    println!("threads={threads} batch={batch} texts_per_sec={rate:.0}");
    Ok(())
}

/// Sentences of 4 to 43 words, deterministic.
fn sample_texts(n: usize) -> Vec<String> {
    let words = [
        "search",
        "vector",
        "tenant",
        "password",
        "database",
        "index",
        "query",
        "server",
        "quickly",
        "the",
        "a",
        "of",
        "and",
        "returns",
        "nearest",
        "neighbours",
        "for",
        "every",
        "user",
        "request",
    ];
    (0..n)
        .map(|i| {
            (0..(4 + (i * 7) % 40))
                .map(|j| words[(i * 31 + j * 17) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}
