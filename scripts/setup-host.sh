#!/usr/bin/env bash
# Installs what runcvm needs on a Debian 12 host, if missing. Run as root.
# Idempotent: a second run installs nothing and takes about a second.
set -euo pipefail

packages=(
  qemu-system-x86      # the VMM (microvm machine, TCG and KVM)
  e2fsprogs            # mkfs.ext4 -d and debugfs: the guest root disk
  busybox-static       # the demo's and the tests' guest rootfs
  linux-source-6.1     # the guest kernel's source
  build-essential bc bison flex libelf-dev libssl-dev xz-utils  # kernel build
  util-linux           # unshare and nsenter, for the T1 and T2 tests
  iproute2             # builds the simulated node and pod networks in T1 and T2
  python3              # scripts/bench.sh summarises its figures with it
  containerd runc containernetworking-plugins  # the T3 node and the demo's
  protobuf-compiler    # protoc, for the CRI client's generated code (k8s-cri)
  python3-yaml         # the deploy/ manifests are parsed in the install tests
)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup-host: missing packages: ${missing[*]}; run as root to install them" >&2
    exit 1
  fi
  echo "setup-host: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  for candidate in "$HOME/.cargo/bin" /root/.cargo/bin /usr/local/cargo/bin; do
    [ -x "$candidate/cargo" ] && export PATH="$candidate:$PATH" && break
  done
fi
command -v cargo >/dev/null 2>&1 || {
  echo "setup-host: cargo not found: install a Rust toolchain >= 1.85 (rustup) and re-run" >&2
  exit 1
}
