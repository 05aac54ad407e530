#!/usr/bin/env python3
"""The torch mtf_top2 backend with one of two realistic bugs, for testing what `moeref check` reports.

Usage:
  tools/backends/torch_mtf_top2_broken.py GOLDEN.trace.json -o CANDIDATE.trace.json \\
      [--bug second_queued_in_token_order|renormalise_after_capacity]

Bugs (each overrides one method of tools/backends/torch_mtf_top2.py, the rest is unchanged):

* second_queued_in_token_order (default): a token's second choice queues in token order among
  the first choices, i.e. behind only the first choices of EARLIER tokens, instead of behind
  all first choices of its expert (mtf adds mask_1_count, the count over the whole group).
  Second choices then collide with, or jump ahead of, later tokens' first choices. Expected
  report: first divergent step `position_in_expert_2`.
* renormalise_after_capacity: after capacity drops, the surviving gates are renormalised to
  sum to 1, so a token that lost its second choice gets gate_1 = 1 (mtf keeps g1/(g1+g2)).
  Expected report: first divergent step `gate_1_capacity`.
"""

import argparse
import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import torch_mtf_top2 as backend  # noqa: E402


class SecondQueuedInTokenOrder(backend.MtfTop2):
    def queue_second_choices(self, mask_1, mask_1_count, mask_2):
        # BUG: counts only earlier tokens' first choices instead of adding mask_1_count.
        return backend.exclusive_cumsum(mask_1 + mask_2, dim=1) * mask_2


class RenormaliseAfterCapacity(backend.MtfTop2):
    def capacity_gates(self, gate_1, gate_2, mask_1_flat, mask_2_flat):
        gate_1, gate_2 = gate_1 * mask_1_flat, gate_2 * mask_2_flat
        # BUG: mtf does not renormalise after capacity.
        total = gate_1 + gate_2
        total = torch.where(total > 0, total, torch.ones_like(total))
        return gate_1 / total, gate_2 / total


BUGS = {
    "second_queued_in_token_order": SecondQueuedInTokenOrder,
    "renormalise_after_capacity": RenormaliseAfterCapacity,
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("golden")
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--bug", choices=sorted(BUGS), default="second_queued_in_token_order")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    program = f"{backend.BACKEND_NAME}_broken/{args.bug}"
    backend.run_golden(args.golden, args.output, BUGS[args.bug], program)
    print(f"wrote {args.output} ({program})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
