//! Before Firecracker starts: the binary (missing, not executable), the
//! kernel (not an ELF vmlinux), the configuration file and the host files
//! Firecracker expects.

#![allow(clippy::unwrap_used)]

use runcvm_log::LogLevel;
use runcvm_vmm::GuestCmdline;
use runcvm_vmm::firecracker::launch::{FIRECRACKER_IN_ROOT, check_kernel, prepare_host_files, write_config};
use runcvm_vmm::firecracker::{FirecrackerBinary, FirecrackerConfig, FirecrackerLaunch, FirecrackerLogs, LaunchError};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::Path;

fn config_in(dir: &Path, kernel: &Path) -> FirecrackerConfig {
    FirecrackerConfig::build(&FirecrackerLaunch {
        kernel: kernel.to_owned(),
        cmdline: GuestCmdline {
            log_level: LogLevel::Debug,
            reboot_method: 'k',
            tsc_khz: 2_000_000,
            read_only_root: false,
            extra: Vec::new(),
        },
        root_disk: dir.join("disk.ext4"),
        extra_disks: Vec::new(),
        nic: None,
        vcpus: 1,
        memory_mib: 256,
        vsock_uds: Some(dir.join("vsock.sock")),
        logs: FirecrackerLogs {
            log_path: dir.join("firecracker.log"),
            level: LogLevel::Debug,
            metrics_path: Some(dir.join("firecracker.metrics")),
        },
    })
    .unwrap()
}

fn executable(path: &Path, mode: u32) {
    std::fs::write(path, b"\x7fELF").unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_missing_binary_says_how_to_get_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("firecracker");
    let error = FirecrackerBinary::at(&path).unwrap_err();
    assert!(matches!(error, LaunchError::Missing { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!(
            "Firecracker not found at {}: install its release binary with `runcvm install --firecracker PATH`, or set RUNCVM_FIRECRACKER to a firecracker binary",
            path.display()
        )
    );
}

#[test]
fn a_binary_that_cannot_run_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("firecracker");
    executable(&path, 0o644);
    let error = FirecrackerBinary::at(&path).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "Firecracker at {} is not executable (mode 644): `chmod +x` it",
            path.display()
        )
    );
    let error = FirecrackerBinary::at(dir.path()).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("Firecracker at {} is not a file", dir.path().display())
    );
    executable(&path, 0o755);
    assert_eq!(FirecrackerBinary::at(&path).unwrap().path(), path);
}

#[test]
fn the_install_root_holds_the_binary_unless_one_is_chosen() {
    let root = tempfile::tempdir().unwrap();
    let expected = root.path().join(FIRECRACKER_IN_ROOT);
    let error = FirecrackerBinary::locate(None, root.path()).unwrap_err();
    assert!(error.to_string().contains(&expected.display().to_string()), "{error}");
    std::fs::create_dir_all(expected.parent().unwrap()).unwrap();
    executable(&expected, 0o755);
    assert_eq!(FirecrackerBinary::locate(None, root.path()).unwrap().path(), expected);
    // The binary's RUNCVM_FIRECRACKER wins over the install root, and is
    // named in errors.
    let chosen = root.path().join("elsewhere");
    let error = FirecrackerBinary::locate(Some(&chosen), root.path()).unwrap_err();
    assert!(error.to_string().contains("(from RUNCVM_FIRECRACKER)"), "{error}");
    executable(&chosen, 0o755);
    assert_eq!(
        FirecrackerBinary::locate(Some(&chosen), root.path()).unwrap().path(),
        chosen
    );
}

#[test]
fn a_kernel_that_is_not_an_elf_vmlinux_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bz_image = dir.path().join("bzImage");
    std::fs::write(&bz_image, b"MZ\x00\x00 a compressed kernel").unwrap();
    let error = check_kernel(&config_in(dir.path(), &bz_image)).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "guest kernel {} is not an uncompressed ELF vmlinux (a bzImage will not boot): use the vmlinux from `kernel/build.sh`",
            bz_image.display()
        )
    );
    let missing = check_kernel(&config_in(dir.path(), &dir.path().join("vmlinux"))).unwrap_err();
    assert!(missing.to_string().contains("not found at"), "{missing}");
    let vmlinux = dir.path().join("vmlinux");
    std::fs::write(&vmlinux, b"\x7fELF\x02\x01\x01").unwrap();
    assert_eq!(check_kernel(&config_in(dir.path(), &vmlinux)).unwrap().path, vmlinux);
}

#[test]
fn the_configuration_file_is_the_vmm_groups_alone_and_complete() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path(), &dir.path().join("vmlinux"));
    let path = dir.path().join("firecracker.json");
    write_config(&config, &path).unwrap();
    // Read by the VMM's group (its folder is shared with that group alone).
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
    let back: FirecrackerConfig = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(back, config);
    let error = write_config(&config, &dir.path().join("no/such/dir.json")).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("cannot write Firecracker's configuration"),
        "{error}"
    );
}

#[test]
fn host_files_are_prepared_for_firecracker() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(dir.path(), &dir.path().join("vmlinux"));
    let api_sock = dir.path().join("api.sock");
    // Sockets left by an earlier run, and a stale log.
    drop(UnixListener::bind(&api_sock).unwrap());
    drop(UnixListener::bind(dir.path().join("vsock.sock")).unwrap());
    std::fs::write(dir.path().join("firecracker.log"), "old run\n").unwrap();
    prepare_host_files(&config, &api_sock).unwrap();
    assert!(!api_sock.exists());
    assert!(!dir.path().join("vsock.sock").exists());
    assert_eq!(std::fs::read(dir.path().join("firecracker.log")).unwrap(), b"");
    assert!(dir.path().join("firecracker.metrics").is_file());
    // Anything but a socket in the way is not removed.
    std::fs::write(&api_sock, "mine").unwrap();
    let error = prepare_host_files(&config, &api_sock).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("cannot prepare {} for Firecracker", api_sock.display())
    );
    assert_eq!(std::fs::read(&api_sock).unwrap(), b"mine");
}
