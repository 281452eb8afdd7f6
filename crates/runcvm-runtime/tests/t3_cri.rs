//! T3: pods through CRI, as kubelet drives them, on a private containerd
//! (1.6, or 2.x with `RUNCVM_T3_CONTAINERD=2`) whose `runcvm` handler is a
//! fresh `runcvm install` of this build. Each scenario runs with `runcvm`
//! and, for contrast, with plain `runc`: the Kubernetes-visible behaviour
//! must match; only the kernel differs. Run with
//! `cargo test -p runcvm-runtime --test t3_cri -- --ignored`.

mod support;

use runcvm_test_node::crilog::{self, Stream};
use runcvm_test_node::{BUSYBOX_IMAGE, ContainerSpec, StreamInput};
use std::time::Duration;
use support::{Fixture, Handler, host_kernel, ok};

const BOOT: Duration = Duration::from_secs(60);

/// The script prints the kernel, a line on each stream, its address and
/// MAC, then serves `hello` on port 8080 until stopped.
const SERVE: &str = "uname -r; echo err-line >&2; ip -o -4 addr show eth0; cat /sys/class/net/eth0/address; \
                     echo ready; while true; do echo hello | nc -l -p 8080; done";

fn workload_runs_with_the_pod_ip_and_logs_by_stream(handler: Handler) {
    let f = Fixture::start(handler);
    let cri = ok(f.node.cri());
    let pod = ok(cri.run_pod_sandbox(&f.pod("web")));
    let pod_ip = ok(cri.pod_sandbox_status(&pod.id)).ip;
    let spec = ContainerSpec::new("app", BUSYBOX_IMAGE).shell(SERVE);
    let id = ok(cri.run_container(&pod, &spec));
    f.wait_for_line(&spec.log_file(pod.log_directory()), "ready", BOOT);
    // stderr is copied apart from stdout: `ready` does not mean it is in.
    let lines = f.wait_for_line(&spec.log_file(pod.log_directory()), "err-line", Duration::from_secs(5));

    let stdout = support::lines_of(&lines, Stream::Stdout);
    let kernel = stdout.first().copied().unwrap_or_default();
    if handler.vm {
        assert_ne!(
            kernel,
            host_kernel(),
            "the workload runs on the guest kernel: {lines:?}"
        );
    } else {
        assert_eq!(kernel, host_kernel());
    }
    assert!(stdout[1].contains(&format!("inet {pod_ip}/")), "{lines:?}");
    let stderr: Vec<&str> = lines
        .iter()
        .filter(|l| l.stream == Stream::Stderr && !l.line.contains("runcvm"))
        .map(|l| l.line.as_str())
        .collect();
    assert_eq!(stderr, ["err-line"], "{lines:?}");

    // The pod IP answers, from the VM.
    let got = f.fetch_from_node(&pod_ip, 8080);
    assert_eq!(got.trim(), "hello");
    ok(cri.stop_container(&id, 5));
}

fn exec_sync_runs_as_the_workload(handler: Handler) {
    let f = Fixture::start(handler);
    let cri = ok(f.node.cri());
    let pod = ok(cri.run_pod_sandbox(&f.pod("exec")));
    let spec = ContainerSpec::new("app", BUSYBOX_IMAGE)
        .shell("echo ready; sleep 600")
        .env("GREETING", "hi there")
        .working_dir("/home/app")
        .run_as_user(1000);
    let id = ok(cri.run_container(&pod, &spec));
    f.wait_for_line(&spec.log_file(pod.log_directory()), "ready", BOOT);
    let out = ok(cri.exec_sync(
        &id,
        &[
            "sh",
            "-c",
            "uname -r; echo $GREETING; id -u; pwd; echo oops >&2; exit 7",
        ],
        30,
    ));
    let stdout = out.stdout_text();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[1..], ["hi there", "1000", "/home/app"], "{out:?}");
    assert_eq!(lines[0] != host_kernel(), handler.vm, "{out:?}");
    assert_eq!(out.stderr_text(), "oops\n");
    assert_eq!(out.exit_code, 7);
    assert_eq!(ok(cri.exec_sync(&id, &["true"], 30)).exit_code, 0);
    if handler.vm {
        // `---` runs beside the launcher, as the workload's user too.
        let beside = ok(cri.exec_sync(&id, &["---", "id", "-u"], 30));
        assert_eq!(beside.stdout_text(), "1000\n", "{beside:?}");
    }
}

fn streaming_exec_runs_in_the_container(handler: Handler) {
    let f = Fixture::start(handler);
    let cri = ok(f.node.cri());
    let pod = ok(cri.run_pod_sandbox(&f.pod("stream")));
    let spec = ContainerSpec::new("app", BUSYBOX_IMAGE).shell("echo ready; sleep 600");
    let id = ok(cri.run_container(&pod, &spec));
    f.wait_for_line(&spec.log_file(pod.log_directory()), "ready", BOOT);
    let out = ok(f.node.exec_stream(
        &id,
        &["sh", "-c", "uname -r; echo err >&2; exit 3"],
        &StreamInput::default(),
        Duration::from_secs(30),
    ));
    assert_eq!(out.stdout_text().trim() != host_kernel(), handler.vm, "{out:?}");
    assert_eq!((out.stderr_text().as_str(), out.exit_code), ("err\n", 3), "{out:?}");
    let input = StreamInput {
        stdin: b"hello stdin\n".to_vec(),
        close_after_stdin: false,
    };
    let out = ok(f.node.exec_stream(
        &id,
        &["sh", "-c", "read line; echo got:$line"],
        &input,
        Duration::from_secs(30),
    ));
    assert_eq!(
        (out.stdout_text().as_str(), out.exit_code),
        ("got:hello stdin\n", 0),
        "{out:?}"
    );
}

fn volumes_hold_what_the_workload_wrote(handler: Handler) {
    let f = Fixture::start(handler);
    let cri = ok(f.node.cri());
    let host = tempfile::tempdir().expect("tempdir");
    std::fs::write(host.path().join("in.txt"), "from the host\n").expect("write");
    let empty_dir = tempfile::tempdir().expect("tempdir");
    let pod = ok(cri.run_pod_sandbox(&f.pod("volume")));
    let spec = ContainerSpec::new("app", BUSYBOX_IMAGE)
        .mount(host.path(), "/data", false)
        .mount(empty_dir.path(), "/cache", false)
        .shell("cat /data/in.txt > /data/out.txt; echo written >> /data/out.txt; echo scratch > /cache/s");
    let id = ok(cri.run_container(&pod, &spec));
    let info = ok(cri.wait_exited(&id, BOOT));
    assert_eq!(info.exit_code, 0, "{info:?} {}", f.log_text(&spec, &pod));
    let written = std::fs::read_to_string(host.path().join("out.txt")).expect("out.txt on the host");
    assert_eq!(written, "from the host\nwritten\n");
    assert_eq!(
        std::fs::read_to_string(empty_dir.path().join("s")).expect("s"),
        "scratch\n"
    );
}

/// `readOnlyRootFilesystem`: the workload and its execs cannot write to the
/// root, while a volume and `/dev/shm` take writes.
fn a_read_only_root_refuses_writes_but_volumes_take_them(handler: Handler) {
    let f = Fixture::start(handler);
    let cri = ok(f.node.cri());
    let host = tempfile::tempdir().expect("tempdir");
    let pod = ok(cri.run_pod_sandbox(&f.pod("readonly")));
    let spec = ContainerSpec::new("app", BUSYBOX_IMAGE)
        .read_only_root()
        .mount(host.path(), "/data", false)
        .shell(
            "touch /root-file 2>/dev/null && echo root-writable || echo root-read-only; \
             echo v > /data/f && echo volume-writable; echo s > /dev/shm/f && echo shm-writable; \
             echo ready; sleep 600",
        );
    let id = ok(cri.run_container(&pod, &spec));
    let lines = f.wait_for_line(&spec.log_file(pod.log_directory()), "ready", BOOT);
    assert_eq!(
        support::lines_of(&lines, Stream::Stdout),
        ["root-read-only", "volume-writable", "shm-writable", "ready"],
        "{lines:?}"
    );
    assert_eq!(
        std::fs::read_to_string(host.path().join("f")).expect("f on the host"),
        "v\n"
    );
    let exec = ok(cri.exec_sync(&id, &["touch", "/exec-file"], 30));
    assert_ne!(exec.exit_code, 0, "{exec:?}");
    assert!(exec.stderr_text().contains("Read-only file system"), "{exec:?}");
}

/// Runs `script` (which prints `ready` once its trap is set) and stops it
/// with a grace period; returns its status and how long the stop took.
fn stop_with_grace(f: &Fixture, name: &str, script: &str, grace: i64) -> (runcvm_test_node::ContainerInfo, Duration) {
    let cri = ok(f.node.cri());
    let pod = ok(cri.run_pod_sandbox(&f.pod(name)));
    let spec = ContainerSpec::new("app", BUSYBOX_IMAGE).shell(script);
    let id = ok(cri.run_container(&pod, &spec));
    f.wait_for_line(&spec.log_file(pod.log_directory()), "ready", BOOT);
    ok(cri.stop_container_timed(&id, grace))
}

fn stop_honours_the_term_trap_and_the_grace_period(handler: Handler) {
    let f = Fixture::start(handler);
    let (info, elapsed) = stop_with_grace(
        &f,
        "trap",
        "trap 'exit 3' TERM; echo ready; while true; do sleep 0.1; done",
        10,
    );
    assert_eq!(info.exit_code, 3, "{info:?}");
    // Far below the 10 s grace period: the trap answered.
    assert!(elapsed < Duration::from_secs(9), "took {elapsed:?}");
    let (info, elapsed) = stop_with_grace(
        &f,
        "ignore",
        "trap '' TERM; echo ready; while true; do sleep 0.1; done",
        2,
    );
    assert_eq!(info.exit_code, 137, "{info:?}");
    assert!(elapsed >= Duration::from_secs(2), "killed after only {elapsed:?}");
}

fn a_restart_keeps_ip_and_mac_and_traffic_works(handler: Handler) {
    let f = Fixture::start(handler);
    let cri = ok(f.node.cri());
    let pod = ok(cri.run_pod_sandbox(&f.pod("restart")));
    let pod_ip = ok(cri.pod_sandbox_status(&pod.id)).ip;
    let mut identities = Vec::new();
    for attempt in 0..2 {
        let spec = ContainerSpec::new("app", BUSYBOX_IMAGE).attempt(attempt).shell(SERVE);
        let id = ok(cri.run_container(&pod, &spec));
        let lines = f.wait_for_line(&spec.log_file(pod.log_directory()), "ready", BOOT);
        let stdout: Vec<String> = lines
            .iter()
            .filter(|l| l.stream == Stream::Stdout)
            .map(|l| l.line.clone())
            .collect();
        assert!(
            stdout[1].contains(&format!("inet {pod_ip}/")),
            "attempt {attempt}: {lines:?}"
        );
        identities.push(stdout[2].clone());
        let got = f.fetch_from_node(&pod_ip, 8080);
        assert_eq!(got.trim(), "hello", "attempt {attempt}");
        ok(cri.stop_container(&id, 5));
    }
    assert_eq!(identities[0], identities[1], "the MAC the workload sees");
}

fn a_removed_pod_leaves_nothing(handler: Handler) {
    let f = Fixture::start(handler);
    let cri = ok(f.node.cri());
    let pod = ok(cri.run_pod_sandbox(&f.pod("gone")));
    let spec = ContainerSpec::new("app", BUSYBOX_IMAGE).shell("echo ready; sleep 600");
    let id = ok(cri.run_container(&pod, &spec));
    f.wait_for_line(&spec.log_file(pod.log_directory()), "ready", BOOT);
    if handler.vm {
        assert!(
            support::state_folder(&id).is_dir(),
            "the running container has its state folder"
        );
        // Its root disk, listed on the node without booting (guide, section 5).
        let listing = support::inspect(&id);
        assert!(
            listing.contains(" init\n") && listing.contains("echo ready; sleep 600"),
            "{listing}"
        );
        // The container's launcher in its cgroup, the pod's VM in the
        // sandbox's.
        let launchers = support::processes_of_container(&id);
        assert!(
            launchers.iter().any(|p| p.contains("bin/runcvm launch")),
            "{launchers:?}"
        );
        let pod_vm = support::processes_of_container(&pod.id);
        assert!(
            pod_vm.iter().any(|p| p.contains("bin/runcvm launch"))
                && pod_vm.iter().any(|p| p.contains("qemu-system-x86_64")),
            "{pod_vm:?}"
        );
    }
    ok(cri.stop_pod_sandbox(&pod.id));
    ok(cri.remove_pod_sandbox(&pod.id));
    f.node.assert_nothing_left(&[&pod.id, &id]);
    for gone in [&pod.id, &id] {
        assert!(
            !support::state_folder(gone).exists(),
            "state folder of {gone} left behind"
        );
        assert!(runcvm_test_node::host::mounts_under(&support::state_folder(gone)).is_empty());
        let left = support::processes_of_container(gone);
        assert!(left.is_empty(), "{left:?}");
    }
}

/// Writes to the root file system, the workload's and an exec's, land in the
/// container's writable layer on the node, where kubelet counts them
/// (ephemeral storage); nothing of runcvm's stays after the pod (the layer
/// itself goes when containerd collects its snapshot, as under runc).
fn root_writes_land_in_the_writable_layer(handler: Handler) {
    let f = Fixture::start(handler);
    let cri = ok(f.node.cri());
    let pod = ok(cri.run_pod_sandbox(&f.pod("layer")));
    let spec = ContainerSpec::new("app", BUSYBOX_IMAGE)
        .shell("mkdir -p /var/app && echo kept > /var/app/state && echo ready; sleep 600");
    let id = ok(cri.run_container(&pod, &spec));
    f.wait_for_line(&spec.log_file(pod.log_directory()), "ready", BOOT);
    let exec = ok(cri.exec_sync(
        &id,
        &["sh", "-c", "echo from-exec > /exec-file; cat /var/app/state"],
        30,
    ));
    assert_eq!((exec.exit_code, exec.stdout_text().as_str()), (0, "kept\n"), "{exec:?}");
    let layer = runcvm_test_node::host::writable_layer(&id).expect("the container's root is an overlay mount");
    // The guest's writes reach the node once its client flushes them: at
    // the latest when the file is closed (close-to-open), here at once.
    assert_eq!(
        std::fs::read_to_string(layer.join("var/app/state")).expect("the workload's file in the layer"),
        "kept\n"
    );
    assert_eq!(
        std::fs::read_to_string(layer.join("exec-file")).expect("the exec's file in the layer"),
        "from-exec\n"
    );
    if handler.vm {
        // The guide's inspection without booting names the same layer.
        let shown = support::inspect(&id);
        assert!(
            shown.contains(&format!("/{id}/rootfs\n"))
                && shown.contains(&format!(
                    "writable layer (what the container wrote): {}\n",
                    layer.display()
                )),
            "{shown}"
        );
    }
    ok(cri.stop_pod_sandbox(&pod.id));
    ok(cri.remove_pod_sandbox(&pod.id));
    assert!(!support::state_folder(&id).exists(), "state folder of {id} left behind");
}

/// An image whose `/tmp` is a symlink keeps it, as under runc: the guest's
/// own tmpfs is not put over it.
fn an_images_tmp_symlink_is_kept(handler: Handler) {
    let scratch = tempfile::tempdir().expect("tempdir");
    let rootfs = runcvm_test_infra::busybox_rootfs(&scratch.path().join("rootfs")).expect("busybox rootfs");
    std::os::unix::fs::symlink("var/tmp", rootfs.join("tmp")).expect("the /tmp link");
    let image = runcvm_test_node::Image::new("runcvm.test/tmp-link:1", &rootfs).cmd(["/bin/sh"]);
    let options = runcvm_test_node::NodeOptions {
        images: vec![image],
        ..runcvm_test_node::NodeOptions::default()
    };
    let f = Fixture::start_with(handler, options);
    let cri = ok(f.node.cri());
    let pod = ok(cri.run_pod_sandbox(&f.pod("tmp-link")));
    let spec = ContainerSpec::new("app", "runcvm.test/tmp-link:1")
        .shell("readlink /tmp; echo linked > /tmp/f && cat /var/tmp/f; echo ready; sleep 600");
    let id = ok(cri.run_container(&pod, &spec));
    let lines = f.wait_for_line(&spec.log_file(pod.log_directory()), "ready", BOOT);
    assert_eq!(
        support::lines_of(&lines, Stream::Stdout),
        ["var/tmp", "linked", "ready"],
        "{lines:?}"
    );
    // Written through the image's link into its own folder: the writable
    // layer has it (no tmpfs of the guest's was put over it).
    let layer = runcvm_test_node::host::writable_layer(&id).expect("the container's root is an overlay mount");
    assert_eq!(
        std::fs::read_to_string(layer.join("var/tmp/f")).expect("the file in the layer"),
        "linked\n"
    );
}

fn runs_under_the_runtime_default_seccomp_profile(handler: Handler) {
    let f = Fixture::start(handler);
    let cri = ok(f.node.cri());
    let pod = ok(cri.run_pod_sandbox(&support::pod_with_runtime_default(f.pod("seccomp"))));
    // New files and folders get the modes asked for: under runcvm the
    // root's server, which the profile keeps from a umask of its own,
    // restores what the launcher's umask takes.
    let spec = support::container_with_runtime_default(
        ContainerSpec::new("app", BUSYBOX_IMAGE)
            .shell("umask 0; mkdir /made && touch /made/f && stat -c %a /made /made/f; echo hello; exit 4"),
    );
    let id = ok(cri.run_container(&pod, &spec));
    let info = ok(cri.wait_exited(&id, BOOT));
    assert_eq!(info.exit_code, 4, "{info:?}: {}", f.log_text(&spec, &pod));
    let lines = ok(crilog::read(&spec.log_file(pod.log_directory())));
    assert_eq!(
        support::lines_of(&lines, Stream::Stdout),
        ["777", "666", "hello"],
        "{lines:?}"
    );
}

/// `kubectl run -t` and `kubectl exec -t`: a container and an exec with a
/// terminal, which in the VM are the guest's own ptys.
fn terminals_reach_the_workload_and_execs(handler: Handler) {
    let f = Fixture::start(handler);
    let cri = ok(f.node.cri());
    let pod = ok(cri.run_pod_sandbox(&f.pod("tty")));
    let spec = ContainerSpec::new("app", BUSYBOX_IMAGE)
        .tty(true)
        .shell("tty; echo ready; sleep 600");
    let id = ok(cri.run_container(&pod, &spec));
    let lines = f.wait_for_line(&spec.log_file(pod.log_directory()), "ready", BOOT);
    let workload: Vec<&str> = lines
        .iter()
        .map(|l| l.line.trim_end_matches('\r'))
        .filter(|l| !l.contains("runcvm"))
        .collect();
    assert!(workload[0].starts_with("/dev/pts/"), "{lines:?}");

    // With stdin, as `kubectl exec -it` asks: containerd 1.6 closes a
    // terminal exec's output when it has no stdin, runc or runcvm alike.
    let url = ok(cri.exec(
        &id,
        &["sh", "-c", "tty; echo on-stderr >&2; exit 5"],
        runcvm_test_node::ExecStreams { stdin: true, tty: true },
    ));
    let netns = ok(f.node.netns_path());
    let stream = ok(runcvm_test_node::stream::connect_in(&netns, &url));
    let out = ok(runcvm_test_node::stream::exec(
        stream,
        &url,
        &StreamInput::default(),
        Duration::from_secs(30),
    ));
    let text = out.stdout_text().replace('\r', "");
    // With a terminal, stderr is the terminal too.
    assert!(text.starts_with("/dev/pts/") && text.contains("on-stderr\n"), "{out:?}");
    assert_eq!(out.exit_code, 5, "{out:?}");
    let plain = ok(cri.exec_sync(&id, &["sh", "-c", "tty || true"], 30));
    assert_eq!(plain.stdout_text(), "not a tty\n", "{plain:?}");
}

/// `securityContext.capabilities`: the workload and its execs hold exactly
/// the pod's capabilities, by the same numbers as under runc (in the VM the
/// guest applies them; the launcher's own are not the workload's).
fn capabilities_are_the_pods(handler: Handler) {
    /// CAP_KILL (5) and CAP_NET_BIND_SERVICE (10).
    const KILL_AND_BIND: &str = "0000000000000420";
    /// containerd's default set: CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL,
    /// SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT,
    /// MKNOD, AUDIT_WRITE, SETFCAP.
    const DEFAULT_SET: &str = "00000000a80425fb";
    const NONE: &str = "0000000000000000";
    const SCRIPT: &str = "grep -E '^Cap(Prm|Eff|Bnd|Amb)' /proc/self/status; echo ready; sleep 600";
    let status = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("Cap"))
            .map(str::to_owned)
            .collect()
    };
    // (permitted and effective, bounding): a process that is not root keeps
    // only its bounding set across exec, having no ambient capabilities.
    let expected = |(held, bounding): (&str, &str)| {
        [
            format!("CapPrm:\t{held}"),
            format!("CapEff:\t{held}"),
            format!("CapBnd:\t{bounding}"),
            format!("CapAmb:\t{NONE}"),
        ]
    };
    let narrow = |name: &str| {
        ContainerSpec::new(name, BUSYBOX_IMAGE)
            .capabilities(&["KILL", "NET_BIND_SERVICE"], &["ALL"])
            .shell(SCRIPT)
    };
    let f = Fixture::start(handler);
    let cri = ok(f.node.cri());
    // A pod each: runcvm runs one VM container per pod.
    for (name, spec, sets) in [
        ("narrow", narrow("narrow"), (KILL_AND_BIND, KILL_AND_BIND)),
        (
            "default",
            ContainerSpec::new("default", BUSYBOX_IMAGE).shell(SCRIPT),
            (DEFAULT_SET, DEFAULT_SET),
        ),
        ("nonroot", narrow("nonroot").run_as_user(1000), (NONE, KILL_AND_BIND)),
    ] {
        let pod = ok(cri.run_pod_sandbox(&f.pod(name)));
        let id = ok(cri.run_container(&pod, &spec));
        let lines = f.wait_for_line(&spec.log_file(pod.log_directory()), "ready", BOOT);
        let logged: Vec<String> = lines.iter().map(|l| l.line.clone()).collect();
        assert_eq!(status(&logged.join("\n")), expected(sets), "{name}: {lines:?}");
        let exec = ok(cri.exec_sync(&id, &["grep", "-E", "^Cap(Prm|Eff|Bnd|Amb)", "/proc/self/status"], 30));
        assert_eq!(status(&exec.stdout_text()), expected(sets), "{name} exec: {exec:?}");
    }
}

both_handlers!(
    workload_runs_with_the_pod_ip_and_logs_by_stream,
    exec_sync_runs_as_the_workload,
    streaming_exec_runs_in_the_container,
    volumes_hold_what_the_workload_wrote,
    stop_honours_the_term_trap_and_the_grace_period,
    a_restart_keeps_ip_and_mac_and_traffic_works,
    a_removed_pod_leaves_nothing,
    runs_under_the_runtime_default_seccomp_profile,
    terminals_reach_the_workload_and_execs,
    capabilities_are_the_pods,
    a_read_only_root_refuses_writes_but_volumes_take_them,
    root_writes_land_in_the_writable_layer,
    an_images_tmp_symlink_is_kept,
);
