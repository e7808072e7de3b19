//! The deployment files run for real: `deploy/test.sh` builds the runtime image around this
//! build's binary, runs it alone on the host's PostgreSQL, then runs `deploy/compose.yaml` with
//! three replicas, and checks both from outside (see the script for every check). Skipped, with
//! a note, where podman is not installed; ignored without `TOKENMINT_TEST_DATABASE_URL`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::Command;

#[test]
#[cfg_attr(
    not(tokenmint_postgres_tests),
    ignore = "needs TOKENMINT_TEST_DATABASE_URL"
)]
fn the_image_and_the_compose_file_run_and_pass_their_checks() {
    if Command::new("podman").arg("--version").output().is_err() {
        // Written straight to stderr: the test harness does not capture this.
        let _ = writeln!(
            std::io::stderr(),
            "\nNOTE: deploy test SKIPPED: podman is not installed (apt-get install -y podman runc debootstrap; pip install podman-compose).\n"
        );
        return;
    }
    let database = std::env::var("TOKENMINT_TEST_DATABASE_URL").unwrap();
    // The script makes its own databases beside the one named here.
    let server = database
        .split_once("://")
        .map(|(scheme, rest)| format!("{scheme}://{}", rest.split('/').next().unwrap_or(rest)))
        .unwrap();
    let output = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/test.sh"))
        .arg(env!("CARGO_BIN_EXE_tokenmint"))
        .env("PGURL", &server)
        .output()
        .expect("run deploy/test.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "deploy/test.sh failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(stdout.contains("PASS"), "{stdout}");
    let _ = writeln!(std::io::stderr(), "\ndeploy/test.sh:\n{stdout}");
}
