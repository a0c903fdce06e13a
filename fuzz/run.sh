#!/usr/bin/env bash
# Fuzzes every parser a user feeds Temper with cargo-fuzz (libFuzzer), on demand, not in CI.
#   fuzz/run.sh                 # every target, 1,000,000 executions each
#   fuzz/run.sh 5000000         # more executions
#   fuzz/run.sh 1000000 chat_template config_file
#   FUZZ_SECONDS=600 fuzz/run.sh   # each target stops at 10^6 executions or 600 s, whichever first
# Installs cargo-fuzz (from crates.io) when missing; needs the nightly toolchain. Crashes land
# in fuzz/artifacts/<target>/; each one found becomes a regression test in the crate it hit.
set -euo pipefail
cd "$(dirname "$0")"
runs="${1:-1000000}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(dataset_record chat_template config_file model_config safetensors_file
             safetensors_index verifier_input)
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    cp -n seeds/"$target"/* "corpus/$target/" 2>/dev/null || true
    echo "== $target: $runs executions"
    cargo +nightly fuzz run --sanitizer none "$target" "corpus/$target" -- -runs="$runs" -max_len=65536 \
        -max_total_time="${FUZZ_SECONDS:-0}" -timeout=10 -rss_limit_mb=4096 2>&1 |
        grep -E "^(#[0-9]+\s+DONE|Done|==[0-9]+==|SUMMARY|artifact)" || true
done
