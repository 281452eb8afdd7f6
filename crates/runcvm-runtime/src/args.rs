//! runc's command line, read just far enough to act on it: the global flags
//! containerd passes, the verb, and the few verb flags the runtime needs.
//! The arguments themselves are always handed to runc unchanged.
//!
//! runc takes Go-style flags: `-x` and `--x` alike, values as `--x v` or
//! `--x=v`, global flags before the verb.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// Global flags of runc that take a value.
const GLOBAL_VALUE_FLAGS: &[&str] = &["root", "log", "log-format", "criu", "rootless"];

/// The value-taking flags of the verbs the runtime reads.
fn verb_value_flags(verb: &str) -> &'static [&'static str] {
    match verb {
        "create" | "run" => &[
            "bundle",
            "b",
            "console-socket",
            "pid-file",
            "preserve-fds",
            "pidfd-socket",
        ],
        "update" => &[
            "resources",
            "r",
            "blkio-weight",
            "cpu-period",
            "cpu-quota",
            "cpu-burst",
            "cpu-idle",
            "kernel-memory",
            "kernel-memory-tcp",
            "rdt-clos-id",
            "cpu-share",
            "cpu-rt-period",
            "cpu-rt-runtime",
            "cpuset-cpus",
            "cpuset-mems",
            "memory",
            "memory-reservation",
            "memory-swap",
            "pids-limit",
            "l3-cache-schema",
            "mem-bw-schema",
        ],
        "exec" => &[
            "console-socket",
            "cwd",
            "env",
            "e",
            "user",
            "u",
            "additional-gids",
            "g",
            "process",
            "p",
            "pid-file",
            "process-label",
            "apparmor",
            "cap",
            "c",
            "preserve-fds",
            "cgroup",
            "pidfd-socket",
        ],
        _ => &[],
    }
}

/// One runc invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// Everything after the program name, as given.
    pub raw: Vec<OsString>,
    /// `--root`: runc's state folder.
    pub root: Option<PathBuf>,
    /// `--log`: where containerd reads the runtime's errors.
    pub log: Option<PathBuf>,
    /// `--log-format json`.
    pub log_json: bool,
    /// The verb (`create`, `exec`, …), if any.
    pub verb: Option<String>,
    /// The verb's flags, dashes stripped: (name, value).
    pub verb_flags: Vec<(String, Option<OsString>)>,
    /// The verb's positional arguments: the container id first.
    pub positionals: Vec<OsString>,
}

impl Invocation {
    pub fn parse(raw: Vec<OsString>) -> Self {
        let mut invocation = Self {
            raw: raw.clone(),
            root: None,
            log: None,
            log_json: false,
            verb: None,
            verb_flags: Vec::new(),
            positionals: Vec::new(),
        };
        let mut args = raw.into_iter();
        // Global flags, up to the verb.
        while let Some(arg) = args.next() {
            let Some((name, inline)) = flag(&arg) else {
                invocation.verb = Some(arg.to_string_lossy().into_owned());
                break;
            };
            let value = if GLOBAL_VALUE_FLAGS.contains(&name.as_str()) {
                inline.or_else(|| args.next())
            } else {
                inline
            };
            match (name.as_str(), value) {
                ("root", Some(v)) => invocation.root = Some(v.into()),
                ("log", Some(v)) => invocation.log = Some(v.into()),
                ("log-format", Some(v)) => invocation.log_json = v == "json",
                _ => {}
            }
        }
        let Some(verb) = invocation.verb.clone() else {
            return invocation;
        };
        let value_flags = verb_value_flags(&verb);
        while let Some(arg) = args.next() {
            if arg == "--" {
                invocation.positionals.extend(args.by_ref());
                break;
            }
            match flag(&arg) {
                // After the id, everything is the command (`runc exec ID CMD -x`).
                Some((name, inline)) if invocation.positionals.is_empty() => {
                    let value = if value_flags.contains(&name.as_str()) {
                        inline.or_else(|| args.next())
                    } else {
                        inline
                    };
                    invocation.verb_flags.push((name, value));
                }
                _ => invocation.positionals.push(arg),
            }
        }
        invocation
    }

    /// The last value of a verb flag known by any of `names`.
    pub fn verb_flag(&self, names: &[&str]) -> Option<&OsStr> {
        self.verb_flags
            .iter()
            .rev()
            .find(|(name, _)| names.contains(&name.as_str()))
            .and_then(|(_, value)| value.as_deref())
    }

    /// Whether a boolean verb flag is set.
    pub fn verb_switch(&self, names: &[&str]) -> bool {
        self.verb_flags
            .iter()
            .any(|(name, value)| names.contains(&name.as_str()) && value.as_ref().is_none_or(|v| v != "false"))
    }

    /// The container id: the verb's first positional argument.
    pub fn container_id(&self) -> Option<&OsStr> {
        self.positionals.first().map(OsString::as_os_str)
    }
}

/// `-name`, `--name` or `--name=value`; `None` for a positional (and for
/// `-` alone).
fn flag(arg: &OsStr) -> Option<(String, Option<OsString>)> {
    let bytes = arg.as_bytes();
    let body = bytes.strip_prefix(b"--").or_else(|| bytes.strip_prefix(b"-"))?;
    if body.is_empty() {
        return None;
    }
    match body.iter().position(|b| *b == b'=') {
        Some(eq) => Some((
            String::from_utf8_lossy(&body[..eq]).into_owned(),
            Some(OsStr::from_bytes(&body[eq + 1..]).to_owned()),
        )),
        None => Some((String::from_utf8_lossy(body).into_owned(), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Invocation {
        Invocation::parse(line.split_whitespace().map(OsString::from).collect())
    }

    #[test]
    fn containerd_create_is_understood() {
        let inv = parse(
            "--root /run/containerd/runc/k8s.io --log /run/x/log.json --log-format json --systemd-cgroup \
             create --bundle /run/x --pid-file /run/x/init.pid --console-socket=/tmp/c.sock abc123",
        );
        assert_eq!(
            inv.root.as_deref(),
            Some(std::path::Path::new("/run/containerd/runc/k8s.io"))
        );
        assert_eq!(inv.log.as_deref(), Some(std::path::Path::new("/run/x/log.json")));
        assert!(inv.log_json);
        assert_eq!(inv.verb.as_deref(), Some("create"));
        assert_eq!(inv.verb_flag(&["bundle", "b"]), Some(OsStr::new("/run/x")));
        assert_eq!(inv.verb_flag(&["console-socket"]), Some(OsStr::new("/tmp/c.sock")));
        assert_eq!(inv.container_id(), Some(OsStr::new("abc123")));
        assert_eq!(inv.raw.len(), 14);
    }

    #[test]
    fn exec_keeps_the_command_after_the_id() {
        let inv = parse("--root /r exec --process /p.json -d --pid-file /pid id1");
        assert_eq!(inv.verb_flag(&["process", "p"]), Some(OsStr::new("/p.json")));
        assert!(inv.verb_switch(&["detach", "d"]));
        assert_eq!(inv.container_id(), Some(OsStr::new("id1")));
        let inv = parse("exec -t id1 sh -c x");
        assert_eq!(inv.positionals, ["id1", "sh", "-c", "x"]);
        assert!(inv.verb_switch(&["tty", "t"]));
    }

    #[test]
    fn single_dash_and_text_logs() {
        let inv = parse("-root /r -log /l delete -force id");
        assert_eq!(inv.root.as_deref(), Some(std::path::Path::new("/r")));
        assert!(!inv.log_json);
        assert!(inv.verb_switch(&["force", "f"]));
        assert_eq!(inv.container_id(), Some(OsStr::new("id")));
    }

    #[test]
    fn no_verb_is_no_verb() {
        let inv = parse("--version");
        assert_eq!(inv.verb, None);
        let inv = parse("create --pidfd-socket /p.sock --bundle /b id9");
        assert_eq!(inv.container_id(), Some(OsStr::new("id9")), "a value is not the id");
        assert!(parse("").verb.is_none());
    }

    proptest::proptest! {
        /// Whatever runc is given, parsing never panics, and what it finds
        /// is in the argv: a verb is one of the arguments, and the container
        /// id is an argument after the verb.
        #[test]
        fn any_argv_parses_into_parts_of_itself(args in proptest::collection::vec("[-=a-z/0-9]{0,8}", 0..12)) {
            let raw: Vec<OsString> = args.iter().map(OsString::from).collect();
            let inv = Invocation::parse(raw.clone());
            if let Some(verb) = &inv.verb {
                let at = raw.iter().position(|a| a.to_string_lossy() == *verb);
                proptest::prop_assert!(at.is_some());
                if let Some(id) = inv.container_id() {
                    proptest::prop_assert!(raw[at.unwrap_or(0) + 1..].iter().any(|a| a == id));
                }
            } else {
                proptest::prop_assert!(inv.positionals.is_empty());
            }
        }
    }
}
