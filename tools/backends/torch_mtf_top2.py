#!/usr/bin/env python3
"""A PyTorch backend of mtf_top2, written as a backend author would write it, checked by moeref.

Usage:
  tools/backends/torch_mtf_top2.py GOLDEN.trace.json -o CANDIDATE.trace.json [--threads N]

It reads the golden trace's resolved config and its inputs (x, router_weights or logits,
importance, expert weights and the recorded random draws `second_policy_uniform` and
`dropout_uniform`), runs the mtf_top2 layer vectorised in float32 with ordinary torch ops
(softmax, argmax, one_hot, cumsum, einsum), and writes a candidate trace of the
intermediates it computes, under moeref's step names and dims, for `moeref check`.

This is deliberately NOT a bit-exact port of moeref: it uses torch.softmax (exp(x - max) /
sum) where mtf uses exp(x - logsumexp), true division where mtf multiplies by a reciprocal,
torch.mean (sum / n) where mtf multiplies by f32(1/n), float32 GEMMs for the router, and
torch's tanh-approximate gelu. tools/backends/run_conformance.py records which float steps
move by a few ulps because of that. Every discrete decision must still match exactly.

Dims (spec/notation.md): B batch, L length, G groups, S group size, E experts,
C expert capacity, M model dim, H expert hidden dim, N expert output dim.
Source: tensorflow/mesh mesh_tensorflow/transformer/moe.py, transformer_moe_layer_v1 and
_top_2_gating; spec: spec/variants/mtf_top2.md.
"""

import argparse
import functools
import pathlib
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "python"))
import moeref  # noqa: E402  (tools/python, numpy only)

BACKEND_NAME = "torch_mtf_top2"

_ACTIVATIONS = {
    "linear": lambda x: x,
    "relu": F.relu,
    "gelu": lambda x: F.gelu(x, approximate="tanh"),  # mtf.gelu is the tanh approximation
    "swish": F.silu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
}


def split_into_groups(n, group_size, mesh_dim_size):
    """mtf _split_into_groups: (G, S) for n tokens; S may exceed group_size."""
    if n % mesh_dim_size != 0:
        raise ValueError(f"hparams.mesh_dim_size: got {mesh_dim_size}; allowed: a divisor of B*L = {n}")
    num_groups = max(1, n // group_size)
    while num_groups % mesh_dim_size != 0 or n % num_groups != 0:
        num_groups += 1
    return num_groups, n // num_groups


def mtf_expert_capacity(S, capacity_factor, E, min_expert_capacity):
    """transformer_moe_layer_v1's rule, in Python double as mtf computes it."""
    return max(min(S, int((S * capacity_factor) / E)), min_expert_capacity)


def exclusive_cumsum(mask, dim):
    """cumsum(mask, exclusive=True) along dim: how many earlier tokens were routed there."""
    return torch.cumsum(mask, dim=dim) - mask


def slot_one_hot(position, C):
    """one_hot(position, C), where a position >= C (a dropped token) selects no slot."""
    return F.one_hot(position.clamp(max=C), C + 1)[..., :C]


class MtfTop2:
    """The mtf_top2 layer. `run` returns (steps, losses, capacity); steps are name -> (dims, tensor)."""

    def __init__(self, config):
        if config.get("variant") != "mtf_top2":
            raise ValueError(f"config.variant: got {config.get('variant')!r}; allowed: 'mtf_top2'")
        self.config = config
        self.hp = config["hparams"]
        self.train = config.get("train", True)
        self.scope = config.get("scope", "layer")
        self.steps = {}
        # False: stop the gating at the index form (routing_expert, routing_slot, routing_weight)
        # without the [G, S, E, C] tensors, for a backend that dispatches by index
        # (tools/bench/torch_layer_bench.py --mode index).
        self.dense_routing = True

    def record(self, name, dims, tensor):
        self.steps[name] = (dims, tensor)
        return tensor

    # ---- transformer_moe_layer_v1: grouping and capacity ---------------------------
    def shapes(self, inputs):
        dims, hp = self.config["dims"], self.hp
        E = dims["E"]
        if "B" in dims and "L" in dims:
            G, S = split_into_groups(dims["B"] * dims["L"], hp["group_size"], hp["mesh_dim_size"])
        else:
            G, S = dims["G"], dims["S"]
        capacity_factor = hp["capacity_factor_train" if self.train else "capacity_factor_eval"]
        if hp["expert_capacity"] is None:
            C = mtf_expert_capacity(S, capacity_factor, E, hp["min_expert_capacity"])
            rule = "mtf: max(min(S, int(S * capacity_factor / E)), min_expert_capacity)"
        else:
            C, rule = hp["expert_capacity"], "given: hparams.expert_capacity"
        capacity = {"expert_capacity": C, "rule": rule, "capacity_factor": capacity_factor,
                    "group_size": S, "num_groups": G}
        return G, S, E, C, capacity

    def run(self, inputs):
        """inputs: name -> torch tensor (float32), as recorded in the golden trace."""
        G, S, E, C, capacity = self.shapes(inputs)
        x = inputs.get("x")
        if x is not None:
            x = self.record("inputs", ("G", "S", "M"), x.reshape(G, S, -1))  # [G, S, M]
        importance = inputs.get("importance")
        if importance is not None:
            importance = self.record("importance", ("G", "S"), importance.reshape(G, S))  # [G, S]

        if "logits" in inputs:
            logits = inputs["logits"]  # [G, S, E]
        else:
            logits = torch.einsum("gsm,me->gse", x, inputs["router_weights"])  # [G, S, E]
        self.record("logits", ("G", "S", "E"), logits)

        combine_tensor, dispatch_tensor, gating_loss = self.top_2_gating(
            logits, importance, inputs.get("second_policy_uniform"), C)

        if self.scope == "layer":
            self.experts(x, combine_tensor, dispatch_tensor, inputs)
        loss = gating_loss * self.hp["loss_coef"]
        return self.steps, {"gating_loss": gating_loss, "loss": loss}, capacity

    # ---- _top_2_gating ---------------------------------------------------------------
    def top_2_gating(self, logits, importance, uniform, C):
        hp, E = self.hp, logits.shape[-1]
        raw_gates = self.record("raw_gates", ("G", "S", "E"), torch.softmax(logits, dim=-1))  # [G, S, E]

        # argmax returns the first index among equal maxima: mtf's tie rule.
        index_1 = self.record("index_1", ("G", "S"), torch.argmax(raw_gates, dim=-1))  # [G, S]
        gate_1 = self.record("gate_1", ("G", "S"), raw_gates.gather(-1, index_1[..., None])[..., 0])  # [G, S]
        mask_1 = self.record("mask_1", ("G", "S", "E"), F.one_hot(index_1, E))  # [G, S, E]
        density_1_proxy = raw_gates  # [G, S, E]
        if importance is not None:
            # Only importance == 1 tokens have a first choice; padding (0) has no second either.
            important = importance == 1.0  # [G, S]
            mask_1 = self.record("mask_1_important", ("G", "S", "E"), mask_1 * important[..., None])
            gate_1 = self.record("gate_1_important", ("G", "S"), gate_1 * important)
            density_1_proxy = self.record("density_1_proxy_per_token", ("G", "S", "E"),
                                          raw_gates * important[..., None])

        gates_without_top_1 = self.record("gates_without_top_1", ("G", "S", "E"), raw_gates * (1 - mask_1))
        index_2 = self.record("index_2", ("G", "S"), torch.argmax(gates_without_top_1, dim=-1))  # [G, S]
        gate_2 = self.record("gate_2", ("G", "S"), gates_without_top_1.gather(-1, index_2[..., None])[..., 0])
        mask_2 = self.record("mask_2", ("G", "S", "E"), F.one_hot(index_2, E))  # [G, S, E]
        if importance is not None:
            mask_2 = self.record("mask_2_important", ("G", "S", "E"), mask_2 * (importance > 0.0)[..., None])

        denom = self.record("denom", ("G", "S"), gate_1 + gate_2 + 1e-9)  # [G, S]
        gate_1 = self.record("gate_1_normalized", ("G", "S"), gate_1 / denom)
        gate_2 = self.record("gate_2_normalized", ("G", "S"), gate_2 / denom)

        # Load-balancing loss on the first choices (before capacity), mean over S then G, E.
        density_1 = self.record("density_1", ("G", "E"), mask_1.float().mean(dim=1))  # [G, E]
        density_1_proxy = self.record("density_1_proxy", ("G", "E"), density_1_proxy.mean(dim=1))  # [G, E]
        loss = self.record("loss_1", (), (density_1_proxy * density_1).mean() * E**2)
        if hp["use_second_place_loss"]:
            density_2 = self.record("density_2", ("G", "E"), mask_2.float().mean(dim=1))
            normalized = gates_without_top_1 / (gates_without_top_1.sum(dim=-1, keepdim=True) + 1e-9)
            self.record("normalized", ("G", "S", "E"), normalized)
            density_2_proxy = self.record("density_2_proxy", ("G", "E"), normalized.mean(dim=1))
            loss_2 = self.record("loss_2", (), (density_2_proxy * density_2).mean() * E**2)
            loss = loss + loss_2 * 0.5
        if hp["num_microbatches"] is not None and hp["num_microbatches"] > 1:
            loss = loss / hp["num_microbatches"]
        self.record("gating_loss", (), loss)

        # Second-expert policy.
        policy = hp["second_policy_train" if self.train else "second_policy_eval"]
        threshold = hp["second_threshold_train" if self.train else "second_threshold_eval"]
        if policy == "none":
            mask_2 = torch.zeros_like(mask_2)
        elif policy == "threshold":
            keep = self.record("second_policy_keep", ("G", "S"), gate_2 > threshold)
            mask_2 = mask_2 * keep[..., None]
        elif policy == "random":
            keep = self.record("second_policy_keep", ("G", "S"), uniform < gate_2 / max(threshold, 1e-9))
            mask_2 = mask_2 * keep[..., None]
        elif policy != "all":
            raise ValueError(f"hparams.second_policy: got {policy!r}; allowed: all, none, threshold, random")
        self.record("mask_2_policy", ("G", "S", "E"), mask_2)

        # Capacity: first choices in token order, then second choices behind them.
        position_in_expert_1 = self.record("position_in_expert_1", ("G", "S", "E"),
                                           exclusive_cumsum(mask_1, dim=1) * mask_1)  # [G, S, E]
        mask_1 = self.record("mask_1_capacity", ("G", "S", "E"), mask_1 * (position_in_expert_1 < C))
        mask_1_count = self.record("mask_1_count", ("G", "E"), mask_1.sum(dim=1))  # [G, E]
        mask_1_flat = self.record("mask_1_flat", ("G", "S"), mask_1.sum(dim=-1))  # [G, S]
        position_in_expert_1 = self.record("position_in_expert_1_flat", ("G", "S"), position_in_expert_1.sum(dim=-1))

        position_in_expert_2 = self.record("position_in_expert_2", ("G", "S", "E"),
                                           self.queue_second_choices(mask_1, mask_1_count, mask_2))
        mask_2 = self.record("mask_2_capacity", ("G", "S", "E"), mask_2 * (position_in_expert_2 < C))
        mask_2_flat = self.record("mask_2_flat", ("G", "S"), mask_2.sum(dim=-1))
        position_in_expert_2 = self.record("position_in_expert_2_flat", ("G", "S"), position_in_expert_2.sum(dim=-1))

        gate_1, gate_2 = self.capacity_gates(gate_1, gate_2, mask_1_flat, mask_2_flat)
        self.record("gate_1_capacity", ("G", "S"), gate_1)
        self.record("gate_2_capacity", ("G", "S"), gate_2)

        # The index form, [G, S, K]: per token and rank, expert, slot (-1 when none) and weight.
        occupies = torch.stack([mask_1_flat, mask_2_flat], dim=-1) > 0
        self.record("routing_expert", ("G", "S", "K"), torch.stack([index_1, index_2], dim=-1))
        self.record("routing_slot", ("G", "S", "K"), torch.where(
            occupies, torch.stack([position_in_expert_1, position_in_expert_2], dim=-1).long(), -1))
        self.record("routing_weight", ("G", "S", "K"), torch.where(
            occupies, torch.stack([gate_1, gate_2], dim=-1), torch.zeros((), dtype=gate_1.dtype)))
        if not self.dense_routing:
            return None, None, loss

        # [G, S, E, C]: each token's weight at (its expert, its slot) for each kept choice.
        combine_tensor = (
            (gate_1 * mask_1_flat)[..., None, None] * F.one_hot(index_1, E)[..., None]
            * slot_one_hot(position_in_expert_1, C)[:, :, None, :]
            + (gate_2 * mask_2_flat)[..., None, None] * F.one_hot(index_2, E)[..., None]
            * slot_one_hot(position_in_expert_2, C)[:, :, None, :]
        )
        self.record("combine_tensor", ("G", "S", "E", "C"), combine_tensor)
        dispatch_tensor = self.record("dispatch_tensor", ("G", "S", "E", "C"), combine_tensor != 0)
        return combine_tensor, dispatch_tensor, loss

    def queue_second_choices(self, mask_1, mask_1_count, mask_2):
        """position_in_expert_2: second choices queue behind ALL kept first choices of their expert."""
        return (exclusive_cumsum(mask_2, dim=1) + mask_1_count[:, None, :]) * mask_2

    def capacity_gates(self, gate_1, gate_2, mask_1_flat, mask_2_flat):
        """Gates of the choices that survived capacity; not renormalised (mtf keeps g1/(g1+g2))."""
        return gate_1 * mask_1_flat, gate_2 * mask_2_flat

    # ---- transformer_moe_layer_v1: experts and combine ------------------------------
    def experts(self, x, combine_tensor, dispatch_tensor, inputs):
        hp = self.hp
        expert_inputs = torch.einsum("gsec,gsm->egcm", dispatch_tensor.float(), x)  # [E, G, C, M]
        self.record("expert_inputs", ("E", "G", "C", "M"), expert_inputs)
        activations = hp["activation"] if isinstance(hp["activation"], list) else [hp["activation"]]
        names = ["wi"] if len(activations) == 1 else [f"wi_{i}" for i in range(len(activations))]
        factors = [_ACTIVATIONS[a](torch.einsum("egcm,emh->egch", expert_inputs, inputs[w]))
                   for a, w in zip(activations, names)]
        hidden = self.record("expert_hidden", ("E", "G", "C", "H"), functools.reduce(torch.mul, factors))
        if self.train and hp["dropout_rate"] > 0.0:
            keep_prob = 1.0 - hp["dropout_rate"]
            noise = (inputs["dropout_uniform"] < keep_prob).float() / keep_prob  # [E, G, C, H]
            hidden = self.record("expert_hidden_dropout", ("E", "G", "C", "H"), hidden * noise)
        expert_outputs = torch.einsum("egch,ehn->egcn", hidden, inputs["wo"])  # [E, G, C, N]
        self.record("expert_outputs", ("E", "G", "C", "N"), expert_outputs)
        outputs = torch.einsum("gsec,egcn->gsn", combine_tensor, expert_outputs)  # [G, S, N]
        self.record("outputs", ("G", "S", "N"), outputs)


def run_golden(golden_path, candidate_path, backend_class=MtfTop2, program=BACKEND_NAME):
    """Replays one golden trace's config and inputs through the backend; writes the candidate."""
    golden = moeref.load_trace(golden_path)
    inputs = {name: torch.from_numpy(t.array.copy()) for name, t in golden.inputs.items()}
    backend = backend_class(golden.config)
    with torch.no_grad():
        steps, losses, capacity = backend.run(inputs)
    moeref.write_trace(
        candidate_path,
        config=golden.config,
        steps=steps,
        losses={name: value.item() for name, value in losses.items()},
        inputs={name: (t.dims, inputs[name]) for name, t in golden.inputs.items()},
        capacity=capacity,
        generator={"program": program, "version": f"torch {torch.__version__}",
                   "rng": "replayed: random draws read from the golden's inputs"},
    )
    return golden


def main(argv=None, backend_class=MtfTop2, program=BACKEND_NAME, description=__doc__):
    parser = argparse.ArgumentParser(description=description.split("\n\n")[0])
    parser.add_argument("golden", help="golden trace (its config and inputs are replayed)")
    parser.add_argument("-o", "--output", required=True, help="candidate trace to write")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    run_golden(args.golden, args.output, backend_class, program)
    print(f"wrote {args.output} ({program})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
