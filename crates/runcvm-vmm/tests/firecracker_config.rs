//! Firecracker configurations: golden files for representative launch plans,
//! and every configuration checked against Firecracker's API description
//! (`../shared/reference/firecracker-v1.16.1-api.yaml`).
//!
//! `RUNCVM_BLESS=1 cargo test -p runcvm-vmm --test firecracker_config`
//! rewrites the golden files in `tests/golden/`.

#![allow(clippy::unwrap_used)]

use runcvm_log::LogLevel;
use runcvm_vmm::GuestCmdline;
use runcvm_vmm::firecracker::schema::{ApiDescription, Schema};
use runcvm_vmm::firecracker::{ExtraDisk, FirecrackerConfig, FirecrackerLaunch, FirecrackerLogs, Nic};
use serde_json::{Value, json};
use std::path::Path;

const RUN: &str = "/var/lib/runcvm/runs/4242-1764417600000000000";

mod common;
use common::api;

fn cmdline(level: LogLevel, extra: &[&str]) -> GuestCmdline {
    GuestCmdline {
        log_level: level,
        // Replaced by Firecracker's own.
        reboot_method: 't',
        tsc_khz: 2_596_000,
        read_only_root: false,
        extra: extra.iter().map(|w| (*w).to_owned()).collect(),
    }
}

fn logs(level: LogLevel, metrics: bool) -> FirecrackerLogs {
    FirecrackerLogs {
        log_path: format!("{RUN}/firecracker.log").into(),
        level,
        metrics_path: metrics.then(|| format!("{RUN}/firecracker.metrics").into()),
    }
}

/// The smallest guest: no NIC, no control channel, 1 vCPU, 512 MiB.
fn minimal() -> FirecrackerLaunch {
    FirecrackerLaunch {
        kernel: "/opt/runcvm/kernel/vmlinux".into(),
        cmdline: cmdline(LogLevel::Info, &[]),
        root_disk: format!("{RUN}/disk.ext4").into(),
        extra_disks: Vec::new(),
        nic: None,
        vcpus: 1,
        memory_mib: 512,
        vsock_uds: None,
        logs: logs(LogLevel::Info, false),
    }
}

/// A pod: its NIC on tap-eth0 with the pod's MAC, 2 vCPUs, the control
/// channel on vsock, an extra read-only disk.
fn pod() -> FirecrackerLaunch {
    FirecrackerLaunch {
        nic: Some(Nic {
            tap: "tap-eth0".into(),
            mac: "0a:58:0a:f4:00:07".parse().unwrap(),
        }),
        vcpus: 2,
        memory_mib: 1920,
        vsock_uds: Some(format!("{RUN}/vsock.sock").into()),
        extra_disks: vec![ExtraDisk {
            path: format!("{RUN}/extra.img").into(),
            read_only: true,
        }],
        ..minimal()
    }
}

/// A pod at DEBUG: Firecracker's log at Debug with origins, its metrics, and
/// words from `RUNCVM_KERNEL_ARGS` last.
fn debug() -> FirecrackerLaunch {
    FirecrackerLaunch {
        cmdline: cmdline(LogLevel::Debug, &["loglevel=8"]),
        logs: logs(LogLevel::Debug, true),
        ..pod()
    }
}

fn plans() -> [(&'static str, FirecrackerLaunch); 3] {
    [("minimal", minimal()), ("pod", pod()), ("debug", debug())]
}

#[test]
fn golden_configurations() {
    let bless = std::env::var_os("RUNCVM_BLESS").is_some_and(|v| v == "1");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut stale = Vec::new();
    for (name, plan) in plans() {
        let text = FirecrackerConfig::build(&plan).unwrap().to_json();
        let path = dir.join(format!("firecracker-{name}.json"));
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let golden = std::fs::read_to_string(&path).unwrap_or_default();
        if golden != text {
            let line = golden
                .lines()
                .zip(text.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| golden.lines().count().min(text.lines().count()));
            stale.push(format!(
                "{} differs from line {}:\n  golden: {:?}\n  now:    {:?}",
                path.display(),
                line + 1,
                golden.lines().nth(line).unwrap_or("<end>"),
                text.lines().nth(line).unwrap_or("<end>"),
            ));
        }
    }
    assert!(
        stale.is_empty(),
        "{}\nIf the change is meant, run `RUNCVM_BLESS=1 cargo test -p runcvm-vmm --test firecracker_config` and review the diff",
        stale.join("\n")
    );
}

#[test]
fn the_golden_files_say_what_the_issue_asks() {
    let pod: Value = serde_json::from_str(&FirecrackerConfig::build(&pod()).unwrap().to_json()).unwrap();
    let args = pod["boot-source"]["boot_args"].as_str().unwrap();
    for word in [
        "console=ttyS0",
        "reboot=k",
        "pci=off",
        "init=/.runcvm/init",
        "root=/dev/vda",
    ] {
        assert!(args.split(' ').any(|w| w == word), "{word} missing from {args}");
    }
    assert_eq!(
        pod["network-interfaces"],
        json!([{"iface_id": "eth0", "host_dev_name": "tap-eth0", "guest_mac": "0a:58:0a:f4:00:07"}])
    );
    assert_eq!(
        pod["vsock"],
        json!({"guest_cid": 3, "uds_path": format!("{RUN}/vsock.sock")})
    );
    assert_eq!(pod["machine-config"], json!({"vcpu_count": 2, "mem_size_mib": 1920}));
    assert_eq!(pod["drives"][0]["path_on_host"], format!("{RUN}/disk.ext4"));
    assert_eq!(pod["drives"][0]["is_read_only"], false);
    assert_eq!(pod["drives"][1]["is_read_only"], true);
    let mut shared_launch = self::pod();
    shared_launch.cmdline.read_only_root = true;
    let shared: Value = serde_json::from_str(&FirecrackerConfig::build(&shared_launch).unwrap().to_json()).unwrap();
    assert_eq!(
        shared["drives"][0]["is_read_only"], true,
        "a shared boot disk is read-only"
    );
    assert!(shared["boot-source"]["boot_args"].as_str().unwrap().contains(" ro "));
    let debug: Value = serde_json::from_str(&FirecrackerConfig::build(&debug()).unwrap().to_json()).unwrap();
    assert_eq!(debug["logger"]["level"], "Debug");
    assert_eq!(debug["metrics"]["metrics_path"], format!("{RUN}/firecracker.metrics"));
    assert!(
        debug["boot-source"]["boot_args"]
            .as_str()
            .unwrap()
            .ends_with(" pci=off loglevel=8")
    );
}

/// The top-level keys of `--config-file` and the `PUT` whose body each
/// carries (the API description has no definition of the file itself; its
/// `FullVmConfiguration`, the answer to `GET /vm/config`, has the same keys).
const SECTIONS: &[(&str, &str, &str)] = &[
    ("boot-source", "/boot-source", "BootSource"),
    ("drives", "/drives/{drive_id}", "Drive"),
    (
        "network-interfaces",
        "/network-interfaces/{iface_id}",
        "NetworkInterface",
    ),
    ("machine-config", "/machine-config", "MachineConfiguration"),
    ("vsock", "/vsock", "Vsock"),
    ("logger", "/logger", "Logger"),
    ("metrics", "/metrics", "Metrics"),
];

/// Checks a configuration file: against `FullVmConfiguration` (closed),
/// with the keys Firecracker's file reader requires, and each section
/// against the body schema of its `PUT`.
fn validate_config(api: &ApiDescription, config: &Value) -> Result<(), String> {
    let mut problems = Vec::new();
    if let Err(e) = api.validate("FullVmConfiguration", config) {
        problems.push(e.to_string());
    }
    for required in ["boot-source", "drives"] {
        if config.get(required).is_none() {
            problems.push(format!("$: Firecracker's configuration file needs {required:?}"));
        }
    }
    for (key, put_path, definition) in SECTIONS {
        let Some(section) = config.get(key) else { continue };
        let schema = api
            .request_schema("PUT", put_path)
            .unwrap_or_else(|| panic!("the API description has no body for PUT {put_path}"));
        assert_eq!(
            schema.reference.as_deref(),
            Some(format!("#/definitions/{definition}").as_str()),
            "PUT {put_path}"
        );
        let items: Vec<&Value> = match section {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        for item in items {
            if let Err(e) = api.validate_schema(&format!("PUT {put_path}"), schema, item) {
                problems.push(e.to_string());
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

#[test]
fn every_configuration_matches_the_api_description() {
    let api = api();
    assert_eq!(api.info.version, "1.16.1");
    for (name, plan) in plans() {
        let config: Value = serde_json::from_str(&FirecrackerConfig::build(&plan).unwrap().to_json()).unwrap();
        validate_config(&api, &config).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // The golden files as written on disk, too.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    for (name, _) in plans() {
        let text = std::fs::read_to_string(dir.join(format!("firecracker-{name}.json"))).unwrap();
        validate_config(&api, &serde_json::from_str(&text).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn the_validator_catches_what_firecracker_would_refuse() {
    let api = api();
    let good: Value = serde_json::from_str(&FirecrackerConfig::build(&debug()).unwrap().to_json()).unwrap();
    type Case = (&'static str, fn(&mut Value), &'static str);
    let cases: [Case; 8] = [
        (
            "unknown key",
            |c| c["drives"][0]["cache"] = json!("none"),
            "$.drives[0].cache: unknown field",
        ),
        (
            "unknown section",
            |c| c["serial"] = json!({}),
            "$.serial: unknown field",
        ),
        (
            "missing required field",
            |c| drop(c["machine-config"].as_object_mut().unwrap().remove("vcpu_count")),
            "$.machine-config: the required field \"vcpu_count\" is missing",
        ),
        (
            "wrong type",
            |c| c["machine-config"]["mem_size_mib"] = json!("512"),
            "$.machine-config.mem_size_mib: expected an integer, found the string \"512\"",
        ),
        (
            "bad enum value",
            |c| c["logger"]["level"] = json!("Warn"),
            "$.logger.level: \"Warn\" is not one of \"Error\", \"Warning\", \"Info\", \"Debug\", \"Trace\", \"Off\"",
        ),
        (
            "below minimum",
            |c| c["vsock"]["guest_cid"] = json!(2),
            "$.vsock.guest_cid: 2 is below the minimum 3",
        ),
        (
            "above maximum",
            |c| c["machine-config"]["vcpu_count"] = json!(33),
            "$.machine-config.vcpu_count: 33 is above the maximum 32",
        ),
        (
            "missing drives",
            |c| drop(c.as_object_mut().unwrap().remove("drives")),
            "Firecracker's configuration file needs \"drives\"",
        ),
    ];
    for (what, break_it, expected) in cases {
        let mut config = good.clone();
        break_it(&mut config);
        let error = validate_config(&api, &config).expect_err(what);
        assert!(error.contains(expected), "{what}: {error}");
    }
}

/// Every `$ref` of the description resolves, every schema parsed with only
/// the keywords the validator knows (loading refuses others), and the
/// definitions this backend writes exist.
#[test]
fn the_description_is_fully_understood() {
    fn references<'a>(schema: &'a Schema, found: &mut Vec<&'a str>) {
        found.extend(schema.reference.as_deref());
        schema.properties.values().for_each(|s| references(s, found));
        if let Some(items) = &schema.items {
            references(items, found);
        }
    }
    let api = api();
    let mut found = Vec::new();
    api.definitions.values().for_each(|s| references(s, &mut found));
    for operations in api.paths.values() {
        for operation in operations.values() {
            operation
                .parameters
                .iter()
                .filter_map(|p| p.schema.as_ref())
                .for_each(|s| references(s, &mut found));
            operation
                .responses
                .values()
                .filter_map(|r| r.schema.as_ref())
                .for_each(|s| references(s, &mut found));
        }
    }
    assert!(found.len() > 50, "only {} references found", found.len());
    for reference in found {
        let name = reference.strip_prefix("#/definitions/").unwrap_or(reference);
        assert!(api.definition(name).is_some(), "{reference} does not resolve");
    }
    for (_, _, definition) in SECTIONS {
        assert!(api.definition(definition).is_some(), "{definition}");
    }
    // Paths are looked up by template.
    assert!(api.request_schema("PUT", "/drives/root").is_some());
    assert!(api.response_schema("GET", "/", 200).is_some());
    assert!(api.response_schema("PUT", "/actions", 400).is_some());
}
