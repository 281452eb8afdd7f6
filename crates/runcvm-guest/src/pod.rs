//! The pod in the guest: its containers by id, and what they share (the
//! sessions, the reaper's waiters, the pod's user namespace). Each container
//! lives on a thread of its own from `CreateContainer` to `ContainerExit`:
//! its root and volumes are mounted, its process started and waited for,
//! what it left running killed, its output all sent, its files read back.
//! A container's end never ends the VM: the launcher decides that
//! (`PowerOff`).

use crate::container::{Container, PidPlacement, PodShare};
use crate::entry::{self, NotStarted};
use crate::outbound::{ContainerNotes, SharedWriter, send_on};
use crate::reaper::Waiters;
use crate::sessions::{ExecTarget, Sessions};
use crate::spawn::RUNNER_FAILED;
use crate::{mounts, relay, root, system, volumes};
use anyhow::Context;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use runcvm_proto::{ExitStatus, GuestFile, GuestMessage, TerminalSize};
use runcvm_spec::{Entrypoint, GuestRoot, GuestVolume, LaunchPlan, PodPlan};
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

/// What `CreateContainer` brings.
#[derive(Debug)]
pub struct NewContainer {
    pub id: u32,
    /// Its name on the node, for log lines.
    pub name: Option<String>,
    pub plan: Box<LaunchPlan>,
    pub entrypoint: Option<Entrypoint>,
    pub files: Vec<GuestFile>,
    pub root: Option<GuestRoot>,
    pub volumes: Vec<GuestVolume>,
    pub stdin: bool,
    pub terminal_size: Option<TerminalSize>,
}

/// Where a container is in its life.
#[derive(Debug)]
enum State {
    /// Being made: signals wait for its process.
    Creating { pending: Vec<Signal> },
    Running {
        pid: Pid,
        container: Arc<Container>,
        /// Its name on the node: an ephemeral container names its target
        /// so.
        name: Option<String>,
    },
    /// Its process has ended; what it left is being killed and its output
    /// sent.
    Ending,
    /// It has no entrypoint: it sleeps until a signal that would end a
    /// container's init comes (sent here).
    Sleeping { stop: Sender<Signal> },
}

/// How a container ended.
#[derive(Debug)]
struct Ended {
    status: ExitStatus,
    oom_killed: bool,
    files: Vec<GuestFile>,
}

impl Ended {
    fn with(status: ExitStatus) -> Self {
        Self {
            status,
            oom_killed: false,
            files: Vec::new(),
        }
    }
}

/// The pod's containers and what they share.
#[derive(Debug)]
pub struct Pod {
    writer: SharedWriter,
    sessions: Arc<Sessions>,
    waiters: Arc<Waiters>,
    /// The pod's user namespace, held for its containers to enter.
    user_namespace: Option<OwnedFd>,
    /// The pod's root as the guest kernel knows it, in that namespace.
    owner: Option<(u32, u32)>,
    containers: Mutex<HashMap<u32, State>>,
    /// A container has had the guest's root (`runcvm run`'s first).
    guest_root_taken: AtomicBool,
    /// Signalled when a container leaves `Creating`: execs wait for it.
    created: Condvar,
    /// The pause process holding the PID namespace the pod's containers
    /// share in POD mode, started with the first that asks.
    pause: Mutex<Option<crate::pause::PodPause>>,
}

impl Pod {
    /// Sets up what the pod's containers share: its user namespace (the
    /// folders they write given to its root).
    pub fn new(writer: SharedWriter, plan: &PodPlan) -> anyhow::Result<Arc<Self>> {
        let waiters = Arc::new(Waiters::default());
        let owner = plan
            .user_namespace
            .as_ref()
            .and_then(runcvm_spec::UserNamespace::root_outside);
        if let Some(owner) = owner {
            // init's tmpfs mounts, which the pod's root must be able to use.
            system::give_to(mounts::POD_WRITABLE, owner)?;
        }
        let user_namespace = match &plan.user_namespace {
            Some(userns) => Some(crate::container::make_user_namespace(userns)?),
            None => None,
        };
        Ok(Arc::new(Self {
            sessions: Sessions::new(writer.clone(), Arc::clone(&waiters)),
            writer,
            waiters,
            user_namespace,
            owner,
            containers: Mutex::new(HashMap::new()),
            guest_root_taken: AtomicBool::new(false),
            created: Condvar::new(),
            pause: Mutex::new(None),
        }))
    }

    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.sessions
    }

    pub fn waiters(&self) -> &Waiters {
        &self.waiters
    }

    fn table(&self) -> MutexGuard<'_, HashMap<u32, State>> {
        self.containers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves container `id` on from `Creating` (or any state) to `state`,
    /// or out of the table; returns the state it had.
    fn set_state(&self, id: u32, state: Option<State>) -> Option<State> {
        let old = match state {
            Some(state) => self.table().insert(id, state),
            None => self.table().remove(&id),
        };
        self.created.notify_all();
        old
    }

    /// Creates and starts a container on a thread of its own; it reports
    /// its end in `ContainerExit`. A second create of an id in use is
    /// ignored (the running container's end is the one to report); a
    /// container without a served root is refused once the VM has had
    /// another.
    pub fn create(self: &Arc<Self>, new: NewContainer) {
        let id = new.id;
        let label = match &new.name {
            Some(name) => format!("container {id} ({name})"),
            None => format!("container {id}"),
        };
        {
            let mut table = self.table();
            if table.contains_key(&id) {
                // Its end is the running one's to report, not this.
                runcvm_log::error!("the launcher created container {id} twice; the second is ignored");
                return;
            }
            // The guest's root is one container's, in a VM that has had no
            // other (`runcvm run`'s first); a second would share it.
            if new.root.is_none() && (!table.is_empty() || self.guest_root_taken.swap(true, Ordering::SeqCst)) {
                drop(table);
                runcvm_log::error!(
                    "{label}: the guest's root is another container's; this one needs a root of its own"
                );
                self.report(id, Ended::with(ExitStatus::Code(RUNNER_FAILED)));
                return;
            }
            table.insert(id, State::Creating { pending: Vec::new() });
        }
        if new.stdin {
            self.sessions.hold_stdin(id);
        }
        let pod = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name(format!("container-{id}"))
            .spawn(move || {
                let notes = pod.notes_for(&new);
                let ended = pod.run(new).unwrap_or_else(|e| {
                    notes.note(runcvm_log::LogLevel::Error, format_args!("{label}: {e:#}"));
                    Ended::with(ExitStatus::Code(RUNNER_FAILED))
                });
                pod.set_state(id, None);
                pod.sessions.forget(id);
                pod.report(id, ended);
            });
        if let Err(e) = spawned {
            runcvm_log::error!("container {id}: cannot start its thread: {e}");
            self.set_state(id, None);
            self.sessions.forget(id);
            self.report(id, Ended::with(ExitStatus::Code(RUNNER_FAILED)));
        }
    }

    fn report(&self, container: u32, ended: Ended) {
        runcvm_log::debug!(
            "container {container} ended: {:?}{}",
            ended.status,
            if ended.oom_killed { ", OOM-killed" } else { "" }
        );
        let _ = send_on(
            &self.writer,
            &GuestMessage::ContainerExit {
                container,
                status: ended.status,
                oom_killed: ended.oom_killed,
                files: ended.files,
            },
        );
    }

    /// Guest init's notes about a container, at the level its env asks for.
    fn notes_for(&self, new: &NewContainer) -> ContainerNotes {
        let wanted = new
            .entrypoint
            .as_ref()
            .and_then(|entrypoint| entrypoint.env_var(runcvm_log::LOG_LEVEL_ENV))
            .and_then(|value| std::str::from_utf8(value).ok()?.parse().ok());
        ContainerNotes::for_container(&self.writer, new.id, self.sessions.window(new.id), wanted)
    }

    /// A container's whole life, on its thread.
    fn run(&self, new: NewContainer) -> anyhow::Result<Ended> {
        let served = new.root.is_some();
        let guest_dir = entry::container_dir(new.id, served);
        let ended = self.run_in(&new, &guest_dir);
        // Its entrypoint and plan (its env, secrets among it) and its files'
        // copies go with it; the guest's own /.runcvm stays (sealed).
        if served && let Err(e) = std::fs::remove_dir_all(&guest_dir) {
            runcvm_log::debug!("cannot remove {}: {e}", guest_dir.display());
        }
        ended
    }

    fn run_in(&self, new: &NewContainer, guest_dir: &Path) -> anyhow::Result<Ended> {
        let served = new.root.is_some();
        entry::write_container_dir(guest_dir, &new.plan, new.entrypoint.as_ref())?;
        if !served {
            mounts::seal_guest_dir()?;
        }
        let notes = self.notes_for(new);
        let entrypoint = entry::load_entrypoint(guest_dir, &notes);
        let owner = self.owner;
        // The container's paths: in a mount namespace over its served root,
        // or the guest's own root (`runcvm run`).
        let mount_namespace = match &new.root {
            Some(root) => {
                if entrypoint.is_err() {
                    anyhow::bail!("the launcher served a container root without an entrypoint to run on it");
                }
                Some(root::make(root, guest_dir, &notes, || {
                    volumes::mount_all(&new.volumes, &notes)?;
                    for (index, file) in new.files.iter().enumerate() {
                        root::bind_file(file, index, owner)?;
                    }
                    Ok(())
                })?)
            }
            None => {
                volumes::mount_all(&new.volumes, &notes)?;
                for file in &new.files {
                    system::write_file(&file.path, file.content.as_bytes(), file.mode, owner)?;
                }
                None
            }
        };
        // Where each writable file is read back from when the container ends.
        let writable: Vec<(&str, String)> = new
            .files
            .iter()
            .enumerate()
            .filter(|(_, f)| f.writable)
            .map(|(index, f)| {
                let from = if served {
                    root::file_copy(guest_dir, index)
                } else {
                    f.path.clone()
                };
                (f.path.as_str(), from)
            })
            .collect();
        let entrypoint = match entrypoint {
            Ok(entrypoint) => entrypoint,
            Err(NotStarted::Ended(status)) => return Ok(Ended::with(status)),
            Err(NotStarted::Absent) => {
                if new.plan.read_only_root {
                    mounts::make_root_read_only()?;
                }
                return Ok(Ended::with(self.sleep(new.id)));
            }
        };
        let share = PodShare {
            user_namespace: self.user_namespace.as_ref(),
            root: owner,
        };
        let pid_namespace = self.pid_placement(&new.plan)?;
        let container = Arc::new(Container::prepare(
            new.id,
            &new.plan,
            mount_namespace,
            pid_namespace,
            &share,
        )?);
        let started = entry::start_entrypoint(
            &entrypoint,
            &container,
            new.stdin,
            new.terminal_size,
            &self.waiters,
            &notes,
        );
        let (started, exit) = match started {
            Ok(started) => started,
            Err(status) => {
                container.remove_cgroup();
                return Ok(Ended::with(status));
            }
        };
        let pid = started.pid;
        let pending = match self.set_state(
            new.id,
            Some(State::Running {
                pid,
                container: Arc::clone(&container),
                name: new.name.clone(),
            }),
        ) {
            Some(State::Creating { pending }) => pending,
            _ => Vec::new(),
        };
        for signal in pending {
            let _ = nix::sys::signal::kill(pid, signal);
        }
        let pumps = self.sessions.attach(new.id, started);
        let status = exit.recv().unwrap_or(ExitStatus::Code(RUNNER_FAILED));
        // Its pid may be another process's from now on.
        self.set_state(new.id, Some(State::Ending));
        // What it left running goes now (as a container's processes do when
        // its init ends), so its pipes reach EOF and all its output is sent
        // before its exit status.
        self.waiters.between_starts(|| container.close_to_execs());
        container.kill_the_rest();
        for pump in pumps {
            let _ = pump.join();
        }
        let oom_killed = container.oom_kills() > 0;
        container.remove_cgroup();
        Ok(Ended {
            status,
            oom_killed,
            files: relay::read_back(&writable),
        })
    }

    /// The PID namespace a container's process goes into: a new one
    /// (CONTAINER mode), its target's (an ephemeral container, which must
    /// name a running container of this VM), or the pod's (POD mode), made
    /// with its pause process by the first container that asks (and again
    /// should that process have ended).
    fn pid_placement(&self, plan: &LaunchPlan) -> anyhow::Result<PidPlacement> {
        if let Some(target) = &plan.pid_namespace_of {
            let joined = self.table().values().find_map(|state| match state {
                State::Running { container, name, .. } if name.as_ref() == Some(target) => container.joined(),
                _ => None,
            });
            let Some(joined) = joined else {
                anyhow::bail!("the container whose processes it is to share, {target:?}, does not run in this VM");
            };
            let namespace = joined
                .pid
                .try_clone()
                .context("cannot hold its target's PID namespace")?;
            return Ok(PidPlacement::Join(namespace));
        }
        if plan.own_pid_namespace {
            return Ok(PidPlacement::New);
        }
        let mut pause = self.pause.lock().unwrap_or_else(PoisonError::into_inner);
        let running = match pause.take() {
            None => crate::pause::start(&self.waiters)?,
            Some(running) => match running.ended() {
                None => running,
                Some(status) => {
                    runcvm_log::warn!(
                        "the pod's pause process ended ({status}); a new one holds the pod's PID namespace from now on"
                    );
                    crate::pause::start(&self.waiters)?
                }
            },
        };
        let namespace = running
            .namespace
            .try_clone()
            .context("cannot hold the pod's PID namespace");
        *pause = Some(running);
        Ok(PidPlacement::Join(namespace?))
    }

    /// Sleeps until a signal that ends a container's init comes for the
    /// container (exec sessions into it still run); returns its status.
    fn sleep(&self, id: u32) -> ExitStatus {
        let (stop, stopped) = mpsc::channel();
        let pending = match self.set_state(id, Some(State::Sleeping { stop: stop.clone() })) {
            Some(State::Creating { pending }) => pending,
            _ => Vec::new(),
        };
        for signal in pending {
            self.signal(id, signal);
        }
        match stopped.recv() {
            Ok(signal) => ExitStatus::Signal(signal as i32),
            Err(_) => ExitStatus::Code(RUNNER_FAILED),
        }
    }

    /// Sends `signal` to session `session`'s process: a container's (its
    /// id), or an exec's.
    pub fn signal(&self, session: u32, signal: Signal) {
        let mut table = self.table();
        match table.get_mut(&session) {
            Some(State::Creating { pending }) => pending.push(signal),
            Some(State::Running { pid, .. }) => {
                runcvm_log::debug!("forwarding {signal} to container {session} (pid {pid})");
                let _ = nix::sys::signal::kill(*pid, signal);
            }
            Some(State::Sleeping { stop }) if system::STOPS_INIT.contains(&signal) || signal == Signal::SIGKILL => {
                let _ = stop.send(signal);
            }
            Some(State::Sleeping { .. } | State::Ending) => {
                runcvm_log::debug!("{signal} ignored: container {session} has no process");
            }
            None => {
                drop(table);
                self.sessions.signal(session, signal);
            }
        }
    }

    /// Ends a session whose client went away: a container's process gets
    /// SIGKILL (as the shim's kill of a container's init), an exec's
    /// process group too.
    pub fn kill_session(&self, session: u32) {
        if self.table().contains_key(&session) {
            self.signal(session, Signal::SIGKILL);
        } else {
            self.sessions.kill(session);
        }
    }

    /// Starts an exec session in `container` on a thread of its own, its
    /// input held meanwhile; one for a container still being made waits for
    /// its process (an exec probe may come right after the container's
    /// start).
    pub fn exec(self: &Arc<Self>, session: u32, container: u32, process: Entrypoint, size: Option<TerminalSize>) {
        // A process init cannot start must not reach `spawn` (an empty argv).
        if let Err(e) = process.validate() {
            self.refuse_exec(session, &e.to_string());
            return;
        }
        // Off the control thread, always: the start looks the program up on
        // the container's root, which a hung server would hang, and the
        // pod's other sessions must go on meanwhile.
        self.sessions.hold_stdin(session);
        let pod = Arc::clone(self);
        let started = std::thread::Builder::new()
            .name(format!("exec-{session}"))
            .spawn(move || pod.exec_now(session, container, &process, size));
        if started.is_err() {
            self.refuse_exec(session, "cannot start a thread for it");
        }
    }

    fn exec_now(self: &Arc<Self>, session: u32, container: u32, process: &Entrypoint, size: Option<TerminalSize>) {
        let target = {
            let mut table = self.table();
            let mut waited = false;
            while let Some(State::Creating { .. }) = table.get(&container) {
                waited = true;
                table = self.created.wait(table).unwrap_or_else(PoisonError::into_inner);
            }
            match table.get(&container) {
                Some(State::Running { container, .. }) => Ok(ExecTarget::Container(Arc::clone(container))),
                Some(State::Sleeping { .. }) => Ok(ExecTarget::Guest),
                Some(State::Ending) => Err("the container's process has ended"),
                Some(State::Creating { .. }) | None if waited => Err("the container did not start"),
                Some(State::Creating { .. }) | None => Err("no such container in this pod"),
            }
        };
        match target {
            Ok(target) => self.sessions.start(session, &target, process, size),
            Err(why) => self.refuse_exec(session, why),
        }
    }

    fn refuse_exec(&self, session: u32, why: &str) {
        self.sessions.refuse(
            session,
            RUNNER_FAILED,
            &format!("runcvm exec: unable to start process: {why}\n"),
        );
    }

    /// Ends the VM: every process killed, the guest rebooted.
    pub fn power_off(&self) -> ! {
        system::power_off(Some(&self.sessions))
    }
}
