//! Prints pod start latency through CRI until the workload's first log
//! line, `runcvm` versus `runc`, on a private containerd node (the T3
//! harness) whose `runcvm` handler is a fresh `runcvm install` of the
//! binaries beside this example (same profile). Root only; a benchmark that
//! prints figures, not a test. `scripts/bench.sh` runs it.
//!
//! For each handler, on one node started for it, `BENCH_POD_RUNS` (default
//! 10) times: RunPodSandbox, then the clock starts just before
//! CreateContainer of a busybox `sh -c 'echo first; sleep 600'` and stops
//! when the CRI log file holds `first` (polled every 5 ms after
//! StartContainer returns); then a second container the same way in the
//! same, running pod (under runcvm: in the pod's VM, which is up); then
//! StopPodSandbox and RemovePodSandbox. RunPodSandbox, CreateContainer and
//! StartContainer are timed on their own too (containerd 1.6 runs the
//! runtime's `create`, so the state folder, inside StartContainer), and a
//! pod's start is RunPodSandbox's start to the first line (under runcvm
//! the pod's VM boots from RunPodSandbox on). For runcvm a second set of
//! runs sets `RUNCVM_LOG_LEVEL=DEBUG` in the container's env, whose log
//! then holds the pod launcher's lines: its host preparation and its VMM's
//! start to guest init's `Ready`. Then the same workload from a 600 MiB
//! image (busybox plus 600 files of 1 MiB that do not compress), runs
//! alternating with busybox ones on the same node, for each handler: a
//! container's start must not grow with its image (the ratio of medians).
//! Last, one runcvm pod whose container has a 256 MiB memory limit (its
//! VM of the default size: the two more containers it gets have none): the
//! guest's memory, the pod VM's cgroup (the sandbox's) and the container's,
//! and then the same with two more containers in the pod (one VM: the
//! memory of three containers against one).
//!
//! Everything (pods, node, temporary install) is removed on the way out,
//! also on errors; not on SIGINT or a panic in a release build
//! (`panic = "abort"`).

use anyhow::{Context, Result, anyhow, bail};
use runcvm_test_node::crilog::{self, LogLine, Stream};
use runcvm_test_node::{BUSYBOX_IMAGE, ContainerSpec, Cri, Image, Node, NodeOptions, RuntimeHandler};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The workload: one line, then it stays up.
const WORKLOAD: &str = "echo first; sleep 600";
/// How the first line looks in a CRI log file.
const FIRST_RECORD: &str = " stdout F first\n";
/// The launcher's component name in its log lines.
const LAUNCHER: &str = "runcvm-ctr-qemu-k8s";
const POLL: Duration = Duration::from_millis(5);
const FIRST_LINE_TIMEOUT: Duration = Duration::from_secs(180);
/// The large image: busybox and [`LARGE_IMAGE_MIB`] files of 1 MiB.
const LARGE_IMAGE: &str = "runcvm.test/large:1";
const LARGE_IMAGE_MIB: usize = 600;
/// The memory limit of the pod whose cgroup peak is measured.
const MEMORY_LIMIT_MIB: i64 = 256;
/// What the guest touches in the second memory reading.
const GUEST_TOUCH_MIB: u32 = 160;

fn main() {
    if let Err(e) = run() {
        eprintln!("pod_start_bench: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let missing = runcvm_test_node::tier::missing();
    if !missing.is_empty() {
        bail!(
            "a containerd node cannot run here; missing:\n  - {}\nRun scripts/test.sh as root once: it installs all of these.",
            missing.join("\n  - ")
        );
    }
    let runs: usize = match std::env::var("BENCH_POD_RUNS") {
        Ok(v) => v.parse().context("BENCH_POD_RUNS")?,
        Err(_) => 10,
    };
    if runs == 0 {
        bail!("BENCH_POD_RUNS must be at least 1");
    }
    let (binaries, profile) = binaries_folder()?;
    let scratch = tempfile::Builder::new()
        .prefix("rcvm-bench-install-")
        .tempdir()
        .context("a temporary folder for the install")?;
    let began = Instant::now();
    let root = scratch.path().join("opt-runcvm");
    let options = runcvm_install::InstallOptions {
        root: root.clone(),
        containerd_config: scratch.path().join("unused-containerd-config.toml"),
        binaries_from: Some(binaries.clone()),
        ..runcvm_install::InstallOptions::default()
    };
    runcvm_install::install(&options).map_err(|e| anyhow!("runcvm install: {}", runcvm_log::error_chain(&e)))?;
    eprintln!(
        "installed the {profile} binaries of {} into {} in {:.1} s",
        binaries.display(),
        root.display(),
        began.elapsed().as_secs_f64()
    );

    let large = large_image(scratch.path())?;
    let with_large = |options: NodeOptions| NodeOptions {
        images: vec![large.clone()],
        start_timeout: Duration::from_secs(600),
        ..options
    };
    let (runc, runc_sizes) = {
        let node = start_node(with_large(NodeOptions::default()))?;
        let runc = with_log_tail(&node, measure(&node, "runc", runs, false))?;
        let sizes = with_log_tail(&node, measure_sizes(&node, "runc", runs))?;
        (runc, sizes)
    };
    let (runcvm, debug, memory, runcvm_sizes) = {
        let handler = RuntimeHandler::new("runcvm", root.join("bin/runcvm-runtime"));
        let node = start_node(with_large(NodeOptions::default().runtime(handler)))?;
        let runcvm = with_log_tail(&node, measure(&node, "runcvm", runs, false))?;
        let debug = with_log_tail(&node, measure(&node, "runcvm", runs, true))?;
        let sizes = with_log_tail(&node, measure_sizes(&node, "runcvm", runs))?;
        let memory = with_log_tail(&node, memory_pod(&node))?;
        (runcvm, debug, memory, sizes)
    };
    report(&profile, runs, &runc, &runcvm, &debug, &memory);
    report_sizes(&[("runc", &runc_sizes), ("runcvm", &runcvm_sizes)]);
    drop(scratch);
    Ok(())
}

/// The folder holding `runcvm`, `runcvm-runtime` and `runcvm-init` of this
/// example's profile (examples are in `target/<triple>/<profile>/examples`),
/// and the profile's name.
fn binaries_folder() -> Result<(PathBuf, String)> {
    let exe = std::env::current_exe().context("the example's own path")?;
    let folder = exe
        .parent()
        .and_then(Path::parent)
        .with_context(|| format!("no target folder above {}", exe.display()))?
        .to_owned();
    let profile = folder
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let flag = if profile == "release" { " --release" } else { "" };
    for name in ["runcvm", "runcvm-runtime", "runcvm-init"] {
        if !folder.join(name).is_file() {
            bail!(
                "{} is missing: the benchmark installs the {profile} binaries beside it; run `cargo build --workspace{flag}` first",
                folder.join(name).display()
            );
        }
    }
    Ok((folder, profile))
}

fn start_node(options: NodeOptions) -> Result<Node> {
    // containerd at info: its debug log would add work to every CRI call.
    let options = NodeOptions {
        log_level: "info".to_owned(),
        ..options
    };
    let node = Node::start(options).context("starting the containerd node")?;
    eprintln!(
        "node up in {:.1} s",
        node.start_time().unwrap_or_default().as_secs_f64()
    );
    Ok(node)
}

fn with_log_tail<T>(node: &Node, result: Result<T>) -> Result<T> {
    result.with_context(|| format!("containerd log ({}):\n{}", node.log_path().display(), node.log_tail(30)))
}

/// One pod's timings, in seconds.
#[derive(Debug, Default, Clone)]
struct Sample {
    sandbox: f64,
    create: f64,
    start: f64,
    /// CreateContainer's start to the first line seen in the log file.
    first_line: f64,
    /// The same for a second container in the running pod.
    second: f64,
    /// From the DEBUG lines, if the run had them.
    boot: Option<Boot>,
    /// The runtime's acceleration verdict (runcvm only).
    accel: Option<String>,
}

/// The pod launcher's own figures, from a DEBUG run's log, seconds.
#[derive(Debug, Default, Clone, Copy)]
struct Boot {
    /// Host preparation, and the VMM's start to guest init's `Ready`.
    preparation: f64,
    vmm_to_ready: f64,
}

/// The large image's rootfs: busybox, and data that no layer compression
/// shrinks (a xorshift stream), so the image is as large on disk as named.
fn large_image(scratch: &Path) -> Result<Image> {
    let rootfs =
        runcvm_test_infra::busybox_rootfs(&scratch.join("large-rootfs")).context("the large image's rootfs")?;
    let data = rootfs.join("data");
    std::fs::create_dir_all(&data)?;
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut block = vec![0u8; 1 << 20];
    for i in 0..LARGE_IMAGE_MIB {
        for chunk in block.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        std::fs::write(data.join(format!("f{i:03}")), &block)?;
    }
    Ok(Image::new(LARGE_IMAGE, rootfs).cmd(["/bin/sh"]))
}

/// Busybox and large-image pods, alternating, `runs` of each (at least 3).
fn measure_sizes(node: &Node, handler: &str, runs: usize) -> Result<[Vec<f64>; 2]> {
    let cri = node.cri()?;
    let mut firsts = [Vec::new(), Vec::new()];
    for i in 0..runs.max(3) {
        for (slot, image) in [BUSYBOX_IMAGE, LARGE_IMAGE].into_iter().enumerate() {
            let name = format!("{handler}-size{slot}-{i}");
            let pod = cri.run_pod_sandbox(&node.pod(&name).runtime_handler(handler))?;
            let result = time_container(cri, &pod, handler, "app", image, false);
            let stopped = cri
                .stop_pod_sandbox(&pod.id)
                .and_then(|()| cri.remove_pod_sandbox(&pod.id));
            let sample = result.with_context(|| format!("{handler} {image} run {i}"))?;
            stopped?;
            eprintln!(
                "{handler} {image} run {}: first line after {:.0} ms",
                i + 1,
                sample.first_line * 1000.0
            );
            firsts[slot].push(sample.first_line);
        }
    }
    Ok(firsts)
}

fn report_sizes(handlers: &[(&str, &[Vec<f64>; 2])]) {
    println!("container start by image size (CreateContainer start to the first log line, alternating runs):");
    for (handler, [busybox, large]) in handlers {
        let small = row(&format!("{handler} busybox"), busybox.iter().copied());
        let big = row(&format!("{handler} {LARGE_IMAGE_MIB} MiB image"), large.iter().copied());
        println!(
            "  {handler}: {LARGE_IMAGE_MIB} MiB image / busybox ratio of medians: {:.2}x",
            big / small
        );
    }
}

fn measure(node: &Node, handler: &str, runs: usize, debug: bool) -> Result<Vec<Sample>> {
    let cri = node.cri()?;
    let tag = if debug { "debug" } else { "info" };
    let mut samples = Vec::new();
    for i in 0..runs {
        let sample = one_pod(node, cri, handler, &format!("{handler}-{tag}-{i}"), debug)
            .with_context(|| format!("{handler} run {i}{}", if debug { " (DEBUG)" } else { "" }))?;
        eprintln!(
            "{handler}{} run {}: first line after {:.0} ms",
            if debug { " DEBUG" } else { "" },
            i + 1,
            sample.first_line * 1000.0
        );
        samples.push(sample);
    }
    Ok(samples)
}

fn one_pod(node: &Node, cri: &Cri, handler: &str, name: &str, debug: bool) -> Result<Sample> {
    let pod_spec = node.pod(name).runtime_handler(handler);
    let t = Instant::now();
    let pod = cri.run_pod_sandbox(&pod_spec)?;
    let sandbox = t.elapsed().as_secs_f64();
    let result = time_container(cri, &pod, handler, "app", BUSYBOX_IMAGE, debug).and_then(|sample| {
        let second = time_container(cri, &pod, handler, "second", BUSYBOX_IMAGE, false)?;
        Ok(Sample {
            second: second.first_line,
            ..sample
        })
    });
    let stopped = cri
        .stop_pod_sandbox(&pod.id)
        .and_then(|()| cri.remove_pod_sandbox(&pod.id));
    let mut sample = result?;
    stopped?;
    sample.sandbox = sandbox;
    Ok(sample)
}

/// Times container `name` of `image` in `pod`, from CreateContainer to its
/// first line.
fn time_container(
    cri: &Cri,
    pod: &runcvm_test_node::Pod,
    handler: &str,
    name: &str,
    image: &str,
    debug: bool,
) -> Result<Sample> {
    let mut spec = ContainerSpec::new(name, image).shell(WORKLOAD);
    if debug {
        spec = spec.env("RUNCVM_LOG_LEVEL", "DEBUG");
    }
    let log = spec.log_file(pod.log_directory());
    let began = Instant::now();
    let id = cri.create_container(pod, &spec)?;
    let create = began.elapsed().as_secs_f64();
    cri.start_container(&id)?;
    let start = began.elapsed().as_secs_f64() - create;
    loop {
        if std::fs::read(&log).is_ok_and(|bytes| contains(&bytes, FIRST_RECORD.as_bytes())) {
            break;
        }
        if began.elapsed() > FIRST_LINE_TIMEOUT {
            bail!(
                "no `first` in {} after {FIRST_LINE_TIMEOUT:?}:\n{}",
                log.display(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(POLL);
    }
    let first_line = began.elapsed().as_secs_f64();
    let accel = (handler == "runcvm")
        .then(|| launch_file(&id).map(|l| l.accel.as_str().to_owned()))
        .transpose()?;
    let boot = if debug {
        let lines = crilog::read(&log)?;
        Some(boot_from_log(&lines).with_context(|| format!("reading the DEBUG lines of {}", log.display()))?)
    } else {
        None
    };
    Ok(Sample {
        create,
        start,
        first_line,
        boot,
        accel,
        ..Sample::default()
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The pod launcher's host preparation and VMM-to-`Ready` lines, which a
/// container at DEBUG gets in its log (`FollowConsole`).
fn boot_from_log(lines: &[LogLine]) -> Result<Boot> {
    let (mut preparation, mut vmm_to_ready) = (None, None);
    for line in lines.iter().filter(|l| l.stream == Stream::Stderr) {
        let Some(message) = launcher_line(&line.line) else {
            continue;
        };
        if let Some(v) = number_after(message, "host preparation took ") {
            preparation = Some(v);
        }
        if let Some(v) = number_after(message, "guest init ready after ") {
            vmm_to_ready = Some(v);
        }
    }
    Ok(Boot {
        preparation: preparation.context("no `host preparation took` line")?,
        vmm_to_ready: vmm_to_ready.context("no `guest init ready after` line")?,
    })
}

/// `[   0.012345] runcvm-ctr-qemu-k8s DEBUG: MESSAGE` → MESSAGE.
fn launcher_line(line: &str) -> Option<&str> {
    let rest = line.strip_prefix('[')?;
    let (_, rest) = rest.split_once(']')?;
    let rest = rest.strip_prefix(' ')?.strip_prefix(LAUNCHER)?.strip_prefix(' ')?;
    Some(rest.split_once(": ").map_or(rest, |(_, m)| m))
}

fn number_after(text: &str, prefix: &str) -> Option<f64> {
    let rest = text.strip_prefix(prefix)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// A runcvm container's `launch.json` on the node.
fn launch_file(id: &str) -> Result<runcvm_spec::launch::ContainerLaunch> {
    let path = runcvm_runtime::settings::Settings::from_env()
        .state_dir()
        .join("containers")
        .join(id)
        .join(runcvm_spec::launch::LAUNCH_FILE);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    runcvm_spec::launch::ContainerLaunch::from_json(&bytes).with_context(|| format!("parsing {}", path.display()))
}

/// What the memory pod showed.
#[derive(Debug, Default)]
struct Memory {
    guest_mib: u32,
    guest_mem_total: String,
    accel: String,
    cgroup: PathBuf,
    version: &'static str,
    limit: Option<u64>,
    usage_idle: Option<u64>,
    peak_idle: Option<u64>,
    peak_touched: Option<u64>,
    touch_exit: i32,
    /// The container's own cgroup (its proxy) 3 s after its first line.
    proxy_idle: Option<u64>,
    /// With three containers: the pod VM's cgroup, and the proxies' sum.
    three_vm: Option<u64>,
    three_proxies: Option<u64>,
}

fn memory_pod(node: &Node) -> Result<Memory> {
    let cri = node.cri()?;
    // Two of its three containers have no limit, so kubelet gives the pod
    // no memory limit and the VM its default size.
    let pod = cri.run_pod_sandbox(&node.pod("runcvm-memory").runtime_handler("runcvm"))?;
    let result = measure_memory(cri, &pod);
    let stopped = cri
        .stop_pod_sandbox(&pod.id)
        .and_then(|()| cri.remove_pod_sandbox(&pod.id));
    let memory = result?;
    stopped?;
    Ok(memory)
}

fn measure_memory(cri: &Cri, pod: &runcvm_test_node::Pod) -> Result<Memory> {
    let started = |name: &str, limit: Option<i64>| -> Result<String> {
        let mut spec = ContainerSpec::new(name, BUSYBOX_IMAGE).shell(WORKLOAD);
        if let Some(limit) = limit {
            spec = spec.memory_limit(limit);
        }
        let log = spec.log_file(pod.log_directory());
        let id = cri.run_container(pod, &spec)?;
        let deadline = Instant::now() + FIRST_LINE_TIMEOUT;
        while !crilog::read(&log)?.iter().any(|l| l.line == "first") {
            if Instant::now() > deadline {
                bail!("container {name} of the memory pod printed no `first` in {FIRST_LINE_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(id)
    };
    let id = started("app", Some(MEMORY_LIMIT_MIB << 20))?;
    // Let the guest settle after its boot.
    std::thread::sleep(Duration::from_secs(3));
    // The pod's VM is its sandbox's: its memory is in the sandbox's cgroup.
    let launch = launch_file(&pod.id)?;
    let cgroup_of = |container: &str| -> Result<(PathBuf, &'static str)> {
        let pid = launcher_pid(container).with_context(|| format!("no `runcvm launch` process in {container}"))?;
        memory_cgroup(pid)
    };
    let (cgroup, version) = cgroup_of(&pod.id)?;
    let v1 = version == "v1";
    let read_in = |folder: &Path, file: &str| -> Option<u64> {
        std::fs::read_to_string(folder.join(file))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    };
    let (limit_file, usage_file, peak_file) = if v1 {
        (
            "memory.limit_in_bytes",
            "memory.usage_in_bytes",
            "memory.max_usage_in_bytes",
        )
    } else {
        ("memory.max", "memory.current", "memory.peak")
    };
    let mem_total = cri.exec_sync(&id, &["sh", "-c", "grep MemTotal /proc/meminfo"], 120)?;
    let (proxy, _) = cgroup_of(&id)?;
    let mut memory = Memory {
        guest_mib: launch.memory_mib,
        guest_mem_total: mem_total
            .stdout_text()
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" "),
        accel: launch.accel.as_str().to_owned(),
        version,
        limit: read_in(&proxy, limit_file),
        usage_idle: read_in(&cgroup, usage_file),
        peak_idle: read_in(&cgroup, peak_file),
        proxy_idle: read_in(&proxy, usage_file),
        ..Memory::default()
    };
    // Two more containers in the pod's VM.
    let more = [started("two", None)?, started("three", None)?];
    std::thread::sleep(Duration::from_secs(3));
    memory.three_vm = read_in(&cgroup, usage_file);
    let mut proxies = read_in(&proxy, usage_file);
    for other in &more {
        let (folder, _) = cgroup_of(other)?;
        proxies = proxies.zip(read_in(&folder, usage_file)).map(|(a, b)| a + b);
    }
    memory.three_proxies = proxies;
    // The guest touches most of its memory: busybox dd reads into a buffer
    // of that size.
    let touch = cri.exec_sync(
        &id,
        &[
            "sh",
            "-c",
            &format!("dd if=/dev/zero of=/dev/null bs={GUEST_TOUCH_MIB}M count=1 2>/dev/null"),
        ],
        300,
    )?;
    memory.touch_exit = touch.exit_code;
    memory.peak_touched = read_in(&cgroup, peak_file);
    memory.cgroup = cgroup;
    Ok(memory)
}

/// The pid of the container's launcher: in a cgroup naming the container,
/// running `… runcvm launch …`.
fn launcher_pid(id: &str) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cgroup.contains(id) && cmdline.contains("runcvm launch")
        })
}

/// The memory cgroup folder of `pid` and the hierarchy's version: v1's
/// `memory` controller if the process has one, else the v2 group.
fn memory_cgroup(pid: u32) -> Result<(PathBuf, &'static str)> {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).context("reading /proc/PID/cgroup")?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").context("reading mountinfo")?;
    let mut v2_path = None;
    for line in cgroups.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(hierarchy), Some(controllers), Some(path)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        if controllers.split(',').any(|c| c == "memory") {
            let (root, point) = cgroup_mount(&mountinfo, |fstype, options| {
                fstype == "cgroup" && options.split(',').any(|o| o == "memory")
            })
            .context("no v1 memory cgroup mount")?;
            return Ok((under_mount(&root, &point, path), "v1"));
        }
        if hierarchy == "0" && controllers.is_empty() {
            v2_path = Some(path.to_owned());
        }
    }
    let path = v2_path.context("the process has neither a v1 memory cgroup nor a v2 one")?;
    let (root, point) = cgroup_mount(&mountinfo, |fstype, _| fstype == "cgroup2").context("no cgroup2 mount")?;
    Ok((under_mount(&root, &point, &path), "v2"))
}

/// (root, mount point) of the first mount `matches` (fstype, super options).
fn cgroup_mount(mountinfo: &str, matches: impl Fn(&str, &str) -> bool) -> Option<(String, PathBuf)> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (root, point) = (left.get(3)?, left.get(4)?);
        let (fstype, options) = (right.first()?, right.get(2).copied().unwrap_or(""));
        matches(fstype, options).then(|| ((*root).to_owned(), PathBuf::from(point)))
    })
}

fn under_mount(root: &str, point: &Path, path: &str) -> PathBuf {
    let relative = if root == "/" {
        path
    } else {
        path.strip_prefix(root).unwrap_or(path)
    };
    point.join(relative.trim_start_matches('/'))
}

/// (median, min, max) in ms.
fn stats(seconds: impl IntoIterator<Item = f64>) -> Option<(f64, f64, f64)> {
    let mut ms: Vec<f64> = seconds.into_iter().map(|s| s * 1000.0).collect();
    if ms.is_empty() {
        return None;
    }
    ms.sort_by(f64::total_cmp);
    let n = ms.len();
    let median = if n % 2 == 1 {
        ms[n / 2]
    } else {
        (ms[n / 2 - 1] + ms[n / 2]) / 2.0
    };
    Some((median, ms[0], ms[n - 1]))
}

fn row(label: &str, seconds: impl IntoIterator<Item = f64>) -> f64 {
    match stats(seconds) {
        Some((median, min, max)) => {
            println!("  {label:<46} {median:>9.1} {min:>9.1} {max:>9.1}");
            median
        }
        None => {
            println!("  {label:<46} {:>9}", "-");
            f64::NAN
        }
    }
}

fn mib(bytes: Option<u64>) -> String {
    // A v1 "unlimited" limit is near u64::MAX; MiB as f64 is exact enough.
    bytes.map_or("not available".to_owned(), |b| {
        format!("{:.1} MiB", b as f64 / 1_048_576.0)
    })
}

fn report(profile: &str, runs: usize, runc: &[Sample], runcvm: &[Sample], debug: &[Sample], memory: &Memory) {
    let accel: Vec<&str> = runcvm.iter().chain(debug).filter_map(|s| s.accel.as_deref()).collect();
    let accel = match accel.first() {
        Some(first) if accel.iter().all(|a| a == first) => (*first).to_owned(),
        _ => accel.join(","),
    };
    println!();
    println!(
        "pod start through CRI, {profile} build, {runs} runs per handler, acceleration {accel} \
         (busybox `sh -c '{WORKLOAD}'`)"
    );
    println!("  {:<46} {:>9} {:>9} {:>9}", "ms", "median", "min", "max");
    println!("pod start: RunPodSandbox start to the first log line:");
    let runc_pod = row("runc", runc.iter().map(|s| s.sandbox + s.first_line));
    let runcvm_pod = row("runcvm", runcvm.iter().map(|s| s.sandbox + s.first_line));
    println!("  runcvm/runc ratio of medians: {:.1}x", runcvm_pod / runc_pod);
    println!("CreateContainer start to the first log line:");
    let runc_median = row("runc", runc.iter().map(|s| s.first_line));
    let runcvm_median = row("runcvm", runcvm.iter().map(|s| s.first_line));
    println!("  runcvm/runc ratio of medians: {:.1}x", runcvm_median / runc_median);
    println!("a second container in the running pod, CreateContainer start to its first line:");
    let runc_second = row("runc", runc.iter().map(|s| s.second));
    let runcvm_second = row("runcvm", runcvm.iter().map(|s| s.second));
    println!("  runcvm/runc ratio of medians: {:.1}x", runcvm_second / runc_second);
    println!("per CRI call:");
    row("runc   RunPodSandbox", runc.iter().map(|s| s.sandbox));
    row("runc   CreateContainer", runc.iter().map(|s| s.create));
    row("runc   StartContainer", runc.iter().map(|s| s.start));
    row("runcvm RunPodSandbox", runcvm.iter().map(|s| s.sandbox));
    row("runcvm CreateContainer", runcvm.iter().map(|s| s.create));
    row("runcvm StartContainer (runtime create)", runcvm.iter().map(|s| s.start));
    println!("runcvm with RUNCVM_LOG_LEVEL=DEBUG ({runs} more runs; the pod launcher's own lines):");
    let boots: Vec<Boot> = debug.iter().filter_map(|s| s.boot).collect();
    row(
        "CreateContainer start to the first line",
        debug.iter().map(|s| s.first_line),
    );
    row("  pod launcher: host preparation", boots.iter().map(|b| b.preparation));
    row("  VMM start to guest init ready", boots.iter().map(|b| b.vmm_to_ready));
    println!(
        "  cross-check, runcvm - runc medians (INFO runs): {:.1} ms",
        runcvm_median - runc_median
    );
    println!(
        "memory, one runcvm pod with a {MEMORY_LIMIT_MIB} MiB limit (cgroup {}, {}):",
        memory.version,
        memory.cgroup.display()
    );
    println!(
        "  guest memory setting: {} MiB (guest MemTotal {}), acceleration {}",
        memory.guest_mib, memory.guest_mem_total, memory.accel
    );
    println!(
        "  the container's cgroup (its launcher, the proxy): limit {}, usage 3 s after the first line {}",
        mib(memory.limit),
        mib(memory.proxy_idle)
    );
    println!(
        "  the pod VM's cgroup (the sandbox's) 3 s after the first line: {}, peak so far: {}",
        mib(memory.usage_idle),
        mib(memory.peak_idle)
    );
    let one = memory.usage_idle.zip(memory.proxy_idle).map(|(a, b)| a + b);
    let three = memory.three_vm.zip(memory.three_proxies).map(|(a, b)| a + b);
    println!(
        "  three containers: the pod VM's cgroup {}, the proxies' {}; pod total {} against one container's {}{}",
        mib(memory.three_vm),
        mib(memory.three_proxies),
        mib(three),
        mib(one),
        match (one, three) {
            #[allow(clippy::cast_precision_loss)]
            (Some(one), Some(three)) if one > 0 => format!(" ({:.2}x)", three as f64 / one as f64),
            _ => String::new(),
        }
    );
    println!(
        "  the pod VM's cgroup peak after the guest touched {GUEST_TOUCH_MIB} MiB (dd exit {}): {}",
        memory.touch_exit,
        mib(memory.peak_touched)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launcher_lines_parse() {
        let message =
            launcher_line("[   0.012345] runcvm-ctr-qemu-k8s DEBUG: host preparation took 0.040 s").expect("line");
        assert_eq!(number_after(message, "host preparation took "), Some(0.040));
        assert!(launcher_line("[    0.000000] Linux version 6.1").is_none());
    }
}
