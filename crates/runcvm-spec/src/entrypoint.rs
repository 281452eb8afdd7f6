//! `/.runcvm/entrypoint`: the container's original process, byte-exact.
//!
//! The guest's `[VM-START]` runner execs exactly this (argv, env, cwd, user),
//! never through a shell, so nothing is re-parsed on the way.

use crate::{ByteString, ProcessCapabilities};
use serde::{Deserialize, Serialize};

/// The format version written by this build; readers refuse other versions.
pub const ENTRYPOINT_VERSION: u32 = 1;

/// The process to run in the guest, as the OCI `process` object gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entrypoint {
    pub version: u32,
    /// `argv`; `args[0]` is looked up in the process env's `PATH` as runc does.
    pub args: Vec<ByteString>,
    /// `KEY=value` entries, exactly as given (duplicates and all).
    pub env: Vec<ByteString>,
    /// Absolute working directory.
    pub cwd: ByteString,
    pub uid: u32,
    pub gid: u32,
    #[serde(default)]
    pub additional_gids: Vec<u32>,
    /// Whether the process wants a terminal (`process.terminal`).
    #[serde(default)]
    pub terminal: bool,
    /// `process.noNewPrivileges` (`allowPrivilegeEscalation: false`): the
    /// process, in the guest, gains nothing from set-user-ID binaries or file
    /// capabilities.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_new_privileges: bool,
    /// `process.capabilities`: what the process may do in the guest, applied
    /// as runc applies it. None leaves the process what the guest's init
    /// has (every capability, as root): `runcvm run` and `runcvm exec`
    /// without `--caps`. From an OCI bundle it is always set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<ProcessCapabilities>,
}

/// Why an entrypoint file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum EntrypointError {
    /// entrypoint is not valid JSON of the expected shape
    #[error("entrypoint is not valid JSON of the expected shape")]
    Malformed(#[source] serde_json::Error),
    /// entrypoint has format version {found}, this build reads version {ENTRYPOINT_VERSION}
    #[error(
        "entrypoint has format version {found}, this build reads version {ENTRYPOINT_VERSION}: use the same runcvm build for host and guest"
    )]
    UnsupportedVersion { found: u32 },
    /// entrypoint has no arguments: there is no program to run
    #[error("entrypoint has no arguments: there is no program to run")]
    NoArgs,
    /// entrypoint cwd must be an absolute path
    #[error("entrypoint cwd {0} is not an absolute path")]
    RelativeCwd(ByteString),
}

impl Entrypoint {
    /// A process running `args` as root in `/` with the given env.
    pub fn new(args: Vec<ByteString>, env: Vec<ByteString>) -> Self {
        Self {
            version: ENTRYPOINT_VERSION,
            args,
            env,
            cwd: ByteString::from("/"),
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
            terminal: false,
            no_new_privileges: false,
            capabilities: None,
        }
    }

    /// Checks what serde cannot: version, a program to run, an absolute cwd.
    pub fn validate(&self) -> Result<(), EntrypointError> {
        if self.version != ENTRYPOINT_VERSION {
            return Err(EntrypointError::UnsupportedVersion { found: self.version });
        }
        if self.args.is_empty() {
            return Err(EntrypointError::NoArgs);
        }
        if !self.cwd.as_bytes().starts_with(b"/") {
            return Err(EntrypointError::RelativeCwd(self.cwd.clone()));
        }
        Ok(())
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("entrypoint always serializes");
        out.push(b'\n');
        out
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, EntrypointError> {
        let entrypoint: Self = serde_json::from_slice(bytes).map_err(EntrypointError::Malformed)?;
        entrypoint.validate()?;
        Ok(entrypoint)
    }

    /// The value of `PATH` in the process env, used to find `args[0]`.
    pub fn path_var(&self) -> Option<&[u8]> {
        self.env_var("PATH")
    }

    /// The value of `name` in the process env (the last entry wins, as for
    /// `setenv` applied in order).
    pub fn env_var(&self, name: &str) -> Option<&[u8]> {
        self.env.iter().rev().find_map(|entry| {
            entry
                .as_bytes()
                .strip_prefix(name.as_bytes())
                .and_then(|rest| rest.strip_prefix(b"="))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bytes() -> impl Strategy<Value = ByteString> {
        prop::collection::vec(any::<u8>(), 0..24).prop_map(ByteString)
    }

    proptest! {
        #[test]
        fn any_process_round_trips_byte_exact(
            args in prop::collection::vec(bytes(), 1..6),
            env in prop::collection::vec(bytes(), 0..6),
            cwd_tail in bytes(),
            uid in any::<u32>(),
            gid in any::<u32>(),
            additional_gids in prop::collection::vec(any::<u32>(), 0..4),
            terminal in any::<bool>(),
            no_new_privileges in any::<bool>(),
            bounding in prop::collection::vec("CAP_[A-Z_]{1,12}", 0..4),
            with_capabilities in any::<bool>(),
        ) {
            let mut cwd = b"/".to_vec();
            cwd.extend(cwd_tail.0);
            let original = Entrypoint {
                version: ENTRYPOINT_VERSION,
                args, env, cwd: ByteString(cwd), uid, gid, additional_gids, terminal, no_new_privileges,
                capabilities: with_capabilities.then(|| ProcessCapabilities { bounding, ..Default::default() }),
            };
            let back = Entrypoint::from_json(&original.to_json()).unwrap();
            prop_assert_eq!(back, original);
        }
    }

    #[test]
    fn awkward_but_valid_text_round_trips() {
        let original = Entrypoint::new(
            vec!["sh".into(), "-c".into(), "echo \"a  b\" 'c'\nnext".into(), "".into()],
            vec!["A=b=c".into(), "Q='\"x\"'".into(), "NL=line1\nline2".into()],
        );
        assert_eq!(Entrypoint::from_json(&original.to_json()).unwrap(), original);
    }

    #[test]
    fn unknown_fields_wrong_version_and_empty_args_are_refused() {
        let unknown = br#"{"version":1,"args":["x"],"env":[],"cwd":"/","uid":0,"gid":0,"shell":true}"#;
        assert!(matches!(
            Entrypoint::from_json(unknown),
            Err(EntrypointError::Malformed(_))
        ));
        let v2 = br#"{"version":2,"args":["x"],"env":[],"cwd":"/","uid":0,"gid":0}"#;
        assert!(matches!(
            Entrypoint::from_json(v2),
            Err(EntrypointError::UnsupportedVersion { found: 2 })
        ));
        let empty = br#"{"version":1,"args":[],"env":[],"cwd":"/","uid":0,"gid":0}"#;
        assert!(matches!(Entrypoint::from_json(empty), Err(EntrypointError::NoArgs)));
        let relative = br#"{"version":1,"args":["x"],"env":[],"cwd":"tmp","uid":0,"gid":0}"#;
        assert!(matches!(
            Entrypoint::from_json(relative),
            Err(EntrypointError::RelativeCwd(_))
        ));
    }

    #[test]
    fn last_path_entry_wins() {
        let e = Entrypoint::new(
            vec!["ls".into()],
            vec!["PATH=/a".into(), "PATHX=/b".into(), "PATH=/c:/d".into()],
        );
        assert_eq!(e.path_var(), Some(&b"/c:/d"[..]));
        assert_eq!(Entrypoint::new(vec!["ls".into()], vec![]).path_var(), None);
        assert_eq!(e.env_var("PATHX"), Some(&b"/b"[..]), "the name whole, not a prefix");
        assert_eq!(e.env_var("PAT"), None);
    }
}
