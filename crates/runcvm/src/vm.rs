//! Runs one VM to its end: starts the VMM, shows its console, listens on the
//! control channel, enforces the boot watchdog, and turns what happened into
//! the workload's exit status or one clear error.

use crate::console::ConsoleFilter;
use crate::hub::{GuestWriter, SessionHub, send_guest as send};
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;
use runcvm_proto::{ExitStatus, Frame, GuestMessage, HostMessage, PROTOCOL_VERSION, WORKLOAD_SESSION};
use runcvm_vmm::Accel;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the VMM may take to exit once the guest has reported its status.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long messages still in flight are awaited once the VMM has exited.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// The signals the launcher takes: once the guest is running they go to the
/// workload in the guest, never to the VMM; before that, they stop the VM.
const FORWARDED_SIGNALS: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// Why a VM did not deliver the workload's exit status.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// the VMM could not be started
    #[error("cannot start {binary}: {hint}")]
    Spawn {
        binary: String,
        hint: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// the control socket could not be created
    #[error("cannot listen on the control socket {path}")]
    ControlSocket {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// the guest did not reach init in time
    #[error(
        "the VM did not reach guest init within {secs} s under {accel}{hint}\n\
         last console lines:\n{tail}"
    )]
    BootTimeout {
        secs: f64,
        accel: Accel,
        hint: &'static str,
        tail: String,
    },
    /// the VM stopped without reporting an exit status
    #[error(
        "the VM stopped ({vmm_status}) before the workload reported an exit status{said}{hint}\n\
         last console lines:\n{tail}"
    )]
    Stopped {
        vmm_status: String,
        said: String,
        hint: &'static str,
        tail: String,
    },
    /// guest speaks another protocol version
    #[error(
        "guest init speaks control protocol {guest}, this launcher speaks {PROTOCOL_VERSION}: use one runcvm build for host and guest"
    )]
    Version { guest: u32 },
    /// the volumes' NFS server stopped
    #[error(
        "the NFS server for the volumes stopped ({reason}), so the guest could not reach its volumes; \
         the container ends rather than hang (troubleshooting.md, Volumes)"
    )]
    VolumeServer { reason: String },
    /// the launcher was told to stop
    #[error("stopped by {0}")]
    Interrupted(Signal),
}

impl VmError {
    /// The exit code a stopped launcher reports.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Interrupted(signal) => 128 + *signal as i32,
            _ => crate::RUNTIME_FAILURE,
        }
    }
}

#[derive(Debug)]
enum Event {
    /// The guest's end of the control channel is connected; this is the
    /// launcher's writing half.
    Connected(UnixStream),
    Guest(GuestMessage),
    VolumeServerStopped(String),
    ControlClosed(String),
    VmmExited(std::process::ExitStatus),
    Signal(Signal),
}

pub use runcvm_vmm::vm::VmmCommand;

/// One VM to run.
#[derive(Debug)]
pub struct VmLaunch {
    pub vmm: VmmCommand,
    pub boot_timeout: Duration,
    pub show_boot: bool,
    /// The answer to the guest's `Ready`, sent in order: `Start` (the pod),
    /// then `CreateContainer` (its container, [`WORKLOAD_SESSION`]), unless
    /// this is a pod's VM.
    pub answer: Vec<HostMessage>,
    /// The pod's VM (`docs/pods.md`): no container of its own; its
    /// containers come through the exec socket, and a stop signal powers
    /// the VM off, which is then its end.
    pub pod_vm: bool,
    /// Reports why the volumes' NFS server stopped, if it does.
    pub volume_server: Option<std::sync::mpsc::Receiver<String>>,
    /// Where `runcvm exec` connects (none: no exec).
    pub exec_socket: Option<std::path::PathBuf>,
    /// Pass the launcher's stdin to the workload (`Start.stdin` is set).
    pub forward_stdin: bool,
    /// The workload has a terminal in the guest: sizes follow ours.
    pub terminal: bool,
    /// Where `kubectl port-forward` connects in the pod's network namespace.
    pub port_forward: Option<crate::port_forward::PortForward>,
    /// The container cgroup's memory limit, where a guest OOM kill is to be
    /// mirrored for the node (`oom.rs`); `None` mirrors nothing.
    pub mirror_oom_limit: Option<u64>,
    /// What to do with the workload's end first, before a mirrored OOM
    /// kill could end the launcher (`memory.oom.group` kills the whole
    /// cgroup): write the relayed files back.
    pub on_exit: Option<ExitHook>,
    /// Who the VMM runs as (`vmm_privileges`); `None`: as the launcher's
    /// user, without its capabilities.
    pub vmm_user: Option<runcvm_spec::VmmUser>,
    /// The VMM user's supplementary groups (`/dev/kvm`'s, where only its
    /// group may use it).
    pub vmm_groups: Vec<u32>,
}

/// A callback for the workload's end.
pub struct ExitHook(pub Box<dyn Fn(&WorkloadEnd) + Send>);

impl std::fmt::Debug for ExitHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExitHook")
    }
}

/// How the workload ended, as the guest reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadEnd {
    pub status: ExitStatus,
    /// The guest's OOM killer ended a process of the container.
    pub oom_killed: bool,
    /// The writable single-file volumes as the workload left them.
    pub files: Vec<runcvm_proto::GuestFile>,
    /// The OOM kill was mirrored in the container's cgroup, so the node
    /// reports `OOMKilled` (`oom.rs`).
    pub oom_reported: bool,
}

/// Blocks the forwarded signals in the calling thread (and so in every
/// thread it starts), so one thread can take them with `sigwait`. Call
/// first in main.
pub fn block_forwarded_signals() {
    let mut set = SigSet::empty();
    for signal in FORWARDED_SIGNALS {
        set.add(signal);
    }
    let _ = set.thread_block();
}

pub fn run(mut launch: VmLaunch) -> Result<WorkloadEnd, VmError> {
    let (events, inbox) = mpsc::channel();
    let listener = match &launch.vmm.control_socket {
        Some(path) => {
            let control_socket = |source| VmError::ControlSocket {
                path: path.display().to_string(),
                source,
            };
            // In `RUN/vmm/`: the VMM's group's to connect to
            // (`vmm_privileges`).
            Some(UnixListener::bind(path).map_err(control_socket)?)
        }
        None => None,
    };
    let command = &mut launch.vmm.command;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: a terminal's Ctrl-C reaches the launcher,
        // which decides what the VM gets.
        .process_group(0);
    let vmm_user = launch.vmm_user;
    let vmm_groups = launch.vmm_groups.clone();
    let parent = nix::unistd::getpid().as_raw();
    let inherited: Vec<i32> = launch
        .vmm
        .inherited
        .iter()
        .map(std::os::fd::AsRawFd::as_raw_fd)
        .collect();
    // SAFETY: the closure makes system calls only (fcntl, set*id, umask,
    // prctl, getppid, capset), which are async-signal-safe and touch only
    // the child.
    unsafe {
        command.pre_exec(move || {
            for fd in &inherited {
                // The launcher's copy stays close-on-exec; the child's not.
                if libc::fcntl(*fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            crate::vmm_privileges::become_vmm_in_child(vmm_user, &vmm_groups, parent)
        });
    }
    runcvm_log::debug!(
        "starting {} {:?}",
        launch.vmm.binary.display(),
        command.get_args().collect::<Vec<_>>()
    );
    let started = Instant::now();
    let mut child = command.spawn().map_err(|source| VmError::Spawn {
        binary: launch.vmm.binary.display().to_string(),
        hint: launch.vmm.spawn_hint,
        source,
    })?;
    // The VMM has its copies.
    launch.vmm.inherited.clear();
    let vmm = Vmm {
        pid: Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX)),
        reaped: Arc::new(AtomicBool::new(false)),
    };

    let hub = SessionHub::new();
    if launch.pod_vm {
        hub.serve_pod_console();
    }
    if let Some(path) = &launch.exec_socket {
        match UnixListener::bind(path) {
            Ok(listener) => hub.serve(listener),
            Err(e) => runcvm_log::warn!("runcvm exec is unavailable: cannot listen on {}: {e}", path.display()),
        }
    }
    if let Some(port_forward) = launch.port_forward.take() {
        port_forward.serve(&hub);
    }
    // A pod's VM keeps its whole console for its containers at DEBUG
    // (`pod_console.rs`), and shows it itself as any VM does.
    let console = Arc::new(Mutex::new(ConsoleFilter::new(launch.show_boot || launch.pod_vm)));
    let console_done = spawn_console_pump(child.stdout.take(), Arc::clone(&console), launch.pod_vm);
    let vmm_errors = spawn_stderr_collector(child.stderr.take(), launch.vmm.name);
    if let Some(listener) = listener {
        spawn_control_reader(listener, events.clone(), Arc::clone(&hub));
    }
    spawn_signal_taker(events.clone());
    if let Some(stopped) = launch.volume_server.take() {
        let events = events.clone();
        std::thread::spawn(move || {
            if let Ok(reason) = stopped.recv() {
                let _ = events.send(Event::VolumeServerStopped(reason));
            }
        });
    }
    let launch = &launch;
    {
        let events = events.clone();
        let reaped = Arc::clone(&vmm.reaped);
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                reaped.store(true, Ordering::SeqCst);
                let _ = events.send(Event::VmmExited(status));
            }
        });
    }
    drop(events);

    let outcome = supervise(launch, &vmm, &inbox, started, &hub);
    // Sessions still waiting for the guest wait no longer; what the
    // workload sent is all written before the launcher reports.
    hub.set_gone();
    hub.finish_workload();
    // All console output is shown before the launcher reports or exits.
    let _ = console_done.join();
    let tail = console.lock().map(|c| c.tail()).unwrap_or_default();
    let vmm_errors = vmm_errors.join().unwrap_or_default();
    outcome.finish(launch, tail, vmm_errors)
}

/// What the event loop saw.
#[derive(Debug, Default)]
struct Outcome {
    ended: Option<WorkloadEnd>,
    timed_out: bool,
    interrupted: Option<Signal>,
    volume_server: Option<String>,
    version: Option<u32>,
    vmm_status: Option<std::process::ExitStatus>,
}

fn supervise(launch: &VmLaunch, vmm: &Vmm, inbox: &Receiver<Event>, started: Instant, hub: &SessionHub) -> Outcome {
    let mut outcome = Outcome::default();
    // Cleared once the guest is ready, or once the boot has timed out.
    let mut boot_deadline = Some(started + launch.boot_timeout);
    let mut guest_ready = false;
    let mut shutdown_deadline: Option<Instant> = None;
    let mut drain_deadline: Option<Instant> = None;
    let mut control_open = launch.vmm.control_socket.is_some();
    let mut writer: Option<GuestWriter> = None;
    loop {
        let deadline = drain_deadline.or(shutdown_deadline).or(boot_deadline);
        let event = match deadline {
            Some(deadline) => inbox.recv_timeout(deadline.saturating_duration_since(Instant::now())),
            None => inbox.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match event {
            Ok(Event::Connected(stream)) => writer = Some(Arc::new(Mutex::new(stream))),
            Ok(Event::Guest(GuestMessage::Ready { version })) => {
                runcvm_log::debug!("guest init ready after {:.3} s", started.elapsed().as_secs_f64());
                guest_ready = true;
                boot_deadline = None;
                if version != PROTOCOL_VERSION {
                    outcome.version = Some(version);
                    vmm.kill();
                    continue;
                }
                if let Some(writer) = &writer {
                    hub.open_workload(writer);
                }
                let sent = writer
                    .as_ref()
                    .map(|w| launch.answer.iter().try_for_each(|message| send(w, message)));
                match sent {
                    Some(Err(e)) => {
                        runcvm_log::error!("cannot send the start message to the guest: {e}");
                        vmm.kill();
                    }
                    // From now on the guest serves exec sessions too.
                    Some(Ok(())) => {
                        let guest = Arc::clone(writer.as_ref().expect("sent through it"));
                        if launch.forward_stdin {
                            spawn_stdin_forwarder(Arc::clone(&guest), hub.window(WORKLOAD_SESSION));
                        }
                        hub.set_guest(guest);
                    }
                    None => {}
                }
            }
            // The first only: a guest that says it twice changes nothing.
            Ok(Event::Guest(GuestMessage::ContainerExit { .. })) if outcome.ended.is_some() => {}
            Ok(Event::Guest(GuestMessage::ContainerExit { container, .. })) if container != WORKLOAD_SESSION => {
                runcvm_log::warn!("the guest reported container {container}, which this launcher did not create");
            }
            Ok(Event::Guest(GuestMessage::ContainerExit {
                status,
                oom_killed,
                files,
                ..
            })) => {
                runcvm_log::debug!(
                    "workload exited: {status:?}{}",
                    if oom_killed { ", OOM-killed in the guest" } else { "" }
                );
                let mut ended = WorkloadEnd {
                    status,
                    oom_killed,
                    files,
                    oom_reported: false,
                };
                if let Some(hook) = &launch.on_exit {
                    (hook.0)(&ended);
                }
                // While the VMM still holds the guest's memory, so little
                // is left to fill.
                if let (true, Some(limit)) = (oom_killed, launch.mirror_oom_limit) {
                    ended.oom_reported = crate::oom::mirror_in_cgroup(limit);
                }
                outcome.ended = Some(ended);
                // The VM lives as long as its one container.
                if let Some(writer) = &writer
                    && let Err(e) = send(writer, &HostMessage::PowerOff)
                {
                    runcvm_log::debug!("cannot tell the guest to power off ({e}); stopping the VM");
                    vmm.kill();
                }
                shutdown_deadline = Some(Instant::now() + SHUTDOWN_GRACE);
            }
            // Session ends and credit go straight to the hub; none reach here.
            Ok(Event::Guest(
                GuestMessage::ExecExit { .. } | GuestMessage::Disconnected { .. } | GuestMessage::Credit { .. },
            )) => {}
            Ok(Event::ControlClosed(reason)) => {
                runcvm_log::debug!("control channel closed: {reason}");
                control_open = false;
                if outcome.vmm_status.is_some() {
                    return outcome;
                }
            }
            Ok(Event::VolumeServerStopped(reason)) => {
                // The guest would hang on its NFS mounts: end the container.
                runcvm_log::error!("the NFS server for the volumes stopped ({reason}); stopping the VM");
                outcome.volume_server = Some(reason);
                vmm.kill();
            }
            Ok(Event::Signal(Signal::SIGWINCH)) if launch.terminal => {
                // Our terminal changed size: so does the workload's (once
                // Start went out; before, the guest expects nothing else).
                let started = guest_ready && outcome.ended.is_none();
                if let (Some(writer), Some((rows, cols)), true) =
                    (writer.as_ref(), crate::terminal::stdin_size(), started)
                {
                    let _ = send(
                        writer,
                        &HostMessage::Resize {
                            session: WORKLOAD_SESSION,
                            rows,
                            cols,
                        },
                    );
                }
            }
            Ok(Event::Signal(signal @ (Signal::SIGTERM | Signal::SIGINT | Signal::SIGQUIT)))
                if launch.pod_vm && guest_ready && outcome.ended.is_none() =>
            {
                runcvm_log::debug!("received {signal}; powering the pod's VM off");
                outcome.ended = Some(WorkloadEnd {
                    status: ExitStatus::Code(0),
                    oom_killed: false,
                    files: Vec::new(),
                    oom_reported: false,
                });
                if let Some(writer) = &writer
                    && let Err(e) = send(writer, &HostMessage::PowerOff)
                {
                    runcvm_log::debug!("cannot tell the guest to power off ({e}); stopping the VM");
                    vmm.kill();
                }
                shutdown_deadline = Some(Instant::now() + SHUTDOWN_GRACE);
            }
            // A pod's VM has no container of its own to pass them to.
            Ok(Event::Signal(signal)) if launch.pod_vm && guest_ready => {
                runcvm_log::debug!("received {signal}; the pod's VM has no container of its own for it");
            }
            Ok(Event::Signal(signal)) => {
                let forwarded = match writer.as_ref() {
                    Some(writer) if guest_ready && outcome.ended.is_none() => send(
                        writer,
                        &HostMessage::Signal {
                            signal: signal as i32,
                            session: WORKLOAD_SESSION,
                        },
                    )
                    .is_ok(),
                    _ => false,
                };
                if forwarded {
                    runcvm_log::debug!("received {signal}; forwarded to the workload");
                } else if signal != Signal::SIGWINCH {
                    runcvm_log::debug!("received {signal} before the guest is running; stopping the VM");
                    outcome.interrupted = Some(signal);
                    vmm.kill();
                }
            }
            Ok(Event::VmmExited(status)) => {
                runcvm_log::debug!("VMM exited ({status}) after {:.3} s", started.elapsed().as_secs_f64());
                outcome.vmm_status = Some(status);
                if !control_open {
                    return outcome;
                }
                // The guest's last message may still be on its way through
                // the control socket's reader.
                drain_deadline = Some(Instant::now() + DRAIN_GRACE);
            }
            Err(RecvTimeoutError::Timeout) if drain_deadline.is_some() => return outcome,
            Err(RecvTimeoutError::Timeout) => {
                if outcome.ended.is_none() {
                    outcome.timed_out = true;
                } else {
                    runcvm_log::warn!(
                        "the VMM did not exit within {} s of the workload; killing it",
                        SHUTDOWN_GRACE.as_secs()
                    );
                }
                shutdown_deadline = None;
                boot_deadline = None;
                vmm.kill();
            }
            Err(RecvTimeoutError::Disconnected) => return outcome,
        }
    }
}

impl Outcome {
    fn finish(self, launch: &VmLaunch, tail: Vec<String>, vmm_errors: String) -> Result<WorkloadEnd, VmError> {
        if let Some(guest) = self.version {
            return Err(VmError::Version { guest });
        }
        if let Some(ended) = self.ended {
            return Ok(ended);
        }
        if let Some(signal) = self.interrupted {
            return Err(VmError::Interrupted(signal));
        }
        if let Some(reason) = self.volume_server {
            return Err(VmError::VolumeServer { reason });
        }
        let tail = indent(&tail);
        if self.timed_out {
            let accel = launch.vmm.accel;
            return Err(VmError::BootTimeout {
                secs: launch.boot_timeout.as_secs_f64(),
                accel,
                hint: match accel {
                    Accel::Kvm => {
                        ": this host's KVM may not boot standard guests; try RUNCVM_ACCEL=tcg (with RUNCVM_HYPERVISOR=qemu or auto)"
                    }
                    Accel::Tcg => ": raise RUNCVM_BOOT_TIMEOUT on a slow or busy host, or check the console below",
                },
                tail,
            });
        }
        let said = vmm_errors.trim();
        Err(VmError::Stopped {
            vmm_status: self.vmm_status.map_or_else(|| "lost".to_owned(), |s| s.to_string()),
            hint: stop_hint(self.vmm_status, said),
            said: if said.is_empty() {
                String::new()
            } else {
                format!("; {} said: {said}", launch.vmm.name)
            },
            tail,
        })
    }
}

fn indent(lines: &[String]) -> String {
    if lines.is_empty() {
        return "  (the console printed nothing)".to_owned();
    }
    lines.iter().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}

/// The running VMM, killable until it has been reaped.
#[derive(Debug)]
struct Vmm {
    pid: Pid,
    reaped: Arc<AtomicBool>,
}

impl Vmm {
    fn kill(&self) {
        // Checking first avoids signalling a recycled pid.
        if !self.reaped.load(Ordering::SeqCst) {
            let _ = nix::sys::signal::kill(self.pid, Signal::SIGKILL);
        }
    }
}

/// Shows the console on stderr and, `to_pod_console`, keeps it for the
/// pod's containers too (`pod_console.rs`).
fn spawn_console_pump(
    stdout: Option<std::process::ChildStdout>,
    console: Arc<Mutex<ConsoleFilter>>,
    to_pod_console: bool,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let Some(mut pipe) = stdout else { return };
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match pipe.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let shown = match console.lock() {
                Ok(mut filter) => filter.feed(&buf[..n]),
                Err(_) => return,
            };
            // The console carries the kernel's and init's lines: logs, so
            // stderr; the workload's stdout stays clean.
            // A pod VM's stderr is its `pod.log` on the node.
            if !shown.is_empty() {
                let _ = write_through(&mut std::io::stderr().lock(), &shown);
                if to_pod_console {
                    crate::pod_console::record(&shown);
                }
            }
        }
    })
}

fn spawn_stderr_collector(
    stderr: Option<std::process::ChildStderr>,
    vmm: &'static str,
) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = stderr {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        for line in text.lines() {
            runcvm_log::debug!("{vmm}: {line}");
        }
        text
    })
}

fn spawn_control_reader(listener: UnixListener, events: Sender<Event>, hub: Arc<SessionHub>) {
    std::thread::spawn(move || {
        let (stream, _) = match listener.accept() {
            Ok(connection) => connection,
            Err(e) => {
                let _ = events.send(Event::ControlClosed(format!("accept failed: {e}")));
                return;
            }
        };
        match stream.try_clone() {
            Ok(writer) => {
                let _ = events.send(Event::Connected(writer));
            }
            Err(e) => {
                let _ = events.send(Event::ControlClosed(format!("cannot share the control socket: {e}")));
                return;
            }
        }
        let mut reader = std::io::BufReader::new(stream);
        loop {
            match runcvm_proto::read_frame::<GuestMessage>(&mut reader) {
                Ok(Some(Frame::Message(GuestMessage::ExecExit { session, status }))) => hub.exited(session, status),
                Ok(Some(Frame::Message(GuestMessage::Disconnected { session, error }))) => {
                    hub.disconnected(session, error);
                }
                Ok(Some(Frame::Message(GuestMessage::Credit { session, bytes }))) => hub.credit(session, bytes),
                Ok(Some(Frame::Message(GuestMessage::ContainerExit {
                    container,
                    status,
                    oom_killed,
                    files,
                }))) if hub.attached(container) => hub.container_exited(container, status, oom_killed, files),
                Ok(Some(Frame::Message(message))) => {
                    if events.send(Event::Guest(message)).is_err() {
                        return;
                    }
                }
                // Every session's output, the workload's too, goes to its
                // outbox: each stream keeps its order, and a slow consumer
                // slows its session's sender in the guest (its window)
                // rather than this reader or memory.
                Ok(Some(Frame::Data { session, stream, bytes })) => hub.output(session, stream, bytes),
                Ok(None) => {
                    let _ = events.send(Event::ControlClosed("end of stream".into()));
                    return;
                }
                Err(e) => {
                    let _ = events.send(Event::ControlClosed(e.to_string()));
                    return;
                }
            }
        }
    });
}

/// Copies the launcher's stdin to the workload until it ends, within the
/// workload's window.
fn spawn_stdin_forwarder(guest: GuestWriter, window: Arc<runcvm_proto::flow::Window>) {
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = vec![0u8; runcvm_proto::MAX_DATA];
        let mut stdin = std::io::stdin().lock();
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 {
                break;
            }
            if crate::hub::send_within(&guest, &window, WORKLOAD_SESSION, &buf[..n]).is_err() {
                return;
            }
        }
        let _ = send(
            &guest,
            &HostMessage::CloseStdin {
                session: WORKLOAD_SESSION,
            },
        );
    });
}

fn write_through(out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    out.write_all(bytes)?;
    out.flush()
}

fn spawn_signal_taker(events: Sender<Event>) {
    std::thread::spawn(move || {
        let mut set = SigSet::empty();
        for signal in FORWARDED_SIGNALS {
            set.add(signal);
        }
        while let Ok(signal) = set.wait() {
            if events.send(Event::Signal(signal)).is_err() {
                return;
            }
        }
    });
}

/// What to do about a VMM that stopped on its own, where its status or
/// its words tell more than the console.
fn stop_hint(status: Option<std::process::ExitStatus>, said: &str) -> &'static str {
    use std::os::unix::process::ExitStatusExt;
    if status.and_then(|s| s.signal()) == Some(libc::SIGSYS) {
        "; its seccomp filter stopped it (a system call it made is not allowed): report this with the \
         console lines (RUNCVM_LOG_LEVEL=DEBUG)"
    } else if said.contains("-sandbox") || said.contains("seccomp") {
        "; this QEMU cannot run under its seccomp sandbox (-sandbox): use Debian's qemu-system-x86, or \
         one built with seccomp"
    } else if said.contains("Permission denied") {
        "; the VMM runs as the unprivileged VMM user, without capabilities, so it must reach its kernel \
         and devices through ordinary permissions: keep RUNCVM_KERNEL readable by all and out of \
         folders only their owner may enter, and /dev/kvm open to the VMM user under KVM"
    } else {
        ""
    }
}

#[cfg(test)]
mod stop_hint_tests {
    use super::stop_hint;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    #[test]
    fn the_hint_follows_the_vmms_status_and_words() {
        let sigsys = ExitStatus::from_raw(libc::SIGSYS);
        assert!(stop_hint(Some(sigsys), "").contains("seccomp filter stopped it"));
        let exited = ExitStatus::from_raw(1 << 8);
        let unsandboxed = "qemu-system-x86_64: -sandbox on: seccomp support is disabled";
        assert!(stop_hint(Some(exited), unsandboxed).contains("built with seccomp"));
        let denied = "qemu: could not open kernel file '/home/u/vmlinux': Permission denied";
        let hint = stop_hint(Some(exited), denied);
        assert!(
            hint.contains("RUNCVM_KERNEL") && hint.contains("the unprivileged VMM user"),
            "{hint}"
        );
        assert_eq!(stop_hint(Some(exited), "something else"), "");
        assert_eq!(stop_hint(None, ""), "");
    }
}
