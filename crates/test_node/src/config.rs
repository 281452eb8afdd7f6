//! The files a private containerd runs from: its `config.toml` (own root,
//! state and socket, the CRI plugin with the local pause image,
//! `restrict_oom_score_adj`, a loopback stream server, overlayfs, CNI from
//! `/usr/lib/cni` with a private conf folder, `runc` as the default runtime
//! plus the caller's handlers and `imports`; version 2 for containerd 1.6,
//! version 3, with the same meaning, for 2.x) and the CNI conflist (the
//! bridge plugin, or `ptp`: [`Cni`]).

use crate::containerd::ContainerdVersion;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Where Debian's containernetworking-plugins are.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";
/// The containerd namespace of everything CRI makes.
pub const CRI_NAMESPACE: &str = "k8s.io";
/// The CNI network name (also host-local's folder name under its data dir).
pub const CNI_NETWORK: &str = "runcvm-test";
/// The bridge the CNI plugin creates inside the node's own namespace.
pub const CNI_BRIDGE: &str = "cni0";

/// Which CNI plugin wires the node's pods (with host-local IPAM on the
/// node's pod subnet either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cni {
    /// `bridge`: every pod's veth a port of [`CNI_BRIDGE`], whose address is
    /// the pods' gateway; the pod's address has its subnet route on-link.
    #[default]
    Bridge,
    /// `ptp`: a point-to-point veth per pod, the gateway's address on the
    /// node's end; in the pod the kernel's subnet route is replaced by one
    /// via the gateway (`SUBNET via GATEWAY`) and a host route to it.
    Ptp,
}

/// An extra CRI runtime handler (`runtimes.NAME`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeHandler {
    pub name: String,
    /// `options.BinaryName`: the OCI runtime binary the runc v2 shim calls.
    pub binary: PathBuf,
    /// `runtime_type`; `io.containerd.runc.v2` by default.
    pub runtime_type: String,
    /// `pod_annotations` passed through to the OCI spec.
    pub pod_annotations: Vec<String>,
    /// Raw TOML lines appended to the `runtimes.NAME` table.
    pub extra_toml: String,
}

impl RuntimeHandler {
    pub fn new(name: impl Into<String>, binary: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            binary: binary.into(),
            runtime_type: "io.containerd.runc.v2".to_owned(),
            pod_annotations: Vec::new(),
            extra_toml: String::new(),
        }
    }
}

/// The folders and names one node's config refers to.
#[derive(Debug, Clone)]
pub struct NodeLayout {
    pub root: PathBuf,
    pub state: PathBuf,
    pub socket: PathBuf,
    pub cni_conf_dir: PathBuf,
    pub cni_data_dir: PathBuf,
    /// Each handler's `options.Root` is `runc_root/NAME` (kept out of
    /// `/run/containerd`); the runc v2 shim passes `--root
    /// runc_root/NAME/k8s.io` to the runtime.
    pub runc_root: PathBuf,
    pub pod_subnet: String,
    /// The CNI plugin of the conflist ([`cni_conflist`]).
    pub cni: Cni,
}

impl NodeLayout {
    /// Everything under `base`, with the bridge plugin.
    pub fn under(base: &Path, pod_subnet: &str) -> Self {
        Self {
            root: base.join("root"),
            state: base.join("state"),
            socket: base.join("containerd.sock"),
            cni_conf_dir: base.join("cni/net.d"),
            cni_data_dir: base.join("cni/data"),
            runc_root: base.join("state/runc"),
            pod_subnet: pod_subnet.to_owned(),
            cni: Cni::Bridge,
        }
    }

    /// The same with `cni` as the plugin.
    pub fn with_cni(mut self, cni: Cni) -> Self {
        self.cni = cni;
        self
    }
}

/// The CRI plugin holding the runtime handlers, per config version.
const CRI_V2: &str = "plugins.\"io.containerd.grpc.v1.cri\"";
/// containerd 2.x splits the CRI plugin: runtimes, CNI and the like here,
/// images in [`CRI_IMAGES_V3`], the streaming server in [`CRI_V2`]'s name.
const CRI_RUNTIME_V3: &str = "plugins.\"io.containerd.cri.v1.runtime\"";
const CRI_IMAGES_V3: &str = "plugins.\"io.containerd.cri.v1.images\"";

/// The table whose `NAME` sub-tables are the runtime handlers:
/// `plugins."io.containerd.grpc.v1.cri".containerd.runtimes` (version 2) or
/// `plugins."io.containerd.cri.v1.runtime".containerd.runtimes` (version 3).
pub fn runtimes_table(version: ContainerdVersion) -> String {
    let cri = match version {
        ContainerdVersion::V1_6 => CRI_V2,
        ContainerdVersion::V2 => CRI_RUNTIME_V3,
    };
    format!("{cri}.containerd.runtimes")
}

/// One handler's tables (`runtimes.NAME` and `runtimes.NAME.options`) as
/// the config of `version` holds them, as an installer would append them.
pub fn handler_toml(version: ContainerdVersion, handler: &RuntimeHandler, runc_root: &Path) -> String {
    let mut out = String::new();
    let cri = match version {
        ContainerdVersion::V1_6 => CRI_V2,
        ContainerdVersion::V2 => CRI_RUNTIME_V3,
    };
    write_handler(&mut out, cri, handler, runc_root);
    out
}

/// Renders containerd's `config.toml` for `version`.
pub fn containerd_toml(
    version: ContainerdVersion,
    layout: &NodeLayout,
    sandbox_image: &str,
    handlers: &[RuntimeHandler],
    imports: &[PathBuf],
) -> String {
    match version {
        ContainerdVersion::V1_6 => version_2(layout, sandbox_image, handlers, imports),
        ContainerdVersion::V2 => version_3(layout, sandbox_image, handlers, imports),
    }
}

/// containerd 1.6's config.
fn version_2(layout: &NodeLayout, sandbox_image: &str, handlers: &[RuntimeHandler], imports: &[PathBuf]) -> String {
    let cri = CRI_V2;
    let mut out = String::new();
    let _ = writeln!(out, "version = 2");
    // Snapshotters and tracing that are useless here. (The v1 linux runtime
    // must stay: without it the tasks service, and so CRI, does not load.)
    head(
        &mut out,
        layout,
        imports,
        &[
            "io.containerd.snapshotter.v1.btrfs",
            "io.containerd.snapshotter.v1.zfs",
            "io.containerd.snapshotter.v1.devmapper",
            "io.containerd.snapshotter.v1.aufs",
            "io.containerd.tracing.processor.v1.otlp",
            "io.containerd.internal.v1.tracing",
        ],
    );
    let _ = writeln!(out, "\n[{cri}]");
    let _ = writeln!(out, "  sandbox_image = {}", quote(sandbox_image));
    let _ = writeln!(out, "  restrict_oom_score_adj = true");
    let _ = writeln!(out, "  stream_server_address = \"127.0.0.1\"");
    let _ = writeln!(out, "  stream_server_port = \"0\"");
    let _ = writeln!(out, "  enable_selinux = false");
    let _ = writeln!(out, "  disable_apparmor = true");
    let _ = writeln!(out, "  enable_cdi = false");
    let _ = writeln!(out, "\n[{cri}.containerd]");
    let _ = writeln!(out, "  snapshotter = \"overlayfs\"");
    tail(
        &mut out,
        cri,
        layout,
        handlers,
        &format!("bin_dir = {}", quote(CNI_BIN_DIR)),
    );
    out
}

/// What both versions' configs start with: the node's own folders and
/// socket, `imports`, the plugins that are useless here, no debug or
/// metrics listener, the `opt` plugin's folder.
fn head(out: &mut String, layout: &NodeLayout, imports: &[PathBuf], disabled: &[&str]) {
    let _ = writeln!(out, "root = {}", quote_path(&layout.root));
    let _ = writeln!(out, "state = {}", quote_path(&layout.state));
    if !imports.is_empty() {
        let list: Vec<_> = imports.iter().map(|p| quote_path(p)).collect();
        let _ = writeln!(out, "imports = [{}]", list.join(", "));
    }
    let disabled: Vec<String> = disabled.iter().map(|p| quote(p)).collect();
    let _ = writeln!(out, "disabled_plugins = [{}]", disabled.join(", "));
    let _ = writeln!(out, "\n[grpc]\n  address = {}", quote_path(&layout.socket));
    let _ = writeln!(
        out,
        "\n[ttrpc]\n  address = {}",
        quote_path(&layout.socket.with_extension("sock.ttrpc"))
    );
    let _ = writeln!(out, "\n[debug]\n  address = \"\"");
    let _ = writeln!(out, "\n[metrics]\n  address = \"\"");
    let _ = writeln!(
        out,
        "\n[plugins.\"io.containerd.internal.v1.opt\"]\n  path = {}",
        quote_path(&layout.root.join("opt"))
    );
}

/// containerd 2.x's config: what [`version_2`] says, in version 3's plugin
/// names, plus what keeps 2.x's new host-wide defaults off the host.
fn version_3(layout: &NodeLayout, sandbox_image: &str, handlers: &[RuntimeHandler], imports: &[PathBuf]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "version = 3");
    // The same useless snapshotters and tracing (2.x has no aufs, and adds
    // blockfile and erofs).
    head(
        &mut out,
        layout,
        imports,
        &[
            "io.containerd.snapshotter.v1.btrfs",
            "io.containerd.snapshotter.v1.zfs",
            "io.containerd.snapshotter.v1.devmapper",
            "io.containerd.snapshotter.v1.blockfile",
            "io.containerd.snapshotter.v1.erofs",
            "io.containerd.tracing.processor.v1.otlp",
            "io.containerd.internal.v1.tracing",
        ],
    );
    // 2.x turns NRI on by default, with a socket in /var/run/nri shared by
    // every containerd of the host; 1.6 has none.
    let _ = writeln!(out, "\n[plugins.\"io.containerd.nri.v1.nri\"]\n  disable = true");
    // 2.x's image verifiers default to /opt/containerd/image-verifier/bin.
    let _ = writeln!(
        out,
        "\n[plugins.\"io.containerd.image-verifier.v1.bindir\"]\n  bin_dir = {}",
        quote_path(&layout.root.join("image-verifier"))
    );
    // The streaming server keeps the CRI plugin's old name.
    let _ = writeln!(out, "\n[{CRI_V2}]");
    let _ = writeln!(out, "  stream_server_address = \"127.0.0.1\"");
    let _ = writeln!(out, "  stream_server_port = \"0\"");
    let _ = writeln!(out, "\n[{CRI_IMAGES_V3}]");
    let _ = writeln!(out, "  snapshotter = \"overlayfs\"");
    let _ = writeln!(out, "\n[{CRI_IMAGES_V3}.pinned_images]");
    let _ = writeln!(out, "  sandbox = {}", quote(sandbox_image));
    let cri = CRI_RUNTIME_V3;
    let _ = writeln!(out, "\n[{cri}]");
    let _ = writeln!(out, "  restrict_oom_score_adj = true");
    let _ = writeln!(out, "  enable_selinux = false");
    let _ = writeln!(out, "  disable_apparmor = true");
    let _ = writeln!(out, "  enable_cdi = false");
    let _ = writeln!(out, "\n[{cri}.containerd]");
    tail(
        &mut out,
        cri,
        layout,
        handlers,
        &format!("bin_dirs = [{}]", quote(CNI_BIN_DIR)),
    );
    out
}

/// What both versions' configs end with, under their CRI runtime plugin
/// `cri`: runc as the default handler, then `handlers`, then CNI from the
/// node's folder (`cni_bin_dir` is the line naming the plugins' folder,
/// whose key each version spells its own way).
fn tail(out: &mut String, cri: &str, layout: &NodeLayout, handlers: &[RuntimeHandler], cni_bin_dir: &str) {
    let _ = writeln!(out, "  default_runtime_name = \"runc\"");
    let runc = RuntimeHandler::new("runc", "runc");
    for handler in std::iter::once(&runc).chain(handlers) {
        write_handler(out, cri, handler, &layout.runc_root);
    }
    let _ = writeln!(out, "\n[{cri}.cni]");
    let _ = writeln!(out, "  {cni_bin_dir}");
    let _ = writeln!(out, "  conf_dir = {}", quote_path(&layout.cni_conf_dir));
    let _ = writeln!(out, "  max_conf_num = 1");
}

fn write_handler(out: &mut String, cri: &str, handler: &RuntimeHandler, runc_root: &Path) {
    let table = format!("{cri}.containerd.runtimes.{}", quote(&handler.name));
    let _ = writeln!(out, "\n[{table}]");
    let _ = writeln!(out, "  runtime_type = {}", quote(&handler.runtime_type));
    if !handler.pod_annotations.is_empty() {
        let list: Vec<_> = handler.pod_annotations.iter().map(|a| quote(a)).collect();
        let _ = writeln!(out, "  pod_annotations = [{}]", list.join(", "));
    }
    for line in handler.extra_toml.lines() {
        let _ = writeln!(out, "  {line}");
    }
    let _ = writeln!(out, "\n[{table}.options]");
    let _ = writeln!(out, "  BinaryName = {}", quote_path(&handler.binary));
    let _ = writeln!(out, "  Root = {}", quote_path(&runc_root.join(&handler.name)));
}

/// The CNI conflist: a bridge (`cni0`, the pods' gateway) or `ptp` (the
/// gateway on each pod's node-side veth), with host-local IPAM on the pod
/// subnet keeping its leases in the node's own folder.
pub fn cni_conflist(layout: &NodeLayout) -> String {
    let gateway = gateway_of(&layout.pod_subnet);
    let ipam = serde_json::json!({
        "type": "host-local",
        "dataDir": layout.cni_data_dir,
        "ranges": [[{ "subnet": layout.pod_subnet, "gateway": gateway }]],
        "routes": [{ "dst": "0.0.0.0/0" }],
    });
    let plugin = match layout.cni {
        Cni::Bridge => serde_json::json!({
            "type": "bridge",
            "bridge": CNI_BRIDGE,
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": ipam,
        }),
        Cni::Ptp => serde_json::json!({
            "type": "ptp",
            "ipMasq": false,
            "ipam": ipam,
        }),
    };
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": CNI_NETWORK,
        "plugins": [plugin],
    })
    .to_string()
}

/// The `.1` address of an IPv4 `a.b.c.0/nn` subnet.
pub fn gateway_of(subnet: &str) -> String {
    let network = subnet.split('/').next().unwrap_or(subnet);
    let mut octets: Vec<&str> = network.split('.').collect();
    if let Some(last) = octets.last_mut() {
        *last = "1";
    }
    octets.join(".")
}

fn quote(value: &str) -> String {
    serde_json::Value::String(value.to_owned()).to_string()
}

fn quote_path(path: &Path) -> String {
    quote(&path.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_names_our_folders_handlers_and_imports() {
        let layout = NodeLayout::under(Path::new("/tmp/n"), "10.88.91.0/24");
        let mut runcvm = RuntimeHandler::new("runcvm", "/opt/runcvm/bin/runcvm-runtime");
        runcvm.pod_annotations.push("io.runcvm/*".to_owned());
        let toml = containerd_toml(
            ContainerdVersion::V1_6,
            &layout,
            "runcvm.test/pause:1",
            &[runcvm],
            &[PathBuf::from("/tmp/d.toml")],
        );
        for needle in [
            "version = 2\n",
            "root = \"/tmp/n/root\"\n",
            "imports = [\"/tmp/d.toml\"]\n",
            "  address = \"/tmp/n/containerd.sock\"\n",
            "  sandbox_image = \"runcvm.test/pause:1\"\n",
            "  restrict_oom_score_adj = true\n",
            "  stream_server_port = \"0\"\n",
            "  snapshotter = \"overlayfs\"\n",
            "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.\"runc\"]\n  runtime_type = \"io.containerd.runc.v2\"\n",
            "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.\"runcvm\".options]\n  BinaryName = \"/opt/runcvm/bin/runcvm-runtime\"\n  Root = \"/tmp/n/state/runc/runcvm\"\n",
            "  pod_annotations = [\"io.runcvm/*\"]\n",
            "[plugins.\"io.containerd.grpc.v1.cri\".cni]\n  bin_dir = \"/usr/lib/cni\"\n  conf_dir = \"/tmp/n/cni/net.d\"\n  max_conf_num = 1\n",
        ] {
            assert!(toml.contains(needle), "{needle:?} missing from:\n{toml}");
        }
        assert!(!toml.contains("169.254"));
        assert!(!toml.contains("io.containerd.cri.v1"), "{toml}");
    }

    #[test]
    fn the_version_3_config_says_the_same_in_containerd_2_names() {
        let layout = NodeLayout::under(Path::new("/tmp/n"), "10.88.91.0/24");
        let mut runcvm = RuntimeHandler::new("runcvm", "/opt/runcvm/bin/runcvm-runtime");
        runcvm.pod_annotations.push("io.runcvm/*".to_owned());
        runcvm.extra_toml = "privileged_without_host_devices = true".to_owned();
        let toml = containerd_toml(
            ContainerdVersion::V2,
            &layout,
            "runcvm.test/pause:1",
            &[runcvm],
            &[PathBuf::from("/tmp/d.toml")],
        );
        for needle in [
            "version = 3\n",
            "root = \"/tmp/n/root\"\n",
            "state = \"/tmp/n/state\"\n",
            "imports = [\"/tmp/d.toml\"]\n",
            "[grpc]\n  address = \"/tmp/n/containerd.sock\"\n",
            "[ttrpc]\n  address = \"/tmp/n/containerd.sock.ttrpc\"\n",
            "[plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"/tmp/n/root/opt\"\n",
            "[plugins.\"io.containerd.nri.v1.nri\"]\n  disable = true\n",
            "[plugins.\"io.containerd.image-verifier.v1.bindir\"]\n  bin_dir = \"/tmp/n/root/image-verifier\"\n",
            "[plugins.\"io.containerd.grpc.v1.cri\"]\n  stream_server_address = \"127.0.0.1\"\n  stream_server_port = \"0\"\n",
            "[plugins.\"io.containerd.cri.v1.images\"]\n  snapshotter = \"overlayfs\"\n",
            "[plugins.\"io.containerd.cri.v1.images\".pinned_images]\n  sandbox = \"runcvm.test/pause:1\"\n",
            "[plugins.\"io.containerd.cri.v1.runtime\"]\n  restrict_oom_score_adj = true\n",
            "  enable_cdi = false\n",
            "[plugins.\"io.containerd.cri.v1.runtime\".containerd]\n  default_runtime_name = \"runc\"\n",
            "[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.\"runc\"]\n  runtime_type = \"io.containerd.runc.v2\"\n",
            "[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.\"runcvm\"]\n  runtime_type = \"io.containerd.runc.v2\"\n  \
             pod_annotations = [\"io.runcvm/*\"]\n  privileged_without_host_devices = true\n",
            "[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.\"runcvm\".options]\n  BinaryName = \"/opt/runcvm/bin/runcvm-runtime\"\n  Root = \"/tmp/n/state/runc/runcvm\"\n",
            "[plugins.\"io.containerd.cri.v1.runtime\".cni]\n  bin_dirs = [\"/usr/lib/cni\"]\n  conf_dir = \"/tmp/n/cni/net.d\"\n  max_conf_num = 1\n",
        ] {
            assert!(toml.contains(needle), "{needle:?} missing from:\n{toml}");
        }
        // Nothing of version 2's layout is left (the streaming server's
        // table is the only one under the old CRI name).
        for gone in [
            "sandbox_image",
            "bin_dir = \"/usr/lib/cni\"",
            "grpc.v1.cri\".containerd",
            "grpc.v1.cri\".cni",
            "aufs",
        ] {
            assert!(!toml.contains(gone), "{gone:?} in:\n{toml}");
        }
    }

    #[test]
    fn handler_tables_follow_the_config_version() {
        let handler = RuntimeHandler::new("added", "runc");
        let root = Path::new("/tmp/n/state/runc");
        for version in [ContainerdVersion::V1_6, ContainerdVersion::V2] {
            let table = runtimes_table(version);
            let text = handler_toml(version, &handler, root);
            assert!(
                text.starts_with(&format!(
                    "\n[{table}.\"added\"]\n  runtime_type = \"io.containerd.runc.v2\"\n"
                )),
                "{text}"
            );
            assert!(
                text.ends_with(&format!(
                    "[{table}.\"added\".options]\n  BinaryName = \"runc\"\n  Root = \"/tmp/n/state/runc/added\"\n"
                )),
                "{text}"
            );
        }
        assert_eq!(
            runtimes_table(ContainerdVersion::V2),
            "plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes"
        );
    }

    #[test]
    fn the_conflist_is_a_bridge_with_private_ipam() {
        let layout = NodeLayout::under(Path::new("/tmp/n"), "10.88.91.0/24");
        let list: serde_json::Value = serde_json::from_str(&cni_conflist(&layout)).expect("json");
        let bridge = &list["plugins"][0];
        assert_eq!(bridge["type"], "bridge");
        assert_eq!(bridge["ipam"]["dataDir"], "/tmp/n/cni/data");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["gateway"], "10.88.91.1");
    }

    #[test]
    fn the_ptp_conflist_has_the_same_ipam_and_no_bridge() {
        let layout = NodeLayout::under(Path::new("/tmp/n"), "10.88.92.0/24").with_cni(Cni::Ptp);
        let list: serde_json::Value = serde_json::from_str(&cni_conflist(&layout)).expect("json");
        assert_eq!(list["name"], CNI_NETWORK);
        let plugins = list["plugins"].as_array().expect("plugins");
        assert_eq!(plugins.len(), 1);
        let ptp = &plugins[0];
        assert_eq!(ptp["type"], "ptp");
        assert_eq!(ptp["ipMasq"], false);
        assert!(ptp.get("bridge").is_none(), "{ptp}");
        assert_eq!(ptp["ipam"]["type"], "host-local");
        assert_eq!(ptp["ipam"]["dataDir"], "/tmp/n/cni/data");
        assert_eq!(ptp["ipam"]["ranges"][0][0]["subnet"], "10.88.92.0/24");
        assert_eq!(ptp["ipam"]["ranges"][0][0]["gateway"], "10.88.92.1");
    }
}
