//! containerd itself reads what install writes: `containerd --config FILE
//! config dump` (no daemon, no root) shows the merged config. After install
//! it holds the runcvm runtime and every setting it held before, unchanged.
//!
//! It also pins the containerd 1.x behaviour that rules out a drop-in file
//! named by `imports`: an imported file replaces whole plugin sections.

#![allow(clippy::unwrap_used)]

use runcvm_install::{InstallOptions, UninstallOptions};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const RUNTIMES: &str = "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes";
const RUNCVM_TABLE: &str = "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runcvm";

fn containerd() -> PathBuf {
    ["/usr/bin/containerd", "/usr/local/bin/containerd"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
        .expect(
            "containerd not found in /usr/bin or /usr/local/bin: apt-get install containerd (scripts/setup-host.sh)",
        )
}

/// The merged config containerd would run with, by table header.
fn dump(config: &Path) -> BTreeMap<String, Vec<String>> {
    let output = Command::new(containerd())
        .arg("--config")
        .arg(config)
        .args(["config", "dump"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "containerd config dump {}: {}",
        config.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut tables = BTreeMap::new();
    let mut header = String::new();
    for line in stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with('[') {
            header = line.to_owned();
            tables.entry(header.clone()).or_insert_with(Vec::new);
        } else if !line.starts_with("imports = ") {
            tables
                .entry(header.clone())
                .or_insert_with(Vec::new)
                .push(line.to_owned());
        }
    }
    tables
}

fn install_options(work: &Path, config: PathBuf) -> InstallOptions {
    let bin = work.join("build");
    std::fs::create_dir_all(&bin).unwrap();
    for name in runcvm_install::BINARIES {
        std::fs::write(bin.join(name), b"fake").unwrap();
    }
    let kernel = work.join("vmlinux");
    std::fs::write(&kernel, b"\x7fELF fake").unwrap();
    InstallOptions {
        root: work.join("opt/runcvm"),
        containerd_config: config,
        binaries_from: Some(bin),
        kernel,
        ..InstallOptions::default()
    }
}

const KUBEADM_STYLE: &str = "version = 2\n\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    restrict_oom_score_adj = true\n    sandbox_image = \"registry.k8s.io/pause:3.9\"\n    [plugins.\"io.containerd.grpc.v1.cri\".cni]\n      bin_dir = \"/usr/lib/cni\"\n    [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n      runtime_type = \"io.containerd.runc.v2\"\n      [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n        SystemdCgroup = true\n";

#[test]
fn containerd_sees_the_handler_and_every_setting_it_had() {
    let cases = [
        ("kubeadm-style", Some(KUBEADM_STYLE.to_owned())),
        (
            "debian",
            Some("version = 2\n\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    [plugins.\"io.containerd.grpc.v1.cri\".cni]\n      bin_dir = \"/usr/lib/cni\"\n      conf_dir = \"/etc/cni/net.d\"\n  [plugins.\"io.containerd.internal.v1.opt\"]\n    path = \"/var/lib/containerd/opt\"\n".to_owned()),
        ),
        ("crlf-version-1", Some("# old style\r\n[plugins.cri]\r\n  restrict_oom_score_adj = true".to_owned())),
        ("missing", None),
    ];
    for (name, text) in cases {
        let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let config = work.path().join("etc/containerd/config.toml");
        std::fs::create_dir_all(config.parent().unwrap()).unwrap();
        let empty = work.path().join("empty.toml");
        std::fs::write(&empty, "").unwrap();
        if let Some(text) = &text {
            std::fs::write(&config, text).unwrap();
        }
        let mut before = dump(if text.is_some() { &config } else { &empty });
        let options = install_options(work.path(), config.clone());
        let report = runcvm_install::install(&options).unwrap();

        let mut after = dump(&config);
        let options_table = format!("{RUNCVM_TABLE}.options]");
        let runtime = after.get(&format!("{RUNCVM_TABLE}]")).cloned().unwrap_or_default();
        let binary = after.get(&options_table).cloned().unwrap_or_default();
        assert!(
            runtime.contains(&"runtime_type = \"io.containerd.runc.v2\"".to_owned()),
            "{name}: {runtime:?}"
        );
        let expected = format!("BinaryName = \"{}\"", options.root.join("bin/runcvm-runtime").display());
        assert!(binary.contains(&expected), "{name}: {binary:?}");
        assert_eq!(
            binary.contains(&"SystemdCgroup = true".to_owned()),
            name == "kubeadm-style",
            "{name}: {binary:?}"
        );
        assert_eq!(report.containerd.systemd_cgroup, name == "kubeadm-style");
        after.retain(|header, _| !header.starts_with(RUNCVM_TABLE));
        // A restated runc has no options where containerd's built-in one has
        // all of them at their zero values: the same runtime.
        assert_eq!(report.containerd.restated_runc, name != "kubeadm-style", "{name}");
        if report.containerd.restated_runc {
            let runc_options = format!("{RUNTIMES}.runc.options]");
            let zero =
                |line: &String| line.ends_with(" = \"\"") || line.ends_with(" = 0") || line.ends_with(" = false");
            assert!(
                before[&runc_options].iter().all(zero),
                "{name}: {:?}",
                before[&runc_options]
            );
            assert_eq!(after[&runc_options], Vec::<String>::new(), "{name}");
            before.remove(&runc_options);
            after.remove(&runc_options);
        }
        assert_eq!(after, before, "{name}: only the runcvm runtime is new");

        runcvm_install::uninstall(&UninstallOptions {
            root: options.root.clone(),
            host_root_prefix: None,
        })
        .unwrap();
        match &text {
            Some(text) => assert_eq!(std::fs::read_to_string(&config).unwrap(), *text, "{name}"),
            None => assert!(!config.exists(), "{name}"),
        }
    }
}

/// If this fails, containerd merges imported plugin sections (as 2.0 does)
/// and a drop-in would work: see docs/install.md.
#[test]
fn a_drop_in_would_reset_the_cri_settings_of_the_main_config() {
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let drop_in = work.path().join("runcvm.toml");
    std::fs::write(
        &drop_in,
        format!(
            "version = 2\n{RUNCVM_TABLE}]\n  runtime_type = \"io.containerd.runc.v2\"\n{RUNCVM_TABLE}.options]\n  BinaryName = \"/opt/runcvm/bin/runcvm-runtime\"\n"
        ),
    )
    .unwrap();
    let config = work.path().join("config.toml");
    std::fs::write(
        &config,
        KUBEADM_STYLE.replacen(
            "version = 2\n",
            &format!("version = 2\nimports = [\"{}\"]\n", drop_in.display()),
            1,
        ),
    )
    .unwrap();
    let merged = dump(&config);
    let cri = &merged["[plugins.\"io.containerd.grpc.v1.cri\"]"];
    assert!(merged.contains_key(&format!("{RUNCVM_TABLE}]")));
    assert!(
        cri.contains(&"restrict_oom_score_adj = false".to_owned()),
        "containerd kept the main file's CRI settings: {cri:?}"
    );
}
