//! The OCI runtime bundle as `runcvm-runtime` sees it: a typed, lenient read
//! of the fields it needs from `config.json` and `process.json`, and the
//! rewrites it applies to them.
//!
//! Rewrites work on `serde_json::Value`, never on the typed view: a typed
//! round trip would drop every field this build does not know, and the
//! runtime must hand runc everything the caller wrote.

use crate::{ByteString, Entrypoint, ProcessCapabilities};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The CRI annotation that says what a container is to Kubernetes.
pub const CRI_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
/// CRI-O's name for the same.
pub const CRIO_CONTAINER_TYPE: &str = "io.kubernetes.cri-o.ContainerType";
/// The CRI annotation naming a container's pod sandbox.
pub const CRI_SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
/// containerd's pod-level sizing on the sandbox: the sums of the
/// containers' limits that kubelet passes (absent when there are none).
pub const SANDBOX_CPU_PERIOD: &str = "io.kubernetes.cri.sandbox-cpu-period";
pub const SANDBOX_CPU_QUOTA: &str = "io.kubernetes.cri.sandbox-cpu-quota";
pub const SANDBOX_CPU_SHARES: &str = "io.kubernetes.cri.sandbox-cpu-shares";
pub const SANDBOX_MEMORY: &str = "io.kubernetes.cri.sandbox-memory";

/// The capability the launcher always needs: it builds `br-eth0` and
/// `tap-eth0`, moves addresses and installs the nftables guard in the pod's
/// network namespace.
pub const LAUNCHER_CAPABILITY: &str = "CAP_NET_ADMIN";
/// What the launcher needs besides to change ids: the VMM's process
/// becomes the unprivileged VMM user (and the launcher joins its group),
/// and the volumes' NFS server acts with each request's uid and gid
/// (`setfsuid`, `setfsgid`, `setgroups`). Containers have both by default;
/// a pod that dropped them would otherwise get a VMM running as root and
/// volumes that refuse every request.
pub const IDENTITY_CAPABILITIES: [&str; 2] = ["CAP_SETUID", "CAP_SETGID"];

/// The annotation `rewrite_config` adds: a bundle that has it was rewritten
/// already and must not be rewritten again.
pub const REWRITTEN_ANNOTATION: &str = "run.runcvm.launcher";

/// The pod's variables the launcher keeps: the knobs of a run that change
/// nothing but the pod's own speed, waits and verbosity, or whether it
/// starts without a volume. Nothing else of the pod's env reaches the
/// launcher, which runs as root with `CAP_NET_ADMIN`: not what chooses
/// binaries (`RUNCVM_QEMU`, `PATH`), not what the dynamic loader reads
/// (`LD_PRELOAD`), not what changes how the guest boots
/// ([`NODE_ONLY_ENV`]). The workload keeps its whole env in the guest.
pub const LAUNCHER_ENV: [&str; 6] = [
    "RUNCVM_LOG_LEVEL",
    "RUNCVM_ACCEL",
    "RUNCVM_BOOT_TIMEOUT",
    "RUNCVM_NET_WAIT",
    "RUNCVM_MAC_SWAP",
    "RUNCVM_VOLUME_FAILURE",
];
/// `runcvm run`'s knobs that change how the guest boots: in a pod, the
/// node's settings decide these, and the pod's env is ignored (an image's
/// `ENV RUNCVM_KERNEL_ARGS=init=/bin/sh` would make its shell the guest's
/// PID 1, as root, before the pod's user or capabilities apply).
pub const NODE_ONLY_ENV: [&str; 2] = ["RUNCVM_KERNEL_ARGS", "RUNCVM_HYPERVISOR"];
/// The launcher's `PATH`: its own install, then the usual folders.
pub const LAUNCHER_PATH: &str = "PATH=/opt/runcvm/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The capability sets a process's capabilities come from.
const CAPABILITY_SETS: [&str; 3] = ["bounding", "effective", "permitted"];

/// `config.json` or `process.json` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// not valid JSON of the OCI runtime spec's shape
    #[error("{file} is not a valid OCI {what}: {source}")]
    Malformed {
        file: String,
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// a field the runtime must change has the wrong type
    #[error("{file}: `{field}` is not {expected}")]
    Shape {
        file: String,
        field: &'static str,
        expected: &'static str,
    },
}

/// The parts of `config.json` the runtime reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciConfig {
    pub process: Option<OciProcess>,
    pub root: Option<OciRoot>,
    pub hostname: Option<String>,
    #[serde(default)]
    pub mounts: Vec<OciMount>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub linux: Option<OciLinux>,
}

/// `process`, from `config.json` or a `process.json` of `runc exec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciProcess {
    #[serde(default)]
    pub terminal: bool,
    #[serde(default)]
    pub no_new_privileges: bool,
    #[serde(default)]
    pub user: OciUser,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub cwd: String,
    #[serde(default)]
    pub capabilities: Option<ProcessCapabilities>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciUser {
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    #[serde(default)]
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct OciRoot {
    pub path: String,
    #[serde(default)]
    pub readonly: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct OciMount {
    pub destination: String,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciLinux {
    #[serde(default)]
    pub namespaces: Vec<OciNamespace>,
    /// User namespace mappings (`hostUsers: false`).
    #[serde(default)]
    pub uid_mappings: Vec<OciIdMapping>,
    #[serde(default)]
    pub gid_mappings: Vec<OciIdMapping>,
    #[serde(default)]
    pub devices: Vec<OciDevice>,
    pub resources: Option<OciResources>,
    /// Kernel parameters; containerd writes the pod's into the sandbox's
    /// spec only.
    #[serde(default)]
    pub sysctl: BTreeMap<String, String>,
    #[serde(default)]
    pub masked_paths: Vec<String>,
    #[serde(default)]
    pub readonly_paths: Vec<String>,
    pub seccomp: Option<runcvm_seccomp::SeccompProfile>,
    /// The container's cgroup: a path (cgroupfs) or `slice:prefix:name`
    /// (systemd).
    pub cgroups_path: Option<String>,
}

/// One range of `uidMappings` or `gidMappings`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct OciIdMapping {
    #[serde(rename = "containerID")]
    pub container_id: u32,
    #[serde(rename = "hostID")]
    pub host_id: u32,
    pub size: u32,
}

impl From<OciIdMapping> for crate::IdMapping {
    fn from(m: OciIdMapping) -> Self {
        Self {
            container_id: m.container_id,
            host_id: m.host_id,
            size: m.size,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct OciNamespace {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub path: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct OciDevice {
    pub path: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct OciResources {
    pub memory: Option<OciMemory>,
    pub cpu: Option<OciCpu>,
    /// The device cgroup's rules.
    #[serde(default)]
    pub devices: Vec<OciDeviceRule>,
    /// cgroup v2 files to set (`memory.oom.group`, which kubelet sets).
    #[serde(default)]
    pub unified: BTreeMap<String, String>,
}

/// One device cgroup rule.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct OciDeviceRule {
    #[serde(default)]
    pub allow: bool,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    pub major: Option<i64>,
    pub minor: Option<i64>,
    #[serde(default)]
    pub access: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct OciMemory {
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct OciCpu {
    pub quota: Option<i64>,
    pub period: Option<u64>,
    pub shares: Option<u64>,
}

/// A pod's sizing, from its sandbox's annotations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SandboxSizing {
    pub cpu: Option<crate::CpuLimit>,
    pub cpu_shares: Option<u64>,
    pub memory_bytes: Option<u64>,
}

/// What a container is to its pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerRole {
    /// The pod's pause container: it only holds the namespaces and runs
    /// under runc unchanged.
    Sandbox,
    /// A workload container: it runs as a VM.
    Workload,
}

impl OciConfig {
    pub fn parse(bytes: &[u8], file: &str) -> Result<Self, OciError> {
        serde_json::from_slice(bytes).map_err(|source| OciError::Malformed {
            file: file.to_owned(),
            what: "runtime config",
            source,
        })
    }

    /// Whether `rewrite_config` has been applied already.
    pub fn rewritten(&self) -> bool {
        self.annotations.contains_key(REWRITTEN_ANNOTATION)
    }

    pub fn role(&self) -> ContainerRole {
        let kind = self
            .annotations
            .get(CRI_CONTAINER_TYPE)
            .or_else(|| self.annotations.get(CRIO_CONTAINER_TYPE));
        if kind.is_some_and(|k| k == "sandbox") {
            ContainerRole::Sandbox
        } else {
            ContainerRole::Workload
        }
    }

    /// The path of the network namespace the container joins, if it joins
    /// one; `None` with a `network` entry means a new one, and no entry at all
    /// means the host's.
    pub fn network_namespace(&self) -> Option<Option<&str>> {
        self.linux
            .as_ref()?
            .namespaces
            .iter()
            .find(|ns| ns.kind == "network")
            .map(|ns| ns.path.as_deref())
    }

    /// Whether the device cgroup lets the container use every device: a
    /// privileged container (containerd's `WithAllDevicesAllowed`).
    pub fn all_devices_allowed(&self) -> bool {
        let rules = self
            .linux
            .as_ref()
            .and_then(|l| l.resources.as_ref())
            .map_or(&[][..], |r| r.devices.as_slice());
        rules.iter().any(|rule| {
            rule.allow
                && rule.kind.as_deref().is_none_or(|k| k == "a")
                && rule.major.is_none()
                && rule.minor.is_none()
                && rule
                    .access
                    .as_deref()
                    .is_some_and(|a| a.contains('r') && a.contains('w') && a.contains('m'))
        })
    }

    /// Whether an OOM kill in the container ends all of it (cgroup v2's
    /// `memory.oom.group`, which kubelet sets unless told otherwise).
    pub fn memory_oom_group(&self) -> bool {
        self.linux
            .as_ref()
            .and_then(|l| l.resources.as_ref())
            .and_then(|r| r.unified.get("memory.oom.group"))
            .is_some_and(|v| v.trim() == "1")
    }

    /// Whether `/sys` is mounted read-only (as for a container that is not
    /// privileged).
    pub fn sys_read_only(&self) -> bool {
        self.mounts
            .iter()
            .any(|m| m.destination == "/sys" && m.options.iter().any(|o| o == "ro"))
    }

    /// The id of the container's pod sandbox, as containerd names it.
    pub fn sandbox_id(&self) -> Option<&str> {
        self.annotations.get(CRI_SANDBOX_ID).map(String::as_str)
    }

    /// The pod's sizing a sandbox's annotations carry: what kubelet summed
    /// over the pod's containers. A value that is absent, zero or not a
    /// number means no limit.
    pub fn sandbox_sizing(&self) -> SandboxSizing {
        let number = |key: &str| {
            self.annotations
                .get(key)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|n| *n > 0)
        };
        let period = number(SANDBOX_CPU_PERIOD).unwrap_or(100_000);
        SandboxSizing {
            cpu: number(SANDBOX_CPU_QUOTA).map(|quota_us| crate::CpuLimit {
                quota_us,
                period_us: period,
            }),
            cpu_shares: number(SANDBOX_CPU_SHARES),
            memory_bytes: number(SANDBOX_MEMORY),
        }
    }

    /// The memory limit in bytes, if any (CRI writes 0 for none).
    pub fn memory_limit(&self) -> Option<u64> {
        let limit = self.linux.as_ref()?.resources.as_ref()?.memory.as_ref()?.limit?;
        u64::try_from(limit).ok().filter(|l| *l > 0)
    }

    /// The CPU limit as whole vCPUs, rounded up, if any.
    pub fn cpu_limit(&self) -> Option<u32> {
        let limit = self.cpu_quota()?;
        u32::try_from(limit.quota_us.div_ceil(limit.period_us)).ok()
    }

    /// The CPU limit as a quota per period (CRI writes no quota, or a
    /// quota of 0 or -1, for none; the kernel's period when none is given).
    pub fn cpu_quota(&self) -> Option<crate::CpuLimit> {
        let cpu = self.linux.as_ref()?.resources.as_ref()?.cpu.as_ref()?;
        let quota_us = u64::try_from(cpu.quota?).ok().filter(|q| *q > 0)?;
        let period_us = cpu.period.filter(|p| *p > 0).unwrap_or(100_000);
        Some(crate::CpuLimit { quota_us, period_us })
    }

    /// The CPU shares as a cgroup v2 `cpu.weight` (1 to 10000), converted
    /// as runc converts them (2 shares: 1, 1024: 39, 262144: 10000).
    pub fn cpu_weight(&self) -> Option<u64> {
        let shares = self.linux.as_ref()?.resources.as_ref()?.cpu.as_ref()?.shares?;
        (shares > 0).then(|| 1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142)
    }
}

impl OciProcess {
    pub fn parse(bytes: &[u8], file: &str) -> Result<Self, OciError> {
        serde_json::from_slice(bytes).map_err(|source| OciError::Malformed {
            file: file.to_owned(),
            what: "process",
            source,
        })
    }

    /// The process as the guest runs it.
    pub fn entrypoint(&self) -> Entrypoint {
        let mut entrypoint = Entrypoint::new(
            self.args.iter().map(|a| ByteString::from(a.as_str())).collect(),
            self.env.iter().map(|e| ByteString::from(e.as_str())).collect(),
        );
        entrypoint.cwd = ByteString::from(if self.cwd.is_empty() { "/" } else { self.cwd.as_str() });
        entrypoint.uid = self.user.uid;
        entrypoint.gid = self.user.gid;
        entrypoint.additional_gids = self.user.additional_gids.clone();
        entrypoint.terminal = self.terminal;
        entrypoint.no_new_privileges = self.no_new_privileges;
        // runc gives a process without `capabilities` none at all; so does
        // the guest.
        entrypoint.capabilities = Some(self.capabilities.clone().unwrap_or_default());
        entrypoint
    }
}

/// A character device the launcher needs in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharDevice {
    pub path: String,
    pub major: u64,
    pub minor: u64,
}

/// A bind mount the runtime adds to the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedMount {
    pub source: String,
    pub destination: String,
    pub read_only: bool,
    /// Whether programs may run from it.
    pub exec: bool,
    /// Whether the mounts under the source come along (`rbind`) or only
    /// the source's own file system (`bind`).
    pub recursive: bool,
}

/// How the runtime turns a workload container into its launcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LauncherRewrite {
    /// The launcher's argv, paths as the container sees them.
    pub args: Vec<String>,
    /// Capabilities added to the sets the process has.
    pub capabilities: Vec<String>,
    pub devices: Vec<CharDevice>,
    pub mounts: Vec<AddedMount>,
    /// Added to the memory limit (and the swap limit, if set), if there is
    /// one: the VMM and the launcher live in the container's cgroup too.
    pub memory_overhead_bytes: u64,
    /// Leaves out the node's devices a privileged container was given: the
    /// VM cannot use them, and the launcher needs none of them.
    pub drop_host_devices: bool,
    /// Leaves out the user namespace, its mappings and the mounts' id
    /// mappings: the guest runs the workload in the pod's user namespace,
    /// and the launcher stays in the node's, which owns the devices and the
    /// pod's network it needs.
    pub drop_user_namespace: bool,
    /// The CPU weight of the container's cgroup, where it is to be set: a
    /// pod VM's sandbox holds the whole pod's vCPUs, where containerd gives
    /// the pause container the least weight there is (2 shares).
    pub cpu_shares: Option<u64>,
}

/// Rewrites `config.json` so the container runs the launcher: argv, root
/// user, `/` as cwd, the environment kept; the capability the launcher needs
/// added to the sets it has; the devices added, with their cgroup rules; the
/// mounts added; the memory limit raised. Everything else — seccomp,
/// AppArmor, masked paths, rlimits, unknown fields — is left as it was.
pub fn rewrite_config(config: &mut Value, rewrite: &LauncherRewrite, file: &str) -> Result<(), OciError> {
    let shape = |field: &'static str, expected: &'static str| OciError::Shape {
        file: file.to_owned(),
        field,
        expected,
    };
    let root = config
        .as_object_mut()
        .ok_or_else(|| shape("(top level)", "an object"))?;
    let process = root
        .get_mut("process")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| shape("process", "an object"))?;
    process.insert("args".into(), json!(rewrite.args));
    process.insert("cwd".into(), json!("/"));
    process.insert("user".into(), json!({"uid": 0, "gid": 0}));
    let kept: Vec<Value> = process
        .get("env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|entry| {
            let name = entry.as_str().and_then(|e| e.split('=').next()).unwrap_or_default();
            LAUNCHER_ENV.contains(&name)
        })
        .cloned()
        .collect();
    let mut env = vec![json!(LAUNCHER_PATH)];
    env.extend(kept);
    process.insert("env".into(), Value::Array(env));
    add_capabilities(process, &rewrite.capabilities, file)?;

    let annotations = root.entry("annotations").or_insert_with(|| json!({}));
    annotations
        .as_object_mut()
        .ok_or_else(|| shape("annotations", "an object"))?
        .insert(REWRITTEN_ANNOTATION.into(), json!("rewritten"));

    let mounts = root.entry("mounts").or_insert_with(|| json!([]));
    let mounts = mounts.as_array_mut().ok_or_else(|| shape("mounts", "an array"))?;
    if rewrite.drop_user_namespace {
        for mount in mounts.iter_mut().filter_map(Value::as_object_mut) {
            mount.remove("uidMappings");
            mount.remove("gidMappings");
            if let Some(options) = mount.get_mut("options").and_then(Value::as_array_mut) {
                options.retain(|o| o != "idmap" && o != "ridmap");
            }
        }
    }
    for mount in &rewrite.mounts {
        let bind = if mount.recursive { "rbind" } else { "bind" };
        let mut options = vec![bind, if mount.read_only { "ro" } else { "rw" }, "nosuid", "nodev"];
        if !mount.exec {
            options.push("noexec");
        }
        mounts.push(json!({
            "destination": mount.destination,
            "type": "bind",
            "source": mount.source,
            "options": options,
        }));
    }

    let linux = root.entry("linux").or_insert_with(|| json!({}));
    let linux = linux.as_object_mut().ok_or_else(|| shape("linux", "an object"))?;
    if rewrite.drop_host_devices {
        linux.insert("devices".into(), json!([]));
    }
    if rewrite.drop_user_namespace {
        linux.remove("uidMappings");
        linux.remove("gidMappings");
        if let Some(namespaces) = linux.get_mut("namespaces").and_then(Value::as_array_mut) {
            namespaces.retain(|ns| ns.get("type").and_then(Value::as_str) != Some("user"));
        }
    }
    let devices = linux.entry("devices").or_insert_with(|| json!([]));
    let devices = devices
        .as_array_mut()
        .ok_or_else(|| shape("linux.devices", "an array"))?;
    for device in &rewrite.devices {
        devices.push(json!({
            "path": device.path,
            "type": "c",
            "major": device.major,
            "minor": device.minor,
            "fileMode": 0o666,
            "uid": 0,
            "gid": 0,
        }));
    }
    let resources = linux.entry("resources").or_insert_with(|| json!({}));
    let resources = resources
        .as_object_mut()
        .ok_or_else(|| shape("linux.resources", "an object"))?;
    let rules = resources.entry("devices").or_insert_with(|| json!([]));
    let rules = rules
        .as_array_mut()
        .ok_or_else(|| shape("linux.resources.devices", "an array"))?;
    // Read and write: the launcher opens the devices, and never makes a
    // device node of its own (runc puts these in place).
    for device in &rewrite.devices {
        rules.push(json!({
            "allow": true,
            "type": "c",
            "major": device.major,
            "minor": device.minor,
            "access": "rw",
        }));
    }
    add_memory_overhead(resources, rewrite.memory_overhead_bytes);
    if let Some(shares) = rewrite.cpu_shares {
        let cpu = resources.entry("cpu").or_insert_with(|| json!({}));
        cpu.as_object_mut()
            .ok_or_else(|| shape("linux.resources.cpu", "an object"))?
            .insert("shares".into(), json!(shares));
    }
    Ok(())
}

/// Adds `overhead_bytes` to every memory limit of an OCI `linux.resources`
/// object (or of `runc update`'s resources): `memory.limit` and
/// `memory.swap`, and cgroup v2's `unified` `memory.max`, `memory.high` and
/// `memory.swap.max` (kubelet's MemoryQoS sets `memory.high`). The VMM and
/// the launcher live in the container's cgroup beside the guest's memory.
/// A limit that means none (0, -1, `max`) stays so.
pub fn add_memory_overhead(resources: &mut serde_json::Map<String, Value>, overhead_bytes: u64) {
    let overhead = i64::try_from(overhead_bytes).unwrap_or(i64::MAX);
    if let Some(memory) = resources.get_mut("memory").and_then(Value::as_object_mut) {
        for key in ["limit", "swap"] {
            if let Some(limit) = memory.get(key).and_then(Value::as_i64).filter(|l| *l > 0) {
                memory.insert(key.into(), json!(limit.saturating_add(overhead)));
            }
        }
    }
    if let Some(unified) = resources.get_mut("unified").and_then(Value::as_object_mut) {
        for key in ["memory.max", "memory.high", "memory.swap.max"] {
            let limit = unified
                .get(key)
                .and_then(Value::as_str)
                .and_then(|v| v.trim().parse::<i64>().ok());
            if let Some(limit) = limit.filter(|l| *l > 0) {
                unified.insert(key.into(), json!(limit.saturating_add(overhead).to_string()));
            }
        }
    }
}

/// Adds `names` to the bounding, effective and permitted sets of a process
/// object (containerd leaves an empty set out, as for a pod that dropped
/// ALL). A process without a `capabilities` object gets one: runc gives such
/// a process no capability at all.
pub fn add_capabilities(
    process: &mut serde_json::Map<String, Value>,
    names: &[impl AsRef<str>],
    file: &str,
) -> Result<(), OciError> {
    let shape = |expected| OciError::Shape {
        file: file.to_owned(),
        field: "process.capabilities",
        expected,
    };
    let capabilities = process.entry("capabilities").or_insert_with(|| json!({}));
    let capabilities = capabilities.as_object_mut().ok_or_else(|| shape("an object"))?;
    for set in CAPABILITY_SETS {
        let list = capabilities.entry(set).or_insert_with(|| json!([]));
        let list = list.as_array_mut().ok_or_else(|| shape("an object of arrays"))?;
        for name in names {
            if !list.iter().any(|c| c == name.as_ref()) {
                list.push(json!(name.as_ref()));
            }
        }
    }
    Ok(())
}

/// Rewrites a `process.json` of `runc exec` so `launcher_args` (the exec
/// client, followed by the command) runs in the container as root, in `/`,
/// with the process's environment.
pub fn rewrite_exec_process(process: &mut Value, launcher_args: &[String], file: &str) -> Result<(), OciError> {
    let process = process.as_object_mut().ok_or_else(|| OciError::Shape {
        file: file.to_owned(),
        field: "(top level)",
        expected: "an object",
    })?;
    process.insert("args".into(), json!(launcher_args));
    process.insert("cwd".into(), json!("/"));
    process.insert("user".into(), json!({"uid": 0, "gid": 0}));
    Ok(())
}

#[cfg(test)]
mod tests;
