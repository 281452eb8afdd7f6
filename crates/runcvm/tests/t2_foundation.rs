//! T2: real VMs under TCG with the built guest kernel and a busybox rootfs.
//! Run through `scripts/test.sh` (which builds what they need); they are
//! `#[ignore]`d in a plain `cargo test` and fail, never skip, when their
//! prerequisites are missing.

use runcvm_test_infra::{RuncvmRun, T2, require_t2, tier, wait_until};
use std::io::{BufRead, BufReader};
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

fn t2() -> T2 {
    require_t2(env!("CARGO_BIN_EXE_runcvm"), env!("CARGO_TARGET_TMPDIR"))
}

fn pid_of(child: &std::process::Child) -> nix::unistd::Pid {
    nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"))
}

/// `runcvm run ROOTFS -- ARGS...` with the shared busybox rootfs.
fn run_in_vm(t2: &T2, options: &[&str], command: &[&str]) -> RuncvmRun {
    RuncvmRun::new(t2)
        .arg("run")
        .args(options)
        .arg(&t2.rootfs)
        .arg("--")
        .args(command)
}

#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn argv_reaches_the_workload_byte_exact() {
    let t2 = t2();
    let args = ["a b", "\"double\"", "'single'", "line1\nline2", "", "$HOME", "*"];
    let mut command = vec!["/bin/printf", "<%s>\\n"];
    command.extend(args);
    let run = run_in_vm(&t2, &[], &command);
    let out = run.run();
    let expected: String = args.iter().map(|a| format!("<{a}>\n")).collect();
    assert_eq!(out.stdout_text(), expected, "stderr: {}", out.stderr);
    assert_eq!(out.code, Some(0));
    run.assert_nothing_left();
}

#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn env_reaches_the_workload_exactly_and_in_order() {
    let t2 = t2();
    let out = run_in_vm(
        &t2,
        &[
            "--env",
            "PATH=/bin",
            "--env",
            "A=b=c",
            "--env",
            "Q='\"x\"'",
            "--env",
            "NL=l1\nl2",
        ],
        &["/bin/env"],
    )
    .run();
    assert_eq!(
        out.stdout_text(),
        "PATH=/bin\nA=b=c\nQ='\"x\"'\nNL=l1\nl2\n",
        "stderr: {}",
        out.stderr
    );
}

#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn non_utf8_arguments_survive() {
    let t2 = t2();
    let raw = std::ffi::OsStr::from_bytes(b"\xff\xfe-raw");
    let out = RuncvmRun::new(&t2)
        .args([
            "run".as_ref(),
            t2.rootfs.as_os_str(),
            "--".as_ref(),
            "/bin/printf".as_ref(),
            "%s".as_ref(),
            raw,
        ])
        .run();
    assert_eq!(out.stdout, b"\xff\xfe-raw", "stderr: {}", out.stderr);
}

#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn workdir_user_and_groups_apply() {
    let t2 = t2();
    let out = run_in_vm(
        &t2,
        &[
            "--workdir",
            "/srv/app",
            "--user",
            "1000:1000",
            "--group-add",
            "44",
            "--group-add",
            "5",
        ],
        &[
            "sh",
            "-c",
            "pwd; id -u; id -g; id -G; touch /var/tmp/f; stat -c %u:%g /var/tmp/f",
        ],
    )
    .run();
    assert_eq!(
        out.stdout_text(),
        "/srv/app\n1000\n1000\n1000 5 44\n1000:1000\n",
        "stderr: {}",
        out.stderr
    );
    assert_eq!(out.code, Some(0));
}

#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn exit_codes_pass_through() {
    let t2 = t2();
    for (script, expected) in [("exit 0", 0), ("exit 1", 1), ("exit 42", 42), ("kill -KILL $$", 137)] {
        let run = run_in_vm(&t2, &[], &["sh", "-c", script]);
        let out = run.run();
        assert_eq!(out.code, Some(expected), "{script}: stderr {}", out.stderr);
        run.assert_nothing_left();
    }
}

#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn missing_or_unrunnable_program_exits_like_runc() {
    let t2 = t2();
    // runc's wording, on stderr with the other guest init lines.
    let out = run_in_vm(&t2, &[], &["no-such-program"]).run();
    assert_eq!(out.code, Some(127));
    assert!(
        out.stderr
            .contains(r#"exec: "no-such-program": executable file not found in $PATH"#),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout_text(), "");
    let out = run_in_vm(&t2, &[], &["/etc/passwd"]).run();
    assert_eq!(out.code, Some(126), "{}", out.stderr);
    assert!(out.stderr.contains("permission denied"), "{}", out.stderr);
    let out = run_in_vm(&t2, &[], &["/no/such/file"]).run();
    assert_eq!(out.code, Some(127), "{}", out.stderr);
}

#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn orphaned_children_do_not_hold_the_vm() {
    let t2 = t2();
    let run = run_in_vm(&t2, &[], &["sh", "-c", "sleep 600 & sleep 600 & echo started; exit 7"]);
    let out = run.run();
    assert_eq!(out.code, Some(7));
    assert_eq!(out.stdout_text(), "started\n");
    assert!(out.elapsed < Duration::from_secs(60), "took {:?}", out.elapsed);
    run.assert_nothing_left();
}

#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn info_shows_only_the_workload_and_debug_shows_the_boot() {
    let t2 = t2();
    let info = run_in_vm(&t2, &[], &["echo", "only this"]).run();
    assert_eq!(info.stdout_text(), "only this\n");
    assert!(!info.stderr.contains("Linux version"), "{}", info.stderr);

    let debug = run_in_vm(&t2, &[], &["echo", "only this"])
        .env("RUNCVM_LOG_LEVEL", "DEBUG")
        .run();
    // The workload's stdout stays clean; the console's lines are logs.
    assert_eq!(debug.stdout_text(), "only this\n");
    let logs = &debug.stderr;
    assert!(logs.contains("Linux version 6.1"), "{logs}");
    assert!(logs.contains("runcvm-init DEBUG: kernel command line:"), "{logs}");
    assert!(
        logs.contains("[VM-START] DEBUG: runcvm-vm-start loaded /.runcvm/entrypoint"),
        "{logs}"
    );
    assert!(logs.contains("[VM-START] DEBUG: argv[1] = \"only this\""), "{logs}");
    assert!(
        debug.stderr.contains("runcvm DEBUG: host preparation took"),
        "{}",
        debug.stderr
    );

    let bad = run_in_vm(&t2, &[], &["true"]).env("RUNCVM_LOG_LEVEL", "LOUD").run();
    assert_eq!(bad.code, Some(125));
    assert!(bad.stderr.contains("use ERROR, WARN, INFO or DEBUG"), "{}", bad.stderr);
}

#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn hostname_is_set() {
    let t2 = t2();
    let out = run_in_vm(&t2, &["--hostname", "pod-a"], &["hostname"]).run();
    assert_eq!(out.stdout_text(), "pod-a\n");
}

/// `--read-only` (Kubernetes' `readOnlyRootFilesystem`): the root refuses
/// the workload's writes; the guest's own tmpfs mounts do not. Without it,
/// the root takes them.
#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn a_read_only_root_refuses_the_workloads_writes() {
    let t2 = t2();
    let script = "touch /root-file 2>&1; echo root=$?; touch /tmp/f /dev/shm/f && echo tmpfs-writable";
    let out = run_in_vm(&t2, &["--read-only"], &["sh", "-c", script]).run();
    let text = out.stdout_text();
    assert!(
        text.contains("Read-only file system\nroot=1\ntmpfs-writable\n"),
        "{text}"
    );
    let out = run_in_vm(&t2, &[], &["sh", "-c", script]).run();
    assert_eq!(out.stdout_text(), "root=0\ntmpfs-writable\n");
    // A missing working directory is made before the root turns read-only.
    let out = run_in_vm(
        &t2,
        &["--read-only", "--workdir", "/made/here"],
        &["sh", "-c", "pwd; touch x 2>/dev/null || echo read-only"],
    )
    .run();
    assert_eq!(out.stdout_text(), "/made/here\nread-only\n", "{}", out.stderr);
}

#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn container_mounts_are_in_place() {
    let t2 = t2();
    let out = run_in_vm(
        &t2,
        &[],
        &["sh", "-c", "cut -d' ' -f2,3 /proc/mounts; ls -ld /tmp | cut -c1-10"],
    )
    .run();
    let text = out.stdout_text();
    for mount in [
        "/ ext4",
        "/proc proc",
        "/sys sysfs",
        "/dev devtmpfs",
        "/dev/pts devpts",
        "/dev/shm tmpfs",
        "/run tmpfs",
        "/tmp tmpfs",
    ] {
        assert!(text.lines().any(|l| l == mount), "{mount} missing from:\n{text}");
    }
    assert!(text.contains("drwxrwxrwt"), "{text}");
}

#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn missing_entrypoint_sleeps_and_says_so() {
    let t2 = t2();
    let run = RuncvmRun::new(&t2).arg("run").arg("--no-entrypoint").arg(&t2.rootfs);
    let mut child = run.spawn();
    // Guest init's lines come with the launcher's logs, on stderr.
    let stdout = BufReader::new(child.stderr.take().unwrap());
    let (lines, inbox) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let line = inbox.recv_timeout(Duration::from_secs(60)).expect("a console line");
    assert_eq!(line, "[VM-START] No entrypoint found, sleeping");
    // It keeps sleeping...
    assert!(inbox.recv_timeout(Duration::from_secs(2)).is_err());
    assert!(child.try_wait().unwrap().is_none());
    // ...until stopped.
    nix::sys::signal::kill(pid_of(&child), nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    run.assert_nothing_left();
}

#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn auto_acceleration_says_once_why_it_chose() {
    let t2 = t2();
    let out = run_in_vm(&t2, &[], &["true"]).env("RUNCVM_ACCEL", "auto").run();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let warnings: Vec<&str> = out.stderr.lines().filter(|l| l.contains(" WARN: ")).collect();
    // On a host whose KVM boots the guest there is nothing to warn about.
    if !warnings.is_empty() {
        assert_eq!(warnings.len(), 1, "{}", out.stderr);
        assert!(warnings[0].contains("running the VM under TCG"), "{}", warnings[0]);
    }
}

// --- bad input: one clear error, nothing left behind -----------------------

#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn missing_kernel_is_named() {
    let t2 = t2();
    let run = run_in_vm(&t2, &[], &["true"]).env("RUNCVM_KERNEL", "/nonexistent/vmlinux");
    let out = run.run();
    assert_eq!(out.code, Some(125));
    assert!(
        out.stderr.contains("guest kernel not found at /nonexistent/vmlinux"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("kernel/build.sh"), "{}", out.stderr);
    run.assert_nothing_left();
}

#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn unwritable_state_folder_is_named() {
    let t2 = t2();
    let out = run_in_vm(&t2, &[], &["true"])
        .env("RUNCVM_STATE_DIR", "/proc/runcvm")
        .run();
    assert_eq!(out.code, Some(125));
    assert!(
        out.stderr.contains("cannot create a run folder in /proc/runcvm"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("RUNCVM_STATE_DIR"), "{}", out.stderr);
}

#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn rootfs_that_is_not_a_folder_is_named() {
    let t2 = t2();
    let run = RuncvmRun::new(&t2).args(["run", "/nonexistent-rootfs", "--", "true"]);
    let out = run.run();
    assert_eq!(out.code, Some(125));
    assert!(
        out.stderr
            .contains("rootfs /nonexistent-rootfs is not a readable folder"),
        "{}",
        out.stderr
    );
    run.assert_nothing_left();
}

#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn missing_mkfs_is_named() {
    let t2 = t2();
    tier::require_root("hiding mkfs.ext4 in a private mount namespace");
    // Hide the real mkfs.ext4 behind /dev/null in a mount namespace of the
    // run's own, so the host's tool is never touched.
    let run = RuncvmRun::new(&t2);
    let mkfs = runcvm_rootfs::find_tool("mkfs.ext4").expect("mkfs.ext4 on the host");
    let command = run.command();
    let program = command.get_program().to_owned();
    let args: Vec<_> = ["run".as_ref(), t2.rootfs.as_os_str(), "--".as_ref(), "true".as_ref()].to_vec();
    let script = format!("mount --bind /dev/null {} && exec \"$0\" \"$@\"", mkfs.display());
    let mut wrapped = std::process::Command::new("unshare");
    wrapped
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .arg(program)
        .args(args);
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            wrapped.env(key, value);
        }
    }
    let out = wrapped.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("mkfs.ext4 not found"), "{stderr}");
    assert!(stderr.contains("apt-get install e2fsprogs"), "{stderr}");
    run.assert_nothing_left();
}

#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn boot_watchdog_reports_the_console_tail() {
    let t2 = t2();
    // A root device that never appears: the kernel waits for ever.
    let run = run_in_vm(&t2, &[], &["true"])
        .env("RUNCVM_KERNEL_ARGS", "root=/dev/vdz rootwait")
        .env("RUNCVM_BOOT_TIMEOUT", "4");
    let out = run.run();
    assert_eq!(out.code, Some(125), "{}", out.stderr);
    let accel = if runcvm_test_infra::runner::on_firecracker() {
        "kvm"
    } else {
        "tcg"
    };
    assert!(
        out.stderr
            .contains(&format!("did not reach guest init within 4 s under {accel}")),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("last console lines:"), "{}", out.stderr);
    assert!(
        out.stderr.contains("Waiting for root device /dev/vdz"),
        "{}",
        out.stderr
    );
    assert!(out.elapsed < Duration::from_secs(30), "took {:?}", out.elapsed);
    run.assert_nothing_left();
}

#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn a_guest_that_panics_is_reported_with_its_console() {
    let t2 = t2();
    let run = run_in_vm(&t2, &[], &["true"]).env("RUNCVM_KERNEL_ARGS", "init=/no/such/init");
    let out = run.run();
    assert_eq!(out.code, Some(125), "{}", out.stderr);
    assert!(
        out.stderr.contains("before the workload reported an exit status"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("Kernel panic"), "{}", out.stderr);
    run.assert_nothing_left();
}

#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn stopping_the_launcher_stops_the_vm_and_cleans_up() {
    let t2 = t2();
    let run = run_in_vm(&t2, &[], &["sh", "-c", "echo up; sleep 600"]);
    let mut child = run.spawn();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert_eq!(first, "up\n");
    nix::sys::signal::kill(pid_of(&child), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(wait_until(Duration::from_secs(20), || child
        .try_wait()
        .unwrap()
        .is_some()));
    assert_eq!(child.wait().unwrap().code(), Some(143));
    run.assert_nothing_left();
}
