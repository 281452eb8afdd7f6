//! Byte strings that survive JSON exactly.
//!
//! Arguments, environment entries and paths are bytes on Linux, not UTF-8.
//! A value that is valid UTF-8 is written as a plain JSON string (so
//! `debugfs -R "cat /.runcvm/entrypoint"` stays readable); any other value is
//! written as `{"hex": "..."}`.

use serde::de::{self, Deserializer};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// An exact byte string, such as one `argv` element or one `KEY=value`.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct ByteString(pub Vec<u8>);

impl ByteString {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_os_str(&self) -> &OsStr {
        OsStr::from_bytes(&self.0)
    }
}

impl fmt::Debug for ByteString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0.escape_ascii().to_string())
    }
}

impl fmt::Display for ByteString {
    /// Shown as the shell would need it typed: printable ASCII as is,
    /// everything else escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.escape_ascii())
    }
}

impl From<&str> for ByteString {
    fn from(s: &str) -> Self {
        Self(s.as_bytes().to_vec())
    }
}

impl From<String> for ByteString {
    fn from(s: String) -> Self {
        Self(s.into_bytes())
    }
}

impl From<Vec<u8>> for ByteString {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

impl From<OsString> for ByteString {
    fn from(s: OsString) -> Self {
        Self(s.into_vec())
    }
}

impl From<&OsStr> for ByteString {
    fn from(s: &OsStr) -> Self {
        Self(s.as_bytes().to_vec())
    }
}

impl Serialize for ByteString {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => serializer.serialize_str(text),
            Err(_) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("hex", &to_hex(&self.0))?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for ByteString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ByteStringVisitor)
    }
}

struct ByteStringVisitor;

impl<'de> de::Visitor<'de> for ByteStringVisitor {
    type Value = ByteString;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or {\"hex\": \"...\"}")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteString, E> {
        Ok(ByteString::from(v))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<ByteString, A::Error> {
        let key: String = map.next_key()?.ok_or_else(|| de::Error::missing_field("hex"))?;
        if key != "hex" {
            return Err(de::Error::unknown_field(&key, &["hex"]));
        }
        let hex: String = map.next_value()?;
        if map.next_key::<String>()?.is_some() {
            return Err(de::Error::custom("a byte string has only the \"hex\" field"));
        }
        from_hex(&hex)
            .map(ByteString)
            .ok_or_else(|| de::Error::custom(format!("{hex:?} is not an even run of hex digits")))
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_is_a_plain_string_and_other_bytes_are_hex() {
        let text = serde_json::to_string(&ByteString::from("a b")).unwrap();
        assert_eq!(text, r#""a b""#);
        let raw = serde_json::to_string(&ByteString(vec![0xff, 0x00, b'a'])).unwrap();
        assert_eq!(raw, r#"{"hex":"ff0061"}"#);
        let back: ByteString = serde_json::from_str(&raw).unwrap();
        assert_eq!(back.0, vec![0xff, 0x00, b'a']);
    }

    #[test]
    fn malformed_hex_is_refused() {
        assert!(serde_json::from_str::<ByteString>(r#"{"hex":"f"}"#).is_err());
        assert!(serde_json::from_str::<ByteString>(r#"{"hex":"zz"}"#).is_err());
        assert!(serde_json::from_str::<ByteString>(r#"{"base64":"AA=="}"#).is_err());
        assert!(serde_json::from_str::<ByteString>("12").is_err());
    }
}
