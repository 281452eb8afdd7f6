use super::*;

/// A `config.json` as containerd 1.6's CRI writes it, trimmed, with a field
/// no OCI version defines.
fn cri_config() -> Value {
    json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "user": {"uid": 1000, "gid": 1000, "additionalGids": [1000, 44]},
            "args": ["/bin/sh", "-c", "echo hi"],
            "env": ["PATH=/bin", "A=b c", "RUNCVM_QEMU=/image/evil", "LD_PRELOAD=/app/x.so", "RUNCVM_LOG_LEVEL=DEBUG", "RUNCVM_KERNEL_ARGS=init=/bin/sh", "RUNCVM_HYPERVISOR=qemu"],
            "cwd": "/work",
            "capabilities": {
                "bounding": ["CAP_CHOWN", "CAP_KILL"],
                "effective": ["CAP_CHOWN", "CAP_KILL"],
                "permitted": ["CAP_CHOWN", "CAP_KILL"]
            },
            "noNewPrivileges": true,
            "oomScoreAdj": 1000
        },
        "root": {"path": "rootfs"},
        "hostname": "pod-a",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid"]},
            {"destination": "/data", "type": "bind", "source": "/var/lib/kubelet/x", "options": ["rbind", "rprivate", "rw"]}
        ],
        "annotations": {"io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-id": "abc"},
        "linux": {
            "resources": {
                "devices": [{"allow": false, "access": "rwm"}],
                "memory": {"limit": 268435456},
                "cpu": {"quota": 150000, "period": 100000}
            },
            "namespaces": [{"type": "pid"}, {"type": "network", "path": "/proc/42/ns/net"}],
            "seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]},
            "maskedPaths": ["/proc/kcore"]
        },
        "x-unknown-extension": {"kept": [1, 2, 3]}
    })
}

fn rewrite() -> LauncherRewrite {
    LauncherRewrite {
        args: vec!["/opt/runcvm/bin/runcvm".into(), "launch".into(), "/.runcvm".into()],
        capabilities: vec![LAUNCHER_CAPABILITY.into()],
        devices: vec![CharDevice {
            path: "/dev/kvm".into(),
            major: 10,
            minor: 232,
        }],
        mounts: vec![AddedMount {
            source: "/opt/runcvm".into(),
            destination: "/opt/runcvm".into(),
            read_only: true,
            exec: true,
            recursive: true,
        }],
        memory_overhead_bytes: 64 << 20,
        drop_host_devices: false,
        drop_user_namespace: false,
        cpu_shares: None,
    }
}

#[test]
fn a_sandbox_says_its_pods_size() {
    let mut config = cri_config();
    config["annotations"] = json!({
        "io.kubernetes.cri.container-type": "sandbox",
        "io.kubernetes.cri.sandbox-cpu-period": "100000",
        "io.kubernetes.cri.sandbox-cpu-quota": "150000",
        "io.kubernetes.cri.sandbox-cpu-shares": "1536",
        "io.kubernetes.cri.sandbox-memory": "314572800",
    });
    let sandbox = OciConfig::parse(&serde_json::to_vec(&config).unwrap(), "config.json").unwrap();
    assert_eq!(sandbox.role(), ContainerRole::Sandbox);
    let sizing = sandbox.sandbox_sizing();
    assert_eq!(
        sizing.cpu,
        Some(crate::CpuLimit {
            quota_us: 150_000,
            period_us: 100_000
        })
    );
    assert_eq!(
        (sizing.cpu_shares, sizing.memory_bytes),
        (Some(1536), Some(314_572_800))
    );
    // No sizing annotations: no limits.
    config["annotations"] = json!({"io.kubernetes.cri.container-type": "sandbox"});
    let plain = OciConfig::parse(&serde_json::to_vec(&config).unwrap(), "config.json").unwrap();
    assert_eq!(plain.sandbox_sizing(), crate::oci::SandboxSizing::default());
}

#[test]
fn a_pod_vms_sandbox_gets_the_pods_cpu_weight() {
    let mut config = cri_config();
    let mut with_shares = rewrite();
    with_shares.cpu_shares = Some(1536);
    rewrite_config(&mut config, &with_shares, "config.json").unwrap();
    assert_eq!(config["linux"]["resources"]["cpu"]["shares"], 1536);
    let mut other = cri_config();
    let before = other["linux"]["resources"]["cpu"].clone();
    rewrite_config(&mut other, &rewrite(), "config.json").unwrap();
    assert_eq!(
        other["linux"]["resources"]["cpu"], before,
        "no weight asked for: left as it was"
    );
}

#[test]
fn the_typed_view_reads_what_cri_writes() {
    let config = OciConfig::parse(&serde_json::to_vec(&cri_config()).unwrap(), "config.json").unwrap();
    assert_eq!(config.role(), ContainerRole::Workload);
    assert_eq!(config.network_namespace(), Some(Some("/proc/42/ns/net")));
    assert_eq!(config.memory_limit(), Some(268_435_456));
    assert_eq!(config.cpu_limit(), Some(2));
    let weight = |shares: u64| {
        let json = json!({"linux": {"resources": {"cpu": {"shares": shares}}}});
        OciConfig::parse(&serde_json::to_vec(&json).unwrap(), "config.json")
            .unwrap()
            .cpu_weight()
    };
    // runc's conversion: the ends of the range, and kubelet's 1 CPU.
    assert_eq!(
        (weight(2), weight(1024), weight(262_144)),
        (Some(1), Some(39), Some(10_000))
    );
    assert_eq!(weight(0), None);
    let no_quota = json!({"linux": {"resources": {"cpu": {"quota": -1, "period": 100_000}}}});
    let unlimited = OciConfig::parse(&serde_json::to_vec(&no_quota).unwrap(), "config.json").unwrap();
    assert_eq!((unlimited.cpu_quota(), unlimited.cpu_limit()), (None, None));
    let entrypoint = config.process.unwrap().entrypoint();
    assert_eq!(entrypoint.args.len(), 3);
    assert_eq!((entrypoint.uid, entrypoint.gid), (1000, 1000));
    assert_eq!(entrypoint.additional_gids, vec![1000, 44]);
    assert_eq!(entrypoint.cwd, ByteString::from("/work"));
    assert!(entrypoint.no_new_privileges, "noNewPrivileges reaches the guest");
    let capabilities = entrypoint
        .capabilities
        .clone()
        .expect("the capabilities reach the guest");
    assert_eq!(capabilities.bounding, ["CAP_CHOWN", "CAP_KILL"]);
    assert!(capabilities.ambient.is_empty() && capabilities.inheritable.is_empty());
    let bare = OciProcess::parse(br#"{"args":["sh"]}"#, "p").unwrap().entrypoint();
    assert_eq!(
        bare.capabilities,
        Some(ProcessCapabilities::default()),
        "no capabilities object: none at all, as under runc"
    );
    entrypoint.validate().unwrap();
}

#[test]
fn sandboxes_are_told_apart_by_either_runtimes_annotation() {
    for key in [CRI_CONTAINER_TYPE, CRIO_CONTAINER_TYPE] {
        let config = OciConfig::parse(format!(r#"{{"annotations":{{"{key}":"sandbox"}}}}"#).as_bytes(), "c").unwrap();
        assert_eq!(config.role(), ContainerRole::Sandbox);
    }
    assert_eq!(OciConfig::parse(b"{}", "c").unwrap().role(), ContainerRole::Workload);
}

#[test]
fn malformed_files_are_named_with_the_position() {
    let err = OciConfig::parse(b"{\"process\": [}", "/b/config.json")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("/b/config.json is not a valid OCI runtime config"),
        "{err}"
    );
    assert!(err.contains("line 1"), "{err}");
    let err = OciConfig::parse(br#"{"process": {"args": "sh"}}"#, "config.json").unwrap_err();
    assert!(err.to_string().contains("invalid type"), "{err}");
}

#[test]
fn the_rewrite_changes_what_it_must_and_keeps_everything_else() {
    let original = cri_config();
    let mut config = original.clone();
    rewrite_config(&mut config, &rewrite(), "config.json").unwrap();

    assert_eq!(
        config["process"]["args"],
        json!(["/opt/runcvm/bin/runcvm", "launch", "/.runcvm"])
    );
    assert_eq!(config["process"]["user"], json!({"uid": 0, "gid": 0}));
    assert_eq!(config["process"]["cwd"], json!("/"));
    // The pod's env may not choose what the root launcher executes, nor how
    // the guest boots: only the run's knobs are kept, with the launcher's
    // own PATH (no LD_PRELOAD, no kernel arguments, no hypervisor).
    assert_eq!(
        config["process"]["env"],
        json!([LAUNCHER_PATH, "RUNCVM_LOG_LEVEL=DEBUG"])
    );
    assert_eq!(config["annotations"][REWRITTEN_ANNOTATION], json!("rewritten"));
    assert!(
        OciConfig::parse(&serde_json::to_vec(&config).unwrap(), "c")
            .unwrap()
            .rewritten()
    );
    for set in CAPABILITY_SETS {
        assert_eq!(
            config["process"]["capabilities"][set],
            json!(["CAP_CHOWN", "CAP_KILL", "CAP_NET_ADMIN"])
        );
    }
    let mounts = config["mounts"].as_array().unwrap();
    assert_eq!(mounts.len(), 3);
    assert_eq!(
        mounts[2],
        json!({"destination": "/opt/runcvm", "type": "bind", "source": "/opt/runcvm", "options": ["rbind", "ro", "nosuid", "nodev"]})
    );
    assert_eq!(config["linux"]["devices"][0]["path"], json!("/dev/kvm"));
    assert_eq!(
        config["linux"]["resources"]["devices"][1],
        json!({"allow": true, "type": "c", "major": 10, "minor": 232, "access": "rw"})
    );
    assert_eq!(
        config["linux"]["resources"]["memory"]["limit"],
        json!(268_435_456 + (64 << 20))
    );

    // Untouched: seccomp (adjusted never, deleted never), masked paths,
    // namespaces, annotations, the unknown field, the other process fields.
    for pointer in [
        "/linux/seccomp",
        "/linux/maskedPaths",
        "/linux/namespaces",
        "/annotations/io.kubernetes.cri.sandbox-id",
        "/x-unknown-extension",
        "/process/noNewPrivileges",
        "/process/oomScoreAdj",
        "/hostname",
        "/root",
    ] {
        assert_eq!(config.pointer(pointer), original.pointer(pointer), "{pointer}");
    }
}

#[test]
fn a_process_without_capabilities_gets_the_launchers_alone() {
    let mut process = json!({"args": ["sh"]});
    add_capabilities(process.as_object_mut().unwrap(), &[LAUNCHER_CAPABILITY], "p").unwrap();
    for set in ["bounding", "effective", "permitted"] {
        assert_eq!(process["capabilities"][set], json!([LAUNCHER_CAPABILITY]), "{set}");
    }
    assert!(process["capabilities"].get("ambient").is_none());
}

#[test]
fn the_rewrite_is_stable_and_adds_the_capability_once() {
    let mut config = cri_config();
    rewrite_config(&mut config, &rewrite(), "c").unwrap();
    let once = config["process"]["capabilities"].clone();
    rewrite_config(&mut config, &rewrite(), "c").unwrap();
    assert_eq!(config["process"]["capabilities"], once);
}

#[test]
fn no_limit_stays_no_limit() {
    let mut config = cri_config();
    config["linux"]["resources"]["memory"] = json!({"limit": 0, "swap": -1});
    rewrite_config(&mut config, &rewrite(), "c").unwrap();
    assert_eq!(config["linux"]["resources"]["memory"], json!({"limit": 0, "swap": -1}));
}

#[test]
fn a_wrongly_shaped_field_is_named() {
    let mut config = cri_config();
    config["mounts"] = json!("nope");
    let err = rewrite_config(&mut config, &rewrite(), "/b/config.json")
        .unwrap_err()
        .to_string();
    assert_eq!(err, "/b/config.json: `mounts` is not an array");
}

#[test]
fn an_exec_process_runs_the_client_as_root_keeping_env_and_terminal() {
    let mut process = json!({"terminal": true, "user": {"uid": 7, "gid": 7}, "args": ["sh"], "env": ["A=1"], "cwd": "/w", "capabilities": {"bounding": []}});
    rewrite_exec_process(&mut process, &["/opt/runcvm/bin/runcvm".into(), "exec".into()], "p").unwrap();
    assert_eq!(process["args"], json!(["/opt/runcvm/bin/runcvm", "exec"]));
    assert_eq!(process["user"], json!({"uid": 0, "gid": 0}));
    assert_eq!(process["terminal"], json!(true));
    assert_eq!(process["env"], json!(["A=1"]));
    assert_eq!(process["capabilities"], json!({"bounding": []}));
}

#[test]
fn a_privileged_containers_host_devices_are_left_out_and_it_is_told_apart() {
    let mut value = cri_config();
    value["linux"]["devices"] = json!([{"path": "/dev/sda", "type": "b", "major": 8, "minor": 0}]);
    value["linux"]["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
    let typed: OciConfig = serde_json::from_value(value.clone()).unwrap();
    assert!(typed.all_devices_allowed());
    let mut dropping = rewrite();
    dropping.drop_host_devices = true;
    rewrite_config(&mut value, &dropping, "config.json").unwrap();
    let paths: Vec<&str> = value["linux"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/dev/kvm"], "only the launcher's own devices");
    let narrow: OciConfig =
        serde_json::from_value(json!({"linux": {"resources": {"devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 10, "minor": 200, "access": "rwm"}]}}}))
            .unwrap();
    assert!(!narrow.all_devices_allowed());
}

#[test]
fn a_user_namespace_is_left_to_the_guest() {
    let mut value = cri_config();
    value["linux"]["namespaces"] =
        json!([{"type": "network", "path": "/proc/7/ns/net"}, {"type": "user", "path": "/proc/7/ns/user"}]);
    value["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 65536, "size": 65536}]);
    value["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 65536, "size": 65536}]);
    value["mounts"] = json!([{"destination": "/data", "type": "bind", "source": "/srv", "options": ["rbind", "idmap"],
                              "uidMappings": [{"containerID": 0, "hostID": 65536, "size": 65536}]}]);
    let typed: OciConfig = serde_json::from_value(value.clone()).unwrap();
    assert_eq!(typed.linux.as_ref().unwrap().uid_mappings[0].host_id, 65536);
    let mut dropping = rewrite();
    dropping.drop_user_namespace = true;
    rewrite_config(&mut value, &dropping, "config.json").unwrap();
    assert_eq!(
        value["linux"]["namespaces"],
        json!([{"type": "network", "path": "/proc/7/ns/net"}])
    );
    assert!(value["linux"].get("uidMappings").is_none() && value["linux"].get("gidMappings").is_none());
    assert_eq!(value["mounts"][0]["options"], json!(["rbind"]));
    assert!(value["mounts"][0].get("uidMappings").is_none());
}
