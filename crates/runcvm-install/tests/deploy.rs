//! deploy/ cannot be applied here (no Kubernetes, no image builder), so its
//! files are checked as text: the YAML parses (PyYAML turns it into JSON)
//! and says what install and the runtime expect.

#![allow(clippy::unwrap_used)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// Every document of a YAML file, as JSON.
fn yaml(name: &str) -> Vec<Value> {
    const TO_JSON: &str = "import json, sys, yaml\nprint(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))";
    let path = deploy().join(name);
    for python in ["python3", "/usr/bin/python3"] {
        let Ok(output) = Command::new(python).args(["-c", TO_JSON]).arg(&path).output() else {
            continue;
        };
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.success() {
            return serde_json::from_slice(&output.stdout).unwrap();
        }
        assert!(
            stderr.contains("No module named 'yaml'"),
            "{} is not valid YAML: {stderr}",
            path.display()
        );
    }
    panic!("cannot check {name}: no python3 with PyYAML (apt-get install python3-yaml)");
}

#[test]
fn the_runtime_class_names_the_installed_handler() {
    let docs = yaml("runtimeclass.yaml");
    assert_eq!(docs.len(), 1);
    let class = &docs[0];
    assert_eq!(class["apiVersion"], "node.k8s.io/v1");
    assert_eq!(class["kind"], "RuntimeClass");
    assert_eq!(class["metadata"]["name"], "runcvm");
    assert_eq!(class["handler"], runcvm_install::HANDLER);
    // The scheduler is told what runcvm-runtime adds to each container's limit.
    let overhead = format!("{}Mi", runcvm::resources::MEMORY_OVERHEAD_MIB);
    assert_eq!(class["overhead"]["podFixed"]["memory"], overhead.as_str());
    assert_eq!(class["overhead"]["podFixed"]["cpu"], "250m");
}

#[test]
fn the_daemon_set_installs_with_the_nodes_paths_and_restarts_containerd() {
    let docs = yaml("daemonset.yaml");
    assert_eq!(docs.len(), 1);
    let set = &docs[0];
    assert_eq!(
        (&set["apiVersion"], &set["kind"]),
        (&"apps/v1".into(), &"DaemonSet".into())
    );
    assert_eq!(set["metadata"]["namespace"], "kube-system");
    let template = &set["spec"]["template"];
    assert_eq!(set["spec"]["selector"]["matchLabels"], template["metadata"]["labels"]);
    let pod = &template["spec"];
    assert_eq!(pod["hostPID"], true);
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    assert_eq!(container["securityContext"]["privileged"], true);

    let volumes: Vec<(String, String)> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap().into(),
                v["hostPath"]["path"].as_str().unwrap().into(),
            )
        })
        .collect();
    let mounts: Vec<(String, String)> = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().into(),
                m["mountPath"].as_str().unwrap().into(),
            )
        })
        .collect();
    // Each node folder is mounted at /host + its own path.
    for (name, host_path) in &volumes {
        let mounted = mounts.iter().find(|(n, _)| n == name).map(|(_, p)| p.as_str());
        assert_eq!(mounted, Some(format!("/host{host_path}").as_str()), "{name}");
    }
    let host_paths: Vec<&str> = volumes.iter().map(|(_, p)| p.as_str()).collect();
    assert!(host_paths.contains(&runcvm_install::DEFAULT_ROOT));
    assert!(host_paths.contains(&"/etc/containerd"));

    let script = container["args"][0].as_str().unwrap();
    assert!(
        script.contains(
            "/opt/runcvm/bin/runcvm install --root /host/opt/runcvm --containerd-config \"$config\" --host-root-prefix /host"
        ),
        "{script}"
    );
    assert!(script.contains("config=/host/etc/containerd/config.toml"), "{script}");
    assert!(
        script.contains("nsenter -t 1 -m -u -i -n -p -- systemctl restart containerd"),
        "{script}"
    );
    assert!(script.contains("sleep infinity"), "{script}");
    let syntax = Command::new("sh").args(["-n", "-c", script]).output().unwrap();
    assert!(syntax.status.success(), "{}", String::from_utf8_lossy(&syntax.stderr));
}

#[test]
fn the_containerfile_puts_binaries_and_kernel_where_install_takes_them() {
    let text = std::fs::read_to_string(deploy().join("Containerfile")).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(lines.first().copied(), Some("FROM debian:12"));
    let joined = lines.join("\n");
    assert!(
        joined.contains("apt-get install -y --no-install-recommends qemu-system-x86 e2fsprogs"),
        "{joined}"
    );
    let copy_bin = format!("COPY {} /opt/runcvm/bin/", runcvm_install::BINARIES.join(" "));
    assert!(joined.contains(&copy_bin), "{joined}");
    assert!(
        joined.contains(&format!("COPY vmlinux {}", runcvm_install::DEFAULT_KERNEL)),
        "{joined}"
    );
}

#[test]
fn the_readme_says_what_cannot_be_checked_here() {
    let text = std::fs::read_to_string(deploy().join("README.md")).unwrap();
    assert!(text.contains("not been built or applied"), "{text}");
}
