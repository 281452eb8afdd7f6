//! Reading a containerd config: what it says, as far as registering the
//! handler needs it (its version, the CRI plugin's runtimes, the default
//! runtime's `SystemdCgroup`, `imports`, `disabled_plugins`), and whether the
//! handler's tables can go where install puts them. It parses with
//! `toml_edit`'s parser and only reads: install never serialises a document,
//! so no byte the user wrote is reformatted (the edit itself is text, see
//! the parent module). Spans give the line numbers of refusals.

use super::{ConfigError, HANDLER};
use std::ops::Range;
use toml_edit::{Document, Item, Value};

/// containerd's built-in runtime.
pub(crate) const DEFAULT_RUNTIME: &str = "runc";
/// The CRI plugin's section in config version 1, 2 and 3.
pub(crate) const CRI_V1: &str = "cri";
pub(crate) const CRI_V2: &str = "io.containerd.grpc.v1.cri";
pub(crate) const CRI_V3: &str = "io.containerd.cri.v1.runtime";

/// Why a table header cannot extend what the config has on the handler's path.
const NOT_A_TABLE: &str =
    "as a value that a table header cannot extend: rewrite it as [tables] or add the runcvm runtime by hand";
/// Why an existing `runcvm` runtime is refused.
const NOT_OURS: &str =
    "a runtime named runcvm that runcvm install did not write: remove it (or run runcvm uninstall), then install again";

/// A containerd config format, and the containerd major version it is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigVersion {
    /// `version = 1`, or no version: containerd 1.x, plugins by short name
    /// (`plugins.cri`).
    V1,
    /// `version = 2`: containerd 1.6 and 1.7 (2.x migrates it when it loads it).
    V2,
    /// `version = 3`: containerd 2.x.
    V3,
}

impl ConfigVersion {
    /// The number in the file's `version` key.
    pub fn number(self) -> u8 {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
            Self::V3 => 3,
        }
    }

    /// The containerd major version the format is for: `1.x` or `2.x`.
    pub fn containerd(self) -> &'static str {
        match self {
            Self::V1 | Self::V2 => "1.x",
            Self::V3 => "2.x",
        }
    }

    /// The plugin whose `containerd.runtimes` holds the runtime handlers.
    pub(crate) fn cri_plugin(self) -> &'static str {
        match self {
            Self::V1 => CRI_V1,
            Self::V2 => CRI_V2,
            Self::V3 => CRI_V3,
        }
    }

    /// `[plugins, CRI, containerd, runtimes]`.
    pub(crate) fn runtimes_path(self) -> [&'static str; 4] {
        ["plugins", self.cri_plugin(), "containerd", "runtimes"]
    }
}

/// A parsed config and the text it was parsed from.
#[derive(Debug)]
pub(crate) struct Config<'a> {
    text: &'a str,
    doc: Document<&'a str>,
}

impl<'a> Config<'a> {
    /// Parses `text`; a document that is not TOML is refused with its line.
    pub(crate) fn parse(text: &'a str) -> Result<Self, ConfigError> {
        match Document::parse(text) {
            Ok(doc) => Ok(Self { text, doc }),
            Err(e) => Err(ConfigError::Parse {
                line: e.span().map_or(1, |span| line_of(text, span.start)),
                detail: e.message().lines().next().unwrap_or_default().trim().to_owned(),
            }),
        }
    }

    /// The config's format, from its `version` key (none: version 1, as
    /// containerd reads it).
    pub(crate) fn version(&self) -> Result<ConfigVersion, ConfigError> {
        let Some(item) = self.doc.get("version") else {
            return Ok(ConfigVersion::V1);
        };
        let line = self.line(self.doc.key("version").and_then(toml_edit::Key::span));
        let raw = item
            .span()
            .and_then(|span| self.text.get(span))
            .unwrap_or_default()
            .trim()
            .to_owned();
        match item.as_integer() {
            Some(1) => Ok(ConfigVersion::V1),
            Some(2) => Ok(ConfigVersion::V2),
            Some(3) => Ok(ConfigVersion::V3),
            Some(_) => Err(ConfigError::Version { raw, line }),
            None => Err(ConfigError::VersionNotANumber { raw, line }),
        }
    }

    /// The strings of the top-level array `key` (`imports`,
    /// `disabled_plugins`); other values are skipped.
    pub(crate) fn strings(&self, key: &str) -> Vec<String> {
        self.doc
            .get(key)
            .and_then(Item::as_array)
            .map(|array| array.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// Whether `disabled_plugins` names the CRI plugin (any of its names).
    pub(crate) fn cri_disabled(&self) -> bool {
        self.strings("disabled_plugins")
            .iter()
            .any(|p| [CRI_V1, CRI_V2, CRI_V3].contains(&p.as_str()))
    }

    /// The item at `path` from the top, through tables and inline tables.
    fn get(&self, path: &[&str]) -> Option<&Item> {
        path.iter().try_fold(self.doc.as_item(), |item, key| item.get(key))
    }

    /// Whether the config names any runtime (containerd 1.x then drops its
    /// built-in list).
    pub(crate) fn names_a_runtime(&self, version: ConfigVersion) -> bool {
        self.get(&version.runtimes_path())
            .and_then(Item::as_table_like)
            .is_some_and(|runtimes| !runtimes.is_empty())
    }

    /// Whether the default runtime (`default_runtime_name`, else `runc`)
    /// runs with `SystemdCgroup = true`.
    pub(crate) fn systemd_cgroup(&self, version: ConfigVersion) -> bool {
        let cri = ["plugins", version.cri_plugin(), "containerd"];
        let default = self
            .get(&[cri.as_slice(), &["default_runtime_name"]].concat())
            .and_then(Item::as_str)
            .unwrap_or(DEFAULT_RUNTIME);
        let path = [&version.runtimes_path()[..], &[default, "options", "SystemdCgroup"]].concat();
        self.get(&path).and_then(Item::as_bool) == Some(true)
    }

    /// Refuses a config that already has a runtime named `runcvm` (install's
    /// own block is taken out before the config is read).
    pub(crate) fn check_handler_free(&self, version: ConfigVersion) -> Result<(), ConfigError> {
        let runtimes = version.runtimes_path();
        let Some(found) = self.get(&runtimes).and_then(|r| self.child(r, HANDLER)) else {
            return Ok(());
        };
        Err(self.conflict(&[&runtimes[..], &[HANDLER]].concat(), found, NOT_OURS))
    }

    /// Refuses a config where a table header for the handler cannot go: a
    /// table on its path is an inline table, another value or an array of
    /// tables, which a header cannot extend.
    pub(crate) fn check_extendable(&self, version: ConfigVersion) -> Result<(), ConfigError> {
        let path = version.runtimes_path();
        let mut item = self.doc.as_item();
        for (depth, key) in path.iter().enumerate() {
            let Some((child, span)) = self.child(item, key) else {
                return Ok(());
            };
            if !child.is_table() {
                return Err(self.conflict(&path[..=depth], (child, span), NOT_A_TABLE));
            }
            item = child;
        }
        Ok(())
    }

    /// Whether the file configures the CRI plugin at all (or has an explicit
    /// `[plugins]`), which in containerd 1.x makes an imported file replace
    /// the main file's whole CRI section.
    pub(crate) fn configures_cri(&self) -> bool {
        let Some(plugins) = self.doc.get("plugins") else {
            return false;
        };
        match plugins.as_table_like() {
            None => true,
            Some(_) if plugins.as_table().is_some_and(|t| !t.is_implicit()) => true,
            Some(table) => [CRI_V1, CRI_V2, CRI_V3].iter().any(|cri| table.contains_key(cri)),
        }
    }

    /// Whether the file defines a runtime named `runcvm` for any config
    /// version.
    pub(crate) fn defines_handler(&self) -> bool {
        [ConfigVersion::V1, ConfigVersion::V2, ConfigVersion::V3]
            .iter()
            .any(|v| self.get(&[&v.runtimes_path()[..], &[HANDLER]].concat()).is_some())
    }

    /// The item under `key` of a table or inline table, with the span of the
    /// key where it is first written.
    fn child<'d>(&'d self, parent: &'d Item, key: &str) -> Option<(&'d Item, Option<Range<usize>>)> {
        let found = parent.get(key)?;
        let span = match parent {
            Item::Table(table) => table.key(key).and_then(toml_edit::Key::span),
            Item::Value(Value::InlineTable(table)) => table.key(key).and_then(toml_edit::Key::span),
            _ => None,
        };
        Some((found, span.or_else(|| found.span())))
    }

    fn conflict(&self, path: &[&str], (_, span): (&Item, Option<Range<usize>>), why: &'static str) -> ConfigError {
        ConfigError::Conflict {
            line: self.line(span),
            key: path.iter().map(|k| format_key(k)).collect::<Vec<_>>().join("."),
            why,
        }
    }

    fn line(&self, span: Option<Range<usize>>) -> usize {
        span.map_or(1, |span| line_of(self.text, span.start))
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).unwrap_or(text).matches('\n').count() + 1
}

/// Writes a key for a table header: bare when it can be, else a basic string.
pub(crate) fn format_key(key: &str) -> String {
    let bare = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare { key.to_owned() } else { basic_string(key) }
}

/// `value` as a TOML basic string, escaped.
pub(crate) fn basic_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config<'_> {
        Config::parse(text).unwrap()
    }

    #[test]
    fn versions_map_to_their_containerd() {
        for (text, version, containerd) in [
            ("", ConfigVersion::V1, "1.x"),
            ("version = 1\n", ConfigVersion::V1, "1.x"),
            ("version = 2 # v2\r\n", ConfigVersion::V2, "1.x"),
            ("version = 3\n", ConfigVersion::V3, "2.x"),
        ] {
            let found = parse(text).version().unwrap();
            assert_eq!((found, found.containerd()), (version, containerd), "{text:?}");
        }
        assert_eq!(
            parse("# c\nversion = 4\n").version(),
            Err(ConfigError::Version {
                raw: "4".into(),
                line: 2
            })
        );
        assert_eq!(
            parse("version = \"3\"\n").version(),
            Err(ConfigError::VersionNotANumber {
                raw: "\"3\"".into(),
                line: 1
            })
        );
    }

    #[test]
    fn quoted_keys_and_spaces_around_dots_name_the_same_table() {
        let text = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\" . containerd]\n  default_runtime_name = 'crun'\n[ plugins.'io.containerd.grpc.v1.cri'.containerd.runtimes.crun.options ]\n  SystemdCgroup = true\n";
        let config = parse(text);
        assert!(config.systemd_cgroup(ConfigVersion::V2));
        assert!(config.names_a_runtime(ConfigVersion::V2));
        assert!(!config.names_a_runtime(ConfigVersion::V3));
    }

    #[test]
    fn arrays_on_several_lines_with_comments() {
        let text = "imports = [\n  \"/a.toml\", # one\n  # between\n  '/b.toml', 3,\n]\ndisabled_plugins = [\"io.containerd.cri.v1.runtime\"]\n";
        let config = parse(text);
        assert_eq!(config.strings("imports"), ["/a.toml", "/b.toml"]);
        assert!(config.cri_disabled());
        assert!(!parse("disabled_plugins = [\"io.containerd.snapshotter.v1.zfs\"]\n").cri_disabled());
    }

    #[test]
    fn multi_line_strings_may_hold_headers() {
        let text = "a = \"\"\"\n[plugins.cri.containerd.runtimes.runcvm]\n\\\"\"\" \"\"\"\"\nb = '''\n[x]'''''\n";
        assert!(!parse(text).defines_handler());
        assert!(!parse(text).configures_cri());
    }

    #[test]
    fn broken_documents_name_the_line() {
        for (text, line) in [
            ("a = \"open\n", 1),
            ("ok = 1\n[a\n", 2),
            ("a = 1 b = 2\n", 1),
            ("ok = 1\n\n= 1\n", 3),
            ("a = \"\\q\"\n", 1),
            ("[a]\n[a]\n", 2),
        ] {
            match Config::parse(text) {
                Err(ConfigError::Parse { line: at, detail }) => {
                    assert_eq!(at, line, "{text:?}: {detail}");
                    assert!(!detail.is_empty());
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn what_sits_on_the_handlers_path() {
        let v3 = "version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd]\n  runtimes = { runc = { runtime_type = 'io.containerd.runc.v2' } }\n";
        let err = parse(v3).check_extendable(ConfigVersion::V3).unwrap_err();
        assert_eq!(
            err,
            ConfigError::Conflict {
                line: 3,
                key: "plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes".into(),
                why: NOT_A_TABLE
            }
        );
        assert!(parse(v3).check_handler_free(ConfigVersion::V3).is_ok());
        assert!(parse(v3).names_a_runtime(ConfigVersion::V3));
        let array = "[[plugins.cri.containerd.runtimes]]\n";
        assert!(parse(array).check_extendable(ConfigVersion::V1).is_err());
        let dotted = "[plugins.cri]\n  containerd.runtimes.runc.runtime_type = 'x'\n";
        assert!(parse(dotted).check_extendable(ConfigVersion::V1).is_ok());
        let inline_ours = "[plugins.cri.containerd]\n\n  runtimes = { runcvm = {} }\n";
        assert!(matches!(
            parse(inline_ours).check_handler_free(ConfigVersion::V1),
            Err(ConfigError::Conflict { line: 3, .. })
        ));
    }

    #[test]
    fn files_that_configure_cri_or_define_the_handler() {
        assert!(parse("[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/x\"\n").configures_cri());
        assert!(parse("version = 2\n[plugins]\n").configures_cri());
        assert!(parse("[plugins.cri]\n").configures_cri());
        assert!(parse("version = 3\n[plugins.'io.containerd.cri.v1.runtime'.cni]\n").configures_cri());
        assert!(!parse("version = 2\n[plugins.\"io.containerd.internal.v1.opt\"]\npath = \"/x\"\n").configures_cri());
        assert!(!parse("[debug]\nlevel = \"info\"\n").configures_cri());
        assert!(
            parse("version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runcvm]\n")
                .defines_handler()
        );
        assert!(
            !parse("version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.kata]\n")
                .defines_handler()
        );
    }

    #[test]
    fn keys_are_written_bare_or_quoted() {
        assert_eq!(format_key("runcvm"), "runcvm");
        assert_eq!(format_key("io.containerd.grpc.v1.cri"), "\"io.containerd.grpc.v1.cri\"");
        assert_eq!(basic_string("a\"b\\c\u{1}"), "\"a\\\"b\\\\c\\u0001\"");
    }
}
