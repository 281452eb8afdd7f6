//! Network namespaces a test creates and is sure to remove: every process
//! left in one is killed and the namespace deleted when it is dropped, pass
//! or fail. Set-up uses iproute2 (standing in for a CNI plugin); code under
//! test runs in the namespace through [`Netns::enter`].

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// Prefix of every namespace the tests make, so leftovers can be found.
pub const PREFIX: &str = "rcvm-t-";

#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `rcvm-t-<pid>-<n>-<tag>`.
    pub fn create(tag: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("{PREFIX}{}-{n}-{tag}", std::process::id());
        run_checked(Command::new("ip").args(["netns", "add", &name]));
        let netns = Self { name };
        netns.ip("link set lo up");
        netns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// `ip -n NAME ARGS` (split on whitespace); panics with ip's message.
    pub fn ip(&self, args: &str) {
        run_checked(
            Command::new("ip")
                .arg("-n")
                .arg(&self.name)
                .args(args.split_whitespace()),
        );
    }

    /// Runs a shell script in the namespace (network only: the mount
    /// namespace, /sys included, stays the test's own).
    pub fn sh(&self, script: &str) -> Output {
        Command::new("nsenter")
            .arg(format!("--net={}", self.path().display()))
            .args(["sh", "-c", script])
            .output()
            .expect("nsenter runs")
    }

    /// As [`Self::sh`], panicking unless it succeeds.
    pub fn sh_checked(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "in {}: {script}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A command that runs in the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net={}", self.path().display()))
            .arg("--")
            .arg(program);
        command
    }

    /// Runs `f` on a thread that has joined the namespace.
    pub fn enter<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let path = self.path();
        std::thread::scope(|scope| {
            let worker = scope.spawn(move || {
                let file = File::open(&path).expect("open the namespace");
                // SAFETY: setns on a valid namespace descriptor affects only
                // this thread, which ends with the scope.
                let joined = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(
                    joined,
                    0,
                    "setns {}: {}",
                    path.display(),
                    std::io::Error::last_os_error()
                );
                f()
            });
            worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.name]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// The namespaces of this process's tests still present (should be none).
pub fn leftover_namespaces() -> Vec<String> {
    let mine = format!("{PREFIX}{}-", std::process::id());
    std::fs::read_dir("/run/netns")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&mine))
                .collect()
        })
        .unwrap_or_default()
}

fn run_checked(command: &mut Command) -> Output {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
