//! `exec` into a workload container: the process containerd asks for runs
//! in the VM. Its `process.json` is rewritten to run the exec client
//! (`runcvm exec`) in the container, which hands argv, env, cwd, user and
//! terminal to the guest over the launcher's exec socket.

use runcvm_spec::launch::{CONTAINER_INSTALL_ROOT, CONTAINER_POD_DIR, CONTAINER_STATE_DIR, LaunchRole};
use runcvm_spec::oci::{OciError, OciProcess, rewrite_exec_process};
use runcvm_spec::{ContainerLaunch, ProcessCapabilities};
use std::path::{Path, PathBuf};

/// Why an exec cannot be prepared.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// process.json missing
    #[error("runcvm-runtime exec needs --process FILE (containerd always passes one); got a command line instead")]
    NoProcessFile,
    /// a file cannot be read or written
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Oci(#[from] OciError),
}

/// Rewrites `process_file` for the container launched as `launch` (its
/// node-side copy, out of the container's reach).
pub fn rewrite(process_file: &Path, launch: &ContainerLaunch) -> Result<(), ExecError> {
    let io = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| ExecError::Io { action, path, source }
    };
    let bytes = std::fs::read(process_file).map_err(io("read", process_file))?;
    let rewritten = rewritten(&bytes, launch, &process_file.display().to_string())?;
    let temp = process_file.with_extension("runcvm-tmp");
    std::fs::write(&temp, rewritten)
        .and_then(|()| std::fs::rename(&temp, process_file))
        .map_err(io("write", process_file))
}

/// `process.json`'s bytes (named `file` in errors) as [`rewrite`] writes
/// them back.
pub fn rewritten(bytes: &[u8], launch: &ContainerLaunch, file: &str) -> Result<Vec<u8>, ExecError> {
    let file = file.to_owned();
    let process = OciProcess::parse(bytes, &file)?;
    let mut value: serde_json::Value = serde_json::from_slice(bytes).map_err(|source| OciError::Malformed {
        file: file.clone(),
        what: "process",
        source,
    })?;
    rewrite_exec_process(&mut value, &client_args(&process, launch), &file)?;
    let (uid, gid, groups) = target_user(&process, launch);
    if uid != 0 || gid != 0 || !groups.is_empty() {
        // The client runs as root (it must reach the launcher's 0700
        // folder) and switches to the workload's user for `---` itself; a
        // pod that dropped every capability would leave it unable to. The
        // switch clears them all, and `---` runs with no_new_privs, so no
        // set-user-ID binary raises them again.
        if let Some(object) = value.as_object_mut() {
            runcvm_spec::oci::add_capabilities(object, &["CAP_SETUID", "CAP_SETGID"], &file)?;
        }
    }
    Ok(serde_json::to_vec(&value).expect("JSON values serialize"))
}

/// The user an exec runs as: `process.json`'s, or the workload's when that
/// is the launcher's (root, no groups).
fn target_user(process: &OciProcess, launch: &ContainerLaunch) -> (u32, u32, Vec<u32>) {
    let as_launcher = process.user.uid == 0 && process.user.gid == 0 && process.user.additional_gids.is_empty();
    if as_launcher {
        (
            launch.process.uid,
            launch.process.gid,
            launch.process.additional_gids.clone(),
        )
    } else {
        (process.user.uid, process.user.gid, process.user.additional_gids.clone())
    }
}

/// The exec client's argv. containerd builds an exec's process from the
/// container's, which is the launcher's (root, in `/`): those mean "as the
/// workload", so the workload's user, groups and cwd are used. Any other
/// user or cwd was asked for and is kept.
pub fn client_args(process: &OciProcess, launch: &ContainerLaunch) -> Vec<String> {
    let (uid, gid, groups) = target_user(process, launch);
    let cwd = if process.cwd.is_empty() || process.cwd == "/" {
        String::from_utf8_lossy(launch.process.cwd.as_bytes()).into_owned()
    } else {
        process.cwd.clone()
    };
    let mut args = vec![
        format!("{CONTAINER_INSTALL_ROOT}/bin/runcvm"),
        "exec".to_owned(),
        // stdin is passed whatever it is: an exec without one has /dev/null,
        // which reaches the guest as end of file.
        "-i".to_owned(),
    ];
    if process.terminal {
        args.push("-t".to_owned());
    }
    args.extend(["-w".to_owned(), cwd, "-u".to_owned(), format!("{uid}:{gid}")]);
    for group in groups {
        args.extend(["--group-add".to_owned(), group.to_string()]);
    }
    // The env (secrets and all) stays off the command line, which anyone on
    // the node can read: runc gives the client `process.env`, and the client
    // hands its own environment on.
    if process.no_new_privileges {
        args.push("--no-new-privileges".to_owned());
    }
    // An exec without capabilities gets the container's, as under runc.
    // A container whose launch file has none was created by an earlier
    // build, whose guest applies none and would refuse the field: nothing
    // is passed then (a node upgraded under running pods).
    let capabilities = launch
        .process
        .capabilities
        .as_ref()
        .map(|container| process.capabilities.as_ref().unwrap_or(container));
    for set in capabilities.into_iter().flat_map(ProcessCapabilities::to_flags) {
        args.extend(["--caps".to_owned(), set]);
    }
    args.push("--inherit-env".to_owned());
    if !process.env.iter().any(|e| e.starts_with("HOME=")) {
        args.push("--no-home".to_owned());
    }
    if launch.plan.user_namespace.is_some() {
        args.push("--no-outside".to_owned());
    }
    match &launch.role {
        // The pod's launcher runs the session in this container, named.
        LaunchRole::InPodVm { name } => {
            args.extend(["--container".to_owned(), name.clone(), CONTAINER_POD_DIR.to_owned()]);
        }
        LaunchRole::OwnVm | LaunchRole::PodVm => args.push(CONTAINER_STATE_DIR.to_owned()),
    }
    args.push("--".to_owned());
    args.extend(process.args.iter().cloned());
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use runcvm_spec::{ByteString, Entrypoint};

    fn launch() -> ContainerLaunch {
        let mut process = Entrypoint::new(vec!["app".into()], vec!["A=1".into()]);
        process.uid = 1000;
        process.gid = 2000;
        process.additional_gids = vec![44];
        process.cwd = ByteString::from("/work");
        ContainerLaunch {
            process,
            ..crate::test_launch::launch(LaunchRole::OwnVm)
        }
    }

    fn process(json: &str) -> OciProcess {
        OciProcess::parse(json.as_bytes(), "p").unwrap()
    }

    #[test]
    fn a_cri_exec_runs_as_the_workload() {
        let p = process(r#"{"user":{"uid":0,"gid":0},"cwd":"/","args":["sh","-c","id"],"env":["PATH=/bin","X=a b"]}"#);
        assert_eq!(
            client_args(&p, &launch()).join(" "),
            "/opt/runcvm/bin/runcvm exec -i -w /work -u 1000:2000 --group-add 44 --inherit-env --no-home /.runcvm -- sh -c id"
        );
    }

    #[test]
    fn a_pod_with_its_own_user_namespace_gets_no_way_outside_the_vm() {
        let mut userns = launch();
        let range = runcvm_spec::IdMapping {
            container_id: 0,
            host_id: 65536,
            size: 65536,
        };
        userns.plan.user_namespace = Some(runcvm_spec::UserNamespace {
            uid_mappings: vec![range],
            gid_mappings: vec![range],
        });
        let p = process(r#"{"args":["---","ip","addr"]}"#);
        assert!(client_args(&p, &userns).contains(&"--no-outside".to_owned()));
        assert!(!client_args(&p, &launch()).contains(&"--no-outside".to_owned()));
    }

    #[test]
    fn the_execs_capabilities_reach_the_guest_every_set_named() {
        let mut narrow = launch();
        narrow.process.capabilities = Some(ProcessCapabilities {
            bounding: vec!["CAP_KILL".into()],
            ..Default::default()
        });
        let p =
            process(r#"{"args":["id"],"capabilities":{"bounding":["CAP_CHOWN","CAP_KILL"],"effective":["CAP_KILL"]}}"#);
        let args = client_args(&p, &narrow).join(" ");
        assert!(
            args.contains(
                "--caps bounding=CAP_CHOWN,CAP_KILL --caps effective=CAP_KILL --caps permitted= --caps inheritable= --caps ambient= "
            ),
            "{args}"
        );
        let without = process(r#"{"args":["id"]}"#);
        let args = client_args(&without, &narrow).join(" ");
        assert!(
            args.contains("--caps bounding=CAP_KILL --caps effective= "),
            "an exec without capabilities gets the container's: {args}"
        );
        // A container an earlier build created: its guest knows no --caps.
        assert!(!client_args(&p, &launch()).join(" ").contains("--caps"));
    }

    #[test]
    fn an_exec_in_a_pods_vm_names_its_container_to_the_pods_launcher() {
        let in_pod = ContainerLaunch {
            role: LaunchRole::InPodVm { name: "c1".into() },
            ..launch()
        };
        let p = process(r#"{"args":["id"]}"#);
        let args = client_args(&p, &in_pod).join(" ");
        assert!(args.ends_with(" --container c1 /.runcvm/pod -- id"), "{args}");
    }

    #[test]
    fn an_explicit_user_cwd_and_terminal_are_kept() {
        let p = process(r#"{"terminal":true,"user":{"uid":5,"gid":6},"cwd":"/tmp","args":["-x"]}"#);
        let args = client_args(&p, &launch()).join(" ");
        assert_eq!(
            args,
            "/opt/runcvm/bin/runcvm exec -i -t -w /tmp -u 5:6 --inherit-env --no-home /.runcvm -- -x"
        );
    }

    #[test]
    fn the_file_is_rewritten_in_place_keeping_other_fields() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("process.json");
        std::fs::write(&file, r#"{"user":{"uid":0,"gid":0},"cwd":"/","args":["ls"],"env":[],"capabilities":{"bounding":["CAP_KILL"]},"x":1}"#).unwrap();
        rewrite(&file, &launch()).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(value["args"][0], "/opt/runcvm/bin/runcvm");
        assert_eq!(value["capabilities"]["bounding"][0], "CAP_KILL");
        assert_eq!(value["x"], 1);
        std::fs::write(&file, "{").unwrap();
        assert!(
            rewrite(&file, &launch())
                .unwrap_err()
                .to_string()
                .contains("is not a valid OCI process")
        );
    }
}
