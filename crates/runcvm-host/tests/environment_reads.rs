//! Settings are read from the environment once per binary, in its
//! settings module (or `main`), and passed down as plain values: no library
//! code reads `RUNCVM_*` (or anything but `PATH`) deep inside. This is what
//! keeps the split between what a pod may set and what only the node may
//! in one table per binary. Reads every crate's sources and fails on an
//! environment read anywhere else (logging's `RUNCVM_LOG_LEVEL` aside).

#![allow(clippy::unwrap_used)]

use std::path::Path;

fn sources(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn only_settings_modules_read_the_environment() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(crates).unwrap() {
        let krate = entry.unwrap().path();
        let name = krate.file_name().unwrap().to_string_lossy().into_owned();
        // The test harnesses configure tests, not runcvm.
        if name == "test_infra" || name == "test_node" || name == "runcvm-log" {
            continue;
        }
        if krate.join("src").is_dir() {
            sources(&krate.join("src"), &mut files);
        }
    }
    assert!(files.len() > 50, "the sources were not found");
    let mut offenders = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy();
        if name == "settings.rs" || name == "main.rs" {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        for (number, line) in text.lines().enumerate() {
            let reads = ["env::var(", "env::var_os(", "env::vars(", "env::vars_os("]
                .iter()
                .any(|call| line.contains(call));
            if reads && !line.contains("\"PATH\"") && !line.trim_start().starts_with("//") {
                offenders.push(format!("{}:{}: {}", file.display(), number + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "environment reads outside a binary's settings module:\n{}",
        offenders.join("\n")
    );
}
