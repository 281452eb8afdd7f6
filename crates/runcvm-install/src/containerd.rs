//! Registering the `runcvm` handler in containerd's config, as a text edit.
//!
//! Install appends one block to the main config (`/etc/containerd/config.toml`):
//!
//! ```toml
//! # runcvm: the "runcvm" RuntimeClass handler. `runcvm install` added this block; `runcvm uninstall` removes it.
//! [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runcvm]
//!   runtime_type = "io.containerd.runc.v2"
//! [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runcvm.options]
//!   BinaryName = "/opt/runcvm/bin/runcvm-runtime"
//! # runcvm: end
//! ```
//!
//! Not a drop-in file named by `imports`: containerd 1.x merges an imported
//! file by replacing each whole plugin section it names, so a drop-in holding
//! `plugins."io.containerd.grpc.v1.cri"` would reset every CRI setting of the
//! main config (CNI folders, `SystemdCgroup`, registry mirrors, sandbox image)
//! to its default (containerd issues 5837 and 7982; containerd 2.0 merges
//! plugin sections instead). A block in the main file changes nothing else.
//!
//! A config that names any runtime replaces containerd's built-in list of
//! runtimes (`runc`) with its own, so when the config names none, the block
//! restates `runc` as containerd defines it; otherwise pods of the default
//! handler would fail ("no runtime for runc is configured"). The block's
//! `SystemdCgroup = true` is added when the default runtime has it, because
//! the kubelet's cgroup driver applies to every handler. Nothing
//! else of the file is rewritten: the edit is recorded (the text without the
//! block, the offset, the exact inserted bytes), so uninstall restores the
//! file byte for byte, or removes just the block if the file changed since.

use crate::toml_scan::{self, Item, ItemKind, Value};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The RuntimeClass handler name runcvm registers.
pub const HANDLER: &str = "runcvm";
/// The containerd shim that runs the handler (it calls `BinaryName`).
pub const RUNTIME_TYPE: &str = "io.containerd.runc.v2";
/// What a config file created by install starts with.
pub(crate) const SCAFFOLD: &str = "version = 2\n";
const BEGIN: &str =
    "# runcvm: the \"runcvm\" RuntimeClass handler. `runcvm install` added this block; `runcvm uninstall` removes it.";
const END: &str = "# runcvm: end";
const RESTATED: &str =
    "# runcvm: containerd's default runtime, restated: naming any runtime replaces containerd's built-in list.";
/// containerd's built-in runtime, which the block restates if needed.
const DEFAULT_RUNTIME: &str = "runc";
/// The CRI plugin's section in config version 2, and in version 1.
const CRI_V2: &str = "io.containerd.grpc.v1.cri";
const CRI_V1: &str = "cri";

/// What install did to the config file, kept in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ConfigRecord {
    /// The config file, as the node sees it.
    pub path: PathBuf,
    /// The file did not exist: install created it (from [`SCAFFOLD`]).
    pub created: bool,
    /// Folders install created for the file, outermost first (node view).
    #[serde(default)]
    pub created_dirs: Vec<PathBuf>,
    /// The file's text without the block: what uninstall writes back.
    pub original: String,
    /// Where in `original` the block was inserted (a byte offset).
    pub offset: usize,
    /// Exactly the bytes inserted.
    pub inserted: String,
}

impl ConfigRecord {
    /// The file's text right after install.
    fn installed(&self) -> Option<String> {
        let (before, after) = (self.original.get(..self.offset)?, self.original.get(self.offset..)?);
        Some(format!("{before}{}{after}", self.inserted))
    }
}

/// Why the config cannot be edited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// not TOML
    #[error("it is not valid TOML at line {line}: {detail}")]
    Parse { line: usize, detail: String },
    /// an unsupported config version
    #[error(
        "it has `version = {0}`, and runcvm install edits containerd 1.x configs (version 1 or 2) only: register the handler by hand (see docs/install.md)"
    )]
    Version(String),
    /// something already sits where the block goes
    #[error("line {line} already defines `{key}`, {why}")]
    Conflict {
        line: usize,
        key: String,
        why: &'static str,
    },
}

impl From<toml_scan::ScanError> for ConfigError {
    fn from(e: toml_scan::ScanError) -> Self {
        Self::Parse {
            line: e.line,
            detail: e.detail,
        }
    }
}

/// Facts about a config that install reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Facts {
    /// `SystemdCgroup = true` was copied from the default runtime.
    pub systemd_cgroup: bool,
    /// The files named by `imports`, as written.
    pub imports: Vec<String>,
    /// `disabled_plugins` names the CRI plugin.
    pub cri_disabled: bool,
    /// The config names no runtime, so the block restates `runc`.
    pub restates_runc: bool,
}

/// What install does to the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RegisterPlan {
    /// The file's text after install.
    pub text: String,
    pub outcome: Registration,
    pub record: ConfigRecord,
    pub facts: Facts,
}

/// How the handler came to be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// The block was added.
    Added,
    /// A block of an earlier install was replaced by a different one.
    Updated,
    /// The block was already there, exactly: nothing changed.
    Unchanged,
}

/// Plans install's edit of the config whose text is `current` (`None`: the
/// file does not exist), given the record of an earlier install.
pub(crate) fn plan_register(
    current: Option<&str>,
    previous: Option<&ConfigRecord>,
    binary_name: &str,
    record_path: PathBuf,
) -> Result<RegisterPlan, ConfigError> {
    let text = current.unwrap_or(SCAFFOLD);
    let (mut base, mut at) = match previous.and_then(|p| locate(text, p)) {
        Some(range) => (
            format!("{}{}", &text[..range.start], &text[range.end..]),
            Some(range.start),
        ),
        None => (text.to_owned(), None),
    };
    let mut items = toml_scan::scan(&base)?;
    let mut cri = cri_key(&items)?;
    if at.is_none() {
        // Our block without a record (the manifest was lost): take it over,
        // with the blank line a separator put before it.
        let newline = newline_of(&base);
        let found = [(true, false), (false, false), (true, true), (false, true)]
            .iter()
            .find_map(|&(restate, systemd)| {
                find_unique(&base, &block_text(cri, binary_name, restate, systemd, newline))
            });
        if let Some(range) = found {
            let start = if base[..range.start].ends_with(&newline.repeat(2)) {
                range.start - newline.len()
            } else {
                range.start
            };
            base = format!("{}{}", &base[..start], &base[range.end..]);
            at = Some(start);
            items = toml_scan::scan(&base)?;
            cri = cri_key(&items)?;
        }
    }
    let block = block_for(cri, binary_name, &items, newline_of(&base));
    check_conflicts(&items, cri)?;
    let offset = at.unwrap_or(base.len());
    let inserted = format!("{}{block}", separator(&base[..offset], newline_of(&base)));
    let new_text = format!("{}{inserted}{}", &base[..offset], &base[offset..]);
    let outcome = if current == Some(new_text.as_str()) {
        Registration::Unchanged
    } else if at.is_some() {
        Registration::Updated
    } else {
        Registration::Added
    };
    let facts = Facts {
        systemd_cgroup: systemd_cgroup(&items, cri),
        restates_runc: !names_a_runtime(&items, cri),
        imports: string_list(&items, "imports"),
        cri_disabled: string_list(&items, "disabled_plugins")
            .iter()
            .any(|p| p == CRI_V1 || p == CRI_V2),
    };
    Ok(RegisterPlan {
        text: new_text,
        outcome,
        record: ConfigRecord {
            path: record_path,
            created: current.is_none() || previous.is_some_and(|p| p.created),
            created_dirs: previous.map(|p| p.created_dirs.clone()).unwrap_or_default(),
            original: base,
            offset,
            inserted,
        },
        facts,
    })
}

/// What uninstall does to the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UnregisterPlan {
    /// Install created the file and nothing else was added: remove it.
    Delete,
    /// Write `text`: the original bytes (`exact`), or the current file
    /// without the block (it changed since install).
    Write { text: String, exact: bool },
    /// The block is not in the file any more: leave it.
    NotFound,
    /// The file does not exist.
    Missing,
}

pub(crate) fn plan_unregister(current: Option<&str>, record: &ConfigRecord) -> UnregisterPlan {
    let Some(text) = current else {
        return UnregisterPlan::Missing;
    };
    let (rest, exact) = if record.installed().as_deref() == Some(text) {
        (record.original.clone(), true)
    } else if let Some(range) = locate(text, record) {
        (format!("{}{}", &text[..range.start], &text[range.end..]), false)
    } else {
        return UnregisterPlan::NotFound;
    };
    if record.created && rest == SCAFFOLD {
        UnregisterPlan::Delete
    } else {
        UnregisterPlan::Write { text: rest, exact }
    }
}

/// Whether a config (an imported file) configures the CRI plugin, which in
/// containerd 1.x replaces the main file's whole CRI section, our block
/// included.
pub(crate) fn configures_cri(text: &str) -> bool {
    toml_scan::scan(text).is_ok_and(|items| {
        items.iter().any(|item| {
            let path = match &item.kind {
                ItemKind::Table { path, .. } | ItemKind::Pair { path, .. } => path,
            };
            path.first().is_some_and(|p| p == "plugins") && path.get(1).is_none_or(|p| p == CRI_V1 || p == CRI_V2)
        })
    })
}

/// Where the recorded block is in `text`: at its recorded offset, else its
/// only occurrence, else the only occurrence of the block without the blank
/// line before it.
fn locate(text: &str, record: &ConfigRecord) -> Option<std::ops::Range<usize>> {
    let inserted = record.inserted.as_str();
    if text.get(record.offset..).is_some_and(|rest| rest.starts_with(inserted)) {
        return Some(record.offset..record.offset + inserted.len());
    }
    find_unique(text, inserted).or_else(|| find_unique(text, inserted.trim_start_matches(['\r', '\n'])))
}

fn find_unique(text: &str, needle: &str) -> Option<std::ops::Range<usize>> {
    if needle.is_empty() {
        return None;
    }
    let mut found = text.match_indices(needle);
    match (found.next(), found.next()) {
        (Some((start, _)), None) => Some(start..start + needle.len()),
        _ => None,
    }
}

/// The config's line ending: CRLF if it has any, else LF.
fn newline_of(text: &str) -> &'static str {
    if text.contains("\r\n") { "\r\n" } else { "\n" }
}

/// What goes before the block so that it starts on a line of its own after
/// a blank line.
fn separator(before: &str, newline: &str) -> String {
    if before.is_empty() || before.ends_with("\n\n") || before.ends_with("\r\n\r\n") {
        String::new()
    } else if before.ends_with('\n') {
        newline.to_owned()
    } else {
        newline.repeat(2)
    }
}

/// The CRI plugin's section name for the config's version (1 when absent,
/// as containerd 1.x reads it).
fn cri_key(items: &[Item]) -> Result<&'static str, ConfigError> {
    match toml_scan::find_pair(items, &["version"]) {
        None => Ok(CRI_V1),
        Some((_, Value::Other(raw))) if raw == "1" => Ok(CRI_V1),
        Some((_, Value::Other(raw))) if raw == "2" => Ok(CRI_V2),
        Some((_, Value::Other(raw) | Value::String(raw))) => Err(ConfigError::Version(raw.clone())),
        Some(_) => Err(ConfigError::Version("(not a number)".into())),
    }
}

fn runtimes_path(cri: &str) -> [&str; 4] {
    ["plugins", cri, "containerd", "runtimes"]
}

/// Whether the default runtime (`default_runtime_name`, else `runc`) runs
/// with `SystemdCgroup = true`.
fn systemd_cgroup(items: &[Item], cri: &str) -> bool {
    let default = match toml_scan::find_pair(items, &["plugins", cri, "containerd", "default_runtime_name"]) {
        Some((_, Value::String(name))) => name.as_str(),
        _ => "runc",
    };
    let mut path = runtimes_path(cri).to_vec();
    path.extend([default, "options", "SystemdCgroup"]);
    matches!(toml_scan::find_pair(items, &path), Some((_, Value::Other(v))) if v == "true")
}

/// Whether the config defines any runtime (which replaces containerd's
/// built-in list).
fn names_a_runtime(items: &[Item], cri: &str) -> bool {
    let runtimes = runtimes_path(cri);
    items.iter().any(|item| {
        let path = match &item.kind {
            ItemKind::Table { path, .. } | ItemKind::Pair { path, .. } => path,
        };
        path.len() > runtimes.len() && starts_with(path, &runtimes)
    })
}

fn string_list(items: &[Item], key: &str) -> Vec<String> {
    match toml_scan::find_pair(items, &[key]) {
        Some((_, Value::Array(values))) => values
            .iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Refuses a config where the block cannot go: the runtime `runcvm` is
/// already defined (not by our block), or a table on its path is an inline
/// table or an array of tables, which a header cannot extend.
fn check_conflicts(items: &[Item], cri: &str) -> Result<(), ConfigError> {
    let mut target = runtimes_path(cri).to_vec();
    target.push(HANDLER);
    for item in items {
        let (path, extends_value) = match &item.kind {
            ItemKind::Table { path, array } => (path, *array),
            ItemKind::Pair { path, .. } => (path, true),
        };
        let why = if starts_with(path, &target) {
            "a runtime named runcvm that runcvm install did not write: remove it (or run runcvm uninstall), then install again"
        } else if extends_value && path.len() < target.len() && starts_with_str(&target, path) {
            "as a value that a table header cannot extend: rewrite it as [tables] or add the runcvm runtime by hand"
        } else {
            continue;
        };
        return Err(ConfigError::Conflict {
            line: item.line,
            key: path
                .iter()
                .map(|k| toml_scan::format_key(k))
                .collect::<Vec<_>>()
                .join("."),
            why,
        });
    }
    Ok(())
}

fn starts_with(path: &[String], prefix: &[&str]) -> bool {
    path.len() >= prefix.len() && path.iter().zip(prefix).all(|(a, b)| a == b)
}

fn starts_with_str(path: &[&str], prefix: &[String]) -> bool {
    path.len() >= prefix.len() && path.iter().zip(prefix).all(|(a, b)| a == b)
}

/// The block install appends to a config with `items`, with its line ending.
fn block_for(cri: &str, binary_name: &str, items: &[Item], nl: &str) -> String {
    block_text(
        cri,
        binary_name,
        !names_a_runtime(items, cri),
        systemd_cgroup(items, cri),
        nl,
    )
}

fn block_text(cri: &str, binary_name: &str, restate_runc: bool, systemd_cgroup: bool, nl: &str) -> String {
    let runtimes = format!("plugins.{}.containerd.runtimes", toml_scan::format_key(cri));
    let runtime_type = toml_scan::basic_string(RUNTIME_TYPE);
    let mut block = format!("{BEGIN}{nl}");
    if restate_runc {
        block.push_str(&format!(
            "{RESTATED}{nl}[{runtimes}.{DEFAULT_RUNTIME}]{nl}  runtime_type = {runtime_type}{nl}"
        ));
    }
    block.push_str(&format!(
        "[{runtimes}.{HANDLER}]{nl}  runtime_type = {runtime_type}{nl}[{runtimes}.{HANDLER}.options]{nl}  BinaryName = {}{nl}",
        toml_scan::basic_string(binary_name),
    ));
    if systemd_cgroup {
        block.push_str(&format!("  SystemdCgroup = true{nl}"));
    }
    block.push_str(&format!("{END}{nl}"));
    block
}

#[cfg(test)]
mod tests;
