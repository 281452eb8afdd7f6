//! Builders for the two CRI configs a test writes: [`PodSpec`] (a
//! `PodSandboxConfig` plus its runtime handler) and [`ContainerSpec`] (a
//! `ContainerConfig`). Their defaults are what kubelet sends for a plain
//! BestEffort pod: network and IPC namespaces of the pod, a PID namespace
//! per container, seccomp `Unconfined`, kubelet's masked and read-only
//! paths, CPU shares 2 and `oom_score_adj` 1000.

use k8s_cri::v1 as cri;
use k8s_cri::v1::security_profile::ProfileType;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use k8s_cri::v1::NamespaceMode;

/// The paths kubelet masks in every unprivileged container.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];
/// The paths kubelet makes read-only in every unprivileged container.
pub const READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

fn namespaces() -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: cri::NamespaceMode::Pod.into(),
        pid: cri::NamespaceMode::Container.into(),
        ipc: cri::NamespaceMode::Pod.into(),
        ..Default::default()
    }
}

fn unconfined() -> Option<cri::SecurityProfile> {
    Some(Seccomp::Unconfined.profile())
}

/// kubelet's annotation naming the termination message file's path in the
/// container, and its policy.
pub const TERMINATION_MESSAGE_PATH_ANNOTATION: &str = "io.kubernetes.container.terminationMessagePath";
pub const TERMINATION_MESSAGE_POLICY_ANNOTATION: &str = "io.kubernetes.container.terminationMessagePolicy";
/// Where kubelet puts the termination message file by default.
pub const TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";

/// A seccomp profile as a pod's `securityContext.seccompProfile` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seccomp {
    /// `Unconfined` (the harness's default, as kubelet's without a profile).
    Unconfined,
    /// `RuntimeDefault`: containerd's default profile.
    RuntimeDefault,
    /// `Localhost`: a profile file containerd reads, by absolute path (what
    /// kubelet passes after joining its seccomp folder).
    Localhost(PathBuf),
}

impl Seccomp {
    /// CRI's `SecurityProfile`.
    pub fn profile(&self) -> cri::SecurityProfile {
        let (kind, localhost_ref) = match self {
            Self::Unconfined => (ProfileType::Unconfined, String::new()),
            Self::RuntimeDefault => (ProfileType::RuntimeDefault, String::new()),
            Self::Localhost(path) => (ProfileType::Localhost, path.to_string_lossy().into_owned()),
        };
        cri::SecurityProfile {
            profile_type: kind.into(),
            localhost_ref,
        }
    }
}

/// Which of the three namespaces a mode applies to.
fn set_mode(options: &mut cri::NamespaceOption, kind: Namespace, mode: NamespaceMode) {
    let mode = i32::from(mode);
    match kind {
        Namespace::Network => options.network = mode,
        Namespace::Pid => options.pid = mode,
        Namespace::Ipc => options.ipc = mode,
    }
}

/// The namespaces CRI lets a pod choose: the pod's own, each container's,
/// or the node's (`hostNetwork`, `hostPID`, `hostIPC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    Network,
    Pid,
    Ipc,
}

/// A pod sandbox to run: its `PodSandboxConfig` and runtime handler.
#[derive(Debug, Clone)]
pub struct PodSpec {
    pub config: cri::PodSandboxConfig,
    /// `""` is containerd's default handler (`runc` here).
    pub runtime_handler: String,
}

impl PodSpec {
    /// A pod `name` in namespace `default`, uid `<name>-uid`, hostname
    /// `name`. Its log folder must be set ([`Self::log_directory`]; a
    /// [`crate::Node`] does it in `Node::pod`).
    pub fn new(name: &str) -> Self {
        let config = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.to_owned(),
                uid: format!("{name}-uid"),
                namespace: "default".to_owned(),
                attempt: 0,
            }),
            hostname: name.to_owned(),
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(namespaces()),
                    seccomp: unconfined(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            labels: HashMap::from([("io.kubernetes.pod.name".to_owned(), name.to_owned())]),
            ..Default::default()
        };
        Self {
            config,
            runtime_handler: String::new(),
        }
    }

    fn metadata(&mut self) -> &mut cri::PodSandboxMetadata {
        self.config.metadata.get_or_insert_with(Default::default)
    }

    fn linux(&mut self) -> &mut cri::LinuxPodSandboxConfig {
        self.config.linux.get_or_insert_with(Default::default)
    }

    pub fn uid(mut self, uid: &str) -> Self {
        uid.clone_into(&mut self.metadata().uid);
        self
    }

    pub fn namespace(mut self, namespace: &str) -> Self {
        namespace.clone_into(&mut self.metadata().namespace);
        self
    }

    pub fn attempt(mut self, attempt: u32) -> Self {
        self.metadata().attempt = attempt;
        self
    }

    pub fn hostname(mut self, hostname: &str) -> Self {
        hostname.clone_into(&mut self.config.hostname);
        self
    }

    pub fn log_directory(mut self, dir: &Path) -> Self {
        self.config.log_directory = dir.to_string_lossy().into_owned();
        self
    }

    pub fn runtime_handler(mut self, handler: &str) -> Self {
        handler.clone_into(&mut self.runtime_handler);
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.config.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.config.annotations.insert(key.to_owned(), value.to_owned());
        self
    }

    /// The pod's cgroup parent (kubelet's `/kubepods/…/pod<uid>`); none by
    /// default, leaving the cgroup to the OCI runtime's default.
    pub fn cgroup_parent(mut self, parent: &str) -> Self {
        parent.clone_into(&mut self.linux().cgroup_parent);
        self
    }

    fn security(&mut self) -> &mut cri::LinuxSandboxSecurityContext {
        self.linux().security_context.get_or_insert_with(Default::default)
    }

    /// The pod's namespace options (network, PID, IPC), as kubelet sends them.
    pub fn namespace_options(&self) -> cri::NamespaceOption {
        self.config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone())
            .unwrap_or_default()
    }

    /// One namespace's mode: `Node` is `hostNetwork`, `hostPID` or
    /// `hostIPC`; `Pod` for the PID namespace is `shareProcessNamespace`.
    /// Give each container the same ([`ContainerSpec::namespaces_of`]), as
    /// kubelet does. A hostNetwork pod has no hostname of its own: kubelet
    /// leaves it empty (the pod shares the node's UTS namespace, where runc
    /// cannot set one), and so does this.
    pub fn namespace_mode(mut self, kind: Namespace, mode: NamespaceMode) -> Self {
        let options = self.security().namespace_options.get_or_insert_with(namespaces);
        set_mode(options, kind, mode);
        if (kind, mode) == (Namespace::Network, NamespaceMode::Node) {
            self.config.hostname.clear();
        }
        self
    }

    /// A sysctl of the pod (`securityContext.sysctls`).
    pub fn sysctl(mut self, key: &str, value: &str) -> Self {
        self.linux().sysctls.insert(key.to_owned(), value.to_owned());
        self
    }

    /// A sandbox that may hold privileged containers (kubelet sets it when
    /// any container of the pod is privileged).
    pub fn privileged(mut self, privileged: bool) -> Self {
        self.security().privileged = privileged;
        self
    }

    /// The pod's resources as kubelet (since 1.23) sums its containers'
    /// into the sandbox config: CPU quota per period, CPU shares, memory.
    pub fn resources(mut self, cpu_quota: i64, cpu_period: i64, cpu_shares: i64, memory_bytes: i64) -> Self {
        self.linux().resources = Some(cri::LinuxContainerResources {
            cpu_period,
            cpu_quota,
            cpu_shares,
            memory_limit_in_bytes: memory_bytes,
            ..Default::default()
        });
        self
    }

    /// The RuntimeClass's `overhead.podFixed` memory, as kubelet passes it.
    pub fn overhead_memory(mut self, bytes: i64) -> Self {
        self.linux().overhead = Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: bytes,
            ..Default::default()
        });
        self
    }

    /// The pod's seccomp profile (the sandbox's).
    pub fn seccomp(mut self, profile: &Seccomp) -> Self {
        self.security().seccomp = Some(profile.profile());
        self
    }

    pub fn name(&self) -> &str {
        self.config.metadata.as_ref().map_or("", |m| m.name.as_str())
    }
}

/// A container to create: its `ContainerConfig`.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub config: cri::ContainerConfig,
}

impl ContainerSpec {
    /// Container `name` from `image`, logging to `<name>/<attempt>.log`
    /// under the pod's log folder.
    pub fn new(name: &str, image: &str) -> Self {
        let resources = cri::LinuxContainerResources {
            cpu_shares: 2,
            oom_score_adj: 1000,
            ..Default::default()
        };
        let security = cri::LinuxContainerSecurityContext {
            namespace_options: Some(namespaces()),
            masked_paths: MASKED_PATHS.iter().map(|p| (*p).to_owned()).collect(),
            readonly_paths: READONLY_PATHS.iter().map(|p| (*p).to_owned()).collect(),
            seccomp: unconfined(),
            ..Default::default()
        };
        let config = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.to_owned(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: image.to_owned(),
                ..Default::default()
            }),
            log_path: format!("{name}/0.log"),
            linux: Some(cri::LinuxContainerConfig {
                resources: Some(resources),
                security_context: Some(security),
            }),
            labels: HashMap::from([("io.kubernetes.container.name".to_owned(), name.to_owned())]),
            ..Default::default()
        };
        Self { config }
    }

    fn resources(&mut self) -> &mut cri::LinuxContainerResources {
        let linux = self.config.linux.get_or_insert_with(Default::default);
        linux.resources.get_or_insert_with(Default::default)
    }

    fn security(&mut self) -> &mut cri::LinuxContainerSecurityContext {
        let linux = self.config.linux.get_or_insert_with(Default::default);
        linux.security_context.get_or_insert_with(Default::default)
    }

    /// Replaces the image's entrypoint (Kubernetes `command`).
    pub fn command<S: Into<String>>(mut self, argv: impl IntoIterator<Item = S>) -> Self {
        self.config.command = argv.into_iter().map(Into::into).collect();
        self
    }

    /// Replaces the image's cmd (Kubernetes `args`).
    pub fn args<S: Into<String>>(mut self, argv: impl IntoIterator<Item = S>) -> Self {
        self.config.args = argv.into_iter().map(Into::into).collect();
        self
    }

    /// `sh -c SCRIPT` as the command.
    pub fn shell(self, script: &str) -> Self {
        self.command(["/bin/sh", "-c", script])
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.config.envs.push(cri::KeyValue {
            key: key.to_owned(),
            value: value.to_owned(),
        });
        self
    }

    pub fn working_dir(mut self, dir: &str) -> Self {
        dir.clone_into(&mut self.config.working_dir);
        self
    }

    /// The log file, relative to the pod's log folder.
    pub fn log_path(mut self, path: &str) -> Self {
        path.clone_into(&mut self.config.log_path);
        self
    }

    /// Sets the attempt (restart count) and the log path kubelet would use.
    pub fn attempt(mut self, attempt: u32) -> Self {
        let name = self.name().to_owned();
        if let Some(metadata) = self.config.metadata.as_mut() {
            metadata.attempt = attempt;
        }
        self.config.log_path = format!("{name}/{attempt}.log");
        self
    }

    /// A hostPath volume.
    pub fn mount(mut self, host: &Path, container: &str, readonly: bool) -> Self {
        self.config.mounts.push(cri::Mount {
            container_path: container.to_owned(),
            host_path: host.to_string_lossy().into_owned(),
            readonly,
            ..Default::default()
        });
        self
    }

    pub fn memory_limit(mut self, bytes: i64) -> Self {
        self.resources().memory_limit_in_bytes = bytes;
        self
    }

    /// A CPU limit as kubelet writes it: `quota` µs per `period` µs.
    pub fn cpu_limit(mut self, quota: i64, period: i64) -> Self {
        let resources = self.resources();
        resources.cpu_quota = quota;
        resources.cpu_period = period;
        self
    }

    pub fn run_as_user(mut self, uid: i64) -> Self {
        self.security().run_as_user = Some(cri::Int64Value { value: uid });
        self
    }

    pub fn run_as_group(mut self, gid: i64) -> Self {
        self.security().run_as_group = Some(cri::Int64Value { value: gid });
        self
    }

    /// `securityContext.readOnlyRootFilesystem`.
    pub fn read_only_root(mut self) -> Self {
        self.security().readonly_rootfs = true;
        self
    }

    /// `securityContext.capabilities`: names without `CAP_`, `ALL` allowed.
    pub fn capabilities(mut self, add: &[&str], drop: &[&str]) -> Self {
        let owned = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect();
        self.security().capabilities = Some(cri::Capability {
            add_capabilities: owned(add),
            drop_capabilities: owned(drop),
            ..Default::default()
        });
        self
    }

    /// One namespace's mode, as [`PodSpec::namespace_mode`].
    pub fn namespace_mode(mut self, kind: Namespace, mode: NamespaceMode) -> Self {
        let options = self.security().namespace_options.get_or_insert_with(namespaces);
        set_mode(options, kind, mode);
        self
    }

    /// The pod's namespace modes, as kubelet derives a container's from its
    /// pod (`hostNetwork`, `hostPID`, `hostIPC`, `shareProcessNamespace`).
    pub fn namespaces_of(mut self, pod: &PodSpec) -> Self {
        self.security().namespace_options = Some(pod.namespace_options());
        self
    }

    /// An ephemeral container's namespaces as kubelet sets them for
    /// `kubectl debug --target=C`: the pod's, and `target`'s processes
    /// (CRI's TARGET mode, `target` being C's container id).
    pub fn sharing_processes_of(mut self, pod: &PodSpec, target: &str) -> Self {
        let mut options = pod.namespace_options();
        options.pid = cri::NamespaceMode::Target.into();
        options.target_id = target.to_owned();
        self.security().namespace_options = Some(options);
        self
    }

    /// `securityContext.privileged` (the pod's sandbox must be privileged too).
    pub fn privileged(mut self, privileged: bool) -> Self {
        self.security().privileged = privileged;
        self
    }

    /// A path masked besides kubelet's defaults ([`MASKED_PATHS`]).
    pub fn masked_path(mut self, path: &str) -> Self {
        self.security().masked_paths.push(path.to_owned());
        self
    }

    /// A path made read-only besides kubelet's defaults ([`READONLY_PATHS`]).
    pub fn readonly_path(mut self, path: &str) -> Self {
        self.security().readonly_paths.push(path.to_owned());
        self
    }

    /// The container's seccomp profile.
    pub fn seccomp(mut self, profile: &Seccomp) -> Self {
        self.security().seccomp = Some(profile.profile());
        self
    }

    /// The termination message file as kubelet gives it: `host_file` (which
    /// must exist; see [`crate::Node::termination_message_file`]) bound
    /// writable at [`TERMINATION_MESSAGE_PATH`], with kubelet's annotations.
    pub fn termination_message_file(mut self, host_file: &Path) -> Self {
        self.config.mounts.push(cri::Mount {
            container_path: TERMINATION_MESSAGE_PATH.to_owned(),
            host_path: host_file.to_string_lossy().into_owned(),
            ..Default::default()
        });
        self.annotation(TERMINATION_MESSAGE_PATH_ANNOTATION, TERMINATION_MESSAGE_PATH)
            .annotation(TERMINATION_MESSAGE_POLICY_ANNOTATION, "File")
    }

    pub fn tty(mut self, tty: bool) -> Self {
        self.config.tty = tty;
        self
    }

    /// Keeps stdin open (`stdin`), closed after the first attach when `once`.
    pub fn stdin(mut self, stdin: bool, once: bool) -> Self {
        self.config.stdin = stdin;
        self.config.stdin_once = once;
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.config.annotations.insert(key.to_owned(), value.to_owned());
        self
    }

    pub fn name(&self) -> &str {
        self.config.metadata.as_ref().map_or("", |m| m.name.as_str())
    }

    /// Where this container's log file is, given its pod's log folder.
    pub fn log_file(&self, pod_log_directory: &Path) -> PathBuf {
        pod_log_directory.join(&self.config.log_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_and_containers_get_kubelets_defaults() {
        let pod = PodSpec::new("web")
            .log_directory(Path::new("/logs/web"))
            .runtime_handler("runcvm");
        let ctx = pod
            .config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .expect("ctx");
        let ns = ctx.namespace_options.as_ref().expect("ns");
        assert_eq!(ns.pid, i32::from(cri::NamespaceMode::Container));
        assert_eq!(ns.network, i32::from(cri::NamespaceMode::Pod));
        assert_eq!(pod.config.log_directory, "/logs/web");
        assert_eq!(pod.runtime_handler, "runcvm");

        let c = ContainerSpec::new("app", "runcvm.test/busybox:1")
            .shell("echo hi")
            .mount(Path::new("/srv/data"), "/data", true)
            .memory_limit(256 << 20)
            .cpu_limit(50_000, 100_000)
            .attempt(2);
        assert_eq!(c.config.command, ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(c.config.log_path, "app/2.log");
        assert_eq!(c.log_file(Path::new("/logs/web")), Path::new("/logs/web/app/2.log"));
        assert!(c.config.mounts[0].readonly);
        let linux = c.config.linux.as_ref().expect("linux");
        let res = linux.resources.as_ref().expect("resources");
        assert_eq!(
            (res.memory_limit_in_bytes, res.cpu_quota, res.cpu_period),
            (256 << 20, 50_000, 100_000)
        );
        let sec = linux.security_context.as_ref().expect("security");
        assert!(sec.masked_paths.iter().any(|p| p == "/proc/kcore"));
    }

    #[test]
    fn namespaces_sysctls_and_privileges_are_set_as_kubelet_sets_them() {
        let pod = PodSpec::new("host")
            .namespace_mode(Namespace::Network, NamespaceMode::Node)
            .namespace_mode(Namespace::Pid, NamespaceMode::Pod)
            .sysctl("kernel.shm_rmid_forced", "1")
            .privileged(true)
            .seccomp(&Seccomp::RuntimeDefault);
        let ns = pod.namespace_options();
        assert_eq!(
            (ns.network, ns.pid, ns.ipc),
            (
                i32::from(NamespaceMode::Node),
                i32::from(NamespaceMode::Pod),
                i32::from(NamespaceMode::Pod)
            )
        );
        assert_eq!(pod.config.hostname, "", "a hostNetwork pod has the node's hostname");
        assert_eq!(
            PodSpec::new("own")
                .namespace_mode(Namespace::Pid, NamespaceMode::Pod)
                .config
                .hostname,
            "own"
        );
        let linux = pod.config.linux.as_ref().expect("linux");
        assert_eq!(linux.sysctls["kernel.shm_rmid_forced"], "1");
        let ctx = linux.security_context.as_ref().expect("ctx");
        assert!(ctx.privileged);
        let seccomp = ctx.seccomp.as_ref().expect("seccomp");
        assert_eq!(seccomp.profile_type, i32::from(ProfileType::RuntimeDefault));

        let c = ContainerSpec::new("app", "runcvm.test/busybox:1")
            .namespaces_of(&pod)
            .namespace_mode(Namespace::Ipc, NamespaceMode::Node)
            .privileged(true)
            .masked_path("/etc/group")
            .readonly_path("/home/app")
            .seccomp(&Seccomp::Localhost(PathBuf::from("/profiles/no-chmod.json")))
            .termination_message_file(Path::new("/node/pods/x/termination-log"));
        let sec = c
            .config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .expect("security");
        let ns = sec.namespace_options.as_ref().expect("ns");
        assert_eq!(
            (ns.network, ns.pid, ns.ipc),
            (
                i32::from(NamespaceMode::Node),
                i32::from(NamespaceMode::Pod),
                i32::from(NamespaceMode::Node)
            )
        );
        assert!(sec.privileged);
        // The extra paths come after kubelet's defaults.
        assert_eq!(sec.masked_paths.len(), MASKED_PATHS.len() + 1);
        assert_eq!(sec.masked_paths.last().map(String::as_str), Some("/etc/group"));
        assert_eq!(sec.readonly_paths.last().map(String::as_str), Some("/home/app"));
        let seccomp = sec.seccomp.as_ref().expect("seccomp");
        assert_eq!(
            (seccomp.profile_type, seccomp.localhost_ref.as_str()),
            (i32::from(ProfileType::Localhost), "/profiles/no-chmod.json")
        );
        let mount = c.config.mounts.last().expect("the termination message mount");
        assert_eq!(
            (mount.container_path.as_str(), mount.host_path.as_str(), mount.readonly),
            ("/dev/termination-log", "/node/pods/x/termination-log", false)
        );
        assert_eq!(
            c.config.annotations[TERMINATION_MESSAGE_PATH_ANNOTATION],
            "/dev/termination-log"
        );
    }
}
