//! Netlink messages and attributes: building and parsing, no I/O.
//!
//! A message is a 16-byte header (length, type, flags, sequence, port id, in
//! host byte order), a fixed family header, then attributes: `u16` length,
//! `u16` type, payload, padded to 4 bytes. Nested attributes carry more
//! attributes as their payload.

pub const NLMSG_HDRLEN: usize = 16;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;

pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_MULTI: u16 = 0x2;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_ROOT: u16 = 0x100;
pub const NLM_F_MATCH: u16 = 0x200;
pub const NLM_F_DUMP: u16 = NLM_F_ROOT | NLM_F_MATCH;
pub const NLM_F_REPLACE: u16 = 0x100;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;

/// Flag on a nested attribute's type.
pub const NLA_F_NESTED: u16 = 0x8000;

const fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// Builds one message: header, family header, attributes.
#[derive(Debug, Clone)]
pub struct MessageBuilder {
    buf: Vec<u8>,
    /// Start offsets of nested attributes still open.
    open: Vec<usize>,
}

impl MessageBuilder {
    pub fn new(kind: u16, flags: u16) -> Self {
        let mut buf = vec![0u8; NLMSG_HDRLEN];
        buf[4..6].copy_from_slice(&kind.to_ne_bytes());
        buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        Self { buf, open: Vec::new() }
    }

    /// Appends the family header (`ifinfomsg`, `rtmsg`, ...) as raw bytes.
    pub fn header(mut self, bytes: &[u8]) -> Self {
        self.buf.extend_from_slice(bytes);
        self.pad();
        self
    }

    pub fn attr(mut self, kind: u16, payload: &[u8]) -> Self {
        let len = u16::try_from(4 + payload.len()).expect("attribute under 64 KiB");
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
        self
    }

    pub fn attr_u32(self, kind: u16, value: u32) -> Self {
        self.attr(kind, &value.to_ne_bytes())
    }

    /// nf_tables numbers are big-endian.
    pub fn attr_be32(self, kind: u16, value: u32) -> Self {
        self.attr(kind, &value.to_be_bytes())
    }

    /// A NUL-terminated string.
    pub fn attr_str(self, kind: u16, value: &str) -> Self {
        let mut bytes = value.as_bytes().to_vec();
        bytes.push(0);
        self.attr(kind, &bytes)
    }

    /// Opens a nested attribute; close it with [`Self::end_nested`].
    pub fn begin_nested(mut self, kind: u16) -> Self {
        self.open.push(self.buf.len());
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        self
    }

    pub fn end_nested(mut self) -> Self {
        let start = self.open.pop().expect("end_nested without begin_nested");
        let len = u16::try_from(self.buf.len() - start).expect("nested attribute under 64 KiB");
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    /// Finishes the message with its sequence number.
    pub fn build(mut self, seq: u32) -> Vec<u8> {
        assert!(self.open.is_empty(), "unclosed nested attribute");
        let len = u32::try_from(self.buf.len()).expect("message under 4 GiB");
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }

    fn pad(&mut self) {
        self.buf.resize(align4(self.buf.len()), 0);
    }
}

/// One received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    /// Everything after the 16-byte header.
    pub payload: Vec<u8>,
}

/// Splits a datagram into messages; `None` if a length is inconsistent.
pub fn parse_messages(mut data: &[u8]) -> Option<Vec<Message>> {
    let mut messages = Vec::new();
    while data.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes(data[0..4].try_into().ok()?) as usize;
        if len < NLMSG_HDRLEN || len > data.len() {
            return None;
        }
        messages.push(Message {
            kind: u16::from_ne_bytes(data[4..6].try_into().ok()?),
            flags: u16::from_ne_bytes(data[6..8].try_into().ok()?),
            seq: u32::from_ne_bytes(data[8..12].try_into().ok()?),
            payload: data[NLMSG_HDRLEN..len].to_vec(),
        });
        data = &data[align4(len).min(data.len())..];
    }
    Some(messages)
}

/// Iterates the attributes in `data`: `(type without flags, payload)`.
pub fn attributes(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if data.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([data[0], data[1]]));
        let kind = u16::from_ne_bytes([data[2], data[3]]) & !NLA_F_NESTED;
        if len < 4 || len > data.len() {
            return None;
        }
        let payload = &data[4..len];
        data = &data[align4(len).min(data.len())..];
        Some((kind, payload))
    })
}

/// The first attribute of `kind`.
pub fn find_attribute(data: &[u8], kind: u16) -> Option<&[u8]> {
    attributes(data).find(|(k, _)| *k == kind).map(|(_, payload)| payload)
}

pub fn as_u32(payload: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(payload.get(..4)?.try_into().ok()?))
}

/// A NUL-terminated string attribute.
pub fn as_string(payload: &[u8]) -> String {
    let end = payload.iter().position(|b| *b == 0).unwrap_or(payload.len());
    String::from_utf8_lossy(&payload[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_header_padding_and_nesting() {
        let msg = MessageBuilder::new(16, NLM_F_REQUEST | NLM_F_ACK)
            .header(&[1, 2, 3])
            .attr_str(3, "br")
            .begin_nested(18)
            .attr_u32(1, 7)
            .end_nested()
            .build(42);
        assert_eq!(msg.len(), 16 + 4 + 8 + 4 + 8);
        assert_eq!(u32::from_ne_bytes(msg[0..4].try_into().unwrap()) as usize, msg.len());
        assert_eq!(u16::from_ne_bytes([msg[4], msg[5]]), 16);
        assert_eq!(u32::from_ne_bytes(msg[8..12].try_into().unwrap()), 42);
        let parsed = parse_messages(&msg).unwrap();
        assert_eq!(parsed.len(), 1);
        let attrs: Vec<_> = attributes(&parsed[0].payload[4..]).collect();
        assert_eq!(attrs[0], (3, &b"br\0"[..]));
        assert_eq!(attrs[1].0, 18);
        let inner: Vec<_> = attributes(attrs[1].1).collect();
        assert_eq!(inner, vec![(1, &7u32.to_ne_bytes()[..])]);
    }

    #[test]
    fn parses_several_messages_and_rejects_bad_lengths() {
        let mut data = MessageBuilder::new(NLMSG_DONE, NLM_F_MULTI).header(&[0; 4]).build(1);
        data.extend(MessageBuilder::new(24, 0).build(2));
        let parsed = parse_messages(&data).unwrap();
        assert_eq!(parsed.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2]);
        data[0] = 200;
        assert!(parse_messages(&data).is_none());
    }

    #[test]
    fn truncated_attributes_end_iteration() {
        let data = [8, 0, 1, 0, 1, 2];
        assert_eq!(attributes(&data).count(), 0);
        assert_eq!(as_string(b"eth0\0\0"), "eth0");
    }
}
