//! T3, Kubernetes as kubelet drives it: each finding of the CRI validation
//! suite as its own scenario, for runcvm and runc where both apply.
//!
//! Every scenario runs on a private containerd (1.6, or 2.x with
//! `RUNCVM_T3_CONTAINERD=2`) whose `runcvm` handler is a fresh `runcvm
//! install` of this build; runc shows what Kubernetes expects, runcvm must
//! show the same (or, where no VM can, refuse with the reason and leave the
//! node as it was). Each removes its pods and checks nothing is left. Run
//! with `cargo test -p runcvm-runtime --test t3_kubelet -- --ignored`.

mod support;

use runcvm_test_node::crilog::Stream;
use runcvm_test_node::{
    BUSYBOX_IMAGE, Cni, ContainerSpec, ExecOutput, Namespace, NamespaceMode, NodeOptions, Pod, Seccomp,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::{Fixture, Handler, assert_start_refused, ok};

const BOOT: Duration = Duration::from_secs(60);

/// A workload that prints `ready` and then idles without running `sleep`
/// (so a `sleep` found later is an exec's).
const IDLE: &str = "echo ready; exec tail -f /dev/null";

/// Runs `spec` in `pod` and waits for its `ready` line.
fn run_ready(f: &Fixture, pod: &Pod, spec: &ContainerSpec) -> String {
    let cri = ok(f.node.cri());
    let id = ok(cri.run_container(pod, spec));
    f.wait_for_line(&spec.log_file(pod.log_directory()), "ready", BOOT);
    id
}

/// `sh -c SCRIPT` through ExecSync (30 s timeout).
fn sh(f: &Fixture, id: &str, script: &str) -> ExecOutput {
    ok(ok(f.node.cri()).exec_sync(id, &["sh", "-c", script], 30))
}

/// Stops and removes `pod`; nothing of it or of `containers` is left, nor
/// (runcvm) their state folders.
fn remove_pod(f: &Fixture, pod: &Pod, containers: &[&str]) {
    let cri = ok(f.node.cri());
    ok(cri.stop_pod_sandbox(&pod.id));
    ok(cri.remove_pod_sandbox(&pod.id));
    let mut ids = vec![pod.id.as_str()];
    ids.extend_from_slice(containers);
    f.node.assert_nothing_left(&ids);
    for id in containers {
        assert!(!support::state_folder(id).exists(), "state folder of {id} left behind");
    }
}

/// What the node's namespace shows of its `eth0`: addresses, link (MAC,
/// flags) and default route, one `ip -br` line each.
fn node_eth0(f: &Fixture) -> String {
    f.node
        .netns()
        .expect("the node's netns")
        .sh_checked("ip -br addr show dev eth0; ip -br link show dev eth0; ip route show default")
}

/// The node's namespace has no link `name`.
fn node_has_no_link(f: &Fixture, name: &str) -> bool {
    !f.node
        .netns()
        .expect("the node's netns")
        .sh(&format!("ip link show dev {name}"))
        .status
        .success()
}

/// Finding: a hostNetwork pod handed the node's uplink to the VM. Now runc
/// runs it in the node's namespace, while runcvm refuses it before touching
/// any link: the node's `eth0` keeps its address, MAC and default route,
/// and no `br-eth0` or `tap-eth0` appears.
fn a_host_network_pod_is_refused_and_the_node_is_untouched(handler: Handler) {
    let f = Fixture::start(handler);
    let netns = f.node.netns().expect("the node's netns");
    // The node's own uplink, in the namespace containerd runs in (a veth:
    // this node's kernel has no dummy links).
    netns.sh_checked(
        "ip link add eth0 type veth peer name eth0-peer && ip link set eth0-peer up && \
         ip addr add 192.0.2.10/24 dev eth0 && ip link set eth0 up && ip route add default via 192.0.2.1 dev eth0",
    );
    let before = node_eth0(&f);
    assert!(
        before.contains("192.0.2.10/24") && before.contains("default via 192.0.2.1 dev eth0"),
        "{before}"
    );
    let cri = ok(f.node.cri());
    let spec = f.pod("hostnet").namespace_mode(Namespace::Network, NamespaceMode::Node);
    let pod = ok(cri.run_pod_sandbox(&spec));
    let container = ContainerSpec::new("app", BUSYBOX_IMAGE)
        .namespaces_of(&spec)
        .shell(IDLE);
    let id = if handler.vm {
        assert_start_refused(
            &f,
            &pod,
            &container,
            "the container uses the node's network namespace (hostNetwork)",
        )
    } else {
        let id = run_ready(&f, &pod, &container);
        let seen = sh(&f, &id, "ip -o -4 addr show dev eth0");
        assert!(seen.stdout_text().contains("inet 192.0.2.10/24"), "{seen:?}");
        id
    };
    assert_eq!(node_eth0(&f), before, "the node's eth0 changed");
    for link in ["br-eth0", "tap-eth0"] {
        assert!(node_has_no_link(&f, link), "{link} in the node's namespace");
    }
    remove_pod(&f, &pod, &[&id]);
    assert_eq!(node_eth0(&f), before, "the node's eth0 changed");
    netns.ip("link del eth0");
}

/// Finding: hostPID and hostIPC pods ran with a VM that could share
/// neither. Now each is refused at create with its reason (runcvm only;
/// runc runs them).
#[test]
#[ignore = "T3: a private containerd with the runcvm handler; run scripts/test.sh"]
fn host_pid_and_host_ipc_are_refused_with_their_reasons() {
    let f = Fixture::start(Handler::RUNCVM);
    let cri = ok(f.node.cri());
    for (name, kind, expected) in [
        (
            "hostpid",
            Namespace::Pid,
            "the container uses the node's PID namespace (hostPID)",
        ),
        (
            "hostipc",
            Namespace::Ipc,
            "the container uses the node's IPC namespace (hostIPC)",
        ),
    ] {
        let spec = f.pod(name).namespace_mode(kind, NamespaceMode::Node);
        let pod = ok(cri.run_pod_sandbox(&spec));
        let container = ContainerSpec::new("app", BUSYBOX_IMAGE)
            .namespaces_of(&spec)
            .shell(IDLE);
        let id = assert_start_refused(&f, &pod, &container, expected);
        remove_pod(&f, &pod, &[&id]);
    }
}

/// `cat /proc/1/cmdline` in an ExecSync, NULs as spaces.
fn pid_1(f: &Fixture, id: &str) -> String {
    let out = sh(f, id, "tr '\\0' ' ' < /proc/1/cmdline");
    assert_eq!(out.exit_code, 0, "{out:?}");
    out.stdout_text()
}

/// Finding: the workload was never PID 1. In CRI's CONTAINER mode (what
/// kubelet asks for by default) the workload is PID 1 of its own PID
/// namespace; in POD mode (`shareProcessNamespace`) PID 1 is the pod's:
/// the pause container's process under runc, the pod's pause process in
/// the guest under runcvm.
fn pid_namespace_modes_decide_who_is_pid_1(handler: Handler) {
    const WORKLOAD: &str = "echo ready; sleep 600";
    let f = Fixture::start(handler);
    let cri = ok(f.node.cri());

    let own = ok(cri.run_pod_sandbox(&f.pod("pid-container")));
    let id = run_ready(&f, &own, &ContainerSpec::new("app", BUSYBOX_IMAGE).shell(WORKLOAD));
    let first = pid_1(&f, &id);
    assert!(first.contains("sleep 600"), "PID 1 in CONTAINER mode: {first:?}");
    remove_pod(&f, &own, &[&id]);

    let shared_spec = f.pod("pid-pod").namespace_mode(Namespace::Pid, NamespaceMode::Pod);
    let shared = ok(cri.run_pod_sandbox(&shared_spec));
    let container = ContainerSpec::new("app", BUSYBOX_IMAGE)
        .namespaces_of(&shared_spec)
        .shell(WORKLOAD);
    let id = run_ready(&f, &shared, &container);
    let first = pid_1(&f, &id);
    assert!(
        !first.contains("sleep 600") && !first.is_empty(),
        "PID 1 in POD mode: {first:?}"
    );
    if handler.vm {
        // The pod's pause process in the guest, not guest init.
        assert_eq!(first.trim_end(), "/pause", "the pod's pause is PID 1");
    } else {
        // The harness's pause image: `sleep infinity`.
        assert_eq!(first.trim_end(), "/bin/sleep infinity");
    }
    // The workload is there too, beside the pod's PID 1.
    let all = sh(&f, &id, "ps -o args");
    assert!(all.stdout_text().contains("sleep 600"), "{all:?}");
    remove_pod(&f, &shared, &[&id]);
}

/// Finding: an exec probe with no initial delay failed while the VM was
/// still booting. An ExecSync issued as soon as StartContainer returns
/// (no wait for RUNNING, no `ready` line) runs.
fn an_exec_right_after_start_runs(handler: Handler) {
    let f = Fixture::start(handler);
    let cri = ok(f.node.cri());
    let pod = ok(cri.run_pod_sandbox(&f.pod("early")));
    let spec = ContainerSpec::new("app", BUSYBOX_IMAGE).shell("sleep 600");
    let id = ok(cri.create_container(&pod, &spec));
    ok(cri.start_container(&id));
    let out = ok(cri.exec_sync(&id, &["echo", "-n", "hello"], 90));
    assert_eq!((out.stdout_text().as_str(), out.exit_code), ("hello", 0), "{out:?}");
    remove_pod(&f, &pod, &[&id]);
}

/// Finding: an ExecSync past its timeout left its process running in the
/// VM. Its error comes back, and the timed-out process is gone within a
/// few seconds, as under runc. (busybox has no `pgrep`; `pidof` finds the
/// same.)
fn an_exec_past_its_timeout_is_killed(handler: Handler) {
    let f = Fixture::start(handler);
    let cri = ok(f.node.cri());
    let pod = ok(cri.run_pod_sandbox(&f.pod("timeout")));
    let id = run_ready(&f, &pod, &ContainerSpec::new("app", BUSYBOX_IMAGE).shell(IDLE));
    // `pidof` does find a `sleep` of an exec while it runs. (Reaped here:
    // PID 1, `tail`, reaps no orphan, and a zombie `sleep` is still found.)
    // (The background `sleep` may not have exec'd yet when `pidof` first
    // looks: it looks again for a while.)
    let control = sh(
        &f,
        &id,
        "sleep 100 & p=$!; for i in 1 2 3 4 5 6 7 8 9 10; do pidof sleep && break; sleep 0.3; done; kill $p; wait $p; true",
    );
    assert!(!control.stdout_text().trim().is_empty(), "{control:?}");
    let began = Instant::now();
    let err = cri
        .exec_sync(&id, &["sleep", "4321"], 1)
        .expect_err("the exec outlives its 1 s timeout");
    let took = began.elapsed();
    assert!(took < Duration::from_secs(30), "the timeout took {took:?}: {err:#}");
    let mut left = String::new();
    let gone = runcvm_test_infra::wait_until(Duration::from_secs(5), || {
        left = sh(&f, &id, "pidof sleep || true").stdout_text();
        left.is_empty()
    });
    assert!(gone, "the timed-out exec's sleep still runs: pids {left:?} ({err:#})");
    remove_pod(&f, &pod, &[&id]);
}

/// Finding: the pod's sysctls never reached the VM's kernel. Namespaced
/// sysctls of the pod read back in the container.
fn the_pods_sysctls_are_set(handler: Handler) {
    let f = Fixture::start(handler);
    let cri = ok(f.node.cri());
    let spec = f
        .pod("sysctls")
        .sysctl("kernel.shm_rmid_forced", "1")
        .sysctl("fs.mqueue.msg_max", "100");
    let pod = ok(cri.run_pod_sandbox(&spec));
    let container = ContainerSpec::new("app", BUSYBOX_IMAGE).shell(
        "echo shm_rmid_forced=$(cat /proc/sys/kernel/shm_rmid_forced) msg_max=$(cat /proc/sys/fs/mqueue/msg_max); \
         echo ready; sleep 600",
    );
    let id = ok(cri.run_container(&pod, &container));
    let lines = f.wait_for_line(&container.log_file(pod.log_directory()), "ready", BOOT);
    assert!(
        lines.iter().any(|l| l.line == "shm_rmid_forced=1 msg_max=100"),
        "{lines:?}"
    );
    let out = sh(
        &f,
        &id,
        "cat /proc/sys/kernel/shm_rmid_forced /proc/sys/fs/mqueue/msg_max",
    );
    assert_eq!(out.stdout_text(), "1\n100\n", "{out:?}");
    remove_pod(&f, &pod, &[&id]);
}

/// kubelet's masked paths under `/proc` worth reading here: `/proc/kcore`
/// (which neither this node's kernel nor the guest's has: reading it gives
/// nothing either way) and two that the node's kernel has.
const MASKED_PROC_FILES: &str = "/proc/kcore /proc/keys /proc/timer_list";

/// The checks of [`masked_and_read_only_paths_apply_to_the_workload_and_execs`]:
/// one `masked PATH BYTES` line per masked file or folder present, then
/// what a write to `/proc/sys`, the container's masked `/etc/group` and
/// `/var/tmp` and its read-only `/home/app` give, then a write elsewhere.
const PATH_CHECKS: &str = "for p in /proc/kcore /proc/keys /proc/timer_list; do \
                           [ -e $p ] && echo \"masked $p $(wc -c < $p)\"; done; \
                           [ -d /sys/firmware ] && echo \"masked /sys/firmware $(ls -A /sys/firmware | wc -l)\"; \
                           (echo x > /proc/sys/kernel/domainname) 2>&1; \
                           echo group=$(wc -c < /etc/group); echo var-tmp=$(ls -A /var/tmp | wc -l); \
                           touch /var/tmp/x 2>&1; touch /home/app/x 2>&1; touch /srv/x && echo srv-writable";

/// Holds the lines [`PATH_CHECKS`] printed to what the paths must give.
fn assert_paths_hold(seen: &[&str], what: &str) {
    let (masked, rest): (Vec<&str>, Vec<&str>) = seen.iter().partition(|l| l.starts_with("masked "));
    for line in &masked {
        assert!(
            line.ends_with(" 0"),
            "{what}: a masked path is not empty: {line:?} in {seen:?}"
        );
    }
    let proc_files = MASKED_PROC_FILES.split(' ').collect::<Vec<_>>();
    assert!(
        masked
            .iter()
            .any(|l| proc_files.iter().any(|p| l.starts_with(&format!("masked {p} ")))),
        "{what}: none of {MASKED_PROC_FILES} exists, so masking is not shown: {seen:?}"
    );
    assert_eq!(rest.len(), 6, "{what}: {seen:?}");
    assert!(
        rest[0].contains("/proc/sys/kernel/domainname") && rest[0].contains("Read-only file system"),
        "{what}: {seen:?}"
    );
    assert_eq!(rest[1..3], ["group=0", "var-tmp=0"], "{what}: {seen:?}");
    for (line, path) in [(rest[3], "/var/tmp/x"), (rest[4], "/home/app/x")] {
        assert!(
            line.contains(path) && line.contains("Read-only file system"),
            "{what}: {seen:?}"
        );
    }
    assert_eq!(rest[5], "srv-writable", "{what}: {seen:?}");
}

/// Finding: `maskedPaths` and `readonlyPaths` were not applied in the VM.
/// kubelet's defaults (the harness's) and a container's own entries hold
/// for the workload and for execs: a masked file reads empty, a masked
/// folder is an empty read-only one, a read-only path refuses writes.
fn masked_and_read_only_paths_apply_to_the_workload_and_execs(handler: Handler) {
    let f = Fixture::start(handler);
    let cri = ok(f.node.cri());
    let pod = ok(cri.run_pod_sandbox(&f.pod("paths")));
    let spec = ContainerSpec::new("app", BUSYBOX_IMAGE)
        .masked_path("/etc/group")
        .masked_path("/var/tmp")
        .readonly_path("/home/app")
        .shell(&format!("{PATH_CHECKS}; echo ready; sleep 600"));
    let id = ok(cri.run_container(&pod, &spec));
    let lines = f.wait_for_line(&spec.log_file(pod.log_directory()), "ready", BOOT);
    let mut logged = support::lines_of(&lines, Stream::Stdout);
    assert_eq!(logged.pop(), Some("ready"), "{lines:?}");
    assert_paths_hold(&logged, "the workload");
    let exec = sh(&f, &id, PATH_CHECKS);
    let text = exec.stdout_text();
    assert_paths_hold(&text.lines().collect::<Vec<_>>(), "an exec");
    // Each on its own, as a probe would run it.
    let kcore = ok(cri.exec_sync(&id, &["sh", "-c", "cat /proc/kcore 2>/dev/null; true"], 30));
    assert_eq!((kcore.stdout.len(), kcore.exit_code), (0, 0), "{kcore:?}");
    let write = sh(&f, &id, "echo x > /proc/sys/kernel/domainname");
    assert_ne!(write.exit_code, 0, "{write:?}");
    assert!(write.stderr_text().contains("Read-only file system"), "{write:?}");
    remove_pod(&f, &pod, &[&id]);
}

/// A seccomp profile (docker's format, as containerd loads it) that
/// refuses changing a file's mode and allows everything else.
const NO_CHMOD_PROFILE: &str = r#"{
  "defaultAction": "SCMP_ACT_ALLOW",
  "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
  "syscalls": [{"names": ["chmod", "fchmod", "fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO"}]
}
"#;

/// Finding: the container's seccomp profile was not applied in the VM.
/// `RuntimeDefault` and a `Localhost` profile (a file on the node that
/// containerd loads) filter the workload and its execs (`Seccomp: 2`);
/// the profile's rule holds (`chmod` refused with EPERM); `Unconfined`
/// shows `Seccomp: 0`.
fn seccomp_profiles_filter_the_workload_and_execs(handler: Handler) {
    let profiles = tempfile::tempdir().expect("tempdir");
    let profile = profiles.path().join("no-chmod.json");
    std::fs::write(&profile, NO_CHMOD_PROFILE).expect("write the profile");
    let f = Fixture::start(handler);
    let cri = ok(f.node.cri());
    for (name, seccomp, mode) in [
        ("runtime-default", Seccomp::RuntimeDefault, "2"),
        ("localhost", Seccomp::Localhost(profile.clone()), "2"),
        ("unconfined", Seccomp::Unconfined, "0"),
    ] {
        // A pod each (one VM container per pod), the profile on the pod and
        // its container, as kubelet sets a pod's seccompProfile.
        let pod = ok(cri.run_pod_sandbox(&f.pod(name).seccomp(&seccomp)));
        let spec = ContainerSpec::new("app", BUSYBOX_IMAGE)
            .seccomp(&seccomp)
            .shell("grep Seccomp: /proc/self/status; echo ready; sleep 600");
        let id = ok(cri.run_container(&pod, &spec));
        let lines = f.wait_for_line(&spec.log_file(pod.log_directory()), "ready", BOOT);
        let expected = format!("Seccomp:\t{mode}");
        assert!(lines.iter().any(|l| l.line == expected), "{name}: {lines:?}");
        let exec = ok(cri.exec_sync(&id, &["grep", "Seccomp:", "/proc/self/status"], 30));
        assert_eq!(exec.stdout_text(), format!("{expected}\n"), "{name}: {exec:?}");
        if let Seccomp::Localhost(_) = seccomp {
            let chmod = ok(cri.exec_sync(&id, &["chmod", "400", "/"], 30));
            assert_ne!(chmod.exit_code, 0, "{chmod:?}");
            assert!(chmod.stderr_text().contains("Operation not permitted"), "{chmod:?}");
            // Everything else is allowed.
            let touch = sh(&f, &id, "touch /srv/x && echo touched");
            assert_eq!(touch.stdout_text(), "touched\n", "{touch:?}");
        }
        remove_pod(&f, &pod, &[&id]);
    }
}

/// The pod subnet of the ptp node, and its gateway (host-local's `.1`, on
/// each pod's node-side veth).
const PTP_SUBNET: &str = "10.88.92.0/24";
const PTP_GATEWAY: &str = "10.88.92.1";

/// `ip route` of a container, its own address written as `POD_IP` and the
/// guest's route to runcvm's host identity left out (`networking.md`: the
/// guest's `eth0` has the pod's routes plus `169.254.1.254 dev eth0`).
fn routes(f: &Fixture, id: &str, pod_ip: &str) -> Vec<String> {
    let out = sh(f, id, "ip -4 route show");
    assert_eq!(out.exit_code, 0, "{out:?}");
    out.stdout_text()
        .lines()
        .filter(|l| !l.starts_with("169.254.1.254 "))
        .map(|l| l.trim_end().replace(pod_ip, "POD_IP"))
        .collect()
}

/// Finding: on a node whose CNI is the standard `ptp` plugin, a runcvm pod
/// failed to start (`cannot add route … File exists`). It starts, the node
/// reaches a server in it on the pod IP, and its routing table is the
/// pod's: the subnet via the gateway, the same lines as a runc container's
/// on the same node.
fn a_ptp_pod_runs_with_the_pods_routes(handler: Handler) {
    const SERVE: &str = "echo ready; while true; do echo hello | nc -l -p 8080; done";
    let f = Fixture::start_with(handler, NodeOptions::default().cni(Cni::Ptp, PTP_SUBNET));
    let cri = ok(f.node.cri());
    let pod = ok(cri.run_pod_sandbox(&f.pod("ptp")));
    let pod_ip = ok(cri.pod_sandbox_status(&pod.id)).ip;
    assert!(pod_ip.starts_with("10.88.92."), "{pod_ip}");
    let id = run_ready(&f, &pod, &ContainerSpec::new("app", BUSYBOX_IMAGE).shell(SERVE));
    assert_eq!(f.fetch_from_node(&pod_ip, 8080).trim(), "hello");
    let table = routes(&f, &id, &pod_ip);
    let subnet_route = format!("{PTP_SUBNET} via {PTP_GATEWAY} dev eth0");
    assert!(
        table.iter().any(|l| l.starts_with(&subnet_route)),
        "no {subnet_route:?} in {table:?}"
    );
    assert!(
        table
            .iter()
            .any(|l| l.starts_with(&format!("default via {PTP_GATEWAY} dev eth0"))),
        "{table:?}"
    );
    if handler.vm {
        // runc's container on the same node has the same table.
        let runc_spec = f.node.pod("ptp-runc").runtime_handler("runc");
        let runc_pod = ok(cri.run_pod_sandbox(&runc_spec));
        let runc_ip = ok(cri.pod_sandbox_status(&runc_pod.id)).ip;
        let runc_id = run_ready(&f, &runc_pod, &ContainerSpec::new("app", BUSYBOX_IMAGE).shell(IDLE));
        assert_eq!(table, routes(&f, &runc_id, &runc_ip), "runcvm's routes, then runc's");
        remove_pod(&f, &runc_pod, &[&runc_id]);
    }
    // The VM still serves after the other pod came and went.
    assert_eq!(f.fetch_from_node(&pod_ip, 8080).trim(), "hello");
    remove_pod(&f, &pod, &[&id]);
}

/// A tmpfs mounted on the host, unmounted when dropped (pass or fail).
struct HostTmpfs(PathBuf);

impl HostTmpfs {
    fn mount(at: &Path) -> Self {
        std::fs::create_dir_all(at).expect("mkdir");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
            .arg(at)
            .status()
            .expect("mount");
        assert!(status.success(), "mount -t tmpfs {}", at.display());
        Self(at.to_owned())
    }
}

impl Drop for HostTmpfs {
    fn drop(&mut self) {
        runcvm_test_node::host::unmount_all_under(&self.0);
    }
}

/// Finding: a tmpfs under a read-only volume was read-only in the VM. The
/// volume is read-only at its top only, as runc makes it: the tmpfs below
/// takes a file (seen on the host), the volume itself refuses one.
fn a_tmpfs_under_a_read_only_volume_stays_writable(handler: Handler) {
    // Dropped in reverse: the node first, then the tmpfs, then the folder.
    let host = tempfile::tempdir().expect("tempdir");
    let tmpfs = HostTmpfs::mount(&host.path().join("tmpfs"));
    let f = Fixture::start(handler);
    let cri = ok(f.node.cri());
    let pod = ok(cri.run_pod_sandbox(&f.pod("rotmpfs")));
    let spec = ContainerSpec::new("app", BUSYBOX_IMAGE)
        .mount(host.path(), "/mnt", true)
        .shell(IDLE);
    let id = run_ready(&f, &pod, &spec);
    let below = ok(cri.exec_sync(&id, &["touch", "/mnt/tmpfs/file"], 30));
    assert_eq!(below.exit_code, 0, "{below:?}");
    assert!(tmpfs.0.join("file").is_file(), "the file is not on the host's tmpfs");
    let top = ok(cri.exec_sync(&id, &["touch", "/mnt/file"], 30));
    assert_ne!(top.exit_code, 0, "{top:?}");
    assert!(top.stderr_text().contains("Read-only file system"), "{top:?}");
    assert!(!host.path().join("file").exists());
    remove_pod(&f, &pod, &[&id]);
}

/// Finding: `kubectl port-forward` reached nothing, the workload listening
/// in the VM. Through CRI PortForward and the streaming server an HTTP
/// request reaches a server in the pod listening on every address, and one
/// bound to 127.0.0.1 only (in the VM: the guest's loopback).
fn port_forward_reaches_the_workload(handler: Handler) {
    let f = Fixture::start(handler);
    let cri = ok(f.node.cri());
    let pod = ok(cri.run_pod_sandbox(&f.pod("forward")));
    let spec = ContainerSpec::new("app", BUSYBOX_IMAGE).shell(
        "mkdir -p /www && echo hello-from-pod > /www/index.html && httpd -p 8080 -h /www && \
         httpd -p 127.0.0.1:8081 -h /www && echo ready; exec tail -f /dev/null",
    );
    let id = run_ready(&f, &pod, &spec);
    for port in [8080, 8081] {
        let reply = ok(f.node.port_forward(
            &pod.id,
            port,
            b"GET /index.html HTTP/1.0\r\n\r\n",
            Duration::from_secs(30),
        ));
        let text = reply.data_text();
        assert!(
            text.starts_with("HTTP/1.") && text.contains(" 200 OK\r\n") && text.ends_with("\r\n\r\nhello-from-pod\n"),
            "port {port}: {text:?} {reply:?}"
        );
        assert_eq!(reply.error, "", "port {port}");
    }
    // A port nobody listens on gives nothing back, and the session says why
    // on its error channel: under runc containerd could not connect; under
    // runcvm the launcher accepted in the pod and resets the connection
    // once the guest refused it.
    let refused = ok(f
        .node
        .port_forward(&pod.id, 8082, b"GET / HTTP/1.0\r\n\r\n", Duration::from_secs(30)));
    assert!(refused.data.is_empty(), "{refused:?}");
    let expected = if handler.vm {
        "connection reset"
    } else {
        "connection refused"
    };
    assert!(refused.error.contains(expected), "{refused:?}");
    remove_pod(&f, &pod, &[&id]);
}

/// Finding: a container the guest kernel OOM-killed read as `Error`. A
/// container limited to 15 MiB that asks for 20 exits 137 with reason
/// `OOMKilled`; under runcvm its termination message (the file kubelet
/// bound at `/dev/termination-log`, read back on the node as kubelet reads
/// it) says the guest kernel's OOM killer ended it.
fn an_oom_kill_reads_oomkilled(handler: Handler) {
    let f = Fixture::start(handler);
    let cri = ok(f.node.cri());
    let spec = f.pod("oom");
    let message = ok(f.node.termination_message_file(&spec, "app"));
    let pod = ok(cri.run_pod_sandbox(&spec));
    let container = ContainerSpec::new("app", BUSYBOX_IMAGE)
        .memory_limit(15 << 20)
        .termination_message_file(&message)
        .shell("dd if=/dev/zero of=/dev/null bs=20M");
    let id = ok(cri.run_container(&pod, &container));
    let info = ok(cri.wait_exited(&id, BOOT));
    let log = f.log_text(&container, &pod);
    assert_eq!(
        (info.exit_code, info.reason.as_str()),
        (137, "OOMKilled"),
        "{info:?}: {log}"
    );
    // The node reports OOMKilled, so the termination message stays the
    // workload's (it wrote none), as under runc; runcvm writes its note
    // only where it cannot mirror the kill (no memory limit).
    let note = std::fs::read_to_string(&message).expect("the termination message file");
    assert_eq!(note, "", "the termination message is the workload's");
    remove_pod(&f, &pod, &[&id]);
}

/// kubelet makes the termination message file 0666 so that a workload that
/// is not root can write it; what it writes reaches the node (under runcvm,
/// copied back when the workload ends).
fn a_non_root_workload_writes_its_termination_message(handler: Handler) {
    let f = Fixture::start(handler);
    let cri = ok(f.node.cri());
    let spec = f.pod("message");
    let message = ok(f.node.termination_message_file(&spec, "app"));
    let pod = ok(cri.run_pod_sandbox(&spec));
    let container = ContainerSpec::new("app", BUSYBOX_IMAGE)
        .run_as_user(1000)
        .termination_message_file(&message)
        .shell("echo 'done: 42 rows' > /dev/termination-log");
    let id = ok(cri.run_container(&pod, &container));
    let info = ok(cri.wait_exited(&id, BOOT));
    assert_eq!(info.exit_code, 0, "{info:?}: {}", f.log_text(&container, &pod));
    let text = std::fs::read_to_string(&message).expect("the termination message file");
    assert_eq!(text, "done: 42 rows\n");
    remove_pod(&f, &pod, &[&id]);
}

/// The node's block devices (`/sys/block`), which a privileged runc
/// container sees in its `/dev`.
fn node_block_devices() -> Vec<String> {
    std::fs::read_dir("/sys/block")
        .expect("/sys/block")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Finding: privileged pods could not use what privileged workloads use,
/// and got the node's devices in their VM's spec. A privileged container
/// creates a bridge (`brctl addbr`), an unprivileged one is refused; under
/// runcvm the container's `/dev` is the guest's, without the node's block
/// devices (runc's privileged container has them all).
fn a_privileged_container_can_make_a_bridge(handler: Handler) {
    let f = Fixture::start(handler);
    let cri = ok(f.node.cri());

    let spec = f.pod("privileged").privileged(true);
    let pod = ok(cri.run_pod_sandbox(&spec));
    let container = ContainerSpec::new("app", BUSYBOX_IMAGE).privileged(true).shell(IDLE);
    let id = run_ready(&f, &pod, &container);
    let added = sh(&f, &id, "brctl addbr foobar && ip link show foobar");
    assert_eq!(added.exit_code, 0, "{added:?}");
    assert!(added.stdout_text().contains("foobar"), "{added:?}");
    let devices = sh(&f, &id, "ls /dev; echo ---; ls /sys/block");
    let text = devices.stdout_text();
    let (dev, block) = text.split_once("---\n").unwrap_or_else(|| panic!("{devices:?}"));
    let dev: Vec<&str> = dev.lines().collect();
    let own_block: Vec<&str> = block.lines().collect();
    let node = node_block_devices();
    assert!(!node.is_empty(), "the node has block devices to compare with");
    for name in &node {
        if handler.vm {
            // A name the guest has for a device of its own (its root disk
            // may be `vda` as the node's is) is the guest's, not the node's.
            assert!(
                !dev.contains(&name.as_str()) || own_block.contains(&name.as_str()),
                "the node's /dev/{name} in the VM: {dev:?} (guest block devices {own_block:?})"
            );
        } else {
            assert!(
                dev.contains(&name.as_str()),
                "runc's privileged /dev lacks {name}: {dev:?}"
            );
        }
    }
    remove_pod(&f, &pod, &[&id]);

    let plain = ok(cri.run_pod_sandbox(&f.pod("unprivileged")));
    let id = run_ready(&f, &plain, &ContainerSpec::new("app", BUSYBOX_IMAGE).shell(IDLE));
    let refused = sh(&f, &id, "brctl addbr foobar");
    assert_ne!(refused.exit_code, 0, "{refused:?}");
    assert!(
        refused.stderr_text().contains("foobar: Operation not permitted"),
        "{refused:?}"
    );
    let none = sh(&f, &id, "ip link show foobar");
    assert_ne!(none.exit_code, 0, "{none:?}");
    remove_pod(&f, &plain, &[&id]);
}

/// kubelet's init containers: each runs to its end, one after another,
/// before the app container, in the one pod (its IP, its emptyDir). Under
/// runcvm each is a container in turn in the pod's one VM.
fn init_containers_run_one_after_another_before_the_app(handler: Handler) {
    let empty_dir = tempfile::tempdir().expect("tempdir");
    let f = Fixture::start(handler);
    let cri = ok(f.node.cri());
    let pod = ok(cri.run_pod_sandbox(&f.pod("inits")));
    let pod_ip = ok(cri.pod_sandbox_status(&pod.id)).ip;
    let mut ids = Vec::new();
    for (name, step) in [("init-1", "first"), ("init-2", "second")] {
        let spec = ContainerSpec::new(name, BUSYBOX_IMAGE)
            .mount(empty_dir.path(), "/work", false)
            .shell(&format!(
                "ip -4 -o addr show eth0 | grep -q ' {pod_ip}/' && echo {step} >> /work/steps"
            ));
        let id = ok(cri.run_container(&pod, &spec));
        let info = ok(cri.wait_exited(&id, BOOT));
        let log = runcvm_test_node::crilog::read(&spec.log_file(pod.log_directory()));
        assert_eq!(info.exit_code, 0, "{name} ended with {info:?}: {log:?}");
        ids.push(id);
    }
    let app = ContainerSpec::new("app", BUSYBOX_IMAGE)
        .mount(empty_dir.path(), "/work", false)
        .shell(&format!(
            "cat /work/steps; ip -4 -o addr show eth0 | grep -c ' {pod_ip}/'; {IDLE}"
        ));
    let id = run_ready(&f, &pod, &app);
    let lines = ok(runcvm_test_node::crilog::read(&app.log_file(pod.log_directory())));
    assert_eq!(
        support::lines_of(&lines, Stream::Stdout),
        ["first", "second", "1", "ready"],
        "the app sees both inits' work, on the pod's IP"
    );
    ids.push(id);
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    remove_pod(&f, &pod, &ids);
}

both_handlers!(
    init_containers_run_one_after_another_before_the_app,
    a_host_network_pod_is_refused_and_the_node_is_untouched,
    pid_namespace_modes_decide_who_is_pid_1,
    an_exec_right_after_start_runs,
    an_exec_past_its_timeout_is_killed,
    the_pods_sysctls_are_set,
    masked_and_read_only_paths_apply_to_the_workload_and_execs,
    seccomp_profiles_filter_the_workload_and_execs,
    a_ptp_pod_runs_with_the_pods_routes,
    a_tmpfs_under_a_read_only_volume_stays_writable,
    port_forward_reaches_the_workload,
    an_oom_kill_reads_oomkilled,
    a_non_root_workload_writes_its_termination_message,
    a_privileged_container_can_make_a_bridge,
);
