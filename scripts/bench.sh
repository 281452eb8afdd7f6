#!/usr/bin/env bash
# Prints runcvm's start-up figures (not a test: timings here are noisy).
#   runs of `runcvm run ROOTFS -- /bin/true` under TCG: median wall time,
#   split into host preparation (plan + disk image) and boot to workload;
#   the size of each static binary; the busybox rootfs folder's build time
#   (the per-run root disk image time is part of host preparation).
#   the launcher's network set-up (observe + apply) over fresh simulated
#   pods, first start and restart (needs root);
#   volumes: 256 MiB sequential write and read on NFS versus the root disk,
#   listing 10,000 files, the launcher's RSS idle and under load (needs root);
#   the volume server alone: RSS over 1,000,000 create/delete cycles on
#   tmpfs (BENCH_NFS_CYCLES), READDIR of a 20,000-entry folder (needs root);
#   lifecycle: workload stdout over the control channel versus the serial
#   console, the exec round trip of `true`, the launcher's RSS with a VM.
#   pod VM: `runcvm attach` to its container's first line in a running VM,
#   and the VMM's RSS and guest memory with one container and with three
#   (needs root).
#   pod start through CRI (a private containerd node, a temporary
#   `runcvm install` of the release binaries): CreateContainer to the
#   workload's first log line, runcvm versus runc; RunPodSandbox,
#   CreateContainer and StartContainer apart; boot-to-workload from the
#   launcher's DEBUG lines; a 256 MiB pod's guest memory and cgroup peak
#   (needs root).
#   BENCH_RUNS       number of VM runs (default 11)
#   BENCH_NET_RUNS   number of network set-ups per pod style (default 20)
#   BENCH_POD_RUNS   number of pods per handler (default 10)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$repo"
runs=${BENCH_RUNS:-11}
scripts/setup-host.sh
kernel/build.sh >/dev/null 2>&1
cargo build --release --locked -p runcvm -p runcvm-guest -p runcvm-runtime -p runcvm-test-infra 2>/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs_start=$(date +%s.%N)
"$target_dir/release/make-busybox-rootfs" "$work/rootfs"
rootfs_end=$(date +%s.%N)
echo "$rootfs_start $rootfs_end" >"$work/rootfs-time"
export RUNCVM_STATE_DIR="$work/state" RUNCVM_ACCEL=tcg RUNCVM_LOG_LEVEL=DEBUG
for i in $(seq "$runs"); do
  start=$(date +%s.%N)
  "$target_dir/release/runcvm" run "$work/rootfs" -- /bin/true >"$work/out.$i" 2>"$work/err.$i"
  end=$(date +%s.%N)
  echo "$start $end" >"$work/wall.$i"
done
python3 - "$work" "$runs" "$target_dir/release" <<'PY'
import os, re, statistics, sys
work, runs, bindir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
wall, prep, disk, ready, total = [], [], [], [], []
for i in range(1, runs + 1):
    start, end = map(float, open(f"{work}/wall.{i}").read().split())
    wall.append(end - start)
    err = open(f"{work}/err.{i}").read()
    prep.append(float(re.search(r"host preparation took ([\d.]+) s", err).group(1)))
    ready.append(float(re.search(r"guest init ready after ([\d.]+) s", err).group(1)))
    total.append(float(re.search(r"VMM exited \(.*\) after ([\d.]+) s", err).group(1)))
    disk.append(float(re.search(r"built in ([\d.]+) s", err).group(1)))
med = statistics.median
start, end = map(float, open(f"{work}/rootfs-time").read().split())
print(f"busybox rootfs folder built in {end - start:.3f} s")
print(f"runs: {runs} x `runcvm run ROOTFS -- /bin/true`, TCG, busybox-static rootfs")
print(f"median wall time:            {med(wall):.3f} s")
print(f"  host preparation:          {med(prep):.3f} s (of which root disk image {med(disk):.3f} s)")
print(f"  VMM start to init ready:   {med(ready):.3f} s")
print(f"  VMM start to VMM exit:     {med(total):.3f} s")
for name in ("runcvm", "runcvm-init"):
    size = os.path.getsize(f"{bindir}/{name}")
    print(f"static binary {name}: {size / 1048576:.2f} MiB ({size} bytes)")
PY

if [ "$(id -u)" = 0 ]; then
  cargo run --release --locked -q -p runcvm-net --example net_setup_bench
  RUNCVM_BIN="$target_dir/release/runcvm" cargo run --release --locked -q -p runcvm --example volume_bench
  cargo run --release --locked -q -p runcvm-nfs --example volume_server_bench
  RUNCVM_BIN="$target_dir/release/runcvm" cargo run --release --locked -q -p runcvm --example lifecycle_bench
  RUNCVM_BIN="$target_dir/release/runcvm" cargo run --release --locked -q -p runcvm --example pod_vm_bench
  # Installs the release runcvm, runcvm-runtime and runcvm-init built above.
  cargo run --release --locked -q -p runcvm-runtime --example pod_start_bench
else
  echo "network set-up, volumes, the volume server, lifecycle, the pod VM and pod start: not measured (needs root)"
fi
