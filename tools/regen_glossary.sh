#!/bin/sh
# Regenerates spec/glossary.md from the registered variants' hyperparameter
# declarations (.about(TOPIC)), src/teach/hparam_topics.cpp and
# spec/glossary-intro.md. Run it after adding or changing a hyperparameter;
# tests/test_glossary.cpp fails until the checked-in page matches.
#
#   tools/regen_glossary.sh [BUILD_DIR]     (default: build)
set -eu
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-"$repo/build"}
cmake --build "$build" --target moeref >/dev/null
tmp="$repo/spec/glossary.md.tmp.$$"
trap 'rm -f "$tmp"' EXIT
"$build/moeref" variants --glossary >"$tmp"
mv "$tmp" "$repo/spec/glossary.md"
trap - EXIT
echo "wrote spec/glossary.md"
