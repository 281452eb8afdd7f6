//! ONC RPC over TCP (RFC 5531): record marking, calls in, replies out.
//!
//! A record is one or more fragments, each behind a 4-byte header whose top
//! bit marks the last fragment and whose other 31 bits give its length.
//!
//! No length read off the wire is trusted: `nfs3_types` allocates what an
//! opaque's length field claims (`vec![0u8; len]`) and reserves what a
//! `Vec<u32>`'s count claims (`Vec::with_capacity`) before it reads a byte
//! of either, so four forged bytes would have it allocate up to 4 GiB (an
//! opaque) or 16 GiB (the groups of AUTH_UNIX) for a record of at most
//! 4 MiB, and abort the process wherever the allocation fails. So every
//! length is first checked against the bytes that are there ([`Xdr`]): the
//! call's header and credentials in [`parse_call`], with RFC 5531's bounds,
//! and each procedure's arguments in [`args`].

use nfs3_types::mount::dirpath;
use nfs3_types::nfs3::{
    ACCESS3args, COMMIT3args, CREATE3args, FSINFO3args, FSSTAT3args, GETATTR3args, LINK3args, LOOKUP3args, MKDIR3args,
    PATHCONF3args, READ3args, READDIR3args, READDIRPLUS3args, READLINK3args, REMOVE3args, RENAME3args, RMDIR3args,
    SETATTR3args, SYMLINK3args, WRITE3args,
};
use nfs3_types::rpc::{
    accept_stat_data, accepted_reply, auth_flavor, auth_unix, msg_body, opaque_auth, reply_body, rpc_msg,
};
use nfs3_types::xdr_codec::{Pack, Unpack};
use std::io::{self, Cursor, Read, Write};

/// Records larger than this are refused (a WRITE of 1 MiB plus headers fits).
pub const MAX_RECORD: usize = 4 << 20;
const LAST_FRAGMENT: u32 = 1 << 31;
/// The largest body of a credential or verifier (RFC 5531, `opaque_auth`).
pub const MAX_AUTH_BODY: usize = 400;
/// The longest machine name in AUTH_UNIX credentials (RFC 5531, `authsys_parms`).
pub const MAX_MACHINE_NAME: usize = 255;
/// The most supplementary groups AUTH_UNIX credentials carry (RFC 5531;
/// the Linux client sends at most these).
pub const MAX_GROUPS: usize = 16;

/// Reads one record; `Ok(None)` at a clean end of stream.
pub fn read_record(input: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut record = Vec::new();
    loop {
        let mut header = [0u8; 4];
        match input.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && record.is_empty() => return Ok(None),
            Err(e) => return Err(e),
        }
        let header = u32::from_be_bytes(header);
        let len = (header & !LAST_FRAGMENT) as usize;
        if record.len() + len > MAX_RECORD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "RPC record over the size limit",
            ));
        }
        // Grown as the bytes arrive, so a header that claims more than the
        // peer sends costs nothing.
        let wanted = u64::try_from(len).unwrap_or(u64::MAX);
        let read = input.by_ref().take(wanted).read_to_end(&mut record)?;
        if read < len {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if header & LAST_FRAGMENT != 0 {
            return Ok(Some(record));
        }
    }
}

/// Writes `body` as one record in one fragment.
pub fn write_record(output: &mut impl Write, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "reply too large"))?;
    let mut framed = Vec::with_capacity(body.len() + 4);
    framed.extend_from_slice(&(len | LAST_FRAGMENT).to_be_bytes());
    framed.extend_from_slice(body);
    output.write_all(&framed)
}

/// Who is calling, from AUTH_UNIX; AUTH_NULL callers are `nobody`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

impl Caller {
    pub const NOBODY: u32 = 65534;

    pub fn nobody() -> Self {
        Self {
            uid: Self::NOBODY,
            gid: Self::NOBODY,
            groups: Vec::new(),
        }
    }
}

/// One decoded call.
#[derive(Debug)]
pub struct Call {
    pub xid: u32,
    pub program: u32,
    pub version: u32,
    pub procedure: u32,
    pub caller: Caller,
    /// The procedure's arguments, still encoded.
    pub args: Cursor<Vec<u8>>,
}

/// Decodes a call; `None` for a record that is not a well-formed call,
/// credentials beyond RFC 5531's bounds included.
pub fn parse_call(record: Vec<u8>) -> Option<Call> {
    check_header(&mut Xdr(&record))?;
    let mut cursor = Cursor::new(record);
    let (message, _) = rpc_msg::unpack(&mut cursor).ok()?;
    let msg_body::CALL(call) = message.body else {
        return None;
    };
    let caller = match call.cred.flavor {
        auth_flavor::AUTH_UNIX => {
            check_auth_unix(&mut Xdr(call.cred.body.as_ref()))?;
            let (auth, _) = auth_unix::unpack(&mut Cursor::new(call.cred.body.as_ref())).ok()?;
            Caller {
                uid: auth.uid,
                gid: auth.gid,
                groups: auth.gids,
            }
        }
        _ => Caller::nobody(),
    };
    Some(Call {
        xid: message.xid,
        program: call.prog,
        version: call.vers,
        procedure: call.proc,
        caller,
        args: cursor,
    })
}

/// A reply record: accepted with `status`, then `body` if it succeeded.
pub fn reply(xid: u32, status: accept_stat_data, body: Option<&dyn PackDyn>) -> Vec<u8> {
    let message = rpc_msg {
        xid,
        body: msg_body::REPLY(reply_body::MSG_ACCEPTED(accepted_reply {
            verf: opaque_auth::default(),
            reply_data: status,
        })),
    };
    let mut out = Vec::with_capacity(message.packed_size() + body.map_or(0, PackDyn::size));
    // Packing into a Vec cannot fail.
    let _ = message.pack(&mut out);
    if let Some(body) = body {
        body.pack_into(&mut out);
    }
    out
}

/// Object-safe packing, so replies of any type go through one function.
pub trait PackDyn {
    fn size(&self) -> usize;
    fn pack_into(&self, out: &mut Vec<u8>);
}

impl<T: Pack> PackDyn for T {
    fn size(&self) -> usize {
        self.packed_size()
    }
    fn pack_into(&self, out: &mut Vec<u8>) {
        let _ = self.pack(out);
    }
}

/// Decodes a procedure's arguments; `None` if they are malformed, a length
/// that claims more than the call holds included.
pub fn args<T: Args>(call: &mut Call) -> Option<T> {
    let at = usize::try_from(call.args.position()).ok()?;
    T::check(&mut Xdr(call.args.get_ref().get(at..)?))?;
    T::unpack(&mut call.args).ok().map(|(value, _)| value)
}

/// The header of a call up to its arguments: a call (a reply would decode
/// other fields), whose credential and verifier are within RFC 5531's bound
/// and within the record.
fn check_header(xdr: &mut Xdr<'_>) -> Option<()> {
    const CALL: usize = 0;
    xdr.skip(4)?; // xid
    if xdr.word()? != CALL {
        return None;
    }
    xdr.skip(16)?; // rpcvers, prog, vers, proc
    for _credential_then_verifier in 0..2 {
        xdr.skip(4)?; // flavor
        xdr.opaque(MAX_AUTH_BODY)?;
    }
    Some(())
}

/// An AUTH_UNIX credential's body (`authsys_parms`): a machine name and a
/// list of groups within RFC 5531's bounds and within the body.
fn check_auth_unix(xdr: &mut Xdr<'_>) -> Option<()> {
    xdr.skip(4)?; // stamp
    xdr.opaque(MAX_MACHINE_NAME)?;
    xdr.skip(8)?; // uid, gid
    let groups = xdr.word()?;
    if groups > MAX_GROUPS {
        return None;
    }
    xdr.skip(groups * 4)
}

/// Encoded XDR, walked without decoding it to check that every length in it
/// stays within the bytes that follow (see the module's comment). A walk
/// that succeeds has seen the same layout `nfs3_types` decodes.
#[derive(Debug)]
pub struct Xdr<'a>(&'a [u8]);

impl Xdr<'_> {
    fn word(&mut self) -> Option<usize> {
        let (word, rest) = self.0.split_first_chunk::<4>()?;
        self.0 = rest;
        usize::try_from(u32::from_be_bytes(*word)).ok()
    }

    fn skip(&mut self, len: usize) -> Option<()> {
        self.0 = self.0.get(len..)?;
        Some(())
    }

    /// A variable-length opaque or string of at most `max` bytes.
    fn opaque(&mut self, max: usize) -> Option<()> {
        let len = self.word()?;
        if len > max {
            return None;
        }
        self.skip(len.checked_next_multiple_of(4)?)
    }

    /// A handle, a name or data: bounded only by the bytes that follow.
    fn bytes(&mut self) -> Option<()> {
        self.opaque(usize::MAX)
    }

    /// An optional value (`set_mode3` and the like) of `len` bytes.
    fn optional(&mut self, len: usize) -> Option<()> {
        match self.word()? {
            0 => Some(()),
            1 => self.skip(len),
            _ => None,
        }
    }

    /// A folder's handle and a name in it (`diropargs3`).
    fn dir_op(&mut self) -> Option<()> {
        self.bytes()?;
        self.bytes()
    }

    /// Attributes to set (`sattr3`).
    fn sattr(&mut self) -> Option<()> {
        self.optional(4)?; // mode
        self.optional(4)?; // uid
        self.optional(4)?; // gid
        self.optional(8)?; // size
        for _atime_then_mtime in 0..2 {
            match self.word()? {
                // DONT_CHANGE, SET_TO_SERVER_TIME
                0 | 1 => {}
                // SET_TO_CLIENT_TIME, an nfstime3
                2 => self.skip(8)?,
                _ => return None,
            }
        }
        Some(())
    }
}

/// Arguments the server decodes, with the layout of their lengths.
pub trait Args: Unpack {
    /// Walks an encoded value; `None` where a length overruns what follows.
    fn check(xdr: &mut Xdr<'_>) -> Option<()>;
}

/// `Args` for each type, from how its whole encoding is walked (fixed-size
/// fields too, so a test can hold each walk to what `nfs3_types` encodes).
macro_rules! args_walked {
    ($($($ty:ty),+ => |$xdr:ident| $walk:expr;)+) => {
        $($(
            impl Args for $ty {
                fn check($xdr: &mut Xdr<'_>) -> Option<()> {
                    $walk
                }
            }
        )+)+
    };
}

args_walked! {
    u32 => |xdr| xdr.skip(4);
    dirpath<'static> => |xdr| xdr.bytes();
    GETATTR3args, READLINK3args, FSSTAT3args, FSINFO3args, PATHCONF3args => |xdr| xdr.bytes();
    ACCESS3args => |xdr| {
        xdr.bytes()?;
        xdr.skip(4) // access
    };
    READ3args, COMMIT3args => |xdr| {
        xdr.bytes()?;
        xdr.skip(12) // offset, count
    };
    READDIR3args => |xdr| {
        xdr.bytes()?;
        xdr.skip(20) // cookie, cookieverf, count
    };
    READDIRPLUS3args => |xdr| {
        xdr.bytes()?;
        xdr.skip(24) // cookie, cookieverf, dircount, maxcount
    };
    SETATTR3args => |xdr| {
        xdr.bytes()?;
        xdr.sattr()?;
        xdr.optional(8) // guard, an nfstime3
    };
    LOOKUP3args<'static>, REMOVE3args<'static>, RMDIR3args<'static> => |xdr| xdr.dir_op();
    WRITE3args<'static> => |xdr| {
        xdr.bytes()?;
        xdr.skip(16)?; // offset, count, stable
        xdr.bytes()
    };
    CREATE3args<'static> => |xdr| {
        xdr.dir_op()?;
        match xdr.word()? {
            // UNCHECKED, GUARDED
            0 | 1 => xdr.sattr(),
            // EXCLUSIVE, a createverf3
            2 => xdr.skip(8),
            _ => None,
        }
    };
    MKDIR3args<'static> => |xdr| {
        xdr.dir_op()?;
        xdr.sattr()
    };
    SYMLINK3args<'static> => |xdr| {
        xdr.dir_op()?;
        xdr.sattr()?;
        xdr.bytes()
    };
    RENAME3args<'static, 'static> => |xdr| {
        xdr.dir_op()?;
        xdr.dir_op()
    };
    LINK3args<'static> => |xdr| {
        xdr.bytes()?;
        xdr.dir_op()
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use nfs3_types::nfs3::{
        Nfs3Option, createhow3, createverf3, diropargs3, filename3, nfs_fh3, nfspath3, nfstime3, sattr3, set_atime,
        set_mtime, stable_how, symlinkdata3,
    };
    use nfs3_types::rpc::call_body;
    use nfs3_types::xdr_codec::Opaque;

    /// Encodes a call as the Linux client would.
    pub fn encode_call(xid: u32, program: u32, procedure: u32, auth: &auth_unix, args: &[u8]) -> Vec<u8> {
        let message = rpc_msg {
            xid,
            body: msg_body::CALL(call_body {
                rpcvers: 2,
                prog: program,
                vers: 3,
                proc: procedure,
                cred: opaque_auth::auth_unix(auth),
                verf: opaque_auth::default(),
            }),
        };
        let mut out = Vec::new();
        message.pack(&mut out).unwrap();
        out.extend_from_slice(args);
        out
    }

    #[test]
    fn records_span_fragments_and_calls_carry_credentials() {
        let auth = auth_unix {
            uid: 1000,
            gid: 1001,
            gids: vec![44],
            ..auth_unix::default()
        };
        let call = encode_call(7, 100_003, 1, &auth, &[0, 0, 0, 9]);
        let (first, second) = call.split_at(10);
        let mut wire = Vec::new();
        wire.extend_from_slice(&u32::try_from(first.len()).unwrap().to_be_bytes());
        wire.extend_from_slice(first);
        wire.extend_from_slice(&(u32::try_from(second.len()).unwrap() | LAST_FRAGMENT).to_be_bytes());
        wire.extend_from_slice(second);
        let record = read_record(&mut wire.as_slice()).unwrap().unwrap();
        let mut parsed = parse_call(record).unwrap();
        assert_eq!((parsed.xid, parsed.program, parsed.procedure), (7, 100_003, 1));
        assert_eq!(
            parsed.caller,
            Caller {
                uid: 1000,
                gid: 1001,
                groups: vec![44]
            }
        );
        assert_eq!(args::<u32>(&mut parsed), Some(9));
        assert!(read_record(&mut &[][..]).unwrap().is_none());
    }

    #[test]
    fn oversized_records_are_refused() {
        let header = (u32::try_from(MAX_RECORD).unwrap() + 1) | LAST_FRAGMENT;
        assert!(read_record(&mut &header.to_be_bytes()[..]).is_err());
    }

    /// XDR of an opaque: its length, the bytes, padding.
    fn opaque(bytes: &[u8]) -> Vec<u8> {
        let mut out = u32::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
        out.extend_from_slice(bytes);
        out.resize(out.len().next_multiple_of(4), 0);
        out
    }

    /// An AUTH_UNIX credential's body, field by field.
    fn auth_body(machine: &[u8], groups: &[u32]) -> Vec<u8> {
        let mut out = 7u32.to_be_bytes().to_vec();
        out.extend(opaque(machine));
        out.extend_from_slice(&1000u32.to_be_bytes());
        out.extend_from_slice(&1000u32.to_be_bytes());
        out.extend_from_slice(&u32::try_from(groups.len()).unwrap().to_be_bytes());
        for group in groups {
            out.extend_from_slice(&group.to_be_bytes());
        }
        out
    }

    /// A GETATTR call record with these credential and verifier bodies.
    fn call_with(credential: &[u8], verifier: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for word in [9, 0, 2, 100_003, 3, 1, 1] {
            out.extend_from_slice(&u32::to_be_bytes(word));
        }
        out.extend(opaque(credential));
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend(opaque(verifier));
        out.extend(opaque(&[0; 32]));
        out
    }

    fn groups_of(record: Vec<u8>) -> Option<usize> {
        parse_call(record).map(|call| call.caller.groups.len())
    }

    #[test]
    fn credentials_beyond_rfc_5531s_bounds_make_the_call_malformed() {
        let sixteen: Vec<u32> = (1..=16).collect();
        let seventeen: Vec<u32> = (1..=17).collect();
        assert_eq!(groups_of(call_with(&auth_body(b"guest", &sixteen), &[])), Some(16));
        assert_eq!(groups_of(call_with(&auth_body(b"guest", &seventeen), &[])), None);
        assert_eq!(groups_of(call_with(&auth_body(&[b'm'; 255], &[1]), &[])), Some(1));
        assert_eq!(groups_of(call_with(&auth_body(&[b'm'; 256], &[1]), &[])), None);
        // A body of 400 bytes (credentials, then padding nfs3_types leaves
        // alone) is the most there may be, for either authenticator.
        let mut body = auth_body(b"guest", &[1]);
        body.resize(MAX_AUTH_BODY, 0);
        assert_eq!(groups_of(call_with(&body, &[])), Some(1));
        assert_eq!(groups_of(call_with(&auth_body(b"guest", &[1]), &[0; 400])), Some(1));
        body.resize(MAX_AUTH_BODY + 4, 0);
        assert_eq!(groups_of(call_with(&body, &[])), None);
        assert_eq!(groups_of(call_with(&auth_body(b"guest", &[1]), &[0; 404])), None);
    }

    #[test]
    fn lengths_that_claim_more_than_the_record_holds_are_refused() {
        let valid = call_with(&auth_body(b"guest", &[1]), &[]);
        let handle_length_at = valid.len() - 36;
        let forge = |at: usize, claim: u32| {
            let mut record = valid.clone();
            record[at..at + 4].copy_from_slice(&claim.to_be_bytes());
            record
        };
        // The credential, the verifier, then the machine name and the groups
        // inside the credential: each claims all the memory a length can.
        let credential_at = 28;
        let verifier_at = valid.len() - 40;
        let machine_at = credential_at + 8;
        let groups_at = machine_at + 4 + 8 + 8;
        for at in [credential_at, verifier_at, machine_at, groups_at] {
            assert!(parse_call(forge(at, u32::MAX)).is_none(), "a forged length at {at}");
        }
        // Arguments: a handle that claims one byte more than there is, then
        // all there is.
        let mut call = parse_call(forge(handle_length_at, 33)).unwrap();
        assert!(args::<GETATTR3args>(&mut call).is_none());
        let mut call = parse_call(forge(handle_length_at, u32::MAX)).unwrap();
        assert!(args::<GETATTR3args>(&mut call).is_none());
        // A record whose header claims 4 MiB that never come is refused
        // for what arrived.
        let short = [
            &(u32::try_from(MAX_RECORD).unwrap() | LAST_FRAGMENT).to_be_bytes()[..],
            &[1, 2, 3],
        ]
        .concat();
        let refused = read_record(&mut short.as_slice()).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::UnexpectedEof);
        // A reply is no call, whatever it holds.
        assert!(parse_call(forge(4, 1)).is_none());
        let mut call = parse_call(valid.clone()).unwrap();
        assert_eq!(args::<GETATTR3args>(&mut call).unwrap().object.data.len(), 32);
    }

    /// Each walk against what `nfs3_types` encodes: it covers the whole
    /// encoding (so it follows the same layout), decodes after it, and
    /// refuses the encoding cut short anywhere.
    fn walks_whole<T: Args + Pack>(value: &T) {
        let mut encoded = Vec::new();
        value.pack(&mut encoded).unwrap();
        let mut xdr = Xdr(&encoded);
        assert_eq!(T::check(&mut xdr), Some(()), "{}", std::any::type_name::<T>());
        assert!(xdr.0.is_empty(), "{} walked short", std::any::type_name::<T>());
        let mut call = parse_call(encode_call(1, 100_003, 0, &auth_unix::default(), &encoded)).unwrap();
        assert!(args::<T>(&mut call).is_some());
        for cut in 0..encoded.len() {
            assert_eq!(T::check(&mut Xdr(&encoded[..cut])), None);
        }
    }

    #[test]
    fn each_arguments_walk_follows_what_nfs3_types_encodes() {
        let fh = || nfs_fh3 {
            data: Opaque::owned(vec![7; 32]),
        };
        let name = |n: &[u8]| diropargs3 {
            dir: fh(),
            name: filename3(Opaque::owned(n.to_vec())),
        };
        let time = nfstime3 {
            seconds: 1,
            nseconds: 2,
        };
        let every = sattr3 {
            mode: Nfs3Option::Some(0o644),
            uid: Nfs3Option::Some(1),
            gid: Nfs3Option::Some(2),
            size: Nfs3Option::Some(3),
            atime: set_atime::SET_TO_CLIENT_TIME(time),
            mtime: set_mtime::SET_TO_SERVER_TIME,
        };
        walks_whole(&5u32);
        walks_whole(&dirpath(Opaque::owned(b"/data".to_vec())));
        walks_whole(&GETATTR3args { object: fh() });
        walks_whole(&READLINK3args { symlink: fh() });
        walks_whole(&FSSTAT3args { fsroot: fh() });
        walks_whole(&FSINFO3args { fsroot: fh() });
        walks_whole(&PATHCONF3args { object: fh() });
        walks_whole(&ACCESS3args {
            object: fh(),
            access: 1,
        });
        walks_whole(&READ3args {
            file: fh(),
            offset: 1,
            count: 2,
        });
        walks_whole(&COMMIT3args {
            file: fh(),
            offset: 1,
            count: 2,
        });
        walks_whole(&READDIR3args {
            dir: fh(),
            cookie: 1,
            cookieverf: nfs3_types::nfs3::cookieverf3([1; 8]),
            count: 2,
        });
        walks_whole(&READDIRPLUS3args {
            dir: fh(),
            cookie: 1,
            cookieverf: nfs3_types::nfs3::cookieverf3([1; 8]),
            dircount: 2,
            maxcount: 3,
        });
        for guard in [Nfs3Option::None, Nfs3Option::Some(time)] {
            walks_whole(&SETATTR3args {
                object: fh(),
                new_attributes: every.clone(),
                guard,
            });
        }
        walks_whole(&LOOKUP3args { what: name(b"a") });
        walks_whole(&REMOVE3args { object: name(b"ab") });
        walks_whole(&RMDIR3args { object: name(b"abcde") });
        walks_whole(&WRITE3args {
            file: fh(),
            offset: 1,
            count: 3,
            stable: stable_how::FILE_SYNC,
            data: Opaque::owned(b"abc".to_vec()),
        });
        for how in [
            createhow3::UNCHECKED(sattr3::default()),
            createhow3::GUARDED(every.clone()),
            createhow3::EXCLUSIVE(createverf3([3; 8])),
        ] {
            walks_whole(&CREATE3args {
                where_: name(b"f"),
                how,
            });
        }
        walks_whole(&MKDIR3args {
            where_: name(b"d"),
            attributes: every.clone(),
        });
        walks_whole(&SYMLINK3args {
            where_: name(b"l"),
            symlink: symlinkdata3 {
                symlink_attributes: every,
                symlink_data: nfspath3(Opaque::owned(b"target".to_vec())),
            },
        });
        walks_whole(&RENAME3args {
            from: name(b"a"),
            to: name(b"b"),
        });
        walks_whole(&LINK3args {
            file: fh(),
            link: name(b"hard"),
        });
    }
}
