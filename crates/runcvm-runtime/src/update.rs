//! `update` of a workload container: kubelet's new limits (in-place resize,
//! the CPU manager) arrive as runc's `--resources` JSON. The memory limit
//! is the workload's; the cgroup must keep the launcher's overhead on top,
//! as `create` set it. The VM's size is fixed at boot, so an in-place
//! resize it cannot follow is refused with the reason (the cgroup keeps its
//! limits): a memory limit under the VM's memory (it would OOM-kill the VM)
//! or over it (the guest would never see the room), and a CPU limit over
//! the VM's vCPUs. A lower CPU limit throttles the VM's threads, as it
//! would the container's, and is applied.

use serde_json::Value;

const MIB: u64 = 1 << 20;

/// Why an update is refused.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// a new memory limit below the memory the VM booted with
    #[error(
        "a memory limit of {limit_mib} MiB is below the {guest_mib} MiB the VM booted with: a VM keeps its memory \
         until it restarts, so the lower limit would OOM-kill it; keep the limit at {guest_mib} MiB or more, or \
         restart the container with the new limit"
    )]
    BelowGuestMemory { limit_mib: u64, guest_mib: u32 },
    /// a new memory limit above the memory the VM booted with
    #[error(
        "a memory limit of {limit_mib} MiB is above the {guest_mib} MiB the VM booted with: a VM keeps its memory \
         until it restarts, so the workload would never get the room (in-place resize of a runcvm container's \
         memory is not supported); restart the container with the new limit"
    )]
    AboveGuestMemory { limit_mib: u64, guest_mib: u32 },
    /// a new CPU limit above the vCPUs the VM booted with
    #[error(
        "a CPU limit of {millicpus}m is above the {vcpus} vCPUs the VM booted with: a VM keeps its vCPUs until it \
         restarts (in-place resize of a runcvm container's CPUs is not supported); restart the container with the \
         new limit"
    )]
    AboveGuestCpus { millicpus: u64, vcpus: u32 },
    /// a new limit for a container in its pod's VM
    #[error(
        "a {what} of {asked} for a container in its pod's VM, where it was created with {created}: the VM's guest \
         holds each container to the limits it was created with, and the VM keeps the size it started the pod with \
         (in-place resize in a pod VM is not supported yet); recreate the pod with the new limits"
    )]
    InPodVm {
        what: &'static str,
        asked: String,
        created: String,
    },
}

/// Refuses limits other than those a container in its pod's VM was created
/// with (`plan`): its guest cgroup holds it to those, and its cgroup on the
/// node holds only its launcher.
/// `memory` and `millicpus` are what the update asks for, if it names them
/// (`Some(None)`: no limit).
pub fn check_in_pod_vm(
    memory: Option<Option<u64>>,
    millicpus: Option<Option<u64>>,
    plan: &runcvm_spec::LaunchPlan,
) -> Result<(), UpdateError> {
    let shown = |bytes: Option<u64>| bytes.map_or_else(|| "no limit".to_owned(), |b| format!("{} MiB", b / MIB));
    let same = |asked: Option<u64>| match (asked, plan.memory_limit_bytes) {
        (Some(asked), Some(created)) => created.abs_diff(asked) < MIB,
        (None, None) => true,
        _ => false,
    };
    if let Some(asked) = memory
        && !same(asked)
    {
        return Err(UpdateError::InPodVm {
            what: "memory limit",
            asked: shown(asked),
            created: shown(plan.memory_limit_bytes),
        });
    }
    let created = plan.cpu_limit.map(|cpu| millicpus_of(cpu.quota_us, cpu.period_us));
    let shown = |millicpus: Option<u64>| millicpus.map_or_else(|| "no limit".to_owned(), |m| format!("{m}m"));
    if let Some(asked) = millicpus
        && asked != created
    {
        return Err(UpdateError::InPodVm {
            what: "CPU limit",
            asked: shown(asked),
            created: shown(created),
        });
    }
    Ok(())
}

/// A CPU quota over its period in millicpus, rounded up.
fn millicpus_of(quota_us: u64, period_us: u64) -> u64 {
    quota_us.saturating_mul(1000).div_ceil(period_us.max(1))
}

/// The memory limit an update asks for, if it names one: `Some(None)` for
/// none (0 or -1).
pub fn memory_limit_asked(resources: &Value) -> Option<Option<u64>> {
    let limit = resources.get("memory")?.get("limit")?.as_i64()?;
    Some(u64::try_from(limit).ok().filter(|limit| *limit > 0))
}

/// The new memory limit in bytes, if the update sets one (0 and -1 mean
/// none).
pub fn memory_limit(resources: &Value) -> Option<u64> {
    memory_limit_asked(resources).flatten()
}

/// Refuses a memory limit the VM's `guest_mib` cannot follow: under it, or
/// a whole MiB or more over it (create gave the guest the limit in whole
/// MiB, so the limit it booted with passes again).
pub fn check_memory(limit: u64, guest_mib: u32) -> Result<(), UpdateError> {
    let guest = u64::from(guest_mib) * MIB;
    if limit < guest {
        return Err(UpdateError::BelowGuestMemory {
            limit_mib: limit / MIB,
            guest_mib,
        });
    }
    if limit >= guest + MIB {
        return Err(UpdateError::AboveGuestMemory {
            limit_mib: limit / MIB,
            guest_mib,
        });
    }
    Ok(())
}

/// The new CPU limit in millicpus, if the update sets a quota and period.
pub fn cpu_limit_millicpus(resources: &Value) -> Option<u64> {
    cpu_limit_asked(resources).flatten()
}

/// The CPU limit an update asks for in millicpus, if it names a quota:
/// `Some(None)` for none (0 or -1); a positive quota without a period
/// names nothing that can be told.
pub fn cpu_limit_asked(resources: &Value) -> Option<Option<u64>> {
    let cpu = resources.get("cpu")?;
    let quota = cpu.get("quota")?.as_i64()?;
    let Some(quota) = u64::try_from(quota).ok().filter(|quota| *quota > 0) else {
        return Some(None);
    };
    let period = cpu.get("period").and_then(Value::as_u64).filter(|p| *p > 0)?;
    Some(Some(millicpus_of(quota, period)))
}

/// Refuses a CPU limit over the VM's `vcpus`; a lower one throttles the VM.
pub fn check_cpus(millicpus: u64, vcpus: u32) -> Result<(), UpdateError> {
    if millicpus > u64::from(vcpus) * 1000 {
        return Err(UpdateError::AboveGuestCpus { millicpus, vcpus });
    }
    Ok(())
}

/// Adds `overhead_bytes` to the new memory limits, as `create` did
/// (`runcvm_spec::oci::add_memory_overhead`); anything but an object is
/// handed on as it is, for runc to refuse.
pub fn add_overhead(resources: &mut Value, overhead_bytes: u64) {
    if let Some(resources) = resources.as_object_mut() {
        runcvm_spec::oci::add_memory_overhead(resources, overhead_bytes);
    }
}

/// runc's argv with the `--resources`/`-r` value replaced by `-` (the
/// adjusted JSON then comes on stdin).
pub fn resources_from_stdin(raw: &[std::ffi::OsString]) -> Vec<std::ffi::OsString> {
    let mut out = Vec::with_capacity(raw.len());
    let mut replace_next = false;
    for arg in raw {
        if replace_next {
            out.push("-".into());
            replace_next = false;
            continue;
        }
        let text = arg.to_string_lossy();
        let name = text.trim_start_matches('-');
        let dashed = text.starts_with('-') && text != "-";
        match (dashed, name.split_once('=')) {
            (true, Some(("resources" | "r", _))) => {
                out.push(format!("{}=-", &text[..text.find('=').unwrap_or(0)]).into())
            }
            (true, None) if name == "resources" || name == "r" => {
                out.push(arg.clone());
                replace_next = true;
            }
            _ => out.push(arg.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_in_a_pod_vm_keeps_the_limits_it_was_created_with() {
        let plan = runcvm_spec::LaunchPlan {
            memory_limit_bytes: Some(256 * MIB),
            cpu_limit: Some(runcvm_spec::CpuLimit {
                quota_us: 150_000,
                period_us: 100_000,
            }),
            ..runcvm_spec::LaunchPlan::default()
        };
        check_in_pod_vm(Some(Some(256 * MIB)), Some(Some(1500)), &plan).unwrap();
        check_in_pod_vm(None, None, &plan).unwrap();
        // "No limit" would take the proxy's off while the guest keeps it.
        assert!(check_in_pod_vm(Some(None), None, &plan).is_err());
        assert_eq!(
            memory_limit_asked(&serde_json::json!({"memory": {"limit": -1}})),
            Some(None)
        );
        let bigger = check_in_pod_vm(Some(Some(320 * MIB)), None, &plan)
            .unwrap_err()
            .to_string();
        assert!(
            bigger.contains(
                "a memory limit of 320 MiB for a container in its pod's VM, where it was created with 256 MiB"
            ),
            "{bigger}"
        );
        let cpus = check_in_pod_vm(None, Some(Some(500)), &plan).unwrap_err().to_string();
        // Nor may its CPU limit go.
        let unlimited_cpu = check_in_pod_vm(None, Some(None), &plan).unwrap_err().to_string();
        assert!(unlimited_cpu.contains("a CPU limit of no limit"), "{unlimited_cpu}");
        assert!(cpus.contains("a CPU limit of 500m") && cpus.contains("1500m"), "{cpus}");
        let unlimited = runcvm_spec::LaunchPlan::default();
        assert!(check_in_pod_vm(Some(Some(MIB << 8)), None, &unlimited).is_err());
        check_in_pod_vm(Some(None), None, &unlimited).unwrap();
    }
    use serde_json::json;

    #[test]
    fn a_memory_limit_the_vm_cannot_follow_is_refused_its_own_passes() {
        let limit = |bytes: i64| json!({"memory": {"limit": bytes}, "cpu": {"quota": 50_000}});
        assert_eq!(memory_limit(&limit(128 << 20)), Some(128 << 20));
        for none in [limit(-1), limit(0), json!({"cpu": {"quota": 1}})] {
            assert_eq!(memory_limit(&none), None, "{none}");
        }
        let refused = check_memory(128 << 20, 256).unwrap_err().to_string();
        assert!(
            refused.contains("128 MiB is below the 256 MiB the VM booted with"),
            "{refused}"
        );
        let refused = check_memory(320 << 20, 256).unwrap_err().to_string();
        assert!(
            refused.contains("320 MiB is above the 256 MiB the VM booted with")
                && refused.contains("in-place resize of a runcvm container's memory is not supported"),
            "{refused}"
        );
        check_memory(256 << 20, 256).unwrap();
        // A limit that is not whole MiB boots a guest of the MiB under it.
        check_memory((256 << 20) + 4096, 256).unwrap();
        check_memory(257 << 20, 256).unwrap_err();
    }

    #[test]
    fn a_cpu_limit_over_the_vcpus_is_refused_a_lower_one_passes() {
        let cpu = |quota: i64, period: u64| json!({"cpu": {"quota": quota, "period": period}});
        assert_eq!(cpu_limit_millicpus(&cpu(150_000, 100_000)), Some(1500));
        assert_eq!(cpu_limit_millicpus(&cpu(-1, 100_000)), None);
        assert_eq!(cpu_limit_millicpus(&json!({"cpu": {"shares": 2}})), None);
        assert_eq!(cpu_limit_asked(&cpu(-1, 100_000)), Some(None));
        assert_eq!(cpu_limit_asked(&json!({"cpu": {"shares": 2}})), None);
        let refused = check_cpus(2500, 2).unwrap_err().to_string();
        assert!(
            refused.contains("2500m is above the 2 vCPUs the VM booted with"),
            "{refused}"
        );
        check_cpus(2000, 2).unwrap();
        check_cpus(500, 2).unwrap();
    }

    #[test]
    fn the_overhead_stays_on_top_of_new_limits() {
        let mut resources = json!({"memory": {"limit": 268435456, "swap": -1}, "cpu": {"quota": 50000}});
        add_overhead(&mut resources, 128 << 20);
        assert_eq!(
            resources,
            json!({"memory": {"limit": 268435456 + (128 << 20), "swap": -1}, "cpu": {"quota": 50000}})
        );
        let mut none = json!({"cpu": {"shares": 2}});
        add_overhead(&mut none, 128 << 20);
        assert_eq!(none, json!({"cpu": {"shares": 2}}));
        // cgroup v2 keys, as kubelet's MemoryQoS writes them.
        let mut unified = json!({"unified": {"memory.high": "201326592", "memory.max": "max", "cpu.weight": "10"}});
        add_overhead(&mut unified, 128 << 20);
        assert_eq!(
            unified,
            json!({"unified": {"memory.high": (201_326_592_i64 + (128 << 20)).to_string(), "memory.max": "max", "cpu.weight": "10"}})
        );
    }

    #[test]
    fn the_resources_come_from_stdin_whichever_way_they_were_given() {
        let args = |line: &str| -> Vec<std::ffi::OsString> { line.split(' ').map(Into::into).collect() };
        assert_eq!(
            resources_from_stdin(&args("--root /r update --resources=/tmp/x.json id")),
            args("--root /r update --resources=- id")
        );
        assert_eq!(
            resources_from_stdin(&args("update -r /tmp/x.json id")),
            args("update -r - id")
        );
        assert_eq!(
            resources_from_stdin(&args("update --resources - id")),
            args("update --resources - id")
        );
    }
}
