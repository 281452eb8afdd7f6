//! The VM's size from the container's cgroup limits, as a container's
//! processes would be held to them: vCPUs from the CPU quota (rounded up),
//! memory from the memory limit less what runs beside the guest (the VMM,
//! the launcher and its NFS server). cgroup v2 and v1 both; a limit set on
//! any ancestor counts. `RUNCVM_CPUS` and `RUNCVM_MEMORY_MIB` override, and
//! `runcvm run --cpus/--memory` override those.

use std::path::{Path, PathBuf};

pub const CPUS_ENV: &str = "RUNCVM_CPUS";
pub const MEMORY_ENV: &str = "RUNCVM_MEMORY_MIB";
/// vCPUs when nothing limits the CPU.
pub const DEFAULT_CPUS: u32 = 1;
/// Guest memory when nothing limits memory.
pub const DEFAULT_MEMORY_MIB: u32 = 512;
/// Kept back from a memory limit for the VMM (QEMU under TCG keeps a
/// translation cache), the launcher and its NFS server.
pub const MEMORY_OVERHEAD_MIB: u64 = 128;
/// Below this a guest does not boot usefully.
const MIN_GUEST_MIB: u64 = 64;
const MIB: u64 = 1 << 20;

/// What the cgroups allow; `None` where nothing is set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Thousandths of a CPU worth of quota (1000 × quota / period).
    pub millicpus: Option<u64>,
    pub memory_bytes: Option<u64>,
}

/// The VM's size and where each figure came from (for the DEBUG line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSize {
    pub cpus: u32,
    pub memory_mib: u32,
    pub origin: String,
}

/// A memory limit too small for any guest.
#[derive(Debug, thiserror::Error)]
#[error(
    "the container's memory limit of {limit_mib} MiB leaves {guest_mib} MiB for the guest after {MEMORY_OVERHEAD_MIB} MiB \
     for the VMM and launcher: raise the limit to at least {} MiB",
    MIN_GUEST_MIB + MEMORY_OVERHEAD_MIB
)]
pub struct TooLittleMemory {
    limit_mib: u64,
    guest_mib: u64,
}

/// Reads the limits of the calling process's cgroups under `root`
/// (normally `/sys/fs/cgroup`), given `/proc/self/cgroup`.
pub fn read_limits(proc_self_cgroup: &str, root: &Path) -> Limits {
    let mut limits = Limits::default();
    for line in proc_self_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        if controllers.is_empty() {
            // cgroup v2, or the v2 part of a hybrid host.
            let v2 = if root.join("cgroup.controllers").exists() {
                root.to_owned()
            } else {
                root.join("unified")
            };
            limits.millicpus = min_u(limits.millicpus, walk(&v2, path, cpu_v2));
            limits.memory_bytes = min_u(limits.memory_bytes, walk(&v2, path, memory_v2));
        }
        for controller in controllers.split(',') {
            match controller {
                "cpu" => {
                    let base = hierarchy(root, "cpu", controllers);
                    limits.millicpus = min_u(limits.millicpus, walk(&base, path, cpu_v1));
                }
                "memory" => {
                    let base = hierarchy(root, "memory", controllers);
                    limits.memory_bytes = min_u(limits.memory_bytes, walk(&base, path, memory_v1));
                }
                _ => {}
            }
        }
    }
    limits
}

/// Where a v1 controller is mounted: `cpu`, or a joint `cpu,cpuacct`.
fn hierarchy(root: &Path, controller: &str, joint: &str) -> PathBuf {
    let single = root.join(controller);
    if single.exists() { single } else { root.join(joint) }
}

/// The tightest limit from the cgroup at `path` up to the root. Inside a
/// container the hierarchy may be mounted at the container's own cgroup,
/// where `path` (the host's view) does not exist: then the mount root is
/// the container's cgroup.
fn walk<T: Ord + Copy>(base: &Path, path: &str, read: impl Fn(&Path) -> Option<T>) -> Option<T> {
    let mut dir = base.join(path.trim_start_matches('/'));
    if !dir.exists() {
        dir = base.to_owned();
    }
    let mut best: Option<T> = None;
    loop {
        if let Some(value) = read(&dir) {
            best = Some(match best {
                Some(current) if current <= value => current,
                _ => value,
            });
        }
        if dir == base || !dir.pop() || !dir.starts_with(base) {
            return best;
        }
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

/// `cpu.max`: `max 100000` or `200000 100000`.
fn cpu_v2(dir: &Path) -> Option<u64> {
    let text = read_trimmed(&dir.join("cpu.max"))?;
    let mut words = text.split_whitespace();
    let quota: u64 = words.next()?.parse().ok()?;
    let period: u64 = words.next()?.parse().ok()?;
    (period > 0).then(|| quota * 1000 / period)
}

fn memory_v2(dir: &Path) -> Option<u64> {
    read_trimmed(&dir.join("memory.max"))?.parse().ok()
}

/// A quota of -1 means none.
fn cpu_v1(dir: &Path) -> Option<u64> {
    let quota: u64 = read_trimmed(&dir.join("cpu.cfs_quota_us"))?.parse().ok()?;
    let period: u64 = read_trimmed(&dir.join("cpu.cfs_period_us"))?.parse().ok()?;
    (period > 0).then(|| quota * 1000 / period)
}

/// v1 says "unlimited" with a huge number (a page-rounded i64::MAX).
fn memory_v1(dir: &Path) -> Option<u64> {
    let bytes: u64 = read_trimmed(&dir.join("memory.limit_in_bytes"))?.parse().ok()?;
    (bytes < 1 << 62).then_some(bytes)
}

fn min_u(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// {name}={value:?} is not a whole number from {min} to {max}
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}={value:?} is not a whole number from {min} to {max}")]
pub struct BadSize {
    pub name: &'static str,
    pub value: String,
    pub min: u32,
    pub max: u32,
}

/// Explicit sizes, strongest first: command-line flags, then environment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    pub cpus: Option<u32>,
    pub memory_mib: Option<u32>,
}

impl Overrides {
    /// A binary's `RUNCVM_CPUS` and `RUNCVM_MEMORY_MIB` values.
    pub fn from_settings(cpus: Option<&str>, memory_mib: Option<&str>) -> Result<Self, BadSize> {
        let read = |name: &'static str, value: Option<&str>, range: std::ops::RangeInclusive<u32>| match value {
            Some(value) if !value.trim().is_empty() => value
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|v| range.contains(v))
                .map(Some)
                .ok_or_else(|| BadSize {
                    name,
                    value: value.to_owned(),
                    min: *range.start(),
                    max: *range.end(),
                }),
            _ => Ok(None),
        };
        // The same bounds as --cpus and --memory.
        Ok(Self {
            cpus: read(CPUS_ENV, cpus, 1..=64)?,
            memory_mib: read(MEMORY_ENV, memory_mib, 64..=u32::MAX)?,
        })
    }

    /// `self` where set, else `weaker`.
    pub fn or(self, weaker: Self) -> Self {
        Self {
            cpus: self.cpus.or(weaker.cpus),
            memory_mib: self.memory_mib.or(weaker.memory_mib),
        }
    }
}

/// The VM's size: overrides, else the cgroup limits, else the defaults;
/// vCPUs never above the host's CPUs.
pub fn vm_size(limits: Limits, overrides: Overrides, host_cpus: u32) -> Result<VmSize, TooLittleMemory> {
    let mut origin = Vec::new();
    let cpus = match (overrides.cpus, limits.millicpus) {
        (Some(cpus), _) => {
            origin.push("cpus set explicitly");
            cpus
        }
        (None, Some(quota)) => {
            origin.push("cpus from the cgroup CPU quota");
            u32::try_from(quota.div_ceil(1000)).unwrap_or(u32::MAX).max(1)
        }
        (None, None) => DEFAULT_CPUS,
    }
    .min(host_cpus.max(1));
    let memory_mib = match (overrides.memory_mib, limits.memory_bytes) {
        (Some(mib), _) => {
            origin.push("memory set explicitly");
            mib
        }
        (None, Some(bytes)) => {
            origin.push("memory from the cgroup limit less the overhead");
            let limit_mib = bytes / MIB;
            let guest_mib = limit_mib.saturating_sub(MEMORY_OVERHEAD_MIB);
            if guest_mib < MIN_GUEST_MIB {
                return Err(TooLittleMemory { limit_mib, guest_mib });
            }
            u32::try_from(guest_mib).unwrap_or(u32::MAX)
        }
        (None, None) => DEFAULT_MEMORY_MIB,
    };
    let origin = if origin.is_empty() {
        "defaults (no cgroup limits)".to_owned()
    } else {
        origin.join(", ")
    };
    Ok(VmSize {
        cpus,
        memory_mib,
        origin,
    })
}

/// The limits of this process's cgroups.
pub fn current_limits() -> Limits {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    read_limits(&cgroups, Path::new("/sys/fs/cgroup"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, content: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    #[test]
    fn v2_limits_take_the_tightest_ancestor() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "cgroup.controllers", "cpu memory");
        write(root.path(), "pods/cpu.max", "max 100000");
        write(root.path(), "pods/memory.max", "1073741824");
        write(root.path(), "pods/pod1/ctr/cpu.max", "150000 100000");
        write(root.path(), "pods/pod1/ctr/memory.max", "max");
        let limits = read_limits("0::/pods/pod1/ctr\n", root.path());
        assert_eq!(limits.millicpus, Some(1500));
        assert_eq!(limits.memory_bytes, Some(1 << 30));
    }

    #[test]
    fn v1_limits_with_joint_controllers_and_unlimited_memory() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "cpu,cpuacct/kube/ctr/cpu.cfs_quota_us", "250000");
        write(root.path(), "cpu,cpuacct/kube/ctr/cpu.cfs_period_us", "100000");
        write(
            root.path(),
            "memory/kube/ctr/memory.limit_in_bytes",
            "9223372036854771712",
        );
        let limits = read_limits("4:memory:/kube/ctr\n3:cpu,cpuacct:/kube/ctr\n", root.path());
        assert_eq!(limits.millicpus, Some(2500));
        assert_eq!(limits.memory_bytes, None);
    }

    #[test]
    fn inside_a_container_the_mount_root_is_the_containers_cgroup() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "memory/memory.limit_in_bytes", "805306368");
        let limits = read_limits("4:memory:/host/path/of/ctr\n", root.path());
        assert_eq!(limits.memory_bytes, Some(768 << 20));
    }

    #[test]
    fn sizes_come_from_overrides_then_limits_then_defaults() {
        let limits = Limits {
            millicpus: Some(1200),
            memory_bytes: Some(1 << 30),
        };
        let size = vm_size(limits, Overrides::default(), 8).unwrap();
        assert_eq!((size.cpus, size.memory_mib), (2, 1024 - 128));
        let size = vm_size(
            limits,
            Overrides {
                cpus: Some(4),
                memory_mib: Some(300),
            },
            8,
        )
        .unwrap();
        assert_eq!((size.cpus, size.memory_mib), (4, 300));
        let size = vm_size(Limits::default(), Overrides::default(), 8).unwrap();
        assert_eq!((size.cpus, size.memory_mib), (DEFAULT_CPUS, DEFAULT_MEMORY_MIB));
        assert_eq!(
            vm_size(
                Limits {
                    millicpus: Some(16_000),
                    memory_bytes: None
                },
                Overrides::default(),
                2
            )
            .unwrap()
            .cpus,
            2
        );
    }

    #[test]
    fn a_memory_limit_below_the_overhead_is_a_clear_error() {
        let err = vm_size(
            Limits {
                millicpus: None,
                memory_bytes: Some(150 << 20),
            },
            Overrides::default(),
            2,
        )
        .unwrap_err();
        assert!(err.to_string().contains("raise the limit to at least 192 MiB"), "{err}");
    }
}
