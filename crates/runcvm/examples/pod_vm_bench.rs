//! Prints the figures of more containers in one VM (`runcvm attach`): the
//! time from starting `runcvm attach` to its container's first line, in a
//! VM that is already up (no boot), and what two more sleeping containers
//! cost: the VMM's RSS and the guest's used memory with one container and
//! with three, and the attach processes' own RSS on the node. Needs root (a
//! pod network). `scripts/bench.sh` runs it with the release binaries.

use runcvm_test_infra::tier::require_t2_for_bench;
use runcvm_test_infra::{PodNet, PodNetOptions, RuncvmRun, Style, T2};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

const ATTACHES: usize = 10;

fn main() {
    runcvm_test_infra::tier::require_root("the pod VM bench (a pod network namespace)");
    let scratch = tempfile::tempdir().expect("scratch folder");
    let t2 = require_t2_for_bench(scratch.path());
    let net = PodNet::build(PodNetOptions::new(Style::Bridge));
    let run = RuncvmRun::new(&t2)
        .in_netns(&net.pod)
        .args(["run", "--network", "pod", "--memory", "512"])
        .arg(&t2.rootfs)
        .args(["--", "sh", "-c", "echo up; while :; do sleep 1; done"]);
    let mut first = run.spawn();
    // Release builds abort on a panic, which would leave the pod behind:
    // a failure is an error, and the VM and the pod go first.
    let measured = measure(&t2, &net, &run, &mut first);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(first.id()).unwrap_or(0)),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = first.wait();
    drop(run);
    drop(net);
    if let Err(e) = measured {
        eprintln!("pod VM bench: {e}");
        std::process::exit(1);
    }
}

fn measure(t2: &T2, net: &PodNet, run: &RuncvmRun, first: &mut Child) -> Result<(), String> {
    let stdout = first.stdout.take().ok_or("no stdout")?;
    let up = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line == "up");
    if !up {
        return Err("the first container never said up".into());
    }
    let folder = run_folder(run.state_dir(), first.id())?;
    let attach = |root: &Path, script: &str| {
        RuncvmRun::new(t2)
            .in_netns(&net.pod)
            .arg("attach")
            .arg(&folder)
            .arg(root)
            .args(["--", "sh", "-c", script])
    };

    let mut firsts = Vec::new();
    for _ in 0..ATTACHES {
        let root = own_root(&t2.rootfs)?;
        // Kept until the end: dropping a run kills what it started.
        let attached = attach(root.path(), "echo first-line");
        let started = Instant::now();
        let mut child = attached.spawn();
        let line = first_line(&mut child);
        firsts.push(started.elapsed());
        let status = child.wait().map_err(|e| e.to_string())?;
        if line != "first-line\n" || !status.success() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            return Err(format!("runcvm attach: {status}, first line {line:?}: {stderr}"));
        }
    }
    firsts.sort();
    println!(
        "runcvm attach to its container's first line (VM up, TCG, {ATTACHES} runs): median {:.0} ms, min {:.0}, max {:.0}",
        ms(firsts[ATTACHES / 2]),
        ms(firsts[0]),
        ms(firsts[ATTACHES - 1])
    );

    let vmm = vmm_of(first.id())?;
    let one = (rss_kib(vmm), guest_used_kib(t2, run.state_dir(), first.id()));
    let roots = [own_root(&t2.rootfs)?, own_root(&t2.rootfs)?];
    let mut sleepers: Vec<(RuncvmRun, Child)> = Vec::new();
    for root in &roots {
        let sleeper = attach(root.path(), "echo sleeping; while :; do sleep 1; done");
        let mut child = sleeper.spawn();
        if first_line(&mut child) != "sleeping\n" {
            return Err("a sleeping container did not start".into());
        }
        sleepers.push((sleeper, child));
    }
    std::thread::sleep(Duration::from_secs(2));
    let three = (rss_kib(vmm), guest_used_kib(t2, run.state_dir(), first.id()));
    let proxies: u64 = sleepers.iter().map(|(_, child)| rss_kib(child.id())).sum();
    println!(
        "one VM, 1 container -> 3: VMM RSS {} -> {} MiB ({:.2}x); guest used {} -> {} MiB; the 2 attach processes' RSS {} MiB",
        one.0 >> 10,
        three.0 >> 10,
        three.0 as f64 / one.0.max(1) as f64,
        one.1 >> 10,
        three.1 >> 10,
        proxies >> 10
    );
    for (_, mut child) in sleepers {
        let _ = child.kill();
        let _ = child.wait();
    }
    Ok(())
}

/// The first line a started `runcvm attach` prints ("" if none).
fn first_line(child: &mut Child) -> String {
    let mut line = String::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = BufReader::new(stdout).read_line(&mut line);
    }
    line
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A container's own root: a copy of the rootfs, as the node gives each.
fn own_root(rootfs: &Path) -> Result<tempfile::TempDir, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(rootfs.join("."))
        .arg(dir.path())
        .status()
        .map_err(|e| e.to_string())?;
    if !copied.success() {
        return Err(format!("cannot copy {} ({copied})", rootfs.display()));
    }
    Ok(dir)
}

fn run_folder(state: &Path, pid: u32) -> Result<std::path::PathBuf, String> {
    let prefix = format!("{pid}-");
    std::fs::read_dir(state.join("runs"))
        .map_err(|e| e.to_string())?
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .ok_or_else(|| "no run folder of the launcher".to_owned())
}

/// The launcher's VMM: its one child process.
fn vmm_of(launcher: u32) -> Result<u32, String> {
    let children = std::fs::read_to_string(format!("/proc/{launcher}/task/{launcher}/children")).unwrap_or_default();
    children
        .split_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .next()
        .ok_or_else(|| "the launcher has no VMM child".to_owned())
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// MemTotal - MemAvailable in the guest, read by an exec.
fn guest_used_kib(t2: &T2, state: &Path, launcher: u32) -> u64 {
    let out = std::process::Command::new(&t2.runcvm)
        .env("RUNCVM_STATE_DIR", state)
        .args(["exec", &launcher.to_string(), "--", "cat", "/proc/meminfo"])
        .output()
        .expect("runcvm exec");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    field("MemTotal:").saturating_sub(field("MemAvailable:"))
}
