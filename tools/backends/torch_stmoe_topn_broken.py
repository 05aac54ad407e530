#!/usr/bin/env python3
"""The torch stmoe_topn backend with one of two realistic bugs, for testing what `moeref check` reports.

Usage:
  tools/backends/torch_stmoe_topn_broken.py GOLDEN.trace.json -o CANDIDATE.trace.json \\
      [--bug balance_loss_before_capacity|renormalise_after_capacity]

Bugs (each overrides one method of tools/backends/torch_stmoe_topn.py, the rest is unchanged):

* balance_loss_before_capacity (default): the balance loss counts every first choice, as the
  reading notes describe it, instead of the first choices that kept a slot: st-moe's
  `mask_1 = mask[0]` is a view that the in-place capacity drops write through. Expected report:
  first divergent step `density_1` (training goldens where a first choice overflows).
* renormalise_after_capacity: after the capacity drops, the surviving gates of a token are
  renormalised to sum to 1 (st-moe renormalises only before). Expected report: first divergent
  step `gates_capacity` (goldens where a token loses a choice and keeps another).
"""

import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import torch_stmoe_topn as backend  # noqa: E402


class BalanceLossBeforeCapacity(backend.StmoeTopn):
    def loss_mask(self, mask):
        # BUG: a copy, so the capacity drops of rank 0 do not reach the balance loss.
        return mask[0].clone()


class RenormaliseAfterCapacity(backend.StmoeTopn):
    def capacity_gates(self, gates, mask_flat):
        gates = gates * mask_flat
        # BUG: st-moe does not renormalise after capacity.
        return gates / gates.sum(dim=0, keepdim=True).clamp(min=self.hp["eps"])


BUGS = {
    "balance_loss_before_capacity": BalanceLossBeforeCapacity,
    "renormalise_after_capacity": RenormaliseAfterCapacity,
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("golden")
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--bug", choices=sorted(BUGS), default="balance_loss_before_capacity")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    backend.torch.set_num_threads(args.threads)
    program = f"{backend.BACKEND_NAME}_broken/{args.bug}"
    backend.run_golden(args.golden, args.output, BUGS[args.bug], program)
    print(f"wrote {args.output} ({program})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
