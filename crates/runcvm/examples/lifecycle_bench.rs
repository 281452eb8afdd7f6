//! Prints the lifecycle figures: the workload's stdout throughput to the
//! launcher's stdout over the control channel versus the serial console in
//! the same run, the exec round trip of `true` (median of 50), and the
//! launcher's RSS while a VM runs. `scripts/bench.sh` runs it with the
//! release binaries.

use runcvm_test_infra::RuncvmRun;
use runcvm_test_infra::tier::require_t2_for_bench;
use std::io::{BufRead, BufReader, Read};
use std::time::{Duration, Instant};

const MIB: usize = 32;
/// The serial console is slow: fewer bytes for it.
const CONSOLE_MIB: usize = 4;

fn main() {
    let scratch = tempfile::tempdir().expect("scratch folder");
    let t2 = require_t2_for_bench(scratch.path());

    // Throughput: the same bytes through stdout (control channel) and
    // through /dev/ttyS0 (the serial console, shown on stderr at INFO).
    let script = format!(
        "t() {{ cut -d' ' -f1 /proc/uptime; }}; s=$(t); dd if=/dev/zero bs=1048576 count={MIB} 2>/dev/null; e=$(t); \
         s2=$(t); dd if=/dev/zero bs=1048576 count={CONSOLE_MIB} 2>/dev/null | tr '\\0' x > /dev/ttyS0; e2=$(t); \
         echo \"$s $e $s2 $e2\" > /dev/ttyS0"
    );
    let run = RuncvmRun::new(&t2)
        .arg("run")
        .arg(&t2.rootfs)
        .args(["--", "sh", "-c", &script]);
    let out = run.run();
    let stderr = &out.stderr;
    let times: Vec<f64> = stderr
        .lines()
        .last()
        .map(|l| {
            l.trim_start_matches('x')
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    if let [s, e, s2, e2] = times[..] {
        let channel = MIB as f64 / (e - s).max(0.01);
        let console = CONSOLE_MIB as f64 / (e2 - s2).max(0.01);
        println!(
            "workload output ({MIB} MiB and {CONSOLE_MIB} MiB): control channel {channel:.1} MiB/s, serial console {console:.1} MiB/s ({:.1}x); stdout got {} bytes",
            channel / console,
            out.stdout.len()
        );
    } else {
        println!("workload output: no timings (stderr ended {:?})", stderr.lines().last());
    }

    // Exec round trip and RSS while the VM runs.
    let run =
        RuncvmRun::new(&t2)
            .arg("run")
            .arg(&t2.rootfs)
            .args(["--", "sh", "-c", "echo up; while :; do sleep 1; done"]);
    let mut child = run.spawn();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    while let Some(Ok(line)) = lines.next() {
        if line == "up" {
            break;
        }
    }
    let mut round_trips = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        let status = std::process::Command::new(&t2.runcvm)
            .env("RUNCVM_STATE_DIR", run.state_dir())
            .args(["exec", &child.id().to_string(), "--", "true"])
            .status()
            .expect("runcvm exec");
        assert!(status.success());
        round_trips.push(started.elapsed());
    }
    round_trips.sort();
    let median = round_trips[round_trips.len() / 2];
    let mut status = String::new();
    let _ = std::fs::File::open(format!("/proc/{}/status", child.id())).and_then(|mut f| f.read_to_string(&mut status));
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .unwrap_or("?")
        .trim()
        .to_owned();
    println!(
        "exec round trip of `true`: median {:.1} ms over 50 (min {:.1}, max {:.1}); launcher RSS while the VM runs: {rss}",
        median.as_secs_f64() * 1000.0,
        round_trips[0].as_secs_f64() * 1000.0,
        round_trips[49].as_secs_f64() * 1000.0
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(0)),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    std::thread::sleep(Duration::from_millis(100));
}
