#!/usr/bin/env python3
"""Times the mtf_top2 layer in PyTorch at moeref's benchmark sizes, for tools/bench/run_bench.py.

Usage:
  tools/bench/torch_layer_bench.py --size medium --mode dense|index [--threads 1] [--repeats 3] [--json]

The layer is tools/backends/torch_mtf_top2.py (the vectorised PyTorch backend of mtf_top2 that
the conformance test checks against every golden), train mode, the default hyperparameters:
  dense  the gating, then the source's einsums on the [G, S, E, C] dispatch and combine tensors
         (what moeref's literal path computes);
  index  the gating up to the index form (routing_expert, routing_slot, routing_weight), then
         gather the tokens into their expert slots, the experts batched as two bmm, and a weighted
         index_add back to the tokens (what `moeref run --fast` computes).
Inputs (x, router weights, expert weights, the second-policy draws) are made with torch.rand in
moeref's ranges before the clock starts; their values do not matter for the timing. One untimed
run at the small size warms torch up first. Each repeat prints the layer's wall time and the process's peak resident memory.
Sizes (G, S, E, M, H) are moeref_bench's: small 1,64,8,64,256; medium 4,1024,16,512,2048;
large 8,2048,64,1024,4096.
"""

import argparse
import json
import math
import pathlib
import resource
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "backends"))
from torch_mtf_top2 import MtfTop2, _ACTIVATIONS  # noqa: E402

SIZES = {
    "small": (1, 64, 8, 64, 256),
    "medium": (4, 1024, 16, 512, 2048),
    "large": (8, 2048, 64, 1024, 4096),
}

# mtf_top2's defaults (moeref variants mtf_top2); group_size is unused with dims G and S.
HPARAMS = {
    "activation": "relu", "capacity_factor_eval": 2.0, "capacity_factor_train": 1.25, "dropout_rate": 0.0,
    "expert_capacity": None, "group_size": 1024, "loss_coef": 0.01, "mesh_dim_size": 1,
    "min_expert_capacity": 4, "num_microbatches": None, "output_dim": None, "second_policy_eval": "random",
    "second_policy_train": "random", "second_threshold_eval": 0.2, "second_threshold_train": 0.2,
    "use_second_place_loss": False,
}


def make_inputs(G, S, E, M, H, generator):
    def uniform(shape, bound):
        return (torch.rand(shape, generator=generator) * 2.0 - 1.0) * bound

    return {
        "x": uniform((G, S, M), 1.0),
        "router_weights": uniform((M, E), math.sqrt(6.0 / M)),
        "wi": uniform((E, M, H), math.sqrt(3.0 / M)),
        "wo": uniform((E, H, M), math.sqrt(3.0 / H)),
        "second_policy_uniform": torch.rand((G, S), generator=generator),
    }


def index_experts(backend, x, inputs, C):
    """The experts by index: [E*G*C, M] slots gathered from the tokens, two bmm, scattered back."""
    steps = backend.steps
    expert, slot, weight = (steps[name][1] for name in ("routing_expert", "routing_slot", "routing_weight"))
    G, S, M = x.shape
    E, _, H = inputs["wi"].shape
    kept = slot >= 0  # [G, S, K]
    g = torch.arange(G)[:, None, None].expand_as(expert)[kept]
    s = torch.arange(S)[None, :, None].expand_as(expert)[kept]
    flat_slot = (expert[kept] * G + g) * C + slot[kept]  # row of [E*G*C]
    expert_inputs = x.new_zeros((E * G * C, M))
    expert_inputs[flat_slot] = x[g, s]
    hidden = _ACTIVATIONS[backend.hp["activation"]](torch.bmm(expert_inputs.view(E, G * C, M), inputs["wi"]))
    expert_outputs = torch.bmm(hidden, inputs["wo"]).view(E * G * C, -1)
    outputs = x.new_zeros((G * S, expert_outputs.shape[1]))
    outputs.index_add_(0, g * S + s, expert_outputs[flat_slot] * weight[kept][:, None])
    return outputs.view(G, S, -1)


def run_layer(mode, config, inputs):
    backend = MtfTop2(config)
    if mode == "dense":
        backend.run(inputs)
        return backend.steps["outputs"][1]
    backend.dense_routing = False
    backend.scope = "gating"
    backend.run(inputs)
    C = backend.shapes(inputs)[3]
    return index_experts(backend, backend.steps["inputs"][1], inputs, C)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="medium")
    parser.add_argument("--mode", choices=["dense", "index"], default="dense")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="one JSON object per repeat")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    G, S, E, M, H = SIZES[args.size]
    config = {"variant": "mtf_top2", "scope": "layer", "train": True,
              "dims": {"G": G, "S": S, "E": E, "M": M, "H": H}, "hparams": HPARAMS}
    inputs = make_inputs(G, S, E, M, H, torch.Generator().manual_seed(0))
    # One untimed run at the small size first: torch's first call sets up its thread pool and
    # kernels (moeref_bench warms up the same way).
    small = SIZES["small"]
    with torch.no_grad():
        run_layer(args.mode, dict(config, dims=dict(zip("GSEMH", small))),
                  make_inputs(*small, torch.Generator().manual_seed(0)))
    times = []
    for repeat in range(args.repeats):
        with torch.no_grad():
            start = time.perf_counter()
            outputs = run_layer(args.mode, config, inputs)
            seconds = time.perf_counter() - start
        times.append(seconds)
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        if args.json:
            print(json.dumps({"tool": "torch", "mode": args.mode, "size": args.size, "threads": args.threads,
                              "repeat": repeat, "layer_s": seconds, "peak_rss_mb": peak_rss_mb,
                              "torch": torch.__version__}), flush=True)
        del outputs
    if not args.json:
        times.sort()
        print(f"torch {torch.__version__} {args.mode}, {args.size}, {args.threads} threads: "
              f"median {times[len(times) // 2]:.4f} s (min {times[0]:.4f} s), peak RSS {peak_rss_mb:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
