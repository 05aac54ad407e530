#!/usr/bin/env python3
"""Conformance run: the torch backends (mtf_top2, stmoe_topn) against every golden of their variant.

Usage: tools/backends/run_conformance.py [--moeref BIN] [--variant ID] [--keep DIR]

For each backend (BACKENDS below):
1. For EVERY golden trace of its variant, the correct backend replays the golden's config and
   inputs and `moeref check` must exit 0 with the tolerances below (a consistent alternative at
   a near tie is a pass: the checker re-ran the reference with the candidate's decisions).
2. For every golden and each bug of the backend's broken copy, `moeref check` must exit 1 and
   name the expected first divergent step, or exit 0 where the golden cannot show the bug (the
   table says why).
3. For every golden, a planted drift (every nonzero float of every step and loss moved DRIFT_ULPS
   ulps away from zero) must fail under moeref's default bounds and pass under the atol/rtol
   defaults they replaced (OLD_DEFAULTS): the per-step bounds tell the torch backend (step 1)
   from the drift, where the old defaults passed both. Each line prints how much of its bounds
   the torch backend used (its largest |actual - expected| / bound) under both rules.

All goldens run in one Python process (importing torch is the slow part). Exit 0 when all
expectations hold, 1 otherwise. CTest runs this (tests/CMakeLists.txt, test
`python_torch_backend_conformance`) with MOEREF_BIN set to the freshly built binary.
"""

import argparse
import os
import pathlib
import sys
import tempfile

# Before importing torch: one thread, so runs are reproducible and CTest's cores are not oversubscribed.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tools" / "python"))
import moeref  # noqa: E402
import torch_mtf_top2  # noqa: E402
import torch_mtf_top2_broken  # noqa: E402
import torch_stmoe_topn  # noqa: E402
import torch_stmoe_topn_broken  # noqa: E402

# Per-tensor tolerances for the correct backend: none needed. The checker's float32 defaults
# (a bound per element derived from the golden, spec/trace-format.md "Tolerances") pass every
# golden, the torch backend using at most 40% of any bound (the router's logits). Measured
# with Debian 12's python3-torch 1.13.1 on x86-64, 1 thread (the run prints the same table per
# golden):
#   logits                 <= 26 ulp, rel <= 1.6e-6: float32 GEMM vs moeref's double-accumulated dot
#   raw_gates, gate_*      <= 6 ulp, abs <= 1.2e-7: torch.softmax is exp(x - max) / sum where mtf
#                          has exp(x - logsumexp); true division where mtf has x * reciprocal(d)
#   density_*, losses      <= 2 ulp: torch.mean is sum / n where mtf has sum * f32(1/n)
#   expert_hidden, expert_outputs, outputs
#                          <= 604 ulp, rel <= 5.4e-5 but abs <= 2.4e-7: values near zero after
#                          cancellation (a product's bound is 2 gamma_n sum_k |a_k b_k|, which
#                          does not shrink with the result), GEMM order, torch's tanh gelu
# Every int32 step (indices, masks, positions, counts, dispatch) matches exactly.
TOLERANCES = {}

# (bug, golden name) -> expected first divergent step; None: the golden cannot show this bug.
BROKEN_EXPECTATIONS = {
    "second_queued_in_token_order": {
        "default_layer_train": "position_in_expert_2",
        "eval_threshold_padding_gelu": "position_in_expert_2",
        "gating_overflow_explicit_capacity": "position_in_expert_2",
        "glu_dropout_second_place_loss": "position_in_expert_2",
        "single_expert_random_eval": None,
    },
    "renormalise_after_capacity": {
        "default_layer_train": "gate_1_capacity",
        "eval_threshold_padding_gelu": "gate_1_capacity",
        "gating_overflow_explicit_capacity": "gate_1_capacity",
        "glu_dropout_second_place_loss": "gate_1_capacity",
        "single_expert_random_eval": None,
    },
}
_WHY_NOT = {
    "second_queued_in_token_order": "E = 1: random drops every second choice and gate_1 is already 1",
    "renormalise_after_capacity": "E = 1 (mtf_top2), or no token loses a choice (stmoe_topn: threshold 0 and C >= S)",
    "balance_loss_before_capacity": "evaluation (no balance loss), or no first choice overflows its expert",
}

# stmoe_topn. Per-tensor tolerances: none needed; measured with Debian 12's python3-torch 1.13.1
# on x86-64, 1 thread (the run prints the same table per golden):
#   gate_logits, expert_hidden_*, expert_outputs, output, ff_*_hidden_*, ff_*_output
#                          float32 GEMMs in torch's order vs moeref's (double-accumulated router,
#                          Eigen GEMM): up to a few hundred ulp on values near zero, abs <= 2e-7
#   raw_gates, gates*, combine_tensor, density_1_proxy, losses
#                          <= 3 ulp: Sleef exp, float32 sums in torch's order
#   expert_geglu           erf GELU (Sleef erf vs erf in double): abs <= 1e-7
# Every int32 step matches exactly, except gate_indices at exact ties: torch.topk takes equal
# gates in another order (golden gating_ties_overflow_train), reported as a consistent
# alternative at a near tie.
STMOE_BROKEN_EXPECTATIONS = {
    "balance_loss_before_capacity": {
        "default_moe_train": "density_1",
        "gating_ties_overflow_train": "density_1",
        "block_top3_list_thresholds_eval": None,
        "noise_gates_top4_no_straight_through": None,
        "short_sequences_capacity_floor_eval": None,
    },
    "renormalise_after_capacity": {
        "default_moe_train": "gates_capacity",
        "gating_ties_overflow_train": "gates_capacity",
        "block_top3_list_thresholds_eval": "gates_capacity",
        "noise_gates_top4_no_straight_through": "gates_capacity",
        "short_sequences_capacity_floor_eval": None,
    },
}

# The planted drift of step 3, and the atol/rtol defaults the per-step bounds replaced (elementwise
# atol 1e-6, rtol 1e-5; these matrix products atol 1e-5, rtol 1e-4). 64 ulps is at most
# 64 * 2^-23 = 7.6e-6 of a value: inside the old rtol of every step.
DRIFT_ULPS = 64
OLD_PRODUCTS = ["logits", "expert_inputs", "expert_hidden", "expert_hidden_dropout", "expert_outputs", "outputs",
                "gate_logits", "expert_hidden_x", "expert_hidden_gate", "expert_geglu", "output"] + [
    f"ff_{where}_{what}" for where in ("before", "after")
    for what in ("hidden_x", "hidden_gate", "geglu", "output")]
OLD_DEFAULTS = {"atol": 1e-6, "rtol": 1e-5, "tolerances": {name: (1e-5, 1e-4) for name in OLD_PRODUCTS}}

# variant -> (backend module, broken module, expectations by bug)
BACKENDS = {
    "mtf_top2": (torch_mtf_top2, torch_mtf_top2_broken, BROKEN_EXPECTATIONS),
    "stmoe_topn": (torch_stmoe_topn, torch_stmoe_topn_broken, STMOE_BROKEN_EXPECTATIONS),
}


def ulp_distance(a, b):
    """Elementwise distance in float32 ulps (0 for equal values, +0 and -0 equal)."""
    def ordered(x):
        bits = x.astype(np.float32).view(np.int32).astype(np.int64)
        return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)
    return np.abs(ordered(a) - ordered(b))


def float_differences(golden, candidate):
    """Lines "step: n/total differ, max ulp, max abs, max rel" for float steps and losses that differ."""
    lines = []
    pairs = [(name, t.array, candidate.steps[name].array) for name, t in golden.steps.items()
             if t.dtype == "float32" and name in candidate.steps]
    pairs += [(f"losses.{name}", np.array([v]), np.array([candidate.losses[name]]))
              for name, v in golden.losses.items() if name in candidate.losses]
    for name, expected, actual in pairs:
        differ = np.count_nonzero(expected != actual)
        if differ == 0 or expected.size == 0:
            continue
        error = np.abs(expected.astype(np.float64) - actual.astype(np.float64))
        relative = error / np.maximum(np.abs(expected.astype(np.float64)), np.finfo(np.float32).tiny)
        lines.append(f"    {name}: {differ}/{expected.size} differ, max {ulp_distance(expected, actual).max()} ulp, "
                     f"max abs {error.max():.2g}, max rel {relative.max():.2g}")
    return lines


def drift(golden, ulps):
    """The golden's steps and losses with every nonzero finite float moved `ulps` ulps away from zero."""
    def moved(array):
        array = np.array(array, dtype=np.float32)
        bits = array.view(np.int32).copy()
        bits[np.isfinite(array) & (array != 0)] += np.int32(ulps)
        out = bits.view(np.float32)
        return np.where(np.isfinite(out), out, array).astype(np.float32)
    steps = {name: (t.dims, moved(t.array) if t.dtype == "float32" else t.array) for name, t in golden.steps.items()}
    losses = {name: float(moved(np.array([value], dtype=np.float32))[0]) for name, value in golden.losses.items()}
    return steps, losses


def bound_used(result):
    """The largest |actual - expected| / bound over the float tensors of a report, and where."""
    used = [(t.get("bound_used") or 0.0, t["name"]) for t in result.get("tensors", []) if t.get("dtype") == "float32"
            and t.get("section") != "inputs"]
    return max(used, default=(0.0, "-"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moeref", help="moeref binary (default: $MOEREF_BIN, else build/moeref)")
    parser.add_argument("--variant", choices=sorted(BACKENDS), help="one backend only (default: all)")
    parser.add_argument("--keep", help="write candidates and reports here instead of a temporary directory")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    moeref_bin = moeref.find_moeref(args.moeref)
    failures = []

    def expect(condition, message):
        print(("  ok    " if condition else "  FAIL  ") + message)
        if not condition:
            failures.append(message)

    print(f"torch {torch.__version__}, numpy {np.__version__}, moeref {moeref_bin}")
    with tempfile.TemporaryDirectory(prefix="moeref-conformance-") as scratch:
        for variant, (backend, broken, expectations_by_bug) in BACKENDS.items():
            if args.variant and variant != args.variant:
                continue
            goldens = sorted((REPO / "golden" / variant).glob("*.trace.json"))
            expect(bool(goldens), f"{variant}: golden traces in golden/{variant}")
            out = pathlib.Path(args.keep or scratch) / variant
            out.mkdir(parents=True, exist_ok=True)
            print(f"correct backend (tools/backends/{backend.BACKEND_NAME}.py):")
            used = {}
            for golden_path in goldens:
                name = golden_path.name[: -len(".trace.json")]
                candidate_path = out / f"{name}.torch.trace.json"
                golden = backend.run_golden(golden_path, candidate_path)
                result = moeref.check(golden_path, candidate_path, out / f"{name}.torch.report.json",
                                      moeref_bin=moeref_bin, tolerances=TOLERANCES)
                expect(result.exit_code == 0 and result.get("pass") is True,
                       f"{name}: exit {result.exit_code}, {result.get('checked')} checked, "
                       f"{result.get('failing')} differ, {result.get('not_checked')} not checked"
                       + (", consistent alternative at a near tie" if result.get("consistent_alternative") else ""))
                if result.exit_code != 0:
                    print(result.text)
                old = moeref.check(golden_path, candidate_path, moeref_bin=moeref_bin, **OLD_DEFAULTS)
                used[name] = (bound_used(result), bound_used(old))
                # Every golden step is produced, so nothing is silently left unchecked.
                expect(result.get("not_checked") == 0, f"{name}: the candidate has every golden step and input")
                for line in float_differences(golden, moeref.load_trace(candidate_path)):
                    print(line)

            print(f"broken backend (tools/backends/{backend.BACKEND_NAME}_broken.py):")
            for bug, expectations in expectations_by_bug.items():
                for golden_path in goldens:
                    name = golden_path.name[: -len(".trace.json")]
                    if name not in expectations:
                        expect(False, f"{bug} / {name}: add this golden to the broken expectations")
                        continue
                    expected_step = expectations[name]
                    candidate_path = out / f"{name}.{bug}.trace.json"
                    backend.run_golden(golden_path, candidate_path, broken.BUGS[bug],
                                       program=f"{backend.BACKEND_NAME}_broken/{bug}")
                    result = moeref.check(golden_path, candidate_path, out / f"{name}.{bug}.report.json",
                                          moeref_bin=moeref_bin, tolerances=TOLERANCES)
                    if expected_step is None:
                        expect(result.exit_code == 0, f"{bug} / {name}: exit {result.exit_code}, "
                                                      f"expected 0 ({_WHY_NOT[bug]})")
                    else:
                        got = result.get("first_divergent_step")
                        expect(result.exit_code == 1 and got == expected_step,
                               f"{bug} / {name}: exit {result.exit_code}, first divergent step {got} "
                               f"(expected 1, {expected_step})")

            print(f"planted drift ({DRIFT_ULPS} ulps on every float) beside the torch backend, "
                  "per-step bounds vs the old atol/rtol defaults:")
            for golden_path in goldens:
                name = golden_path.name[: -len(".trace.json")]
                golden = moeref.load_trace(golden_path)
                steps, losses = drift(golden, DRIFT_ULPS)
                candidate_path = out / f"{name}.drift.trace.json"
                moeref.write_trace(candidate_path, golden.config, steps, losses=losses,
                                   inputs={n: (t.dims, t.array) for n, t in golden.inputs.items()},
                                   capacity=golden.capacity,
                                   generator={"program": "planted-drift", "version": "1", "rng": "replayed"})
                new = moeref.check(golden_path, candidate_path, out / f"{name}.drift.report.json",
                                   moeref_bin=moeref_bin, tolerances=TOLERANCES)
                old = moeref.check(golden_path, candidate_path, moeref_bin=moeref_bin, **OLD_DEFAULTS)
                failing = sum(1 for t in new.get("tensors", []) if t.get("status") == "mismatch")
                (torch_new, where_new), (torch_old, where_old) = used.get(name, ((0.0, "-"), (0.0, "-")))
                expect(new.exit_code == 1 and old.exit_code == 0,
                       f"{name}: drift exit {new.exit_code} ({failing} tensors beyond their bounds, first "
                       f"{new.get('first_divergent_step')}), {old.exit_code} under the old defaults; torch used "
                       f"{torch_new:.2f} of its bounds ({where_new}), {torch_old:.2f} of the old defaults "
                       f"({where_old})")
    print(f"{'FAIL' if failures else 'PASS'}: {len(failures)} expectation(s) failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
