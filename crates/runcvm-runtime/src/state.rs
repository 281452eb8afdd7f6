//! A container's state on the node, one definition for every command that
//! uses it (`create` makes it, `exec` and `update` read it, `delete` and the
//! orphan collector remove it): the state folder
//! `STATE/containers/<id>` (the container's `/.runcvm`) and, beside it and
//! out of the container's reach, the node's own copy of its `launch.json`.

use runcvm_spec::ContainerLaunch;
use std::path::{Path, PathBuf};

/// The per-container state folder on the node (the container's `/.runcvm`).
pub fn state_folder(state_root: &Path, id: &str) -> PathBuf {
    state_root.join("containers").join(id)
}

/// The node's own copy of a container's `launch.json`, beside its state
/// folder and so out of the container's reach: what `exec` trusts.
pub fn node_launch_file(state_root: &Path, id: &str) -> PathBuf {
    state_root.join("containers").join(format!("{id}.launch.json"))
}

/// A node-side launch file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NodeLaunchError {
    /// the file cannot be read
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// the file is not a launch file this build reads
    #[error("{path}: the container's launch file is unusable")]
    Unusable {
        path: PathBuf,
        #[source]
        source: runcvm_spec::launch::LaunchError,
    },
}

impl NodeLaunchError {
    /// Whether the file is not there (a container an earlier build made).
    pub fn is_missing(&self) -> bool {
        matches!(self, Self::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Reads the node's own copy of a container's `launch.json`.
pub fn read_node_launch(state_root: &Path, id: &str) -> Result<ContainerLaunch, NodeLaunchError> {
    let path = node_launch_file(state_root, id);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(source) => return Err(NodeLaunchError::Read { path, source }),
    };
    ContainerLaunch::from_json(&bytes).map_err(|source| NodeLaunchError::Unusable { path, source })
}

/// Removes what `prepare` made for a container.
pub fn remove_state(state_root: &Path, id: &str) -> std::io::Result<()> {
    let _ = std::fs::remove_file(node_launch_file(state_root, id));
    let _ = std::fs::remove_file(crate::orphans::runc_root_record(state_root, id));
    match std::fs::remove_dir_all(state_folder(state_root, id)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
