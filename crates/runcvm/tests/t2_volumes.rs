//! T2 volumes: host folders served over NFS on 169.254.1.254 and mounted by
//! real VMs in simulated pods. Root only; run through `scripts/test.sh`.

#![allow(clippy::unwrap_used)]

use runcvm_test_infra::{PodNet, PodNetOptions, RuncvmRun, Style, T2, require_t2, tier};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn t2() -> T2 {
    tier::require_root("T2 volumes (network namespaces, ownership on the host)");
    require_t2(env!("CARGO_BIN_EXE_runcvm"), env!("CARGO_TARGET_TMPDIR"))
}

/// Runs `script` in a VM in a fresh pod with `volumes`, as `user`.
fn run(t2: &T2, volumes: &[String], user: Option<&str>, script: &str) -> (String, String, Option<i32>) {
    let net = PodNet::build(PodNetOptions::new(Style::Bridge));
    let mut run = RuncvmRun::new(t2).in_netns(&net.pod).args(["run", "--network", "pod"]);
    for volume in volumes {
        run = run.args(["--volume", volume]);
    }
    if let Some(user) = user {
        run = run.args(["--user", user]);
    }
    let run = run.arg(&t2.rootfs).args(["--", "sh", "-c", script]);
    let out = run.run();
    run.assert_nothing_left();
    (out.stdout_text(), out.stderr, out.code)
}

fn host_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("runcvm-volume-").tempdir().unwrap();
    // Everyone may write, so the guest's non-root users can too.
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    dir
}

#[test]
#[ignore = "T2: boots real VMs with NFS volumes; run scripts/test.sh"]
fn files_directories_symlinks_and_renames_cross_both_ways() {
    let t2 = t2();
    let dir = host_dir();
    let data = dir.path();
    std::fs::write(data.join("hello.txt"), "from the host\n").unwrap();
    // A ConfigMap-style symlink farm, as kubelet's atomic writer makes it.
    std::fs::create_dir(data.join("..2026_11_29_10_00_00.1")).unwrap();
    std::fs::write(data.join("..2026_11_29_10_00_00.1/key"), "value-1\n").unwrap();
    std::os::unix::fs::symlink("..2026_11_29_10_00_00.1", data.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/key", data.join("key")).unwrap();
    let script = "cat /data/hello.txt; cat /data/key; \
                  echo written > /data/new.txt && mv /data/new.txt /data/renamed.txt; \
                  mkdir /data/sub && echo deep > /data/sub/file; ln -s hello.txt /data/link; \
                  truncate -s 5 /data/renamed.txt 2>/dev/null || dd if=/dev/null of=/data/renamed.txt bs=1 seek=5 2>/dev/null; \
                  chmod 0640 /data/sub/file; grep -c ' /data nfs ' /proc/mounts";
    let (stdout, stderr, code) = run(&t2, &[format!("{}:/data", data.display())], None, script);
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(
        stdout, "runcvm-init ✓ Mounted /data (NFS)\nfrom the host\nvalue-1\n1\n",
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(data.join("renamed.txt")).unwrap(), "writt");
    assert!(!data.join("new.txt").exists());
    assert_eq!(std::fs::read_to_string(data.join("sub/file")).unwrap(), "deep\n");
    assert_eq!(std::fs::read_link(data.join("link")).unwrap(), Path::new("hello.txt"));
    assert_eq!(std::fs::metadata(data.join("sub/file")).unwrap().mode() & 0o777, 0o640);
}

#[test]
#[ignore = "T2: boots real VMs with NFS volumes; run scripts/test.sh"]
fn ownership_follows_the_guest_user_both_ways() {
    let t2 = t2();
    let dir = host_dir();
    let data = dir.path();
    std::fs::write(data.join("owned-by-2000"), "x").unwrap();
    std::os::unix::fs::chown(data.join("owned-by-2000"), Some(2000), Some(2000)).unwrap();
    let script = "touch /data/by-user; stat -c '%u:%g' /data/owned-by-2000; \
                  echo nope > /data/owned-by-2000 2>/dev/null && echo wrote-foreign || echo denied-foreign; \
                  chown 0 /data/by-user 2>/dev/null && echo chowned || echo chown-denied";
    let (stdout, stderr, code) = run(&t2, &[format!("{}:/data", data.display())], Some("1000:1000"), script);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let meta = std::fs::metadata(data.join("by-user")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (1000, 1000),
        "a file made by uid 1000 in the guest belongs to 1000 on the host"
    );
    assert!(
        stdout.contains("2000:2000\n"),
        "host ownership is seen in the guest:\n{stdout}"
    );
    assert!(
        stdout.contains("denied-foreign\n"),
        "the host's permissions apply to the guest user:\n{stdout}"
    );
    assert!(
        stdout.contains("chown-denied\n"),
        "a non-root guest user cannot give files away:\n{stdout}"
    );
    // Root in the guest can chown, as root in a container can.
    let (stdout, _, _) = run(
        &t2,
        &[format!("{}:/data", data.display())],
        None,
        "chown 3000:3000 /data/by-user && echo chowned",
    );
    assert!(stdout.contains("chowned\n"), "{stdout}");
    let meta = std::fs::metadata(data.join("by-user")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (3000, 3000));
}

#[test]
#[ignore = "T2: boots real VMs with NFS volumes; run scripts/test.sh"]
fn read_only_volumes_refuse_writes() {
    let t2 = t2();
    let dir = host_dir();
    std::fs::write(dir.path().join("config"), "setting=1\n").unwrap();
    let script = "cat /config/config; touch /config/x 2>&1; echo exit=$?";
    let (stdout, stderr, code) = run(&t2, &[format!("{}:/config:ro", dir.path().display())], None, script);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("setting=1\n"), "{stdout}");
    assert!(stdout.contains("Read-only file system"), "{stdout}");
    assert!(!dir.path().join("x").exists());
}

#[test]
#[ignore = "T2: boots real VMs with NFS volumes; run scripts/test.sh"]
fn volumes_without_the_pod_network_are_refused() {
    let t2 = t2();
    let dir = host_dir();
    let run = RuncvmRun::new(&t2)
        .args(["run", "--volume", &format!("{}:/data", dir.path().display())])
        .arg(&t2.rootfs)
        .args(["--", "true"]);
    let out = run.run();
    assert_eq!(out.code, Some(125));
    assert!(out.stderr.contains("needs --network pod"), "{}", out.stderr);
    run.assert_nothing_left();
}
