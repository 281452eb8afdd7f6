#!/usr/bin/env bash
# Runs every test tier on a Debian 12 host, as root, installing and building
# what the tiers need first (packages, guest kernel, binaries).
#   T0  cargo test --workspace           pure logic, no root
#   T1  root: pod network plumbing in network namespaces, the NFS server
#       at the protocol level; no VM
#   T2  real VMs under QEMU (TCG here), the built kernel, a busybox rootfs
#   T3  a Kubernetes node: a private containerd + runc + CNI plugins in
#       its own network namespace, pods driven over CRI as kubelet drives
#       them, with a fresh `runcvm install` of this build as the handler;
#       run twice, on containerd 1.6 (Debian 12's) and on containerd 2.x
#       (from the CRI conformance kit in ../shared/conformance)
#   T4  Kubernetes' CRI validation suite (critest, from the same kit) against
#       containerd 2.x and 1.6 with that handler; only the listed, explained
#       failures may fail
#   and, after T1, each fuzz target of fuzz/ for 30 s (scripts/fuzz.sh)
# A tier that cannot run fails; it is never skipped.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$repo"

step "host packages"
scripts/setup-host.sh
# containerd 2.x for T3, and critest and its images for T4: the conformance
# kit beside the repository unpacks them into its cache (never installed;
# idempotent). It needs root, as T3 does.
kit_setup="$repo/../shared/conformance/setup.sh"
if [ "$(id -u)" = 0 ]; then
  step "containerd 2.x, critest and its images for T3 and T4 (the CRI conformance kit's setup)"
  if [ ! -f "$kit_setup" ]; then
    echo "test.sh: $kit_setup is missing: T3 on containerd 2.x takes containerd 2.x from the CRI conformance kit in ../shared/conformance beside the repository" >&2
    exit 1
  fi
  bash "$kit_setup"
fi
step "guest kernel"
kernel/build.sh
step "build"
cargo build --workspace --locked

step "lint"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "T0: unit and property tests"
cargo test --workspace --locked

if [ "$(id -u)" != 0 ]; then
  echo "test.sh: T1 and T2 need root (network namespaces, taps, a private mount namespace): run as root" >&2
  exit 1
fi
# Every tier cleans up after itself, pass or fail: prove it, on any exit.
check_leftovers() {
  status=$?
  leftovers=$(ip netns list 2>/dev/null | grep -o '^rcvm-t-[^ ]*' || true)
  if [ -n "$leftovers" ]; then
    echo "test.sh: network namespaces left behind: $leftovers" >&2
    [ "$status" != 0 ] || status=1
  fi
  exit "$status"
}
trap check_leftovers EXIT

step "T1: pod network plumbing in network namespaces, NFS at the protocol level"
cargo test --locked -p runcvm-net --test t1_pod_network -- --ignored --test-threads 2
cargo test --locked -p runcvm-nfs --test protocol -- --ignored --test-threads 2
cargo test --locked -p runcvm-nfs --test connection -- --ignored --test-threads 2

step "fuzz: the NFS server, the control channel's frames, the OCI rewrites (scripts/fuzz.sh)"
scripts/fuzz.sh

step "T2: real VMs"
cargo test --locked -p runcvm --test t2_foundation -- --ignored --test-threads 2
cargo test --locked -p runcvm --test t2_network -- --ignored --test-threads 2
cargo test --locked -p runcvm --test t2_volumes -- --ignored --test-threads 2
cargo test --locked -p runcvm --test t2_lifecycle -- --ignored --test-threads 2
cargo test --locked -p runcvm --test t2_pods -- --ignored --test-threads 2
# The launcher's Firecracker path with the fake, as the VMM user (root only).
cargo test --locked -p runcvm --test firecracker_host -- --ignored --test-threads 2

step "T2 on Firecracker, where a Firecracker binary and a KVM that boots guests are present"
# The machine's own choice, whatever this shell's RUNCVM_* say.
doctor=$(env -u RUNCVM_HYPERVISOR -u RUNCVM_ACCEL -u RUNCVM_FIRECRACKER "$target_dir/debug/runcvm" doctor 2>/dev/null || true)
if grep -qx 'hypervisor: firecracker' <<<"$doctor"; then
  for suite in t2_foundation t2_network t2_volumes t2_lifecycle t2_pods; do
    RUNCVM_T2_HYPERVISOR=firecracker cargo test --locked -p runcvm --test "$suite" -- --ignored --test-threads 2
  done
else
  echo "test.sh: the Firecracker suite did not run: $(grep '^hypervisor:' <<<"$doctor" || echo 'runcvm doctor said nothing')"
fi

step "T3: the bundled QEMU chrooted into a busybox rootfs (no containerd: runs once)"
cargo test --locked -p runcvm-install --test bundle -- --ignored --test-threads 2

# The node suites, on the containerd RUNCVM_T3_CONTAINERD names.
t3_suites() {
  cargo test --locked -p runcvm-test-node --test t3_runc -- --ignored --test-threads 2
  cargo test --locked -p runcvm-runtime --test t3_cri -- --ignored --test-threads 2
  cargo test --locked -p runcvm-runtime --test t3_runcvm -- --ignored --test-threads 2
  cargo test --locked -p runcvm-runtime --test t3_kubelet -- --ignored --test-threads 2
  cargo test --locked -p runcvm-runtime --test t3_pod_vm -- --ignored --test-threads 2
}

step "T3 on containerd 1.6: a Kubernetes node (containerd + runc + CNI), pods over CRI"
RUNCVM_T3_CONTAINERD=1.6 t3_suites

step "T3 on containerd 2.x: the same suites on the conformance kit's containerd 2.x (version-3 config)"
RUNCVM_T3_CONTAINERD=2 t3_suites

step "T4: the CRI validation suite (critest) with the runcvm handler, on containerd 2.x and 1.6"
# One run at a time (the kit's netns and lock); the expected failures are
# crates/runcvm-runtime/tests/t4/expected-failures.txt, each with its reason.
cargo test --locked -p runcvm-runtime --test t4_conformance -- --ignored --test-threads 1 --nocapture
