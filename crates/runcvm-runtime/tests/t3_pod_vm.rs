//! T3, a pod with one VM (`docs/pods.md`; every pod's, unless it opts out:
//! the pods here also say `runcvm.io/pod-vm: "true"`): its sandbox boots
//! the VM, and every container of the pod is created in that VM, through
//! CRI as kubelet
//! drives it, on a private containerd (1.6, or 2.x with
//! `RUNCVM_T3_CONTAINERD=2`). Run with
//! `cargo test -p runcvm-runtime --test t3_pod_vm -- --ignored`.

mod support;

use runcvm_spec::launch::LaunchRole;
use runcvm_test_node::crilog::Stream;
use runcvm_test_node::{BUSYBOX_IMAGE, ContainerSpec, Pod};
use std::time::Duration;
use support::{Fixture, Handler, ok};

const BOOT: Duration = Duration::from_secs(90);

/// The app: says `ready`, then answers `hello` on 8080 until stopped.
const APP: &str = "echo app-ready; while true; do echo hello | nc -l -p 8080; done";

fn pod_vm(f: &Fixture, name: &str) -> Pod {
    let cri = ok(f.node.cri());
    let spec = f.pod(name).annotation(runcvm_spec::oci::POD_VM_ANNOTATION, "true");
    ok(cri.run_pod_sandbox(&spec))
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
