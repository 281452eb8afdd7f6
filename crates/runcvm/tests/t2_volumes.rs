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

/// A pod whose guest cannot reach 169.254.1.254: its frames from the tap
/// to the host identity are dropped on the bridge.
fn pod_cut_off_from_its_volumes() -> PodNet {
    let net = PodNet::build(PodNetOptions::new(Style::Bridge));
    let block = runcvm_netlink::nft::bridge_input_drop("cut", "tap-eth0", "169.254.1.254".parse().unwrap());
    net.pod.enter(|| block.install()).unwrap();
    net
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
    assert_eq!(stdout, "from the host\nvalue-1\n1\n", "{stderr}");
    assert!(stderr.contains("runcvm-init ✓ Mounted /data (NFS)\n"), "{stderr}");
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

/// Only the guest's kernel reaches the volumes' server: neither a user
/// that binds a privileged source port (as any user may where a pod's
/// sysctl lowers `ip_unprivileged_port_start`, containerd 2's default), nor
/// root in the container, which could otherwise speak NFS to the servers of
/// a sibling container in its pod's VM.
#[test]
#[ignore = "T2: boots real VMs with NFS volumes; run scripts/test.sh"]
fn guest_users_cannot_reach_the_volumes_server_themselves() {
    let t2 = t2();
    let dir = host_dir();
    std::fs::write(dir.path().join("shared"), "via-nfs\n").unwrap();
    let script = "cat /data/shared; id -u; \
                  port=$(sed -n 's/.* \\/data nfs .*,port=\\([0-9]*\\).*/\\1/p' /proc/mounts); echo port=$port; \
                  if nc -w 3 169.254.1.254 $port </dev/null; then echo reached; else echo blocked; fi";
    for user in [Some("1000:1000"), None] {
        let (stdout, stderr, code) = run(&t2, &[format!("{}:/data", dir.path().display())], user, script);
        assert_eq!(code, Some(0), "{user:?}: {stdout}\n{stderr}");
        assert!(
            stdout.contains("via-nfs\n"),
            "the kernel's client reads the volume: {stdout}"
        );
        assert!(!stdout.contains("port=\n"), "the mount's port: {stdout}");
        assert!(
            stdout.contains("blocked\n"),
            "{user:?} reached the server from the container: {stdout}"
        );
    }
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

#[test]
#[ignore = "T2: boots real VMs with NFS volumes; run scripts/test.sh"]
fn hard_links_sparse_files_and_large_writes_arrive_intact() {
    let t2 = t2();
    let dir = host_dir();
    let data = dir.path();
    let script = "echo same > /data/a && ln /data/a /data/b && echo linked; \
                  dd if=/dev/zero of=/data/sparse bs=1 count=1 seek=2147483648 2>/dev/null && echo sparse; \
                  dd if=/dev/urandom of=/data/big bs=1048576 count=100 2>/dev/null && sync && sha256sum /data/big";
    let (stdout, stderr, code) = run(&t2, &[format!("{}:/data", data.display())], None, script);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("linked\n") && stdout.contains("sparse\n"), "{stdout}");
    assert_eq!(
        std::fs::metadata(data.join("a")).unwrap().nlink(),
        2,
        "a hard link made in the guest is one on the host"
    );
    assert_eq!(
        std::fs::metadata(data.join("a")).unwrap().ino(),
        std::fs::metadata(data.join("b")).unwrap().ino()
    );
    let sparse = std::fs::metadata(data.join("sparse")).unwrap();
    assert_eq!(sparse.len(), (2u64 << 30) + 1);
    assert!(
        sparse.blocks() * 512 < 1 << 20,
        "the hole stays a hole: {} blocks",
        sparse.blocks()
    );
    let guest_sum = stdout
        .lines()
        .find(|l| l.ends_with("/data/big"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_default()
        .to_owned();
    let host_sum = std::process::Command::new("sha256sum")
        .arg(data.join("big"))
        .output()
        .unwrap();
    let host_sum = String::from_utf8_lossy(&host_sum.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(guest_sum.len(), 64, "{stdout}");
    assert_eq!(guest_sum, host_sum, "100 MiB written in the guest arrive byte for byte");
}

/// A kubelet-style update (new timestamped folder, `..data` swapped
/// atomically) is seen in the guest within the attribute-cache time.
#[test]
#[ignore = "T2: boots real VMs with NFS volumes; run scripts/test.sh"]
fn a_configmap_update_on_the_host_is_seen_in_the_guest() {
    use std::io::{BufRead, BufReader};
    let t2 = t2();
    let dir = host_dir();
    let data = dir.path();
    std::fs::create_dir(data.join("..v1")).unwrap();
    std::fs::write(data.join("..v1/key"), "value-1\n").unwrap();
    std::os::unix::fs::symlink("..v1", data.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/key", data.join("key")).unwrap();
    let net = PodNet::build(PodNetOptions::new(Style::Bridge));
    let script = "cat /config/key; echo ready; \
                  i=0; while [ $i -lt 100 ]; do v=$(cat /config/key); [ \"$v\" = value-2 ] && echo \"seen after $i\" && exit 0; sleep 0.1; i=$((i+1)); done; exit 1";
    let run = RuncvmRun::new(&t2)
        .in_netns(&net.pod)
        .args([
            "run",
            "--network",
            "pod",
            "--volume",
            &format!("{}:/config:ro", data.display()),
        ])
        .arg(&t2.rootfs)
        .args(["--", "sh", "-c", script]);
    let mut child = run.spawn();
    let mut lines = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok);
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        seen.push(line.clone());
        if line == "ready" {
            std::fs::create_dir(data.join("..v2")).unwrap();
            std::fs::write(data.join("..v2/key"), "value-2\n").unwrap();
            std::os::unix::fs::symlink("..v2", data.join("..data_tmp")).unwrap();
            std::fs::rename(data.join("..data_tmp"), data.join("..data")).unwrap();
            break;
        }
    }
    seen.extend(lines);
    let status = child.wait().unwrap();
    let output = seen.join("\n");
    assert!(output.contains("value-1"), "{output}");
    let after: u32 = output
        .lines()
        .find_map(|l| l.strip_prefix("seen after "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(u32::MAX);
    assert!(
        after <= 30,
        "the update took {after} tenths of a second (attribute cache: 1 s):\n{output}"
    );
    assert_eq!(status.code(), Some(0), "{output}");
    run.assert_nothing_left();
}

/// Two containers of one pod sharing an emptyDir: two VMs over one folder,
/// each seeing what the other writes.
#[test]
#[ignore = "T2: boots real VMs with NFS volumes; run scripts/test.sh"]
fn two_vms_share_one_folder() {
    let t2 = t2();
    let dir = host_dir();
    let volume = format!("{}:/shared", dir.path().display());
    let script = |me: &str, other: &str| {
        format!(
            // Written aside and renamed: the other VM may see a file the
            // moment it is created, before its content.
            "echo hello-from-{me} > /shared/.{me}; mv /shared/.{me} /shared/{me}; i=0; while [ $i -lt 300 ]; do \
             [ -f /shared/{other} ] && cat /shared/{other} && exit 0; sleep 0.1; i=$((i+1)); done; exit 1"
        )
    };
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| run(&t2, std::slice::from_ref(&volume), None, &script("a", "b")));
        let b = scope.spawn(|| run(&t2, std::slice::from_ref(&volume), None, &script("b", "a")));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a.2, Some(0), "{}\n{}", a.0, a.1);
    assert_eq!(b.2, Some(0), "{}\n{}", b.0, b.1);
    assert!(a.0.contains("hello-from-b\n"), "{}", a.0);
    assert!(b.0.contains("hello-from-a\n"), "{}", b.0);
}

#[test]
#[ignore = "T2: boots real VMs with NFS volumes; run scripts/test.sh"]
fn an_unreachable_server_fails_the_start_with_the_guides_line() {
    let t2 = t2();
    let dir = host_dir();
    let net = pod_cut_off_from_its_volumes();
    let run = RuncvmRun::new(&t2)
        .in_netns(&net.pod)
        .args([
            "run",
            "--network",
            "pod",
            "--volume",
            &format!("{}:/data", dir.path().display()),
        ])
        .arg(&t2.rootfs)
        .args(["--", "echo", "workload-ran"]);
    let out = run.run();
    let (stdout, logs) = (out.stdout_text(), &out.stderr);
    assert_eq!(out.code, Some(125), "{stdout}\n{logs}");
    assert!(logs.contains("✗ Failed to mount /data via NFS: "), "{logs}");
    assert!(
        logs.contains("is unreachable"),
        "the cause says the server could not be reached:\n{logs}"
    );
    assert!(
        !stdout.contains("workload-ran"),
        "the workload must not start without its volume:\n{stdout}"
    );
    run.assert_nothing_left();
}

/// Single files (a subPath mount, `/etc/hosts`) are copied in at boot.
#[test]
#[ignore = "T2: boots real VMs with NFS volumes; run scripts/test.sh"]
fn single_files_are_copied_in_at_boot() {
    let t2 = t2();
    let dir = host_dir();
    let file = dir.path().join("app.conf");
    std::fs::write(&file, "mode=vm\n").unwrap();
    let run = RuncvmRun::new(&t2)
        .args(["run", "--volume", &format!("{}:/etc/app/app.conf", file.display())])
        .arg(&t2.rootfs)
        .args(["--", "cat", "/etc/app/app.conf"]);
    let out = run.run();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(out.stdout_text(), "mode=vm\n");
}

#[test]
#[ignore = "T2: boots real VMs with NFS volumes; run scripts/test.sh"]
fn the_failure_opt_out_starts_the_workload_with_the_line_logged() {
    let t2 = t2();
    let dir = host_dir();
    let net = pod_cut_off_from_its_volumes();
    let run = RuncvmRun::new(&t2)
        .in_netns(&net.pod)
        .env("RUNCVM_VOLUME_FAILURE", "continue")
        .args([
            "run",
            "--network",
            "pod",
            "--volume",
            &format!("{}:/data", dir.path().display()),
        ])
        .arg(&t2.rootfs)
        .args(["--", "sh", "-c", "echo workload-ran; ls -A /data | wc -l"]);
    let out = run.run();
    let (stdout, logs) = (out.stdout_text(), &out.stderr);
    assert_eq!(out.code, Some(0), "{stdout}\n{logs}");
    assert!(logs.contains("✗ Failed to mount /data via NFS: "), "{logs}");
    assert!(logs.contains("starting the workload without /data"), "{logs}");
    assert_eq!(stdout, "workload-ran\n0\n");
    run.assert_nothing_left();
}

/// Close-to-open: once the guest has closed a file (no fsync), the host
/// already holds all of it.
#[test]
#[ignore = "T2: boots real VMs with NFS volumes; run scripts/test.sh"]
fn a_file_closed_in_the_guest_is_complete_on_the_host() {
    use std::io::{BufRead, BufReader};
    let t2 = t2();
    let dir = host_dir();
    let net = PodNet::build(PodNetOptions::new(Style::Bridge));
    let script = "dd if=/dev/urandom of=/data/closed bs=65536 count=128 2>/dev/null; \
                  sha256sum /data/closed; echo closed; sleep 5";
    let run = RuncvmRun::new(&t2)
        .in_netns(&net.pod)
        .args([
            "run",
            "--network",
            "pod",
            "--volume",
            &format!("{}:/data", dir.path().display()),
        ])
        .arg(&t2.rootfs)
        .args(["--", "sh", "-c", script]);
    let mut child = run.spawn();
    let mut guest_sum = String::new();
    let mut host_sum = String::new();
    for line in BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        if line.ends_with("/data/closed") {
            guest_sum = line.split_whitespace().next().unwrap_or_default().to_owned();
        }
        if line == "closed" {
            // While the guest still runs, before anything else could flush.
            let out = std::process::Command::new("sha256sum")
                .arg(dir.path().join("closed"))
                .output()
                .unwrap();
            host_sum = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
        }
    }
    let _ = child.wait();
    assert_eq!(guest_sum.len(), 64);
    assert_eq!(
        host_sum, guest_sum,
        "the host holds the whole file once the guest closed it"
    );
    run.assert_nothing_left();
}
