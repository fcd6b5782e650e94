#!/usr/bin/env bash
# Run each fuzz target of rdhost-model briefly: FUZZ_SECONDS each (default 20), one job.
# The same checks run deterministically in `cargo test -p rdhost-model` (CI); this script digs
# deeper.
#   crates/model/fuzz/run.sh                      # all targets
#   FUZZ_SECONDS=600 crates/model/fuzz/run.sh connection_string
# Needs cargo-fuzz (installed here if missing). cargo-fuzz passes nightly-only flags to rustc;
# RUSTC_BOOTSTRAP=1 lets the stable toolchain take them. Findings land in artifacts/<target>/;
# rerun one with `cargo fuzz run <target> artifacts/<target>/<file>`.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${FUZZ_SECONDS:-20}"
# No sanitizer by default: the model has no unsafe code, and it runs ~4x faster.
# FUZZ_SANITIZER=address works here too (stable rustc with RUSTC_BOOTSTRAP).
sanitizer="${FUZZ_SANITIZER:-none}"
all=(connection_string invitation_file sharing_operations)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
# Own target dir: fuzz builds use other rustc flags and would evict the workspace's artifacts.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/rdhost-fuzz-target}"

for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  seeds=()
  case "$target" in
    connection_string | invitation_file) seeds=(seeds/connection_string) ;;
  esac
  extra=()
  [ "$target" = sharing_operations ] || extra=(-dict=connection_string.dict)
  echo "== $target: ${seconds}s"
  cargo fuzz run --sanitizer "$sanitizer" "$target" "corpus/$target" "${seeds[@]}" -- \
    -max_total_time="$seconds" -max_len=70000 -timeout=10 -rss_limit_mb=2048 "${extra[@]}"
done
echo "fuzzing done: ${targets[*]} (${seconds}s each), no crashes"
