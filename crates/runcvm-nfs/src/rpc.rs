//! ONC RPC over TCP (RFC 5531): record marking, calls in, replies out.
//!
//! A record is one or more fragments, each behind a 4-byte header whose top
//! bit marks the last fragment and whose other 31 bits give its length.

use nfs3_types::rpc::{
    accept_stat_data, accepted_reply, auth_flavor, auth_unix, msg_body, opaque_auth, reply_body, rpc_msg,
};
use nfs3_types::xdr_codec::{Pack, Unpack};
use std::io::{self, Cursor, Read, Write};

/// Records larger than this are refused (a WRITE of 1 MiB plus headers fits).
pub const MAX_RECORD: usize = 4 << 20;
const LAST_FRAGMENT: u32 = 1 << 31;

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
        let start = record.len();
        record.resize(start + len, 0);
        input.read_exact(&mut record[start..])?;
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

/// Decodes a call; `None` for a record that is not a well-formed call.
pub fn parse_call(record: Vec<u8>) -> Option<Call> {
    let mut cursor = Cursor::new(record);
    let (message, _) = rpc_msg::unpack(&mut cursor).ok()?;
    let msg_body::CALL(call) = message.body else {
        return None;
    };
    let caller = match call.cred.flavor {
        auth_flavor::AUTH_UNIX => {
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

/// Decodes a procedure's arguments.
pub fn args<T: Unpack>(call: &mut Call) -> Option<T> {
    T::unpack(&mut call.args).ok().map(|(value, _)| value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nfs3_types::rpc::call_body;

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
}
