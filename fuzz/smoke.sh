#!/usr/bin/env bash
# A short fuzzing run of every target, for CI: `fuzz/smoke.sh [SECONDS]`
# (default 30 s per target). Installs cargo-fuzz if missing. cargo-fuzz needs
# nightly compiler flags; on a stable toolchain RUSTC_BOOTSTRAP=1 unlocks them.
# Fails (non-zero) on the first crash; the input is left in fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH="${1:-30}"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
for target in $(cargo fuzz list); do
  echo "== fuzz $target for ${SECONDS_EACH}s"
  mkdir -p "corpus/$target"
  # Seed inputs (checked in) first, then the growing corpus.
  cargo fuzz run "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -max_len=65536
done
