#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 60 s each; `fuzz/run.sh 300` for longer).
# Needs the nightly toolchain; installs cargo-fuzz if it is missing. A crash leaves its input in
# fuzz/artifacts/<target>/ and fails the script: turn it into a case in tests/properties.rs.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/tokenmint-fuzz-target}"
status=0
for target in $(cargo +nightly fuzz list); do
  mkdir -p "corpus/$target"
  echo "== $target (${seconds}s)"
  if ! cargo +nightly fuzz run "$target" "corpus/$target" -- -max_total_time="$seconds" \
      -max_len=4096 2>"/tmp/fuzz-$target.log"; then
    echo "CRASH in $target: see /tmp/fuzz-$target.log and fuzz/artifacts/$target/" >&2
    status=1
  fi
  grep -E '^Done|stat::number_of_executed_units' "/tmp/fuzz-$target.log" | tail -1 || true
done
exit "$status"
