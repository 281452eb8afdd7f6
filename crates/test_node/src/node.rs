//! A private containerd node: its folder (root, state, socket, CNI conf,
//! logs, images) under a tempdir, its own network namespace
//! (`rcvm-t-…-node`; containerd, its shims, the CNI bridge and the streaming
//! server all live there), the start (`nsenter --net=… containerd
//! --config …`, then the local images imported into `k8s.io`), and the
//! CRI client. Which containerd (1.6 or 2.x) is [`NodeOptions::containerd`],
//! `RUNCVM_T3_CONTAINERD` unless a test says otherwise. The teardown is in
//! [`crate::teardown`] and runs on drop.

use crate::config::{self, Cni, NodeLayout, RuntimeHandler};
use crate::containerd::ContainerdVersion;
use crate::cri::{Cri, NetnsRecord};
use crate::image::{self, Image};
use crate::portforward::{self, Forwarded};
use crate::spec::PodSpec;
use crate::stream::{self, StreamInput, StreamOutput};
use anyhow::{Context, Result, bail};
use runcvm_test_infra::Netns;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to build a node.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Which containerd runs, with which config version; by default the
    /// one `RUNCVM_T3_CONTAINERD` names ([`ContainerdVersion::selected`]).
    pub containerd: ContainerdVersion,
    /// Runtime handlers besides `runc` (the default one).
    pub runtimes: Vec<RuntimeHandler>,
    /// Drop-in files for the generated config's `imports`.
    pub imports: Vec<PathBuf>,
    /// Run containerd from this main config instead of the generated one
    /// (`--root`, `--state` and `--address` are still the node's own).
    pub config_file: Option<PathBuf>,
    /// Images imported besides the busybox and pause ones.
    pub images: Vec<Image>,
    /// The pods' subnet on the node's bridge (or ptp links). They live in
    /// the node's own namespace, so no host route can clash with it.
    pub pod_subnet: String,
    /// The CNI plugin wiring the pods: the bridge by default.
    pub cni: Cni,
    /// containerd's log level (`debug` shows the shim's and the runtime's errors).
    pub log_level: String,
    /// How long containerd may take to answer and import the images.
    pub start_timeout: Duration,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            containerd: ContainerdVersion::selected(),
            runtimes: Vec::new(),
            imports: Vec::new(),
            config_file: None,
            images: Vec::new(),
            pod_subnet: "10.88.91.0/24".to_owned(),
            cni: Cni::Bridge,
            log_level: "debug".to_owned(),
            start_timeout: Duration::from_secs(30),
        }
    }
}

impl NodeOptions {
    pub fn containerd(mut self, version: ContainerdVersion) -> Self {
        self.containerd = version;
        self
    }

    pub fn runtime(mut self, handler: RuntimeHandler) -> Self {
        self.runtimes.push(handler);
        self
    }

    pub fn import(mut self, drop_in: impl Into<PathBuf>) -> Self {
        self.imports.push(drop_in.into());
        self
    }

    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    pub fn image(mut self, image: Image) -> Self {
        self.images.push(image);
        self
    }

    /// The CNI plugin and the pods' subnet (an IPv4 `/24` whose `.1` is
    /// the gateway).
    pub fn cni(mut self, cni: Cni, pod_subnet: &str) -> Self {
        self.cni = cni;
        pod_subnet.clone_into(&mut self.pod_subnet);
        self
    }
}

/// A running (or prepared) private containerd. Dropping it removes every
/// pod, process, mount, namespace and file it made, pass or fail.
#[derive(Debug)]
pub struct Node {
    pub(crate) dir: Option<tempfile::TempDir>,
    pub(crate) layout: NodeLayout,
    pub(crate) options: NodeOptions,
    pub(crate) config_path: PathBuf,
    pub(crate) log_path: PathBuf,
    pub(crate) images_path: PathBuf,
    pub(crate) netns: Option<Netns>,
    pub(crate) containerd: Option<Child>,
    pub(crate) cri: Option<Cri>,
    pub(crate) netns_record: NetnsRecord,
    pub(crate) cni_before: BTreeSet<PathBuf>,
    pub(crate) start_time: Option<Duration>,
}

impl Node {
    /// [`Self::prepare`] then [`Self::launch`].
    pub fn start(options: NodeOptions) -> Result<Self> {
        let mut node = Self::prepare(options)?;
        node.launch()?;
        Ok(node)
    }

    /// Makes the folder, the namespace, the config, the CNI conflist and
    /// the image archive; containerd is not started. The caller may change
    /// [`Self::config_path`] (as an installer would) before [`Self::launch`].
    pub fn prepare(options: NodeOptions) -> Result<Self> {
        options.containerd.check()?;
        let dir = tempfile::Builder::new().prefix("rcvm-t-node-").tempdir()?;
        let base = dir.path().to_owned();
        let layout = NodeLayout::under(&base, &options.pod_subnet).with_cni(options.cni);
        for folder in [&layout.root, &layout.state, &layout.cni_conf_dir, &layout.cni_data_dir] {
            std::fs::create_dir_all(folder)?;
        }
        std::fs::create_dir_all(base.join("logs"))?;
        crate::teardown::LIVE_NODES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut node = Self {
            config_path: base.join("config.toml"),
            log_path: base.join("containerd.log"),
            images_path: base.join("images.tar"),
            dir: Some(dir),
            layout,
            options,
            netns: None,
            containerd: None,
            cri: None,
            netns_record: NetnsRecord::default(),
            cni_before: BTreeSet::new(),
            start_time: None,
        };
        node.write_files()?;
        node.netns = Some(Netns::create("node"));
        Ok(node)
    }

    fn write_files(&self) -> Result<()> {
        let toml = config::containerd_toml(
            self.options.containerd,
            &self.layout,
            image::PAUSE_IMAGE,
            &self.options.runtimes,
            &self.options.imports,
        );
        std::fs::write(&self.config_path, toml)?;
        std::fs::write(
            self.layout.cni_conf_dir.join("10-runcvm-test.conflist"),
            config::cni_conflist(&self.layout),
        )?;
        let rootfs = runcvm_test_infra::busybox_rootfs(&self.dir()?.join("busybox-rootfs"))?;
        let mut images = vec![Image::busybox(&rootfs), Image::pause(&rootfs)];
        images.extend(self.options.images.iter().cloned());
        image::write_archive(&images, &self.images_path)?;
        Ok(())
    }

    fn dir(&self) -> Result<&Path> {
        self.dir
            .as_ref()
            .map(tempfile::TempDir::path)
            .context("the node was torn down")
    }

    /// Runs containerd from `path` instead of [`Self::config_path`] (call
    /// before [`Self::launch`]). The node's `--root`, `--state` and
    /// `--address` still apply; the rest (sandbox image, CNI, runtimes) must
    /// be in the file, so start from [`Self::config_path`]'s contents.
    pub fn use_config_file(&mut self, path: impl Into<PathBuf>) {
        self.options.config_file = Some(path.into());
    }

    /// Starts containerd in the node's namespace, waits for CRI, and
    /// imports the images into `k8s.io`.
    pub fn launch(&mut self) -> Result<()> {
        let began = Instant::now();
        self.cni_before = crate::host::cni_netns().into_iter().collect();
        self.spawn_containerd()?;
        let cri = self
            .wait_for_cri()
            .with_context(|| self.failure_context("containerd did not come up"))?;
        self.netns_record = cri.netns_record();
        self.cri = Some(cri);
        self.import_images()
            .with_context(|| self.failure_context("importing the images"))?;
        self.start_time = Some(began.elapsed());
        Ok(())
    }

    fn spawn_containerd(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let config = self
            .options
            .config_file
            .clone()
            .unwrap_or_else(|| self.config_path.clone());
        let netns = self.netns.as_ref().context("no namespace")?;
        let binaries = self.options.containerd.binaries();
        let mut command = Command::new("nsenter");
        if let Some(path) = binaries.path_env() {
            command.env("PATH", path);
        }
        let child = command
            .arg(format!("--net={}", netns.path().display()))
            .arg("--")
            .arg(&binaries.containerd)
            .arg("--config")
            .arg(&config)
            .arg("--log-level")
            .arg(&self.options.log_level)
            .arg("--root")
            .arg(&self.layout.root)
            .arg("--state")
            .arg(&self.layout.state)
            .arg("--address")
            .arg(&self.layout.socket)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning nsenter … containerd")?;
        self.containerd = Some(child);
        Ok(())
    }

    fn wait_for_cri(&mut self) -> Result<Cri> {
        let deadline = Instant::now() + self.options.start_timeout;
        while !self.layout.socket.exists() {
            self.check_alive()?;
            if Instant::now() >= deadline {
                bail!("no socket at {}", self.layout.socket.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let cri = Cri::connect(&self.layout.socket)?;
        cri.set_timeout(Duration::from_secs(5));
        loop {
            self.check_alive()?;
            match cri.status(false) {
                Ok(status) if runtime_and_network_ready(&status) => break,
                Err(e) if e.to_string().contains("(Unimplemented)") => {
                    return Err(e.context("the CRI plugin did not load"));
                }
                Ok(_) | Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                Ok(status) => bail!("CRI not ready: {:?}", status.status),
                Err(e) => return Err(e),
            }
        }
        cri.set_timeout(Duration::from_secs(120));
        Ok(cri)
    }

    fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.containerd.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            bail!("containerd exited: {status}");
        }
        Ok(())
    }

    fn import_images(&self) -> Result<()> {
        let out = self
            .ctr()
            .args(["images", "import"])
            .arg(&self.images_path)
            .output()
            .context("running ctr images import")?;
        if !out.status.success() {
            bail!(
                "ctr images import: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut references = vec![image::BUSYBOX_IMAGE.to_owned(), image::PAUSE_IMAGE.to_owned()];
        references.extend(self.options.images.iter().map(|i| i.reference.clone()));
        let deadline = Instant::now() + self.options.start_timeout;
        for reference in &references {
            while self.cri()?.image_status(reference)?.is_none() {
                if Instant::now() >= deadline {
                    bail!("the CRI plugin does not see {reference} after the import");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// `ctr --address SOCKET -n k8s.io`, to add arguments to (the `ctr`
    /// of the node's containerd).
    pub fn ctr(&self) -> Command {
        let mut command = Command::new(self.options.containerd.binaries().ctr);
        command
            .arg("--address")
            .arg(&self.layout.socket)
            .args(["-n", config::CRI_NAMESPACE]);
        command
    }

    /// Which containerd the node runs.
    pub fn containerd_version(&self) -> ContainerdVersion {
        self.options.containerd
    }

    /// The CRI client.
    pub fn cri(&self) -> Result<&Cri> {
        self.cri.as_ref().context("containerd is not running")
    }

    /// A [`PodSpec`] named `name` logging under the node's folder.
    pub fn pod(&self, name: &str) -> PodSpec {
        let spec = PodSpec::new(name);
        let uid = spec.config.metadata.as_ref().map(|m| m.uid.clone()).unwrap_or_default();
        let dir = self.log_root().join(format!("default_{name}_{uid}"));
        let _ = std::fs::create_dir_all(&dir);
        spec.log_directory(&dir)
    }

    /// Runs a streaming exec in a container through the streaming server.
    pub fn exec_stream<S: AsRef<str>>(
        &self,
        container_id: &str,
        cmd: &[S],
        input: &StreamInput,
        timeout: Duration,
    ) -> Result<StreamOutput> {
        let streams = crate::cri::ExecStreams {
            stdin: !input.stdin.is_empty() || input.close_after_stdin,
            tty: false,
        };
        let url = self.cri()?.exec(container_id, cmd, streams)?;
        let socket = stream::connect_in(&self.netns_path()?, &url)?;
        stream::exec(socket, &url, input, timeout).with_context(|| format!("exec session {url}"))
    }

    /// Forwards one connection to `port` of pod `pod_id` through CRI
    /// `PortForward` and the streaming server, as `kubectl port-forward`
    /// does: sends `request`, returns what came back until the pod's side
    /// closed (see [`crate::portforward`]).
    pub fn port_forward(&self, pod_id: &str, port: u16, request: &[u8], timeout: Duration) -> Result<Forwarded> {
        let url = self.cri()?.port_forward(pod_id, &[port])?;
        let socket = stream::connect_in(&self.netns_path()?, &url)?;
        portforward::forward(socket, &url, port, request, timeout)
            .with_context(|| format!("port-forward session {url}"))
    }

    /// An empty termination message file for container `container` of
    /// `pod`, made as kubelet makes it (mode 0666, under the pod's folder:
    /// `pods/UID/containers/NAME/termination-log` in the node's folder);
    /// give it to [`crate::ContainerSpec::termination_message_file`].
    pub fn termination_message_file(&self, pod: &PodSpec, container: &str) -> Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let uid = pod.config.metadata.as_ref().map_or("", |m| m.uid.as_str());
        let dir = self.path().join("pods").join(uid).join("containers").join(container);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let file = dir.join("termination-log");
        std::fs::write(&file, b"").with_context(|| format!("creating {}", file.display()))?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666))?;
        Ok(file)
    }

    /// The node's folder.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new(""), tempfile::TempDir::path)
    }

    /// The pods' log folders live here.
    pub fn log_root(&self) -> PathBuf {
        self.path().join("logs")
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn socket(&self) -> &Path {
        &self.layout.socket
    }

    pub fn layout(&self) -> &NodeLayout {
        &self.layout
    }

    /// The node's network namespace file (`/run/netns/rcvm-t-…`).
    pub fn netns_path(&self) -> Result<PathBuf> {
        Ok(self.netns.as_ref().context("no namespace")?.path())
    }

    pub fn netns(&self) -> Option<&Netns> {
        self.netns.as_ref()
    }

    /// containerd's pid, while it runs.
    pub fn containerd_pid(&self) -> Option<u32> {
        self.containerd.as_ref().map(Child::id)
    }

    /// How long [`Self::launch`] took (containerd up and images imported).
    pub fn start_time(&self) -> Option<Duration> {
        self.start_time
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `lines` lines of containerd's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Lines of containerd's log containing `needle`.
    pub fn log_lines_with(&self, needle: &str) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        text.lines().filter(|l| l.contains(needle)).map(str::to_owned).collect()
    }

    fn failure_context(&self, what: &str) -> String {
        format!(
            "{what}; containerd log ({}):\n{}",
            self.log_path.display(),
            self.log_tail(40)
        )
    }
}

fn runtime_and_network_ready(status: &k8s_cri::v1::StatusResponse) -> bool {
    let conditions = status
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    ["RuntimeReady", "NetworkReady"]
        .iter()
        .all(|kind| conditions.iter().any(|c| c.r#type == *kind && c.status))
}
