//! An NFSv3 server (RFC 1813) in the launcher: it exports the container's
//! shared mounts (volumes) to the guest on 169.254.1.254, one export per
//! mount, named by the container path (`169.254.1.254:/data`).
//!
//! Hand-written on the XDR types of `nfs3_types` rather than on an NFS
//! server crate because those ignore the caller's credentials: here every
//! request runs on a thread that has taken the caller's fsuid, fsgid and
//! groups (see [`creds`]), so the host kernel enforces permissions and new
//! files belong to the guest user who made them. Each connection's calls
//! are read in order by one thread and answered by a few workers of the
//! connection's (at most [`WORKERS_PER_CONNECTION`] calls at once), each
//! reply written as soon as it is ready: RPC matches replies to calls by
//! xid, and one slow call (a READ that waits on its file) leaves the others
//! to be served. Calls that only read metadata and open nothing for I/O the
//! reader answers itself (`answered_by_the_reader`).
//!
//! What a guest can hold of the server is bounded: at most
//! [`MAX_CONNECTIONS`] connections at once (the accept loop closes any
//! beyond), each with at most [`WORKERS_PER_CONNECTION`] calls being
//! answered; and a reply that the guest does not take within
//! [`WRITE_TIMEOUT`] ends its connection, so a guest that stops reading
//! cannot hold a connection's threads for ever.
//!
//! TCP only; MOUNT v3 and NFS v3 share one port; no portmapper (the guest
//! passes `port=` and `mountport=`).

mod attrs;
mod creds;
mod handles;
mod idmap;
mod listing;
mod mount;
mod nfs;
pub mod rpc;
mod tree;
mod writeback;

pub use idmap::{IdMap, IdRange};
pub use tree::Export;

use nfs3_types::rpc::accept_stat_data;
use std::io::BufReader;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NFS_PROGRAM: u32 = nfs3_types::nfs3::PROGRAM;
const MOUNT_PROGRAM: u32 = nfs3_types::mount::PROGRAM;
/// Calls of one connection answered at once. Beyond it the connection's
/// reader waits for a worker before it reads on, so a connection holds at
/// most this many calls (and one being read) however fast its client sends.
pub const WORKERS_PER_CONNECTION: usize = 8;
/// Connections a server serves at once. The Linux client keeps one or two
/// per server; each holds a thread, its workers and a 1 MiB read buffer,
/// so beyond this the accept loop closes a new connection at once.
pub const MAX_CONNECTIONS: usize = 16;
/// How long writing a reply may make no progress: a client that stops
/// reading its replies would otherwise hold the writing worker, and through
/// the writer's lock every other worker and the reader, for ever. A write
/// that times out ends the connection.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// The least time between two warnings of refused connections.
const REFUSALS_LOGGED_EVERY: Duration = Duration::from_secs(10);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum NfsError {
    /// an export cannot be served
    #[error("cannot serve the volume")]
    Export(#[source] std::io::Error),
    /// the listener failed
    #[error("cannot read the NFS listener's address")]
    Listener(#[source] std::io::Error),
}

/// A running server; it serves until the process ends or its listener
/// fails, which `stopped` then reports.
#[derive(Debug)]
pub struct NfsServer {
    pub address: SocketAddr,
    /// Receives why the server stopped accepting connections.
    pub stopped: std::sync::mpsc::Receiver<String>,
}

/// Who may talk to the server at all. The guard already keeps the pod's
/// neighbours off 169.254.1.254; this keeps the server to the guest's
/// kernel: its addresses, and (like knfsd's `secure` option) a privileged
/// source port, which the kernel's NFS client uses and an unprivileged
/// process in the guest cannot, so it cannot claim another uid in AUTH_UNIX.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peers {
    /// Allowed client addresses; empty allows any.
    pub addresses: Vec<std::net::IpAddr>,
    /// Require a source port below 1024.
    pub privileged_port: bool,
    /// The only ids requests may act as; `None`: any.
    pub ids: Option<KnownIds>,
    /// The pod's user namespace mappings, applied as an id-mapped mount
    /// would (`idmap.rs`); `None`: ids pass as they are.
    pub id_map: Option<IdMap>,
}

/// The ids of a workload that is not root: a request in any other uid or
/// gid acts as nobody, so guest root (which a non-root pod never has under
/// runc) is no root on the volumes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownIds {
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
}

impl KnownIds {
    fn squash(&self, caller: &mut rpc::Caller) {
        if !self.uids.contains(&caller.uid) {
            caller.uid = rpc::Caller::NOBODY;
        }
        if !self.gids.contains(&caller.gid) {
            caller.gid = rpc::Caller::NOBODY;
        }
        caller.groups.retain(|g| self.gids.contains(g));
    }
}

impl Peers {
    fn admits(&self, peer: SocketAddr) -> bool {
        (self.addresses.is_empty() || self.addresses.contains(&peer.ip()))
            && (!self.privileged_port || peer.port() < 1024)
    }
}

/// Serves `exports` on `listener` to `peers` from background threads.
pub fn serve(listener: TcpListener, exports: Vec<Export>, peers: Peers) -> Result<NfsServer, NfsError> {
    let address = listener.local_addr().map_err(NfsError::Listener)?;
    let tree = Arc::new(tree::Tree::new(exports).map_err(NfsError::Export)?);
    let (report, stopped) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("nfs-accept".into())
        .spawn(move || {
            let reason = accept_loop(&listener, &tree, &peers);
            let _ = report.send(reason);
        })
        .map_err(NfsError::Listener)?;
    Ok(NfsServer { address, stopped })
}

/// Accepts until the listener fails for good; returns why.
fn accept_loop(listener: &TcpListener, tree: &Arc<tree::Tree>, peers: &Peers) -> String {
    let open = Arc::new(AtomicUsize::new(0));
    let mut refusals = Refusals::default();
    loop {
        match listener.accept() {
            Ok((_, peer)) if !peers.admits(peer) => {
                runcvm_log::warn!("nfs: refused a connection from {peer}: only the guest's kernel may connect");
            }
            Ok((stream, peer)) => {
                // Closed here, at once, when every slot is taken.
                let Some(slot) = Slot::take(&open) else {
                    drop(stream);
                    if let Some(count) = refusals.note(Instant::now()) {
                        let also = match count {
                            1 => String::new(),
                            _ => format!(" ({count} refused since the last such warning)"),
                        };
                        runcvm_log::warn!(
                            "nfs: refused a connection from {peer}: {MAX_CONNECTIONS} connections are open already{also}"
                        );
                    }
                    continue;
                };
                let tree = Arc::clone(tree);
                let ids = peers.ids.clone();
                let id_map = peers.id_map.clone();
                // A thread that cannot start drops its closure, and the slot
                // with it.
                let spawned = std::thread::Builder::new().name("nfs-conn".into()).spawn(move || {
                    let _slot = slot;
                    serve_connection(&tree, stream, ids.as_ref(), id_map.as_ref());
                });
                if let Err(e) = spawned {
                    runcvm_log::warn!("nfs: cannot start a connection thread: {e}");
                }
            }
            // A client that gave up, or a signal: keep serving.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::Interrupted
                ) => {}
            // Out of descriptors is worth a pause, not the end.
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) || e.raw_os_error() == Some(libc::ENFILE) => {
                runcvm_log::warn!("nfs: accept failed: {e}; retrying");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => return format!("accepting connections failed: {e}"),
        }
    }
}

/// One of a server's [`MAX_CONNECTIONS`] connections, taken while it is
/// served (its thread holds it to its end, after its workers), given back
/// when dropped.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    /// A free slot of `open`, the count of slots taken; `None` if none is.
    fn take(open: &Arc<AtomicUsize>) -> Option<Self> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < MAX_CONNECTIONS).then_some(n + 1)
        })
        .ok()?;
        Some(Self(Arc::clone(open)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Connections refused for want of a slot, warned of so that a flood of
/// them does not flood the log: the first at once, then at most one
/// warning every [`REFUSALS_LOGGED_EVERY`], counting those in between (a
/// count left over is told with the next refusal).
#[derive(Debug, Default)]
struct Refusals {
    last_warned: Option<Instant>,
    untold: u64,
}

impl Refusals {
    /// Notes a refusal at `now`; returns how many refusals to warn of now,
    /// this one included, if it is time to warn.
    fn note(&mut self, now: Instant) -> Option<u64> {
        self.untold += 1;
        if self
            .last_warned
            .is_some_and(|last| now.saturating_duration_since(last) < REFUSALS_LOGGED_EVERY)
        {
            return None;
        }
        self.last_warned = Some(now);
        Some(std::mem::take(&mut self.untold))
    }
}

/// What the workers of one connection share.
struct Connection<'a> {
    peer: &'a str,
    tree: &'a tree::Tree,
    ids: Option<&'a KnownIds>,
    id_map: Option<&'a IdMap>,
    /// Replies go out under this lock, each whole, in the order they are
    /// ready.
    writer: Mutex<TcpStream>,
}

/// Reads a connection's calls and hands each to a free worker, starting
/// workers as calls find none free, up to [`WORKERS_PER_CONNECTION`]. The
/// connection ends at the end of its stream, on a read error, on a
/// malformed call or when a reply cannot be written (within
/// [`WRITE_TIMEOUT`]); its workers answer what they hold, then end with it.
fn serve_connection(tree: &tree::Tree, stream: TcpStream, ids: Option<&KnownIds>, id_map: Option<&IdMap>) {
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    runcvm_log::debug!("nfs: connection from {peer}");
    // On the socket, so the writer's clone has it too.
    if let Err(e) = stream.set_write_timeout(Some(WRITE_TIMEOUT)) {
        runcvm_log::warn!("nfs: closed a connection from {peer}: cannot set its write timeout: {e}");
        return;
    }
    let Ok(writer) = stream.try_clone() else { return };
    let _ = stream.set_nodelay(true);
    // The reader answers some calls itself (`answered_by_the_reader`).
    idmap::activate(id_map.cloned());
    creds::prepare_serving_thread();
    let connection = Connection {
        peer: &peer,
        tree,
        ids,
        id_map,
        writer: Mutex::new(writer),
    };
    // Without room: a call is handed over only to a worker waiting for one,
    // so none queue up behind busy workers.
    let (calls, queue) = std::sync::mpsc::sync_channel::<rpc::Call>(0);
    // Only workers hold the queue, so a reader whose workers are all gone
    // (none could start) finds the hand-over failing instead of waiting.
    let queue = Arc::new(Mutex::new(queue));
    let held = Arc::downgrade(&queue);
    let mut first = Some(queue);
    std::thread::scope(|scope| {
        let mut workers = 0;
        let mut reader = BufReader::with_capacity(1 << 20, stream);
        loop {
            let record = match rpc::read_record(&mut reader) {
                Ok(Some(record)) => record,
                Ok(None) => break,
                Err(e) => {
                    runcvm_log::debug!("nfs: connection from {peer} ended: {e}");
                    break;
                }
            };
            let Some(call) = rpc::parse_call(record) else {
                runcvm_log::debug!("nfs: dropped a malformed call from {peer}");
                break;
            };
            if answered_by_the_reader(&call) {
                if serve_one(&connection, call) {
                    continue;
                }
                break;
            }
            let call = match calls.try_send(call) {
                Ok(()) => continue,
                Err(TrySendError::Full(call)) => call,
                Err(TrySendError::Disconnected(_)) => break,
            };
            if workers < WORKERS_PER_CONNECTION {
                let Some(queue) = first.take().or_else(|| held.upgrade()) else {
                    break;
                };
                let connection = &connection;
                let spawned = std::thread::Builder::new()
                    .name("nfs-worker".into())
                    .spawn_scoped(scope, move || work(connection, &queue));
                match spawned {
                    Ok(_) => workers += 1,
                    Err(e) => runcvm_log::warn!("nfs: cannot start a worker for a connection from {peer}: {e}"),
                }
            }
            if calls.send(call).is_err() {
                break;
            }
        }
        // The workers see the queue closed once they are done with what
        // they hold; the scope waits for them.
        drop(calls);
    });
    runcvm_log::debug!("nfs: connection from {peer} closed");
}

/// A worker of a connection: answers the calls it is handed until the
/// connection's reader is done.
fn work(connection: &Connection<'_>, queue: &Mutex<Receiver<rpc::Call>>) {
    // What a request runs with is per thread: the id mapping, and the
    // credentials that creds::become_caller takes within a file-system
    // context of the thread's own.
    idmap::activate(connection.id_map.cloned());
    creds::prepare_serving_thread();
    loop {
        // One worker waits on the queue at a time, the others on its lock.
        let next = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(call) = next else { return };
        if !serve_one(connection, call) {
            return;
        }
    }
}

/// Answers one call on the calling (prepared) thread and writes the reply;
/// false once the connection is over.
fn serve_one(connection: &Connection<'_>, mut call: rpc::Call) -> bool {
    let caller = &mut call.caller;
    caller.uid = idmap::node_uid(caller.uid);
    caller.gid = idmap::node_gid(caller.gid);
    for group in &mut caller.groups {
        *group = idmap::node_gid(*group);
    }
    if let Some(ids) = connection.ids {
        ids.squash(caller);
    }
    let reply = answer(connection.tree, &mut call);
    let written = match connection.writer.lock() {
        Ok(mut writer) => rpc::write_record(&mut *writer, &reply),
        Err(_) => Err(std::io::Error::other("a worker panicked while writing")),
    };
    if let Err(e) = written {
        runcvm_log::debug!("nfs: cannot reply to {}: {e}; closing the connection", connection.peer);
        // The client is gone, a reply went out in part, or the client
        // took none of it within the write timeout: end the connection,
        // so the reader stops reading calls none can answer.
        if let Ok(writer) = connection.writer.lock() {
            let _ = writer.shutdown(Shutdown::Both);
        }
        return false;
    }
    true
}

/// A call the reader answers itself rather than hand to a worker: one that
/// reads only metadata and opens nothing for I/O (a lease or a FIFO cannot
/// hold it), so the thread hand-off, which costs more than the call on a
/// busy node, is saved for what can wait. `ls -l` on a volume is mostly these.
fn answered_by_the_reader(call: &rpc::Call) -> bool {
    const NULL: u32 = 0;
    const GETATTR: u32 = 1;
    const LOOKUP: u32 = 3;
    const ACCESS: u32 = 4;
    const READLINK: u32 = 5;
    const FSSTAT: u32 = 18;
    const FSINFO: u32 = 19;
    const PATHCONF: u32 = 20;
    call.program == NFS_PROGRAM
        && matches!(
            call.procedure,
            NULL | GETATTR | LOOKUP | ACCESS | READLINK | FSSTAT | FSINFO | PATHCONF
        )
}

/// The server as a fuzz target drives it (`fuzz/` at the repository's
/// root): one record in, the reply out, with no connection around it.
/// Built only with `--cfg fuzzing`, as `cargo fuzz` builds.
#[cfg(fuzzing)]
pub mod fuzzing {
    /// The exports' tree, as one connection sees it.
    #[derive(Debug)]
    pub struct Server {
        tree: crate::tree::Tree,
    }

    impl Server {
        pub fn new(exports: Vec<crate::Export>) -> std::io::Result<Self> {
            Ok(Self {
                tree: crate::tree::Tree::new(exports)?,
            })
        }

        /// The reply to one record (`None`: the call is malformed, and the
        /// connection would end).
        pub fn answer(&self, record: Vec<u8>) -> Option<Vec<u8>> {
            let mut call = crate::rpc::parse_call(record)?;
            Some(crate::answer(&self.tree, &mut call))
        }
    }
}

/// The reply record for one call.
pub(crate) fn answer(tree: &tree::Tree, call: &mut rpc::Call) -> Vec<u8> {
    let outcome = match (call.program, call.version) {
        (NFS_PROGRAM, 3) => nfs::dispatch(tree, call),
        (MOUNT_PROGRAM, 3) => mount::dispatch(tree, call),
        (NFS_PROGRAM | MOUNT_PROGRAM, _) => {
            return rpc::reply(call.xid, accept_stat_data::PROG_MISMATCH { low: 3, high: 3 }, None);
        }
        _ => return rpc::reply(call.xid, accept_stat_data::PROG_UNAVAIL, None),
    };
    match outcome {
        Ok(Some(body)) => rpc::reply(call.xid, accept_stat_data::SUCCESS, Some(body.as_ref())),
        Ok(None) => rpc::reply(call.xid, accept_stat_data::PROC_UNAVAIL, None),
        // Arguments that did not decode, or a caller whose ids the kernel
        // refused: either way, nothing was done.
        Err(()) => rpc::reply(call.xid, accept_stat_data::GARBAGE_ARGS, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_free_again_once_dropped() {
        let open = Arc::new(AtomicUsize::new(0));
        let mut taken: Vec<Slot> = (0..MAX_CONNECTIONS).map_while(|_| Slot::take(&open)).collect();
        assert_eq!(taken.len(), MAX_CONNECTIONS);
        assert!(Slot::take(&open).is_none());
        drop(taken.pop());
        let again = Slot::take(&open);
        assert!(again.is_some());
        assert!(Slot::take(&open).is_none());
        drop(again);
        assert_eq!(open.load(Ordering::Acquire), MAX_CONNECTIONS - 1);
    }

    #[test]
    fn refusals_are_warned_of_at_first_then_at_most_once_a_period_with_a_count() {
        let start = Instant::now();
        let mut refusals = Refusals::default();
        assert_eq!(refusals.note(start), Some(1));
        for ms in [1, 500, 9_999] {
            assert_eq!(refusals.note(start + Duration::from_millis(ms)), None);
        }
        let later = start + REFUSALS_LOGGED_EVERY;
        assert_eq!(refusals.note(later), Some(4));
        assert_eq!(refusals.note(later + Duration::from_secs(1)), None);
        assert_eq!(refusals.note(later + Duration::from_secs(3600)), Some(2));
    }
}
