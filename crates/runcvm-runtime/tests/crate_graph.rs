//! The runtime sits on host preparation, never on the launcher: it links
//! neither `runcvm` (the launcher) nor what only the launcher needs (the
//! pod network, the volume server, the installer). Reads the workspace's
//! manifests and follows their normal dependencies.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;

/// The workspace crates `name` depends on at run time (`[dependencies]`).
fn dependencies(crates: &Path, name: &str) -> Vec<String> {
    let folder = match name {
        "runcvm-test-infra" => "test_infra".to_owned(),
        "runcvm-test-node" => "test_node".to_owned(),
        other => other.to_owned(),
    };
    let manifest = std::fs::read_to_string(crates.join(folder).join("Cargo.toml")).unwrap();
    let mut section = "";
    let mut found = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
            continue;
        }
        if section == "[dependencies]" {
            let dependency = line.split(['.', ' ', '=']).next().unwrap_or("");
            if dependency.starts_with("runcvm") {
                found.push(dependency.to_owned());
            }
        }
    }
    found
}

#[test]
fn the_runtime_does_not_link_the_launcher() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut linked = BTreeSet::new();
    let mut next = vec!["runcvm-runtime".to_owned()];
    while let Some(name) = next.pop() {
        for dependency in dependencies(crates, &name) {
            if linked.insert(dependency.clone()) {
                next.push(dependency);
            }
        }
    }
    assert!(
        linked.contains("runcvm-host"),
        "the manifests were not read: {linked:?}"
    );
    for launcher_only in ["runcvm", "runcvm-net", "runcvm-nfs", "runcvm-install"] {
        assert!(
            !linked.contains(launcher_only),
            "runcvm-runtime links {launcher_only}: {linked:?}"
        );
    }
}
