#!/usr/bin/env bash
# A short fuzzing run of every target, for CI: `fuzz/smoke.sh [SECONDS]`
# (default 30 s per target), or `fuzz/smoke.sh build` to build the targets
# and stop. Fails (non-zero) on the first crash; the input is left in
# fuzz/artifacts/TARGET/.
#
# The targets (fuzz/fuzz_targets/, each also an `[[example]]` named
# fuzz_TARGET in Cargo.toml) are built as examples of the orderwatch
# package (`--features fuzz`), in the dev profile and target/debug, against
# the dependencies a `cargo test` has built: only the orderwatch library
# and the targets are compiled again, with libFuzzer's coverage
# instrumentation added by fuzz/coverage-rustc. A second build of every dependency, with cargo-fuzz's
# address sanitizer, took more than half of CI's time; the crates of this
# workspace are where a fuzz input goes, and their `unsafe` is three libc
# calls outside the code fuzzed. Long runs by hand, with the address
# sanitizer on every crate: `cargo fuzz run TARGET` from fuzz/ (cargo-fuzz,
# nightly flags; on a stable toolchain RUSTC_BOOTSTRAP=1).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_ONLY=
if [ "${1:-}" = build ]; then
  BUILD_ONLY=1
fi
SECONDS_EACH="${1:-30}"
target_dir="${CARGO_TARGET_DIR:-target}"
# fuzz/ stays buildable by cargo-fuzz: its lock file must be up to date.
cargo metadata --locked --manifest-path fuzz/Cargo.toml --format-version 1 >/dev/null
echo "== fuzz build (every target)"
RUSTC_WORKSPACE_WRAPPER="$PWD/fuzz/coverage-rustc" \
  cargo build --locked --features orderwatch/fuzz --examples
if [ -n "$BUILD_ONLY" ]; then
  exit 0
fi
for source in fuzz/fuzz_targets/*.rs; do
  target="$(basename "$source" .rs)"
  echo "== fuzz $target for ${SECONDS_EACH}s"
  mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
  # Seed inputs (checked in) first, then the growing corpus.
  "$target_dir/debug/examples/fuzz_$target" "fuzz/corpus/$target" "fuzz/seeds/$target" \
    -artifact_prefix="fuzz/artifacts/$target/" \
    -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -max_len=65536
done
