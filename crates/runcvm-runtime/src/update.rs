//! `update` of a workload container: kubelet's new limits (in-place resize,
//! the CPU manager) arrive as runc's `--resources` JSON. The memory limit
//! is the workload's; the cgroup must keep the launcher's overhead on top,
//! as `create` set it; and the VM's memory, fixed at boot, is a floor the
//! limit may not go under.

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
}

/// The new memory limit in bytes, if the update sets one (0 and -1 mean
/// none).
pub fn memory_limit(resources: &Value) -> Option<u64> {
    resources
        .get("memory")
        .and_then(|memory| memory.get("limit"))
        .and_then(Value::as_i64)
        .and_then(|limit| u64::try_from(limit).ok())
        .filter(|limit| *limit > 0)
}

/// Refuses a memory limit under `guest_mib`.
pub fn check_memory_floor(limit: u64, guest_mib: u32) -> Result<(), UpdateError> {
    if limit < u64::from(guest_mib) * MIB {
        return Err(UpdateError::BelowGuestMemory {
            limit_mib: limit / MIB,
            guest_mib,
        });
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
    use serde_json::json;

    #[test]
    fn a_limit_under_the_guests_memory_is_refused_others_pass() {
        let limit = |bytes: i64| json!({"memory": {"limit": bytes}, "cpu": {"quota": 50_000}});
        assert_eq!(memory_limit(&limit(128 << 20)), Some(128 << 20));
        for none in [limit(-1), limit(0), json!({"cpu": {"quota": 1}})] {
            assert_eq!(memory_limit(&none), None, "{none}");
        }
        let refused = check_memory_floor(128 << 20, 256).unwrap_err().to_string();
        assert!(
            refused.contains("128 MiB is below the 256 MiB the VM booted with"),
            "{refused}"
        );
        check_memory_floor(256 << 20, 256).unwrap();
        check_memory_floor(1 << 30, 256).unwrap();
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
