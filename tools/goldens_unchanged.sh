#!/usr/bin/env bash
# Runs every golden config with the current build and compares the trace with the
# golden as it was at git revision REV (default HEAD), ignoring the "reads" records
# of steps (spec/trace-format.md, "Step dependencies"). For refactors that must not
# change behaviour: prints one line per case and exits 1 when any case differs.
#   tools/goldens_unchanged.sh [REV]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rev="${1:-HEAD}"
moeref="${MOEREF_BIN:-$repo/build/moeref}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
status=0
for config in "$repo"/golden/*/cases/*.config.json; do
  variant="$(basename "$(dirname "$(dirname "$config")")")"
  name="$(basename "$config" .config.json)"
  if ! git -C "$repo" cat-file -e "$rev:golden/$variant/$name.trace.json" 2>/dev/null; then
    echo "new     $variant/$name (no golden at $rev)"
    continue
  fi
  OMP_NUM_THREADS=1 "$moeref" run "$config" -o "$scratch/new.json" >/dev/null
  git -C "$repo" show "$rev:golden/$variant/$name.trace.json" >"$scratch/old.json"
  if python3 - "$scratch/old.json" "$scratch/new.json" <<'PY'; then
import re, sys
strip = lambda text: re.sub(r'"reads":\[[^\]]*\],', "", text)
old, new = (open(path, encoding="utf-8").read() for path in sys.argv[1:3])
sys.exit(0 if strip(old) == strip(new) else 1)
PY
    echo "same    $variant/$name"
  else
    echo "DIFFERS $variant/$name"
    status=1
  fi
done
exit "$status"
