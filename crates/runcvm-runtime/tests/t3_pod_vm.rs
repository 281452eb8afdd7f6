//! T3, a pod with one VM (`docs/pods.md`; every runcvm pod's): its sandbox
//! boots the VM, and every container of the pod is created in that VM,
//! through CRI as kubelet drives it, on a private containerd (1.6, or 2.x
//! with `RUNCVM_T3_CONTAINERD=2`). Run with
//! `cargo test -p runcvm-runtime --test t3_pod_vm -- --ignored`.

mod support;

use runcvm_spec::launch::LaunchRole;
use runcvm_test_node::crilog::Stream;
use runcvm_test_node::{BUSYBOX_IMAGE, ContainerSpec, Namespace, NamespaceMode, Pod, PodSpec};
use std::time::Duration;
use support::{Fixture, Handler, ok};

const BOOT: Duration = Duration::from_secs(90);

/// The app: says `ready`, then answers `hello` on 8080 until stopped.
const APP: &str = "echo app-ready; while true; do echo hello | nc -l -p 8080; done";

fn pod_vm(f: &Fixture, name: &str) -> Pod {
    pod_vm_of(f, &f.pod(name))
}

fn pod_vm_of(f: &Fixture, spec: &PodSpec) -> Pod {
    ok(ok(f.node.cri()).run_pod_sandbox(spec))
}

/// Runs `spec` in `pod` and waits for its `ready` line; returns its id.
fn run_until(f: &Fixture, pod: &Pod, spec: &ContainerSpec, ready: &str) -> String {
    let id = ok(ok(f.node.cri()).run_container(pod, spec));
    f.wait_for_line(&spec.log_file(pod.log_directory()), ready, BOOT);
    id
}

fn exec_text(f: &Fixture, id: &str, cmd: &[&str]) -> String {
    let cri = ok(f.node.cri());
    let out = ok(cri.exec_sync(id, cmd, 60));
    assert_eq!(out.exit_code, 0, "{cmd:?} in {id}: {out:?}");
    out.stdout_text().trim().to_owned()
}

/// Two containers in one VM: one kernel (the same boot id), one
/// `localhost`, each its own entrypoint and exec; the pod's launcher holds
/// the only VMM, each container's cgroup on the node only its proxy; a
/// container stopped and started again leaves the other serving; nothing is
/// left once the pod is removed.
#[test]
#[ignore = "T3: a private containerd with the runcvm handler; run scripts/test.sh"]
fn a_pods_containers_share_its_one_vm() {
    let f = Fixture::start(Handler::RUNCVM);
    let cri = ok(f.node.cri());
    let pod = pod_vm(&f, "one-vm");
    let pod_ip = ok(cri.pod_sandbox_status(&pod.id)).ip;
    let sandbox = ok(runcvm_runtime::state::read_node_launch(
        &runcvm_runtime::settings::Settings::from_env().state_dir(),
        &pod.id,
    )
    .map_err(anyhow::Error::from));
    assert_eq!(sandbox.role, LaunchRole::PodVm, "the sandbox boots the pod's VM");

    let app = ContainerSpec::new("app", BUSYBOX_IMAGE).shell(APP);
    let app_id = ok(cri.run_container(&pod, &app));
    f.wait_for_line(&app.log_file(pod.log_directory()), "app-ready", BOOT);
    let side_script = "echo side-ready; sleep 600";
    let side = ContainerSpec::new("side", BUSYBOX_IMAGE).shell(side_script);
    let side_id = ok(cri.run_container(&pod, &side));
    f.wait_for_line(&side.log_file(pod.log_directory()), "side-ready", BOOT);

    let boot_id = |id: &str| exec_text(&f, id, &["cat", "/proc/sys/kernel/random/boot_id"]);
    assert_eq!(boot_id(&app_id), boot_id(&side_id), "one kernel for both");
    assert_ne!(
        exec_text(&f, &side_id, &["uname", "-r"]),
        support::host_kernel(),
        "the guest's kernel"
    );
    assert_eq!(
        exec_text(&f, &side_id, &["sh", "-c", "nc 127.0.0.1 8080 </dev/null"]),
        "hello",
        "the sidecar reaches the app on localhost"
    );
    // IPC is the pod's, as under runc: what one container puts in
    // /dev/shm the other reads.
    exec_text(&f, &app_id, &["sh", "-c", "echo from-app > /dev/shm/ipc-check"]);
    assert_eq!(
        exec_text(&f, &side_id, &["cat", "/dev/shm/ipc-check"]),
        "from-app",
        "the pod's /dev/shm is shared"
    );
    let entrypoint = exec_text(&f, &side_id, &["cat", "/.runcvm/entrypoint"]);
    assert!(
        entrypoint.contains("side-ready"),
        "the exec runs in its own container: {entrypoint}"
    );
    assert!(exec_text(&f, &app_id, &["cat", "/.runcvm/entrypoint"]).contains("app-ready"));
    assert_eq!(f.fetch_from_node(&pod_ip, 8080).trim(), "hello", "the pod IP answers");

    let vmm = |id: &str| {
        support::processes_of_container(id)
            .iter()
            .any(|p| p.contains("qemu-system-x86_64") || p.contains("firecracker"))
    };
    assert!(vmm(&pod.id), "{:?}", support::processes_of_container(&pod.id));
    for id in [&app_id, &side_id] {
        let processes = support::processes_of_container(id);
        assert!(!vmm(id), "{processes:?}");
        assert!(
            processes.iter().any(|p| p.contains("bin/runcvm launch")),
            "{processes:?}"
        );
    }

    // The sidecar stops (its shell, PID 1 of its own namespace, ignores
    // SIGTERM: the grace period's SIGKILL ends it) and starts again; the
    // app serves throughout, in the same VM.
    ok(cri.stop_container(&side_id, 2));
    assert_eq!(
        f.fetch_from_node(&pod_ip, 8080).trim(),
        "hello",
        "the app outlives the sidecar"
    );
    let again = ContainerSpec::new("side", BUSYBOX_IMAGE).attempt(1).shell(side_script);
    let again_id = ok(cri.run_container(&pod, &again));
    f.wait_for_line(&again.log_file(pod.log_directory()), "side-ready", BOOT);
    assert_eq!(boot_id(&again_id), boot_id(&app_id), "the restart is in the same VM");
    let lines = f.wait_for_line(&app.log_file(pod.log_directory()), "app-ready", BOOT);
    assert_eq!(
        support::lines_of(&lines, Stream::Stdout),
        ["app-ready"],
        "the app ran once: {lines:?}"
    );

    ok(cri.stop_pod_sandbox(&pod.id));
    ok(cri.remove_pod_sandbox(&pod.id));
    let ids = [pod.id.as_str(), app_id.as_str(), side_id.as_str(), again_id.as_str()];
    f.node.assert_nothing_left(&ids);
    for id in ids {
        assert!(!support::state_folder(id).exists(), "state folder of {id} left behind");
        let left = support::processes_of_container(id);
        assert!(left.is_empty(), "{left:?}");
    }
}

/// A sidecar started first serves before the app starts (a native
/// sidecar's order: kubelet starts it, then the app); the app, over its
/// memory limit, is OOM-killed alone, reported as kubelet reads it, while
/// the sidecar keeps serving in the same VM.
#[test]
#[ignore = "T3: a private containerd with the runcvm handler; run scripts/test.sh"]
fn a_sidecar_serves_before_the_app_and_outlives_its_oom_kill() {
    let f = Fixture::start(Handler::RUNCVM);
    let cri = ok(f.node.cri());
    let pod = pod_vm(&f, "oom-one");
    let data = tempfile::tempdir().expect("tempdir");
    let side = ContainerSpec::new("side", BUSYBOX_IMAGE)
        .mount(data.path(), "/data", false)
        .shell("echo side-ready; while true; do echo side-hello | nc -l -p 8081; done");
    let side_id = ok(cri.run_container(&pod, &side));
    let lines = f.wait_for_line(&side.log_file(pod.log_directory()), "side-ready", BOOT);
    // Guest init's lines about the container are in its own log (the
    // pod's console is the pod's): the guide's ✓ and ✗ lines.
    assert!(
        lines
            .iter()
            .any(|l| l.stream == Stream::Stderr && l.line.ends_with("✓ Mounted /data (NFS)")),
        "{lines:?}"
    );
    let app = ContainerSpec::new("app", BUSYBOX_IMAGE)
        .memory_limit(32 << 20)
        .shell("nc 127.0.0.1 8081 </dev/null; echo app-started; dd if=/dev/zero of=/dev/null bs=48M");
    let app_id = ok(cri.run_container(&pod, &app));
    let info = ok(cri.wait_exited(&app_id, BOOT));
    let lines = f.wait_for_line(
        &app.log_file(pod.log_directory()),
        "app-started",
        Duration::from_secs(5),
    );
    assert_eq!(
        support::lines_of(&lines, Stream::Stdout),
        ["side-hello", "app-started"],
        "the sidecar served the app at its start"
    );
    assert_eq!((info.exit_code, info.reason.as_str()), (137, "OOMKilled"), "{info:?}");
    let side_now = ok(cri.container_status(&side_id));
    assert_eq!(
        side_now.state,
        runcvm_test_node::ContainerState::ContainerRunning,
        "{side_now:?}"
    );
    assert_eq!(
        exec_text(&f, &side_id, &["sh", "-c", "nc 127.0.0.1 8081 </dev/null"]),
        "side-hello",
        "the sidecar serves on"
    );
    ok(cri.stop_pod_sandbox(&pod.id));
    ok(cri.remove_pod_sandbox(&pod.id));
    f.node.assert_nothing_left(&[&pod.id, &side_id, &app_id]);
}

/// `shareProcessNamespace: true`: the pod's containers share one PID
/// namespace in the VM, whose PID 1 is the pod's pause process; each sees
/// and signals the other's processes, and none sees guest init's. In a pod
/// that does not share them, an ephemeral container (`kubectl debug
/// --target=app`) sees its target's processes and no other container's.
#[test]
#[ignore = "T3: a private containerd with the runcvm handler; run scripts/test.sh"]
fn containers_share_processes_as_the_pod_says() {
    let f = Fixture::start(Handler::RUNCVM);
    let cri = ok(f.node.cri());
    let shared_spec = f.pod("pid-shared").namespace_mode(Namespace::Pid, NamespaceMode::Pod);
    let shared = pod_vm_of(&f, &shared_spec);
    let container = |name: &str, script: &str| {
        ContainerSpec::new(name, BUSYBOX_IMAGE)
            .namespaces_of(&shared_spec)
            .shell(script)
    };
    let app = container("app", "echo app-ready; exec sleep 601");
    let app_id = run_until(&f, &shared, &app, "app-ready");
    let side_id = run_until(
        &f,
        &shared,
        &container("side", "echo side-ready; exec sleep 602"),
        "side-ready",
    );
    let seen = exec_text(&f, &side_id, &["ps", "-o", "pid,user,args"]);
    assert!(seen.contains("sleep 601") && seen.contains("sleep 602"), "{seen}");
    let pid_1 = seen.lines().find(|l| l.split_whitespace().next() == Some("1"));
    assert!(
        pid_1.is_some_and(|l| l.ends_with("/pause") && l.contains("65535")),
        "the pod's pause, not root, is PID 1: {seen}"
    );
    assert!(
        !seen.contains("/.runcvm/init"),
        "guest init is not the pod's to see: {seen}"
    );
    // Nor guest init's mounts through the pause process: its root is an
    // empty tmpfs of its own.
    let pause_mounts = exec_text(&f, &side_id, &["cat", "/proc/1/mountinfo"]);
    assert!(
        pause_mounts.lines().count() == 1 && pause_mounts.contains(" / / ") && pause_mounts.contains("tmpfs"),
        "{pause_mounts}"
    );
    // The sidecar ends the app's process; the app's container ends with
    // it, the sidecar runs on.
    exec_text(
        &f,
        &side_id,
        &[
            "sh",
            "-c",
            "for p in $(pidof sleep); do grep -q 601 /proc/$p/cmdline && kill $p; done; true",
        ],
    );
    let info = ok(cri.wait_exited(&app_id, BOOT));
    assert_eq!(info.exit_code, 143, "the app's sleep, ended by SIGTERM: {info:?}");
    assert_eq!(
        ok(cri.container_status(&side_id)).state,
        runcvm_test_node::ContainerState::ContainerRunning
    );
    ok(cri.stop_pod_sandbox(&shared.id));
    ok(cri.remove_pod_sandbox(&shared.id));

    let own_spec = f.pod("pid-target");
    let own = pod_vm_of(&f, &own_spec);
    let app = ContainerSpec::new("app", BUSYBOX_IMAGE).shell("echo app-ready; exec sleep 603");
    let target_id = run_until(&f, &own, &app, "app-ready");
    let other = ContainerSpec::new("other", BUSYBOX_IMAGE).shell("echo other-ready; exec sleep 604");
    let other_id = run_until(&f, &own, &other, "other-ready");
    let debug = ContainerSpec::new("debugger", BUSYBOX_IMAGE)
        .sharing_processes_of(&own_spec, &target_id)
        .shell("echo debug-ready; exec sleep 605");
    let debug_id = run_until(&f, &own, &debug, "debug-ready");
    let seen = exec_text(&f, &debug_id, &["ps", "-o", "pid,args"]);
    assert!(
        seen.contains("sleep 603") && seen.contains("sleep 605"),
        "the target's and its own: {seen}"
    );
    assert!(!seen.contains("sleep 604"), "no other container's: {seen}");
    let app_sees = exec_text(&f, &target_id, &["ps", "-o", "args"]);
    assert!(
        app_sees.contains("sleep 605"),
        "the target sees its debugger: {app_sees}"
    );
    assert!(!exec_text(&f, &other_id, &["ps", "-o", "args"]).contains("sleep 603"));
    ok(cri.stop_pod_sandbox(&own.id));
    ok(cri.remove_pod_sandbox(&own.id));
    f.node
        .assert_nothing_left(&[&shared.id, &app_id, &side_id, &own.id, &target_id, &other_id, &debug_id]);
}

/// A pod as kubelet runs one with init containers and a native sidecar:
/// two init containers one after another, handing a file to the app
/// through an emptyDir; the sidecar (an init container with `restartPolicy:
/// Always`) started before the app and serving a connection from the node;
/// the app and the sidecar sharing the emptyDir while both run; the app
/// restarted while the sidecar's process and its connection go on
/// untouched.
#[test]
#[ignore = "T3: a private containerd with the runcvm handler; run scripts/test.sh"]
fn init_containers_and_a_native_sidecar_share_the_pods_volume() {
    use std::io::Write;
    let f = Fixture::start(Handler::RUNCVM);
    let cri = ok(f.node.cri());
    let pod = pod_vm(&f, "with-inits");
    let pod_ip = ok(cri.pod_sandbox_status(&pod.id)).ip;
    let empty_dir = tempfile::tempdir().expect("tempdir");
    let with_volume = |name: &str, script: &str| {
        ContainerSpec::new(name, BUSYBOX_IMAGE)
            .mount(empty_dir.path(), "/work", false)
            .shell(script)
    };
    let mut ids = vec![pod.id.clone()];
    for (name, script) in [
        ("init-1", "echo one > /work/order"),
        ("init-2", "test -s /work/order && echo two >> /work/order"),
    ] {
        let id = ok(cri.run_container(&pod, &with_volume(name, script)));
        let info = ok(cri.wait_exited(&id, BOOT));
        assert_eq!(info.exit_code, 0, "{name}: {info:?}");
        ids.push(id);
    }
    assert_eq!(
        std::fs::read_to_string(empty_dir.path().join("order")).unwrap(),
        "one\ntwo\n",
        "the init containers ran in order, their writes on the node"
    );

    // The sidecar prints what a connection from the node sends it (its
    // input held open, so that nc keeps the connection).
    let side = with_volume("side", "echo side-ready; sleep 600 | nc -l -p 9000");
    let side_id = run_until(&f, &pod, &side, "side-ready");
    ids.push(side_id.clone());
    let address: std::net::SocketAddr = format!("{pod_ip}:9000").parse().unwrap();
    let mut connection = None;
    runcvm_test_infra::wait_until(Duration::from_secs(10), || {
        connection = f
            .node
            .netns()
            .expect("the node's netns")
            .enter(|| std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok());
        connection.is_some()
    });
    let mut connection = connection.expect("a connection from the node to the sidecar");
    connection.write_all(b"before-restart\n").unwrap();

    let app_script = "cat /work/order; echo from-app > /work/shared; echo app-ready; sleep 600";
    let app = with_volume("app", app_script);
    let app_id = run_until(&f, &pod, &app, "app-ready");
    ids.push(app_id.clone());
    let lines = f.wait_for_line(&app.log_file(pod.log_directory()), "app-ready", BOOT);
    assert_eq!(
        support::lines_of(&lines, Stream::Stdout),
        ["one", "two", "app-ready"],
        "the app read what the init containers left: {lines:?}"
    );
    let mut shared = String::new();
    runcvm_test_infra::wait_until(Duration::from_secs(10), || {
        shared = ok(cri.exec_sync(&side_id, &["cat", "/work/shared"], 30)).stdout_text();
        shared == "from-app\n"
    });
    assert_eq!(
        shared, "from-app\n",
        "the sidecar reads the app's write in the shared volume"
    );
    let side_pid_1 = |f: &Fixture| exec_text(f, &side_id, &["cut", "-d", " ", "-f", "1,22", "/proc/1/stat"]);
    let before = side_pid_1(&f);

    // The app restarts, as kubelet restarts a container: stopped, then a
    // new attempt. The sidecar's process and connection go on.
    ok(cri.stop_container(&app_id, 2));
    let again = with_volume("app", app_script).attempt(1);
    let again_id = run_until(&f, &pod, &again, "app-ready");
    ids.push(again_id);
    assert_eq!(side_pid_1(&f), before, "the sidecar's PID 1 is the same process");
    connection.write_all(b"after-restart\n").unwrap();
    let lines = f.wait_for_line(&side.log_file(pod.log_directory()), "after-restart", BOOT);
    assert_eq!(
        support::lines_of(&lines, Stream::Stdout),
        ["side-ready", "before-restart", "after-restart"],
        "one sidecar process, one connection across the app's restart: {lines:?}"
    );

    ok(cri.stop_pod_sandbox(&pod.id));
    ok(cri.remove_pod_sandbox(&pod.id));
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    f.node.assert_nothing_left(&ids);
}
