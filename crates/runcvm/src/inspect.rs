//! `runcvm inspect`: a root disk's `/.runcvm` listed, and its entrypoint and
//! launch plan shown, without booting (guide, section 5). The target is an
//! image, a folder holding `disk.ext4` (a run folder, a container's state
//! folder), or a Kubernetes container id. A container's disk is the node's
//! boot disk (guest init alone): its entrypoint and plan, which reach the
//! guest in `Start`, are shown from the node's copy of its launch file, with
//! where its root file system is on the node, which its guest is served,
//! and its writable layer.

use runcvm_rootfs::{DiskError, GuestEntry, find_tool};
use runcvm_spec::launch::{ContainerLaunch, DISK_FILE};
use runcvm_spec::{ENTRYPOINT_PATH, GUEST_DIR, PLAN_PATH};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// Why a root disk could not be found or shown.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// {target:?} is neither a root disk image, nor a folder holding
    /// disk.ext4, nor a container id with a state folder under {containers}
    #[error(
        "{target:?} is neither a root disk image, nor a folder holding {DISK_FILE}, nor a container id with a state folder under {containers}"
    )]
    NoImage { target: String, containers: PathBuf },
    /// debugfs not found: install e2fsprogs
    #[error("debugfs not found: install e2fsprogs")]
    NoDebugfs,
    /// {image} is not a regular file
    #[error("{image} is not a regular file")]
    NotAFile { image: PathBuf },
    /// the image as debugfs read it (its own message)
    #[error(transparent)]
    Read(#[from] DiskError),
}

/// The image `target` names.
pub fn locate_image(target: &str, state_dir: &Path) -> Result<PathBuf, InspectError> {
    let path = Path::new(target);
    let kind = std::fs::symlink_metadata(path).map(|m| m.file_type());
    if kind.as_ref().is_ok_and(std::fs::FileType::is_file) {
        return Ok(path.to_owned());
    }
    if kind.as_ref().is_ok_and(std::fs::FileType::is_dir) {
        return Ok(path.join(DISK_FILE));
    }
    let containers = state_dir.join("containers");
    let container = containers.join(target).join(DISK_FILE);
    if !target.contains('/') && container.is_file() {
        return Ok(container);
    }
    Err(InspectError::NoImage {
        target: target.to_owned(),
        containers,
    })
}

/// The listing of `/.runcvm` (`ls -l` style), then the entrypoint and the
/// plan: as stored on the disk, or for a Kubernetes container (`launch`)
/// as its launch file gives them to the guest.
pub fn report(image: &Path, launch: Option<&ContainerLaunch>) -> Result<String, InspectError> {
    let debugfs = find_tool("debugfs").ok_or(InspectError::NoDebugfs)?;
    // Not through a symlink: a container can write its state folder.
    if !std::fs::symlink_metadata(image).is_ok_and(|m| m.file_type().is_file()) {
        return Err(InspectError::NotAFile {
            image: image.to_owned(),
        });
    }
    let entries = GuestEntry::list(&debugfs, image, GUEST_DIR)?;
    let mut out = format!("{} in {}\n", GUEST_DIR, image.display());
    for entry in entries.iter().filter(|e| e.name != "." && e.name != "..") {
        let _ = writeln!(
            out,
            "{} {:>5} {:>5} {:>10} {}",
            mode_string(entry.mode),
            entry.uid,
            entry.gid,
            entry.size,
            printable(&entry.name)
        );
    }
    if let Some(launch) = launch {
        let from = "sent to the guest at start, as the node's copy of launch.json has it";
        for (path, json) in [
            (ENTRYPOINT_PATH, launch.process.to_json()),
            (PLAN_PATH, launch.plan.to_json()),
        ] {
            let text = String::from_utf8_lossy(&json);
            let _ = writeln!(out, "\n{path} ({from}):\n{}", printable(text.trim_end()));
        }
        return Ok(out);
    }
    for (path, present) in
        [ENTRYPOINT_PATH, PLAN_PATH].map(|p| (p, entries.iter().any(|e| Some(e.name.as_str()) == p.rsplit('/').next())))
    {
        if present {
            let text = GuestEntry::read(&debugfs, image, path)?;
            let _ = write!(out, "\n{path}:\n{}", printable(text.trim_end()));
            out.push('\n');
        } else {
            let _ = writeln!(out, "\n{path}: absent");
        }
    }
    Ok(out)
}

/// The launch of the Kubernetes container `target` names (its id or its
/// state folder), from the node's copy of its launch file (the container
/// cannot write it): `None` for any other target.
pub fn container_launch(target: &str, state_dir: &Path) -> Option<ContainerLaunch> {
    let containers = state_dir.join("containers");
    // A container id, or its state folder.
    let id = if target.contains('/') {
        let folder = Path::new(target);
        (folder.parent()? == containers).then_some(folder.file_name()?.to_str()?)?
    } else {
        target
    };
    let bytes = std::fs::read(runcvm_spec::launch::node_launch_file(state_dir, id)).ok()?;
    ContainerLaunch::from_json(&bytes).ok()
}

/// The boot disk a Kubernetes container's VM boots: its path on the node,
/// or, once an install's upgrade has taken that name off the node, the
/// file as a running launcher holds it (`guest_disk::held_boot_disk`).
pub fn boot_disk(launch: &ContainerLaunch) -> PathBuf {
    let path = PathBuf::from(&launch.boot_disk);
    if path.is_file() {
        return path;
    }
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return path;
    };
    runcvm_host::guest_disk::held_boot_disk(name).unwrap_or(path)
}

/// Where a Kubernetes container has its root on the node, and its writable
/// layer.
pub fn container_root(launch: &ContainerLaunch) -> Option<String> {
    let rootfs = launch.rootfs.as_deref()?;
    let mut out = format!(
        "
container root (on the node, served to the guest over NFS): {rootfs}
"
    );
    match writable_layer(rootfs) {
        Some(upper) => {
            let _ = writeln!(out, "writable layer (what the container wrote): {upper}");
        }
        None => out.push_str(
            "writable layer: not found (the root is not mounted now, or not an overlay)
",
        ),
    }
    Some(out)
}

/// The `upperdir` of the overlay mounted at `point`, from this process's
/// mount table.
fn writable_layer(point: &str) -> Option<String> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    table.lines().find_map(|line| {
        let (mount, filesystem) = line.split_once(" - ")?;
        if mount.split(' ').nth(4)? != escape_mount_path(point) {
            return None;
        }
        let mut fields = filesystem.split(' ');
        if fields.next()? != "overlay" {
            return None;
        }
        fields
            .nth(1)?
            .split(',')
            .find_map(|option| option.strip_prefix("upperdir="))
            .map(str::to_owned)
    })
}

/// A path as mountinfo writes it: space, tab, newline and backslash octal.
fn escape_mount_path(path: &str) -> String {
    path.chars()
        .map(|c| match c {
            ' ' | '\t' | '\n' | '\\' => format!("\\{:03o}", u32::from(c)),
            c => c.to_string(),
        })
        .collect()
}

/// `text` with control characters (a guest wrote it) shown escaped, so they
/// cannot drive the terminal.
fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// `-rwxr-xr-x` for a mode from `ls -p`.
fn mode_string(mode: u32) -> String {
    let kind = match mode & 0o170_000 {
        0o040_000 => 'd',
        0o120_000 => 'l',
        0o020_000 => 'c',
        0o060_000 => 'b',
        0o010_000 => 'p',
        0o140_000 => 's',
        _ => '-',
    };
    let mut out = String::from(kind);
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        out.push(if mode & (1 << (8 - i)) != 0 { c } else { '-' });
    }
    // setuid, setgid and sticky show in the execute columns, as ls does.
    for (bit, at, set, unset) in [(0o4000, 3, 's', 'S'), (0o2000, 6, 's', 'S'), (0o1000, 9, 't', 'T')] {
        if mode & bit != 0 {
            let shown = if out.as_bytes()[at] == b'x' { set } else { unset };
            out.replace_range(at..=at, &shown.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_escaped_as_mountinfo_writes_them() {
        assert_eq!(escape_mount_path("/run/a b\\c"), "/run/a\\040b\\134c");
        assert_eq!(escape_mount_path("/plain/rootfs"), "/plain/rootfs");
    }

    #[test]
    fn modes_read_like_ls() {
        assert_eq!(mode_string(0o100_755), "-rwxr-xr-x");
        assert_eq!(mode_string(0o100_600), "-rw-------");
        assert_eq!(mode_string(0o040_711), "drwx--x--x");
        assert_eq!(mode_string(0o104_755), "-rwsr-xr-x");
        assert_eq!(mode_string(0o041_777), "drwxrwxrwt");
        assert_eq!(mode_string(0o020_666), "crw-rw-rw-");
        assert_eq!(printable("a\x1b[2Jb"), "a\\u{1b}[2Jb");
    }

    #[test]
    fn an_image_is_listed_with_its_entrypoint_without_booting() {
        let work = tempfile::tempdir().unwrap();
        let rootfs = work.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        let init = work.path().join("init");
        std::fs::write(&init, b"\x7fELF").unwrap();
        let dir = crate::run_dir::RunDir::adopt(work.path());
        let entrypoint = runcvm_spec::Entrypoint::new(vec!["/bin/app".into()], vec!["A=1".into()]);
        let plan = runcvm_spec::LaunchPlan::default();
        let files = crate::guest_disk::GuestFiles {
            init: &init,
            entrypoint: Some(&entrypoint),
            plan: &plan,
        };
        crate::guest_disk::build(&dir, &rootfs, &files, 8).unwrap();
        let image = locate_image(&work.path().display().to_string(), Path::new("/nonexistent")).unwrap();
        let text = report(&image, None).unwrap();
        assert!(text.contains("-rwxr-xr-x     0     0          4 init"), "{text}");
        assert!(text.contains("-rw-------     0     0"), "{text}");
        assert!(
            text.contains("/.runcvm/entrypoint:\n{") && text.contains("\"/bin/app\""),
            "{text}"
        );
        assert!(text.contains("/.runcvm/plan.json:\n{"), "{text}");
        let err = locate_image("no-such-container", work.path()).unwrap_err().to_string();
        assert!(err.contains("nor a container id"), "{err}");
    }

    #[test]
    fn a_containers_entrypoint_and_plan_come_from_the_nodes_launch_file() {
        let state = tempfile::tempdir().unwrap();
        let containers = state.path().join("containers");
        std::fs::create_dir_all(containers.join("c1")).unwrap();
        let process = runcvm_spec::Entrypoint::new(vec!["/bin/app".into()], vec![]);
        let launch = serde_json::json!({
            "version": runcvm_spec::launch::LAUNCH_VERSION,
            "process": serde_json::from_slice::<serde_json::Value>(&process.to_json()).unwrap(),
            "plan": runcvm_spec::LaunchPlan { hostname: Some("web-0".into()), ..Default::default() },
            "cpus": 1, "memory_mib": 256, "accel": "tcg", "volumes": [],
            "boot_disk": "/var/lib/runcvm/boot/boot-v1.ext4",
        });
        std::fs::write(containers.join("c1.launch.json"), launch.to_string()).unwrap();
        let by_id = container_launch("c1", state.path()).unwrap();
        let folder = containers.join("c1").display().to_string();
        assert_eq!(container_launch(&folder, state.path()), Some(by_id.clone()));
        assert_eq!(container_launch("/elsewhere/c1", state.path()), None);
        assert_eq!(by_id.boot_disk, "/var/lib/runcvm/boot/boot-v1.ext4");
        // Shown where debugfs would show them, from the launch file.
        let work = tempfile::tempdir().unwrap();
        std::fs::create_dir(work.path().join("empty")).unwrap();
        let init = work.path().join("init");
        std::fs::write(&init, b"\x7fELF").unwrap();
        let dir = crate::run_dir::RunDir::adopt(work.path());
        let plan = runcvm_spec::LaunchPlan::default();
        let files = crate::guest_disk::GuestFiles {
            init: &init,
            entrypoint: None,
            plan: &plan,
        };
        crate::guest_disk::build(&dir, &work.path().join("empty"), &files, 8).unwrap();
        let text = report(&dir.disk(), Some(&by_id)).unwrap();
        assert!(
            text.contains("/.runcvm/entrypoint (sent to the guest at start") && text.contains("\"/bin/app\""),
            "{text}"
        );
        assert!(text.contains("\"web-0\""), "{text}");
    }
}
