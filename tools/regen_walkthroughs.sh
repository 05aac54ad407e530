#!/bin/sh
# Regenerates the generated walkthroughs, spec/walkthroughs/ID.md, one per variant
# family: `moeref explain --variant ID --format markdown` (the variant's tiny example,
# src/teach/tiny_examples.cpp). tests/test_walkthroughs.cpp fails while any of them
# is stale. spec/walkthroughs/mtf_top2_small.md is hand-written and not touched.
#
#   tools/regen_walkthroughs.sh [BUILD_DIR]     (default: build)
#
# To add a family: put its variant id in FAMILIES and run this script; the test
# checks every spec/walkthroughs/*.md that starts with the generated marker.
set -eu
FAMILIES="mtf_top2 mtf_switch mtf_ntlb mtf_expert_selection mtf_moe2d lingvo_top2 lingvo_expert_choice lingvo_hash
stmoe_topn flaxformer_tokens_choose flaxformer_experts_choose
hf_switch_top1 deepspeed_top1 deepspeed_top2 deepspeed_topk hf_nllb_top2 fairseq_top2 tutel_topk megablocks_dropless
praxis_topk"
repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-"$repo/build"}
cmake --build "$build" --target moeref >/dev/null
for id in $FAMILIES; do
  "$build/moeref" explain --variant "$id" --format markdown -o "$repo/spec/walkthroughs/$id.md"
done
