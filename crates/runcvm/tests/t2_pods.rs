//! T2 pods: more containers in one running VM (`runcvm attach`), each on
//! its own served root, while the VM and the other containers go on: the
//! guest's table of containers driven for real. Root only; run through
//! `scripts/test.sh`.

#![allow(clippy::unwrap_used)]

use runcvm_test_infra::{PodNet, PodNetOptions, RuncvmRun, Style, T2, require_t2, tier, wait_until};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A container's own root: a copy of the test rootfs with a `/tmp`, as
/// the writable root the node gives each container (guest init makes its
/// mount points there; the shared rootfs stays as it is).
fn own_root(t2: &T2) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("runcvm-root-").tempdir().unwrap();
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(t2.rootfs.join("."))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(copied.success());
    std::fs::create_dir(dir.path().join("tmp")).unwrap();
    dir
}

/// Starts `attached` and waits for its container's first line, `first`.
/// The run stays the caller's: dropping it kills what it started.
fn spawn_until(attached: &RuncvmRun, first: &str) -> Child {
    let mut child = attached.spawn();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim_end(), first);
    child
}

fn t2() -> T2 {
    tier::require_root("T2 pods (network namespaces, NFS servers on the pod's bridge)");
    require_t2(env!("CARGO_BIN_EXE_runcvm"), env!("CARGO_TARGET_TMPDIR"))
}

/// A pod VM whose first container runs `script`: its run, its process, its
/// stdout lines and the pod's network.
struct Pod {
    run: RuncvmRun,
    child: Child,
    lines: Receiver<String>,
    /// The launcher's stderr so far: the guest's console, where guest init
    /// says why a container could not be made.
    console: Arc<Mutex<String>>,
    net: PodNet,
}

impl Pod {
    fn start(t2: &T2, script: &str) -> Self {
        let net = PodNet::build(PodNetOptions::new(Style::Bridge));
        let run = RuncvmRun::new(t2)
            .in_netns(&net.pod)
            .args(["run", "--network", "pod", "--memory", "512"])
            .arg(&t2.rootfs)
            .args(["--", "sh", "-c", script]);
        let mut child = run.spawn();
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        let stderr = child.stderr.take().unwrap();
        let console = Arc::new(Mutex::new(String::new()));
        let kept = Arc::clone(&console);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut kept = kept.lock().unwrap();
                kept.push_str(&line);
                kept.push('\n');
            }
        });
        Self {
            run,
            child,
            lines,
            console,
            net,
        }
    }

    fn console(&self) -> String {
        self.console.lock().unwrap().clone()
    }

    fn expect_line(&self, wanted: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if line == wanted {
                return;
            }
        }
        panic!("no line {wanted:?} from the first container");
    }

    /// The launcher's run folder, which `runcvm attach` names.
    fn run_folder(&self) -> PathBuf {
        let runs = self.run.state_dir().join("runs");
        let prefix = format!("{}-", self.child.id());
        let mut found = None;
        wait_until(Duration::from_secs(30), || {
            found = std::fs::read_dir(&runs).ok().and_then(|entries| {
                entries
                    .flatten()
                    .find(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                    .map(|e| e.path())
            });
            found.is_some()
        });
        found.expect("the launcher's run folder")
    }

    /// `runcvm attach` of `script` with `flags`, on `root`.
    fn attach(&self, t2: &T2, root: &Path, flags: &[&str], script: &str) -> RuncvmRun {
        RuncvmRun::new(t2)
            .in_netns(&self.net.pod)
            .arg("attach")
            .args(flags)
            .arg(self.run_folder())
            .arg(root)
            .args(["--", "sh", "-c", script])
    }

    fn stop(mut self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let _ = self.child.wait();
        self.run.assert_nothing_left();
    }
}

/// A second container runs in the same VM (one kernel), on the pod's
/// `localhost`, with a `/tmp` of its own; it ends with its own status and
/// the first container goes on.
#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn an_attached_container_shares_the_vm_and_localhost_and_ends_alone() {
    let t2 = t2();
    let pod = Pod::start(
        &t2,
        "mkdir -p /www && echo from-the-first > /www/index.html && httpd -p 127.0.0.1:8080 -h /www; \
         echo mine > /tmp/mark; cat /proc/sys/kernel/random/boot_id; echo up; \
         while :; do sleep 1; done",
    );
    let boot_id = pod
        .lines
        .recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}; the VM's console:\n{}", pod.console()));
    pod.expect_line("up");
    let root = own_root(&t2);
    let out = pod
        .attach(
            &t2,
            root.path(),
            &[],
            "cat /proc/sys/kernel/random/boot_id; wget -qO- http://127.0.0.1:8080/; \
             ls /tmp/mark 2>&1; echo second > /tmp/own; \
             cat /.runcvm/entrypoint | grep -c attached-exit; echo attached-exit; exit 7",
        )
        .run();
    assert_eq!(
        out.code,
        Some(7),
        "{}\nthe VM's console:\n{}",
        out.stderr,
        pod.console()
    );
    let stdout = out.stdout_text();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], boot_id, "one kernel for both containers");
    assert_eq!(lines[1], "from-the-first", "the pod's localhost is shared");
    assert!(
        lines[2].contains("No such file"),
        "the first container's /tmp is not the second's: {stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(root.path().join("tmp/own")).unwrap(),
        "second\n",
        "its /tmp is its root's folder, written on the node"
    );
    assert_eq!(lines[3], "1", "its own /.runcvm/entrypoint: {stdout}");
    assert_eq!(lines[4], "attached-exit");
    // The first container and the VM go on.
    let again = pod
        .attach(&t2, root.path(), &[], "wget -qO- http://127.0.0.1:8080/")
        .run();
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert_eq!(again.stdout_text(), "from-the-first\n");
    pod.stop();
}

/// `runcvm exec --container NAME` runs in the container `runcvm attach
/// --name NAME` added (its root, its `/.runcvm`), not the first; a name is
/// one running container's.
#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn an_exec_names_its_container() {
    let t2 = t2();
    let pod = Pod::start(&t2, "echo up; while :; do sleep 1; done");
    pod.expect_line("up");
    let root = own_root(&t2);
    std::fs::write(root.path().join("etc/which"), "the-sidecar\n").unwrap();
    let sidecar = pod.attach(
        &t2,
        root.path(),
        &["--name", "sidecar"],
        "echo side-up; while :; do sleep 1; done",
    );
    let mut side = spawn_until(&sidecar, "side-up");
    let exec = |extra: &[&str], script: &str| {
        let mut command = std::process::Command::new(&t2.runcvm);
        command
            .env("RUNCVM_STATE_DIR", pod.run.state_dir())
            .arg("exec")
            .args(extra)
            .arg(pod.child.id().to_string())
            .args(["--", "sh", "-c", script]);
        command.output().unwrap()
    };
    let named = exec(
        &["--container", "sidecar"],
        "cat /etc/which; grep -c side-up /.runcvm/entrypoint",
    );
    assert_eq!(String::from_utf8_lossy(&named.stdout), "the-sidecar\n1\n", "{named:?}");
    let first = exec(&[], "cat /etc/which 2>&1; grep -c side-up /.runcvm/entrypoint");
    assert!(
        String::from_utf8_lossy(&first.stdout).contains("No such file"),
        "the first container is another: {first:?}"
    );
    let unknown = exec(&["--container", "nosuch"], "true");
    assert_eq!(unknown.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no container named \"nosuch\" runs in this VM"),
        "{unknown:?}"
    );
    let twice = pod
        .attach(&t2, own_root(&t2).path(), &["--name", "sidecar"], "echo never")
        .run();
    assert_eq!(twice.code, Some(125));
    assert!(
        twice.stderr.contains("a container named \"sidecar\" already runs"),
        "{}",
        twice.stderr
    );
    let _ = side.kill();
    let _ = side.wait();
    pod.stop();
}

/// Over its memory limit, an attached container is OOM-killed alone: the
/// first container keeps running.
#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn a_container_over_its_memory_limit_is_oom_killed_alone() {
    let t2 = t2();
    let pod = Pod::start(&t2, "echo up; while :; do sleep 1; echo alive; done");
    pod.expect_line("up");
    let root = own_root(&t2);
    let out = pod
        .attach(
            &t2,
            root.path(),
            &["--memory-limit", "32"],
            "echo hog; exec dd if=/dev/zero of=/dev/null bs=96M count=1",
        )
        .run();
    assert_eq!(
        out.code,
        Some(137),
        "{}\n{}\nthe VM's console:\n{}",
        out.stdout_text(),
        out.stderr,
        pod.console()
    );
    assert_eq!(out.stdout_text(), "hog\n");
    pod.expect_line("alive");
    pod.stop();
}

/// A container whose VM ends before it does (the first container ended,
/// and with it the VM of `runcvm run`) is told so; nothing is left.
#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn an_attached_container_learns_that_the_vm_ended() {
    let t2 = t2();
    let pod = Pod::start(&t2, "echo up; nc -l -p 9000; echo first-ends");
    pod.expect_line("up");
    let root = own_root(&t2);
    let attached = pod.attach(
        &t2,
        root.path(),
        &[],
        "echo second-up; until echo bye | nc 127.0.0.1 9000; do sleep 0.2; done; while :; do sleep 1; done",
    );
    let mut second = spawn_until(&attached, "second-up");
    pod.expect_line("bye");
    pod.expect_line("first-ends");
    let Pod { run, mut child, .. } = pod;
    assert_eq!(child.wait().unwrap().code(), Some(0), "the first container's status");
    let status = second.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("the VM ended before the container did"), "{stderr}");
    run.assert_nothing_left();
}
