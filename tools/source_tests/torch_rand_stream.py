#!/usr/bin/env python3
"""Restates torch.manual_seed(seed); torch.rand(n) on CPU without torch, for tests that turn a
source test's torch-generated inputs into literal moeref inputs (tests/torch_test_helpers.hpp,
torch_cpu_rand).

PyTorch's CPU generator is MT19937 seeded with init_genrand(seed); torch.rand draws one 32-bit
word per float32 element and keeps its low 24 bits: u = (word & 0xFFFFFF) * 2**-24
(pytorch/pytorch, aten/src/ATen/core/TransformationHelper.h, uniform_real). nn.Linear(i, o,
bias=False) consumes i * o words in its kaiming_uniform_ init, so a draw after building one starts
i * o words later. Checked against torch 1.13 (Debian python3-torch): the first 400 values of seed 0
are identical.

huggingface/transformers tests/models/nllb_moe/test_modeling_nllb_moe.py, NllbMoeRouterTest:
  test_second_expert_policy: set_seed(0); logits = torch.rand((40, 4)) -> words 0..159;
    set_seed(0); NllbMoeTop2Router(config) (classifier Linear(32, 4, bias=False): words 0..127);
    route_tokens: 'random' draws torch.rand_like(40) -> words 128..167; 'sampling' draws
    Gumbel(0, 1).rsample((40, 4)) -> words 128..287.
  test_batch_prioritized_routing: set_seed(0); logits = torch.rand((40, 4)) -> words 0..159; the
    router's Linear -> 160..287; 'random' -> words 288..327.

Usage: tools/source_tests/torch_rand_stream.py SEED SKIP COUNT
"""
import sys


def mt19937(seed):
    mt = [seed & 0xFFFFFFFF]
    for i in range(1, 624):
        mt.append((1812433253 * (mt[i - 1] ^ (mt[i - 1] >> 30)) + i) & 0xFFFFFFFF)
    index = 624
    while True:
        if index >= 624:
            for i in range(624):
                y = (mt[i] & 0x80000000) | (mt[(i + 1) % 624] & 0x7FFFFFFF)
                mt[i] = mt[(i + 397) % 624] ^ (y >> 1) ^ (0x9908B0DF if y & 1 else 0)
            index = 0
        y = mt[index]
        index += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C5680
        y ^= (y << 15) & 0xEFC60000
        y ^= y >> 18
        yield y


def torch_rand(seed, skip, count):
    words = mt19937(seed)
    for _ in range(skip):
        next(words)
    return [(next(words) & 0xFFFFFF) / 2**24 for _ in range(count)]


if __name__ == "__main__":
    seed, skip, count = (int(arg) for arg in sys.argv[1:4])
    print(", ".join(repr(value) for value in torch_rand(seed, skip, count)))
