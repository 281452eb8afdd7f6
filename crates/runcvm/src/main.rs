//! The `runcvm` command line: thin wrappers over the library.

use clap::{Parser, Subcommand};
use runcvm::run::RunRequest;
use runcvm_spec::{ByteString, Entrypoint, LaunchPlan};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// Run container root filesystems as microVMs.
#[derive(Debug, Parser)]
#[command(name = "runcvm", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Boot ROOTFS_DIR as a VM, run CMD in it, and exit with its status.
    ///
    /// The workload's stdout and stderr are runcvm's; the guest's console
    /// (kernel and init lines) goes to stderr. runcvm's own failures exit
    /// 125.
    Run(RunArgs),
    /// Run CMD in the VM of a running `runcvm run` (TARGET: its pid or run
    /// folder). A leading `---` runs the rest here instead, outside the VM.
    Exec(ExecArgs),
    /// Create one more container in the VM of a running `runcvm run
    /// --network pod` (TARGET: its pid or run folder), ROOTFS_DIR as its
    /// root, served from here over NFS; run CMD in it and exit with its
    /// status. Run it in the same network namespace.
    Attach(AttachArgs),
    /// List a root disk's /.runcvm and show its entrypoint and launch plan,
    /// without booting. TARGET: an image, a folder holding disk.ext4, or a
    /// Kubernetes container id.
    Inspect { target: String },
    /// Say what this host gives runcvm (kernel, QEMU, KVM, Firecracker)
    /// and which VMM a run would use, and why.
    Doctor,
    /// Put runcvm on this node (binaries, kernel, a QEMU that runs in any
    /// image) and register containerd's `runcvm` handler. Idempotent.
    Install(InstallArgs),
    /// Remove exactly what `runcvm install` added, containerd's config
    /// included.
    Uninstall(UninstallArgs),
    /// The launcher of a Kubernetes container (`runcvm-runtime` makes it the
    /// container's process): boot the VM prepared in STATE_DIR.
    #[command(hide = true)]
    Launch {
        /// The container's state folder, as the container sees it.
        #[arg(default_value = runcvm_spec::launch::CONTAINER_STATE_DIR)]
        state_dir: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct InstallArgs {
    /// The install root.
    #[arg(long, default_value = runcvm_install::DEFAULT_ROOT)]
    root: PathBuf,
    /// containerd's main config; created if missing.
    #[arg(long, default_value = runcvm_install::DEFAULT_CONTAINERD_CONFIG)]
    containerd_config: PathBuf,
    /// The folder holding runcvm, runcvm-runtime and runcvm-init [default:
    /// the folder of this runcvm].
    #[arg(long)]
    from: Option<PathBuf>,
    /// The guest kernel.
    #[arg(long, default_value = runcvm_install::DEFAULT_KERNEL)]
    kernel: PathBuf,
    /// Debian's full qemu-system-x86_64 [default: on PATH].
    #[arg(long)]
    qemu: Option<PathBuf>,
    /// Firecracker's static release binary, installed as bin/firecracker:
    /// then runcvm runs VMs on Firecracker where KVM boots guests.
    #[arg(long)]
    firecracker: Option<PathBuf>,
    /// Where the node's / is mounted for this process (an installer pod's
    /// `/host`): the paths written for containerd are the node's.
    #[arg(long)]
    host_root_prefix: Option<PathBuf>,
    /// The VMM of every pod on this node: auto (Firecracker where it is
    /// installed and KVM boots guests, else QEMU), firecracker or qemu.
    /// Pods cannot choose it.
    #[arg(long, default_value = "auto", value_parser = parse_hypervisor_setting)]
    hypervisor: runcvm_install::settings::HypervisorSetting,
    /// A word appended to every pod's guest kernel command line
    /// (repeatable); pods cannot add any.
    #[arg(long = "kernel-arg", value_name = "WORD")]
    kernel_args: Vec<String>,
    /// The unprivileged user and group every VMM runs as: ids no user or
    /// group of the node has [default: 65520:65520].
    #[arg(long, value_name = "UID:GID", value_parser = parse_vmm_user)]
    vmm_user: Option<runcvm_spec::VmmUser>,
}

fn parse_vmm_user(value: &str) -> Result<runcvm_spec::VmmUser, String> {
    let ids = value
        .split_once(':')
        .and_then(|(uid, gid)| Some((uid.parse().ok()?, gid.parse().ok()?)));
    match ids {
        Some((0, _) | (_, 0)) => Err("the VMM must not run as root (0)".to_owned()),
        Some((uid, gid)) => Ok(runcvm_spec::VmmUser { uid, gid }),
        None => Err(format!("{value:?} is not UID:GID (two whole numbers)")),
    }
}

fn parse_hypervisor_setting(value: &str) -> Result<runcvm_install::settings::HypervisorSetting, String> {
    value
        .parse()
        .map_err(|e: runcvm_install::settings::SettingsError| e.to_string())
}

#[derive(Debug, clap::Args)]
struct UninstallArgs {
    /// The install root.
    #[arg(long, default_value = runcvm_install::DEFAULT_ROOT)]
    root: PathBuf,
    /// As for install.
    #[arg(long)]
    host_root_prefix: Option<PathBuf>,
}

fn run_install(args: InstallArgs) -> i32 {
    let options = runcvm_install::InstallOptions {
        root: args.root,
        containerd_config: args.containerd_config,
        binaries_from: args.from,
        kernel: args.kernel,
        qemu: args.qemu,
        firecracker: args.firecracker,
        host_root_prefix: args.host_root_prefix,
        settings: runcvm_install::settings::NodeSettings {
            hypervisor: args.hypervisor,
            kernel_args: args.kernel_args,
            vmm_user: args.vmm_user.unwrap_or_default(),
        },
        ..runcvm_install::InstallOptions::default()
    };
    report(runcvm_install::install(&options))
}

fn run_uninstall(args: UninstallArgs) -> i32 {
    report(runcvm_install::uninstall(&runcvm_install::UninstallOptions {
        root: args.root,
        host_root_prefix: args.host_root_prefix,
    }))
}

/// Prints an install's or uninstall's report, or logs why it failed.
fn report(outcome: Result<impl std::fmt::Display, runcvm_install::InstallError>) -> i32 {
    match outcome {
        Ok(report) => {
            println!("{report}");
            0
        }
        Err(e) => {
            runcvm_log::error!("{}", runcvm::error_chain(&e));
            runcvm::RUNTIME_FAILURE
        }
    }
}

/// How the process in the guest runs: the flags `run` and `exec` share.
#[derive(Debug, clap::Args)]
struct ProcessArgs {
    /// Set an environment variable (repeatable); PATH has a default.
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE")]
    env: Vec<OsString>,
    /// Working directory in the guest.
    #[arg(long, short = 'w', value_name = "DIR", default_value = "/")]
    workdir: OsString,
    /// Numeric user and group to run as.
    #[arg(long, short = 'u', value_name = "UID[:GID]", value_parser = parse_user)]
    user: Option<(u32, u32)>,
    /// Supplementary group ids (repeatable).
    #[arg(long = "group-add", value_name = "GID")]
    group_add: Vec<u32>,
}

impl ProcessArgs {
    /// The process: `command` with these settings.
    fn entrypoint(&self, command: &[OsString]) -> Result<Entrypoint, String> {
        let env = with_default_path(&self.env)?;
        let mut process = Entrypoint::new(command.iter().cloned().map(ByteString::from).collect(), env);
        process.cwd = self.workdir.clone().into();
        if let Some((uid, gid)) = self.user {
            process.uid = uid;
            process.gid = gid;
        }
        process.additional_gids.clone_from(&self.group_add);
        Ok(process)
    }
}

#[derive(Debug, clap::Args)]
struct ExecArgs {
    /// Pass this process's stdin to CMD.
    #[arg(long, short = 'i')]
    interactive: bool,
    /// Give CMD a terminal in the guest.
    #[arg(long, short = 't')]
    tty: bool,
    /// CMD gets this process's whole environment (instead of `--env`): how
    /// `runcvm-runtime` passes a Kubernetes exec's env, which may hold
    /// secrets, without putting it on a command line.
    #[arg(long, conflicts_with = "env")]
    inherit_env: bool,
    /// CMD gains nothing from set-user-ID binaries or file capabilities in
    /// the guest (the container's `noNewPrivileges`).
    #[arg(long)]
    no_new_privileges: bool,
    /// One capability set of CMD in the guest, `SET=CAP_A,CAP_B` (SET is
    /// bounding, effective, permitted, inheritable or ambient; a set not
    /// given is empty). Without any, CMD has what guest init has (every
    /// capability, as root). `runcvm-runtime` always passes the exec's sets,
    /// or the container's.
    #[arg(long = "caps", value_name = "SET=CAPS")]
    capabilities: Vec<String>,
    /// With `--inherit-env`: leave out `HOME` (runc sets it for the client,
    /// root, when the exec's env has none; the guest's user is another).
    #[arg(long, requires = "inherit_env")]
    no_home: bool,
    /// Refuse `---`: the container runs in a user namespace of its own in
    /// the guest, whose ids mean nothing beside the launcher, where `---`
    /// would run CMD as the node's ids (`runcvm-runtime` passes it for a
    /// pod with `hostUsers: false`).
    #[arg(long)]
    no_outside: bool,
    /// Run CMD in the container `runcvm attach --name NAME` added, rather
    /// than the VM's first.
    #[arg(long, value_name = "NAME")]
    container: Option<String>,
    #[command(flatten)]
    process: ProcessArgs,
    /// The `runcvm run` to exec into: its pid or run folder.
    target: String,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// The process an exec runs, from its flags.
fn exec_process(args: &ExecArgs, command: &[OsString]) -> Result<Entrypoint, String> {
    let mut process = args.process.entrypoint(command)?;
    if args.inherit_env {
        let inherited: Vec<OsString> = std::env::vars_os()
            .filter(|(key, _)| !(args.no_home && key == "HOME"))
            .map(|(key, value)| {
                let mut entry = key;
                entry.push("=");
                entry.push(value);
                entry
            })
            .collect();
        process.env = with_default_path(&inherited)?;
    }
    process.terminal = args.tty;
    process.no_new_privileges = args.no_new_privileges;
    if !args.capabilities.is_empty() {
        let mut capabilities = runcvm_spec::ProcessCapabilities::default();
        for flag in &args.capabilities {
            capabilities.set_from_flag(flag)?;
        }
        process.capabilities = Some(capabilities);
    }
    process.validate().map_err(|e| e.to_string())?;
    Ok(process)
}

/// `---`: the command runs in the container, as the user `-u` and
/// `--group-add` name (the workload's, in Kubernetes), and never with the
/// capability the launcher alone needs.
fn beside_the_launcher(program: &OsString, rest: &[OsString], process: &ProcessArgs) -> std::process::Command {
    use runcvm_caps::sys;
    use std::os::unix::process::CommandExt;
    let launchers = runcvm_caps::capability_number(runcvm_spec::oci::LAUNCHER_CAPABILITY).map_or(0, |n| 1u64 << n);
    let mut command = std::process::Command::new(program);
    command.args(rest);
    let user = process.user;
    let groups: Vec<libc::gid_t> = process.group_add.clone();
    // SAFETY: prctl, setgroups, setgid and setuid are async-signal-safe and
    // change only the child; `groups` outlives the call it is read in.
    unsafe {
        command.pre_exec(move || {
            let failed = std::io::Error::from_raw_os_error;
            // No set-user-ID binary or file capability raises anything
            // again, and nothing ambient carries over.
            sys::set_no_new_privileges().map_err(failed)?;
            sys::clear_ambient().map_err(failed)?;
            // Out of the bounding set before the user changes (that needs
            // the launcher's privileges), so not even a root command gets
            // it back. Not permitted: a caller without CAP_SETPCAP, which
            // cannot pass the capability on either.
            match sys::drop_from_bounding(!launchers) {
                Ok(()) | Err(libc::EPERM) => {}
                Err(e) => return Err(failed(e)),
            }
            // Already the workload's user (an exec containerd started so):
            // nothing to switch, and no right to.
            let switch = user.is_some_and(|(uid, gid)| libc::getuid() != uid || libc::getgid() != gid);
            if let (true, Some((uid, gid))) = (switch, user) {
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    command
}

fn run_exec(args: &ExecArgs, settings: &runcvm::settings::Settings) -> i32 {
    // The escape hatch: `--- CMD` runs in the container (here), not the VM.
    if args.command.first().is_some_and(|a| a == "---") {
        if args.no_outside {
            runcvm_log::error!(
                "`---` is refused in a pod with a user namespace of its own (hostUsers: false): beside the launcher its \
                 ids would be the node's; use kubectl exec without `---`"
            );
            return runcvm::RUNTIME_FAILURE;
        }
        let Some((program, rest)) = args.command[1..].split_first() else {
            runcvm_log::error!("`---` needs a command after it");
            return runcvm::RUNTIME_FAILURE;
        };
        return match beside_the_launcher(program, rest, &args.process).status() {
            Ok(status) => status
                .code()
                .unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)),
            Err(e) => {
                runcvm_log::error!("cannot run {program:?} outside the VM: {e}");
                if e.kind() == std::io::ErrorKind::NotFound {
                    127
                } else {
                    126
                }
            }
        };
    }
    let process = match exec_process(args, &args.command) {
        Ok(process) => process,
        Err(message) => {
            runcvm_log::error!("{message}");
            return runcvm::RUNTIME_FAILURE;
        }
    };
    let outcome = runcvm::exec::locate_socket(&args.target, &settings.state_dir())
        .and_then(|socket| runcvm::exec::run_client(&socket, args.container.clone(), process, args.interactive));
    outcome.unwrap_or_else(|e| {
        runcvm_log::error!("{}", runcvm_log::error_chain(&e));
        runcvm::RUNTIME_FAILURE
    })
}

#[derive(Debug, clap::Args)]
struct AttachArgs {
    /// Pass this process's stdin to CMD.
    #[arg(long, short = 'i')]
    interactive: bool,
    /// Give CMD a terminal in the guest.
    #[arg(long, short = 't')]
    tty: bool,
    #[command(flatten)]
    process: ProcessArgs,
    /// The container's memory limit in MiB, held in the guest by its cgroup
    /// (over it, the guest's OOM killer ends a process of this container
    /// alone).
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..))]
    memory_limit: Option<u64>,
    /// Make the container's root read-only.
    #[arg(long)]
    read_only: bool,
    /// A name for the container, unique in the VM while it runs, by which
    /// `runcvm exec --container` finds it.
    #[arg(long)]
    name: Option<String>,
    /// Share a host folder at a container path over NFS, or copy a host
    /// file there (repeatable), as for `run`.
    #[arg(long = "volume", short = 'v', value_name = "HOST_PATH:CONTAINER_PATH[:ro]", value_parser = runcvm::volumes::parse_volume)]
    volumes: Vec<runcvm::volumes::VolumeSpec>,
    /// The `runcvm run` whose VM gets the container: its pid or run folder.
    target: String,
    /// The folder served as the container's root.
    rootfs: PathBuf,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

impl AttachArgs {
    fn into_request(self) -> Result<runcvm::attach::AttachRequest, String> {
        let mut entrypoint = self.process.entrypoint(&self.command)?;
        entrypoint.terminal = self.tty;
        entrypoint.validate().map_err(|e| e.to_string())?;
        Ok(runcvm::attach::AttachRequest {
            target: self.target,
            rootfs: self.rootfs,
            entrypoint,
            plan: LaunchPlan {
                read_only_root: self.read_only,
                memory_limit_bytes: self.memory_limit.map(|mib| mib << 20),
                ..LaunchPlan::default()
            },
            volumes: self.volumes,
            interactive: self.interactive,
            name: self.name,
            // A `runcvm run`'s VM: its console is its own process's.
            follow_console: false,
        })
    }
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Virtual CPUs [default: from the cgroup CPU quota, else 1].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    cpus: Option<u32>,
    /// Guest memory in MiB [default: the cgroup memory limit less 128 MiB,
    /// else 512].
    #[arg(long, value_parser = clap::value_parser!(u32).range(64..))]
    memory: Option<u32>,
    #[command(flatten)]
    process: ProcessArgs,
    /// Boot with no entrypoint: the guest logs `[VM-START] No entrypoint
    /// found, sleeping` and stays up until stopped (a debugging aid).
    #[arg(long, conflicts_with = "command")]
    no_entrypoint: bool,
    /// `none`: the VM has only lo. `pod`: it takes over the eth0 of the
    /// network namespace runcvm runs in (pod IP, MAC, routes, DNS files),
    /// as in a Kubernetes pod.
    #[arg(long, value_enum, default_value_t = NetworkMode::None)]
    network: NetworkMode,
    /// Share a host folder at a container path over NFS (needs `--network
    /// pod`), or copy a host file there at boot (repeatable). `:ro` makes a
    /// folder read-only; a copied file is the guest's own copy.
    #[arg(long = "volume", short = 'v', value_name = "HOST_PATH:CONTAINER_PATH[:ro]", value_parser = runcvm::volumes::parse_volume)]
    volumes: Vec<runcvm::volumes::VolumeSpec>,
    /// Give the workload a terminal in the guest (`process.terminal`).
    #[arg(long, short = 't')]
    tty: bool,
    /// Pass runcvm's stdin to the workload.
    #[arg(long, short = 'i')]
    interactive: bool,
    /// Hostname of the guest.
    #[arg(long)]
    hostname: Option<String>,
    /// Make the root file system read-only for the workload (volumes,
    /// `/tmp`, `/run` and `/dev/shm` stay writable).
    #[arg(long)]
    read_only: bool,
    /// Free space on the root disk beyond the rootfs, in MiB.
    #[arg(long, default_value_t = runcvm::guest_disk::DEFAULT_HEADROOM_MIB)]
    disk_headroom: u64,
    /// The folder holding the container's files.
    rootfs: PathBuf,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required_unless_present = "no_entrypoint", value_name = "CMD")]
    command: Vec<OsString>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum NetworkMode {
    None,
    Pod,
}

/// The environment from `--env`, with Docker's default `PATH` first unless
/// one is given.
fn with_default_path(given: &[OsString]) -> Result<Vec<ByteString>, String> {
    let mut env: Vec<ByteString> = Vec::new();
    if !given.iter().any(|e| e.as_bytes().starts_with(b"PATH=")) {
        env.push(DEFAULT_PATH.into());
    }
    for entry in given {
        if !entry.as_bytes().contains(&b'=') {
            return Err(format!("--env {entry:?} is not KEY=VALUE"));
        }
        env.push(entry.clone().into());
    }
    Ok(env)
}

/// Docker's default for images that set none.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn parse_user(value: &str) -> Result<(u32, u32), String> {
    let (uid, gid) = value.split_once(':').unwrap_or((value, "0"));
    let number = |part: &str| {
        part.parse::<u32>()
            .map_err(|_| format!("{value:?} is not UID[:GID] with numeric ids"))
    };
    Ok((number(uid)?, number(gid)?))
}

impl RunArgs {
    fn into_request(self) -> Result<RunRequest, String> {
        let mut entrypoint = self.process.entrypoint(&self.command)?;
        entrypoint.terminal = self.tty;
        if !self.no_entrypoint {
            entrypoint.validate().map_err(|e| e.to_string())?;
        }
        Ok(RunRequest {
            rootfs: self.rootfs,
            entrypoint: (!self.no_entrypoint).then_some(entrypoint),
            plan: LaunchPlan {
                hostname: self.hostname,
                read_only_root: self.read_only,
                ..LaunchPlan::default()
            },
            size: runcvm::resources::Overrides {
                cpus: self.cpus,
                memory_mib: self.memory,
            },
            headroom_mib: self.disk_headroom,
            pod_network: self.network == NetworkMode::Pod,
            interactive: self.interactive,
            volumes: self.volumes,
        })
    }
}

fn main() {
    // Usage errors are runcvm's own failures too: 125, not clap's 2.
    let cli = Cli::try_parse().unwrap_or_else(|e| {
        let _ = e.print();
        std::process::exit(if e.use_stderr() { runcvm::RUNTIME_FAILURE } else { 0 });
    });
    // Before any thread exists (parsing starts none), so every thread
    // inherits the mask and the VM supervisor alone takes the signals it
    // forwards. (`runcvm exec` keeps the default actions: Ctrl-C ends the
    // client.)
    // `runcvm attach` too: its NFS servers' threads start before it passes
    // its signals on, and none of them may take a SIGTERM's default action.
    if matches!(
        cli.command,
        Command::Run(_) | Command::Launch { .. } | Command::Attach(_)
    ) {
        runcvm::vm::block_forwarded_signals();
    }
    let level = match runcvm_log::LogLevel::from_env() {
        Ok(level) => level,
        Err(e) => {
            runcvm_log::error!("{e}");
            std::process::exit(runcvm::RUNTIME_FAILURE);
        }
    };
    // A launcher's log lines carry the VMM its launch file names: the file
    // is read once, here, before logging starts.
    let launch_file = match &cli.command {
        Command::Launch { state_dir } => Some(runcvm::launch::load(state_dir)),
        _ => None,
    };
    let name = match &launch_file {
        Some(Ok(launch)) => runcvm::launch::log_name(launch),
        Some(Err(_)) => runcvm::launch::LOG_NAME_QEMU,
        None => "runcvm",
    };
    runcvm_log::init(name, level);
    // Every RUNCVM_* setting, read once (`settings.rs`).
    let settings = runcvm::settings::Settings::from_env();
    let code = match cli.command {
        Command::Exec(args) => run_exec(&args, &settings),
        Command::Attach(args) => match args.into_request() {
            Ok(request) => runcvm::attach::attach(&request, &settings),
            Err(message) => {
                runcvm_log::error!("{message}");
                runcvm::RUNTIME_FAILURE
            }
        },
        Command::Inspect { target } => {
            let container = runcvm::inspect::container_launch(&target, &settings.state_dir());
            // A container's is the node's boot disk its VM boots.
            let image = match &container {
                Some(launch) => Ok(runcvm::inspect::boot_disk(launch)),
                None => runcvm::inspect::locate_image(&target, &settings.state_dir()),
            };
            let shown = image
                .and_then(|image| runcvm::inspect::report(&image, container.as_ref()))
                .map(|listing| {
                    let root = container.as_ref().and_then(runcvm::inspect::container_root);
                    listing + root.as_deref().unwrap_or_default()
                });
            match shown {
                Ok(text) => {
                    print!("{text}");
                    0
                }
                Err(e) => {
                    runcvm_log::error!("{}", runcvm_log::error_chain(&e));
                    runcvm::RUNTIME_FAILURE
                }
            }
        }
        Command::Doctor => {
            print!("{}", runcvm::doctor::report(&settings));
            0
        }
        Command::Install(args) => run_install(args),
        Command::Uninstall(args) => run_uninstall(args),
        Command::Launch { state_dir } => match launch_file {
            Some(Ok(launch)) => runcvm::launch::launch(&state_dir, &launch, &settings),
            Some(Err(e)) => {
                runcvm_log::error!("{}", runcvm_log::error_chain(&e));
                runcvm::RUNTIME_FAILURE
            }
            None => runcvm::RUNTIME_FAILURE,
        },
        Command::Run(args) => match args.into_request() {
            Ok(request) => runcvm::run::run(&request, &settings),
            Err(message) => {
                runcvm_log::error!("{message}");
                runcvm::RUNTIME_FAILURE
            }
        },
    };
    std::process::exit(code);
}
