#!/usr/bin/env bash
# Runs each fuzz target of fuzz/ for a bounded time (FUZZ_SECONDS, default
# 30), with coverage-guided libFuzzer through `cargo fuzz` on the stable
# toolchain (no sanitizer: `-s none`). Each run starts from the target's
# seeds in fuzz/seeds/TARGET, which also hold every input that once crashed
# it, so a regression fails here; what the run discovers goes to a scratch
# corpus under fuzz/corpus. A crash, a panic, a leak of the run's time or
# memory limits fails the script and leaves the input in fuzz/artifacts.
# Root: the NFS target serves its export with each call's credentials.
#   scripts/fuzz.sh [TARGET...]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$repo/fuzz"

seconds=${FUZZ_SECONDS:-30}
cargo_fuzz_version=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "$cargo_fuzz_version"; then
  step "cargo-fuzz $cargo_fuzz_version (crates.io)"
  cargo install cargo-fuzz --locked --version "$cargo_fuzz_version"
fi

targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
for target in "${targets[@]}"; do
  step "fuzz: $target for ${seconds} s"
  mkdir -p "corpus/$target"
  # libFuzzer's progress lines (`#N NEW …`) and its recommended dictionary
  # are left out; its verdict, statistics and any crash report are kept.
  cargo fuzz run -s none "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=1024 -malloc_limit_mb=256 -timeout=10 -print_final_stats=1 2>&1 |
    { grep -vE '^(#[0-9]|"|###### |[[:space:]]+NEW_FUNC)' || true; }
done
