//! T3, what only the `runcvm` handler has: refusals that must reach the
//! CRI caller and containerd's log and leave nothing behind, one VM
//! container per pod, the VM sized from the container's limits, the
//! launcher's lines at DEBUG, and `runcvm install`/`uninstall` against a
//! real containerd (1.6, or 2.x with `RUNCVM_T3_CONTAINERD=2`, whose config
//! is version 3). Run with
//! `cargo test -p runcvm-runtime --test t3_runcvm -- --ignored`.

mod support;

use runcvm_test_node::crilog::{self, Stream};
use runcvm_test_node::{BUSYBOX_IMAGE, ContainerSpec, Node, NodeOptions, RuntimeHandler, require_t3};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::{Fixture, Handler, install_root, ok};

const BOOT: Duration = Duration::from_secs(60);

/// A pod `pod_name` whose container `spec` the runtime refuses with
/// `expected`; nothing of it is left.
fn assert_start_refused(f: &Fixture, spec: &ContainerSpec, pod_name: &str, expected: &str) {
    let cri = ok(f.node.cri());
    let pod = ok(cri.run_pod_sandbox(&f.pod(pod_name)));
    let id = support::assert_start_refused(f, &pod, spec, expected);
    ok(cri.stop_pod_sandbox(&pod.id));
    ok(cri.remove_pod_sandbox(&pod.id));
    f.node.assert_nothing_left(&[&pod.id, &id]);
}

#[test]
#[ignore = "T3: a private containerd with the runcvm handler; run scripts/test.sh"]
fn a_host_device_is_refused_clearly() {
    let f = Fixture::start(Handler::RUNCVM);
    let mut spec = ContainerSpec::new("app", BUSYBOX_IMAGE).shell("true");
    spec.config.devices.push(k8s_cri::v1::Device {
        container_path: "/dev/xdisk".into(),
        host_path: "/dev/null".into(),
        permissions: "rwm".into(),
    });
    assert_start_refused(&f, &spec, "device", "asks for host devices (/dev/xdisk)");
}

#[test]
#[ignore = "T3: a private containerd with the runcvm handler; run scripts/test.sh"]
fn a_socket_volume_is_refused_clearly() {
    let f = Fixture::start(Handler::RUNCVM);
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("agent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
    let spec = ContainerSpec::new("app", BUSYBOX_IMAGE)
        .mount(&socket, "/run/agent.sock", false)
        .shell("true");
    assert_start_refused(&f, &spec, "socket", "is a socket, which cannot be shared into a VM");
}

/// A handler whose runtime has no install around it: the pod's sandbox,
/// which boots the pod's VM, is refused with the reason.
#[test]
#[ignore = "T3: a private containerd with the runcvm handler; run scripts/test.sh"]
fn a_missing_install_is_named() {
    require_t3();
    let empty = tempfile::tempdir().expect("tempdir");
    let runtime = empty.path().join("bin/runcvm-runtime");
    std::fs::create_dir_all(runtime.parent().expect("bin")).expect("mkdir");
    std::fs::copy(install_root().join("bin/runcvm-runtime"), &runtime).expect("copy the runtime");
    let node = ok(Node::start(
        NodeOptions::default().runtime(RuntimeHandler::new("runcvm", &runtime)),
    ));
    let cri = ok(node.cri());
    let expected = format!(
        "runcvm is not installed completely at {}: bin/runcvm is missing",
        empty.path().display()
    );
    let err = format!(
        "{:#}",
        cri.run_pod_sandbox(&node.pod("noinstall").runtime_handler("runcvm"))
            .expect_err("no install, no pod VM")
    );
    assert!(err.contains(&expected), "{err}");
    assert!(
        !node.log_lines_with(&expected).is_empty(),
        "containerd's log does not carry {expected:?}"
    );
}

/// runc cannot be found: even the pod sandbox fails, with the reason.
#[test]
#[ignore = "T3: a private containerd with the runcvm handler; run scripts/test.sh"]
fn a_missing_runc_is_named() {
    require_t3();
    let dir = tempfile::tempdir().expect("tempdir");
    let wrapper = dir.path().join("runcvm-runtime-without-runc");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nRUNCVM_RUNC=/nonexistent/runc exec {} \"$@\"\n",
            install_root().join("bin/runcvm-runtime").display()
        ),
    )
    .expect("write");
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let node = ok(Node::start(
        NodeOptions::default().runtime(RuntimeHandler::new("runcvm", &wrapper)),
    ));
    let cri = ok(node.cri());
    let err = format!(
        "{:#}",
        cri.run_pod_sandbox(&node.pod("norunc").runtime_handler("runcvm"))
            .expect_err("no runc, no pod")
    );
    assert!(err.contains("RUNCVM_RUNC=/nonexistent/runc is not a file"), "{err}");
}

/// The runtime binary itself, as the shim calls it, on a malformed bundle.
#[test]
#[ignore = "T3: a private containerd with the runcvm handler; run scripts/test.sh"]
fn a_malformed_config_is_reported_in_the_log_containerd_reads() {
    let bundle = tempfile::tempdir().expect("tempdir");
    std::fs::write(bundle.path().join("config.json"), b"{\"process\": {\"args\": [").expect("write");
    let log = bundle.path().join("log.json");
    let status = Command::new(install_root().join("bin/runcvm-runtime"))
        .args(["--root", "/run/runcvm-t3-unused", "--log"])
        .arg(&log)
        .args(["--log-format", "json", "create", "--bundle"])
        .arg(bundle.path())
        .arg("malformed-1")
        .status()
        .expect("run the runtime");
    assert_eq!(status.code(), Some(1));
    let text = std::fs::read_to_string(&log).expect("the log");
    let record: serde_json::Value = serde_json::from_str(text.lines().last().expect("a line")).expect("JSON");
    assert_eq!(record["level"], "error");
    let msg = record["msg"].as_str().expect("msg");
    assert!(
        msg.starts_with("runcvm: cannot create container malformed-1: ")
            && msg.contains("config.json is not a valid OCI runtime config: EOF while parsing"),
        "{msg}"
    );
    assert!(record["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(!support::state_folder("malformed-1").exists());
}

/// A container whose pod's sandbox runs no VM for the pod (as a sandbox
/// that a runcvm build before pod VMs made: no launch file of the node's)
/// is refused with the reason, and nothing of it is left. (That the old
/// opt-out annotation changes nothing is T0's: containerd passes it no
/// more.)
#[test]
#[ignore = "T3: a private containerd with the runcvm handler; run scripts/test.sh"]
fn a_container_of_a_sandbox_without_a_pod_vm_is_refused() {
    let f = Fixture::start(Handler::RUNCVM);
    let cri = ok(f.node.cri());
    let pod = ok(cri.run_pod_sandbox(&f.pod("no-pod-vm")));
    let state_root = runcvm_runtime::settings::Settings::from_env().state_dir();
    let sandbox = ok(runcvm_runtime::state::read_node_launch(&state_root, &pod.id).map_err(anyhow::Error::from));
    assert_eq!(sandbox.role, runcvm_spec::launch::LaunchRole::PodVm);
    std::fs::remove_file(runcvm_runtime::state::node_launch_file(&state_root, &pod.id)).unwrap();
    let app = ContainerSpec::new("app", BUSYBOX_IMAGE).shell("echo should-not-run");
    let id = support::assert_start_refused(&f, &pod, &app, "runs no VM for the pod");
    ok(cri.stop_pod_sandbox(&pod.id));
    ok(cri.remove_pod_sandbox(&pod.id));
    f.node.assert_nothing_left(&[&pod.id, &id]);
}

/// Every container boots the node's one boot disk, read-only: two pods'
/// state folders link the same file, which no VM may write, and the
/// container reaches each guest after boot (its `/.runcvm/entrypoint` is
/// its own, and read-only to it).
#[test]
#[ignore = "T3: a private containerd with the runcvm handler; run scripts/test.sh"]
fn pods_share_the_nodes_read_only_boot_disk_and_get_their_container_after_boot() {
    use std::os::unix::fs::MetadataExt;
    let f = Fixture::start(Handler::RUNCVM);
    let cri = ok(f.node.cri());
    let mut ids = Vec::new();
    for name in ["boot-a", "boot-b"] {
        let pod = ok(cri.run_pod_sandbox(&f.pod(name)));
        let spec = ContainerSpec::new("app", BUSYBOX_IMAGE).shell(&format!("echo ready; sleep 600 # {name}"));
        let id = ok(cri.run_container(&pod, &spec));
        f.wait_for_line(&spec.log_file(pod.log_directory()), "ready", BOOT);
        let seen = ok(cri.exec_sync(&id, &["cat", "/.runcvm/entrypoint"], 30));
        assert!(seen.stdout_text().contains(&format!("# {name}")), "{seen:?}");
        let changed = ok(cri.exec_sync(&id, &["sh", "-c", "echo x > /.runcvm/entrypoint"], 30));
        assert_ne!(changed.exit_code, 0, "/.runcvm is read-only: {changed:?}");
        // Root in the guest, with the device node at hand: the disk itself
        // refuses the write, whatever the guest does.
        let written = ok(cri.exec_sync(
            &id,
            &[
                "sh",
                "-c",
                "test -b /dev/vda && dd if=/dev/zero of=/dev/vda bs=512 count=1 conv=notrunc",
            ],
            30,
        ));
        assert_ne!(written.exit_code, 0, "the boot disk took a write: {written:?}");
        // Opened, then refused by the device's read-only flag.
        assert!(
            written
                .stderr_text()
                .contains("error writing '/dev/vda': Operation not permitted"),
            "{written:?}"
        );
        // Root beside the container's launcher, on the node, with
        // CAP_DAC_OVERRIDE: the disk every pod boots is not there (the
        // pod's launcher, in the sandbox, has it bound read-only), and the
        // pod's socket's folder is read-only.
        let beside = ok(cri.exec_sync(
            &id,
            &[
                "---",
                "sh",
                "-c",
                "test ! -e /.runcvm/disk.ext4 && test -S /.runcvm/pod/exec.sock && touch /.runcvm/pod/x",
            ],
            30,
        ));
        assert_ne!(beside.exit_code, 0, "the pod wrote its socket's folder: {beside:?}");
        assert!(beside.stderr_text().contains("Read-only file system"), "{beside:?}");
        ids.push((pod.id.clone(), id));
    }
    let boot_disk = |id: &str| {
        let launch = std::fs::read(support::state_folder(id).with_file_name(format!("{id}.launch.json")))
            .expect("the node's launch file");
        runcvm_spec::ContainerLaunch::from_json(&launch)
            .expect("a launch file")
            .boot_disk
    };
    let (a, b) = (boot_disk(&ids[0].0), boot_disk(&ids[1].0));
    assert_eq!(a, b, "one boot disk for the node");
    assert_eq!(boot_disk(&ids[0].1), a, "the container's launch file names its pod's");
    // The file each pod's VM boots, as its launcher sees it (bound there:
    // another install's first create may have taken the name off the node
    // meanwhile, while running VMs keep theirs).
    let booted = |pod: &str| {
        let launcher = std::fs::read_dir("/proc")
            .expect("/proc")
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                std::fs::read(p.join("cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains("runcvm\0launch"))
                    && std::fs::read_to_string(p.join("cgroup")).is_ok_and(|c| c.contains(pod))
            })
            .expect("the pod's launcher");
        std::fs::metadata(launcher.join("root/.runcvm/disk.ext4")).expect("the boot disk")
    };
    let (meta, other) = (booted(&ids[0].0), booted(&ids[1].0));
    assert_eq!((meta.dev(), meta.ino()), (other.dev(), other.ino()), "one file");
    assert_eq!(meta.mode() & 0o777, 0o440);
    assert_eq!(
        std::fs::metadata(support::state_folder(&ids[0].0).join("disk.ext4"))
            .map(|m| m.len())
            .ok(),
        Some(0),
        "on the node a pod VM's disk.ext4 is an empty mount point, not a link"
    );
    // Its listing is guest init alone; the entrypoint shown is the
    // launch file's, as the guest gets it.
    let shown = support::inspect(&ids[1].1);
    assert!(
        shown.contains(" init\n") && !shown.contains(" entrypoint\n") && shown.contains("# boot-b"),
        "{shown}"
    );
}

/// The container's root is its served root, with nothing of the boot disk
/// among its mounts (as a runc container has nothing of the node's root),
/// now that guest init stays on the boot disk and the container's mount
/// namespace pivots into its root (which a container cannot tell from
/// guest init switching into it, as before: the same view).
#[test]
#[ignore = "T3: a private containerd with the runcvm handler; run scripts/test.sh"]
fn the_containers_root_is_its_served_root_with_no_boot_disk_among_its_mounts() {
    let f = Fixture::start(Handler::RUNCVM);
    let cri = ok(f.node.cri());
    let pod = ok(cri.run_pod_sandbox(&f.pod("own-root")));
    let spec = ContainerSpec::new("app", BUSYBOX_IMAGE).shell("echo ready; sleep 600");
    let id = ok(cri.run_container(&pod, &spec));
    f.wait_for_line(&spec.log_file(pod.log_directory()), "ready", BOOT);
    let mounts = ok(cri.exec_sync(&id, &["cat", "/proc/self/mountinfo"], 30)).stdout_text();
    // Mount id, parent id, mount point, file system type, source.
    let fields = |line: &str| -> Option<[String; 5]> {
        let (mount, filesystem) = line.split_once(" - ")?;
        let mount: Vec<&str> = mount.split(' ').collect();
        let mut fs = filesystem.split(' ');
        let (kind, source) = (fs.next()?, fs.next()?);
        Some([*mount.first()?, *mount.get(1)?, *mount.get(4)?, kind, source].map(str::to_owned))
    };
    let table: Vec<[String; 5]> = mounts.lines().filter_map(fields).collect();
    let root = table.iter().find(|m| m[2] == "/").expect("a root mount");
    assert_eq!(
        (root[3].as_str(), root[4].as_str()),
        ("nfs", "169.254.1.254:/"),
        "{mounts}"
    );
    assert!(
        !table.iter().any(|m| m[2].contains("vda")),
        "the boot disk is in the container's mounts:\n{mounts}"
    );
    ok(cri.stop_pod_sandbox(&pod.id));
    ok(cri.remove_pod_sandbox(&pod.id));
}

/// What the pod VM will be sized from (`docs/pods.md`, "Size of the VM"):
/// containerd passes the pod's summed resources on the sandbox, as
/// annotations of the pause container's config, and nothing when the pod
/// has none (absent, not 0); the RuntimeClass overhead is not in them.
#[test]
#[ignore = "T3: a private containerd with the runcvm handler; run scripts/test.sh"]
fn containerd_passes_the_pods_resources_on_the_sandbox() {
    let f = Fixture::start(Handler::RUNCVM);
    let cri = ok(f.node.cri());
    let annotations = |pod: &runcvm_test_node::Pod| -> serde_json::Value {
        let config = f
            .node
            .layout()
            .state
            .join("io.containerd.runtime.v2.task/k8s.io")
            .join(&pod.id)
            .join("config.json");
        let text = std::fs::read(&config).unwrap_or_else(|e| panic!("{}: {e}", config.display()));
        serde_json::from_slice::<serde_json::Value>(&text).expect("the sandbox's config")["annotations"].clone()
    };
    let sized = f
        .pod("sized-pod")
        .resources(150_000, 100_000, 1536, 300 << 20)
        .overhead_memory(64 << 20);
    let pod = ok(cri.run_pod_sandbox(&sized));
    let seen = annotations(&pod);
    for (key, value) in [
        ("io.kubernetes.cri.sandbox-cpu-period", "100000"),
        ("io.kubernetes.cri.sandbox-cpu-quota", "150000"),
        ("io.kubernetes.cri.sandbox-cpu-shares", "1536"),
        ("io.kubernetes.cri.sandbox-memory", "314572800"),
    ] {
        assert_eq!(seen[key], value, "{key} in {seen}");
    }
    ok(cri.stop_pod_sandbox(&pod.id));
    ok(cri.remove_pod_sandbox(&pod.id));
    let plain = ok(cri.run_pod_sandbox(&f.pod("unsized-pod")));
    let seen = annotations(&plain);
    let keys: Vec<&String> = seen
        .as_object()
        .expect("annotations")
        .keys()
        .filter(|k| k.starts_with("io.kubernetes.cri.sandbox-cpu") || *k == "io.kubernetes.cri.sandbox-memory")
        .collect();
    assert!(keys.is_empty(), "a pod without resources: {keys:?}");
    ok(cri.stop_pod_sandbox(&plain.id));
    ok(cri.remove_pod_sandbox(&plain.id));
}

/// The cgroup line of `pid` for `controller` (v1) or the unified one.
fn cgroup_of(pid: &str, controller: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    let line = text
        .lines()
        .find(|l| {
            l.split(':')
                .nth(1)
                .is_some_and(|c| c.split(',').any(|c| c == controller))
        })
        .or_else(|| text.lines().find(|l| l.starts_with("0::")))
        .expect("a cgroup line");
    line.splitn(3, ':').nth(2).expect("a path").to_owned()
}

#[test]
#[ignore = "T3: a private containerd with the runcvm handler; run scripts/test.sh"]
fn the_pods_vm_gets_the_pods_limits_and_each_container_its_own() {
    let f = Fixture::start(Handler::RUNCVM);
    let cri = ok(f.node.cri());
    // As kubelet makes them: the pod's cgroup, limited to the sum of its
    // containers' limits and the RuntimeClass's overhead, and the sums on
    // the sandbox.
    let pod_cgroup = PodCgroup::limited_to((256 << 20) + (128 << 20));
    let spec = f
        .pod("sized")
        .cgroup_parent(&pod_cgroup.name)
        .resources(150_000, 100_000, 1536, 256 << 20);
    let pod = ok(cri.run_pod_sandbox(&spec));
    let spec = ContainerSpec::new("app", BUSYBOX_IMAGE)
        .memory_limit(256 << 20)
        .cpu_limit(150_000, 100_000)
        .shell("grep MemTotal /proc/meminfo; nproc; echo ready; sleep 600");
    let id = ok(cri.run_container(&pod, &spec));
    let lines = f.wait_for_line(&spec.log_file(pod.log_directory()), "ready", BOOT);
    let stdout = support::lines_of(&lines, Stream::Stdout);
    let kib: u64 = stdout[0]
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("MemTotal");
    assert!(
        (200 << 10..=256 << 10).contains(&kib),
        "guest MemTotal {kib} kB for a pod of 256 MiB"
    );
    let host_cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    assert_eq!(
        stdout[1],
        2.min(host_cpus).to_string(),
        "1.5 CPUs of quota round up to 2 vCPUs"
    );
    // And in the guest the container's own cgroup holds it to 1.5 of them,
    // as runc's cpu.max would (its cgroup namespace's root is that cgroup).
    let cpu_max = ok(cri.exec_sync(&id, &["cat", "/sys/fs/cgroup/cpu.max"], 30));
    assert_eq!(cpu_max.stdout_text(), "150000 100000\n", "{cpu_max:?}");

    // `---` runs in the container, beside its launcher (PID 1 there).
    let beside = ok(cri.exec_sync(&id, &["---", "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '"], 30));
    assert_eq!(beside.exit_code, 0, "{beside:?}");
    assert!(beside.stdout_text().contains("runcvm launch"), "{beside:?}");
    // Never with the launcher's CAP_NET_ADMIN (bit 12), even as root.
    let caps = ok(cri.exec_sync(&id, &["---", "grep", "CapBnd", "/proc/self/status"], 30));
    let bounding = u64::from_str_radix(caps.stdout_text().split_whitespace().nth(1).unwrap_or(""), 16)
        .unwrap_or_else(|_| panic!("{caps:?}"));
    assert_eq!(bounding & (1 << 12), 0, "CAP_NET_ADMIN in {bounding:x}");
    // The container's launcher boots nothing: no device of the VM's.
    let devices = ok(cri.exec_sync(
        &id,
        &["---", "sh", "-c", "test ! -e /dev/kvm && test ! -e /dev/net/tun"],
        30,
    ));
    assert_eq!(
        devices.exit_code, 0,
        "a device of the VM's beside the proxy: {devices:?}"
    );

    let launcher_of = |container: &str| {
        std::fs::read_dir("/proc")
            .expect("/proc")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("runcvm\0launch"))
                    && std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|c| c.contains(container))
            })
            .unwrap_or_else(|| panic!("no launcher among {:?}", support::processes_of_container(container)))
    };
    let cgroup_file = |pid: &str, controller: &str, files: &[&str]| {
        let cgroup = cgroup_of(pid, controller);
        files
            .iter()
            .flat_map(|file| {
                [
                    Path::new("/sys/fs/cgroup")
                        .join(controller)
                        .join(cgroup.trim_start_matches('/'))
                        .join(file),
                    Path::new("/sys/fs/cgroup")
                        .join(cgroup.trim_start_matches('/'))
                        .join(file),
                ]
            })
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("none of {files:?} for {pid}"))
    };
    // The pod's VM is the sandbox's, weighed as the pod (containerd gives
    // a pause container the least weight there is: 2 shares, weight 1).
    let sandbox = launcher_of(&pod.id);
    let weight = cgroup_file(&sandbox, "cpu", &["cpu.shares", "cpu.weight"]);
    let expected = if weight.ends_with("cpu.shares") { 1536 } else { 59 };
    assert_eq!(support::read_number(&weight), expected, "{}", weight.display());
    // The container's cgroup holds its launcher alone, at its own limit.
    let limit_file = cgroup_file(&launcher_of(&id), "memory", &["memory.limit_in_bytes", "memory.max"]);
    assert_eq!(support::read_number(&limit_file), 256 << 20, "{}", limit_file.display());
    ok(cri.update_memory_limit(&id, 256 << 20));
    assert_eq!(
        support::read_number(&limit_file),
        256 << 20,
        "after UpdateContainerResources"
    );
    // The guest holds each container to the limits it was created with:
    // an in-place resize either way is refused with the reason, and the
    // cgroup keeps its limit.
    for asked in [128 << 20, 320 << 20] {
        let refused = cri
            .update_memory_limit(&id, asked)
            .expect_err("a resize the VM cannot follow is refused");
        let reason = format!(
            "a memory limit of {} MiB for a container in its pod's VM, where it was created with 256 MiB",
            asked >> 20
        );
        assert!(format!("{refused:#}").contains(&reason), "{refused:#}");
        assert_eq!(
            support::read_number(&limit_file),
            256 << 20,
            "after a refused UpdateContainerResources"
        );
    }
    ok(cri.stop_pod_sandbox(&pod.id));
    ok(cri.remove_pod_sandbox(&pod.id));
}

/// A pod's cgroup as kubelet makes it (cgroupfs), with a memory limit;
/// removed, with what runc made under it, when dropped.
struct PodCgroup {
    name: String,
}

impl PodCgroup {
    fn limited_to(bytes: u64) -> Self {
        let name = format!("/runcvm-t3-pod-{}", std::process::id());
        let root = Path::new("/sys/fs/cgroup");
        let (folder, file) = if root.join("cgroup.controllers").exists() {
            (root.join(name.trim_start_matches('/')), "memory.max")
        } else {
            (
                root.join("memory").join(name.trim_start_matches('/')),
                "memory.limit_in_bytes",
            )
        };
        std::fs::create_dir_all(&folder).expect("the pod's cgroup");
        std::fs::write(folder.join(file), bytes.to_string()).expect("the pod's memory limit");
        Self { name }
    }
}

impl Drop for PodCgroup {
    fn drop(&mut self) {
        let root = Path::new("/sys/fs/cgroup");
        let relative = self.name.trim_start_matches('/');
        let mut folders = vec![root.join(relative)];
        if let Ok(hierarchies) = std::fs::read_dir(root) {
            folders.extend(hierarchies.flatten().map(|h| h.path().join(relative)));
        }
        for folder in folders.iter().filter(|f| f.is_dir()) {
            // runc's cgroups below first (the sandbox's and containers').
            if let Ok(children) = std::fs::read_dir(folder) {
                for child in children.flatten().filter(|c| c.path().is_dir()) {
                    let _ = std::fs::remove_dir(child.path());
                }
            }
            let _ = std::fs::remove_dir(folder);
        }
    }
}

#[test]
#[ignore = "T3: a private containerd with the runcvm handler; run scripts/test.sh"]
fn at_debug_the_log_holds_the_launchers_and_the_kernels_lines() {
    let f = Fixture::start(Handler::RUNCVM);
    let cri = ok(f.node.cri());
    let pod = ok(cri.run_pod_sandbox(&f.pod("debug")));
    let spec = ContainerSpec::new("app", BUSYBOX_IMAGE)
        .env("RUNCVM_LOG_LEVEL", "DEBUG")
        .shell("echo workload-line");
    let id = ok(cri.run_container(&pod, &spec));
    let info = ok(cri.wait_exited(&id, BOOT));
    assert_eq!(info.exit_code, 0, "{info:?}");
    let lines = ok(crilog::read(&spec.log_file(pod.log_directory())));
    let has = |stream: Stream, needle: &str| lines.iter().any(|l| l.stream == stream && l.line.contains(needle));
    assert!(has(Stream::Stdout, "workload-line"), "{lines:#?}");
    assert!(has(Stream::Stderr, "runcvm-ctr-qemu-k8s DEBUG"), "{lines:#?}");
    assert!(has(Stream::Stderr, "MAC swap: eth0"), "{lines:#?}");
    assert!(
        has(Stream::Stderr, "Linux version"),
        "the kernel's boot lines at DEBUG: {lines:#?}"
    );
    // The guide's: the path the runner loads, at the container's level
    // (the pod's VM runs at INFO).
    assert!(
        has(
            Stream::Stderr,
            "[VM-START] DEBUG: runcvm-vm-start loaded /.runcvm/entrypoint"
        ),
        "{lines:#?}"
    );

    // At INFO (the default) the log is the workload's alone, as under runc:
    // no swap line, no TCG or QEMU notice (on this host KVM cannot boot
    // guests and there is no Firecracker, so both would apply).
    let quiet = ContainerSpec::new("quiet", BUSYBOX_IMAGE).shell("echo workload-line");
    let id = ok(cri.run_container(&pod, &quiet));
    ok(cri.wait_exited(&id, BOOT));
    let lines = ok(crilog::read(&quiet.log_file(pod.log_directory())));
    let seen: Vec<(Stream, &str)> = lines.iter().map(|l| (l.stream, l.line.as_str())).collect();
    assert_eq!(seen, [(Stream::Stdout, "workload-line")], "{lines:#?}");
}

fn runcvm(args: &[&str]) -> std::process::Output {
    Command::new(install_root().join("bin/runcvm"))
        .args(args)
        .output()
        .expect("run runcvm")
}

#[test]
#[ignore = "T3: a private containerd with the runcvm handler; run scripts/test.sh"]
fn install_registers_the_handler_and_uninstall_restores_the_config_byte_for_byte() {
    require_t3();
    let mut node = ok(Node::prepare(NodeOptions::default()));
    let scratch = tempfile::tempdir().expect("tempdir");
    // Outside the node's folder, which goes with the node.
    let config = scratch.path().join("config.toml");
    std::fs::copy(node.config_path(), &config).expect("copy the node's config");
    let before = std::fs::read(&config).expect("the node's config");
    let root = scratch.path().join("opt-runcvm");
    let root_arg = root.to_string_lossy().into_owned();
    let config_arg = config.to_string_lossy().into_owned();
    let from = install_root().join("bin").to_string_lossy().into_owned();
    let install = [
        "install",
        "--root",
        &root_arg,
        "--containerd-config",
        &config_arg,
        "--from",
        &from,
    ];
    let out = runcvm(&install);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let once = std::fs::read(&config).expect("config");
    assert_ne!(once, before);
    // In the plugin the node's containerd reads: version 2's CRI plugin for
    // 1.6, version 3's `io.containerd.cri.v1.runtime` for 2.x.
    let table = format!(
        "[{}.runcvm]",
        runcvm_test_node::config::runtimes_table(node.containerd_version())
    );
    assert!(
        String::from_utf8_lossy(&once).contains(&table),
        "no {table} in:\n{}",
        String::from_utf8_lossy(&once)
    );
    let again = runcvm(&install);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("already registered"));
    assert_eq!(
        std::fs::read(&config).expect("config"),
        once,
        "a second install changes nothing"
    );

    node.use_config_file(&config);
    ok(node.launch());
    let cri = ok(node.cri());
    let handlers = ok(cri.runtime_handlers());
    assert!(handlers.iter().any(|h| h == "runcvm"), "{handlers:?}");
    let pod = ok(cri.run_pod_sandbox(&node.pod("installed").runtime_handler("runcvm")));
    let spec = ContainerSpec::new("app", BUSYBOX_IMAGE).shell("uname -r");
    let id = ok(cri.run_container(&pod, &spec));
    assert_eq!(ok(cri.wait_exited(&id, BOOT)).exit_code, 0);
    let lines = ok(crilog::read(&spec.log_file(pod.log_directory())));
    assert!(
        lines
            .iter()
            .any(|l| l.stream == Stream::Stdout && l.line != support::host_kernel()),
        "{lines:?}"
    );
    ok(cri.stop_pod_sandbox(&pod.id));
    ok(cri.remove_pod_sandbox(&pod.id));
    drop(node);

    let out = runcvm(&["uninstall", "--root", &root_arg]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        std::fs::read(&config).expect("config"),
        before,
        "the config is byte-identical"
    );
    assert!(!root.exists(), "uninstall leaves nothing of the install");
}

/// The verbs containerd passes through unchanged reach runc: pause and
/// resume freeze and thaw the VM's processes, ps lists the launcher and
/// QEMU; features is runc's with id-mapped mounts and the user namespace
/// added (runcvm maps ids itself: docs/kubernetes.md, user namespaces).
#[test]
#[ignore = "T3: a private containerd with the runcvm handler; run scripts/test.sh"]
fn pause_resume_ps_and_features_are_runcs() {
    let f = Fixture::start(Handler::RUNCVM);
    let cri = ok(f.node.cri());
    let pod = ok(cri.run_pod_sandbox(&f.pod("verbs")));
    let spec = ContainerSpec::new("app", BUSYBOX_IMAGE).shell("echo ready; sleep 600");
    let id = ok(cri.run_container(&pod, &spec));
    f.wait_for_line(&spec.log_file(pod.log_directory()), "ready", BOOT);
    let ctr = |args: &[&str]| {
        let out = f.node.ctr().args(args).output().expect("ctr");
        assert!(
            out.status.success(),
            "ctr {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ctr(&["task", "pause", &id]);
    assert!(
        ctr(&["task", "ls"])
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("PAUSED"))
    );
    ctr(&["task", "resume", &id]);
    assert!(
        ctr(&["task", "ls"])
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("RUNNING"))
    );
    assert_eq!(
        ok(cri.exec_sync(&id, &["echo", "after-resume"], 30)).stdout_text(),
        "after-resume\n"
    );
    // The container's launcher (its proxy: the VM is the pod's).
    let pids = ctr(&["task", "ps", &id]);
    let commands: Vec<String> = pids
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().next())
        .map(|pid| {
            String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()).into_owned()
        })
        .collect();
    assert!(
        commands.iter().any(|c| c.contains("runcvm\0launch")),
        "the launcher: {pids} {commands:?}"
    );
    assert!(
        !commands
            .iter()
            .any(|c| c.contains("qemu-system") || c.contains("firecracker")),
        "no VMM in the container's cgroup: {commands:?}"
    );

    let features = |binary: &Path| {
        let out = Command::new(binary).arg("features").output().expect("features");
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("features are JSON")
    };
    let mut runc = features(&which_runc());
    let runcvm = features(&install_root().join("bin/runcvm-runtime"));
    assert_eq!(
        runcvm["linux"]["mountExtensions"]["idmap"]["enabled"],
        serde_json::json!(true)
    );
    assert!(
        runcvm["linux"]["namespaces"]
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n == "user"))
    );
    // Everything else is runc's own answer.
    runc["linux"]["mountExtensions"]["idmap"] = runcvm["linux"]["mountExtensions"]["idmap"].clone();
    runc["linux"]["namespaces"] = runcvm["linux"]["namespaces"].clone();
    assert_eq!(runcvm, runc);
}

fn which_runc() -> std::path::PathBuf {
    [
        "/usr/sbin/runc",
        "/usr/bin/runc",
        "/usr/local/sbin/runc",
        "/usr/local/bin/runc",
    ]
    .iter()
    .map(std::path::PathBuf::from)
    .find(|p| p.is_file())
    .expect("runc is installed")
}

/// A pod cannot change how its guest boots: `RUNCVM_KERNEL_ARGS=init=/bin/sh`
/// in its env (as an image's `ENV` would put it there) is ignored, said
/// once in the container's log, and the workload runs as its user under
/// runcvm's init, with the node's kernel arguments instead.
#[test]
#[ignore = "T3: a private containerd with the runcvm handler; run scripts/test.sh"]
fn the_pods_env_cannot_change_how_its_guest_boots() {
    let f = Fixture::start(Handler::RUNCVM);
    let cri = ok(f.node.cri());
    let pod = ok(cri.run_pod_sandbox(&f.pod("bootargs")));
    let spec = ContainerSpec::new("app", BUSYBOX_IMAGE)
        .run_as_user(1000)
        .run_as_group(1000)
        .env("RUNCVM_KERNEL_ARGS", "init=/bin/sh")
        .env("RUNCVM_HYPERVISOR", "qemu")
        .shell("id -u; cat /proc/cmdline");
    let id = ok(cri.run_container(&pod, &spec));
    let info = ok(cri.wait_exited(&id, BOOT));
    let lines = ok(crilog::read(&spec.log_file(pod.log_directory())));
    assert_eq!(info.exit_code, 0, "{info:?} {lines:?}");
    let stdout: Vec<&str> = lines
        .iter()
        .filter(|l| l.stream == Stream::Stdout)
        .map(|l| l.line.as_str())
        .collect();
    assert_eq!(stdout.first(), Some(&"1000"), "{lines:?}");
    let cmdline = stdout.get(1).expect("the guest's command line");
    let words: Vec<&str> = cmdline.split_whitespace().collect();
    assert!(words.contains(&"init=/.runcvm/init"), "{cmdline}");
    assert!(words.contains(&support::NODE_KERNEL_ARG), "{cmdline}");
    assert!(!cmdline.contains("/bin/sh"), "{cmdline}");
    for name in ["RUNCVM_KERNEL_ARGS", "RUNCVM_HYPERVISOR"] {
        let note = format!("{name} in the container's env is ignored: a pod cannot change how its guest boots");
        let said: Vec<_> = lines.iter().filter(|l| l.line.contains(&note)).collect();
        assert_eq!(said.len(), 1, "{lines:?}");
        assert_eq!(said[0].stream, Stream::Stderr, "{lines:?}");
    }
}

/// A node that crashes while a VM pod runs (containerd and its shims
/// killed, the pod's processes with them, `/run` wiped, as a reboot does)
/// leaves the container's folder without a `delete`. Once it is older than
/// the grace period, the next create collects it, and nothing of the old
/// pod is left: no folder, launch file or record, process, mount, network
/// namespace (and so no tap), cgroup or runtime state.
#[test]
#[ignore = "T3: a private containerd with the runcvm handler; run scripts/test.sh"]
fn the_folders_of_a_crashed_nodes_containers_go_at_the_next_create() {
    let mut f = Fixture::start(Handler::RUNCVM);
    let cri = ok(f.node.cri());
    let pod = ok(cri.run_pod_sandbox(&f.pod("crashed")));
    let spec = ContainerSpec::new("app", BUSYBOX_IMAGE).shell("echo ready; sleep 600");
    let id = ok(cri.run_container(&pod, &spec));
    f.wait_for_line(&spec.log_file(pod.log_directory()), "ready", BOOT);
    let folder = support::state_folder(&id);
    let launch_file = folder.with_file_name(format!("{id}.launch.json"));
    let record = folder.with_file_name(format!("{id}.runc-root"));
    assert!(folder.is_dir() && launch_file.is_file() && record.is_file());
    // The pod's VM's: the sandbox's folder, with the pod's socket and log.
    let sandbox_folder = support::state_folder(&pod.id);
    assert!(sandbox_folder.join("pod").is_dir());

    ok(f.node.crash_and_reboot(&[&pod.id, &id]));
    assert!(
        folder.is_dir() && sandbox_folder.is_dir(),
        "the crash itself removed the folders"
    );
    // Past the grace period (10 minutes), as a reboot takes.
    let backdated = Command::new("touch")
        .args(["-d", "20 minutes ago"])
        .arg(&folder)
        .arg(&sandbox_folder)
        .status()
        .expect("touch");
    assert!(backdated.success());

    let cri = ok(f.node.cri());
    let after = ok(cri.run_pod_sandbox(&f.pod("after")));
    let next = ContainerSpec::new("app", BUSYBOX_IMAGE).shell("echo ready; sleep 600");
    let next_id = ok(cri.run_container(&after, &next));
    f.wait_for_line(&next.log_file(after.log_directory()), "ready", BOOT);
    assert!(!folder.exists(), "the crashed container's folder is still there");
    assert!(!launch_file.exists() && !record.exists());
    assert!(!sandbox_folder.exists(), "the crashed pod VM's folder is still there");
    f.node.assert_nothing_left(&[&pod.id, &id]);
    // The new container's folder is its own and stays.
    assert!(support::state_folder(&next_id).is_dir());
    ok(cri.stop_pod_sandbox(&after.id));
    ok(cri.remove_pod_sandbox(&after.id));
}

/// A pod as the `restricted` Pod Security Standard wants it: non-root, every
/// capability dropped. The VM runs (the launcher gets CAP_NET_ADMIN,
/// CAP_SETUID and CAP_SETGID alone), `---` runs as the workload's user with
/// no capability at all, and the VMM as the VMM user with none either.
#[test]
#[ignore = "T3: a private containerd with the runcvm handler; run scripts/test.sh"]
fn a_restricted_pod_runs_and_beside_the_launcher_is_the_workloads_user() {
    let f = Fixture::start(Handler::RUNCVM);
    let cri = ok(f.node.cri());
    let pod = ok(cri.run_pod_sandbox(&f.pod("restricted")));
    let volume = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(volume.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).expect("chmod");
    let mut spec = ContainerSpec::new("app", BUSYBOX_IMAGE)
        .run_as_user(1000)
        .run_as_group(1000)
        .mount(volume.path(), "/data", false)
        .shell("id -u; grep NoNewPrivs /proc/self/status; echo x > /data/mine; echo ready; sleep 600");
    let linux = spec.config.linux.get_or_insert_with(Default::default);
    let security = linux.security_context.get_or_insert_with(Default::default);
    security.capabilities = Some(k8s_cri::v1::Capability {
        drop_capabilities: vec!["ALL".into()],
        ..Default::default()
    });
    // allowPrivilegeEscalation: false
    security.no_new_privs = true;
    let id = ok(cri.run_container(&pod, &spec));
    let lines = f.wait_for_line(&spec.log_file(pod.log_directory()), "ready", BOOT);
    assert!(
        lines.iter().any(|l| l.stream == Stream::Stdout && l.line == "1000"),
        "{lines:?}"
    );
    // In the guest too, set-user-ID binaries raise nothing.
    assert!(
        lines
            .iter()
            .any(|l| l.line.starts_with("NoNewPrivs:") && l.line.ends_with('1')),
        "{lines:?}"
    );
    use std::os::unix::fs::MetadataExt;
    let mine = std::fs::metadata(volume.path().join("mine")).expect("the workload's file on the host");
    assert_eq!((mine.uid(), mine.gid()), (1000, 1000));
    let beside = ok(cri.exec_sync(
        &id,
        &[
            "---",
            "sh",
            "-c",
            "id -u; grep -E '^Cap(Eff|Prm|Amb)' /proc/self/status",
        ],
        30,
    ));
    assert_eq!(beside.exit_code, 0, "{beside:?}");
    let text = beside.stdout_text();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("1000"), "{text}");
    for line in lines {
        assert!(
            line.ends_with("0000000000000000"),
            "a capability beside the launcher: {text}"
        );
    }
    let in_vm = ok(cri.exec_sync(&id, &["id", "-u"], 30));
    assert_eq!(in_vm.stdout_text(), "1000\n", "{in_vm:?}");
    // The VMM, which the guest would attack, holds no capability, though
    // the launcher has what it needs. (Its bounding set stays: emptying it
    // takes CAP_SETPCAP, which the pod's sandbox lacks; behind no_new_privs
    // and an empty permitted set it is out of reach.) It is the pod's, in
    // the sandbox, read from the node.
    let status = vmm_status(&pod.id);
    let sets: Vec<&str> = status
        .lines()
        .filter(|l| l.starts_with("Cap") && !l.starts_with("CapBnd") || l.starts_with("NoNewPrivs"))
        .collect();
    assert_eq!(sets.len(), 5, "one VMM's four sets and no_new_privs: {status}");
    for line in sets {
        let expected = if line.starts_with("NoNewPrivs") {
            "1"
        } else {
            "0000000000000000"
        };
        assert!(line.ends_with(expected), "the VMM: {status}");
    }
    // Nor is it root: it runs as the node's VMM user (the default, 65520),
    // in no supplementary group.
    let normal: Vec<String> = status
        .lines()
        .filter(|l| l.starts_with("Uid:") || l.starts_with("Gid:") || l.starts_with("Groups:"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        normal,
        [
            "Uid: 65520 65520 65520 65520",
            "Gid: 65520 65520 65520 65520",
            "Groups:"
        ],
        "{status}"
    );
}

/// `/proc/PID/status` of the one VMM in the cgroup of container `id` (a
/// pod's sandbox), found by its command line on the node.
fn vmm_status(id: &str) -> String {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let path = entry.path();
        let in_container = std::fs::read_to_string(path.join("cgroup")).is_ok_and(|c| c.contains(id));
        let cmdline = std::fs::read(path.join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if in_container && (cmdline.contains("qemu-system") || cmdline.contains("firecracker")) {
            found.push(std::fs::read_to_string(path.join("status")).unwrap_or_default());
        }
    }
    assert_eq!(found.len(), 1, "one VMM in {id}'s cgroup: {found:?}");
    found.remove(0)
}
