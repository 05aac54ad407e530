#!/usr/bin/env python3
"""A PyTorch backend of stmoe_topn, written as a backend author would write it, checked by moeref.

Usage:
  tools/backends/torch_stmoe_topn.py GOLDEN.trace.json -o CANDIDATE.trace.json [--threads N]

It reads the golden trace's resolved config and its inputs (x or gate_logits, router_weights,
the expert and feed-forward weights, and the recorded random draws `route_uniform` and
`gumbel_uniform`), runs st-moe-pytorch's TopNGating, MoE and SparseMoEBlock vectorised in
float32 with ordinary torch ops (F.linear, softmax, torch.topk, one_hot, cumsum, einsum,
F.normalize, F.gelu), and writes a candidate trace of the intermediates under moeref's step
names and dims, for `moeref check`.

It follows the source's operations (lucidrains/st-moe-pytorch st_moe_pytorch/st_moe_pytorch.py
at d94e65d), but torch's own kernels decide the last bits: vectorised exp and erf, float32 sums
in torch's order, float32 GEMMs. torch.topk leaves the order of equal values unspecified, so on
exact ties this backend may choose other experts than moeref; the checker reports those as
consistent alternatives at a near tie. tools/backends/run_conformance.py records what moves.

Dims (spec/notation.md): G groups (= the source's batch b: one group per sequence), S group size
(= n), E experts, C expert capacity, M model dim, H expert hidden dim, F hidden dim of ff_before
and ff_after, K = top_n. Spec: spec/variants/stmoe_topn.md.
"""

import argparse
import pathlib
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "python"))
import moeref  # noqa: E402  (tools/python, numpy only)

BACKEND_NAME = "torch_stmoe_topn"
MIN_EXPERT_CAPACITY = 4


def cumsum_exclusive(t, dim):
    """The source's cumsum_exclusive: pad one zero in front along dim, drop the last, cumsum."""
    return torch.cumsum(t, dim=dim) - t


def safe_one_hot(indexes, max_length):
    """one_hot where an index >= max_length gives an all-zero row (the source's safe_one_hot)."""
    max_index = int(indexes.max()) + 1
    return F.one_hot(indexes, max(max_index + 1, max_length))[..., :max_length]


class StmoeTopn:
    """The stmoe_topn layer. `run` returns (steps, losses, capacity); steps are name -> (dims, tensor)."""

    def __init__(self, config):
        if config.get("variant") != "stmoe_topn":
            raise ValueError(f"config.variant: got {config.get('variant')!r}; allowed: 'stmoe_topn'")
        self.config = config
        self.hp = config["hparams"]
        self.train = config.get("train", True)
        self.scope = config.get("scope", "layer")
        self.steps = {}

    def record(self, name, dims, tensor, exact=False):
        """Keeps a step; `exact`: the source's float 0/1 masks and counts, written as int32."""
        self.steps[name] = (dims, tensor.to(torch.int32) if exact else tensor)
        return tensor

    # ---- TopNGating.forward ------------------------------------------------------------
    def thresholds(self):
        hp, suffix = self.hp, "train" if self.train else "eval"
        given = hp[f"threshold_{suffix}"]
        given = tuple(given) if isinstance(given, list) else (given,) * (hp["top_n"] - 1)
        return torch.tensor([hp["eps"], *given]).clamp(min=hp["eps"])  # float32 [K]

    def gate(self, x, inputs, C):
        hp = self.hp
        top_n, eps = hp["top_n"], hp["eps"]
        if "gate_logits" in inputs:
            gate_logits = inputs["gate_logits"]
        else:
            gate_logits = F.linear(x, inputs["router_weights"].t())  # to_gates: Linear(dim, E, bias=False)
        self.record("gate_logits", ("G", "S", "E"), gate_logits)
        maybe_noised = gate_logits
        if hp["noise_gates"]:
            def log(t, eps=1e-20):
                return torch.log(t.clamp(min=eps))
            noise = self.record("noise", ("G", "S", "E"), -log(-log(inputs["gumbel_uniform"])))
            maybe_noised = self.record("maybe_noised_gate_logits", ("G", "S", "E"),
                                       maybe_noised + noise * hp["noise_mult"])
        raw_gates = self.record("raw_gates", ("G", "S", "E"), maybe_noised.softmax(dim=-1))
        values, indices = torch.topk(raw_gates, k=top_n, dim=-1)
        gate_indices = self.record("gate_indices", ("K", "G", "S"), indices.permute(2, 0, 1))
        gates = self.record("gates", ("K", "G", "S"), values.permute(2, 0, 1))
        mask = F.one_hot(gate_indices, raw_gates.shape[-1]).float()  # [K, G, S, E]
        self.record("mask", ("K", "G", "S", "E"), mask, exact=True)
        # A view: the in-place `mask *= ...` and `mask[n] *= ...` below reach it, so the balance
        # loss counts rank 0 after its capacity drops.
        mask_1 = self.loss_mask(mask)
        denom = self.record("denom", ("G", "S"), gates.sum(dim=0).clamp(min=eps))
        gates = self.record("gates_normalized", ("K", "G", "S"), gates / denom)

        probs = inputs["route_uniform"]  # [K, G, S]
        should_route = probs < gates / self.thresholds()[:, None, None]
        should_route[0, ...] = True
        self.record("should_route", ("K", "G", "S"), self.route(should_route), exact=True)
        mask *= should_route[..., None].float()
        self.record("mask_routed", ("K", "G", "S", "E"), mask, exact=True)
        mask_cumsum = self.record("mask_cumsum", ("K", "G", "S", "E"), cumsum_exclusive(mask, dim=-2), exact=True)

        positions = []
        prev_expert_count = 0.0
        for n in range(top_n):
            position_in_expert = self.record(f"position_in_expert_{n}", ("G", "S", "E"),
                                             self.queue(mask_cumsum[n], prev_expert_count) * mask[n], exact=True)
            mask[n] *= (position_in_expert < C).float()
            mask_n = self.record(f"mask_{n}_capacity", ("G", "S", "E"), mask[n], exact=True)
            # reduce(mask[n], '... n e -> ... 1 e', 'sum') + prev_expert_count
            prev_expert_count = mask_n.sum(dim=-2, keepdim=True) + prev_expert_count  # [G, 1, E]
            self.record(f"prev_expert_count_{n}", ("G", "E"), prev_expert_count[:, 0, :], exact=True)
            positions.append(self.record(f"position_in_expert_{n}_flat", ("G", "S"), position_in_expert.sum(dim=-1), exact=True))
        positions = self.record("positions", ("K", "G", "S"), torch.stack(positions), exact=True)
        mask_flat = self.record("mask_flat", ("K", "G", "S"), mask.sum(dim=-1), exact=True)
        gates = self.record("gates_capacity", ("K", "G", "S"), self.capacity_gates(gates, mask_flat))

        occupies = mask_flat > 0
        self.record("routing_expert", ("G", "S", "K"), gate_indices.permute(1, 2, 0))
        self.record("routing_slot", ("G", "S", "K"),
                    torch.where(occupies, positions.long(), -1).permute(1, 2, 0))
        self.record("routing_weight", ("G", "S", "K"),
                    torch.where(occupies, gates, torch.zeros(())).permute(1, 2, 0))

        E = raw_gates.shape[-1]
        combine_tensor = (gates * mask_flat)[..., None, None] * F.one_hot(gate_indices, E)[..., None] \
            * safe_one_hot(positions.long(), C)[..., None, :]  # [K, G, S, E, C]
        combine_tensor = self.record("combine_tensor", ("G", "S", "E", "C"), combine_tensor.sum(dim=0))
        dispatch_tensor = self.record("dispatch_tensor", ("G", "S", "E", "C"), combine_tensor.bool())
        dispatch_tensor = dispatch_tensor.float()
        if hp["straight_through_dispatch_tensor"]:
            # dispatch_tensor + combine_tensor - combine_tensor.detach(), as the forward pass sees it.
            dispatch_tensor = self.record("dispatch_tensor_straight_through", ("G", "S", "E", "C"),
                                          dispatch_tensor + combine_tensor - combine_tensor)

        if not self.train:
            return dispatch_tensor, combine_tensor, torch.zeros(()), torch.zeros(())
        density_1 = self.record("density_1", ("G", "E"), mask_1.mean(dim=-2))
        density_1_proxy = self.record("density_1_proxy", ("G", "E"), raw_gates.mean(dim=-2))
        balance_loss = self.record("balance_loss", (), (density_1_proxy * density_1).mean() * float(E ** 2))
        lse = self.record("router_z_loss_logsumexp", ("G", "S"), torch.logsumexp(gate_logits, dim=-1))
        square = self.record("router_z_loss_square", ("G", "S"), torch.square(lse))
        router_z_loss = self.record("router_z_loss", (), square.mean())
        return dispatch_tensor, combine_tensor, balance_loss, router_z_loss

    def loss_mask(self, mask):
        """mask_1 = mask[0]: a view, so the in-place capacity drops of rank 0 reach the balance loss."""
        return mask[0]

    def route(self, should_route):
        """The random keep of each rank (a hook for the broken backend)."""
        return should_route

    def queue(self, mask_cumsum_n, prev_expert_count):
        """Rank n queues behind every kept choice of the earlier ranks."""
        return mask_cumsum_n + prev_expert_count

    def capacity_gates(self, gates, mask_flat):
        """gates * mask_flat: no renormalisation after the capacity drops."""
        return gates * mask_flat

    # ---- Expert, RMSNorm, MoE, SparseMoEBlock ----------------------------------------------
    def expert(self, x, inputs, prefix, name, expert_dim):
        """Expert.net: [RMSNorm], Linear(dim, 2H), GEGLU, Linear(H, dim); weights stored [in, out] halves."""
        def w(part):
            return inputs[prefix + part]
        eq = "egcm,emh->egch" if expert_dim else "gsm,mh->gsh"
        b = (lambda t: t[:, None, None, :]) if expert_dim else (lambda t: t)
        lead = ("E", "G", "C") if expert_dim else ("G", "S")
        hidden = "H" if expert_dim else "F"
        hidden_x = self.record(f"{name}_hidden_x", (*lead, hidden), torch.einsum(eq, x, w("w1_x")) + b(w("b1_x")))
        hidden_gate = self.record(f"{name}_hidden_gate", (*lead, hidden),
                                  torch.einsum(eq, x, w("w1_gate")) + b(w("b1_gate")))
        geglu = self.record(f"{name}_geglu", (*lead, hidden), F.gelu(hidden_gate) * hidden_x * b(w("mult_bias")))
        eq_out = "egch,ehm->egcm" if expert_dim else "gsh,hm->gsm"
        return torch.einsum(eq_out, geglu, w("w2")) + b(w("b2"))

    def rms_norm(self, name, x, gamma):
        dim = x.shape[-1]
        return self.record(name, ("G", "S", "M"), F.normalize(x, dim=-1) * gamma * dim ** 0.5)

    def feed_forward(self, name, x, inputs):
        normed = self.rms_norm(f"{name}_prenorm", x, inputs[f"{name}_gamma"])
        out = self.record(f"{name}_output", ("G", "S", "M"), self.expert(normed, inputs, f"{name}_", name, False))
        return self.record(f"x_{name}", ("G", "S", "M"), out + x)

    def run(self, inputs):
        dims, hp = self.config["dims"], self.hp
        G, S, E = dims["G"], dims["S"], dims["E"]
        capacity_factor = hp["capacity_factor_train" if self.train else "capacity_factor_eval"]
        C = max(min(S, int((S * capacity_factor) / E)), MIN_EXPERT_CAPACITY)
        capacity = {"expert_capacity": C,
                    "rule": "st-moe: max(min(S, int(S * capacity_factor / E)), MIN_EXPERT_CAPACITY = 4)",
                    "capacity_factor": capacity_factor, "group_size": S, "num_groups": G}
        x = inputs.get("x")
        if x is not None:
            x = x.reshape(G, S, -1)
        if self.scope != "layer":
            _, _, balance_loss, router_z_loss = self.gate(x, inputs, C)
            return self.steps, {"balance_loss": balance_loss, "router_z_loss": router_z_loss}, capacity

        block = hp["module"] == "SparseMoEBlock"
        residual = x
        if block:
            if hp["add_ff_before"]:
                residual = self.feed_forward("ff_before", x, inputs)
            x = self.rms_norm("moe_prenorm", residual, inputs["moe_prenorm_gamma"])
        dispatch_tensor, combine_tensor, balance_loss, router_z_loss = self.gate(x, inputs, C)
        expert_inputs = self.record("expert_inputs", ("G", "E", "C", "M"),
                                    torch.einsum("bnd,bnec->becd", x, dispatch_tensor))
        expert_outputs = self.expert(expert_inputs.permute(1, 0, 2, 3), inputs, "expert_", "expert", True)
        expert_outputs = self.record("expert_outputs", ("G", "E", "C", "M"), expert_outputs.permute(1, 0, 2, 3))
        output = self.record("output", ("G", "S", "M"), torch.einsum("becd,bnec->bnd", expert_outputs, combine_tensor))
        total_aux_loss = balance_loss * hp["balance_loss_coef"] + router_z_loss * hp["router_z_loss_coef"]
        if block:
            x = self.record("x_moe", ("G", "S", "M"), output + residual)
            if hp["add_ff_after"]:
                self.feed_forward("ff_after", x, inputs)
        losses = {"balance_loss": balance_loss, "router_z_loss": router_z_loss, "total_aux_loss": total_aux_loss}
        return self.steps, losses, capacity


def run_golden(golden_path, candidate_path, backend_class=StmoeTopn, program=BACKEND_NAME):
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("golden", help="golden trace (its config and inputs are replayed)")
    parser.add_argument("-o", "--output", required=True, help="candidate trace to write")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    run_golden(args.golden, args.output)
    print(f"wrote {args.output} ({BACKEND_NAME})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
