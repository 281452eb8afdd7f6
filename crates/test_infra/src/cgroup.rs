//! A cgroup with CPU and memory limits that a test puts a process in, as a
//! container runtime would; removed when dropped. cgroup v1 (cpu and memory
//! hierarchies) or v2, whichever the machine has.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Debug)]
pub struct LimitedCgroup {
    /// The cgroup folders the process joins (one on v2, two on v1).
    dirs: Vec<PathBuf>,
}

const ROOT: &str = "/sys/fs/cgroup";

fn own_path(controller: &str) -> String {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    cgroups
        .lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
            (controllers.split(',').any(|c| c == controller) || (controller.is_empty() && controllers.is_empty()))
                .then(|| path.to_owned())
        })
        .unwrap_or_else(|| "/".to_owned())
}

impl LimitedCgroup {
    /// Limits to `cpus` CPUs of quota and `memory_bytes`.
    pub fn create(cpus: u32, memory_bytes: u64) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "rcvm-t-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let write = |path: PathBuf, value: String| {
            std::fs::write(&path, &value).unwrap_or_else(|e| panic!("write {value} to {}: {e}", path.display()));
        };
        if Path::new(ROOT).join("cgroup.controllers").exists() {
            let dir = Path::new(ROOT).join(own_path("").trim_start_matches('/')).join(&name);
            std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
            write(dir.join("cpu.max"), format!("{} 100000", u64::from(cpus) * 100_000));
            write(dir.join("memory.max"), memory_bytes.to_string());
            return Self { dirs: vec![dir] };
        }
        let cpu = Path::new(ROOT)
            .join("cpu")
            .join(own_path("cpu").trim_start_matches('/'))
            .join(&name);
        let memory = Path::new(ROOT)
            .join("memory")
            .join(own_path("memory").trim_start_matches('/'))
            .join(&name);
        for dir in [&cpu, &memory] {
            std::fs::create_dir(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        }
        write(cpu.join("cpu.cfs_period_us"), "100000".to_owned());
        write(cpu.join("cpu.cfs_quota_us"), (u64::from(cpus) * 100_000).to_string());
        write(memory.join("memory.limit_in_bytes"), memory_bytes.to_string());
        Self {
            dirs: vec![cpu, memory],
        }
    }

    /// A shell prefix that moves the shell into the cgroup, then runs "$@".
    pub fn join_script(&self) -> String {
        let joins: Vec<String> = self
            .dirs
            .iter()
            .map(|d| format!("echo $$ > {}/cgroup.procs", d.display()))
            .collect();
        format!("{} && exec \"$@\"", joins.join(" && "))
    }
}

impl Drop for LimitedCgroup {
    fn drop(&mut self) {
        for dir in &self.dirs {
            // Empty once the test's processes are gone; retry briefly.
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
}
