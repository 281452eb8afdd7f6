//! The README's demo (`scripts/demo.sh` runs it, as root): a private
//! containerd 1.6 in its own network namespace, `runcvm install` of this
//! build registering the `runcvm` handler in its config, and a pod with
//! `runtimeClassName: runcvm` driven over CRI as kubelet drives it. It prints
//! the pod IP, the container's CRI log lines, an exec from inside the VM and
//! a connection to the pod IP; then it removes the pod and uninstalls.

use anyhow::{Context, Result, bail};
use runcvm_test_node::crilog;
use runcvm_test_node::{BUSYBOX_IMAGE, ContainerSpec, Node, NodeOptions, require_t3};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The demo's own install, so the node's /opt/runcvm is left alone.
const DEMO_ROOT: &str = "/var/lib/runcvm/demo/opt-runcvm";

fn main() {
    if let Err(e) = run() {
        eprintln!("demo failed: {e:#}");
        std::process::exit(1);
    }
}

/// The folder holding this build's `runcvm`, `runcvm-runtime` and
/// `runcvm-init` (examples live in `<profile>/examples/`).
fn build_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("cannot tell the build folder")?
        .to_owned();
    for binary in runcvm_install::BINARIES {
        if !dir.join(binary).is_file() {
            bail!(
                "{} is missing: build the binaries first (cargo build -p runcvm -p runcvm-runtime -p runcvm-guest)",
                dir.join(binary).display()
            );
        }
    }
    Ok(dir)
}

fn step(text: &str) {
    println!("\n==> {text}");
}

fn run() -> Result<()> {
    require_t3();
    let root = PathBuf::from(DEMO_ROOT);
    if root.join(runcvm_install::MANIFEST_NAME).exists() {
        // A demo that was interrupted: take its install off first.
        let _ = runcvm_install::uninstall(&runcvm_install::UninstallOptions {
            root: root.clone(),
            host_root_prefix: None,
        });
    }
    step("a private containerd node (its own network namespace, CNI bridge 10.88.91.0/24)");
    let mut node = Node::prepare(NodeOptions::default())?;
    let config = node.config_path().to_owned();

    step(&format!(
        "runcvm install --root {DEMO_ROOT} --containerd-config {}",
        config.display()
    ));
    let report = runcvm_install::install(&runcvm_install::InstallOptions {
        root: root.clone(),
        containerd_config: config.clone(),
        binaries_from: Some(build_dir()?),
        ..runcvm_install::InstallOptions::default()
    })
    .map_err(|e| anyhow::anyhow!(runcvm_log::error_chain(&e)))?;
    println!("{report}");
    let outcome = demo_pod(&mut node);

    step(&format!("runcvm uninstall --root {DEMO_ROOT}"));
    drop(node);
    let removed = runcvm_install::uninstall(&runcvm_install::UninstallOptions {
        root,
        host_root_prefix: None,
    });
    match removed {
        Ok(report) => println!("{report}"),
        Err(e) => println!("uninstall: {}", runcvm_log::error_chain(&e)),
    }
    outcome
}

fn demo_pod(node: &mut Node) -> Result<()> {
    node.launch()?;
    let cri = node.cri()?;
    println!("containerd's runtime handlers: {:?}", cri.runtime_handlers()?);

    step("RunPodSandbox (runtime handler runcvm)");
    let pod = cri.run_pod_sandbox(&node.pod("demo").runtime_handler("runcvm"))?;
    let ip = cri.pod_sandbox_status(&pod.id)?.ip;
    println!("pod {} has IP {ip}", &pod.id[..12]);

    step("CreateContainer + StartContainer (busybox; becomes a microVM)");
    let spec = ContainerSpec::new("app", BUSYBOX_IMAGE)
        .env("GREETING", "hello from a microVM")
        .memory_limit(256 << 20)
        .shell(
            "echo \"$GREETING: kernel $(uname -r)\"; ip -o -4 addr show eth0; echo 'a line on stderr' >&2; \
             echo ready; while true; do echo \"hello from $(hostname) in the VM\" | nc -l -p 8080; done",
        );
    let began = Instant::now();
    let id = cri.run_container(&pod, &spec)?;
    let log = spec.log_file(pod.log_directory());
    let lines = wait_for(&log, "ready", Duration::from_secs(60))?;
    println!(
        "first log lines after {:.1} s (CRI log {}):",
        began.elapsed().as_secs_f64(),
        log.display()
    );
    for line in &lines {
        println!("  {:?} {}", line.stream, line.line);
    }

    step("ExecSync: uname -r; id; cat /proc/1/comm (inside the VM)");
    let out = cri.exec_sync(&id, &["sh", "-c", "uname -r; id; cat /proc/1/comm"], 30)?;
    print!("{}", indent(&out.stdout_text()));
    println!(
        "  exit code {}; the node's kernel is {}",
        out.exit_code,
        std::fs::read_to_string("/proc/sys/kernel/osrelease")?.trim()
    );

    step(&format!("connect to the pod IP {ip}:8080 from the node"));
    let reply = node
        .netns()
        .context("the node's namespace")?
        .sh(&format!("busybox nc -w 5 {ip} 8080 </dev/null"));
    print!("{}", indent(&String::from_utf8_lossy(&reply.stdout)));

    step("StopContainer (grace 5 s), StopPodSandbox, RemovePodSandbox");
    cri.stop_container(&id, 5)?;
    let info = cri.container_status(&id)?;
    println!("  container exited with {} ({})", info.exit_code, info.reason);
    cri.stop_pod_sandbox(&pod.id)?;
    cri.remove_pod_sandbox(&pod.id)?;
    node.assert_nothing_left(&[&pod.id, &id]);
    println!("  nothing of the pod is left (processes, mounts, netns, state folder)");
    Ok(())
}

fn wait_for(log: &Path, line: &str, timeout: Duration) -> Result<Vec<crilog::LogLine>> {
    let deadline = Instant::now() + timeout;
    loop {
        let lines = crilog::read(log).unwrap_or_default();
        if lines.iter().any(|l| l.line == line) {
            return Ok(lines);
        }
        if Instant::now() > deadline {
            bail!("no {line:?} in {} after {timeout:?}: {lines:?}", log.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}
