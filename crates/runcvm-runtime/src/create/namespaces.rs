//! Which namespaces a workload container joins, checked on the node before
//! anything is touched: the launcher takes over `eth0` of the container's
//! network namespace, so that namespace must provably be a pod's own, never
//! the node's (a hostNetwork pod would otherwise take the node's uplink).
//!
//! containerd writes every container's namespaces as paths into its pod's
//! sandbox (`/proc/PID/ns/net` of the pause container); for a hostNetwork,
//! hostPID or hostIPC pod the sandbox has none of its own, so the path leads
//! to the node's. A path is therefore judged by the namespace it names
//! (device and inode of its nsfs file), compared with the namespaces of the
//! runtime itself and of the node's PID 1: the runtime runs in containerd's
//! namespaces, which are the node's. A missing entry means the runtime's own,
//! the node's, too.

use runcvm_spec::launch::NamespaceId;
use runcvm_spec::oci::OciConfig;
use std::os::unix::fs::MetadataExt;

/// The kinds checked, as the OCI spec names them.
const NETWORK: &str = "network";
const PID: &str = "pid";
const IPC: &str = "ipc";

/// The node's namespaces of the kinds checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeNamespaces {
    pub network: Vec<NamespaceId>,
    pub pid: Vec<NamespaceId>,
    pub ipc: Vec<NamespaceId>,
}

impl NodeNamespaces {
    /// The runtime's own namespaces and PID 1's (those that can be read).
    pub fn of_this_node() -> Self {
        let read = |kind: &str| -> Vec<NamespaceId> {
            let mut ids: Vec<NamespaceId> = ["self", "1"]
                .iter()
                .filter_map(|pid| identify(&format!("/proc/{pid}/ns/{kind}")).ok())
                .collect();
            ids.dedup();
            ids
        };
        Self {
            network: read("net"),
            pid: read("pid"),
            ipc: read("ipc"),
        }
    }

    fn of_kind(&self, kind: &str) -> &[NamespaceId] {
        match kind {
            NETWORK => &self.network,
            PID => &self.pid,
            _ => &self.ipc,
        }
    }
}

/// The namespace a path names.
pub fn identify(path: &str) -> std::io::Result<NamespaceId> {
    std::fs::metadata(path).map(|meta| NamespaceId {
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

/// Why a container's namespaces rule out a VM.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    /// the container uses the node's network namespace
    #[error(
        "the container uses the node's network namespace (hostNetwork): runcvm gives the VM the pod's own eth0 and would take the node's, so it refuses before touching anything; drop hostNetwork or use another runtime class"
    )]
    HostNetwork,
    /// the container uses the node's PID namespace
    #[error(
        "the container uses the node's PID namespace (hostPID): a VM has its own kernel and cannot see or signal the node's processes; drop hostPID or use another runtime class"
    )]
    HostPid,
    /// the container uses the node's IPC namespace
    #[error(
        "the container uses the node's IPC namespace (hostIPC): a VM has its own kernel and cannot share the node's shared memory and message queues; drop hostIPC or use another runtime class"
    )]
    HostIpc,
    /// a namespace path that cannot be inspected
    #[error("cannot inspect the container's {kind} namespace {path}")]
    Unreadable {
        kind: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// What the checks found out about the container's namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodNamespaces {
    /// The pod's network namespace the container joins; `None` when runc
    /// makes a new one for it.
    pub network: Option<NamespaceId>,
    /// The container has a PID namespace of its own (CRI's CONTAINER mode),
    /// rather than the pod's (POD, shareProcessNamespace) or another
    /// container's (TARGET, an ephemeral container's).
    pub own_pid: bool,
    /// The PID namespace it joins, when not its own.
    pub pid: Option<NamespaceId>,
}

/// The path of the container's namespace of `kind` ("pid", "network"), if
/// it joins one.
pub fn path_of<'a>(config: &'a OciConfig, kind: &str) -> Option<&'a str> {
    config
        .linux
        .as_ref()?
        .namespaces
        .iter()
        .find(|ns| ns.kind == kind)?
        .path
        .as_deref()
}

/// Checks the container's network, PID and IPC namespaces against the
/// node's; `identify` names the namespace behind a path.
pub fn check(
    config: &OciConfig,
    node: &NodeNamespaces,
    identify: impl Fn(&str) -> std::io::Result<NamespaceId>,
) -> Result<PodNamespaces, NamespaceError> {
    let namespaces = config.linux.as_ref().map_or(&[][..], |l| l.namespaces.as_slice());
    let mut found = PodNamespaces {
        network: None,
        own_pid: false,
        pid: None,
    };
    for kind in [NETWORK, PID, IPC] {
        let refusal = || match kind {
            NETWORK => NamespaceError::HostNetwork,
            PID => NamespaceError::HostPid,
            _ => NamespaceError::HostIpc,
        };
        let Some(entry) = namespaces.iter().find(|ns| ns.kind == kind) else {
            // No entry: the runtime's own namespace, which is the node's.
            return Err(refusal());
        };
        let Some(path) = entry.path.as_deref().filter(|p| !p.is_empty()) else {
            // A new namespace, made by runc for this container.
            if kind == PID {
                found.own_pid = true;
            }
            continue;
        };
        let id = identify(path).map_err(|source| NamespaceError::Unreadable {
            kind: kind.to_owned(),
            path: path.to_owned(),
            source,
        })?;
        if node.of_kind(kind).contains(&id) {
            return Err(refusal());
        }
        match kind {
            NETWORK => found.network = Some(id),
            PID => found.pid = Some(id),
            _ => {}
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE_NET: NamespaceId = NamespaceId { dev: 4, ino: 100 };
    const NODE_PID: NamespaceId = NamespaceId { dev: 4, ino: 101 };
    const NODE_IPC: NamespaceId = NamespaceId { dev: 4, ino: 102 };
    const POD_NET: NamespaceId = NamespaceId { dev: 4, ino: 200 };

    fn node() -> NodeNamespaces {
        NodeNamespaces {
            network: vec![NODE_NET],
            pid: vec![NODE_PID],
            ipc: vec![NODE_IPC],
        }
    }

    /// `/proc/1/ns/*` is the node's; `/proc/7/ns/*` the pod's sandbox.
    fn fake(path: &str) -> std::io::Result<NamespaceId> {
        match path {
            "/proc/1/ns/net" => Ok(NODE_NET),
            "/proc/1/ns/pid" => Ok(NODE_PID),
            "/proc/1/ns/ipc" => Ok(NODE_IPC),
            "/proc/7/ns/net" | "/var/run/netns/cni-1" => Ok(POD_NET),
            "/proc/7/ns/pid" => Ok(NamespaceId { dev: 4, ino: 201 }),
            "/proc/7/ns/ipc" => Ok(NamespaceId { dev: 4, ino: 202 }),
            _ => Err(std::io::ErrorKind::NotFound.into()),
        }
    }

    fn config(namespaces: serde_json::Value) -> OciConfig {
        serde_json::from_value(serde_json::json!({"linux": {"namespaces": namespaces}})).unwrap()
    }

    fn pod(pid: serde_json::Value) -> serde_json::Value {
        serde_json::json!([
            {"type": "network", "path": "/proc/7/ns/net"},
            pid,
            {"type": "ipc", "path": "/proc/7/ns/ipc"},
            {"type": "mount"}
        ])
    }

    #[test]
    fn a_pods_own_namespaces_pass_and_the_network_one_is_recorded() {
        let shared = check(
            &config(pod(serde_json::json!({"type": "pid", "path": "/proc/7/ns/pid"}))),
            &node(),
            fake,
        )
        .unwrap();
        assert_eq!(shared.network, Some(POD_NET));
        assert!(!shared.own_pid, "shareProcessNamespace joins the sandbox's");
        assert_eq!(shared.pid, Some(NamespaceId { dev: 4, ino: 201 }));
        let own = check(&config(pod(serde_json::json!({"type": "pid"}))), &node(), fake).unwrap();
        assert!(own.own_pid);
        assert_eq!(own.pid, None);
        let with_path = config(pod(serde_json::json!({"type": "pid", "path": "/proc/7/ns/pid"})));
        assert_eq!(path_of(&with_path, "pid"), Some("/proc/7/ns/pid"));
        assert_eq!(path_of(&config(pod(serde_json::json!({"type": "pid"}))), "pid"), None);
    }

    #[test]
    fn the_nodes_namespaces_are_refused_whatever_form_the_spec_takes() {
        // containerd 2.x: the pause container's namespace, which is the node's.
        let mut host_net = pod(serde_json::json!({"type": "pid"}));
        host_net[0]["path"] = "/proc/1/ns/net".into();
        assert!(matches!(
            check(&config(host_net), &node(), fake),
            Err(NamespaceError::HostNetwork)
        ));
        // No entry at all: the runtime's own namespace.
        let no_net = serde_json::json!([{"type": "pid"}, {"type": "ipc"}]);
        assert!(matches!(
            check(&config(no_net), &node(), fake),
            Err(NamespaceError::HostNetwork)
        ));
        let host_pid = pod(serde_json::json!({"type": "pid", "path": "/proc/1/ns/pid"}));
        assert!(matches!(
            check(&config(host_pid), &node(), fake),
            Err(NamespaceError::HostPid)
        ));
        let no_pid = serde_json::json!([{"type": "network", "path": "/proc/7/ns/net"}, {"type": "ipc"}]);
        assert!(matches!(
            check(&config(no_pid), &node(), fake),
            Err(NamespaceError::HostPid)
        ));
        let mut host_ipc = pod(serde_json::json!({"type": "pid"}));
        host_ipc[2]["path"] = "/proc/1/ns/ipc".into();
        assert!(matches!(
            check(&config(host_ipc), &node(), fake),
            Err(NamespaceError::HostIpc)
        ));
    }

    #[test]
    fn a_namespace_path_that_cannot_be_read_is_an_error_naming_it() {
        let mut gone = pod(serde_json::json!({"type": "pid"}));
        gone[0]["path"] = "/proc/99/ns/net".into();
        let error = check(&config(gone), &node(), fake).unwrap_err().to_string();
        assert_eq!(
            error,
            "cannot inspect the container's network namespace /proc/99/ns/net"
        );
    }

    #[test]
    fn this_nodes_namespaces_can_be_read() {
        let node = NodeNamespaces::of_this_node();
        assert!(!node.network.is_empty() && !node.pid.is_empty() && !node.ipc.is_empty());
        assert_eq!(identify("/proc/self/ns/net").unwrap(), node.network[0]);
    }
}
