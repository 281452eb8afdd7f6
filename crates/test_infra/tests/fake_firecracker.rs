//! The test double of Firecracker refuses what Firecracker refuses. (Being
//! an integration test of this package, it also makes `cargo test` build the
//! `fake-firecracker` binary that `runcvm`'s host-side tests use.)

use std::process::Command;

#[test]
fn unknown_arguments_and_a_missing_config_are_refused_as_firecracker_does() {
    let fake = env!("CARGO_BIN_EXE_fake-firecracker");
    let out = Command::new(fake).arg("--no-such-flag").output().expect("run the fake");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("Error: "), "{out:?}");
    let out = Command::new(fake)
        .args([
            "--config-file",
            "/nonexistent/config.json",
            "--api-sock",
            "/nonexistent/api.sock",
        ])
        .output()
        .expect("run the fake");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("Error: "), "{out:?}");
}
