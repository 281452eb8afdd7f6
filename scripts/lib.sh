# Sourced by the scripts: puts cargo on PATH and names the build outputs.
# shellcheck shell=bash
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if ! command -v cargo >/dev/null 2>&1; then
  for candidate in "$HOME/.cargo/bin" /root/.cargo/bin /usr/local/cargo/bin; do
    [ -x "$candidate/cargo" ] && export PATH="$candidate:$PATH" && break
  done
fi
target_dir="$repo/target/x86_64-unknown-linux-gnu"
step() { printf '\n==> %s\n' "$*" >&2; }
