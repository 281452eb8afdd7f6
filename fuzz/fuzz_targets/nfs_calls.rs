//! The volumes' NFS server, one record at a time, as a connection feeds it:
//! ONC RPC and XDR decoding, then MOUNT and NFS procedures against a real
//! export (a temporary folder with a file, a folder and a symlink). Whatever
//! the bytes, the server answers or drops the call; it never panics, never
//! allocates what the wire merely claims, and never reaches outside the
//! export.
//!
//! An input whose first byte has its top bit clear is a call the target
//! frames itself, so that the fuzzer reaches the procedures: bits 0-4 are
//! the procedure, bit 5 picks MOUNT over NFS, bit 6 calls as uid and gid
//! 1000 (else root); the rest is the arguments, in which every
//! `fe ed fa ce` stands for the export's root handle (as XDR: length, then
//! the handle). Any other input is a whole record, header and all.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runcvm_nfs::Export;
use runcvm_nfs::fuzzing::Server;
use std::sync::OnceLock;

const NFS_PROGRAM: u32 = 100_003;
const MOUNT_PROGRAM: u32 = 100_005;
const HANDLE_MARKER: [u8; 4] = [0xfe, 0xed, 0xfa, 0xce];

struct Fixture {
    _dir: tempfile::TempDir,
    server: Server,
    /// The export's root handle, as XDR.
    root: Vec<u8>,
}

fn xdr_opaque(bytes: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(bytes.len()).expect("short").to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out.resize(out.len().div_ceil(4) * 4, 0);
    out
}

/// An RPC call as the Linux client frames one (AUTH_UNIX).
fn call(program: u32, procedure: u32, id: u32, args: &[u8]) -> Vec<u8> {
    let mut auth = Vec::new();
    auth.extend_from_slice(&0u32.to_be_bytes());
    auth.extend(xdr_opaque(b"guest"));
    auth.extend_from_slice(&id.to_be_bytes());
    auth.extend_from_slice(&id.to_be_bytes());
    auth.extend_from_slice(&0u32.to_be_bytes());
    let mut out = Vec::new();
    for word in [7, 0, 2, program, 3, procedure, 1] {
        out.extend_from_slice(&u32::to_be_bytes(word));
    }
    out.extend(xdr_opaque(&auth));
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(args);
    out
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a folder to export");
        std::fs::write(dir.path().join("file"), b"contents\n").expect("a file");
        std::fs::create_dir(dir.path().join("folder")).expect("a folder");
        std::os::unix::fs::symlink("file", dir.path().join("link")).expect("a symlink");
        let server = Server::new(vec![Export {
            name: "/data".into(),
            path: dir.path().to_owned(),
            read_only: false,
        }])
        .expect("the export");
        // MNT /data: the reply's mountres3 holds the root handle after the
        // reply header (24 bytes) and the status.
        let reply = server
            .answer(call(MOUNT_PROGRAM, 1, 0, &xdr_opaque(b"/data")))
            .expect("a reply to MNT");
        let len = u32::from_be_bytes(reply[28..32].try_into().expect("four bytes"));
        let handle = &reply[32..32 + usize::try_from(len).expect("small")];
        Fixture {
            _dir: dir,
            server,
            root: xdr_opaque(handle),
        }
    })
}

fn splice_root(args: &[u8], root: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(args.len());
    let mut at = 0;
    while at < args.len() {
        if args[at..].starts_with(&HANDLE_MARKER) {
            out.extend_from_slice(root);
            at += HANDLE_MARKER.len();
        } else {
            out.push(args[at]);
            at += 1;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let record = match data.split_first() {
        Some((&mode, args)) if mode & 0x80 == 0 => {
            let program = if mode & 0x20 == 0 { NFS_PROGRAM } else { MOUNT_PROGRAM };
            let id = if mode & 0x40 == 0 { 0 } else { 1000 };
            call(program, u32::from(mode & 0x1f), id, &splice_root(args, &fixture.root))
        }
        _ => data.to_vec(),
    };
    let _ = fixture.server.answer(record);
});
