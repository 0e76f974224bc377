//! Python tools the test suite uses as independent peers: PyJWT (verifies our tokens from the
//! JWKS document, as another service would) and aiosmtpd (a real SMTP server for the mailer).
//! They live in a project-local virtual environment, `.sovereign/venv`, made on first use.

use std::path::PathBuf;

use crate::run;

/// Pinned so a registry change cannot change what the tests exercise.
const PACKAGES: &[&str] = &["pyjwt[crypto]==2.10.1", "aiosmtpd==1.4.6"];
const PROBE: &str = "import jwt, cryptography, aiosmtpd";

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
    run::run(
        run::cmd(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(PACKAGES),
    )?;
    run::run(run::cmd(&python).args(["-c", PROBE]))?;
    Ok(python)
}
