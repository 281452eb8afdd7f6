//! The NFS server at the protocol level, without a VM: a minimal client
//! speaks MOUNT and NFS over TCP on loopback. Root only (the server takes on
//! callers' credentials); run through `scripts/test.sh`.

#![allow(clippy::unwrap_used)]

#[path = "support/client.rs"]
mod client;

use client::Client;
use nfs3_types::mount::{dirpath, mountres3};
use nfs3_types::nfs3::*;
use nfs3_types::rpc::{accept_stat_data, auth_unix};
use nfs3_types::xdr_codec::{Opaque, Unpack};
use runcvm_nfs::{Export, rpc};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

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

/// An fsGroup volume: kubelet makes its folder set-group-ID and owned by
/// the fsGroup; a folder made in it keeps the bit (knfsd creates with
/// umask 0 and does not chmod afterwards), so files in new subfolders
/// belong to the fsGroup too. Modes are exactly what the caller asked.
#[test]
#[ignore = "T1: needs root; run scripts/test.sh"]
fn folders_made_in_an_fs_group_volume_keep_its_group() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(dir.path(), Some(0), Some(2000)).unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o2775)).unwrap();
    let mut client = Client::connect(vec![export("/data", dir.path(), false)]);
    let root = client.mount("/data");
    client.auth = auth_unix {
        uid: 1000,
        gid: 1000,
        gids: vec![1000, 2000],
        ..auth_unix::default()
    };
    let sub = client.mkdir(&root, "sub", 0o775).unwrap();
    let meta = std::fs::metadata(dir.path().join("sub")).unwrap();
    assert_eq!(
        meta.mode() & 0o7777,
        0o2775,
        "the set-group-ID bit or the asked mode was lost"
    );
    assert_eq!(meta.gid(), 2000);
    let created = sattr3 {
        mode: Nfs3Option::Some(0o664),
        ..sattr3::default()
    };
    client.create_how(&sub, "file", createhow3::GUARDED(created)).unwrap();
    let meta = std::fs::metadata(dir.path().join("sub/file")).unwrap();
    assert_eq!((meta.gid(), meta.mode() & 0o7777), (2000, 0o664));
}

/// A handle names its inode wherever it goes: a host-side rename (log
/// rotation on a hostPath) and a hard link whose first name is removed
/// keep writes landing in the file; only its last name going makes it stale.
#[test]
#[ignore = "T1: needs root; run scripts/test.sh"]
fn handles_follow_their_file_through_renames_and_links() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("old")).unwrap();
    let mut client = Client::connect(vec![export("/data", dir.path(), false)]);
    let root = client.mount("/data");
    let file = client.create(&root, "app.log").unwrap();
    std::fs::rename(dir.path().join("app.log"), dir.path().join("old/app.log.1")).unwrap();
    assert_eq!(client.write(&file, b"after the rename").unwrap(), 16);
    assert_eq!(
        std::fs::read(dir.path().join("old/app.log.1")).unwrap(),
        b"after the rename"
    );
    std::fs::hard_link(dir.path().join("old/app.log.1"), dir.path().join("kept")).unwrap();
    std::fs::remove_file(dir.path().join("old/app.log.1")).unwrap();
    assert_eq!(client.write(&file, b"after the link").unwrap(), 14);
    assert_eq!(std::fs::read(dir.path().join("kept")).unwrap(), b"after the linkme");
    std::fs::remove_file(dir.path().join("kept")).unwrap();
    assert_eq!(client.getattr(&file).err(), Some(nfsstat3::NFS3ERR_STALE));
}

/// The owner's write of its 0444 file works in a pod that dropped every
/// capability (no CAP_DAC_OVERRIDE for root's open), and leaves the mode.
#[test]
#[ignore = "T1: needs root; run scripts/test.sh"]
fn the_owner_writes_its_read_only_file_without_capabilities() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    // Capabilities are per thread: the server's threads, started from one
    // that dropped them, inherit what it keeps (changing ids only); this
    // thread keeps its own to set the scene.
    let exports = vec![export("/data", dir.path(), false)];
    let mut client = std::thread::spawn(move || {
        drop_file_capabilities();
        Client::connect(exports)
    })
    .join()
    .unwrap();
    let root = client.mount("/data");
    client.as_user(1000, 1000);
    let file = client.create(&root, "object").unwrap();
    let path = dir.path().join("object");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o444)).unwrap();
    assert_eq!(client.write(&file, b"packed").unwrap(), 6);
    assert_eq!(std::fs::read(&path).unwrap(), b"packed");
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o444);
    client.as_user(1001, 1001);
    assert_eq!(client.write(&file, b"x"), Err(nfsstat3::NFS3ERR_ACCES));
}

/// Keeps this thread's CAP_SETUID and CAP_SETGID (to act as callers), drops
/// the rest from its effective and permitted sets.
fn drop_file_capabilities() {
    const VERSION_3: u32 = 0x2008_0522;
    let keep: u32 = (1 << 7) | (1 << 6);
    let header = [VERSION_3, 0u32];
    // CAP_SETUID (7) and CAP_SETGID (6).
    // effective, permitted, inheritable for capabilities 0-31, then 32-63.
    let data = [keep, keep, 0u32, 0, 0, 0];
    // SAFETY: capset reads the header and two data structs (the arrays
    // above have that layout), alive for the call; it changes this thread.
    let rc = unsafe { libc::syscall(libc::SYS_capset, header.as_ptr(), data.as_ptr()) };
    assert_eq!(rc, 0, "capset: {}", std::io::Error::last_os_error());
}

/// EXCLUSIVE create keeps its verifier: the same create sent again (a
/// retransmission) succeeds with the same file, another one finds it there.
#[test]
#[ignore = "T1: needs root; run scripts/test.sh"]
fn an_exclusive_create_sent_again_is_the_same_create() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut client = Client::connect(vec![export("/data", dir.path(), false)]);
    let root = client.mount("/data");
    let verifier = createverf3(*b"\x81once\x00\x01\x02");
    let first = client
        .create_how(&root, "lock", createhow3::EXCLUSIVE(verifier))
        .unwrap();
    let again = client
        .create_how(&root, "lock", createhow3::EXCLUSIVE(verifier))
        .unwrap();
    assert_eq!(first.data.as_ref(), again.data.as_ref());
    let other = createverf3(*b"another!");
    assert_eq!(
        client.create_how(&root, "lock", createhow3::EXCLUSIVE(other)),
        Err(nfsstat3::NFS3ERR_EXIST)
    );
}

/// A WRITE says what it did: DATA_SYNC when only the data was synced,
/// FILE_SYNC when the file was, UNSTABLE when nothing was.
#[test]
#[ignore = "T1: needs root; run scripts/test.sh"]
fn a_write_answers_how_stable_it_made_the_data() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut client = Client::connect(vec![export("/data", dir.path(), false)]);
    let root = client.mount("/data");
    let file = client.create(&root, "data").unwrap();
    for stable in [stable_how::UNSTABLE, stable_how::DATA_SYNC, stable_how::FILE_SYNC] {
        assert_eq!(client.write_stable(&file, b"x", stable).unwrap(), stable);
    }
}

/// Nested exports (`/a` a folder, `/b` a folder inside it): a folder of `/b`
/// moved out of it through `/a` keeps its handle, and `..` from it is
/// refused rather than climbing towards the host's `/`.
#[test]
#[ignore = "T1: needs root; run scripts/test.sh"]
fn dot_dot_from_a_folder_moved_out_of_its_export_goes_nowhere() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sub/d")).unwrap();
    let mut client = Client::connect(vec![
        export("/a", dir.path(), false),
        export("/b", &dir.path().join("sub"), false),
    ]);
    let a = client.mount("/a");
    let b = client.mount("/b");
    let d = client.lookup(&b, "d").unwrap();
    let sub = client.lookup(&a, "sub").unwrap();
    let rename = RENAME3args {
        from: diropargs3 {
            dir: sub,
            name: filename3(Opaque::owned(b"d".to_vec())),
        },
        to: diropargs3 {
            dir: a.clone(),
            name: filename3(Opaque::owned(b"d".to_vec())),
        },
    };
    assert!(matches!(client.nfs::<RENAME3res>(14, &rename), Nfs3Result::Ok(_)));
    assert!(client.getattr(&d).is_ok(), "the moved folder's handle still names it");
    assert_eq!(client.lookup(&d, ".."), Err(nfsstat3::NFS3ERR_ACCES));
}

/// READ and WRITE are for regular files: a FIFO is refused at once (an
/// open would wait for a writer, holding a worker for ever), and an
/// UNCHECKED create over one is `NFS3ERR_EXIST`, never an open of it.
#[test]
#[ignore = "T1: needs root; run scripts/test.sh"]
fn special_files_are_not_opened_for_io() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    nix::unistd::mkfifo(
        &dir.path().join("pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o666),
    )
    .unwrap();
    let mut client = Client::connect(vec![export("/data", dir.path(), false)]);
    let root = client.mount("/data");
    let pipe = client.lookup(&root, "pipe").unwrap();
    let read = READ3args {
        file: pipe.clone(),
        offset: 0,
        count: 10,
    };
    assert!(matches!(
        client.nfs::<READ3res>(6, &read),
        Nfs3Result::Err((nfsstat3::NFS3ERR_INVAL, _))
    ));
    assert_eq!(client.write(&pipe, b"x"), Err(nfsstat3::NFS3ERR_INVAL));
    assert_eq!(client.create(&root, "pipe"), Err(nfsstat3::NFS3ERR_EXIST));
}

/// An UNCHECKED create of a file that exists is that file, with only the
/// size applied (as knfsd): no open for writing that its mode would refuse.
#[test]
#[ignore = "T1: needs root; run scripts/test.sh"]
fn an_unchecked_create_of_an_existing_file_is_that_file() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kept"), b"contents").unwrap();
    std::fs::set_permissions(
        dir.path().join("kept"),
        std::os::unix::fs::PermissionsExt::from_mode(0o444),
    )
    .unwrap();
    let mut client = Client::connect(vec![export("/data", dir.path(), false)]);
    let root = client.mount("/data");
    client.as_user(1000, 1000);
    let found = client.lookup(&root, "kept").unwrap();
    let created = client.create(&root, "kept").unwrap();
    assert_eq!(found.data.as_ref(), created.data.as_ref());
    assert_eq!(std::fs::read(dir.path().join("kept")).unwrap(), b"contents");
}
