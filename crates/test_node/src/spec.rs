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
    Some(cri::SecurityProfile {
        profile_type: ProfileType::Unconfined.into(),
        localhost_ref: String::new(),
    })
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
}
