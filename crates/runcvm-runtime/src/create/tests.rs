use super::*;
use crate::state::read_node_launch;
use serde_json::json;

/// A fake install (the files need only exist for create) and a bundle with
/// a tiny rootfs.
struct Fixture {
    _dir: tempfile::TempDir,
    install: Install,
    bundle: PathBuf,
    state_root: PathBuf,
    data: PathBuf,
}

/// The size of a file of the fixture's image, which no boot disk may hold.
const IMAGE_FILE_BYTES: u64 = 16 << 20;

fn fixture(config: &serde_json::Value) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("opt-runcvm");
    for file in [
        "bin/runcvm",
        "bin/runcvm-init",
        "kernel/vmlinux",
        "qemu/lib/ld-linux-x86-64.so.2",
        "qemu/bin/qemu-system-x86_64",
    ] {
        let path = root.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"\x7fELF").unwrap();
    }
    for dir in ["qemu/share", "qemu/modules"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    let bundle = dir.path().join("bundle");
    std::fs::create_dir_all(bundle.join("rootfs/bin")).unwrap();
    std::fs::write(bundle.join("rootfs/bin/app"), b"app").unwrap();
    let image_file = vec![7u8; usize::try_from(IMAGE_FILE_BYTES).unwrap()];
    std::fs::write(bundle.join("rootfs/bin/large"), image_file).unwrap();
    std::fs::write(bundle.join("config.json"), serde_json::to_vec(config).unwrap()).unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(dir.path().join("token"), b"t").unwrap();
    Fixture {
        install: Install::at(root).unwrap(),
        bundle,
        state_root: dir.path().join("state"),
        data,
        _dir: dir,
    }
}

fn workload_config() -> serde_json::Value {
    json!({
        "ociVersion": "1.0.2-dev",
        "process": {"user": {"uid": 1000, "gid": 1000}, "args": ["/bin/app"], "env": ["PATH=/bin", "RUNCVM_ACCEL=tcg"], "cwd": "/"},
        "root": {"path": "rootfs"},
        "hostname": "pod-a",
        "mounts": [],
        "annotations": {"io.kubernetes.cri.container-type": "container"},
        "linux": {"namespaces": [{"type": "network", "path": "/proc/self/ns/net"}, {"type": "pid"}, {"type": "ipc"}], "resources": {"memory": {"limit": 268435456}}},
        "x-extension": true
    })
}

fn prepare_in(fx: &Fixture, id: &str) -> Result<PathBuf, CreateError> {
    prepare_as(fx, id, &PodKind::OwnVm)
}

fn prepare_as(fx: &Fixture, id: &str, kind: &PodKind) -> Result<PathBuf, CreateError> {
    let config = BundleConfig::read(&fx.bundle)?;
    prepare(
        &CreateRequest {
            bundle: &fx.bundle,
            id,
            install: &fx.install,
            state_root: &fx.state_root,
            node: &namespaces::NodeNamespaces::default(),
            log: None,
            log_json: false,
            kind,
        },
        &config,
    )
}

fn with_mounts(fx: &Fixture, mounts: serde_json::Value) {
    let mut config = workload_config();
    config["mounts"] = mounts;
    std::fs::write(fx.bundle.join("config.json"), serde_json::to_vec(&config).unwrap()).unwrap();
}

#[test]
fn a_workload_gets_a_state_folder_and_a_launcher_config() {
    let fx = fixture(&workload_config());
    let token = fx.data.parent().unwrap().join("token");
    with_mounts(
        &fx,
        json!([
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/etc/hosts", "type": "bind", "source": "/etc/hosts", "options": ["rbind", "ro"]},
            {"destination": "/dev/termination-log", "type": "bind", "source": token, "options": ["rbind"]},
            {"destination": "/data", "type": "bind", "source": fx.data, "options": ["rbind", "rprivate", "ro"]},
            {"destination": "/run/secrets/token", "type": "bind", "source": token, "options": ["rbind"]}
        ]),
    );
    let state = prepare_in(&fx, "c1").unwrap();
    assert_eq!(state, fx.state_root.join("containers/c1"));
    // The boot disk's mount point: empty on the node.
    assert_eq!(std::fs::metadata(state.join("disk.ext4")).unwrap().len(), 0);
    // Shared with the VMM's group on the node (by root; a runtime of
    // another user has no VMM user to share with).
    use std::os::unix::fs::MetadataExt;
    let meta = |p: &Path| std::fs::metadata(p).unwrap();
    if effective_uid() == 0 {
        assert_eq!((meta(&state).gid(), meta(&state).mode() & 0o7777), (65520, 0o710));
        assert_eq!(
            (meta(&state.join("vmm")).gid(), meta(&state.join("vmm")).mode() & 0o7777),
            (65520, 0o2770)
        );
        // The node's boot disk: every VM reads it, none may write it.
        let launch = ContainerLaunch::from_json(&std::fs::read(state.join(LAUNCH_FILE)).unwrap()).unwrap();
        let disk = meta(Path::new(&launch.boot_disk));
        assert_eq!((disk.gid(), disk.mode() & 0o777), (65520, 0o440));
    } else {
        assert_eq!(meta(&state).mode() & 0o7777, 0o700);
    }
    let launch = ContainerLaunch::from_json(&std::fs::read(state.join(LAUNCH_FILE)).unwrap()).unwrap();
    assert_eq!(
        (launch.process.uid, launch.accel.as_str(), launch.memory_mib),
        (1000, "tcg", 256)
    );
    // kubelet's termination message file is shared (copied back at the
    // end); /proc and the pod's name files are the guest's own.
    assert_eq!(
        launch.volumes,
        [
            LaunchVolume {
                path: "/dev/termination-log".into(),
                read_only: false,
                kind: VolumeKind::File
            },
            LaunchVolume {
                path: "/data".into(),
                read_only: true,
                kind: VolumeKind::Folder
            },
            LaunchVolume {
                path: "/run/secrets/token".into(),
                read_only: false,
                kind: VolumeKind::File
            },
        ]
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        config["process"]["args"],
        json!(["/opt/runcvm/bin/runcvm", "launch", "/.runcvm"])
    );
    assert_eq!(config["x-extension"], json!(true));
    assert_eq!(
        config["linux"]["resources"]["memory"]["limit"],
        json!(268_435_456 + (runcvm_host::resources::MEMORY_OVERHEAD_MIB << 20))
    );
    let destinations: Vec<&str> = config["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["destination"].as_str().unwrap())
        .collect();
    assert!(
        destinations.ends_with(&["/opt/runcvm", "/.runcvm", "/.runcvm/disk.ext4", "/.runcvm/root"]),
        "{destinations:?}"
    );
    // The node's one boot disk, bound read-only over the mount point: not
    // even the pod's root beside the launcher may write what every VM boots.
    let boot = &config["mounts"].as_array().unwrap()[destinations.len() - 2];
    assert_eq!(boot["source"], json!(launch.boot_disk));
    assert_eq!(boot["options"], json!(["bind", "ro", "nosuid", "nodev", "noexec"]));
    // The container's root is served from its own file system, without the
    // mounts on it (`bind`, not `rbind`), and never copied: the boot disk
    // holds /.runcvm alone, and the folder the root is bound to is empty
    // on the node.
    let root = &config["mounts"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(root["source"], json!(fx.bundle.join("rootfs").display().to_string()));
    assert_eq!(root["options"][0], json!("bind"));
    assert_eq!(std::fs::read_dir(state.join("root")).unwrap().count(), 0);
    let allocated = meta(Path::new(&launch.boot_disk)).blocks() * 512;
    assert!(allocated < IMAGE_FILE_BYTES, "the boot disk holds {allocated} bytes");
    // Not even built per container: the node's one boot disk.
    let boot_disks: Vec<PathBuf> = std::fs::read_dir(fx.state_root.join("boot"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(boot_disks, [PathBuf::from(&launch.boot_disk)]);
    // The container's process and plan travel in the launch file, for
    // the launcher's Start.
    assert_eq!(launch.plan.memory_limit_bytes, Some(268_435_456));
}

#[test]
fn a_sandbox_is_recognised() {
    let mut config = workload_config();
    config["annotations"]["io.kubernetes.cri.container-type"] = json!("sandbox");
    let fx = fixture(&config);
    let config = BundleConfig::read(&fx.bundle).unwrap();
    assert_eq!(config.role(), runcvm_spec::oci::ContainerRole::Sandbox);
}

/// Refused input names the problem and leaves config.json and the state
/// folder as they were.
fn assert_refused(fx: &Fixture, expected: &str) {
    let before = std::fs::read(fx.bundle.join("config.json")).unwrap();
    let err = prepare_in(fx, "bad").unwrap_err();
    let message = runcvm_log::error_chain(&err);
    assert!(message.contains(expected), "{message}");
    assert_eq!(std::fs::read(fx.bundle.join("config.json")).unwrap(), before);
    assert!(!fx.state_root.join("containers/bad").exists());
}

#[test]
fn bad_input_is_refused_clearly_and_leaves_nothing() {
    let fx = fixture(&workload_config());
    std::fs::write(fx.bundle.join("config.json"), b"{\"process\": ").unwrap();
    assert_refused(&fx, "config.json is not a valid OCI runtime config: EOF while parsing");

    let mut config = workload_config();
    config["linux"]["devices"] = json!([{"path": "/dev/sda", "type": "b", "major": 8, "minor": 0}]);
    let fx = fixture(&config);
    assert_refused(&fx, "asks for host devices (/dev/sda)");

    let mut config = workload_config();
    config["linux"]["namespaces"] = json!([{"type": "pid"}]);
    assert_refused(&fixture(&config), "hostNetwork");

    let fx = fixture(&workload_config());
    with_mounts(
        &fx,
        json!([{"destination": "/run/docker.sock", "type": "bind", "source": "/dev/null", "options": ["rbind"]}]),
    );
    assert_refused(&fx, "mount /run/docker.sock: /dev/null is a device");

    let fx = fixture(&workload_config());
    with_mounts(
        &fx,
        json!([{"destination": "/gone", "type": "bind", "source": "/nonexistent/x", "options": ["rbind"]}]),
    );
    assert_refused(&fx, "cannot inspect its source /nonexistent/x");

    let fx = fixture(&workload_config());
    with_mounts(
        &fx,
        json!([{"destination": "/.runcvm/x", "type": "bind", "source": "/tmp", "options": ["rbind"]}]),
    );
    assert_refused(&fx, "mount /.runcvm/x: /.runcvm is runcvm's own");

    let mut config = workload_config();
    config["process"]["env"] = json!(["RUNCVM_ACCEL=warp"]);
    assert_refused(&fixture(&config), "RUNCVM_ACCEL=\"warp\"");

    let mut config = workload_config();
    config["process"]["args"] = json!([]);
    assert_refused(&fixture(&config), "no arguments");

    let mut config = workload_config();
    config["mounts"] =
        json!([{"destination": "/mnt", "type": "bind", "source": "/tmp", "options": ["rbind", "rshared"]}]);
    assert_refused(
        &fixture(&config),
        "mount /mnt: Bidirectional mount propagation (rshared)",
    );

    let mut config = workload_config();
    config["linux"]["seccomp"] =
        json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_NEW_LISTENER"]});
    assert_refused(&fixture(&config), "seccomp profile cannot be applied in the VM");

    let mut config = workload_config();
    config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    assert_refused(
        &fixture(&config),
        "user namespace (hostUsers: false) without gid mappings",
    );

    let mut config = workload_config();
    config["linux"]["namespaces"] =
        json!([{"type": "network", "path": "/proc/self/ns/net"}, {"type": "pid"}, {"type": "ipc"}, {"type": "user"}]);
    assert_refused(
        &fixture(&config),
        "user namespace (hostUsers: false) without uid mappings",
    );

    let mut config = workload_config();
    config["annotations"]["run.runcvm.launcher"] = json!("rewritten");
    assert_refused(&fixture(&config), "was rewritten by runcvm already");
}

/// Writes the node's settings of `fx`'s install, as install would.
fn settings(fx: &Fixture, text: &str, mode: u32) {
    let path = fx.install.root().join(SETTINGS_FILE);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
}

#[test]
fn the_guest_boots_as_the_node_says_whatever_the_pods_env_asks() {
    let mut config = workload_config();
    config["process"]["env"] = json!([
        "PATH=/bin",
        "RUNCVM_ACCEL=tcg",
        "RUNCVM_KERNEL_ARGS=init=/bin/sh",
        "RUNCVM_HYPERVISOR=firecracker"
    ]);
    let fx = fixture(&config);
    settings(
        &fx,
        "hypervisor = \"qemu\"\nkernel_args = [\"loglevel=4\"]\nvmm_uid = 70000\nvmm_gid = 70001\n",
        0o600,
    );
    let log = fx.state_root.with_file_name("runtime.log");
    let request_config = BundleConfig::read(&fx.bundle).unwrap();
    let state = prepare(
        &CreateRequest {
            bundle: &fx.bundle,
            id: "c1",
            install: &fx.install,
            state_root: &fx.state_root,
            node: &namespaces::NodeNamespaces::default(),
            log: Some(&log),
            log_json: false,
            kind: &PodKind::OwnVm,
        },
        &request_config,
    )
    .unwrap();
    let launch = ContainerLaunch::from_json(&std::fs::read(state.join(LAUNCH_FILE)).unwrap()).unwrap();
    assert_eq!(launch.kernel_args, ["loglevel=4"]);
    assert_eq!(launch.hypervisor, LaunchHypervisor::Qemu);
    assert_eq!(launch.vmm_user, runcvm_spec::VmmUser { uid: 70000, gid: 70001 });
    // The workload keeps its env; the launcher gets neither variable.
    assert!(
        launch
            .process
            .env
            .contains(&runcvm_spec::ByteString::from("RUNCVM_KERNEL_ARGS=init=/bin/sh"))
    );
    let rewritten: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.bundle.join("config.json")).unwrap()).unwrap();
    let env = rewritten["process"]["env"].as_array().unwrap();
    assert!(
        !env.iter()
            .any(|e| e.as_str().unwrap().starts_with("RUNCVM_KERNEL_ARGS")),
        "{env:?}"
    );
    assert!(
        !env.iter().any(|e| e.as_str().unwrap().starts_with("RUNCVM_HYPERVISOR")),
        "{env:?}"
    );
    // Each is said to be ignored, once (on stderr, the container's, and in the runtime's log).
    let log = std::fs::read_to_string(&log).unwrap();
    for name in ["RUNCVM_KERNEL_ARGS", "RUNCVM_HYPERVISOR"] {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(name)).collect();
        assert_eq!(lines.len(), 1, "{log}");
        assert!(
            lines[0].contains("is ignored: a pod cannot change how its guest boots"),
            "{log}"
        );
    }
}

#[test]
fn node_settings_that_are_wrong_or_writable_by_others_refuse_the_pod() {
    let fx = fixture(&workload_config());
    settings(&fx, "kernel_args = [\"init=/bin/sh\"]\n", 0o600);
    assert_refused(&fx, "would replace runcvm's init");
    let fx = fixture(&workload_config());
    settings(&fx, "hypervisor = \"qemu\"\n", 0o666);
    assert_refused(&fx, "could be written by others than root");
    let fx = fixture(&workload_config());
    settings(&fx, "hypervisor = \"firecracker\"\n", 0o600);
    assert_refused(&fx, "the node's setting hypervisor = \"firecracker\" (");
}

#[test]
fn a_limit_below_the_smallest_guest_gets_the_smallest_guest_and_is_held_in_it() {
    let mut config = workload_config();
    config["linux"]["resources"]["memory"]["limit"] = json!(15 << 20);
    let fx = fixture(&config);
    let state = prepare_in(&fx, "small").unwrap();
    let launch = read_node_launch(&fx.state_root, "small").unwrap();
    assert_eq!(launch.memory_mib, 64);
    let rewritten: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        rewritten["linux"]["resources"]["memory"]["limit"],
        json!((64 + 128) << 20),
        "the cgroup holds the smallest guest and the overhead"
    );
    assert!(state.join("disk.ext4").exists());
}

#[test]
fn a_user_namespace_goes_to_the_guest_and_out_of_the_launchers_config() {
    let mut config = workload_config();
    config["linux"]["namespaces"] = json!([
        {"type": "network", "path": "/proc/self/ns/net"}, {"type": "pid"}, {"type": "ipc"},
        {"type": "user", "path": "/proc/self/ns/user"}
    ]);
    config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 65536, "size": 65536}]);
    config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 65536, "size": 65536}]);
    let fx = fixture(&config);
    prepare_in(&fx, "userns").unwrap();
    let launch = read_node_launch(&fx.state_root, "userns").unwrap();
    let userns = launch.plan.user_namespace.expect("the mappings reach the launcher");
    assert_eq!(userns.uid_mappings[0].host_id, 65536);
    let rewritten: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.bundle.join("config.json")).unwrap()).unwrap();
    assert!(rewritten["linux"].get("uidMappings").is_none());
    let kinds: Vec<&str> = rewritten["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["network", "pid", "ipc"],
        "the launcher stays in the node's user namespace"
    );
}

#[test]
fn a_privileged_container_loses_the_nodes_devices_but_a_device_request_is_refused() {
    let mut config = workload_config();
    config["linux"]["devices"] = json!([{"path": "/dev/sda", "type": "b", "major": 8, "minor": 0}]);
    config["linux"]["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
    let fx = fixture(&config);
    prepare_in(&fx, "privileged").unwrap();
    let rewritten: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.bundle.join("config.json")).unwrap()).unwrap();
    let paths: Vec<&str> = rewritten["linux"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert!(!paths.contains(&"/dev/sda"), "{paths:?}");
}

#[test]
fn a_disk_that_cannot_be_built_leaves_no_state_folder() {
    let fx = fixture(&workload_config());
    // Guest init that cannot be copied fails the disk builder, after the
    // state folder was made.
    let init = fx.install.guest_init();
    std::fs::remove_file(&init).unwrap();
    std::os::unix::fs::symlink("missing", &init).unwrap();
    assert_refused(
        &fx,
        "cannot give the container the node's boot disk: cannot read guest init",
    );
}

fn mounts_of(config: &serde_json::Value) -> Vec<(String, String)> {
    config["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["destination"].as_str().unwrap().to_owned(),
                m["source"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn read_config(fx: &Fixture) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fx.bundle.join("config.json")).unwrap()).unwrap()
}

#[test]
fn a_pod_vms_sandbox_boots_the_vm_and_its_containers_attach_to_it() {
    let mut sandbox = workload_config();
    sandbox["process"]["args"] = json!(["/pause"]);
    sandbox["annotations"] = json!({
        "io.kubernetes.cri.container-type": "sandbox",
        "io.kubernetes.cri.sandbox-cpu-period": "100000",
        "io.kubernetes.cri.sandbox-cpu-quota": "200000",
        "io.kubernetes.cri.sandbox-cpu-shares": "2048",
        "io.kubernetes.cri.sandbox-memory": "536870912",
    });
    sandbox["linux"]["resources"] = json!({"cpu": {"shares": 2}});
    let fx = fixture(&sandbox);
    let config = BundleConfig::read(&fx.bundle).unwrap();
    let kind = pod_vm::kind_of(&config.config, &fx.state_root, &namespaces::NodeNamespaces::default())
        .unwrap()
        .unwrap();
    assert_eq!(kind, PodKind::PodVm);
    let state = prepare_as(&fx, "s1", &kind).unwrap();
    let launch = read_node_launch(&fx.state_root, "s1").unwrap();
    assert_eq!(launch.role, LaunchRole::PodVm);
    // Sized from the pod's sums, not the pause container's cgroup.
    assert_eq!((launch.cpus, launch.memory_mib), (2, 512));
    assert_eq!((launch.rootfs.as_deref(), launch.volumes.len()), (None, 0));
    assert!(state.join("pod").is_dir() && !state.join("root").exists());
    let rewritten = read_config(&fx);
    let mounts = mounts_of(&rewritten);
    let destinations: Vec<&str> = mounts.iter().map(|(d, _)| d.as_str()).collect();
    assert!(
        destinations.ends_with(&["/opt/runcvm", "/.runcvm", "/.runcvm/disk.ext4"]),
        "{destinations:?}"
    );
    assert_eq!(
        rewritten["linux"]["resources"]["cpu"]["shares"],
        json!(2048),
        "the pod's weight"
    );

    // A container of that pod is made in its VM: no boot disk, the pod's
    // socket's folder bound read-only, its own root, its name files copied.
    let mut workload = workload_config();
    workload["annotations"]["io.kubernetes.cri.sandbox-id"] = json!("s1");
    workload["mounts"] = json!([
        {"destination": "/etc/hosts", "type": "bind", "source": "/etc/hosts", "options": ["rbind", "ro"]}
    ]);
    std::fs::write(fx.bundle.join("config.json"), serde_json::to_vec(&workload).unwrap()).unwrap();
    let config = BundleConfig::read(&fx.bundle).unwrap();
    let kind = pod_vm::kind_of(&config.config, &fx.state_root, &namespaces::NodeNamespaces::default())
        .unwrap()
        .unwrap();
    assert!(matches!(&kind, PodKind::InPodVm { sandbox_id, .. } if sandbox_id == "s1"));
    let member = prepare_as(&fx, "c1", &kind).unwrap();
    let launch = read_node_launch(&fx.state_root, "c1").unwrap();
    assert_eq!(launch.role, LaunchRole::InPodVm { name: "c1".into() });
    assert_eq!(launch.volumes[0].path, "/etc/hosts");
    assert!(!member.join("disk.ext4").exists() && member.join("root").is_dir());
    let rewritten = read_config(&fx);
    let mounts = mounts_of(&rewritten);
    let destinations: Vec<&str> = mounts.iter().map(|(d, _)| d.as_str()).collect();
    assert!(
        destinations.ends_with(&["/opt/runcvm", "/.runcvm", "/.runcvm/pod", "/.runcvm/root"]),
        "{destinations:?}"
    );
    let pod_mount = &rewritten["mounts"].as_array().unwrap()[destinations.len() - 2];
    assert_eq!(pod_mount["source"], json!(state.join("pod").display().to_string()));
    assert!(pod_mount["options"].as_array().unwrap().contains(&json!("ro")));
    // Nor the network's administration: it reads the pod network's record.
    let caps = &rewritten["process"]["capabilities"]["bounding"];
    assert!(!caps.as_array().unwrap().contains(&json!("CAP_NET_ADMIN")), "{caps}");
    // The proxy needs no device and no overhead on the container's limit.
    assert_eq!(rewritten["linux"]["resources"]["memory"]["limit"], json!(268_435_456));
    assert!(
        rewritten["linux"]["devices"]
            .as_array()
            .is_none_or(|d| d.iter().all(|d| d["path"] != "/dev/kvm" && d["path"] != "/dev/net/tun"))
    );

    // The pod's socket's folder replaced by a link (the sandbox's launcher
    // can write its state folder): refused, nothing bound.
    let pod_folder = state.join("pod");
    std::fs::rename(&pod_folder, state.join("pod.real")).unwrap();
    std::os::unix::fs::symlink("/", &pod_folder).unwrap();
    let refused = pod_vm::kind_of(&config.config, &fx.state_root, &namespaces::NodeNamespaces::default())
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("the pod's socket's folder, is not usable"),
        "{refused}"
    );
    std::fs::remove_file(&pod_folder).unwrap();
    std::fs::rename(state.join("pod.real"), &pod_folder).unwrap();
    // A sandbox launch file that cannot be read is said, not taken for none.
    let node_copy = fx.state_root.join("containers/s1.launch.json");
    let kept = std::fs::read(&node_copy).unwrap();
    std::fs::write(&node_copy, b"{").unwrap();
    let unusable = pod_vm::kind_of(&config.config, &fx.state_root, &namespaces::NodeNamespaces::default())
        .unwrap_err()
        .to_string();
    assert!(
        unusable.contains("the pod's sandbox s1 cannot be used") && unusable.contains("delete the pod"),
        "{unusable}"
    );
    std::fs::write(&node_copy, kept).unwrap();
    // A sandbox that runs no pod VM (here, a container's): refused, the
    // pod to be made again; a container with no CRI sandbox at all is a pod
    // of one, a VM of its own.
    workload["annotations"]["io.kubernetes.cri.sandbox-id"] = json!("c1");
    let other = OciConfig::parse(&serde_json::to_vec(&workload).unwrap(), "config.json").unwrap();
    let refused = pod_vm::kind_of(&other, &fx.state_root, &namespaces::NodeNamespaces::default())
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("the pod's sandbox c1 runs no VM for the pod") && refused.contains("delete the pod"),
        "{refused}"
    );
    let mut unpodded = workload.clone();
    unpodded["annotations"] = json!({});
    let alone = OciConfig::parse(&serde_json::to_vec(&unpodded).unwrap(), "config.json").unwrap();
    assert_eq!(
        pod_vm::kind_of(&alone, &fx.state_root, &namespaces::NodeNamespaces::default()).unwrap(),
        Some(PodKind::OwnVm)
    );
    // A hostNetwork pod's sandbox (no network namespace of its own) stays
    // runc's: its containers are refused at their create, as before.
    let mut host_network = sandbox.clone();
    host_network["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "ipc"}]);
    let host = OciConfig::parse(&serde_json::to_vec(&host_network).unwrap(), "config.json").unwrap();
    assert_eq!(
        pod_vm::kind_of(&host, &fx.state_root, &namespaces::NodeNamespaces::default()).unwrap(),
        None
    );
    // A sandbox whose network namespace runc is to make (containerd 1.7
    // with a user namespace): runc's (its containers refused, as above).
    let mut new_network = sandbox.clone();
    new_network["linux"]["namespaces"] = json!([{"type": "network"}, {"type": "pid"}, {"type": "ipc"}]);
    let new_network = OciConfig::parse(&serde_json::to_vec(&new_network).unwrap(), "config.json").unwrap();
    assert_eq!(
        pod_vm::kind_of(&new_network, &fx.state_root, &namespaces::NodeNamespaces::default()).unwrap(),
        None
    );
    // The annotation that used to opt a pod out of its VM is no more: the
    // sandbox boots the pod's VM all the same.
    sandbox["annotations"]["runcvm.io/pod-vm"] = json!("false");
    let annotated = OciConfig::parse(&serde_json::to_vec(&sandbox).unwrap(), "config.json").unwrap();
    assert_eq!(
        pod_vm::kind_of(&annotated, &fx.state_root, &namespaces::NodeNamespaces::default()).unwrap(),
        Some(PodKind::PodVm)
    );
}
