//! The runtime's rewrites of what containerd hands it: `config.json` for the
//! launcher, and an exec's `process.json` for the exec client. Whatever the
//! bytes, each is refused with an error or rewritten into JSON that reads
//! back, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runcvm_spec::oci::{LauncherRewrite, OciConfig, rewrite_config};
use runcvm_spec::{ContainerLaunch, Entrypoint};

fn launch() -> ContainerLaunch {
    let launch = serde_json::json!({
        "version": runcvm_spec::launch::LAUNCH_VERSION,
        "process": Entrypoint::new(vec!["sh".into()], vec![]),
        "plan": runcvm_spec::LaunchPlan::default(),
        "cpus": 1,
        "memory_mib": 256,
        "accel": "tcg",
        "volumes": [],
        "boot_disk": "/var/lib/runcvm/boot/boot.ext4",
    });
    serde_json::from_value(launch).expect("a launch")
}

fuzz_target!(|data: &[u8]| {
    if OciConfig::parse(data, "config.json").is_ok()
        && let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(data)
    {
        let rewrite = LauncherRewrite {
            args: vec!["/opt/runcvm/bin/runcvm".into(), "launch".into(), "/.runcvm".into()],
            capabilities: vec!["CAP_NET_ADMIN".into()],
            devices: Vec::new(),
            mounts: Vec::new(),
            memory_overhead_bytes: 128 << 20,
            drop_host_devices: true,
            drop_user_namespace: true,
            cpu_shares: Some(1024),
        };
        if rewrite_config(&mut value, &rewrite, "config.json").is_ok() {
            let bytes = serde_json::to_vec(&value).expect("a value encodes");
            OciConfig::parse(&bytes, "config.json").expect("the rewrite reads back");
        }
    }
    if let Ok(bytes) = runcvm_runtime::exec::rewritten(data, &launch(), "process.json") {
        serde_json::from_slice::<serde_json::Value>(&bytes).expect("the rewrite is JSON");
    }
});
