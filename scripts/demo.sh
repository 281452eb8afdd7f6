#!/usr/bin/env bash
# The demo, on a Debian 12 host as root: installs and builds what it needs,
# then starts a private containerd (its own network namespace and folders;
# the machine's containerd is not touched), installs runcvm into it as the
# `runcvm` handler, and runs a busybox pod with that handler over CRI, as
# kubelet would: it prints the pod IP, the container's log lines, an exec
# from inside the VM and a reply from the pod IP, then removes the pod and
# uninstalls. The demo's code: crates/runcvm-runtime/examples/demo.rs.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$repo"

step "host packages"
scripts/setup-host.sh
step "guest kernel"
kernel/build.sh
step "runcvm binaries and the demo"
cargo build --locked -p runcvm -p runcvm-runtime -p runcvm-guest --example demo
step "the demo pod"
"$target_dir/debug/examples/demo"
