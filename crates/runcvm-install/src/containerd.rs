//! Registering the `runcvm` handler in containerd's config, and taking it
//! out again: where the handler goes for each config version, the text
//! install writes, and the records that let uninstall undo it exactly.
//!
//! A config for containerd 1.x (`version = 2`, or 1) gets one block appended
//! to the main file (`/etc/containerd/config.toml`):
//!
//! ```toml
//! # runcvm: the "runcvm" RuntimeClass handler. `runcvm install` added this block; `runcvm uninstall` removes it.
//! [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runcvm]
//!   runtime_type = "io.containerd.runc.v2"
//!   privileged_without_host_devices = true
//!   container_annotations = ["io.kubernetes.container.terminationMessagePath"]
//! [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runcvm.options]
//!   BinaryName = "/opt/runcvm/bin/runcvm-runtime"
//! # runcvm: end
//! ```
//!
//! Not a drop-in file named by `imports`: containerd 1.x merges an imported
//! file by replacing each whole plugin section it names, so a drop-in holding
//! `plugins."io.containerd.grpc.v1.cri"` would reset every CRI setting of the
//! main config (CNI folders, `SystemdCgroup`, registry mirrors, sandbox image)
//! to its default (containerd issues 5837 and 7982). A block in the main file
//! changes nothing else. containerd 1.x also decodes the config's runtimes
//! over its built-in list (`runc`) instead of into it, so when the config
//! names no runtime, the block restates `runc` as containerd defines it;
//! otherwise pods of the default handler would fail.
//!
//! A config for containerd 2.x (`version = 3`) gets the same tables under
//! `plugins."io.containerd.cri.v1.runtime"`, and no restated `runc`: 2.x
//! decodes the config into its defaults, so `runc` stays. When the main
//! file's `imports` names a folder drop-in (`/etc/containerd/conf.d/*.toml`,
//! as in containerd 2.2's default config), the handler goes in a file of its
//! own there and the main file is not touched ([`drop_in`]); otherwise the
//! block is appended to the main file as for 1.x.
//!
//! `privileged_without_host_devices` keeps the node's devices out of
//! privileged pods (a VM cannot use them); `container_annotations` lets the
//! kubelet's `io.kubernetes.container.terminationMessagePath` annotation into
//! the OCI spec, where the runtime reads it. (The builds whose pods could
//! opt out of their VM also wrote `pod_annotations = ["runcvm.io/pod-vm"]`;
//! such a block is still recognised.) `SystemdCgroup = true` is added
//! when the default runtime has it, because the kubelet's cgroup driver
//! applies to every handler.
//!
//! The config is read with `toml_edit` ([`config`]), never re-serialised: the
//! edit is text and recorded (the text without the block, the offset, the
//! exact inserted bytes; or the drop-in's exact bytes), so uninstall restores
//! the file byte for byte, or removes just the block if the file changed
//! since.

mod config;
mod drop_in;

use config::Config;
pub use config::ConfigVersion;
pub(crate) use drop_in::DropInRecord;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The RuntimeClass handler name runcvm registers.
pub const HANDLER: &str = "runcvm";
/// The containerd shim that runs the handler (it calls `BinaryName`).
pub const RUNTIME_TYPE: &str = "io.containerd.runc.v2";
/// The kubelet's annotation naming the container's termination message
/// file, passed into the OCI spec (`container_annotations`).
pub const TERMINATION_MESSAGE_ANNOTATION: &str = "io.kubernetes.container.terminationMessagePath";
/// The pod annotation with which a pod could opt out of its VM in the
/// builds that had the opt-out (`pod_annotations`): their blocks are still
/// recognised.
pub const POD_VM_ANNOTATION: &str = "runcvm.io/pod-vm";
/// What a config file created by install starts with.
pub(crate) const SCAFFOLD: &str = "version = 2\n";
const BEGIN: &str =
    "# runcvm: the \"runcvm\" RuntimeClass handler. `runcvm install` added this block; `runcvm uninstall` removes it.";
const END: &str = "# runcvm: end";
const RESTATED: &str =
    "# runcvm: containerd's default runtime, restated: naming any runtime replaces containerd's built-in list.";

/// What install did to the main config file, kept in the manifest (the
/// same shape since the first manifest format).
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
    #[error("it is not valid TOML at line {line}: {detail}; fix the file, then install again")]
    Parse { line: usize, detail: String },
    /// a config version no known containerd reads
    #[error(
        "line {line} has `version = {raw}`, which no containerd runcvm knows reads (containerd 1.x reads version 1 or 2, containerd 2.x reads version 3): set the version your containerd reads, or register the handler by hand (see docs/install.md)"
    )]
    Version { raw: String, line: usize },
    /// a version that is not a number
    #[error(
        "line {line} has `version = {raw}`, which is not a number: write the version as a bare integer (2 for containerd 1.x, 3 for containerd 2.x)"
    )]
    VersionNotANumber { raw: String, line: usize },
    /// something already sits where the block goes
    #[error("line {line} already defines `{key}`, {why}")]
    Conflict {
        line: usize,
        key: String,
        why: &'static str,
    },
    /// the drop-in's file exists and is not install's
    #[error(
        "{} exists, and runcvm install did not write it (or it was edited since): move it out of the way, then install again",
        .0.display()
    )]
    DropInNotOurs(PathBuf),
}

/// Facts about a config that install reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Facts {
    /// The config's format, hence the containerd it is for.
    pub version: ConfigVersion,
    /// `SystemdCgroup = true` was copied from the default runtime.
    pub systemd_cgroup: bool,
    /// The files named by `imports`, as written.
    pub imports: Vec<String>,
    /// `disabled_plugins` names the CRI plugin.
    pub cri_disabled: bool,
    /// The config (for containerd 1.x) names no runtime, so the block
    /// restates `runc`.
    pub restates_runc: bool,
}

impl Default for Facts {
    fn default() -> Self {
        Self {
            version: ConfigVersion::V2,
            systemd_cgroup: false,
            imports: Vec::new(),
            cri_disabled: false,
            restates_runc: false,
        }
    }
}

/// What install knows when it plans the registration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RegisterRequest<'a> {
    /// The main config's text; `None`: the file does not exist.
    pub current: Option<&'a str>,
    /// An earlier install's block in the main config.
    pub previous: Option<&'a ConfigRecord>,
    /// An earlier install's drop-in.
    pub previous_drop_in: Option<&'a DropInRecord>,
    /// `options.BinaryName`.
    pub binary_name: &'a str,
    /// The main config, as the node sees it.
    pub config: &'a Path,
}

/// What install does to the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RegisterPlan {
    pub outcome: Registration,
    pub facts: Facts,
    /// The main config's text after install.
    pub text: String,
    /// Whether `text` has to be written (it is not the file's text now).
    pub write_main: bool,
    /// The block in the main config; `None` when the handler is in a drop-in.
    pub record: Option<ConfigRecord>,
    /// The drop-in that holds the handler.
    pub drop_in: Option<DropInPlan>,
    /// An earlier install's drop-in that no longer holds the handler:
    /// removed if it still has the bytes install wrote.
    pub stale_drop_in: Option<DropInRecord>,
}

/// The drop-in install writes (or finds already written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DropInPlan {
    pub record: DropInRecord,
    /// The file does not hold `record.text` yet.
    pub write: bool,
}

/// How the handler came to be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// The block (or the drop-in) was added.
    Added,
    /// An earlier install's registration was replaced by a different one.
    Updated,
    /// The registration was already there, exactly: nothing changed.
    Unchanged,
}

/// The drop-in file the handler would go to for this request, if any: install
/// reads it and passes its text to [`plan_register`].
pub(crate) fn drop_in_target(request: &RegisterRequest<'_>) -> Result<Option<PathBuf>, ConfigError> {
    let Some(text) = request.current else {
        return Ok(None);
    };
    let config = Config::parse(text)?;
    if config.version()? != ConfigVersion::V3 {
        return Ok(None);
    }
    Ok(drop_in::target(&config.strings("imports"), request.config))
}

/// Plans install's edit; `drop_in_current` is the text of the file
/// [`drop_in_target`] named (`None`: it does not exist, or none was named).
pub(crate) fn plan_register(
    request: &RegisterRequest<'_>,
    drop_in_current: Option<&str>,
) -> Result<RegisterPlan, ConfigError> {
    let current = request.current;
    let text = current.unwrap_or(SCAFFOLD);
    let (mut base, mut at) = match request.previous.and_then(|p| locate(text, p)) {
        Some(range) => (
            format!("{}{}", &text[..range.start], &text[range.end..]),
            Some(range.start),
        ),
        None => (text.to_owned(), None),
    };
    if at.is_none() {
        // Our block without a record (the manifest was lost): take it over,
        // with the blank line a separator put before it.
        let version = Config::parse(&base)?.version()?;
        if let Some(range) = find_orphan_block(&base, version, request.binary_name) {
            base = format!("{}{}", &base[..range.start], &base[range.end..]);
            at = Some(range.start);
        }
    }
    let config = Config::parse(&base)?;
    let version = config.version()?;
    config.check_handler_free(version)?;
    let facts = Facts {
        version,
        systemd_cgroup: config.systemd_cgroup(version),
        // containerd 1.x decodes `runtimes` over its built-in list, so a
        // config naming only runcvm would lose runc. containerd 2.x decodes
        // each plugin's section into the plugin's default config, and its
        // TOML decoder adds the keys of `runtimes` to the default map (which
        // holds runc) instead of replacing it (`DefaultRuntimeConfig`, the
        // CRI runtime plugin's config, decoded by `Config.Decode` in
        // cmd/containerd/server/config): nothing to restate for version 3.
        restates_runc: version != ConfigVersion::V3 && !config.names_a_runtime(version),
        imports: config.strings("imports"),
        cri_disabled: config.cri_disabled(),
    };
    let drop_in_path = match version {
        ConfigVersion::V3 => drop_in::target(&facts.imports, request.config),
        ConfigVersion::V1 | ConfigVersion::V2 => None,
    };
    if let Some(path) = drop_in_path {
        return plan_drop_in(request, facts, path, drop_in_current, base, at);
    }

    config.check_extendable(version)?;
    let newline = newline_of(&base);
    let block = block_text(
        version,
        request.binary_name,
        facts.restates_runc,
        facts.systemd_cgroup,
        newline,
        HandlerOptions::TerminationMessage,
    );
    let offset = at.unwrap_or(base.len());
    let inserted = format!("{}{block}", separator(&base[..offset], newline));
    let new_text = format!("{}{inserted}{}", &base[..offset], &base[offset..]);
    let stale_drop_in = request.previous_drop_in.cloned();
    let write_main = current != Some(new_text.as_str());
    let outcome = if !write_main && stale_drop_in.is_none() {
        Registration::Unchanged
    } else if at.is_some() || stale_drop_in.is_some() {
        Registration::Updated
    } else {
        Registration::Added
    };
    let previous = request.previous;
    Ok(RegisterPlan {
        outcome,
        facts,
        text: new_text,
        write_main,
        record: Some(ConfigRecord {
            path: request.config.to_owned(),
            created: current.is_none() || previous.is_some_and(|p| p.created),
            created_dirs: previous.map(|p| p.created_dirs.clone()).unwrap_or_default(),
            original: base,
            offset,
            inserted,
        }),
        drop_in: None,
        stale_drop_in,
    })
}

/// The handler goes to the drop-in at `path`; an earlier block in the main
/// config (found at `at`; `base` is the main config without it) is taken
/// out.
fn plan_drop_in(
    request: &RegisterRequest<'_>,
    facts: Facts,
    path: PathBuf,
    drop_in_current: Option<&str>,
    base: String,
    at: Option<usize>,
) -> Result<RegisterPlan, ConfigError> {
    let wanted = drop_in::text(request.binary_name, facts.systemd_cgroup);
    let previous_here = request.previous_drop_in.filter(|p| p.path == path);
    let write = match drop_in_current {
        None => true,
        Some(text) if text == wanted => false,
        Some(text) if previous_here.is_some_and(|p| p.text == text) => true,
        Some(_) => return Err(ConfigError::DropInNotOurs(path)),
    };
    let stale_drop_in = request.previous_drop_in.filter(|p| p.path != path).cloned();
    let write_main = at.is_some();
    let outcome = if !write && !write_main && stale_drop_in.is_none() {
        Registration::Unchanged
    } else if write_main || request.previous_drop_in.is_some() || drop_in_current.is_some() {
        Registration::Updated
    } else {
        Registration::Added
    };
    Ok(RegisterPlan {
        outcome,
        facts,
        text: if write_main {
            base
        } else {
            request.current.unwrap_or_default().to_owned()
        },
        write_main,
        record: None,
        drop_in: Some(DropInPlan {
            record: DropInRecord {
                config: request.config.to_owned(),
                path,
                created_dirs: previous_here.map(|p| p.created_dirs.clone()).unwrap_or_default(),
                text: wanted,
            },
            write,
        }),
        stale_drop_in,
    })
}

/// What uninstall does to the main config.
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
    Config::parse(text).is_ok_and(|config| config.configures_cri())
}

/// Whether a config (an imported file) defines a runtime named `runcvm`,
/// which containerd 2.x would merge with runcvm's own.
pub(crate) fn defines_handler(text: &str) -> bool {
    Config::parse(text).is_ok_and(|config| config.defines_handler())
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

/// A block this or an earlier build wrote for `binary_name` with no record
/// of it, with the blank line a separator put before it.
fn find_orphan_block(text: &str, version: ConfigVersion, binary_name: &str) -> Option<std::ops::Range<usize>> {
    let newline = newline_of(text);
    // Earlier builds wrote blocks with fewer handler options, and the first
    // ones only for containerd 1.x configs.
    let shapes: &[HandlerOptions] = if version == ConfigVersion::V3 {
        &[HandlerOptions::TerminationMessage, HandlerOptions::PodVmOptOut]
    } else {
        &[
            HandlerOptions::TerminationMessage,
            HandlerOptions::PodVmOptOut,
            HandlerOptions::None,
        ]
    };
    let range = shapes.iter().find_map(|&options| {
        [(true, false), (false, false), (true, true), (false, true)]
            .iter()
            .find_map(|&(restate, systemd)| {
                let restate = restate && version != ConfigVersion::V3;
                find_unique(
                    text,
                    &block_text(version, binary_name, restate, systemd, newline, options),
                )
            })
    })?;
    let start = if text[..range.start].ends_with(&newline.repeat(2)) {
        range.start - newline.len()
    } else {
        range.start
    };
    Some(start..range.end)
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

/// The options of the handler's table: what this build writes, and what
/// earlier builds wrote, which uninstall still recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandlerOptions {
    /// The first builds': none.
    None,
    /// `privileged_without_host_devices` and `container_annotations`: what
    /// this build writes.
    TerminationMessage,
    /// And `pod_annotations` with [`POD_VM_ANNOTATION`]: the builds whose
    /// pods could opt out of their VM.
    PodVmOptOut,
}

/// The block appended to a main config, with its line ending, in the shape
/// `handler_options` says.
fn block_text(
    version: ConfigVersion,
    binary_name: &str,
    restate_runc: bool,
    systemd_cgroup: bool,
    nl: &str,
    handler_options: HandlerOptions,
) -> String {
    let mut block = format!("{BEGIN}{nl}");
    if restate_runc {
        block.push_str(&format!(
            "{RESTATED}{nl}[{}.{}]{nl}  runtime_type = {}{nl}",
            runtimes_header(version),
            config::DEFAULT_RUNTIME,
            config::basic_string(RUNTIME_TYPE)
        ));
    }
    block.push_str(&runtime_tables(
        version,
        binary_name,
        systemd_cgroup,
        handler_options,
        nl,
    ));
    block.push_str(&format!("{END}{nl}"));
    block
}

/// `plugins.CRI.containerd.runtimes`, as a header writes it.
fn runtimes_header(version: ConfigVersion) -> String {
    version
        .runtimes_path()
        .iter()
        .map(|key| config::format_key(key))
        .collect::<Vec<_>>()
        .join(".")
}

/// The handler's two tables.
fn runtime_tables(
    version: ConfigVersion,
    binary_name: &str,
    systemd_cgroup: bool,
    handler_options: HandlerOptions,
    nl: &str,
) -> String {
    let runtimes = runtimes_header(version);
    let mut tables = format!(
        "[{runtimes}.{HANDLER}]{nl}  runtime_type = {}{nl}",
        config::basic_string(RUNTIME_TYPE)
    );
    if handler_options != HandlerOptions::None {
        tables.push_str(&format!(
            "  privileged_without_host_devices = true{nl}  container_annotations = [{}]{nl}",
            config::basic_string(TERMINATION_MESSAGE_ANNOTATION)
        ));
    }
    if handler_options == HandlerOptions::PodVmOptOut {
        tables.push_str(&format!(
            "  pod_annotations = [{}]{nl}",
            config::basic_string(POD_VM_ANNOTATION)
        ));
    }
    tables.push_str(&format!(
        "[{runtimes}.{HANDLER}.options]{nl}  BinaryName = {}{nl}",
        config::basic_string(binary_name),
    ));
    if systemd_cgroup {
        tables.push_str(&format!("  SystemdCgroup = true{nl}"));
    }
    tables
}

#[cfg(test)]
mod tests;
