//! Tearing a node down, pass or fail, and finding what a pod left behind.
//! Order: every pod sandbox through CRI (StopPodSandbox, RemovePodSandbox),
//! containerd itself, containers the OCI runtimes still know
//! (`delete --force`), the shims serving our socket, every mount under the
//! node's folder (deepest first), the pods' CNI namespaces, the node's own
//! namespace, what dead shims and a skipped CNI DEL leave in
//! `/run/containerd/s` and `/var/lib/cni/results`, and the folder.

use crate::host;
use crate::node::Node;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// libcni's cache of ADD results, used for DEL.
const CNI_RESULTS: &str = "/var/lib/cni/results";

/// Nodes of this process not yet torn down.
pub(crate) static LIVE_NODES: AtomicUsize = AtomicUsize::new(0);

impl Node {
    /// Everything still present of the pods or containers `ids`: processes
    /// that mention an id (shims are started with `-id SANDBOX`), mounts
    /// whose path holds one (rootfs, shm), their network namespaces, cgroup
    /// folders and OCI runtime state. Empty when all is gone.
    pub fn leftovers(&self, ids: &[&str]) -> Vec<String> {
        let mut found = Vec::new();
        let mounts = host::mounts_under(Path::new("/"));
        let record = self
            .netns_record
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for id in ids.iter().filter(|id| !id.is_empty()) {
            for process in host::processes_mentioning(id) {
                found.push(format!("process {}: {}", process.pid, process.cmdline));
            }
            for point in mounts.iter().filter(|p| p.to_string_lossy().contains(id)) {
                found.push(format!("mount {}", point.display()));
            }
            if let Some(netns) = record.get(*id).filter(|p| p.exists()) {
                found.push(format!("network namespace {}", netns.display()));
            }
            for cgroup in host::cgroups_mentioning(id) {
                found.push(format!("cgroup {}", cgroup.display()));
            }
            for root in self.runtime_roots() {
                if root.join(id).exists() {
                    found.push(format!("OCI runtime state {}", root.join(id).display()));
                }
            }
        }
        found
    }

    /// Panics with [`Self::leftovers`] and the containerd log tail unless
    /// nothing of `ids` remains within 5 s.
    pub fn assert_nothing_left(&self, ids: &[&str]) {
        let mut left = Vec::new();
        let gone = runcvm_test_infra::wait_until(Duration::from_secs(5), || {
            left = self.leftovers(ids);
            left.is_empty()
        });
        assert!(
            gone,
            "left behind:\n  {}\ncontainerd log:\n{}",
            left.join("\n  "),
            self.log_tail(30)
        );
    }

    /// What a crash and a reboot do to the node while the pods of `ids`
    /// run: containerd and its shims die by SIGKILL, every process of the
    /// pods too (as the machine stops), the mounts and the pods' network
    /// namespaces go, and with them what lives on `/run` (containerd's
    /// state, the OCI runtimes' state, the shims' sockets) and the cgroups;
    /// containerd's root and everything else on disk stays. Then containerd
    /// starts again on the same config.
    pub fn crash_and_reboot(&mut self, ids: &[&str]) -> anyhow::Result<()> {
        if let Some(mut child) = self.containerd.take() {
            self.cri = None;
            let _ = child.kill();
            let _ = child.wait();
        }
        let sandbox_ids = self.kill_shims();
        for id in ids {
            let mut cgroups = host::cgroups_mentioning(id);
            // Deepest first, so each is empty when it goes.
            cgroups.sort_by_key(|c| std::cmp::Reverse(c.components().count()));
            for cgroup in &cgroups {
                for pid in std::fs::read_to_string(cgroup.join("cgroup.procs"))
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| l.trim().parse().ok())
                {
                    host::kill(pid);
                }
            }
            for cgroup in &cgroups {
                runcvm_test_infra::wait_until(Duration::from_secs(5), || std::fs::remove_dir(cgroup).is_ok());
            }
        }
        if let Some(dir) = self.dir.as_ref().map(|d| d.path().to_owned()) {
            host::unmount_all_under(&dir);
        }
        self.remove_pod_netns();
        self.remove_sandbox_files(&sandbox_ids);
        for volatile in [&self.layout.state, &self.layout.runc_root] {
            let _ = std::fs::remove_dir_all(volatile);
            std::fs::create_dir_all(volatile)?;
        }
        self.launch()
    }

    /// The network namespaces containerd made for this node's pods.
    pub fn pod_netns(&self) -> Vec<PathBuf> {
        let record = self
            .netns_record
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        record.values().cloned().collect()
    }

    fn pod_netns_ids(&self) -> Vec<String> {
        let record = self
            .netns_record
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        record.keys().cloned().collect()
    }

    fn runtime_roots(&self) -> Vec<PathBuf> {
        std::iter::once("runc")
            .chain(self.options.runtimes.iter().map(|h| h.name.as_str()))
            .map(|name| self.layout.runc_root.join(name).join(crate::config::CRI_NAMESPACE))
            .collect()
    }

    fn remove_all_pods(&self) {
        let Some(cri) = self.cri.as_ref() else { return };
        cri.set_timeout(Duration::from_secs(30));
        let Ok(pods) = cri.list_pod_sandboxes() else { return };
        for pod in pods {
            if let Err(e) = cri
                .stop_pod_sandbox(&pod.id)
                .and_then(|()| cri.remove_pod_sandbox(&pod.id))
            {
                eprintln!("node teardown: pod {}: {e:#}", pod.id);
            }
        }
    }

    fn stop_containerd(&mut self) {
        self.cri = None;
        let Some(mut child) = self.containerd.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: kill(2) on our own child; no memory effects.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let stopped =
            runcvm_test_infra::wait_until(Duration::from_secs(5), || child.try_wait().ok().flatten().is_some());
        if !stopped {
            let _ = child.kill();
        }
        let _ = child.wait();
    }

    /// `BINARY --root ROOT delete --force ID` for every container a runtime
    /// still has state for.
    fn force_delete_containers(&self) {
        let runc = crate::config::RuntimeHandler::new("runc", "runc");
        for handler in std::iter::once(&runc).chain(&self.options.runtimes) {
            // The shim adds the containerd namespace to the configured root.
            let root = self
                .layout
                .runc_root
                .join(&handler.name)
                .join(crate::config::CRI_NAMESPACE);
            let Ok(entries) = std::fs::read_dir(&root) else {
                continue;
            };
            for entry in entries.flatten() {
                let _ = Command::new(&handler.binary)
                    .arg("--root")
                    .arg(&root)
                    .args(["delete", "--force"])
                    .arg(entry.file_name())
                    .output();
            }
        }
    }

    /// Kills the shims still serving our socket; returns their `-id`s.
    fn kill_shims(&self) -> Vec<String> {
        let mut ids = Vec::new();
        for shim in host::shims_of(&self.layout.socket) {
            host::kill(shim.pid);
            let args: Vec<&str> = shim.cmdline.split(' ').collect();
            if let Some(pair) = args.windows(2).find(|w| w[0] == "-id") {
                ids.push(pair[1].to_owned());
            }
        }
        let socket = self.layout.socket.clone();
        runcvm_test_infra::wait_until(Duration::from_secs(5), || host::shims_of(&socket).is_empty());
        ids
    }

    /// What a sandbox whose shim or CNI DEL never ran leaves outside the
    /// node's folder: the shim's sockets in `/run/containerd/s` (named by
    /// sha256 of `SOCKET/k8s.io/ID`, and with containerd 2.x, whose shim
    /// started with `-debug` (the node logs at debug) also listens on a
    /// debug socket, of `SOCKET/k8s.io/ID/debug`) and libcni's cached
    /// results in `/var/lib/cni/results` (`NETWORK-ID-IFNAME`).
    fn remove_sandbox_files(&self, sandbox_ids: &[String]) {
        for id in sandbox_ids {
            for path in host::shim_sockets(&self.layout.socket, id) {
                let _ = std::fs::remove_file(path);
            }
        }
        if let Ok(entries) = std::fs::read_dir(CNI_RESULTS) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if sandbox_ids.iter().any(|id| name.contains(&format!("-{id}-"))) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
    }

    /// Drops the shared folders if nothing else uses them (none existed
    /// before the first node ran here); only with the last node of this
    /// process, since a node beside this one may be between making a folder
    /// and putting its first file in.
    fn remove_shared_folders_if_last(&self) {
        if LIVE_NODES.fetch_sub(1, Ordering::SeqCst) == 1 {
            for dir in [host::SHIM_SOCKETS, "/run/containerd", CNI_RESULTS, "/var/lib/cni"] {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }

    /// Our pods' CNI namespaces: recorded ones, and any made since the
    /// start that no process uses and that is over 10 s old (younger ones
    /// may be another node's pod being set up right now).
    fn remove_pod_netns(&self) {
        let record = self.pod_netns();
        let old = |p: &PathBuf| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age >= Duration::from_secs(10)))
        };
        let new_unused = host::cni_netns()
            .into_iter()
            .filter(|p| !self.cni_before.contains(p) && old(p) && !host::netns_in_use(p));
        let mut all: Vec<PathBuf> = record.into_iter().chain(new_unused).collect();
        all.sort();
        all.dedup();
        for path in all.iter().filter(|p| p.exists()) {
            host::remove_netns_file(path);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // A failing test shows what containerd said before it goes.
        if std::thread::panicking() {
            eprintln!("containerd log ({}):\n{}", self.log_path().display(), self.log_tail(80));
        }
        if self.containerd.is_some() {
            self.remove_all_pods();
        }
        self.stop_containerd();
        self.force_delete_containers();
        let mut sandbox_ids = self.kill_shims();
        sandbox_ids.extend(self.pod_netns_ids());
        if let Some(dir) = self.dir.as_ref().map(|d| d.path().to_owned()) {
            host::unmount_all_under(&dir);
        }
        self.remove_pod_netns();
        drop(self.netns.take());
        self.remove_sandbox_files(&sandbox_ids);
        self.remove_shared_folders_if_last();
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_owned();
            if let Err(e) = dir.close() {
                eprintln!("node teardown: removing {}: {e}", path.display());
            }
        }
    }
}
