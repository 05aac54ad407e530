#!/usr/bin/env bash
# Regenerates every golden trace from its config: golden/<variant>/cases/NAME.config.json
# -> golden/<variant>/NAME.trace.json, and rewrites golden/<variant>/manifest.json.
# Run after a deliberate behaviour change, review the diff, and say why in the commit.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
moeref="${MOEREF_BIN:-$repo/build/moeref}"
if [ ! -x "$moeref" ]; then
  "$repo/tools/dev.sh" build
fi
for variant_dir in "$repo"/golden/*/; do
  variant="$(basename "$variant_dir")"
  entries=()
  for config in "$variant_dir"cases/*.config.json; do
    name="$(basename "$config" .config.json)"
    OMP_NUM_THREADS=1 "$moeref" run "$config" -o "$variant_dir$name.trace.json" >/dev/null
    entries+=("{\"name\": \"$name\", \"config\": \"cases/$name.config.json\", \"trace\": \"$name.trace.json\"}")
  done
  {
    echo "{"
    echo "  \"format\": \"moeref-golden-manifest\","
    echo "  \"variant\": \"$variant\","
    echo "  \"regenerate_with\": \"tools/regen_goldens.sh\","
    echo "  \"cases\": ["
    for i in "${!entries[@]}"; do
      sep=","
      if [ "$i" -eq $((${#entries[@]} - 1)) ]; then sep=""; fi
      echo "    ${entries[$i]}$sep"
    done
    echo "  ]"
    echo "}"
  } >"$variant_dir/manifest.json"
  echo "regenerated ${#entries[@]} goldens in golden/$variant"
done
