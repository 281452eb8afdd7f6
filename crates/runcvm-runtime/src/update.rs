//! `update` of a workload container: kubelet's new limits (in-place resize,
//! the CPU manager) arrive as runc's `--resources` JSON. The memory limit
//! is the workload's; the cgroup must keep the launcher's overhead on top,
//! as `create` set it.

use serde_json::Value;

/// Adds `overhead_bytes` to the memory limit and the swap limit where they
/// are set (0 and -1 mean none and stay so).
pub fn add_overhead(resources: &mut Value, overhead_bytes: u64) {
    let Some(memory) = resources.get_mut("memory").and_then(Value::as_object_mut) else {
        return;
    };
    let overhead = i64::try_from(overhead_bytes).unwrap_or(i64::MAX);
    for key in ["limit", "swap"] {
        if let Some(limit) = memory.get(key).and_then(Value::as_i64).filter(|l| *l > 0) {
            memory.insert(key.into(), Value::from(limit.saturating_add(overhead)));
        }
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
