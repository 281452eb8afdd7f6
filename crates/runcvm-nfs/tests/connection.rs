//! One connection to the NFS server, as the guest's kernel keeps one: its
//! calls are answered concurrently by a bounded set of workers, which end
//! with it; a server serves a bounded number of connections at once; a
//! reply the client does not take cannot hold a connection for ever; and
//! what its bytes claim is not what the server allocates. The connection
//! tests are root only (the server takes on callers' credentials); run
//! through `scripts/test.sh`.

#![allow(clippy::unwrap_used)]

#[path = "support/client.rs"]
mod client;

use client::Client;
use nfs3_types::mount::dirpath;
use nfs3_types::nfs3::{GETATTR3args, READ3args, READ3res, WRITE3args, nfs_fh3};
use nfs3_types::rpc::accept_stat_data;
use nfs3_types::xdr_codec::{Unpack, Void};
use runcvm_nfs::{Export, rpc};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeSet;
use std::io::{Cursor, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a reply, or a change in the server's threads, may take.
const WAIT: Duration = Duration::from_secs(5);

/// The connection tests count the process's server threads: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The system's allocator, noting the largest request each thread makes.
struct Noting;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call goes to the system allocator as it came; the note is a
// thread-local Cell (const-initialised, no destructor), which allocates
// nothing.
unsafe impl GlobalAlloc for Noting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.with(|l| l.set(l.get().max(layout.size())));
        // SAFETY: the caller's contract, passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.with(|l| l.set(l.get().max(layout.size())));
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.with(|l| l.set(l.get().max(new_size)));
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Noting = Noting;

/// A client of the server at `address` whose replies may take [`WAIT`].
fn client_of(address: SocketAddr) -> Client {
    let client = Client::to(address);
    client.stream.set_read_timeout(Some(WAIT)).unwrap();
    client
}

/// The next reply's xid and body, which must be a success; `None` if none
/// comes within the stream's read timeout.
fn reply(client: &mut Client) -> Option<(u32, Cursor<Vec<u8>>)> {
    let (xid, status, body) = client.receive()?;
    assert!(matches!(status, accept_stat_data::SUCCESS), "call {xid}: {status:?}");
    Some((xid, body))
}

/// Sends a READ of `file` without waiting for it; its xid.
fn send_read(client: &mut Client, file: &nfs_fh3) -> u32 {
    let args = READ3args {
        file: file.clone(),
        offset: 0,
        count: 16,
    };
    client.send(nfs3_types::nfs3::PROGRAM, 6, &args)
}

/// The NFS NULL procedure, which does nothing: answered, it shows the
/// connection is served.
fn null(client: &mut Client) {
    let (status, _) = client.call(nfs3_types::nfs3::PROGRAM, 0, &Void);
    assert!(matches!(status, accept_stat_data::SUCCESS), "NULL: {status:?}");
}

/// A server of `exports` on the loopback, as the tests start one; its
/// address.
fn serve(exports: Vec<Export>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    runcvm_nfs::serve(listener, exports, runcvm_nfs::Peers::default())
        .unwrap()
        .address
}

/// A server of one empty temporary folder, `/data`; the folder lives as
/// long as the returned guard.
fn serve_a_folder() -> (tempfile::TempDir, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let address = serve(vec![Export {
        name: "/data".into(),
        path: dir.path().to_owned(),
        read_only: false,
    }]);
    (dir, address)
}

/// The data of a READ's reply.
fn read_data(body: &mut Cursor<Vec<u8>>) -> Vec<u8> {
    match READ3res::unpack(body).unwrap().0 {
        READ3res::Ok(ok) => ok.data.as_ref().to_vec(),
        READ3res::Err((e, _)) => panic!("READ failed: {e}"),
    }
}

fn require_root() {
    runcvm_test_infra::tier::require_root("the NFS connection tests (credentials)");
}

/// What the file `slow` of [`export_with_a_slow_file`] holds.
const SLOW_BYTES: &[u8] = b"at last";

/// An export holding a regular file `slow`, the client that mounted it,
/// the export's root, the file's handle and its path.
fn export_with_a_slow_file() -> (tempfile::TempDir, Client, nfs_fh3, nfs_fh3, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("slow");
    std::fs::write(&path, SLOW_BYTES).unwrap();
    let address = serve(vec![Export {
        name: "/data".into(),
        path: dir.path().to_owned(),
        read_only: false,
    }]);
    let mut client = client_of(address);
    let root = client.mount("/data");
    let file = client.lookup(&root, "slow").unwrap();
    (dir, client, root, file, path)
}

/// A write lease on a file, held by this process: any open of the file
/// (the server's for a READ among them, though it is in this process too)
/// waits until the lease is released, or for the kernel's
/// `fs.lease-break-time` (45 s by default). Released when dropped, as
/// closing its descriptor releases it.
struct Lease {
    file: std::fs::File,
}

impl Lease {
    /// Takes a write lease on `path`, which nothing else may have open
    /// (the server's `O_PATH` descriptors do not count).
    fn take(path: &Path) -> Self {
        // The kernel tells the holder to give the lease up with SIGIO,
        // whose default action ends the process. These tests run one at a
        // time, and no other wants SIGIO.
        // SAFETY: SIG_IGN runs no handler, so nothing runs in a signal
        // context.
        unsafe { nix::sys::signal::signal(nix::sys::signal::Signal::SIGIO, nix::sys::signal::SigHandler::SigIgn) }
            .unwrap();
        // Open for reading only: a write lease needs no open for writing
        // but the holder's, and the holder owns the file (or has
        // CAP_LEASE).
        let file = std::fs::File::open(path).unwrap();
        Self::set(&file, libc::F_WRLCK).expect("a write lease on the file (are leases enabled, fs.leases-enable?)");
        Self { file }
    }

    fn set(file: &std::fs::File, lease: libc::c_int) -> std::io::Result<()> {
        // SAFETY: F_SETLEASE takes an int, no memory, on a descriptor that
        // `file` keeps open.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, lease) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// Gives the lease up: the opens that wait for it go on.
    fn release(self) {
        Self::set(&self.file, libc::F_UNLCK).unwrap();
    }
}

/// Threads of this process with this name.
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|task| std::fs::read_to_string(task.path().join("comm")).is_ok_and(|comm| comm.trim_end() == name))
        .count()
}

/// Waits until `check` holds of the number of threads named `name`.
fn threads_become(name: &str, check: impl Fn(usize) -> bool) -> usize {
    let deadline = Instant::now() + WAIT;
    loop {
        let count = threads_named(name);
        if check(count) || Instant::now() >= deadline {
            return count;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A READ of a file on which the test holds a write lease waits in the
/// server's open of the file until the test releases the lease; a GETATTR
/// sent after it on the same connection is answered meanwhile, and the
/// READ after the release, with the file's bytes. Served in order, as the
/// server once did, the connection's one thread would sit in that open and
/// the GETATTR would not even be read, so no reply would come while the
/// lease is held and the test fails. (The READ must not be answered before
/// the release either: were the lease not to hold the server's open, the
/// test would no longer tell the two ways of serving apart, so it fails.)
#[test]
#[ignore = "T1: needs root; run scripts/test.sh"]
fn a_call_that_waits_does_not_hold_up_the_calls_after_it_on_its_connection() {
    require_root();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let (_dir, mut client, root, file, path) = export_with_a_slow_file();
    let lease = Lease::take(&path);
    let read = send_read(&mut client, &file);
    let getattr = client.send(nfs3_types::nfs3::PROGRAM, 1, &GETATTR3args { object: root });
    let (xid, _) = reply(&mut client).expect("the GETATTR was answered while the READ waits for the lease");
    assert_eq!(xid, getattr, "the READ was answered while the lease holds");
    client
        .stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        reply(&mut client).is_none(),
        "the READ was answered while the lease holds"
    );
    lease.release();
    client.stream.set_read_timeout(Some(WAIT)).unwrap();
    let (xid, mut body) = reply(&mut client).expect("the READ is answered once the lease is released");
    assert_eq!(xid, read);
    assert_eq!(read_data(&mut body), SLOW_BYTES);
}

/// Twelve READs that all wait (on a file the test holds a write lease on)
/// and a GETATTR: eight workers take eight READs, and the rest wait unread,
/// with no ninth worker and no reply; once the lease is released every
/// call is answered, each READ with the file's bytes; and when the client
/// closes the connection, its threads end. Served one at a time, as the
/// server once did, the connection's one thread would wait in the first
/// READ with no workers beside it, and the test fails; with a thread per
/// call, it fails on the ninth.
#[test]
#[ignore = "T1: needs root; run scripts/test.sh"]
fn a_connection_answers_at_most_eight_calls_at_once_and_its_threads_end_with_it() {
    require_root();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    assert_eq!(runcvm_nfs::WORKERS_PER_CONNECTION, 8);
    // Whatever an earlier test's connection left running, gone by now.
    let workers_before = threads_become("nfs-worker", |n| n == 0);
    let connections_before = threads_become("nfs-conn", |n| n == 0);
    let (_dir, mut client, root, file, path) = export_with_a_slow_file();
    let lease = Lease::take(&path);
    let mut sent: BTreeSet<u32> = (0..12).map(|_| send_read(&mut client, &file)).collect();
    let getattr = client.send(nfs3_types::nfs3::PROGRAM, 1, &GETATTR3args { object: root });
    sent.insert(getattr);
    let busy = workers_before + runcvm_nfs::WORKERS_PER_CONNECTION;
    assert_eq!(threads_become("nfs-worker", |n| n >= busy), busy);
    client
        .stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(reply(&mut client).is_none(), "a reply while every worker waits");
    assert_eq!(threads_named("nfs-worker"), busy, "a ninth worker");
    lease.release();
    client.stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut replied = BTreeSet::new();
    while replied.len() < 13 {
        let (xid, mut body) = reply(&mut client).expect("every call answered once the lease is released");
        assert!(replied.insert(xid), "call {xid} answered twice");
        if xid != getattr {
            assert_eq!(read_data(&mut body), SLOW_BYTES, "READ {xid}");
        }
    }
    assert_eq!(replied, sent);
    drop(client);
    assert_eq!(threads_become("nfs-worker", |n| n <= workers_before), workers_before);
    assert_eq!(
        threads_become("nfs-conn", |n| n <= connections_before),
        connections_before
    );
}

/// Whether the server at `address` closes a new connection without
/// answering the NULL call sent on it; panics if it neither answers nor
/// closes it within [`WAIT`].
fn refused(address: SocketAddr) -> bool {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    // The server may have closed the connection before the call goes out.
    let _ = rpc::write_record(&mut stream, &call_record(nfs3_types::nfs3::PROGRAM, 0, &[]));
    let mut first = [0u8; 1];
    match stream.read(&mut first) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            panic!("the server neither answered nor closed a connection within {WAIT:?}")
        }
        Err(_) => true,
    }
}

/// A server serves [`runcvm_nfs::MAX_CONNECTIONS`] connections at once:
/// with that many open and served (each has had its NULL call answered),
/// one more is closed without an answer to its call; once one of the first
/// ends, a new connection is served again. Without the limit the extra
/// connection would be answered; with a slot never given back, the last
/// one would not.
#[test]
#[ignore = "T1: needs root; run scripts/test.sh"]
fn a_server_serves_a_bounded_number_of_connections_and_frees_a_slot_when_one_ends() {
    require_root();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let (_dir, address) = serve_a_folder();
    let mut open: Vec<Client> = (0..runcvm_nfs::MAX_CONNECTIONS)
        .map(|_| {
            let mut client = client_of(address);
            null(&mut client);
            client
        })
        .collect();
    assert!(refused(address), "a connection beyond the limit was answered");
    drop(open.pop());
    let deadline = Instant::now() + WAIT;
    while refused(address) {
        assert!(
            Instant::now() < deadline,
            "no connection served within {WAIT:?} after one ended"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(open);
}

/// The write timeout of this process's socket from `local` to `peer`, as
/// `getsockopt(SO_SNDTIMEO)` tells it; `None` if none is set, and a panic
/// if there is no such socket.
fn write_timeout_of_socket(local: SocketAddr, peer: SocketAddr) -> Option<Duration> {
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<RawFd>() else {
            continue;
        };
        if !std::fs::read_link(entry.path()).is_ok_and(|to| to.to_string_lossy().starts_with("socket:")) {
            continue;
        }
        // A copy of the descriptor, closed here, to ask the socket about.
        // SAFETY: dup takes any number and either fails or returns a new
        // descriptor that nothing else holds.
        let copy = unsafe { libc::dup(fd) };
        if copy < 0 {
            continue;
        }
        // SAFETY: `copy` is open (dup returned it) and owned by nothing
        // else; it is a socket (any other kind fails the calls below).
        let socket = TcpStream::from(unsafe { OwnedFd::from_raw_fd(copy) });
        if socket.local_addr().ok() == Some(local) && socket.peer_addr().ok() == Some(peer) {
            return socket.write_timeout().unwrap();
        }
    }
    panic!("no socket from {local} to {peer} in this process")
}

/// The server's end of a connection has [`runcvm_nfs::WRITE_TIMEOUT`] as
/// its write timeout (SO_SNDTIMEO): a client that stops reading its
/// replies would otherwise hold a worker in its write, and with the
/// writer's lock every other worker and the reader, so the connection would
/// never end; with it the write fails and the connection ends. Waiting
/// that long is more than a test should, so the test asks the server's
/// socket (in this process) for its timeout.
#[test]
#[ignore = "T1: needs root; run scripts/test.sh"]
fn the_servers_end_of_a_connection_gives_up_on_a_reply_after_the_write_timeout() {
    require_root();
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let (_dir, address) = serve_a_folder();
    let mut client = client_of(address);
    // Answered: the server has set its end up.
    null(&mut client);
    let local = client.stream.local_addr().unwrap();
    assert_eq!(write_timeout_of_socket(address, local), Some(runcvm_nfs::WRITE_TIMEOUT));
    assert_eq!(write_timeout_of_socket(local, address), None, "the client's end");
}

/// XDR of an opaque: its length, the bytes, padding.
fn opaque(bytes: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out.resize(out.len().next_multiple_of(4), 0);
    out
}

/// A call record as the Linux client frames one (AUTH_UNIX, one group),
/// then `args`.
fn call_record(program: u32, procedure: u32, args: &[u8]) -> Vec<u8> {
    let mut credential = Vec::new();
    for word in [0, 5] {
        credential.extend_from_slice(&u32::to_be_bytes(word));
    }
    credential.extend_from_slice(b"guest\0\0\0");
    for word in [1000, 1000, 1, 1000] {
        credential.extend_from_slice(&u32::to_be_bytes(word));
    }
    let mut out = Vec::new();
    for word in [7, 0, 2, program, 3, procedure, 1] {
        out.extend_from_slice(&u32::to_be_bytes(word));
    }
    out.extend(opaque(&credential));
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(args);
    out
}

/// Overwrites the word at `at` with a length as large as a length can be.
fn forged(mut record: Vec<u8>, at: usize) -> Vec<u8> {
    record[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    record
}

/// Each length a call carries, forged to claim 4 GiB: the call is refused
/// and nothing near that size is asked of the allocator. `nfs3_types` on
/// its own allocates an opaque's claimed length, and reserves a claimed
/// count of groups, before it reads them: 4 GiB and 16 GiB here, which
/// this test notes (or, where the system refuses them, dies of).
#[test]
fn a_forged_length_is_refused_without_allocating_what_it_claims() {
    let handle = opaque(&[7; 32]);
    let getattr = call_record(nfs3_types::nfs3::PROGRAM, 1, &handle);
    let mut write = handle.clone();
    write.extend_from_slice(&[0; 16]);
    write.extend(opaque(b"data"));
    let write = call_record(nfs3_types::nfs3::PROGRAM, 7, &write);
    let mount = call_record(nfs3_types::mount::PROGRAM, 1, &opaque(b"/data"));
    let header = getattr.len() - handle.len();
    LARGEST.with(|l| l.set(0));
    // The credential, its machine name, its groups; the verifier.
    for at in [28, 36, 56, header - 4] {
        assert!(rpc::parse_call(forged(getattr.clone(), at)).is_none(), "length at {at}");
    }
    // A handle, a WRITE's data, a MOUNT's path.
    let mut call = rpc::parse_call(forged(getattr.clone(), header)).unwrap();
    assert!(rpc::args::<GETATTR3args>(&mut call).is_none());
    let mut call = rpc::parse_call(forged(write.clone(), write.len() - 8)).unwrap();
    assert!(rpc::args::<WRITE3args<'static>>(&mut call).is_none());
    let mut call = rpc::parse_call(forged(mount.clone(), header)).unwrap();
    assert!(rpc::args::<dirpath<'static>>(&mut call).is_none());
    let largest = LARGEST.with(Cell::get);
    assert!(largest < 4096, "the largest allocation was {largest} bytes");
    // The same calls, unforged, decode.
    let mut call = rpc::parse_call(getattr).unwrap();
    assert_eq!(call.caller.groups, [1000]);
    assert!(rpc::args::<GETATTR3args>(&mut call).is_some());
    let mut call = rpc::parse_call(write).unwrap();
    let Some(WRITE3args { data, .. }) = rpc::args::<WRITE3args<'static>>(&mut call) else {
        panic!("the WRITE decodes")
    };
    assert_eq!(data.as_ref(), b"data");
    assert!(rpc::args::<dirpath<'static>>(&mut rpc::parse_call(mount).unwrap()).is_some());
}
