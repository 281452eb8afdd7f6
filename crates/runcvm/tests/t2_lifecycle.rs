//! T2 lifecycle: signals sent to the launcher reach the workload in the
//! guest, not the VMM. Run through `scripts/test.sh`.

#![allow(clippy::unwrap_used)]

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use runcvm_test_infra::{RuncvmRun, T2, require_t2, tier, wait_until};
use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

fn t2() -> T2 {
    require_t2(env!("CARGO_BIN_EXE_runcvm"), env!("CARGO_TARGET_TMPDIR"))
}

fn pid_of(child: &Child) -> Pid {
    Pid::from_raw(i32::try_from(child.id()).unwrap())
}

/// Starts `script` in a VM and returns the run, its process and its lines.
fn start(t2: &T2, script: &str) -> (RuncvmRun, Child, Receiver<String>) {
    let run = RuncvmRun::new(t2)
        .arg("run")
        .arg(&t2.rootfs)
        .args(["--", "sh", "-c", script]);
    let mut child = run.spawn();
    let stdout = child.stdout.take().unwrap();
    let (lines, inbox) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    (run, child, inbox)
}

fn expect_line(inbox: &Receiver<String>, wanted: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Ok(line) = inbox.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if line == wanted {
            return;
        }
    }
    panic!("no line {wanted:?} from the guest");
}

#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn a_workload_that_traps_sigterm_decides_the_exit_code() {
    let t2 = t2();
    let (run, mut child, inbox) = start(
        &t2,
        "trap 'echo got-term; exit 0' TERM; echo ready; while :; do sleep 0.1; done",
    );
    expect_line(&inbox, "ready");
    let sent = Instant::now();
    kill(pid_of(&child), Signal::SIGTERM).unwrap();
    expect_line(&inbox, "got-term");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "the workload's own exit code, not 143");
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "took {:?}: not at the end of a grace period",
        sent.elapsed()
    );
    run.assert_nothing_left();
}

#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn every_forwarded_signal_reaches_the_workload() {
    let t2 = t2();
    let script = "for s in HUP INT QUIT USR1 USR2 WINCH; do trap \"echo got-$s\" $s; done; \
                  trap 'echo got-TERM; exit 3' TERM; echo ready; while :; do sleep 0.1; done";
    let (run, mut child, inbox) = start(&t2, script);
    expect_line(&inbox, "ready");
    for (signal, name) in [
        (Signal::SIGHUP, "HUP"),
        (Signal::SIGINT, "INT"),
        (Signal::SIGQUIT, "QUIT"),
        (Signal::SIGUSR1, "USR1"),
        (Signal::SIGUSR2, "USR2"),
        (Signal::SIGWINCH, "WINCH"),
    ] {
        kill(pid_of(&child), signal).unwrap();
        expect_line(&inbox, &format!("got-{name}"));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the VM must survive signals the workload handles"
    );
    kill(pid_of(&child), Signal::SIGTERM).unwrap();
    expect_line(&inbox, "got-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(3));
    run.assert_nothing_left();
}

#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn a_workload_that_ignores_sigterm_still_stops_with_sigkill() {
    let t2 = t2();
    let (run, mut child, inbox) = start(&t2, "trap '' TERM; echo ready; while :; do sleep 0.1; done");
    expect_line(&inbox, "ready");
    kill(pid_of(&child), Signal::SIGTERM).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGTERM was ignored, as the workload asked"
    );
    kill(pid_of(&child), Signal::SIGKILL).unwrap();
    let _ = child.wait();
    // The VMM dies with the launcher (PR_SET_PDEATHSIG): no orphan VM.
    let gone = wait_until(Duration::from_secs(10), || {
        tier::process_mentioning(run.state_dir()).is_none()
    });
    assert!(gone, "left running: {:?}", tier::process_mentioning(run.state_dir()));
    // Nothing cleans up after SIGKILL; the next run removes the stale folder.
    let next = std::process::Command::new(&t2.runcvm)
        .env("RUNCVM_STATE_DIR", run.state_dir())
        .env("RUNCVM_ACCEL", "tcg")
        .arg("run")
        .arg(&t2.rootfs)
        .args(["--", "true"])
        .output()
        .unwrap();
    assert!(next.status.success(), "{}", String::from_utf8_lossy(&next.stderr));
    run.assert_nothing_left();
}

/// vCPUs and memory follow a cgroup limit placed on the launcher.
#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn the_guest_is_sized_by_the_containers_cgroup() {
    let t2 = t2();
    tier::require_root("placing the launcher in a cgroup");
    let cgroup = runcvm_test_infra::cgroup::LimitedCgroup::create(2, 800 << 20);
    let run =
        RuncvmRun::new(&t2)
            .arg("run")
            .arg(&t2.rootfs)
            .args(["--", "sh", "-c", "nproc; grep MemTotal /proc/meminfo"]);
    let inner = run.command();
    let out = std::process::Command::new("sh")
        .args(["-c", &cgroup.join_script(), "sh"])
        .arg(inner.get_program())
        .args(inner.get_args())
        .envs(inner.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("2"), "two CPUs of quota give two vCPUs:\n{stdout}");
    let kib: u64 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // 800 MiB less the 128 MiB overhead is 672 MiB; the kernel keeps some.
    assert!((600 << 10..=672 << 10).contains(&kib), "MemTotal {kib} kB:\n{stdout}");
    drop(cgroup);
    run.assert_nothing_left();
}

#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn explicit_sizes_override_the_defaults() {
    let t2 = t2();
    let out = RuncvmRun::new(&t2)
        .env("RUNCVM_CPUS", "2")
        .env("RUNCVM_MEMORY_MIB", "300")
        .arg("run")
        .arg(&t2.rootfs)
        .args(["--", "sh", "-c", "nproc; grep MemTotal /proc/meminfo"])
        .run();
    let stdout = out.stdout_text();
    assert!(stdout.starts_with("2\n"), "{stdout}");
    let kib: u64 = stdout
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!((250 << 10..=300 << 10).contains(&kib), "MemTotal {kib} kB");
}

fn numbers(from: u64, len: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len + 16);
    let mut n = from;
    while bytes.len() < len {
        bytes.extend_from_slice(format!("{n}\n").as_bytes());
        n += 1;
    }
    bytes.truncate(len);
    bytes
}

/// stdout and stderr leave the guest apart, each byte-exact and in order,
/// written at the same time.
#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn stdout_and_stderr_stay_apart_byte_exact() {
    let t2 = t2();
    const TEN_MIB: usize = 10 << 20;
    let script = format!("seq 1 3000000 | head -c {TEN_MIB} & seq 5000001 8000000 | head -c {TEN_MIB} >&2 & wait");
    let out = RuncvmRun::new(&t2)
        .arg("run")
        .arg(&t2.rootfs)
        .args(["--", "sh", "-c", &script])
        .run();
    assert_eq!(out.code, Some(0));
    assert_eq!(out.stdout.len(), TEN_MIB);
    assert!(out.stdout == numbers(1, TEN_MIB), "stdout differs from `seq 1 …`");
    let stderr = out.stderr.as_bytes();
    let others: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.is_empty() && !l.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    assert_eq!(
        stderr.len(),
        TEN_MIB,
        "stderr holds the workload's stderr only; besides: {others:?}"
    );
    assert!(
        stderr == numbers(5_000_001, TEN_MIB).as_slice(),
        "stderr differs from `seq 5000001 …`"
    );
}

#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn a_hundred_mib_of_output_loses_nothing() {
    let t2 = t2();
    let out = RuncvmRun::new(&t2)
        .arg("run")
        .arg(&t2.rootfs)
        .args(["--", "dd", "if=/dev/zero", "bs=1048576", "count=100"])
        .run();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout.len(), 100 << 20);
    assert!(out.stdout.iter().all(|b| *b == 0));
    assert!(
        out.stderr.contains("100+0 records out"),
        "dd's report goes to stderr: {}",
        out.stderr
    );
}

/// A VM that runs until told to stop, for exec tests; returns its run and
/// the launcher's pid as `runcvm exec` takes it.
fn long_running(t2: &T2) -> (RuncvmRun, Child) {
    let (run, child, inbox) = start(t2, "echo up; while :; do sleep 1; done");
    expect_line(&inbox, "up");
    (run, child)
}

fn exec(t2: &T2, run: &RuncvmRun, child: &Child, args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut command = Command::new(&t2.runcvm);
    command.env("RUNCVM_STATE_DIR", run.state_dir()).arg("exec");
    if stdin.is_some() {
        command.arg("-i");
    }
    command
        .args(args.iter().take_while(|a| **a != "--"))
        .arg(child.id().to_string());
    command.args(args.iter().skip_while(|a| **a != "--"));
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut process = command.spawn().unwrap();
    let mut input = process.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
    }
    drop(input);
    process.wait_with_output().unwrap()
}

fn stop(run: RuncvmRun, mut child: Child) {
    kill(pid_of(&child), Signal::SIGTERM).unwrap();
    let _ = child.wait();
    run.assert_nothing_left();
}

#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn exec_runs_in_the_vm_with_its_own_env_cwd_user_and_stdin() {
    let t2 = t2();
    let (run, child) = long_running(&t2);
    let out = exec(
        &t2,
        &run,
        &child,
        &[
            "-e",
            "GREETING=hi there",
            "-w",
            "/srv/app",
            "-u",
            "1000:1000",
            "--",
            "sh",
            "-c",
            "echo $GREETING; pwd; id -u; id -g; uname -r; echo to-stderr >&2; exit 9",
        ],
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(9), "{stdout}");
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("hi there"));
    assert_eq!(lines.next(), Some("/srv/app"));
    assert_eq!(lines.next(), Some("1000"));
    assert_eq!(lines.next(), Some("1000"));
    assert_eq!(lines.next(), Some("6.1.192"), "the guest kernel, not the host's");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "to-stderr\n");
    let out = exec(
        &t2,
        &run,
        &child,
        &["--", "sh", "-c", "tr a-z A-Z"],
        Some(b"streamed stdin\n"),
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "STREAMED STDIN\n");
    assert_eq!(out.status.code(), Some(0));
    stop(run, child);
}

/// The `Cap*` and `NoNewPrivs` lines of `/proc/PID/status`, by name.
fn privileges_of(pid: &str) -> Vec<(String, String)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .filter(|l| l.starts_with("Cap") || l.starts_with("NoNewPrivs"))
        .filter_map(|l| l.split_once(':'))
        .map(|(name, value)| (name.to_owned(), value.trim().to_owned()))
        .collect()
}

/// The VMM a guest would attack is not root and holds no capability: it
/// runs as the VMM user (65520, the default of the node's settings), in no
/// supplementary group. With its credentials, a file on a volume that only
/// root may write stays unwritable, and the run folder cannot be listed,
/// while what is shared with its group (its disk) can be read.
#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn the_vmm_runs_as_the_vmm_user_without_any_capability() {
    let t2 = t2();
    let (run, child) = long_running(&t2);
    let parent = child.id().to_string();
    let vmm = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            status
                .lines()
                .any(|l| l.split_whitespace().eq(["PPid:", parent.as_str()]))
                && (status.starts_with("Name:\tqemu-system") || status.starts_with("Name:\tfirecracker"))
        })
        .unwrap_or_else(|| panic!("no VMM among the children of {parent}"));
    let privileges = privileges_of(&vmm);
    let zero = "0000000000000000".to_owned();
    for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert!(
            privileges.contains(&(set.to_owned(), zero.clone())),
            "{set} of the VMM (pid {vmm}): {privileges:?}"
        );
    }
    assert!(
        privileges.contains(&("NoNewPrivs".to_owned(), "1".to_owned())),
        "{privileges:?}"
    );
    let status = std::fs::read_to_string(format!("/proc/{vmm}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|rest| rest.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    assert_eq!(field("Uid:"), "65520 65520 65520 65520", "{status}");
    assert_eq!(field("Gid:"), "65520 65520 65520 65520", "{status}");
    assert_eq!(field("Groups:"), "", "{status}");
    // The launcher itself keeps what it needs.
    let launcher = privileges_of(&parent);
    assert!(!launcher.contains(&("CapEff".to_owned(), zero)), "{launcher:?}");

    // With the VMM's credentials (as a VMM that a guest broke out of would
    // have them): a volume's file that only root may write, the run
    // folder, the disk.
    let volume = tempfile::tempdir().unwrap();
    std::fs::set_permissions(volume.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let only_root = volume.path().join("only-root");
    std::fs::write(&only_root, "root's\n").unwrap();
    let as_vmm = |script: &str| {
        std::process::Command::new("setpriv")
            .args([
                "--reuid",
                "65520",
                "--regid",
                "65520",
                "--clear-groups",
                "--",
                "sh",
                "-c",
                script,
            ])
            .output()
            .unwrap()
    };
    let write = as_vmm(&format!("echo vmm >> {}", only_root.display()));
    assert!(!write.status.success(), "{write:?}");
    assert!(
        String::from_utf8_lossy(&write.stderr).contains("Permission denied"),
        "{write:?}"
    );
    assert_eq!(std::fs::read_to_string(&only_root).unwrap(), "root's\n");
    let run_folder = std::fs::read_dir(run.state_dir().join("runs"))
        .unwrap()
        .flatten()
        .next()
        .expect("the run folder")
        .path();
    let list = as_vmm(&format!("ls {}", run_folder.display()));
    assert!(!list.status.success(), "the VMM listed its run folder: {list:?}");
    let disk = as_vmm(&format!(
        "head -c 1 {} >/dev/null",
        run_folder.join("disk.ext4").display()
    ));
    assert!(disk.status.success(), "the VMM cannot read its disk: {disk:?}");
    stop(run, child);
}

#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn exec_of_a_missing_program_answers_127_at_once() {
    let t2 = t2();
    let (run, child) = long_running(&t2);
    let started = Instant::now();
    let out = exec(&t2, &run, &child, &["--", "no-such-program"], None);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("executable file not found in $PATH"));
    stop(run, child);
}

#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn twenty_execs_at_once() {
    let t2 = t2();
    let (run, child) = long_running(&t2);
    let outputs: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let (t2, run, child) = (&t2, &run, &child);
                scope.spawn(move || {
                    exec(
                        t2,
                        run,
                        child,
                        &["--", "sh", "-c", &format!("sleep 0.5; echo exec-{i}; exit {i}")],
                        None,
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, out) in outputs.iter().enumerate() {
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("exec-{i}\n"));
        assert_eq!(out.status.code(), Some(i32::try_from(i).unwrap()));
    }
    stop(run, child);
}

#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn the_escape_hatch_runs_outside_the_vm() {
    let t2 = t2();
    let (run, child) = long_running(&t2);
    let out = exec(&t2, &run, &child, &["--", "---", "uname", "-r"], None);
    let host = std::process::Command::new("uname").arg("-r").output().unwrap();
    assert_eq!(
        out.stdout, host.stdout,
        "`---` runs in the container, on the host kernel"
    );
    stop(run, child);
}

/// `RUNCVM_ACCEL=kvm` on a host whose KVM cannot boot the guest fails at
/// once with the reason; where KVM works, the run simply succeeds.
#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn forced_kvm_fails_fast_where_it_cannot_boot_the_guest() {
    let t2 = t2();
    let run = RuncvmRun::new(&t2)
        .env("RUNCVM_ACCEL", "kvm")
        .arg("run")
        .arg(&t2.rootfs)
        .args(["--", "true"]);
    let out = run.run();
    if out.code != Some(0) {
        assert_eq!(out.code, Some(125), "{}", out.stderr);
        assert!(out.stderr.contains("RUNCVM_ACCEL=kvm, but"), "{}", out.stderr);
        assert!(out.stderr.contains("use RUNCVM_ACCEL=tcg or auto"), "{}", out.stderr);
        assert!(
            out.elapsed < Duration::from_secs(15),
            "took {:?}: it must not hang",
            out.elapsed
        );
    }
    run.assert_nothing_left();
}

#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn a_terminal_workload_gets_a_pty_and_stdin_reaches_it() {
    let t2 = t2();
    let out = RuncvmRun::new(&t2)
        .args(["run", "-t"])
        .arg(&t2.rootfs)
        .args(["--", "sh", "-c", "tty; [ -t 0 ] && [ -t 1 ] && echo all-tty; stty size"])
        .run();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    // A terminal turns \n into \r\n, as it would in a container.
    assert_eq!(out.stdout_text(), "/dev/pts/0\r\nall-tty\r\n24 80\r\n");
    // Bound, not a temporary: its state folder must outlive the run.
    let run = RuncvmRun::new(&t2).args(["run", "-i"]).arg(&t2.rootfs).args([
        "--",
        "sh",
        "-c",
        "read line; echo got:$line; cat | wc -c",
    ]);
    let mut child = run
        .command()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let written = {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"first line\n")
            .and_then(|()| stdin.write_all(&[b'z'; 100_000]))
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        written.is_ok(),
        "writing stdin: {written:?}; {:?}; stderr: {stderr}",
        out.status
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "got:first line\n100000\n",
        "{stderr}"
    );
    run.assert_nothing_left();
}

/// Our terminal's size reaches the guest's terminal, and follows it.
#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn window_size_changes_follow_the_terminal() {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let t2 = t2();
    let size = |rows, cols| libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size(40, 100)), None).unwrap();
    let run = RuncvmRun::new(&t2).args(["run", "-t", "-i"]).arg(&t2.rootfs).args([
        "--",
        "sh",
        "-c",
        "stty size; trap 'stty size' WINCH; echo ready; i=0; while [ $i -lt 60 ]; do sleep 0.1; i=$((i+1)); done",
    ]);
    let mut command = run.command();
    command
        .stdin(pty.slave.try_clone().unwrap())
        .stdout(pty.slave.try_clone().unwrap())
        .stderr(pty.slave.try_clone().unwrap());
    // SAFETY: setsid and TIOCSCTTY only affect the child: the pty becomes
    // its controlling terminal, so resizes signal it.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    drop(pty.slave);
    let mut master = std::fs::File::from(pty.master);
    let (lines, inbox) = mpsc::channel();
    let mut reader = master.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut text = String::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
            let _ = lines.send(text.clone());
        }
    });
    let seen = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Ok(text) = inbox.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            if text.contains(needle) {
                return text;
            }
        }
        panic!("never saw {needle:?}");
    };
    let text = seen("ready");
    assert!(text.contains("40 100"), "the initial size is ours:\n{text}");
    // SAFETY: TIOCSWINSZ on our master side; the kernel signals the
    // launcher (the terminal's session) with SIGWINCH.
    let bigger = size(50, 120);
    // SAFETY: as above.
    unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &raw const bigger) };
    seen("50 120");
    let _ = child.wait();
    let _ = std::io::Write::flush(&mut master);
    run.assert_nothing_left();
}

/// A guest with no entrypoint sleeps for debugging; exec into it works.
/// An exec that comes while the guest is still booting or making the
/// container (as kubelet's exec probe right after the start) waits for the
/// container's process and joins it, its input held meanwhile; it is not
/// refused.
#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn an_exec_right_after_the_start_waits_for_the_container() {
    let t2 = t2();
    let (run, child, inbox) = start(&t2, "echo up; while :; do sleep 1; done");
    let runs = run.state_dir().join("runs");
    let prefix = format!("{}-", child.id());
    let socket_bound = wait_until(Duration::from_secs(30), || {
        std::fs::read_dir(&runs).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(&prefix) && e.path().join("exec.sock").exists())
        })
    });
    assert!(socket_bound, "the launcher never listened for execs");
    assert!(
        inbox.try_recv().is_err(),
        "the container was up before the exec: nothing was tested"
    );
    let out = exec(&t2, &run, &child, &["--", "cat"], Some(b"early input\n"));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "early input\n");
    expect_line(&inbox, "up");
    stop(run, child);
}

#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn exec_into_a_sleeping_guest_returns() {
    let t2 = t2();
    let run = RuncvmRun::new(&t2).args(["run", "--no-entrypoint"]).arg(&t2.rootfs);
    let mut child = run.spawn();
    let stderr = child.stderr.take().unwrap();
    let (lines, inbox) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    expect_line(&inbox, "[VM-START] No entrypoint found, sleeping");
    let started = Instant::now();
    let out = exec(&t2, &run, &child, &["--", "sh", "-c", "echo debugging; exit 3"], None);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "debugging\n");
    assert_eq!(out.status.code(), Some(3));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    stop(run, child);
}

/// One stalled party never stalls the others. An exec client that stops
/// reading (its process writes without end) holds up its own process
/// alone: meanwhile the workload's 50 MiB of output all arrive, a second
/// exec runs, a third (as a liveness probe's `ExecSync`) answers, and the
/// launcher's memory stays bounded (each session's window, not the stalled
/// output, is what it holds); when the client reads again, its session
/// goes on.
#[test]
#[ignore = "T2: boots real VMs; run scripts/test.sh"]
fn a_stalled_exec_client_holds_up_its_own_session_alone() {
    use std::io::{Read, Write};
    const FIFTY_MIB: usize = 50 << 20;
    let t2 = t2();
    let script = format!(
        "echo up; while [ ! -e /tmp/go ]; do sleep 0.1; done; head -c {FIFTY_MIB} /dev/zero; \
         echo; echo workload-done; while :; do sleep 1; done"
    );
    let run = RuncvmRun::new(&t2)
        .arg("run")
        .arg(&t2.rootfs)
        .args(["--", "sh", "-c", &script]);
    let mut child = run.spawn();
    let mut stdout = child.stdout.take().unwrap();
    let (events, inbox) = mpsc::channel::<(&'static str, usize)>();
    std::thread::spawn(move || {
        let mut total = 0;
        let mut last = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                return;
            }
            total += n;
            last.extend_from_slice(&buf[..n]);
            let keep = last.len().saturating_sub(64);
            last.drain(..keep);
            let text = String::from_utf8_lossy(&last);
            if total < 64 && text.contains("up\n") {
                let _ = events.send(("up", total));
            }
            if text.ends_with("workload-done\n") {
                let _ = events.send(("done", total));
            }
        }
    });
    assert_eq!(inbox.recv_timeout(Duration::from_secs(60)).unwrap().0, "up");

    // The stalled client: asks for a process that writes without end, and
    // never reads what comes back.
    let run_folder = std::fs::read_dir(run.state_dir().join("runs"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let mut stalled = std::os::unix::net::UnixStream::connect(run_folder.join("exec.sock")).unwrap();
    let process = runcvm_spec::Entrypoint::new(
        vec!["sh".into(), "-c".into(), "cat /dev/zero".into()],
        vec!["PATH=/usr/bin:/bin".into()],
    );
    runcvm_proto::write_message(
        &mut stalled,
        &runcvm_proto::HostMessage::Exec {
            session: 0,
            container: runcvm_proto::WORKLOAD_SESSION,
            container_name: None,
            process,
            terminal_size: None,
        },
    )
    .unwrap();
    stalled.flush().unwrap();
    std::thread::sleep(Duration::from_secs(2));

    // Another exec goes ahead, and lets the workload write its 50 MiB.
    let go = exec(&t2, &run, &child, &["--", "touch", "/tmp/go"], None);
    assert_eq!(go.status.code(), Some(0), "{go:?}");
    let (what, total) = inbox
        .recv_timeout(Duration::from_secs(120))
        .expect("the workload's output");
    assert_eq!(what, "done");
    assert_eq!(total, "up\n".len() + FIFTY_MIB + "\nworkload-done\n".len());
    // A probe-like exec answers, the stalled session still there.
    let probe = exec(&t2, &run, &child, &["--", "echo", "alive"], None);
    assert_eq!(String::from_utf8_lossy(&probe.stdout), "alive\n", "{probe:?}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    println!("launcher VmRSS with a stalled session and 50 MiB through: {rss_kib} KiB");
    assert!(rss_kib < 64 * 1024, "the launcher holds {rss_kib} KiB");
    // The stalled client reads again: its session goes on where it was,
    // in whole frames.
    stalled.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut resumed = std::io::BufReader::new(&stalled);
    let mut zeros = 0;
    while zeros < 4 << 20 {
        match runcvm_proto::read_frame::<runcvm_proto::GuestMessage>(&mut resumed).unwrap() {
            Some(runcvm_proto::Frame::Data { bytes, .. }) => {
                assert!(bytes.iter().all(|b| *b == 0));
                zeros += bytes.len();
            }
            other => panic!("the stalled session gave {other:?}"),
        }
    }
    drop(resumed);
    drop(stalled);
    stop(run, child);
}
