//! The NFS server at the protocol level, without a VM: a minimal client
//! speaks MOUNT and NFS over TCP on loopback. Root only (the server takes on
//! callers' credentials); run through `scripts/test.sh`.

#![allow(clippy::unwrap_used)]

use nfs3_types::mount::{dirpath, mountres3};
use nfs3_types::nfs3::*;
use nfs3_types::rpc::{accept_stat_data, auth_unix, call_body, msg_body, opaque_auth, reply_body, rpc_msg};
use nfs3_types::xdr_codec::{Opaque, Pack, Unpack};
use runcvm_nfs::{Export, rpc};
use std::io::Cursor;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

struct Client {
    stream: TcpStream,
    xid: u32,
    auth: auth_unix,
}

impl Client {
    fn connect(exports: Vec<Export>) -> Self {
        Self::connect_with(exports, runcvm_nfs::Peers::default())
    }

    fn connect_with(exports: Vec<Export>, peers: runcvm_nfs::Peers) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = runcvm_nfs::serve(listener, exports, peers).unwrap();
        Self {
            stream: TcpStream::connect(server.address).unwrap(),
            xid: 0,
            auth: auth_unix::default(),
        }
    }

    fn as_user(&mut self, uid: u32, gid: u32) {
        self.auth = auth_unix {
            uid,
            gid,
            gids: vec![gid],
            ..auth_unix::default()
        };
    }

    /// Sends a call and returns the accept status and the reply body.
    fn call(&mut self, program: u32, procedure: u32, args: &impl Pack) -> (accept_stat_data, Cursor<Vec<u8>>) {
        self.xid += 1;
        let message = rpc_msg {
            xid: self.xid,
            body: msg_body::CALL(call_body {
                rpcvers: 2,
                prog: program,
                vers: 3,
                proc: procedure,
                cred: opaque_auth::auth_unix(&self.auth),
                verf: opaque_auth::default(),
            }),
        };
        let mut body = Vec::new();
        message.pack(&mut body).unwrap();
        args.pack(&mut body).unwrap();
        rpc::write_record(&mut self.stream, &body).unwrap();
        let record = rpc::read_record(&mut self.stream).unwrap().unwrap();
        let mut cursor = Cursor::new(record);
        let (reply, _) = rpc_msg::unpack(&mut cursor).unwrap();
        assert_eq!(reply.xid, self.xid);
        let msg_body::REPLY(reply_body::MSG_ACCEPTED(accepted)) = reply.body else {
            panic!("call denied")
        };
        (accepted.reply_data, cursor)
    }

    fn nfs<T: Unpack>(&mut self, procedure: u32, args: &impl Pack) -> T {
        let (status, mut body) = self.call(PROGRAM, procedure, args);
        assert!(matches!(status, accept_stat_data::SUCCESS), "{status:?}");
        T::unpack(&mut body).unwrap().0
    }

    fn mount(&mut self, export: &str) -> nfs_fh3 {
        let path = dirpath(Opaque::owned(export.as_bytes().to_vec()));
        let (status, mut body) = self.call(nfs3_types::mount::PROGRAM, 1, &path);
        assert!(matches!(status, accept_stat_data::SUCCESS));
        match mountres3::unpack(&mut body).unwrap().0 {
            mountres3::Ok(ok) => nfs_fh3 { data: ok.fhandle.0 },
            mountres3::Err(e) => panic!("mount {export}: {e}"),
        }
    }

    fn lookup(&mut self, dir: &nfs_fh3, name: &str) -> Result<nfs_fh3, nfsstat3> {
        let args = LOOKUP3args {
            what: diropargs3 {
                dir: dir.clone(),
                name: filename3(Opaque::owned(name.as_bytes().to_vec())),
            },
        };
        match self.nfs::<LOOKUP3res>(3, &args) {
            Nfs3Result::Ok(ok) => Ok(ok.object),
            Nfs3Result::Err((e, _)) => Err(e),
        }
    }

    fn create(&mut self, dir: &nfs_fh3, name: &str) -> Result<nfs_fh3, nfsstat3> {
        let args = CREATE3args {
            where_: diropargs3 {
                dir: dir.clone(),
                name: filename3(Opaque::owned(name.as_bytes().to_vec())),
            },
            how: createhow3::UNCHECKED(sattr3::default()),
        };
        match self.nfs::<CREATE3res>(8, &args) {
            Nfs3Result::Ok(ok) => match ok.obj {
                Nfs3Option::Some(handle) => Ok(handle),
                Nfs3Option::None => Err(nfsstat3::NFS3ERR_SERVERFAULT),
            },
            Nfs3Result::Err((e, _)) => Err(e),
        }
    }

    fn write(&mut self, file: &nfs_fh3, data: &[u8]) -> Result<u32, nfsstat3> {
        let args = WRITE3args {
            file: file.clone(),
            offset: 0,
            count: u32::try_from(data.len()).unwrap(),
            stable: stable_how::FILE_SYNC,
            data: Opaque::owned(data.to_vec()),
        };
        match self.nfs::<WRITE3res>(7, &args) {
            Nfs3Result::Ok(ok) => Ok(ok.count),
            Nfs3Result::Err((e, _)) => Err(e),
        }
    }

    fn getattr(&mut self, object: &nfs_fh3) -> Result<fattr3, nfsstat3> {
        match self.nfs::<GETATTR3res>(1, &GETATTR3args { object: object.clone() }) {
            Nfs3Result::Ok(ok) => Ok(ok.obj_attributes),
            Nfs3Result::Err((e, _)) => Err(e),
        }
    }
}

fn export(name: &str, path: &Path, read_only: bool) -> Export {
    Export {
        name: name.to_owned(),
        path: path.to_owned(),
        read_only,
    }
}

fn require_root() {
    runcvm_test_infra::tier::require_root("the NFS protocol tests (credentials)");
}

/// A pod with its own user namespace (`hostUsers: false`): its volumes'
/// ids as an id-mapped mount of the pod's shows them.
#[test]
#[ignore = "T1: needs root; run scripts/test.sh"]
fn a_pods_user_namespace_sees_its_volumes_as_an_id_mapped_mount_shows_them() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(dir.path().join("app-owned"), b"x").unwrap();
    std::os::unix::fs::chown(dir.path().join("app-owned"), Some(1000), Some(1000)).unwrap();
    let range = runcvm_nfs::IdRange {
        node: 0,
        client: 65536,
        size: 65536,
    };
    let peers = runcvm_nfs::Peers {
        id_map: Some(runcvm_nfs::IdMap {
            uids: vec![range],
            gids: vec![range],
        }),
        ..runcvm_nfs::Peers::default()
    };
    let mut client = Client::connect_with(vec![export("/data", dir.path(), false)], peers);
    let root = client.mount("/data");
    // The node's root owns the folder: the pod's root (65536 to the guest
    // kernel) sees it as its own and writes there; the file is the node's
    // root's on the node.
    assert_eq!(client.getattr(&root).map(|a| (a.uid, a.gid)).unwrap(), (65536, 65536));
    client.as_user(65536, 65536);
    let made = client.create(&root, "by-pod-root").unwrap();
    assert_eq!(client.getattr(&made).map(|a| (a.uid, a.gid)).unwrap(), (65536, 65536));
    let on_node = std::fs::metadata(dir.path().join("by-pod-root")).unwrap();
    assert_eq!((on_node.uid(), on_node.gid()), (0, 0));
    let app = client.lookup(&root, "app-owned").unwrap();
    assert_eq!(client.getattr(&app).map(|a| a.uid).unwrap(), 65536 + 1000);
    // The guest's own root is outside the pod's mapping: nobody, who may
    // not write in a folder only root may.
    client.as_user(0, 0);
    assert!(client.create(&root, "by-guest-root").is_err());
    assert!(!dir.path().join("by-guest-root").exists());
}

/// A non-root workload's volumes: the guest's root, or any id but the
/// workload's, acts as nobody.
#[test]
#[ignore = "T1: needs root; run scripts/test.sh"]
fn ids_other_than_the_workloads_act_as_nobody() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let peers = runcvm_nfs::Peers {
        ids: Some(runcvm_nfs::KnownIds {
            uids: vec![1000],
            gids: vec![1001],
        }),
        ..runcvm_nfs::Peers::default()
    };
    let mut client = Client::connect_with(vec![export("/data", dir.path(), false)], peers);
    let root = client.mount("/data");
    client.as_user(0, 0);
    let by_root = client.create(&root, "by-root").unwrap();
    assert_eq!(
        client.getattr(&by_root).map(|a| (a.uid, a.gid)).unwrap(),
        (65534, 65534)
    );
    client.as_user(1000, 1001);
    let mine = client.create(&root, "mine").unwrap();
    assert_eq!(client.getattr(&mine).map(|a| (a.uid, a.gid)).unwrap(), (1000, 1001));
    // A root-only file stays out of the guest root's reach.
    std::fs::write(dir.path().join("secret"), b"s").unwrap();
    std::fs::set_permissions(
        dir.path().join("secret"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(dir.path().join("secret")).unwrap().uid(), 0);
}

#[test]
#[ignore = "T1: needs root; run scripts/test.sh"]
fn files_are_created_with_the_callers_credentials() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let mut client = Client::connect(vec![export("/data", dir.path(), false)]);
    let root = client.mount("/data");
    client.as_user(1000, 1001);
    let file = client.create(&root, "mine").unwrap();
    assert_eq!(client.write(&file, b"hello").unwrap(), 5);
    let attrs = client.getattr(&file).unwrap();
    assert_eq!((attrs.uid, attrs.gid, attrs.size), (1000, 1001, 5));
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir.path().join("mine")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1000, 1001));
    assert_eq!(std::fs::read(dir.path().join("mine")).unwrap(), b"hello");
}

#[test]
#[ignore = "T1: needs root; run scripts/test.sh"]
fn a_read_only_export_is_refused_by_the_server_itself() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("existing"), b"x").unwrap();
    let mut client = Client::connect(vec![export("/config", dir.path(), true)]);
    let root = client.mount("/config");
    assert_eq!(client.create(&root, "new"), Err(nfsstat3::NFS3ERR_ROFS));
    let existing = client.lookup(&root, "existing").unwrap();
    assert_eq!(client.write(&existing, b"y"), Err(nfsstat3::NFS3ERR_ROFS));
    assert_eq!(std::fs::read(dir.path().join("existing")).unwrap(), b"x");
}

#[test]
#[ignore = "T1: needs root; run scripts/test.sh"]
fn nothing_outside_the_export_can_be_reached() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/etc", dir.path().join("escape")).unwrap();
    let mut client = Client::connect(vec![export("/data", dir.path(), false)]);
    let root = client.mount("/data");
    // The symlink itself is visible (the guest resolves it, in the guest)...
    let link = client.lookup(&root, "escape").unwrap();
    assert_eq!(client.getattr(&link).unwrap().type_, ftype3::NF3LNK);
    // ...but the server never follows it, nor climbs out with "..".
    assert!(client.lookup(&link, "passwd").is_err());
    let up = client.lookup(&root, "..").unwrap();
    assert_eq!(
        client.getattr(&up).unwrap().fileid,
        client.getattr(&root).unwrap().fileid
    );
    assert_eq!(client.lookup(&root, "a/b"), Err(nfsstat3::NFS3ERR_INVAL));
    assert_eq!(client.create(&root, "../x"), Err(nfsstat3::NFS3ERR_INVAL));
}

#[test]
#[ignore = "T1: needs root; run scripts/test.sh"]
fn handles_go_stale_when_the_host_replaces_the_file() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"one").unwrap();
    let mut client = Client::connect(vec![export("/data", dir.path(), false)]);
    let root = client.mount("/data");
    let file = client.lookup(&root, "f").unwrap();
    // Replaced the way editors and kubelet do it: a new inode renamed over.
    std::fs::write(dir.path().join("f.new"), b"two").unwrap();
    std::fs::rename(dir.path().join("f.new"), dir.path().join("f")).unwrap();
    assert_eq!(client.getattr(&file).err(), Some(nfsstat3::NFS3ERR_STALE));
    let forged = nfs_fh3 {
        data: Opaque::owned(vec![0; 32]),
    };
    assert_eq!(client.getattr(&forged).err(), Some(nfsstat3::NFS3ERR_STALE));
    let short = nfs_fh3 {
        data: Opaque::owned(vec![1, 2, 3]),
    };
    assert_eq!(client.getattr(&short).err(), Some(nfsstat3::NFS3ERR_BADHANDLE));
}

#[test]
#[ignore = "T1: needs root; run scripts/test.sh"]
fn unknown_programs_procedures_and_garbage_are_answered_not_dropped() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut client = Client::connect(vec![export("/data", dir.path(), false)]);
    assert!(matches!(
        client.call(100_000, 0, &nfs3_types::xdr_codec::Void).0,
        accept_stat_data::PROG_UNAVAIL
    ));
    assert!(matches!(
        client.call(PROGRAM, 99, &nfs3_types::xdr_codec::Void).0,
        accept_stat_data::PROC_UNAVAIL
    ));
    assert!(matches!(
        client.call(PROGRAM, 1, &nfs3_types::xdr_codec::Void).0,
        accept_stat_data::GARBAGE_ARGS
    ));
    let path = dirpath(Opaque::owned(b"/nope".to_vec()));
    let (_, mut body) = client.call(nfs3_types::mount::PROGRAM, 1, &path);
    assert!(matches!(mountres3::unpack(&mut body).unwrap().0, mountres3::Err(_)));
}

#[test]
#[ignore = "T1: needs root; run scripts/test.sh"]
fn a_server_whose_listener_fails_says_so() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&listener);
    let server = runcvm_nfs::serve(
        listener,
        vec![export("/data", dir.path(), false)],
        runcvm_nfs::Peers::default(),
    )
    .unwrap();
    // SAFETY: shuts down the server's own listening socket, which the server
    // thread keeps open; accept then fails for good.
    unsafe { libc::shutdown(raw, libc::SHUT_RDWR) };
    let reason = server.stopped.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
    assert!(reason.contains("accepting connections failed"), "{reason}");
}

#[test]
#[ignore = "T1: needs root; run scripts/test.sh"]
fn only_admitted_peers_are_served() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    for peers in [
        runcvm_nfs::Peers {
            addresses: vec![],
            privileged_port: true,
            ids: None,
            id_map: None,
        },
        runcvm_nfs::Peers {
            addresses: vec!["10.0.0.5".parse().unwrap()],
            privileged_port: false,
            ids: None,
            id_map: None,
        },
    ] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = runcvm_nfs::serve(listener, vec![export("/data", dir.path(), false)], peers.clone()).unwrap();
        // An unprivileged port on loopback: refused either way.
        let mut stream = TcpStream::connect(server.address).unwrap();
        let mut byte = [0u8; 1];
        use std::io::Read;
        let _ = rpc::write_record(&mut stream, &[0; 40]);
        assert_eq!(
            stream.read(&mut byte).unwrap_or(0),
            0,
            "{peers:?}: the connection is closed unanswered"
        );
    }
}

/// Entries removed between two READDIR calls (as `rm -r` does while it
/// reads) do not make the listing skip the others.
#[test]
#[ignore = "T1: needs root; run scripts/test.sh"]
fn a_listing_resumes_in_place_when_entries_go_away() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    for i in 0..20 {
        std::fs::write(dir.path().join(format!("f{i:02}")), b"").unwrap();
    }
    let mut client = Client::connect(vec![export("/data", dir.path(), false)]);
    let root = client.mount("/data");
    let read = |client: &mut Client, cookie: u64, count: u32| -> (Vec<(String, u64)>, bool) {
        let args = READDIR3args {
            dir: root.clone(),
            cookie,
            cookieverf: cookieverf3::default(),
            count,
        };
        match client.nfs::<READDIR3res>(16, &args) {
            Nfs3Result::Ok(ok) => (
                ok.reply
                    .entries
                    .0
                    .iter()
                    .map(|e| (String::from_utf8_lossy(e.name.as_ref()).into_owned(), e.cookie))
                    .collect(),
                ok.reply.eof,
            ),
            Nfs3Result::Err((e, _)) => panic!("{e}"),
        }
    };
    let (first, eof) = read(&mut client, 0, 300);
    assert!(
        !eof && !first.is_empty() && first.len() < 20,
        "a first page only: {}",
        first.len()
    );
    for (name, _) in &first {
        std::fs::remove_file(dir.path().join(name)).unwrap();
    }
    let mut seen: Vec<String> = first.iter().map(|(n, _)| n.clone()).collect();
    let mut cookie = first.last().unwrap().1;
    loop {
        let (page, eof) = read(&mut client, cookie, 4096);
        seen.extend(page.iter().map(|(n, _)| n.clone()));
        if let Some((_, last)) = page.last() {
            cookie = *last;
        }
        if eof {
            break;
        }
    }
    seen.sort();
    let all: Vec<String> = (0..20).map(|i| format!("f{i:02}")).collect();
    assert_eq!(seen, all, "every entry is listed once");
}

/// The owner may write a file whatever its mode, as with knfsd.
#[test]
#[ignore = "T1: needs root; run scripts/test.sh"]
fn the_owner_writes_a_read_only_file_it_owns() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let mut client = Client::connect(vec![export("/data", dir.path(), false)]);
    let root = client.mount("/data");
    client.as_user(1000, 1000);
    let file = client.create(&root, "object").unwrap();
    std::fs::set_permissions(
        dir.path().join("object"),
        std::os::unix::fs::PermissionsExt::from_mode(0o444),
    )
    .unwrap();
    assert_eq!(client.write(&file, b"packed").unwrap(), 6);
    // Someone else may not.
    std::os::unix::fs::chown(dir.path().join("object"), Some(2000), Some(2000)).unwrap();
    assert_eq!(client.write(&file, b"x"), Err(nfsstat3::NFS3ERR_ACCES));
}

/// One folder behind two exports (repeated or nested volumes): each
/// export's handles stay good.
#[test]
#[ignore = "T1: needs root; run scripts/test.sh"]
fn one_folder_behind_two_exports() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut client = Client::connect(vec![export("/a", dir.path(), false), export("/b", dir.path(), true)]);
    let a = client.mount("/a");
    let b = client.mount("/b");
    assert!(client.getattr(&a).is_ok(), "the first export's root went stale");
    assert!(client.getattr(&b).is_ok());
    assert_eq!(client.create(&b, "x"), Err(nfsstat3::NFS3ERR_ROFS));
    assert!(client.create(&a, "x").is_ok());
}
