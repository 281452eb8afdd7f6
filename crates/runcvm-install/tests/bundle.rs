//! Installs into a temporary root from small fake runcvm binaries and the
//! host's real QEMU, then runs the bundled QEMU the way runcvm does: through
//! its loader, with an empty environment but `QEMU_MODULE_DIR`.
//!
//! The root test (`--ignored`) runs the bundle chrooted into a busybox
//! rootfs, with the root bind-mounted at /opt/runcvm in a private mount
//! namespace, and boots the real guest kernel to its first console line:
//! proof that the bundle needs nothing from the host's /lib or /usr/share
//! (on the host, QEMU would fall back to its built-in firmware and module
//! folders).

#![allow(clippy::unwrap_used)]

use runcvm_install::settings::{HypervisorSetting, NodeSettings, SETTINGS_FILE};
use runcvm_install::{
    BundledQemu, ConfigVersion, DropInRemoved, FileChange, InstallOptions, InstallReport, MANIFEST_NAME, Registration,
    UninstallOptions, Unregistered,
};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const REAL_KERNEL: &str = "/opt/runcvm/kernel/vmlinux";

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// Small stand-ins for the three runcvm binaries and the kernel.
fn fake_sources(dir: &Path) -> (PathBuf, PathBuf) {
    let bin = dir.join("build");
    std::fs::create_dir_all(&bin).unwrap();
    for name in runcvm_install::BINARIES {
        std::fs::write(bin.join(name), format!("#!/bin/sh\necho {name}\n")).unwrap();
    }
    let kernel = dir.join("vmlinux");
    std::fs::write(&kernel, b"\x7fELF\x02\x01\x01 not really a kernel").unwrap();
    (bin, kernel)
}

fn test_options(work: &Path, kernel: Option<&Path>) -> InstallOptions {
    let (bin, fake_kernel) = fake_sources(work);
    InstallOptions {
        root: work.join("opt/runcvm"),
        containerd_config: work.join("etc/containerd/config.toml"),
        binaries_from: Some(bin),
        kernel: kernel.map_or(fake_kernel, Path::to_owned),
        ..InstallOptions::default()
    }
}

/// Runs the bundled QEMU with `args`, an empty environment but
/// `QEMU_MODULE_DIR`, and `stdin` as its input.
fn run_bundled(root: &Path, args: &[&str], stdin: &str) -> Output {
    let bundle = BundledQemu::at(root).expect("a complete bundle");
    let prefix = bundle.command_prefix();
    let mut child = Command::new(&prefix.program)
        .args(&prefix.args)
        .args(args)
        .env_clear()
        .envs(prefix.env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

#[test]
fn a_tempdir_install_runs_qemu_through_its_loader_and_uninstalls_cleanly() {
    let work = scratch();
    let options = test_options(work.path(), None);
    let root = options.root.clone();
    let report: InstallReport = runcvm_install::install(&options).unwrap();
    println!("{report}");

    // The layout.
    for name in runcvm_install::BINARIES {
        assert!(root.join("bin").join(name).is_file(), "{name}");
    }
    assert!(root.join("kernel/vmlinux").is_file());
    // The node's settings: root's alone, the defaults without flags.
    let settings_file = root.join(SETTINGS_FILE);
    let mode = std::fs::metadata(&settings_file).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600);
    assert_eq!(NodeSettings::read(&root).unwrap(), NodeSettings::default());
    let bundle = BundledQemu::at(&root).expect("the bundle is complete");
    assert!(bundle.module_dir.join(runcvm_install::TCG_MODULE).is_file());
    for name in runcvm_install::FIRMWARE {
        assert!(bundle.firmware_dir.join(name).is_file(), "{name}");
    }
    let libraries = std::fs::read_dir(&bundle.library_path).unwrap().count();
    assert_eq!(libraries, report.qemu.libraries + 1, "the libraries and the loader");
    assert!(report.qemu.libraries > 20, "{}", report.qemu.libraries);
    assert!(
        report.qemu.version.starts_with("QEMU emulator version"),
        "{}",
        report.qemu.version
    );
    assert!(report.files.iter().all(|f| f.change == FileChange::Created));
    assert_eq!(report.containerd.registration, Registration::Added);
    assert!(report.containerd.created);
    let config = std::fs::read_to_string(&options.containerd_config).unwrap();
    assert!(config.starts_with("version = 2\n"), "{config}");
    let binary_name = format!("BinaryName = \"{}\"", root.join("bin/runcvm-runtime").display());
    assert!(config.contains(&binary_name), "{config}");
    assert!(report.to_string().contains("systemctl restart containerd"));

    // The bundle runs with nothing from the environment.
    let version = run_bundled(&root, &["-version"], "");
    assert!(version.status.success(), "{}", text(&version.stderr));
    assert!(text(&version.stdout).starts_with("QEMU emulator version"));

    // TCG and microvm: the only complaint is the kernel that is not there.
    let no_kernel = run_bundled(
        &root,
        &[
            "-M",
            "microvm,acpi=off",
            "-accel",
            "tcg",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-kernel",
            "/nonexistent",
        ],
        "",
    );
    let stderr = text(&no_kernel.stderr);
    assert!(!no_kernel.status.success());
    assert_eq!(
        stderr.trim(),
        "qemu: could not open kernel file '/nonexistent': No such file or directory",
        "{stderr}"
    );

    // The firmware is loaded: the monitor lists microvm's BIOS.
    let monitor = run_bundled(
        &root,
        &[
            "-M",
            "microvm,acpi=off,x-option-roms=off",
            "-accel",
            "tcg",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-monitor",
            "stdio",
        ],
        "info roms\nquit\n",
    );
    assert!(monitor.status.success(), "{}", text(&monitor.stderr));
    assert!(
        text(&monitor.stdout).contains("name=\"qboot.rom\""),
        "{}",
        text(&monitor.stdout)
    );

    // A second install changes nothing.
    let again = runcvm_install::install(&options).unwrap();
    assert!(!again.changed(), "{again}");
    assert!(
        again.to_string().starts_with("runcvm is already installed in"),
        "{again}"
    );
    assert_eq!(std::fs::read_to_string(&options.containerd_config).unwrap(), config);

    // Other flags rewrite the settings, and only them.
    let settings = NodeSettings {
        hypervisor: HypervisorSetting::Qemu,
        kernel_args: vec!["loglevel=4".into()],
        vmm_user: runcvm_spec::VmmUser { uid: 70000, gid: 70001 },
    };
    let reconfigured = runcvm_install::install(&InstallOptions {
        settings: settings.clone(),
        ..options.clone()
    })
    .unwrap();
    let changed: Vec<_> = reconfigured
        .files
        .iter()
        .filter(|f| f.change != FileChange::Unchanged)
        .map(|f| (f.path.clone(), f.change))
        .collect();
    assert_eq!(changed, [(settings_file.clone(), FileChange::Updated)]);
    assert_eq!(NodeSettings::read(&root).unwrap(), settings);
    let bad = InstallOptions {
        settings: NodeSettings {
            kernel_args: vec!["init=/bin/sh".into()],
            ..NodeSettings::default()
        },
        ..options.clone()
    };
    let err = runcvm_install::install(&bad).unwrap_err();
    assert!(
        runcvm::error_chain(&err).contains("would replace runcvm's init"),
        "{err}"
    );
    assert_eq!(NodeSettings::read(&root).unwrap(), settings);

    // Uninstall removes all of it, the config it created included.
    let removed = runcvm_install::uninstall(&UninstallOptions {
        root: root.clone(),
        host_root_prefix: None,
    })
    .unwrap();
    println!("{removed}");
    assert_eq!(removed.containerd.as_ref().unwrap().outcome, Unregistered::Deleted);
    assert!(removed.kept_files.is_empty() && removed.missing_files.is_empty());
    assert!(!work.path().join("opt").exists(), "{:?}", files_under(work.path()));
    assert!(!work.path().join("etc").exists());
}

#[test]
fn an_existing_config_and_kernel_survive_install_and_uninstall_byte_for_byte() {
    let work = scratch();
    let options = test_options(work.path(), None);
    let root = options.root.clone();
    // Like a node where kernel/build.sh ran and containerd is configured.
    std::fs::create_dir_all(root.join("kernel")).unwrap();
    let kernel = root.join("kernel/vmlinux");
    std::fs::copy(&options.kernel, &kernel).unwrap();
    let config_text = "# node config\r\nversion = 2\r\n\r\n[plugins.\"io.containerd.grpc.v1.cri\"]\r\n  restrict_oom_score_adj = true\r\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\r\n  SystemdCgroup = true\r\n";
    std::fs::create_dir_all(options.containerd_config.parent().unwrap()).unwrap();
    std::fs::write(&options.containerd_config, config_text).unwrap();
    let options = InstallOptions {
        kernel: kernel.clone(),
        ..options
    };

    let report = runcvm_install::install(&options).unwrap();
    assert!(report.containerd.systemd_cgroup);
    let kernel_entry = report.files.iter().find(|f| f.path == kernel).unwrap();
    assert_eq!(
        kernel_entry.change,
        FileChange::Unchanged,
        "the same file is left alone"
    );
    let installed = std::fs::read_to_string(&options.containerd_config).unwrap();
    assert!(installed.starts_with(config_text));
    assert!(
        installed.ends_with("  SystemdCgroup = true\r\n# runcvm: end\r\n"),
        "{installed:?}"
    );
    let manifest = std::fs::read_to_string(root.join(MANIFEST_NAME)).unwrap();
    assert!(!manifest.contains("vmlinux"), "the kernel was there before: {manifest}");

    let removed = runcvm_install::uninstall(&UninstallOptions {
        root: root.clone(),
        host_root_prefix: None,
    })
    .unwrap();
    assert_eq!(removed.containerd.unwrap().outcome, Unregistered::Restored);
    assert_eq!(
        std::fs::read(&options.containerd_config).unwrap(),
        config_text.as_bytes()
    );
    assert_eq!(files_under(&root), [kernel], "only the kernel is left");
}

#[test]
fn the_installer_pod_writes_the_nodes_paths() {
    let work = scratch();
    let host = work.path().join("host");
    let base = test_options(work.path(), None);
    let options = InstallOptions {
        root: host.join("opt/runcvm"),
        containerd_config: host.join("etc/containerd/config.toml"),
        host_root_prefix: Some(host.clone()),
        ..base
    };
    let report = runcvm_install::install(&options).unwrap();
    assert_eq!(report.containerd.binary_name, "/opt/runcvm/bin/runcvm-runtime");
    let config = std::fs::read_to_string(&options.containerd_config).unwrap();
    assert!(
        config.contains("BinaryName = \"/opt/runcvm/bin/runcvm-runtime\""),
        "{config}"
    );
    let manifest = std::fs::read_to_string(options.root.join(MANIFEST_NAME)).unwrap();
    assert!(manifest.contains("\"/opt/runcvm/bin/runcvm\""), "{manifest}");
    assert!(!manifest.contains(host.to_str().unwrap()), "{manifest}");

    let outside = runcvm_install::install(&InstallOptions {
        root: work.path().join("elsewhere"),
        ..options.clone()
    })
    .unwrap_err();
    assert!(
        outside.to_string().contains("not under the host root prefix"),
        "{outside}"
    );

    runcvm_install::uninstall(&UninstallOptions {
        root: options.root.clone(),
        host_root_prefix: Some(host.clone()),
    })
    .unwrap();
    assert!(!host.join("opt").exists() && !host.join("etc").exists());
}

/// A containerd 2.2-style main config: version 3, importing conf.d.
const V3_CONF_D: &str = "version = 3\r\nimports = [\"conf.d/*.toml\"]\r\n\r\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]\r\n  SystemdCgroup = true\r\n";

#[test]
fn a_containerd_2_config_importing_conf_d_gets_a_drop_in_that_uninstall_removes() {
    let work = scratch();
    let options = test_options(work.path(), None);
    let config = options.containerd_config.clone();
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, V3_CONF_D).unwrap();
    let drop_in = config.parent().unwrap().join("conf.d/runcvm.toml");

    let report = runcvm_install::install(&options).unwrap();
    println!("{report}");
    let c = &report.containerd;
    assert_eq!(
        (c.registration, c.drop_in, c.file.as_path()),
        (Registration::Added, true, drop_in.as_path())
    );
    assert_eq!(c.version, ConfigVersion::V3);
    assert!(c.systemd_cgroup && !c.restated_runc);
    let shown = report.to_string();
    assert!(
        shown.contains(&format!(
            "containerd: wrote {} registering handler runcvm (config version 3, for containerd 2.x;",
            drop_in.display()
        )),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("{} imports it and was not changed", config.display())),
        "{shown}"
    );
    assert_eq!(
        std::fs::read(&config).unwrap(),
        V3_CONF_D.as_bytes(),
        "the main config is untouched"
    );
    let written = std::fs::read_to_string(&drop_in).unwrap();
    assert!(written.contains("\nversion = 3\n"), "{written}");
    let binary_name = format!("BinaryName = \"{}\"", options.root.join("bin/runcvm-runtime").display());
    assert!(written.contains(&binary_name), "{written}");
    let manifest = std::fs::read_to_string(options.root.join(MANIFEST_NAME)).unwrap();
    assert!(
        manifest.contains("\"format\": 2") && manifest.contains("containerd_drop_in"),
        "{manifest}"
    );

    // A second install changes nothing.
    let again = runcvm_install::install(&options).unwrap();
    assert!(!again.changed(), "{again}");
    assert!(again.to_string().contains(&format!(
        "already registered in {} (config version 3, for containerd 2.x)",
        drop_in.display()
    )));

    // Uninstall removes the drop-in and the conf.d it created, and only that.
    let removed = runcvm_install::uninstall(&UninstallOptions {
        root: options.root.clone(),
        host_root_prefix: None,
    })
    .unwrap();
    println!("{removed}");
    assert_eq!(removed.containerd, None);
    assert_eq!(removed.drop_in.as_ref().unwrap().outcome, DropInRemoved::Removed);
    assert!(removed.to_string().contains("systemctl restart containerd"));
    assert!(!drop_in.parent().unwrap().exists());
    assert_eq!(std::fs::read(&config).unwrap(), V3_CONF_D.as_bytes());
    assert_eq!(files_under(config.parent().unwrap()), [config]);
}

#[test]
fn a_containerd_2_config_without_imports_gets_the_block_and_back_its_bytes() {
    let work = scratch();
    let options = test_options(work.path(), None);
    let config = options.containerd_config.clone();
    let text = "version = 3\n\n[plugins.'io.containerd.cri.v1.runtime'.containerd]\n  default_runtime_name = 'runc'\n";
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, text).unwrap();
    let report = runcvm_install::install(&options).unwrap();
    assert!(!report.containerd.drop_in && !report.containerd.restated_runc);
    assert!(
        report.to_string().contains(&format!(
            "registered handler runcvm in {} (config version 3, for containerd 2.x;",
            config.display()
        )),
        "{report}"
    );
    let installed = std::fs::read_to_string(&config).unwrap();
    assert!(installed.starts_with(text));
    assert!(
        installed.contains("[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.runcvm]"),
        "{installed}"
    );
    // An existing conf.d is not used unless the config imports it.
    assert!(!config.parent().unwrap().join("conf.d").exists());
    let removed = runcvm_install::uninstall(&UninstallOptions {
        root: options.root.clone(),
        host_root_prefix: None,
    })
    .unwrap();
    assert_eq!(removed.containerd.unwrap().outcome, Unregistered::Restored);
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text);
}

#[test]
fn the_installer_pod_writes_the_drop_in_at_the_nodes_path() {
    let work = scratch();
    let host = work.path().join("host");
    let base = test_options(work.path(), None);
    let options = InstallOptions {
        root: host.join("opt/runcvm"),
        containerd_config: host.join("etc/containerd/config.toml"),
        host_root_prefix: Some(host.clone()),
        ..base
    };
    std::fs::create_dir_all(host.join("etc/containerd/conf.d")).unwrap();
    std::fs::write(
        &options.containerd_config,
        "version = 3\nimports = ['/etc/containerd/conf.d/*.toml']\n",
    )
    .unwrap();
    let report = runcvm_install::install(&options).unwrap();
    assert_eq!(report.containerd.file, host.join("etc/containerd/conf.d/runcvm.toml"));
    let manifest = std::fs::read_to_string(options.root.join(MANIFEST_NAME)).unwrap();
    assert!(
        manifest.contains("\"/etc/containerd/conf.d/runcvm.toml\""),
        "{manifest}"
    );
    assert!(!manifest.contains(host.to_str().unwrap()), "{manifest}");
    runcvm_install::uninstall(&UninstallOptions {
        root: options.root.clone(),
        host_root_prefix: Some(host.clone()),
    })
    .unwrap();
    assert!(
        host.join("etc/containerd/conf.d").is_dir(),
        "conf.d was there before install"
    );
    assert_eq!(
        files_under(&host.join("etc")),
        std::slice::from_ref(&options.containerd_config)
    );
}

#[test]
fn the_handler_follows_the_config_between_the_main_file_and_the_drop_in() {
    let work = scratch();
    let options = test_options(work.path(), None);
    let config = options.containerd_config.clone();
    let conf_d = config.parent().unwrap().join("conf.d");
    let plain = "version = 3\n";
    let importing = "version = 3\nimports = ['conf.d/*.toml']\n";
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, plain).unwrap();
    runcvm_install::install(&options).unwrap();
    let with_block = std::fs::read_to_string(&config).unwrap();
    assert!(with_block.contains("# runcvm: end"));

    // The user makes the config import conf.d: the block leaves for a drop-in.
    std::fs::write(&config, with_block.replacen(plain, importing, 1)).unwrap();
    let moved = runcvm_install::install(&options).unwrap();
    assert_eq!(moved.containerd.registration, Registration::Updated);
    assert_eq!(moved.containerd.moved_from.as_deref(), Some(config.as_path()));
    assert!(moved.to_string().contains("that registration was taken out"), "{moved}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), importing);
    assert!(conf_d.join("runcvm.toml").is_file());

    // And back: the drop-in, and the conf.d install made for it, go.
    std::fs::write(&config, plain).unwrap();
    let back = runcvm_install::install(&options).unwrap();
    assert_eq!(
        back.containerd.moved_from.as_deref(),
        Some(conf_d.join("runcvm.toml").as_path())
    );
    assert!(!conf_d.exists());
    assert_eq!(std::fs::read_to_string(&config).unwrap(), with_block);

    let removed = runcvm_install::uninstall(&UninstallOptions {
        root: options.root.clone(),
        host_root_prefix: None,
    })
    .unwrap();
    assert_eq!(removed.containerd.unwrap().outcome, Unregistered::Restored);
    assert_eq!(removed.drop_in, None);
    assert_eq!(std::fs::read_to_string(&config).unwrap(), plain);
}

#[test]
fn a_config_version_no_containerd_reads_is_refused_before_anything_is_written() {
    let work = scratch();
    let options = test_options(work.path(), None);
    std::fs::create_dir_all(options.containerd_config.parent().unwrap()).unwrap();
    std::fs::write(&options.containerd_config, "version = 4\n").unwrap();
    let err = runcvm_install::install(&options).unwrap_err();
    let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(
        chain.starts_with(&format!(
            "cannot register the runcvm handler in {}: line 1 has `version = 4`",
            options.containerd_config.display()
        )),
        "{chain}"
    );
    assert!(chain.contains("containerd 2.x reads version 3"), "{chain}");
    assert!(!options.root.exists());
}

#[test]
fn missing_sources_are_named_with_the_way_to_get_them() {
    let work = scratch();
    let options = test_options(work.path(), None);
    std::fs::remove_file(options.binaries_from.as_ref().unwrap().join("runcvm-runtime")).unwrap();
    let err = runcvm_install::install(&options).unwrap_err().to_string();
    assert!(err.starts_with("runcvm-runtime not found in "), "{err}");
    assert!(err.contains("cargo build --release"), "{err}");

    let work = scratch();
    let options = test_options(work.path(), None);
    std::fs::write(&options.kernel, b"MZ a bzImage").unwrap();
    let err = runcvm_install::install(&options).unwrap_err().to_string();
    assert!(err.contains("is not an ELF vmlinux"), "{err}");
    let err = runcvm_install::install(&InstallOptions {
        kernel: work.path().join("none"),
        ..options.clone()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("kernel/build.sh"), "{err}");
    std::fs::write(&options.kernel, b"\x7fELF\x02\x01").unwrap();
    let err = runcvm_install::install(&InstallOptions {
        qemu_module_dir: work.path().to_owned(),
        ..options.clone()
    })
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("accel-tcg-x86_64.so not found in"), "{err}");
    assert!(
        !options.root.exists(),
        "nothing is written before every source is found"
    );
}

/// Lines of `child`'s stdout, read on a thread.
fn lines_of(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
#[ignore = "needs root (chroot, mount namespace): run scripts/test.sh, or cargo test -p runcvm-install --test bundle -- --ignored as root"]
fn the_bundle_boots_the_guest_kernel_inside_a_busybox_rootfs() {
    runcvm_test_infra::tier::require_root("running the bundled QEMU chrooted into a busybox rootfs");
    let mut missing = Vec::new();
    if !Path::new(REAL_KERNEL).is_file() {
        missing.push(format!("the guest kernel at {REAL_KERNEL} (kernel/build.sh)"));
    }
    let tool = |name: &str| {
        ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
            .iter()
            .map(|dir| Path::new(dir).join(name))
            .find(|path| path.is_file())
    };
    for name in ["unshare", "chroot", "env", "mount"] {
        if tool(name).is_none() {
            missing.push(format!("{name} (apt-get install util-linux coreutils)"));
        }
    }
    let work = scratch();
    let rootfs = runcvm_test_infra::busybox_rootfs(&work.path().join("rootfs"));
    if let Err(e) = &rootfs {
        missing.push(format!("a busybox rootfs ({e})"));
    }
    assert!(
        missing.is_empty(),
        "cannot run; missing:\n  - {}",
        missing.join("\n  - ")
    );
    let rootfs = rootfs.unwrap();
    assert!(!rootfs.join("lib").exists() && !rootfs.join("usr/lib").exists() && !rootfs.join("usr/share").exists());
    std::fs::create_dir_all(rootfs.join("opt/runcvm")).unwrap();
    // An image that asks glibc's loader to preload its own library: the
    // bundled loader must not read it (it would say it cannot preload it).
    std::fs::write(rootfs.join("etc/ld.so.preload"), "/image/evil.so\n").unwrap();

    let options = test_options(work.path(), Some(Path::new(REAL_KERNEL)));
    runcvm_install::install(&options).unwrap();

    // In a private mount namespace (gone with the process): ROOT read-only
    // at /opt/runcvm, then exec QEMU chrooted, with an empty environment.
    let inner = BundledQemu::layout(Path::new("/opt/runcvm"));
    let prefix = inner.command_prefix();
    let mut command = Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(
            "set -e; mount --bind \"$1\" \"$2/opt/runcvm\"; mount -o remount,bind,ro \"$2/opt/runcvm\"; \
             shift 2; exec env -i \"$@\"",
        )
        .arg("sh")
        .arg(&options.root)
        .arg(&rootfs);
    for (key, value) in &prefix.env {
        let mut pair = key.clone();
        pair.push("=");
        pair.push(value);
        command.arg(pair);
    }
    command
        .arg(tool("chroot").unwrap())
        .arg(&rootfs)
        .arg(&prefix.program)
        .args(&prefix.args)
        .args([
            "-M",
            "microvm,acpi=off,x-option-roms=off",
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-m",
            "128",
            "-smp",
            "1",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
            // The seccomp filter every VM runs under: the bundle carries
            // the library it needs.
            "-sandbox",
            runcvm_vmm::qemu::SANDBOX,
            "-chardev",
            "stdio,id=console,signal=off",
            "-serial",
            "chardev:console",
            "-kernel",
            "/opt/runcvm/kernel/vmlinux",
            "-append",
            "console=ttyS0 earlyprintk=ttyS0 tsc_early_khz=2000000 pci=off panic=-1",
        ]);
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(child.stdout.take().unwrap());
    let deadline = started + Duration::from_secs(30);
    let mut console = Vec::new();
    let mut booted = None;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) => {
                let seen = line.contains("Linux version");
                console.push(line);
                if seen {
                    booted = Some(started.elapsed());
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr);
    let elapsed = booted.unwrap_or_else(|| {
        panic!(
            "no `Linux version` on the console within 30 s ({status}); console:\n{}\nstderr:\n{stderr}",
            console.join("\n")
        )
    });
    println!("`Linux version` after {elapsed:?}: {}", console.last().unwrap());
    assert!(
        stderr.trim().is_empty(),
        "QEMU or its loader complained (the image's /etc/ld.so.preload read?): {stderr}"
    );
    // The namespace died with QEMU: nothing is left mounted on the rootfs.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(rootfs.to_str().unwrap()), "{mounts}");
}

#[test]
fn a_firecracker_binary_is_installed_when_given_and_checked_first() {
    let work = tempfile::tempdir().expect("tempdir");
    let firecracker = work.path().join("firecracker-v1.16.1-x86_64");
    std::fs::write(&firecracker, b"\x7fELF fake").expect("write");
    std::fs::set_permissions(&firecracker, std::os::unix::fs::PermissionsExt::from_mode(0o644)).expect("chmod");
    let mut options = test_options(work.path(), None);
    options.firecracker = Some(firecracker.clone());
    let err = runcvm_install::install(&options).expect_err("not executable");
    assert!(err.to_string().starts_with("--firecracker: Firecracker at"), "{err}");
    assert!(!options.root.exists(), "a refused install writes nothing");

    std::fs::set_permissions(&firecracker, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    runcvm_install::install(&options).expect("install");
    let installed = options.root.join("bin/firecracker");
    assert_eq!(std::fs::read(&installed).expect("installed"), b"\x7fELF fake");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&installed).expect("meta").permissions());
    assert_eq!(mode & 0o777, 0o755);
    runcvm_install::uninstall(&UninstallOptions {
        root: options.root.clone(),
        host_root_prefix: None,
    })
    .expect("uninstall");
    assert!(!installed.exists());
}
