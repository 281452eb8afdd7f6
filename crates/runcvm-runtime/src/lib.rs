//! `runcvm-runtime`: the OCI runtime containerd's runc shim calls for the
//! `runcvm` handler. It speaks runc's command line; a workload container's
//! `create` and `exec` are rewritten so the container runs the launcher and
//! exec sessions run in the VM, `delete` also removes the container's state
//! folder, and everything else is runc's, verbatim.

pub mod args;
pub mod create;
pub mod exec;
pub mod features;
pub mod install;
pub mod orphans;
pub mod report;
pub mod runc;
pub mod settings;
pub mod state;
#[cfg(test)]
mod test_launch;
pub mod update;

use args::Invocation;
use create::{BundleConfig, CreateRequest};
use runc::Runc;
use std::path::{Path, PathBuf};

/// The exit code of a runtime failure (runc's).
pub const FAILURE: i32 = 1;

/// Runs one invocation and returns the exit code.
pub fn dispatch(invocation: &Invocation, settings: &settings::Settings) -> i32 {
    let fail = |message: String| {
        report::error(invocation.log.as_deref(), invocation.log_json, &message);
        FAILURE
    };
    let runc = match Runc::locate(settings.runc.as_deref()) {
        Ok(runc) => runc,
        Err(e) => return fail(format!("runcvm: {}", runcvm_log::error_chain(&e))),
    };
    let state_root = settings.state_dir();
    let id = invocation.container_id().map(|id| id.to_string_lossy().into_owned());
    let outcome = match (invocation.verb.as_deref(), id) {
        (Some("features"), _) => features(invocation, &runc),
        (Some("create" | "run"), Some(id)) => create(invocation, settings, &runc, &state_root, &id),
        (Some("exec"), Some(id)) => exec(invocation, &state_root, &id).map(|()| None),
        (Some("delete"), Some(id)) => delete(invocation, &runc, &state_root, &id),
        (Some("update"), Some(id)) => update(invocation, &runc, &state_root, &id),
        _ => Ok(None),
    };
    match outcome {
        Ok(Some(code)) => code,
        Ok(None) => fail(format!(
            "runcvm: {}",
            runcvm_log::error_chain(&runc.exec(&invocation.raw))
        )),
        Err(message) => fail(message),
    }
}

/// runc's `features`, with what runcvm adds (`features.rs`).
fn features(invocation: &Invocation, runc: &Runc) -> Outcome {
    use std::io::Write;
    let output = std::process::Command::new(runc.path())
        .args(&invocation.raw)
        .output()
        .map_err(|e| format!("runcvm: cannot run {} features: {e}", runc.path().display()))?;
    let _ = std::io::stderr().write_all(&output.stderr);
    if !output.status.success() {
        let _ = std::io::stdout().write_all(&output.stdout);
        return Ok(Some(output.status.code().unwrap_or(FAILURE)));
    }
    let _ = std::io::stdout().write_all(&features::with_user_namespaces(&output.stdout));
    Ok(Some(0))
}

/// `Ok(None)`: hand the invocation to runc as it is.
type Outcome = Result<Option<i32>, String>;

fn create(invocation: &Invocation, settings: &settings::Settings, runc: &Runc, state_root: &Path, id: &str) -> Outcome {
    let context =
        |e: &dyn std::error::Error| format!("runcvm: cannot create container {id}: {}", runcvm_log::error_chain(e));
    check_id(id).map_err(|e| context(&e))?;
    let bundle = invocation
        .verb_flag(&["bundle", "b"])
        .map_or_else(|| std::env::current_dir().unwrap_or_default(), PathBuf::from);
    let runc_root = invocation
        .root
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_RUNC_ROOT));
    if runc_root.join(id).exists() {
        // runc refuses the duplicate id; the live container's state stays.
        return Ok(None);
    }
    collect_orphans(invocation, state_root);
    let config = BundleConfig::read(&bundle).map_err(|e| context(&e))?;
    let node = create::namespaces::NodeNamespaces::of_this_node();
    let Some(kind) = create::pod_vm::kind_of(&config.config, state_root, &node).map_err(|e| context(&e))? else {
        // The pause container of a pod without a pod VM needs nothing of
        // runcvm's, not even the install.
        return Ok(None);
    };
    let install = install::Install::locate(settings.install_root.as_deref()).map_err(|e| context(&e))?;
    let request = CreateRequest {
        bundle: &bundle,
        id,
        install: &install,
        state_root,
        node: &node,
        log: invocation.log.as_deref(),
        log_json: invocation.log_json,
        kind: &kind,
    };
    create::prepare(&request, &config).map_err(|e| context(&e))?;
    // A create that fails leaves nothing: no state, the bundle as it was.
    let undo = || {
        let _ = state::remove_state(state_root, id);
        let _ = std::fs::write(&config.path, &config.bytes);
    };
    if let Err(e) = orphans::record_runc_root(state_root, id, &runc_root) {
        undo();
        return Err(format!(
            "runcvm: cannot create container {id}: cannot write {}: {e}",
            orphans::runc_root_record(state_root, id).display()
        ));
    }
    let code = runc.run(&invocation.raw).map_err(|e| {
        undo();
        context(&e)
    })?;
    let over = invocation.verb.as_deref() == Some("run") && !invocation.verb_switch(&["detach", "d"]);
    if code != 0 {
        // runc said why in the log.
        undo();
    } else if over {
        // A foreground `run` is over, container and all, when runc returns.
        let _ = state::remove_state(state_root, id);
    }
    Ok(Some(code))
}

fn exec(invocation: &Invocation, state_root: &Path, id: &str) -> Result<(), String> {
    let state = state::state_folder(state_root, id);
    if check_id(id).is_err() || !state.is_dir() {
        return Ok(());
    }
    let context =
        |e: &dyn std::error::Error| format!("runcvm: cannot exec in container {id}: {}", runcvm_log::error_chain(e));
    let process = invocation
        .verb_flag(&["process", "p"])
        .ok_or(exec::ExecError::NoProcessFile)
        .map_err(|e| context(&e))?;
    let launch = state::read_node_launch(state_root, id).map_err(|e| context(&e))?;
    exec::rewrite(Path::new(process), &launch).map_err(|e| context(&e))
}

/// runc deletes; the state folder goes once runc no longer knows the
/// container.
fn delete(invocation: &Invocation, runc: &Runc, state_root: &Path, id: &str) -> Outcome {
    if check_id(id).is_err() {
        return Ok(None);
    }
    let code = runc
        .run(&invocation.raw)
        .map_err(|e| format!("runcvm: {}", runcvm_log::error_chain(&e)))?;
    let runc_root = invocation
        .root
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_RUNC_ROOT));
    let state = state::state_folder(state_root, id);
    if !runc_root.join(id).exists()
        && let Err(e) = state::remove_state(state_root, id)
    {
        report::error(
            invocation.log.as_deref(),
            invocation.log_json,
            &format!("runcvm: cannot remove {}: {e}", state.display()),
        );
    }
    Ok(Some(code))
}

/// Collects the folders of containers gone without a `delete`, saying what
/// went in the runtime's log.
fn collect_orphans(invocation: &Invocation, state_root: &Path) {
    for (id, verdict) in orphans::collect(state_root, std::time::SystemTime::now()) {
        let line = match verdict {
            orphans::Verdict::Kept => continue,
            orphans::Verdict::Collected => {
                format!(
                    "removed the folder of container {id}, which is gone without a delete (runc does not know it, no launcher holds it)"
                )
            }
            orphans::Verdict::Failed(e) => format!("cannot remove the folder of container {id}, which is gone: {e}"),
        };
        report::info(invocation.log.as_deref(), invocation.log_json, &line);
    }
}

/// runc's state folder when `--root` is not given.
const DEFAULT_RUNC_ROOT: &str = "/run/runc";

/// `update` of a workload container keeps the overhead on the memory limit
/// and refuses what the VM's size cannot follow (`update.rs`).
fn update(invocation: &Invocation, runc: &Runc, state_root: &Path, id: &str) -> Outcome {
    use std::io::{Read, Write};
    use std::os::unix::process::CommandExt;
    if check_id(id).is_err() || !state::state_folder(state_root, id).is_dir() {
        return Ok(None);
    }
    let context =
        |e: &dyn std::error::Error| format!("runcvm: cannot update container {id}: {}", runcvm_log::error_chain(e));
    let Some(source) = invocation.verb_flag(&["resources", "r"]) else {
        // Resources given as flags (`--memory` …) are runc's to apply.
        return Ok(None);
    };
    let mut bytes = Vec::new();
    let read = if source == "-" {
        std::io::stdin().read_to_end(&mut bytes)
    } else {
        std::fs::File::open(source).and_then(|mut f| f.read_to_end(&mut bytes))
    };
    read.map_err(|e| context(&e))?;
    let mut resources: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| context(&e))?;
    let memory = update::memory_limit(&resources);
    let millicpus = update::cpu_limit_millicpus(&resources);
    let launch = state::read_node_launch(state_root, id);
    // Whatever the update holds: a container in its pod's VM gets no
    // overhead on any of its limits.
    let in_pod_vm = match &launch {
        Ok(launch) if matches!(launch.role, runcvm_spec::launch::LaunchRole::InPodVm { .. }) => {
            let (memory, cpu) = (
                update::memory_limit_asked(&resources),
                update::cpu_limit_asked(&resources),
            );
            update::check_in_pod_vm(memory, cpu, &launch.plan).map_err(|e| context(&e))?;
            true
        }
        _ => false,
    };
    if !in_pod_vm && (memory.is_some() || millicpus.is_some()) {
        match launch {
            Ok(launch) => {
                if let Some(limit) = memory {
                    update::check_memory(limit, launch.memory_mib).map_err(|e| context(&e))?;
                }
                if let Some(millicpus) = millicpus {
                    update::check_cpus(millicpus, launch.cpus).map_err(|e| context(&e))?;
                }
            }
            // A container an earlier build created has no node-side copy.
            Err(e) if e.is_missing() => runcvm_log::warn!(
                "container {id} has no node-side launch file: its new limits are not checked against the VM's size"
            ),
            Err(e) => return Err(context(&e)),
        }
    }
    if !in_pod_vm {
        // The VMM's overhead is on the limit of a container with a VM of
        // its own; a container in its pod's VM has only its launcher.
        update::add_overhead(&mut resources, runcvm_host::resources::MEMORY_OVERHEAD_MIB << 20);
    }
    let mut child = std::process::Command::new(runc.path())
        .arg0("runc")
        .args(update::resources_from_stdin(&invocation.raw))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| context(&e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(resources.to_string().as_bytes())
            .map_err(|e| context(&e))?;
    }
    let status = child.wait().map_err(|e| context(&e))?;
    Ok(Some(status.code().unwrap_or(FAILURE)))
}

/// A container id names a folder: it must be one plain name.
pub(crate) fn check_id(id: &str) -> Result<(), BadId> {
    if id.is_empty() || id == "." || id == ".." || id.contains('/') || id.contains('\0') {
        Err(BadId(id.to_owned()))
    } else {
        Ok(())
    }
}

/// container id {0:?} is not a plain name
#[derive(Debug, thiserror::Error)]
#[error("container id {0:?} is not a plain name")]
struct BadId(String);
