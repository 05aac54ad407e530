#!/usr/bin/env bash
# moeref developer entry point. On a fresh Debian 12 machine:
#   tools/dev.sh demo   install what is missing, build, write a golden trace of the default example
#   tools/dev.sh test   install what is missing, build (warnings are errors), run the whole suite,
#                       then the suite again under AddressSanitizer + UndefinedBehaviorSanitizer
#   tools/dev.sh build  install what is missing and build only
#   tools/dev.sh bench  build and time the realistic layer (G=4, S=1024, E=16, M=512, H=2048)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${MOEREF_BUILD_DIR:-$repo/build}"
asan_dir="${MOEREF_ASAN_BUILD_DIR:-$repo/build-asan}"
jobs="$(nproc 2>/dev/null || echo 2)"

# Debian packages moeref builds with; OpenMP comes with g++ (libgomp). python3-numpy and
# python3-torch (with its OpenMP BLAS) run the Python tests: tools/python and the torch backend.
packages=(cmake g++ make libeigen3-dev catch2 nlohmann-json3-dev libcli11-dev python3-jsonschema
  python3-numpy python3-torch libopenblas0-openmp)
# Only `test` needs these: chromium opens the pages of `moeref render` headless
# (tools/check_render.py); without it that test is skipped.
test_packages=(chromium)

install_missing_packages() {  # install_missing_packages [EXTRA_PACKAGE...]
  local missing=()
  for package in "${packages[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    return
  fi
  echo "dev.sh: installing ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

build() {  # build DIR [extra cmake args...]
  local dir="$1"
  shift
  cmake -S "$repo" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DMOEREF_WERROR=ON -DMOEREF_BUILD_TESTS=ON "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
}

run_suite() {  # run_suite DIR
  (cd "$1" && ctest --output-on-failure -j "$jobs")
}

command="${1:-}"
case "$command" in
  demo)
    install_missing_packages
    build "$build_dir"
    mkdir -p "$repo/out"
    trace="$repo/out/mtf_top2_default.trace.json"
    "$build_dir/moeref" run "$repo/golden/mtf_top2/cases/default_layer_train.config.json" -o "$trace"
    "$build_dir/moeref" check "$repo/golden/mtf_top2/default_layer_train.trace.json" "$trace" >/dev/null
    echo "golden trace of the default example (mtf_top2, train, B=2 L=8 E=4 M=8 H=16): $trace"
    ;;
  test)
    install_missing_packages "${test_packages[@]}"
    build "$build_dir"
    run_suite "$build_dir"
    if [ "${MOEREF_SKIP_SANITIZERS:-0}" != "1" ]; then
      echo "dev.sh: the suite again under AddressSanitizer + UndefinedBehaviorSanitizer"
      build "$asan_dir" -DMOEREF_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
      ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 run_suite "$asan_dir"
    fi
    ;;
  build)
    install_missing_packages
    build "$build_dir"
    ;;
  bench)
    install_missing_packages
    build "$build_dir"
    "$build_dir/moeref_bench" "${@:2}"
    ;;
  *)
    echo "usage: tools/dev.sh demo|test|build|bench" >&2
    exit 2
    ;;
esac
