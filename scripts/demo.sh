#!/usr/bin/env bash
# The demo: builds everything needed on a Debian 12 host (as root) and boots
# a busybox-static rootfs as a microVM that prints its kernel release, argv
# and env, then exits with a chosen code, which runcvm passes through.
#   DEMO_EXIT_CODE   the code the workload exits with (default 3)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$repo"
exit_code=${DEMO_EXIT_CODE:-3}

step "host packages"
scripts/setup-host.sh
step "guest kernel"
kernel/build.sh
step "runcvm binaries (release)"
cargo build --release --locked -p runcvm -p runcvm-guest -p runcvm-test-infra
install -d /opt/runcvm/bin
install -m 0755 "$target_dir/release/runcvm" "$target_dir/release/runcvm-init" /opt/runcvm/bin/

rootfs=/var/lib/runcvm/demo-rootfs
step "busybox rootfs in $rootfs"
rm -rf "$rootfs"
"$target_dir/release/make-busybox-rootfs" "$rootfs"

step "runcvm run $rootfs (exits $exit_code)"
set +e
/opt/runcvm/bin/runcvm run --env GREETING="hello from a microVM" "$rootfs" -- \
  sh -c 'echo "kernel: $(uname -r)"; echo "argv: $0 $*"; echo "env:"; env | sort; exit "$1"' demo "$exit_code" two
status=$?
set -e
echo "runcvm exited with $status (the workload chose $exit_code)"
[ "$status" = "$exit_code" ]
