//! Prints the volume figures: sequential write and read of 256 MiB on an NFS
//! volume versus the VM's root disk in the same run (as a ratio), the time
//! to list 10,000 files, and the launcher's RSS idle and under load; and,
//! for the choice of how a container's root reaches its guest
//! (docs/pods.md), a start-up that reads 5,000 small files (`find -type f |
//! xargs cat`) from an NFS share versus the root disk, cold caches in the
//! guest. Root only (it builds a simulated pod). `scripts/bench.sh` runs it
//! with the release binaries.

use runcvm_test_infra::tier::require_t2_for_bench;
use runcvm_test_infra::{PodNet, PodNetOptions, RuncvmRun, Style};
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::time::Duration;

const GUEST_SCRIPT: &str = r#"
t() { cut -d' ' -f1 /proc/uptime; }
echo idle; sleep 2
s=$(t); dd if=/dev/zero of=/data/f bs=1048576 count=256 conv=fsync 2>/dev/null; echo nfs_write $s $(t)
sync; echo 3 > /proc/sys/vm/drop_caches
s=$(t); dd if=/data/f of=/dev/null bs=1048576 2>/dev/null; echo nfs_read $s $(t)
s=$(t); dd if=/dev/zero of=/root/f bs=1048576 count=256 conv=fsync 2>/dev/null; echo disk_write $s $(t)
sync; echo 3 > /proc/sys/vm/drop_caches
s=$(t); dd if=/root/f of=/dev/null bs=1048576 2>/dev/null; echo disk_read $s $(t)
s=$(t); n=$(ls /data/many | wc -l); echo list $s $(t) $n
sync; echo 3 > /proc/sys/vm/drop_caches
s=$(t); n=$(find /data/tree -type f | xargs cat | wc -c); echo nfs_tree $s $(t) $n
sync; echo 3 > /proc/sys/vm/drop_caches
s=$(t); n=$(find /tree -type f | xargs cat | wc -c); echo disk_tree $s $(t) $n
"#;

/// The small-file tree both sides read: 5,000 files of 2 KiB in 50 folders
/// (a language runtime's library, roughly).
fn small_file_tree(at: &std::path::Path) {
    let content = vec![b'x'; 2048];
    for folder in 0..50 {
        let dir = at.join(format!("d{folder:02}"));
        std::fs::create_dir_all(&dir).expect("tree folder");
        for file in 0..100 {
            std::fs::write(dir.join(format!("m{file:03}.py")), &content).expect("tree file");
        }
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn main() {
    let scratch = tempfile::tempdir().expect("scratch folder");
    let t2 = require_t2_for_bench(scratch.path());
    let data = tempfile::tempdir().expect("volume folder");
    std::fs::create_dir(data.path().join("many")).expect("many");
    for i in 0..10_000 {
        std::fs::write(data.path().join("many").join(format!("f{i:05}")), b"").expect("file");
    }
    small_file_tree(&data.path().join("tree"));
    // The same tree on the root disk: a copy of the test rootfs with it.
    let rootfs = scratch.path().join("rootfs-with-tree");
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(&t2.rootfs)
        .arg(&rootfs)
        .status()
        .expect("cp runs");
    assert!(copied.success(), "cannot copy the test rootfs");
    small_file_tree(&rootfs.join("tree"));
    let net = PodNet::build(PodNetOptions::new(Style::Bridge));
    let run = RuncvmRun::new(&t2)
        .in_netns(&net.pod)
        .env("RUNCVM_LOG_LEVEL", "INFO")
        .args([
            "run",
            "--network",
            "pod",
            "--memory",
            "1024",
            "--disk-headroom",
            "1024",
            "--volume",
        ])
        .arg(format!("{}:/data", data.path().display()))
        .arg(&rootfs)
        .args(["--", "sh", "-c", GUEST_SCRIPT]);
    let mut child = run.spawn();
    let pid = child.id();
    let (lines, inbox) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let (mut idle_rss, mut peak_rss) = (0, 0);
    let mut phases: HashMap<String, (f64, f64, String)> = HashMap::new();
    loop {
        match inbox.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                if line == "idle" {
                    std::thread::sleep(Duration::from_secs(1));
                    idle_rss = rss_kib(pid).unwrap_or(0);
                }
                let words: Vec<&str> = line.split_whitespace().collect();
                if let [name, start, end, rest @ ..] = words.as_slice() {
                    if let (Ok(start), Ok(end)) = (start.parse(), end.parse()) {
                        phases.insert((*name).to_owned(), (start, end, rest.join(" ")));
                    }
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
        peak_rss = peak_rss.max(rss_kib(pid).unwrap_or(0));
    }
    let status = child.wait().expect("runcvm ends");
    let secs = |name: &str| phases.get(name).map(|(s, e, _)| (e - s).max(0.01));
    let mib_s = |name: &str| secs(name).map_or(0.0, |s| 256.0 / s);
    println!("volume figures (TCG guest, 256 MiB sequential, dd bs=1M; runcvm {status}):");
    for (nfs, disk) in [("nfs_write", "disk_write"), ("nfs_read", "disk_read")] {
        let (a, b) = (mib_s(nfs), mib_s(disk));
        println!(
            "  {nfs}: {a:.1} MiB/s; {disk}: {b:.1} MiB/s; NFS / root disk = {:.2}",
            if b > 0.0 { a / b } else { 0.0 }
        );
    }
    if let Some((s, e, count)) = phases.get("list") {
        println!("  listing {count} files on the volume: {:.2} s", e - s);
    }
    if let (Some(nfs), Some(disk)) = (secs("nfs_tree"), secs("disk_tree")) {
        println!(
            "  reading 5,000 files of 2 KiB (find | xargs cat, cold): NFS {nfs:.2} s; root disk {disk:.2} s; NFS / root disk = {:.2}",
            nfs / disk
        );
    }
    println!("  launcher RSS: idle {idle_rss} KiB, peak under load {peak_rss} KiB");
}
