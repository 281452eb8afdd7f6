//! `fake-firecracker --config-file PATH --api-sock PATH`: a test double of
//! Firecracker's *process contract*, for the launcher's host-side tests on
//! machines without Firecracker or a KVM that boots guests. It runs no VM.
//!
//! What it does, in Firecracker's order:
//!
//! - takes exactly the two options runcvm passes; anything else is an
//!   argument error (`Error: ...` on stderr, exit 1, as Firecracker);
//! - reads the configuration file and checks what Firecracker itself
//!   requires: only known top-level keys; `boot-source` with a
//!   `kernel_image_path` that exists; a `drives` array whose entries have a
//!   `drive_id`, `is_root_device` and a `path_on_host` that exists;
//!   `machine-config` with `vcpu_count` (1 to 32) and `mem_size_mib` (runcvm
//!   always sends it; Firecracker would default it); `vsock`, if any, with
//!   `guest_cid` (3 or more) and a `uds_path` that does not exist yet (it
//!   binds it); `logger.log_path` and `metrics.metrics_path` that exist
//!   already (Firecracker opens them without creating them); closed objects.
//!   A violation is `Error: ...` on stderr and exit 1;
//! - appends a line to its log file, binds the vsock socket and the API
//!   socket (listeners that only exist, as Firecracker's would);
//! - prints a few kernel lines and guest init's handover line
//!   ([`runcvm_spec::CONSOLE_HANDOVER_LINE`]) on stdout, the serial console;
//! - plays guest init on the hybrid vsock: connects to `<uds_path>_1024`
//!   (where Firecracker hands over the guest's connection to the host's port
//!   1024), sends `Ready`, reads `Start`, sends `Exit`, hands the console
//!   back, and exits 0, as Firecracker does when the guest reboots with
//!   `reboot=k`. When guest init could not reach the launcher (no vsock, no
//!   listener, no `Start`), it prints init's error on the console and exits
//!   0 too: the guest rebooted.
//!
//! Driven by the environment:
//!
//! - `FAKE_FIRECRACKER_MODE`: `normal` (default); `never-connect` (prints
//!   the kernel's lines, then hangs like a kernel that never reaches init,
//!   until it is killed); `die` (after the checks, `Error: fake failure` on
//!   stderr and exit 1, before any console line).
//! - `FAKE_FIRECRACKER_EXIT`: the status guest init reports, `code:N` or
//!   `signal:N` (default `code:0`).
//! - `FAKE_FIRECRACKER_RECORD`: a file to write a JSON record to, for the
//!   test to assert on: `{"argv": [...], "config": "<the file's text>",
//!   "start": <the Start message received, or null>}`, written once the
//!   configuration has been read and again once `Start` has arrived.

use runcvm_proto::{ExitStatus, GuestMessage, HostMessage, PROTOCOL_VERSION};
use runcvm_spec::{CONSOLE_HANDBACK, CONSOLE_HANDOVER_LINE, CONTROL_VSOCK_PORT};
use serde_json::{Map, Value, json};
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

const MODE_ENV: &str = "FAKE_FIRECRACKER_MODE";
const EXIT_ENV: &str = "FAKE_FIRECRACKER_EXIT";
const RECORD_ENV: &str = "FAKE_FIRECRACKER_RECORD";

/// Firecracker's maximum vCPU count.
const MAX_VCPUS: u64 = 32;
/// The lowest context id a guest may have (0, 1 reserved; 2 the host).
const MIN_GUEST_CID: u64 = 3;

/// The top-level keys of Firecracker's configuration file
/// (`FullVmConfiguration`, v1.16).
const TOP_KEYS: &[&str] = &[
    "balloon",
    "boot-source",
    "cpu-config",
    "drives",
    "entropy",
    "logger",
    "machine-config",
    "memory-hotplug",
    "metrics",
    "mmds-config",
    "network-interfaces",
    "pmem",
    "vsock",
];
const BOOT_SOURCE_KEYS: &[&str] = &["kernel_image_path", "boot_args", "initrd_path"];
const DRIVE_KEYS: &[&str] = &[
    "drive_id",
    "partuuid",
    "is_root_device",
    "cache_type",
    "is_read_only",
    "path_on_host",
    "rate_limiter",
    "io_engine",
    "socket",
];
const MACHINE_KEYS: &[&str] = &[
    "vcpu_count",
    "mem_size_mib",
    "smt",
    "track_dirty_pages",
    "cpu_template",
    "huge_pages",
];
const VSOCK_KEYS: &[&str] = &["guest_cid", "uds_path", "vsock_id"];
const LOGGER_KEYS: &[&str] = &["log_path", "level", "show_level", "show_log_origin", "module"];
const METRICS_KEYS: &[&str] = &["metrics_path"];
const NIC_KEYS: &[&str] = &[
    "iface_id",
    "host_dev_name",
    "guest_mac",
    "mtu",
    "rx_rate_limiter",
    "tx_rate_limiter",
];

/// How the fake behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Normal,
    NeverConnect,
    Die,
}

/// What the rest of the run needs from a configuration that passed.
#[derive(Debug)]
struct Checked {
    boot_args: String,
    log_path: Option<PathBuf>,
    vsock_uds: Option<PathBuf>,
}

fn main() {
    if let Err(message) = run() {
        eprintln!("Error: {message}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    let (config_file, api_sock) = parse_args(&argv)?;
    let mode = mode()?;
    let status = exit_status()?;
    let text = std::fs::read_to_string(&config_file)
        .map_err(|e| format!("cannot read the configuration file {}: {e}", config_file.display()))?;
    let record = std::env::var_os(RECORD_ENV).map(PathBuf::from);
    let argv_text: Vec<String> = argv.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let write_record = |start: Value, create: Value| -> Result<(), String> {
        let Some(path) = &record else { return Ok(()) };
        let value = json!({ "argv": argv_text, "config": text, "start": start, "create": create });
        std::fs::write(path, value.to_string()).map_err(|e| format!("cannot write the record {}: {e}", path.display()))
    };
    write_record(Value::Null, Value::Null)?;
    let checked = check_config(&text)?;

    if let Some(log) = &checked.log_path {
        // Firecracker opens its log without creating it.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(log)
            .map_err(|e| format!("cannot open the log file {}: {e}", log.display()))?;
        writeln!(file, "[fake-firecracker:main] Running Firecracker (fake-firecracker)")
            .map_err(|e| format!("cannot write the log file {}: {e}", log.display()))?;
    }
    if mode == Mode::Die {
        return Err("fake failure".to_owned());
    }
    let _vsock = match &checked.vsock_uds {
        Some(uds) => Some(bind("vsock", uds)?),
        None => None,
    };
    let _api = bind("API", &api_sock)?;

    console(&format!(
        "[    0.000000] Linux version 6.1.0 (fake-firecracker) #1 SMP\n\
         [    0.000000] Command line: {}\n\
         [    0.012000] virtio_blk virtio0: [vda] disk\n\
         [    0.020000] Run /.runcvm/init as init process\n",
        checked.boot_args
    ));
    if mode == Mode::NeverConnect {
        // A guest that never reaches init: the launcher's boot watchdog
        // kills us.
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    console(&format!("\n{CONSOLE_HANDOVER_LINE}\n"));
    match play_guest_init(checked.vsock_uds.as_deref(), status, write_record) {
        Ok(()) => {}
        Err(e) => console(&format!("runcvm-init: ERROR {e}\n")),
    }
    console(&format!("{CONSOLE_HANDBACK}[    0.500000] reboot: Restarting system\n"));
    // The guest rebooted: with reboot=k, Firecracker exits 0.
    Ok(())
}

/// `--config-file PATH --api-sock PATH`, in either order, each once.
fn parse_args(argv: &[OsString]) -> Result<(PathBuf, PathBuf), String> {
    let mut config = None;
    let mut api = None;
    let mut args = argv.iter();
    while let Some(arg) = args.next() {
        let slot = match arg.to_str() {
            Some("--config-file") => &mut config,
            Some("--api-sock") => &mut api,
            _ => {
                return Err(format!(
                    "Arguments parsing error: Found argument '{}' which wasn't expected, or isn't valid in this context",
                    arg.to_string_lossy()
                ));
            }
        };
        let name = arg.to_string_lossy();
        if slot.is_some() {
            return Err(format!("Arguments parsing error: '{name}' was given more than once"));
        }
        let value = args
            .next()
            .ok_or_else(|| format!("Arguments parsing error: '{name}' needs a value"))?;
        *slot = Some(PathBuf::from(value));
    }
    match (config, api) {
        (Some(config), Some(api)) => Ok((config, api)),
        _ => Err("Arguments parsing error: fake-firecracker needs --config-file and --api-sock".to_owned()),
    }
}

fn mode() -> Result<Mode, String> {
    match std::env::var(MODE_ENV).as_deref() {
        Err(_) | Ok("" | "normal") => Ok(Mode::Normal),
        Ok("never-connect") => Ok(Mode::NeverConnect),
        Ok("die") => Ok(Mode::Die),
        Ok(other) => Err(format!("{MODE_ENV}={other}: not normal, never-connect or die")),
    }
}

fn exit_status() -> Result<ExitStatus, String> {
    let text = std::env::var(EXIT_ENV).unwrap_or_default();
    if text.is_empty() {
        return Ok(ExitStatus::Code(0));
    }
    let parsed = match text.split_once(':') {
        Some(("code", n)) => n.parse().ok().map(ExitStatus::Code),
        Some(("signal", n)) => n.parse().ok().map(ExitStatus::Signal),
        _ => None,
    };
    parsed.ok_or_else(|| format!("{EXIT_ENV}={text}: not code:N or signal:N"))
}

/// Checks the configuration as Firecracker would before it builds the VM.
fn check_config(text: &str) -> Result<Checked, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("the configuration file is not valid JSON: {e}"))?;
    let top = value.as_object().ok_or("the configuration file is not a JSON object")?;
    closed(top, TOP_KEYS, "the configuration")?;

    let boot = object(top.get("boot-source"), "boot-source")?;
    closed(boot, BOOT_SOURCE_KEYS, "boot-source")?;
    let kernel = string(boot, "kernel_image_path", "boot-source")?;
    exists(kernel, "boot-source.kernel_image_path")?;
    let boot_args = optional_string(boot, "boot_args", "boot-source")?
        .unwrap_or_default()
        .to_owned();

    let drives = top
        .get("drives")
        .ok_or("the configuration has no `drives`")?
        .as_array()
        .ok_or("`drives` is not an array")?;
    for (index, drive) in drives.iter().enumerate() {
        let what = format!("drives[{index}]");
        let drive = object(Some(drive), &what)?;
        closed(drive, DRIVE_KEYS, &what)?;
        string(drive, "drive_id", &what)?;
        boolean(drive, "is_root_device", &what)?;
        if drive.contains_key("is_read_only") {
            boolean(drive, "is_read_only", &what)?;
        }
        let path = string(drive, "path_on_host", &what)?;
        exists(path, &format!("{what}.path_on_host"))?;
    }

    let machine = object(top.get("machine-config"), "machine-config")?;
    closed(machine, MACHINE_KEYS, "machine-config")?;
    let vcpus = integer(machine, "vcpu_count", "machine-config")?;
    if !(1..=MAX_VCPUS).contains(&vcpus) {
        return Err(format!("machine-config.vcpu_count {vcpus} is outside 1 to {MAX_VCPUS}"));
    }
    if integer(machine, "mem_size_mib", "machine-config")? == 0 {
        return Err("machine-config.mem_size_mib is 0".to_owned());
    }

    if let Some(nics) = top.get("network-interfaces") {
        for (index, nic) in nics
            .as_array()
            .ok_or("`network-interfaces` is not an array")?
            .iter()
            .enumerate()
        {
            let what = format!("network-interfaces[{index}]");
            let nic = object(Some(nic), &what)?;
            closed(nic, NIC_KEYS, &what)?;
            string(nic, "iface_id", &what)?;
            string(nic, "host_dev_name", &what)?;
        }
    }

    let vsock_uds = match top.get("vsock") {
        None => None,
        Some(vsock) => {
            let vsock = object(Some(vsock), "vsock")?;
            closed(vsock, VSOCK_KEYS, "vsock")?;
            let cid = integer(vsock, "guest_cid", "vsock")?;
            if cid < MIN_GUEST_CID {
                return Err(format!(
                    "vsock.guest_cid {cid} is reserved (a guest has {MIN_GUEST_CID} or more)"
                ));
            }
            Some(PathBuf::from(string(vsock, "uds_path", "vsock")?))
        }
    };

    let log_path = match top.get("logger") {
        None => None,
        Some(logger) => {
            let logger = object(Some(logger), "logger")?;
            closed(logger, LOGGER_KEYS, "logger")?;
            optional_string(logger, "log_path", "logger")?.map(PathBuf::from)
        }
    };
    if let Some(path) = &log_path {
        exists_to_open(path, "logger.log_path")?;
    }
    if let Some(metrics) = top.get("metrics") {
        let metrics = object(Some(metrics), "metrics")?;
        closed(metrics, METRICS_KEYS, "metrics")?;
        exists_to_open(
            Path::new(string(metrics, "metrics_path", "metrics")?),
            "metrics.metrics_path",
        )?;
    }
    Ok(Checked {
        boot_args,
        log_path,
        vsock_uds,
    })
}

fn object<'a>(value: Option<&'a Value>, what: &str) -> Result<&'a Map<String, Value>, String> {
    let value = value.ok_or_else(|| format!("the configuration has no `{what}`"))?;
    value.as_object().ok_or_else(|| format!("`{what}` is not an object"))
}

/// Firecracker's structs refuse unknown fields.
fn closed(object: &Map<String, Value>, known: &[&str], what: &str) -> Result<(), String> {
    match object.keys().find(|key| !known.contains(&key.as_str())) {
        Some(key) => Err(format!("unknown field `{key}` in {what}")),
        None => Ok(()),
    }
}

fn string<'a>(object: &'a Map<String, Value>, key: &str, what: &str) -> Result<&'a str, String> {
    optional_string(object, key, what)?.ok_or_else(|| format!("{what} has no `{key}`"))
}

fn optional_string<'a>(object: &'a Map<String, Value>, key: &str, what: &str) -> Result<Option<&'a str>, String> {
    match object.get(key) {
        None => Ok(None),
        Some(value) => value
            .as_str()
            .map(Some)
            .ok_or_else(|| format!("{what}.{key} is not a string")),
    }
}

fn integer(object: &Map<String, Value>, key: &str, what: &str) -> Result<u64, String> {
    object
        .get(key)
        .ok_or_else(|| format!("{what} has no `{key}`"))?
        .as_u64()
        .ok_or_else(|| format!("{what}.{key} is not an unsigned integer"))
}

fn boolean(object: &Map<String, Value>, key: &str, what: &str) -> Result<bool, String> {
    object
        .get(key)
        .ok_or_else(|| format!("{what} has no `{key}`"))?
        .as_bool()
        .ok_or_else(|| format!("{what}.{key} is not a boolean"))
}

fn exists(path: &str, what: &str) -> Result<(), String> {
    std::fs::metadata(path)
        .map(drop)
        .map_err(|e| format!("{what} {path}: {e}"))
}

/// Firecracker opens its log and metrics files without creating them.
fn exists_to_open(path: &Path, what: &str) -> Result<(), String> {
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map(drop)
        .map_err(|e| {
            format!(
                "{what} {}: cannot open it ({e}); Firecracker does not create it",
                path.display()
            )
        })
}

/// Binds a socket Firecracker would serve; it must not exist yet.
fn bind(what: &str, path: &Path) -> Result<UnixListener, String> {
    UnixListener::bind(path).map_err(|e| format!("cannot bind the {what} socket {}: {e}", path.display()))
}

/// Writes to the serial console (stdout) at once.
fn console(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Guest init's side of the control channel: `Ready`, `Start`, `CreateContainer`,
/// `ContainerExit`, `PowerOff`.
fn play_guest_init(
    uds: Option<&Path>,
    status: ExitStatus,
    write_record: impl Fn(Value, Value) -> Result<(), String>,
) -> Result<(), String> {
    let uds = uds.ok_or_else(|| {
        format!("the VMM attached no control channel: no vsock connection to the host on port {CONTROL_VSOCK_PORT}")
    })?;
    // Firecracker connects the guest's connection to the host's port P to
    // `<uds_path>_P`.
    let mut path = uds.as_os_str().to_owned();
    path.push(format!("_{CONTROL_VSOCK_PORT}"));
    let path = PathBuf::from(path);
    let mut stream = UnixStream::connect(&path).map_err(|e| {
        format!(
            "no vsock connection to the host on port {CONTROL_VSOCK_PORT} ({}: {e})",
            path.display()
        )
    })?;
    runcvm_proto::write_message(
        &mut stream,
        &GuestMessage::Ready {
            version: PROTOCOL_VERSION,
        },
    )
    .map_err(|e| format!("cannot write to the control channel: {e}"))?;
    let mut receive = || -> Result<HostMessage, String> {
        runcvm_proto::read_message(&mut stream)
            .map_err(|e| format!("cannot read from the control channel: {e}"))?
            .ok_or_else(|| "the launcher closed the control channel".to_owned())
    };
    let start = receive()?;
    let create = receive()?;
    let as_json = |message: &HostMessage| serde_json::to_value(message).map_err(|e| e.to_string());
    write_record(as_json(&start)?, as_json(&create)?)?;
    if !matches!(start, HostMessage::Start { .. }) {
        return Err("the launcher did not answer Ready with Start".to_owned());
    }
    let HostMessage::CreateContainer { container, .. } = create else {
        return Err("the launcher did not create a container after Start".to_owned());
    };
    runcvm_proto::write_message(
        &mut stream,
        &GuestMessage::ContainerExit {
            container,
            status,
            oom_killed: false,
            files: Vec::new(),
        },
    )
    .map_err(|e| format!("cannot write to the control channel: {e}"))?;
    match runcvm_proto::read_message::<HostMessage>(&mut stream) {
        Ok(Some(HostMessage::PowerOff)) => Ok(()),
        other => Err(format!(
            "the launcher did not power the VM off once its container ended: {other:?}"
        )),
    }
}
