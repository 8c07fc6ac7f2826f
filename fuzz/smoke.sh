#!/usr/bin/env bash
# A short fuzzing run of every target, for CI: `fuzz/smoke.sh [SECONDS]`
# (default 30 s per target), or `fuzz/smoke.sh build` to build the targets
# and stop (CI starts that early, in the background, and runs them later).
# Installs cargo-fuzz if missing. cargo-fuzz needs nightly compiler flags;
# on a stable toolchain RUSTC_BOOTSTRAP=1 unlocks them.
# Fails (non-zero) on the first crash; the input is left in fuzz/artifacts/.
#
# Built once, before the runs, in the dev profile (opt-level 1, set in
# fuzz/Cargo.toml) and in the main target directory (target/fuzz):
# cargo-fuzz's default, a fully optimised build of all ~340 crates with one
# codegen unit, took most of CI's time, and a smoke run needs the targets'
# checks (debug assertions, overflow checks, the address sanitizer) more than
# top speed. A cache of target/ keeps the build too.
# Longer runs by hand: `cargo fuzz run TARGET` (optimised) from fuzz/.
set -euo pipefail
cd "$(dirname "$0")"
BUILD_ONLY=
if [ "${1:-}" = build ]; then
  BUILD_ONLY=1
fi
SECONDS_EACH="${1:-30}"
CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi
export RUSTC_BOOTSTRAP=1
# cargo-fuzz has no --locked: fail here if fuzz/Cargo.lock is not up to date,
# rather than let the build rewrite it.
cargo metadata --locked --format-version 1 >/dev/null
BUILD=(--dev --target-dir ../target/fuzz)
echo "== fuzz build (every target)"
cargo fuzz build "${BUILD[@]}"
if [ -n "$BUILD_ONLY" ]; then
  exit 0
fi
for target in $(cargo fuzz list); do
  echo "== fuzz $target for ${SECONDS_EACH}s"
  mkdir -p "corpus/$target"
  # Seed inputs (checked in) first, then the growing corpus.
  cargo fuzz run "${BUILD[@]}" "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -max_len=65536
done
