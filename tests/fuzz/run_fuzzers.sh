#!/usr/bin/env bash
# Fuzzes every harness for a set time and prints executions and findings per
# harness. Needs clang with libFuzzer; builds into build-fuzz/ unless
# BUILD_DIR says otherwise.
#
#   tests/fuzz/run_fuzzers.sh [seconds per harness, default 60] [parallel jobs, default nproc/2]
#
# New inputs that reach new code are kept in build-fuzz/corpus/<name>/; a
# crash, leak or hang (> 1 s) is written to build-fuzz/findings/<name>/ and
# the script exits non-zero. Copy a fixed crash into tests/fuzz/corpus/<name>/
# so that CTest replays it from then on.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_EACH=${1:-60}
JOBS=${2:-$(( $(nproc) / 2 > 0 ? $(nproc) / 2 : 1 ))}
BUILD=${BUILD_DIR:-build-fuzz}
HARNESSES=(safetensors gguf hf_config run_config trainer_state token_cache metrics tokenizer peft_config chat_conversation)

cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCRUCIBLE_FUZZ=ON -DCRUCIBLE_BUILD_GUI=ON -DCRUCIBLE_BUILD_TESTS=OFF -DCRUCIBLE_ENABLE_CUDA=OFF >/dev/null
cmake --build "$BUILD" --target $(printf 'fuzz_%s ' "${HARNESSES[@]}")

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:symbolize=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
for name in "${HARNESSES[@]}"; do
  mkdir -p "$BUILD/corpus/$name" "$BUILD/findings/$name"
  log="$BUILD/findings/$name/fuzz.log"
  # -fork: several processes share the corpus; -ignore_crashes=0 stops at the
  # first finding. The seed corpus is read, never written.
  "$BUILD/bin/fuzz_$name" "$BUILD/corpus/$name" "tests/fuzz/corpus/$name" \
      -fork="$JOBS" -max_total_time="$SECONDS_EACH" -timeout=1 -rss_limit_mb=2048 -max_len=65536 \
      -artifact_prefix="$BUILD/findings/$name/" -print_final_stats=1 >"$log" 2>&1 || status=1
  # Progress lines start with "#<executions>" (fork mode: "#N: cov: ..."); take the largest.
  execs=$(grep -Eo '^#[0-9]+' "$log" | tr -d '#' | sort -n | tail -1 || true)
  findings=$(find "$BUILD/findings/$name" -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' | wc -l)
  printf '%-14s %12s executions  %3d findings  %6d corpus files\n' "$name" "${execs:-0}" "$findings" \
    "$(find "$BUILD/corpus/$name" -type f | wc -l)"
  [ "$findings" = 0 ] || status=1
done
exit $status
