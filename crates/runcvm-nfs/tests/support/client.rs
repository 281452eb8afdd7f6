//! A minimal NFSv3 client over TCP for the protocol and connection tests
//! and the volume server's benchmark (included by `#[path]`): one call at a
//! time (`call`), or calls sent ahead of their replies (`send`, `receive`).

#![allow(dead_code, clippy::unwrap_used)]

use nfs3_types::mount::{dirpath, mountres3};
use nfs3_types::nfs3::*;
use nfs3_types::rpc::{accept_stat_data, auth_unix, call_body, msg_body, opaque_auth, reply_body, rpc_msg};
use nfs3_types::xdr_codec::{Opaque, Pack, Unpack};
use runcvm_nfs::{Export, rpc};
use std::io::Cursor;
use std::net::{SocketAddr, TcpListener, TcpStream};

pub struct Client {
    pub stream: TcpStream,
    xid: u32,
    pub auth: auth_unix,
}

impl Client {
    pub fn connect(exports: Vec<Export>) -> Self {
        Self::connect_with(exports, runcvm_nfs::Peers::default())
    }

    pub fn connect_with(exports: Vec<Export>, peers: runcvm_nfs::Peers) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = runcvm_nfs::serve(listener, exports, peers).unwrap();
        Self::to(server.address)
    }

    /// A client of the server at `address`.
    pub fn to(address: SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(address).unwrap(),
            xid: 0,
            auth: auth_unix::default(),
        }
    }

    pub fn as_user(&mut self, uid: u32, gid: u32) {
        self.auth = auth_unix {
            uid,
            gid,
            gids: vec![gid],
            ..auth_unix::default()
        };
    }

    /// Sends a call and returns the accept status and the reply body.
    pub fn call(&mut self, program: u32, procedure: u32, args: &impl Pack) -> (accept_stat_data, Cursor<Vec<u8>>) {
        let xid = self.send(program, procedure, args);
        let (replied, status, body) = self.receive().expect("a reply");
        assert_eq!(replied, xid);
        (status, body)
    }

    /// Sends a call without waiting for its reply; returns its xid.
    pub fn send(&mut self, program: u32, procedure: u32, args: &impl Pack) -> u32 {
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
        self.xid
    }

    /// The next reply, whichever call it answers: its xid, accept status
    /// and body; `None` if none comes within the stream's read timeout.
    pub fn receive(&mut self) -> Option<(u32, accept_stat_data, Cursor<Vec<u8>>)> {
        let record = match rpc::read_record(&mut self.stream) {
            Ok(record) => record.expect("the server closed the connection"),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return None;
            }
            Err(e) => panic!("reading a reply: {e}"),
        };
        let mut cursor = Cursor::new(record);
        let (reply, _) = rpc_msg::unpack(&mut cursor).unwrap();
        let msg_body::REPLY(reply_body::MSG_ACCEPTED(accepted)) = reply.body else {
            panic!("call {} denied", reply.xid)
        };
        Some((reply.xid, accepted.reply_data, cursor))
    }

    pub fn nfs<T: Unpack>(&mut self, procedure: u32, args: &impl Pack) -> T {
        let (status, mut body) = self.call(PROGRAM, procedure, args);
        assert!(matches!(status, accept_stat_data::SUCCESS), "{status:?}");
        T::unpack(&mut body).unwrap().0
    }

    pub fn mount(&mut self, export: &str) -> nfs_fh3 {
        let path = dirpath(Opaque::owned(export.as_bytes().to_vec()));
        let (status, mut body) = self.call(nfs3_types::mount::PROGRAM, 1, &path);
        assert!(matches!(status, accept_stat_data::SUCCESS));
        match mountres3::unpack(&mut body).unwrap().0 {
            mountres3::Ok(ok) => nfs_fh3 { data: ok.fhandle.0 },
            mountres3::Err(e) => panic!("mount {export}: {e}"),
        }
    }

    pub fn lookup(&mut self, dir: &nfs_fh3, name: &str) -> Result<nfs_fh3, nfsstat3> {
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

    pub fn create(&mut self, dir: &nfs_fh3, name: &str) -> Result<nfs_fh3, nfsstat3> {
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

    pub fn write(&mut self, file: &nfs_fh3, data: &[u8]) -> Result<u32, nfsstat3> {
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

    pub fn create_how(&mut self, dir: &nfs_fh3, name: &str, how: createhow3) -> Result<nfs_fh3, nfsstat3> {
        let args = CREATE3args {
            where_: diropargs3 {
                dir: dir.clone(),
                name: filename3(Opaque::owned(name.as_bytes().to_vec())),
            },
            how,
        };
        match self.nfs::<CREATE3res>(8, &args) {
            Nfs3Result::Ok(ok) => match ok.obj {
                Nfs3Option::Some(handle) => Ok(handle),
                Nfs3Option::None => Err(nfsstat3::NFS3ERR_SERVERFAULT),
            },
            Nfs3Result::Err((e, _)) => Err(e),
        }
    }

    pub fn mkdir(&mut self, dir: &nfs_fh3, name: &str, mode: u32) -> Result<nfs_fh3, nfsstat3> {
        let args = MKDIR3args {
            where_: diropargs3 {
                dir: dir.clone(),
                name: filename3(Opaque::owned(name.as_bytes().to_vec())),
            },
            attributes: sattr3 {
                mode: Nfs3Option::Some(mode),
                ..sattr3::default()
            },
        };
        match self.nfs::<MKDIR3res>(9, &args) {
            Nfs3Result::Ok(ok) => match ok.obj {
                Nfs3Option::Some(handle) => Ok(handle),
                Nfs3Option::None => Err(nfsstat3::NFS3ERR_SERVERFAULT),
            },
            Nfs3Result::Err((e, _)) => Err(e),
        }
    }

    /// Writes `data` at 0 as `stable` asks; returns what the server says it did.
    pub fn write_stable(&mut self, file: &nfs_fh3, data: &[u8], stable: stable_how) -> Result<stable_how, nfsstat3> {
        let args = WRITE3args {
            file: file.clone(),
            offset: 0,
            count: u32::try_from(data.len()).unwrap(),
            stable,
            data: Opaque::owned(data.to_vec()),
        };
        match self.nfs::<WRITE3res>(7, &args) {
            Nfs3Result::Ok(ok) => Ok(ok.committed),
            Nfs3Result::Err((e, _)) => Err(e),
        }
    }

    pub fn getattr(&mut self, object: &nfs_fh3) -> Result<fattr3, nfsstat3> {
        match self.nfs::<GETATTR3res>(1, &GETATTR3args { object: object.clone() }) {
            Nfs3Result::Ok(ok) => Ok(ok.obj_attributes),
            Nfs3Result::Err((e, _)) => Err(e),
        }
    }
}
