#!/usr/bin/env python3
"""Reproduces the inputs of tensorflow/lingvo lingvo/core/gshard_gating_test.py,
GatingTest.testExpertChoiceV2, without numpy, and prints the tokens each expert
selects according to an independent float64 restatement of
TokenShufflingOnlogitsV2 (softmax over E, scores masked by paddings, top-C per
expert with lower indices first on ties).

The test does:
    np.random.seed(123456)
    npy_inputs = np.random.normal(0.0, 1.0, [B, L, M]).round(decimals=2).astype('float32')
    w = np.random.normal(0.0, 1.0, [M, E]).round(decimals=2).astype('float32')
numpy's legacy RandomState seeds MT19937 with init_genrand(seed) and draws
normals with the polar Box-Muller method (legacy_gauss), one cached value per
pair; random doubles are (a >> 5, b >> 6) of two 32-bit words. Python's random
module is the same MT19937, so its state is set from init_genrand directly.
Check: seed 0 gives 1.764052345967664, 0.4001572083672233, ... as numpy does.

Usage: tools/source_tests/lingvo_gating_test_inputs.py
"""
import math
import random


def init_genrand(seed):
    mt = [seed & 0xFFFFFFFF]
    for i in range(1, 624):
        mt.append((1812433253 * (mt[i - 1] ^ (mt[i - 1] >> 30)) + i) & 0xFFFFFFFF)
    return mt


class LegacyRandomState:
    def __init__(self, seed):
        self.rng = random.Random()
        self.rng.setstate((3, tuple(init_genrand(seed) + [624]), None))
        self.cached = None

    def random_double(self):
        a = self.rng.getrandbits(32) >> 5
        b = self.rng.getrandbits(32) >> 6
        return (a * 67108864.0 + b) / 9007199254740992.0

    def gauss(self):
        if self.cached is not None:
            value, self.cached = self.cached, None
            return value
        while True:
            x1 = 2.0 * self.random_double() - 1.0
            x2 = 2.0 * self.random_double() - 1.0
            r2 = x1 * x1 + x2 * x2
            if 0.0 < r2 < 1.0:
                break
        f = math.sqrt(-2.0 * math.log(r2) / r2)
        self.cached = f * x1
        return f * x2

    def normal(self, count):
        return [0.0 + 1.0 * self.gauss() for _ in range(count)]


def round2(value):
    # numpy's around(x, 2): rint(x * 100) / 100, rint rounding half to even like Python's round.
    return round(value * 100.0) / 100.0


def main():
    assert LegacyRandomState(0).normal(2) == [1.764052345967664, 0.4001572083672233]
    B, L, M, G, S, E, C = 2, 6, 8, 2, 6, 4, 3
    state = LegacyRandomState(123456)
    x = [round2(v) for v in state.normal(B * L * M)]
    w = [round2(v) for v in state.normal(M * E)]
    paddings = [0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1]
    print("x [G=2, S=6, M=8] =", x)
    print("w [M=8, E=4] =", w)
    for g in range(G):
        gates = []
        for s in range(S):
            t = g * S + s
            logits = [sum(x[t * M + m] * w[m * E + e] for m in range(M)) for e in range(E)]
            top = max(logits)
            exps = [math.exp(v - top) for v in logits]
            gates.append([v / sum(exps) for v in exps])
        for e in range(E):
            scores = [gates[s][e] * (1 - paddings[g * S + s]) for s in range(S)]
            order = sorted(range(S), key=lambda s: (-scores[s], s))
            taken = sorted(s for s in order[:C] if paddings[g * S + s] == 0)
            print(f"g={g} e={e} takes tokens {taken} (score at the cut {scores[order[C - 1]]:.6g}, "
                  f"next {scores[order[C]]:.6g})")


if __name__ == "__main__":
    main()
