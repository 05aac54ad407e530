#!/usr/bin/env bash
# moeref developer entry point. On a fresh Debian 12 machine:
#   tools/dev.sh demo   install only what the CLI needs, build only the CLI (moeref), write the
#                       trace of the default example and check it against its golden
#   tools/dev.sh test   install everything the tests need, build all (warnings are errors), run the
#                       whole suite, build and test examples/cpp_backend against an installed moeref,
#                       then the suite again under AddressSanitizer + UndefinedBehaviorSanitizer
#   tools/dev.sh build  install what the tests need and build everything
#   tools/dev.sh bench [ARGS]
#                       build moeref_bench and time the layer against PyTorch, interleaved, at the
#                       small, medium and large sizes (tools/bench/run_bench.py ARGS: --sizes,
#                       --threads, --repeats); medians, ratios and peak memory
#   tools/dev.sh fuzz [SECONDS]
#                       build the libFuzzer targets (clang, ASan + UBSan; tools/fuzz/README.md) and
#                       fuzz each for SECONDS (default 60), seeded from golden/
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir="${MOEREF_BUILD_DIR:-$repo/build}"
asan_dir="${MOEREF_ASAN_BUILD_DIR:-$repo/build-asan}"
fuzz_dir="${MOEREF_FUZZ_BUILD_DIR:-$repo/build-fuzz}"
jobs="$(nproc 2>/dev/null || echo 2)"

# Debian packages the CLI builds with; OpenMP comes with g++ (libgomp).
cli_packages=(cmake g++ make libeigen3-dev nlohmann-json3-dev libcli11-dev)
# And for the tests: Catch2; python3-jsonschema validates goldens against spec/; python3-numpy and
# python3-torch (with its OpenMP BLAS) run the Python tests (tools/python and the torch backend);
# python3-venv, python3-pip, python3-setuptools and python3-wheel install tools/python into a venv offline;
# chromium opens the pages of `moeref render` headless (tools/check_render.py; without it that test is skipped).
test_packages=("${cli_packages[@]}" catch2 python3-jsonschema python3-numpy python3-torch libopenblas0-openmp
  python3-venv python3-pip python3-setuptools python3-wheel chromium)
# And for fuzzing: clang with libFuzzer and the sanitizer runtimes, and clang's OpenMP.
fuzz_packages=("${cli_packages[@]}" clang-14 libclang-rt-14-dev libomp-14-dev)

install_missing_packages() {  # install_missing_packages PACKAGE...
  local missing=()
  for package in "$@"; do
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

build_target() {  # build_target DIR TARGET: one target, without configuring the tests (no Catch2 needed)
  cmake -S "$repo" -B "$1" -DCMAKE_BUILD_TYPE=Release -DMOEREF_WERROR=ON -DMOEREF_BUILD_TESTS=OFF >/dev/null
  cmake --build "$1" -j "$jobs" --target "$2"
}

run_suite() {  # run_suite DIR
  (cd "$1" && ctest --output-on-failure -j "$jobs")
}

# Installs the build DIR into DIR/install and builds and tests examples/cpp_backend, a separate
# project that finds moeref with find_package, against that install.
run_installed_example() {  # run_installed_example DIR
  local prefix="$1/install"
  rm -rf "$prefix" "$1/example"
  cmake --install "$1" --prefix "$prefix" >/dev/null
  cmake -S "$repo/examples/cpp_backend" -B "$1/example" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
  cmake --build "$1/example" -j "$jobs"
  (cd "$1/example" && ctest --output-on-failure)
}

command="${1:-}"
case "$command" in
  demo)
    install_missing_packages "${cli_packages[@]}"
    build_target "$build_dir" moeref
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
    echo "dev.sh: examples/cpp_backend against an installed moeref"
    run_installed_example "$build_dir"
    if [ "${MOEREF_SKIP_SANITIZERS:-0}" != "1" ]; then
      echo "dev.sh: the suite again under AddressSanitizer + UndefinedBehaviorSanitizer"
      build "$asan_dir" -DMOEREF_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
      ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 run_suite "$asan_dir"
    fi
    ;;
  build)
    install_missing_packages "${test_packages[@]}"
    build "$build_dir"
    ;;
  bench)
    install_missing_packages "${cli_packages[@]}" python3-numpy python3-torch libopenblas0-openmp
    build_target "$build_dir" moeref_bench
    /usr/bin/python3 "$repo/tools/bench/run_bench.py" --moeref-bench "$build_dir/moeref_bench" "${@:2}"
    ;;
  fuzz)
    install_missing_packages "${fuzz_packages[@]}"
    MOEREF_FUZZ_BUILD_DIR="$fuzz_dir" "$repo/tools/fuzz/run.sh" "${2:-60}"
    ;;
  *)
    echo "usage: tools/dev.sh demo|test|build|bench [ARGS]|fuzz [SECONDS]" >&2
    exit 2
    ;;
esac
