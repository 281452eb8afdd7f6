//! T0: the launcher's Firecracker path on the host, against
//! `fake-firecracker` (a test double of Firecracker's process contract, from
//! runcvm-test-infra): the files `VmmCommand::firecracker` prepares, the
//! command line, the control channel over the hybrid vsock's
//! `<uds_path>_1024`, and how `vm::run` reports an exit status, a VMM that
//! dies, and a guest that never reaches init. No root, no VM, no KVM; one
//! test, ignored unless root runs it (`scripts/test.sh` does, under T2),
//! runs the fake as the VMM user.
//!
//! The fake is a binary of another package, so Cargo's
//! `CARGO_BIN_EXE_<name>` does not name it: it is looked up next to this
//! test's own target folder. `cargo test --workspace` builds it first; with
//! `cargo test -p runcvm`, run `cargo build -p runcvm-test-infra` before.
//!
//! Each test has its own run folder and passes the fake's settings on the
//! VMM's command (not this process's environment), so they run in parallel.

use runcvm::vm::{VmError, VmLaunch, VmmCommand, block_forwarded_signals, run};
use runcvm_log::LogLevel;
use runcvm_proto::{ExitStatus, HostMessage};
use runcvm_vmm::GuestCmdline;
use runcvm_vmm::firecracker::{FirecrackerBinary, FirecrackerLaunch, FirecrackerLogs};
use serde_json::Value;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Generous: the fake answers in milliseconds, but CI hosts are busy.
const BOOT_TIMEOUT: Duration = Duration::from_secs(30);

fn fake_firecracker() -> PathBuf {
    runcvm_test_infra::built_binary("fake-firecracker")
}

/// A run folder with a fake ELF kernel and an empty root disk, under /tmp
/// so that `vsock.sock_1024` fits a Unix socket address.
struct Rig {
    dir: tempfile::TempDir,
    record: PathBuf,
}

impl Rig {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("runcvm-fc-")
            .tempdir_in("/tmp")
            .expect("a run folder in /tmp");
        let mut kernel = b"\x7fELF\x02\x01\x01".to_vec();
        kernel.resize(64, 0);
        std::fs::write(dir.path().join("vmlinux"), kernel).expect("the fake kernel");
        std::fs::write(dir.path().join("disk.ext4"), b"").expect("the root disk");
        let record = dir.path().join("record.json");
        Self { dir, record }
    }

    fn run_dir(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn launch(&self) -> FirecrackerLaunch {
        FirecrackerLaunch {
            kernel: self.path("vmlinux"),
            cmdline: GuestCmdline {
                log_level: LogLevel::Info,
                // What boot() passes (QEMU's); the Firecracker config must
                // replace it with `k`.
                reboot_method: 't',
                tsc_khz: 2_000_000,
                read_only_root: false,
                extra: vec!["loglevel=4".to_owned()],
            },
            root_disk: self.path("disk.ext4"),
            extra_disks: Vec::new(),
            nic: None,
            vcpus: 2,
            memory_mib: 256,
            vsock_uds: Some(self.path("vsock.sock")),
            logs: FirecrackerLogs {
                log_path: self.path("firecracker.log"),
                level: LogLevel::Info,
                metrics_path: None,
            },
        }
    }

    /// The VM, with the fake told `mode` and `exit` through the VMM's own
    /// environment.
    fn vm(&self, mode: &str, exit: &str, boot_timeout: Duration) -> VmLaunch {
        let binary = FirecrackerBinary::at(&fake_firecracker()).expect("the fake is an executable file");
        let mut vmm = VmmCommand::firecracker(&binary, &self.launch(), self.run_dir()).expect("Firecracker's files");
        vmm.command
            .env("FAKE_FIRECRACKER_MODE", mode)
            .env("FAKE_FIRECRACKER_EXIT", exit)
            .env("FAKE_FIRECRACKER_RECORD", &self.record);
        VmLaunch {
            vmm,
            boot_timeout,
            show_boot: false,
            answer: answer(),
            pod_vm: false,
            volume_server: None,
            exec_socket: None,
            forward_stdin: false,
            terminal: false,
            port_forward: None,
            mirror_oom_limit: None,
            on_exit: None,
            vmm_user: None,
            vmm_groups: Vec::new(),
        }
    }

    /// What the fake recorded: argv, the configuration's text, `Start`.
    fn record(&self) -> Value {
        let text = std::fs::read_to_string(&self.record).expect("the fake's record");
        serde_json::from_str(&text).expect("the record is JSON")
    }
}

fn answer() -> Vec<HostMessage> {
    vec![
        HostMessage::Start {
            pod: runcvm_spec::PodPlan::default(),
            network: None,
        },
        HostMessage::CreateContainer {
            container: runcvm_proto::WORKLOAD_SESSION,
            name: None,
            plan: Box::default(),
            entrypoint: None,
            files: Vec::new(),
            root: None,
            volumes: Vec::new(),
            stdin: false,
            terminal_size: None,
        },
    ]
}

/// As `runcvm`'s main does: the launcher's own thread takes the forwarded
/// signals with sigwait. Nothing here sends any; this keeps one sent to the
/// test process from reaching a test thread instead.
fn setup() {
    block_forwarded_signals();
}

fn path_text(path: PathBuf) -> String {
    path.to_str().expect("UTF-8 temp path").to_owned()
}

#[test]
fn the_guest_exit_status_is_the_result_and_firecracker_gets_its_config() {
    setup();
    let rig = Rig::new();
    let status = run(rig.vm("normal", "code:7", BOOT_TIMEOUT))
        .expect("the workload's status")
        .status;
    assert_eq!(status, ExitStatus::Code(7));
    assert_eq!(status.container_code(), 7);

    let record = rig.record();
    assert_eq!(
        record["argv"],
        serde_json::json!([
            "--config-file",
            path_text(rig.path("firecracker.json")),
            "--api-sock",
            path_text(rig.path("firecracker.sock")),
        ])
    );
    let config_text = record["config"].as_str().expect("the config's text");
    assert_eq!(
        config_text,
        std::fs::read_to_string(rig.path("firecracker.json")).expect("the config file"),
        "the fake read the file runcvm wrote"
    );
    let config: Value = serde_json::from_str(config_text).expect("the config is JSON");
    let drives = config["drives"].as_array().expect("drives");
    assert_eq!(drives.len(), 1, "{config:#}");
    assert_eq!(drives[0]["drive_id"], "root");
    assert_eq!(drives[0]["path_on_host"], path_text(rig.path("disk.ext4")));
    assert_eq!(drives[0]["is_read_only"], false);
    assert_eq!(drives[0]["is_root_device"], false);
    assert_eq!(config["vsock"]["uds_path"], path_text(rig.path("vsock.sock")));
    assert_eq!(config["vsock"]["guest_cid"], 3);
    assert_eq!(config["machine-config"]["vcpu_count"], 2);
    assert_eq!(config["machine-config"]["mem_size_mib"], 256);
    assert_eq!(
        config["boot-source"]["kernel_image_path"],
        path_text(rig.path("vmlinux"))
    );
    let boot_args = config["boot-source"]["boot_args"].as_str().expect("boot args");
    let words: Vec<&str> = boot_args.split(' ').collect();
    for word in ["reboot=k", "console=ttyS0", "root=/dev/vda", "pci=off"] {
        assert!(words.contains(&word), "{word} missing from {boot_args}");
    }
    assert!(!words.contains(&"reboot=t"), "{boot_args}");
    assert!(
        boot_args.ends_with(" loglevel=4"),
        "the caller's words last: {boot_args}"
    );
    assert_eq!(config["logger"]["log_path"], path_text(rig.path("firecracker.log")));
    assert!(config.get("metrics").is_none(), "metrics only at DEBUG: {config:#}");

    let [start, create] = <[HostMessage; 2]>::try_from(answer()).expect("two messages");
    assert_eq!(
        record["start"],
        serde_json::to_value(start).expect("Start as JSON"),
        "the guest got the Start message"
    );
    assert_eq!(
        record["create"],
        serde_json::to_value(create).expect("CreateContainer as JSON"),
        "then the container"
    );
    let log = std::fs::read_to_string(rig.path("firecracker.log")).expect("the log runcvm created");
    assert!(log.contains("Running Firecracker"), "{log:?}");
}

/// As `runcvm` runs it as root: Firecracker as the VMM user, with its files
/// in the run folder's `vmm/`, shared with that user's group. The fake reads
/// its configuration, the kernel, binds its sockets, writes its log,
/// reaches the launcher's control listener and records, all as that user.
#[test]
#[ignore = "needs root (the fake runs as the VMM user): run scripts/test.sh"]
fn firecracker_runs_as_the_vmm_user_on_what_is_shared_with_it() {
    use runcvm::vmm_privileges::{prepare_launcher, share_run_folder};
    use std::os::unix::fs::MetadataExt;
    runcvm_test_infra::tier::require_root("Firecracker as the VMM user (setuid)");
    setup();
    let rig = Rig::new();
    let user = runcvm_spec::VmmUser::DEFAULT;
    let vmm_dir = share_run_folder(rig.run_dir(), Some(&rig.path("disk.ext4")), user).expect("the shared folder");
    prepare_launcher(user).expect("the launcher joins the VMM's group");
    let mut launch = rig.launch();
    launch.vsock_uds = Some(vmm_dir.join("vsock.sock"));
    launch.logs.log_path = vmm_dir.join("firecracker.log");
    let binary = FirecrackerBinary::at(&fake_firecracker()).expect("the fake is an executable file");
    let mut vmm = VmmCommand::firecracker(&binary, &launch, &vmm_dir).expect("Firecracker's files");
    let record = vmm_dir.join("record.json");
    vmm.command
        .env("FAKE_FIRECRACKER_MODE", "normal")
        .env("FAKE_FIRECRACKER_EXIT", "code:3")
        .env("FAKE_FIRECRACKER_RECORD", &record);
    let mut vm = rig.vm("normal", "code:3", BOOT_TIMEOUT);
    vm.vmm = vmm;
    vm.vmm_user = Some(user);
    let ended = run(vm).expect("the workload's status");
    assert_eq!(ended.status, ExitStatus::Code(3));
    let recorded = std::fs::metadata(&record).expect("the fake's record");
    assert_eq!(
        (recorded.uid(), recorded.gid()),
        (user.uid, user.gid),
        "the fake ran as the VMM user"
    );
    let log = std::fs::read_to_string(vmm_dir.join("firecracker.log")).expect("the log");
    assert!(log.contains("Running Firecracker"), "{log:?}");
}

#[test]
fn a_signal_status_reaches_the_container_code() {
    setup();
    let rig = Rig::new();
    let status = run(rig.vm("normal", "signal:15", BOOT_TIMEOUT))
        .expect("the workload's status")
        .status;
    assert_eq!(status, ExitStatus::Signal(15));
    assert_eq!(status.container_code(), 143);
}

#[test]
fn sockets_left_by_an_earlier_run_are_replaced() {
    setup();
    let rig = Rig::new();
    // Firecracker binds these itself and fails where they exist.
    for name in ["vsock.sock", "firecracker.sock"] {
        drop(std::os::unix::net::UnixListener::bind(rig.path(name)).expect("a stale socket"));
        assert!(
            std::fs::symlink_metadata(rig.path(name))
                .expect("left behind")
                .file_type()
                .is_socket()
        );
    }
    let status = run(rig.vm("normal", "code:0", BOOT_TIMEOUT))
        .expect("the workload's status")
        .status;
    assert_eq!(status, ExitStatus::Code(0));
}

#[test]
fn firecracker_failing_is_reported_with_what_it_said() {
    setup();
    let rig = Rig::new();
    let error = run(rig.vm("die", "code:0", BOOT_TIMEOUT)).expect_err("Firecracker died");
    let message = error.to_string();
    assert!(matches!(error, VmError::Stopped { .. }), "{error:?}");
    assert!(message.contains("Firecracker said: Error: fake failure"), "{message}");
    assert!(message.contains("exit status: 1"), "{message}");
    assert_eq!(error.exit_code(), runcvm::RUNTIME_FAILURE);
}

#[test]
fn a_guest_that_never_reaches_init_trips_the_boot_watchdog() {
    setup();
    let rig = Rig::new();
    let timeout = Duration::from_secs(2);
    let started = Instant::now();
    let error = run(rig.vm("never-connect", "code:0", timeout)).expect_err("no guest init");
    let elapsed = started.elapsed();
    let message = error.to_string();
    assert!(
        matches!(error, VmError::BootTimeout { ref tail, .. } if tail.contains("Linux version 6.1.0 (fake-firecracker)")),
        "{message}"
    );
    assert!(message.contains("within 2 s under kvm"), "{message}");
    assert!(message.contains("Command line: console=ttyS0 reboot=k"), "{message}");
    assert!(elapsed >= timeout, "{elapsed:?}");
    assert!(elapsed < timeout + Duration::from_secs(10), "{elapsed:?}");
}
