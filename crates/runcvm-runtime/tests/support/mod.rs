//! The T3 fixture: a fresh `runcvm install` of this build (once per test
//! binary) and a private containerd node with its `runcvm` handler.

// Each T3 test binary uses its own part of the fixture.
#![allow(dead_code)]

use runcvm_test_node::crilog::{self, LogLine};
use runcvm_test_node::{ContainerSpec, Node, NodeOptions, Pod, PodSpec, RuntimeHandler, require_t3};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Which handler a scenario's pods use.
#[derive(Debug, Clone, Copy)]
pub struct Handler {
    pub name: &'static str,
    /// Whether containers are VMs.
    pub vm: bool,
}

impl Handler {
    pub const RUNCVM: Self = Self {
        name: "runcvm",
        vm: true,
    };
    pub const RUNC: Self = Self {
        name: "runc",
        vm: false,
    };
}

/// Each scenario `fn(Handler)` as a test with the `runcvm` handler (module
/// `runcvm`) and one with `runc` (module `runc`).
#[macro_export]
macro_rules! both_handlers {
    ($($scenario:ident),* $(,)?) => {
        mod runcvm {
            $(
                #[test]
                #[ignore = "T3: a private containerd with the runcvm handler; run scripts/test.sh"]
                fn $scenario() {
                    super::$scenario(super::Handler::RUNCVM);
                }
            )*
        }
        mod runc {
            $(
                #[test]
                #[ignore = "T3: a private containerd; run scripts/test.sh"]
                fn $scenario() {
                    super::$scenario(super::Handler::RUNC);
                }
            )*
        }
    };
}

/// StartContainer of `spec` in `pod` (where containerd, 1.6 and 2.x alike,
/// runs the runtime's `create`) is refused with the runtime's `expected`
/// reason, also in containerd's log, and leaves no state folder. Returns
/// the container's id.
pub fn assert_start_refused(f: &Fixture, pod: &Pod, spec: &ContainerSpec, expected: &str) -> String {
    let cri = ok(f.node.cri());
    let id = ok(cri.create_container(pod, spec));
    let err = format!("{:#}", cri.start_container(&id).expect_err("the start is refused"));
    assert!(
        err.contains("OCI runtime create failed: runcvm: cannot create container"),
        "{err}"
    );
    assert!(err.contains(expected), "{err}");
    assert!(
        !f.node.log_lines_with(expected).is_empty(),
        "containerd's log does not carry {expected:?}"
    );
    assert!(!state_folder(&id).exists(), "a refused create left its state folder");
    id
}

/// Unwraps, panicking with the whole error chain.
pub fn ok<T>(result: anyhow::Result<T>) -> T {
    result.unwrap_or_else(|e| panic!("{e:#}"))
}

/// The kernel argument the shared install's node settings give every guest.
pub const NODE_KERNEL_ARG: &str = "runcvm.t3_node_setting=1";

/// The install every test of this binary shares, made once per run under
/// cargo's scratch folder for integration tests (replaced by the next run),
/// with [`NODE_KERNEL_ARG`] in its node settings.
pub fn install_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let scratch = Path::new(env!("CARGO_TARGET_TMPDIR")).join("t3-install");
        let _ = std::fs::remove_dir_all(&scratch);
        let root = scratch.join("opt-runcvm");
        let binaries = Path::new(env!("CARGO_BIN_EXE_runcvm-runtime"))
            .parent()
            .expect("the target folder")
            .to_owned();
        let options = runcvm_install::InstallOptions {
            root: root.clone(),
            containerd_config: scratch.join("unused-containerd-config.toml"),
            binaries_from: Some(binaries),
            settings: runcvm_install::settings::NodeSettings {
                kernel_args: vec![NODE_KERNEL_ARG.to_owned()],
                ..runcvm_install::settings::NodeSettings::default()
            },
            ..runcvm_install::InstallOptions::default()
        };
        if let Err(e) = runcvm_install::install(&options) {
            panic!("runcvm install for T3: {}", runcvm_log::error_chain(&e));
        }
        root
    })
}

/// The node-side state folder of a runcvm container.
pub fn state_folder(id: &str) -> PathBuf {
    runcvm_runtime::settings::Settings::from_env()
        .state_dir()
        .join("containers")
        .join(id)
}

/// What `runcvm inspect ID` of the test install prints; it must succeed.
pub fn inspect(id: &str) -> String {
    let inspect = std::process::Command::new(install_root().join("bin/runcvm"))
        .args(["inspect", id])
        .output()
        .expect("runcvm inspect");
    assert!(inspect.status.success(), "{}", String::from_utf8_lossy(&inspect.stderr));
    String::from_utf8_lossy(&inspect.stdout).into_owned()
}

/// The command lines of the processes in a container's cgroup.
pub fn processes_of_container(id: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter(|e| std::fs::read_to_string(e.path().join("cgroup")).is_ok_and(|c| c.contains(id)))
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .filter(|cmdline| !cmdline.is_empty())
        .collect()
}

/// The lines of one stream, in order.
pub fn lines_of(lines: &[LogLine], stream: runcvm_test_node::crilog::Stream) -> Vec<&str> {
    lines
        .iter()
        .filter(|l| l.stream == stream)
        .map(|l| l.line.as_str())
        .collect()
}

/// A cgroup file holding one number.
pub fn read_number(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The host's kernel release.
pub fn host_kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .expect("osrelease")
        .trim()
        .to_owned()
}

pub struct Fixture {
    pub node: Node,
    pub handler: Handler,
}

impl Fixture {
    pub fn start(handler: Handler) -> Self {
        Self::start_with(handler, NodeOptions::default())
    }

    /// A node from `options` (a CNI plugin, say), with the `runcvm` handler
    /// added for a VM handler.
    pub fn start_with(handler: Handler, mut options: NodeOptions) -> Self {
        require_t3();
        if handler.vm {
            let runcvm = RuntimeHandler::new("runcvm", install_root().join("bin/runcvm-runtime"));
            options = options.runtime(runcvm);
        }
        let node = Node::start(options).unwrap_or_else(|e| panic!("node start: {e:#}"));
        Self { node, handler }
    }

    /// A pod of this fixture's handler.
    pub fn pod(&self, name: &str) -> PodSpec {
        self.node.pod(name).runtime_handler(self.handler.name)
    }

    /// Waits for `line` in a CRI log file; returns the lines so far.
    pub fn wait_for_line(&self, log: &Path, line: &str, timeout: Duration) -> Vec<LogLine> {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = crilog::read(log).unwrap_or_default();
            if lines.iter().any(|l| l.line == line) {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "no {line:?} in {} after {timeout:?}: {lines:#?}",
                log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The whole CRI log of a container, for failure messages.
    pub fn log_text(&self, spec: &ContainerSpec, pod: &Pod) -> String {
        std::fs::read_to_string(spec.log_file(pod.log_directory())).unwrap_or_default()
    }

    /// Runs `script` in the node's network namespace; returns its stdout.
    pub fn node_sh(&self, script: &str) -> String {
        let out = self.node.netns().expect("the node's netns").sh(script);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// What a TCP connection from the node to `ip:port` reads, retried for
    /// up to 10 s until it reads something: the workload prints `ready`
    /// before its listener is up, and a refused connection costs it nothing.
    pub fn fetch_from_node(&self, ip: &str, port: u16) -> String {
        let mut got = String::new();
        runcvm_test_infra::wait_until(Duration::from_secs(10), || {
            got = self.node_sh(&format!("busybox nc -w 5 {ip} {port} </dev/null"));
            !got.is_empty()
        });
        got
    }
}

/// seccomp `RuntimeDefault`, kubelet's `seccompProfile: {type: RuntimeDefault}`.
fn runtime_default() -> Option<k8s_cri::v1::SecurityProfile> {
    Some(k8s_cri::v1::SecurityProfile {
        profile_type: k8s_cri::v1::security_profile::ProfileType::RuntimeDefault.into(),
        localhost_ref: String::new(),
    })
}

/// Sets seccomp `RuntimeDefault` on a pod.
pub fn pod_with_runtime_default(mut spec: PodSpec) -> PodSpec {
    let linux = spec.config.linux.get_or_insert_with(Default::default);
    linux.security_context.get_or_insert_with(Default::default).seccomp = runtime_default();
    spec
}

/// Sets seccomp `RuntimeDefault` on a container.
pub fn container_with_runtime_default(mut spec: ContainerSpec) -> ContainerSpec {
    let linux = spec.config.linux.get_or_insert_with(Default::default);
    linux.security_context.get_or_insert_with(Default::default).seccomp = runtime_default();
    spec
}
