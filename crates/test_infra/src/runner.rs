//! Drives the `runcvm` binary as a user would, each run with its own state
//! folder so that what a run leaves behind can be checked.

use crate::T2;
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `runcvm` invocation.
#[derive(Debug)]
pub struct RuncvmRun {
    binary: PathBuf,
    state: tempfile::TempDir,
    env: Vec<(OsString, OsString)>,
    args: Vec<OsString>,
    timeout: Duration,
    /// Run inside this network namespace (a path under /run/netns).
    netns: Option<PathBuf>,
}

/// What a finished run produced.
#[derive(Debug)]
pub struct RunOutput {
    /// `None` if it died by a signal.
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub elapsed: Duration,
}

impl RunOutput {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Whether this test process runs the T2 suite on Firecracker
/// (`RUNCVM_T2_HYPERVISOR=firecracker`, set by `scripts/test.sh`).
pub fn on_firecracker() -> bool {
    std::env::var("RUNCVM_T2_HYPERVISOR").is_ok_and(|v| v == "firecracker")
}

impl RuncvmRun {
    /// `runcvm` with a fresh state folder and INFO, whatever the caller's
    /// environment says, on QEMU under TCG; with `RUNCVM_T2_HYPERVISOR=
    /// firecracker` in the test's environment, on Firecracker under KVM
    /// (`scripts/test.sh` runs the T2 suite so where Firecracker can run).
    pub fn new(t2: &T2) -> Self {
        let firecracker = std::env::var("RUNCVM_T2_HYPERVISOR").is_ok_and(|v| v == "firecracker");
        let (hypervisor, accel) = if firecracker {
            ("firecracker", "kvm")
        } else {
            ("qemu", "tcg")
        };
        Self {
            binary: t2.runcvm.clone(),
            state: tempfile::Builder::new()
                .prefix("runcvm-state-")
                .tempdir()
                .expect("temp state dir"),
            env: vec![
                ("RUNCVM_ACCEL".into(), accel.into()),
                ("RUNCVM_HYPERVISOR".into(), hypervisor.into()),
                ("RUNCVM_LOG_LEVEL".into(), "INFO".into()),
            ],
            args: Vec::new(),
            timeout: Duration::from_secs(120),
            netns: None,
        }
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env.retain(|(k, _)| k.as_os_str() != key.as_ref());
        self.env.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Runs runcvm inside `netns`, as the launcher runs inside a pod.
    pub fn in_netns(mut self, netns: &crate::Netns) -> Self {
        self.netns = Some(netns.path());
        self
    }

    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    pub fn command(&self) -> Command {
        // `--network pod` rewires the namespace it runs in: never the test
        // machine's own.
        let takes_network = self.args.windows(2).any(|w| w[0] == "--network" && w[1] == "pod");
        assert!(
            !takes_network || self.netns.is_some(),
            "--network pod must run in a test namespace (in_netns)"
        );
        let mut command = match &self.netns {
            Some(netns) => {
                let mut command = Command::new("nsenter");
                command
                    .arg(format!("--net={}", netns.display()))
                    .arg("--")
                    .arg(&self.binary);
                command
            }
            None => Command::new(&self.binary),
        };
        command.args(&self.args).env("RUNCVM_STATE_DIR", self.state.path());
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    pub fn spawn(&self) -> Child {
        self.command().spawn().expect("runcvm starts")
    }

    /// Runs to the end; kills the run and panics past the timeout.
    pub fn run(&self) -> RunOutput {
        let started = Instant::now();
        let mut child = self.spawn();
        let stdout = read_all(child.stdout.take());
        let stderr = read_all(child.stderr.take());
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for runcvm") {
                break status;
            }
            if started.elapsed() > self.timeout {
                let _ = child.kill();
                let _ = child.wait();
                panic!("runcvm {:?} did not finish within {:?}", self.args, self.timeout);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        RunOutput {
            code: status.code(),
            stdout: stdout.join().unwrap_or_default(),
            stderr: String::from_utf8_lossy(&stderr.join().unwrap_or_default()).into_owned(),
            elapsed: started.elapsed(),
        }
    }

    /// Panics if the run left a run folder, disk image or process behind.
    pub fn assert_nothing_left(&self) {
        let runs = self.state.path().join("runs");
        let leftovers: Vec<_> = std::fs::read_dir(&runs)
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(leftovers.is_empty(), "run folders left behind: {leftovers:?}");
        let gone = crate::wait_until(Duration::from_secs(5), || {
            crate::tier::process_mentioning(self.state.path()).is_none()
        });
        assert!(
            gone,
            "process left behind: {:?}",
            crate::tier::process_mentioning(self.state.path())
        );
    }
}

impl Drop for RuncvmRun {
    /// A test that fails half-way leaves nothing of its run running: every
    /// process whose environment names this run's state folder (`runcvm`,
    /// `runcvm exec` clients) or whose command line does (the VMM) is
    /// killed. After a test that stopped its run, there is none.
    fn drop(&mut self) {
        let state = self.state.path().as_os_str().as_encoded_bytes();
        let mut in_env = b"RUNCVM_STATE_DIR=".to_vec();
        in_env.extend_from_slice(state);
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<libc::pid_t>().ok()) else {
                continue;
            };
            let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let ours = environ.split(|b| *b == 0).any(|e| e == in_env.as_slice())
                || cmdline.windows(state.len()).any(|w| w == state);
            if ours {
                // SAFETY: kill has no memory preconditions; the pid was just
                // seen running with this run's state folder.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

fn read_all(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}
