#!/usr/bin/env bash
# Runs every test tier on a Debian 12 host, as root, installing and building
# what the tiers need first (packages, guest kernel, binaries).
#   T0  cargo test --workspace           pure logic, no root
#   T2  real VMs under QEMU (TCG here), the built kernel, a busybox rootfs
# T1 (network namespaces) and T3 (containerd + CRI) arrive with the
# networking and Kubernetes issues. A tier that cannot run fails; it is never
# skipped.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$repo"

step "host packages"
scripts/setup-host.sh
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
  echo "test.sh: T2 needs root (one test hides mkfs.ext4 in a private mount namespace): run as root" >&2
  exit 1
fi
step "T2: real VMs"
cargo test --locked -p runcvm --test t2_foundation -- --ignored --test-threads 2
