#!/usr/bin/env bash
# Builds the runcvm guest kernel: an uncompressed ELF vmlinux with the PVH note,
# from Debian's linux-source-6.1 and kernel/runcvm.config on top of allnoconfig.
#
# The result is cached by the hash of (fragment, source package version) under
# $RUNCVM_CACHE_DIR/kernel/<hash>/vmlinux, so a second run is a cache hit, and
# installed at $RUNCVM_PREFIX/kernel/vmlinux, where runcvm looks by default.
#
# Usage: kernel/build.sh            build (or reuse) and install
#        kernel/build.sh --path     print the cached vmlinux path, build if needed
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
fragment="$here/runcvm.config"
cache_dir="${RUNCVM_CACHE_DIR:-/var/cache/runcvm}/kernel"
prefix="${RUNCVM_PREFIX:-/opt/runcvm}"
source_package=linux-source-6.1
tarball=/usr/src/linux-source-6.1.tar.xz

die() { echo "kernel/build.sh: $*" >&2; exit 1; }

version=$(dpkg-query -W -f='${Version}' "$source_package" 2>/dev/null) ||
  die "$source_package is not installed: run 'apt-get install $source_package' (or scripts/setup-host.sh)"
[ -f "$tarball" ] || die "$tarball is missing although $source_package $version is installed: reinstall it"

key=$( { cat "$fragment"; echo "source=$source_package $version"; } | sha256sum | cut -c1-16)
out="$cache_dir/$key"
vmlinux="$out/vmlinux"

install_kernel() {
  mkdir -p "$prefix/kernel"
  if ! cmp -s "$vmlinux" "$prefix/kernel/vmlinux"; then
    cp "$vmlinux" "$prefix/kernel/vmlinux.tmp"
    mv "$prefix/kernel/vmlinux.tmp" "$prefix/kernel/vmlinux"
  fi
}

if [ ! -f "$vmlinux" ]; then
  src="$cache_dir/src-$version"
  if [ ! -f "$src/.extracted" ]; then
    echo "kernel: extracting $tarball" >&2
    rm -rf "$src" && mkdir -p "$src"
    tar -xJf "$tarball" -C "$src" --strip-components=1
    touch "$src/.extracted"
  fi
  build="$out/build"
  mkdir -p "$build"
  echo "kernel: configuring in $build" >&2
  make -s -C "$src" O="$build" ARCH=x86_64 KCONFIG_ALLCONFIG="$fragment" allnoconfig >/dev/null
  # Every option the fragment asks for must survive Kconfig's dependency
  # resolution; a silently dropped option would surface only as a guest that
  # cannot find its disk or console.
  missing=$(grep -E '^CONFIG_[A-Z0-9_]+=' "$fragment" | while read -r line; do
    grep -qxF "$line" "$build/.config" || echo "$line"
  done)
  [ -z "$missing" ] || die "Kconfig dropped options from $fragment (unmet dependencies):"$'\n'"$missing"
  echo "kernel: building vmlinux ($(nproc) jobs, a few minutes)" >&2
  start=$(date +%s)
  make -s -C "$src" O="$build" ARCH=x86_64 -j"$(nproc)" vmlinux
  readelf -n "$build/vmlinux" | grep -q 'Xen' ||
    die "$build/vmlinux has no PVH (Xen ELF) note: check CONFIG_PVH in $fragment"
  cp "$build/vmlinux" "$vmlinux.tmp" && mv "$vmlinux.tmp" "$vmlinux"
  cp "$build/.config" "$out/config"
  rm -rf "$build"
  echo "kernel: built $vmlinux in $(( $(date +%s) - start )) s" >&2
fi

install_kernel
if [ "${1:-}" = "--path" ]; then echo "$vmlinux"; else echo "kernel: $prefix/kernel/vmlinux (cache $key)" >&2; fi
