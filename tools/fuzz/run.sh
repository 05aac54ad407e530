#!/usr/bin/env bash
# tools/fuzz/run.sh [SECONDS]: build the libFuzzer targets with clang (AddressSanitizer +
# UndefinedBehaviorSanitizer, leak checking on) and fuzz each for SECONDS (default 60), one
# after the other, seeded from golden/ and the regression inputs in tests/data/fuzz/.
# `tools/dev.sh fuzz [SECONDS]` installs clang first and calls this. See tools/fuzz/README.md.
#
# Environment: MOEREF_FUZZ_BUILD_DIR (default build-fuzz), MOEREF_FUZZ_CXX (default clang++-14),
# MOEREF_FUZZ_TARGETS (default "config trace check"), MOEREF_FUZZ_FLAGS (extra libFuzzer flags).
# The corpus each target grows is kept in BUILD/corpus/TARGET; crashing, leaking or slow inputs
# go to BUILD/artifacts/TARGET/. Exit status 1 when any target failed.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dir="${MOEREF_FUZZ_BUILD_DIR:-$repo/build-fuzz}"
seconds="${1:-60}"
targets=(${MOEREF_FUZZ_TARGETS:-config trace check})
jobs="$(nproc 2>/dev/null || echo 2)"

# The longest input each target is given. Most goldens are under 16 KB; a longer seed is
# cut to this length, which the readers must also survive.
declare -A max_len=([config]=8192 [trace]=16384 [check]=32768)

cmake -S "$repo" -B "$dir" -DCMAKE_CXX_COMPILER="${MOEREF_FUZZ_CXX:-clang++-14}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMOEREF_WERROR=ON -DMOEREF_FUZZ=ON -DMOEREF_BUILD_TESTS=OFF >/dev/null
cmake --build "$dir" -j "$jobs" --target "${targets[@]/#/moeref_fuzz_}"

# Seeds: every config case and every golden trace (a trace is also a config that replays it);
# for the checker, each golden against itself, and each against the next golden of its variant
# (golden, a NUL byte, candidate).
seeds="$dir/seeds"
rm -rf "$seeds"
mkdir -p "$seeds/config" "$seeds/trace" "$seeds/check"
for variant_dir in "$repo"/golden/*/; do
  variant="$(basename "$variant_dir")"
  previous=""
  for config in "$variant_dir"cases/*.json; do
    cp "$config" "$seeds/config/${variant}_$(basename "$config")"
  done
  for trace in "$variant_dir"*.trace.json; do
    name="${variant}_$(basename "$trace")"
    cp "$trace" "$seeds/config/$name"
    cp "$trace" "$seeds/trace/$name"
    cp "$trace" "$seeds/check/$name"
    if [ -n "$previous" ]; then
      { cat "$previous"; printf '\0'; cat "$trace"; } >"$seeds/check/pair_$name"
    fi
    previous="$trace"
  done
done
for target in config trace check; do
  if [ -d "$repo/tests/data/fuzz/$target" ]; then
    find "$repo/tests/data/fuzz/$target" -type f -exec cp {} "$seeds/$target/" \;
  fi
done

failed=()
for target in "${targets[@]}"; do
  corpus="$dir/corpus/$target"
  artifacts="$dir/artifacts/$target"
  log="$dir/fuzz_$target.log"
  mkdir -p "$corpus" "$artifacts"
  echo "fuzz: $target for ${seconds}s (log: $log)"
  status=0
  # One OpenMP thread: the near-tie re-runs in the checker target stay on one core.
  ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    OMP_NUM_THREADS=1 "$dir/tools/fuzz/moeref_fuzz_$target" -max_total_time="$seconds" \
    -max_len="${max_len[$target]}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -dict="$repo/tools/fuzz/moeref.dict" -artifact_prefix="$artifacts/" ${MOEREF_FUZZ_FLAGS:-} "$corpus" "$seeds/$target" >"$log" 2>&1 || status=$?
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  # With -fork, the count is the last "#N:" status line.
  [ -n "$runs" ] || runs="$(sed -n 's/^#\([0-9]*\): cov:.*/\1/p' "$log" | tail -1)"
  echo "fuzz: $target: ${runs:-?} executions, exit status $status"
  if [ "$status" -ne 0 ]; then
    failed+=("$target")
    grep -E "^(==[0-9]+==ERROR|SUMMARY|.*runtime error|fuzz_|terminate called|  what\(\))" "$log" | head -5 || true
    ls "$artifacts"
  fi
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: failures in ${failed[*]}; inputs are in $dir/artifacts/" >&2
  exit 1
fi
