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
    runcvm_spec::launch::node_launch_file(state_root, id)
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
    let folder = state_folder(state_root, id);
    match remove_folder(&folder) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes a container's state folder and all in it, unless its `root`
/// folder is a mount point: the container's root is bound there in the
/// container's view only; were it ever bound on the node, removing the
/// folder would empty the container's root, so all of it is left.
pub fn remove_folder(folder: &Path) -> std::io::Result<()> {
    let root = folder.join(runcvm_spec::launch::ROOT_FOLDER);
    if let (Ok(outer), Ok(inner)) = (std::fs::metadata(folder), std::fs::metadata(&root)) {
        use std::os::unix::fs::MetadataExt;
        if outer.dev() != inner.dev() {
            return Err(std::io::Error::other(format!(
                "{} is a mount point on the node: unmount it, then delete the container again",
                root.display()
            )));
        }
    }
    std::fs::remove_dir_all(folder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_folder_whose_root_is_another_file_system_is_left_whole() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("c1");
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("launch.json"), b"{}").unwrap();
        // Another file system at `root`, as a mount on the node would be
        // (a link is what an unprivileged test can make; the check reads
        // through it as through a mount).
        std::os::unix::fs::symlink("/proc", folder.join("root")).unwrap();
        let refused = remove_folder(&folder).unwrap_err();
        assert!(
            refused.to_string().contains("is a mount point on the node"),
            "{refused}"
        );
        assert!(folder.join("launch.json").exists());
        std::fs::remove_file(folder.join("root")).unwrap();
        std::fs::create_dir(folder.join("root")).unwrap();
        remove_folder(&folder).unwrap();
        assert!(!folder.exists());
    }
}
