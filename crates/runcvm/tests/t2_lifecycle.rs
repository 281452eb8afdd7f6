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
}
