// Unit tests of the literal building blocks in src/ops/ and src/rng.cpp.
//
// Dims: S group size, E experts (a row of E values per token).
// Every expected value below is either derived by hand in the comment above it,
// taken from a published known-answer table (Random123), or recomputed here in
// double by a different formula than the one under test.
#include <array>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "moeref/error.hpp"
#include "moeref/ops/cumsum.hpp"
#include "moeref/ops/mtf_activations.hpp"
#include "moeref/ops/mtf_capacity.hpp"
#include "moeref/ops/mtf_grouping.hpp"
#include "moeref/ops/mtf_softmax.hpp"
#include "moeref/ops/router.hpp"
#include "moeref/ops/top1.hpp"
#include "moeref/rng.hpp"
#include "portable_random.hpp"
#include "test_support.hpp"

using moeref::testing::uniform_float;

namespace {

// Distance from `actual` to `expected` in units of the float32 spacing at `expected`.
double ulps_from(float actual, double expected) {
  const float nearest = static_cast<float>(expected);
  const float magnitude = std::fabs(nearest);
  const double spacing =
      static_cast<double>(std::nextafter(magnitude, std::numeric_limits<float>::infinity()) - magnitude);
  return std::fabs(static_cast<double>(actual) - expected) / spacing;
}

// Half the float32 spacing at |v| (v rounded to float32 first).
double half_ulp(double v) {
  const float magnitude = std::fabs(static_cast<float>(v));
  return 0.5 * static_cast<double>(std::nextafter(magnitude, std::numeric_limits<float>::infinity()) - magnitude);
}

// softmax in double by the textbook formula exp(x - max) / sum (a different
// formula from mtf's exp(x - logsumexp)); the ground truth for mtf_softmax.
std::vector<double> softmax_in_double(const std::vector<float>& row) {
  double max_value = static_cast<double>(row[0]);
  for (float v : row) max_value = std::max(max_value, static_cast<double>(v));
  std::vector<double> out(row.size());
  double sum = 0.0;
  for (size_t e = 0; e < row.size(); ++e) {
    out[e] = std::exp(static_cast<double>(row[e]) - max_value);
    sum += out[e];
  }
  for (double& v : out) v /= sum;
  return out;
}

}  // namespace

// ---- softmax ---------------------------------------------------------------------

TEST_CASE("mtf_softmax of hand-picked logits gives the hand-computed probabilities", "[ops][softmax]") {
  // Logits log(0.5), log(0.3), log(0.2): softmax gives back 0.5, 0.3, 0.2, because
  // their exponentials already sum to 1. Logits 0, 0: two equal halves.
  const std::vector<float> logits = {static_cast<float>(std::log(0.5)),
                                     static_cast<float>(std::log(0.3)),
                                     static_cast<float>(std::log(0.2)),
                                     0.0f,
                                     0.0f,
                                     0.0f};
  std::vector<float> probs(6);
  moeref::ops::mtf_softmax(logits.data(), probs.data(), 2, 3);
  CHECK(probs[0] == Approx(0.5).epsilon(1e-6));
  CHECK(probs[1] == Approx(0.3).epsilon(1e-6));
  CHECK(probs[2] == Approx(0.2).epsilon(1e-6));
  // Three equal logits: lse = log(3), each probability exp(-log 3) = 1/3.
  CHECK(probs[3] == Approx(1.0 / 3.0).epsilon(1e-6));
  CHECK(probs[3] == probs[4]);
  CHECK(probs[4] == probs[5]);
}

TEST_CASE("mtf_softmax rows sum to 1 and match a double softmax within the float32 error bound", "[ops][softmax]") {
  // mtf.softmax is exp(x - (log(sum exp(x - max)) + max)) in float32
  // (tensorflow/mesh, mesh_tensorflow/ops.py, softmax / log_softmax / reduce_logsumexp).
  // Its rounding error is not "2 ulps of p": the exponent y = x - lse is itself a
  // float32, so rounding it (and lse, and log(sum)) moves p by a RELATIVE amount of
  // half an ulp of |y|, which for |y| ~ 4 is 2^-22, i.e. several ulps of p. The bound
  // for one element, to first order, is
  //   p * (ulp(y)/2 + ulp(lse)/2 + ulp(log sum)/2 + 2^-24 [sum rounding]) + ulp(p)/2 [exp rounding].
  // We check every element against that bound (times 1.05 for second-order terms).
  // A flat "2 ulps" is not a valid requirement: with |x| <= 1 and E = 3 the mtf formula
  // is already 3.3 ulps from the exact softmax on this data, as the bound allows.
  uint64_t state = 1234;
  for (int64_t E : {2, 3, 4, 16}) {
    const int64_t rows = 200;
    std::vector<float> logits(static_cast<size_t>(rows * E));
    for (float& v : logits) v = uniform_float(state, -1.0, 1.0);
    std::vector<float> probs(logits.size());
    moeref::ops::mtf_softmax(logits.data(), probs.data(), rows, E);
    double worst_ulps = 0.0;
    double worst_ratio = 0.0;
    for (int64_t r = 0; r < rows; ++r) {
      const std::vector<float> row(logits.begin() + r * E, logits.begin() + (r + 1) * E);
      const std::vector<double> expected = softmax_in_double(row);
      double max_value = static_cast<double>(row[0]);
      for (float v : row) max_value = std::max(max_value, static_cast<double>(v));
      double shifted_sum = 0.0;
      for (float v : row) shifted_sum += std::exp(static_cast<double>(v) - max_value);
      const double log_sum = std::log(shifted_sum);
      const double lse = log_sum + max_value;
      double sum = 0.0;
      for (int64_t e = 0; e < E; ++e) {
        const float p = probs[static_cast<size_t>(r * E + e)];
        const double want = expected[static_cast<size_t>(e)];
        const double y = static_cast<double>(row[static_cast<size_t>(e)]) - lse;
        const double bound =
            want * (half_ulp(y) + half_ulp(lse) + half_ulp(log_sum) + std::ldexp(1.0, -24)) + half_ulp(want);
        sum += static_cast<double>(p);
        worst_ulps = std::max(worst_ulps, ulps_from(p, want));
        worst_ratio = std::max(worst_ratio, std::fabs(static_cast<double>(p) - want) / bound);
      }
      INFO("E=" << E << " row " << r);
      CHECK(sum == Approx(1.0).margin(static_cast<double>(E) * 2e-7));
    }
    INFO("E=" << E << " worst ulp distance " << worst_ulps << ", worst error / bound " << worst_ratio);
    CHECK(worst_ratio <= 1.05);
  }
}

TEST_CASE("mtf_logsumexp of equal logits is log(E) plus the logit", "[ops][softmax]") {
  // reduce_logsumexp: max m = 2, every shifted value exp(0) = 1, sum E, log(E) + m.
  const std::vector<float> row = {2.0f, 2.0f, 2.0f, 2.0f};
  CHECK(moeref::ops::mtf_logsumexp(row.data(), 4) == Approx(2.0 + std::log(4.0)).epsilon(1e-7));
  // A single logit: log(1) + x = x exactly.
  const float single = -3.25f;
  CHECK(moeref::ops::mtf_logsumexp(&single, 1) == -3.25f);
}

// ---- top_1 -------------------------------------------------------------------------

TEST_CASE("top_1_lowest_index returns the lowest index among equal maxima", "[ops][top1][ties]") {
  // mtf.top_1 lowers to tf.math.argmax (TopKOperation.lower with k = 1), which returns the
  // smallest index among equal maxima. Rows chosen with ties on purpose:
  //   [1, 3, 3, 0]      -> max 3 at 1 (2 also holds 3)
  //   [2, 2, 2, 2]      -> 0
  //   [-1, -5, -1, -1]  -> 0
  //   [0, 5, 4, 5]      -> 1
  //   [-0.0, 0.0, -1, -2] -> 0 (-0.0 == 0.0 is a tie under IEEE comparison)
  //   [1, 2, 3, 4]      -> 3 (no tie: the last one)
  const std::vector<float> values = {1, 3, 3, 0, 2,     2,    2,  2,  -1, -5, -1, -1,
                                     0, 5, 4, 5, -0.0f, 0.0f, -1, -2, 1,  2,  3,  4};
  std::vector<float> max_value(6);
  std::vector<int32_t> max_index(6);
  moeref::ops::top_1_lowest_index(values.data(), 6, 4, max_value.data(), max_index.data());
  CHECK(max_index == std::vector<int32_t>{1, 0, 0, 1, 0, 3});
  CHECK(max_value[0] == 3.0f);
  CHECK(max_value[1] == 2.0f);
  CHECK(max_value[2] == -1.0f);
  CHECK(max_value[3] == 5.0f);
  CHECK(max_value[4] == 0.0f);
  CHECK(max_value[5] == 4.0f);
}

// ---- cumsum ------------------------------------------------------------------------

TEST_CASE("exclusive_cumsum_over_s counts earlier tokens per expert", "[ops][cumsum]") {
  // mtf.cumsum(mask, group, exclusive=True): out[s, e] = sum_{t < s} mask[t, e].
  // mask [S=5, E=3]:        expected:
  //   1 0 0                   0 0 0
  //   0 1 0                   1 0 0
  //   1 0 0                   1 1 0
  //   1 1 0                   2 1 0
  //   0 0 1                   3 2 0
  const std::vector<int32_t> mask = {1, 0, 0, 0, 1, 0, 1, 0, 0, 1, 1, 0, 0, 0, 1};
  std::vector<int32_t> out(15, -7);
  moeref::ops::exclusive_cumsum_over_s(mask.data(), 5, 3, out.data());
  CHECK(out == std::vector<int32_t>{0, 0, 0, 1, 0, 0, 1, 1, 0, 2, 1, 0, 3, 2, 0});
}

// ---- capacity ----------------------------------------------------------------------

TEST_CASE("mtf_expert_capacity follows max(min(S, int(S*cf/E)), min_expert_capacity)", "[ops][capacity]") {
  using moeref::ops::mtf_expert_capacity;
  // transformer_moe_layer_v1: expert_capacity = min(S, int((S * cf) / E)); max(., min_expert_capacity).
  // S=1024, E=16: 1024 * 1.25 / 16 = 80; 1024 * 2.0 / 16 = 128.
  CHECK(mtf_expert_capacity(1024, 1.25, 16, 4) == 80);
  CHECK(mtf_expert_capacity(1024, 2.0, 16, 4) == 128);
  // S=2, E=4, cf 1.25: int(0.625) = 0, min(2, 0) = 0, max(0, 4) = 4 > S.
  CHECK(mtf_expert_capacity(2, 1.25, 4, 4) == 4);
  // min_expert_capacity 0 and S*cf < E: int(8 * 0.1 / 4) = int(0.2) = 0.
  CHECK(mtf_expert_capacity(8, 0.1, 4, 0) == 0);
  // min(S, .) caps a large factor: S=4, cf 10, E=1 -> min(4, 40) = 4.
  CHECK(mtf_expert_capacity(4, 10.0, 1, 0) == 4);
  // Python double arithmetic, S*cf first: 0.29 is stored slightly below 0.29, so
  // 100 * 0.29 = 28.999999999999996 and int() truncates to 28 (not 29).
  CHECK(mtf_expert_capacity(100, 0.29, 1, 0) == 28);
  // Truncation, not rounding: 10 * 1.25 / 4 = 3.125 -> 3; 10 * 1.9 / 4 = 4.75 -> 4.
  CHECK(mtf_expert_capacity(10, 1.25, 4, 0) == 3);
  CHECK(mtf_expert_capacity(10, 1.9, 4, 0) == 4);
}

// ---- grouping ----------------------------------------------------------------------

TEST_CASE("mtf_split_into_groups reproduces _split_into_groups", "[ops][grouping]") {
  using moeref::ops::mtf_split_into_groups;
  // num_groups = max(1, n // max); increment until it divides n and is a multiple of mesh_dim_size.
  struct Case {
    int64_t n, max_group_size, mesh_dim_size, G, S;
  };
  const std::vector<Case> cases = {
      {1500, 1024, 1, 1, 1500},                           // 1500 // 1024 = 1 divides 1500: S exceeds group_size
      {3000, 1024, 1, 2, 1500},                           // 3000 // 1024 = 2 divides 3000
      {4096, 1024, 1, 4, 1024}, {2048, 1024, 4, 4, 512},  // 2 is not a multiple of 4 -> 3 -> 4
      {7169, 1024, 1, 67, 107},                           // 7169 = 67 * 107; 7..66 do not divide it
      {2053, 1024, 1, 2053, 1},                           // 2053 is prime: every group holds one token
      {12, 4, 1, 3, 4},         {12, 4, 2, 4, 3},         // 3 is odd -> 4
      {12, 12, 2, 2, 6},                                  // 1 is odd -> 2
      {5, 1024, 1, 1, 5},
  };
  for (const Case& c : cases) {
    INFO("n=" << c.n << " max=" << c.max_group_size << " mesh=" << c.mesh_dim_size);
    const moeref::ops::Grouping got = mtf_split_into_groups(c.n, c.max_group_size, c.mesh_dim_size);
    CHECK(got.num_groups == c.G);
    CHECK(got.group_size == c.S);
  }
}

TEST_CASE("mtf_split_into_groups rejects n not divisible by mesh_dim_size", "[ops][grouping][errors]") {
  // _split_into_groups: raise ValueError("n=%d is not a multiple of mesh_dim_size=%d").
  CHECK_THROWS_AS(moeref::ops::mtf_split_into_groups(9, 4, 2), moeref::InputError);
  CHECK_THROWS_WITH(moeref::ops::mtf_split_into_groups(9, 4, 2), Catch::Contains("mesh_dim_size"));
  CHECK_NOTHROW(moeref::ops::mtf_split_into_groups(10, 4, 2));
}

// ---- router ------------------------------------------------------------------------

TEST_CASE("router_logits is x . router_weights without bias", "[ops][router]") {
  // x [T=2, M=3], W [M=3, E=2]; hand-computed products of small integers:
  //   row 0: [1, 2, 3] . [[1, -1], [0, 2], [0.5, 0]] = [1 + 1.5, -1 + 4] = [2.5, 3]
  //   row 1: [-1, 0, 4] . W = [-1 + 2, 1] = [1, 1]
  const std::vector<float> x = {1, 2, 3, -1, 0, 4};
  const std::vector<float> w = {1, -1, 0, 2, 0.5f, 0};
  std::vector<float> logits(4);
  moeref::ops::router_logits(x.data(), w.data(), 2, 3, 2, logits.data());
  CHECK(logits == std::vector<float>{2.5f, 3.0f, 1.0f, 1.0f});
}

TEST_CASE("router_logits gives the bits of one double sum per logit in order m = 0 .. M-1, for any E",
          "[ops][router]") {
  // Experts are summed 16 at a time in lanes; widths around that (and a remainder) must
  // not change a bit. Values of mixed magnitude, so that the order of a sum shows.
  for (const int64_t E : {1, 5, 16, 17, 40}) {
    const int64_t T = 7, M = 33;
    std::vector<float> x(static_cast<size_t>(T * M)), w(static_cast<size_t>(M * E));
    for (size_t i = 0; i < x.size(); ++i)
      x[i] = (i % 3 == 0 ? 1000.0f : 0.001f) * std::sin(static_cast<float>(i) + 0.5f);
    for (size_t i = 0; i < w.size(); ++i) w[i] = (i % 5 == 0 ? 100.0f : 0.01f) * std::cos(static_cast<float>(i) * 1.7f);
    std::vector<float> logits(static_cast<size_t>(T * E));
    moeref::ops::router_logits(x.data(), w.data(), T, M, E, logits.data());
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t e = 0; e < E; ++e) {
        double sum = 0.0;
        for (int64_t m = 0; m < M; ++m) {
          sum += static_cast<double>(x[static_cast<size_t>(t * M + m)]) *
                 static_cast<double>(w[static_cast<size_t>(m * E + e)]);
        }
        INFO("E " << E << ", token " << t << ", expert " << e);
        CHECK(moeref::testing::bits_of(logits[static_cast<size_t>(t * E + e)]) ==
              moeref::testing::bits_of(static_cast<float>(sum)));
      }
    }
  }
}

// ---- activations -------------------------------------------------------------------

TEST_CASE("activations follow the mtf formulas", "[ops][activations]") {
  using moeref::ops::Activation;
  using moeref::ops::apply_activation;
  // mtf.gelu (tensorflow/mesh, mesh_tensorflow/ops.py, gelu):
  //   0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))), here in double.
  for (float x : {-3.0f, -1.0f, -0.25f, 0.0f, 0.5f, 1.0f, 2.0f, 4.0f}) {
    const double xd = static_cast<double>(x);
    const double expected = 0.5 * xd * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (xd + 0.044715 * xd * xd * xd)));
    INFO("gelu(" << x << ")");
    CHECK(static_cast<double>(apply_activation(Activation::kGelu, x)) == Approx(expected).epsilon(1e-6).margin(1e-7));
  }
  CHECK(apply_activation(Activation::kRelu, -2.0f) == 0.0f);
  CHECK(apply_activation(Activation::kRelu, 2.5f) == 2.5f);
  CHECK(apply_activation(Activation::kLinear, -2.5f) == -2.5f);
  CHECK(apply_activation(Activation::kSigmoid, 0.0f) == 0.5f);
  CHECK(apply_activation(Activation::kTanh, 0.0f) == 0.0f);
  // swish(x) = x * sigmoid(x): at x = 2, 2 / (1 + e^-2).
  CHECK(static_cast<double>(apply_activation(Activation::kSwish, 2.0f)) ==
        Approx(2.0 / (1.0 + std::exp(-2.0))).epsilon(1e-6));
}

TEST_CASE("parse_activations reads a name or a list of names", "[ops][activations]") {
  using moeref::ops::Activation;
  CHECK(moeref::ops::parse_activations(nlohmann::json("relu")) == std::vector<Activation>{Activation::kRelu});
  CHECK(moeref::ops::parse_activations(nlohmann::json::array({"linear", "gelu"})) ==
        std::vector<Activation>{Activation::kLinear, Activation::kGelu});
}

// ---- Philox and uniforms -----------------------------------------------------------

TEST_CASE("philox4x32_10 matches the Random123 known-answer vectors", "[ops][rng]") {
  // Random123 kat_vectors, "philox4x32 10" lines (counter, key -> output).
  using Block = std::array<uint32_t, 4>;
  CHECK(moeref::philox4x32_10({0, 0, 0, 0}, {0, 0}) == Block{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
  CHECK(moeref::philox4x32_10({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {0xffffffffu, 0xffffffffu}) ==
        Block{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
  CHECK(moeref::philox4x32_10({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u}) ==
        Block{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
}

TEST_CASE("stream_id is 32-bit FNV-1a of the input name", "[ops][rng]") {
  // FNV-1a 32 reference values: offset basis for "", and the published "a" and "foobar".
  CHECK(moeref::stream_id("") == 0x811c9dc5u);
  CHECK(moeref::stream_id("a") == 0xe40c292cu);
  CHECK(moeref::stream_id("foobar") == 0xbf9cf968u);
}

TEST_CASE("uniform_01 is 24 bits of one Philox word, at least 0 and below 1", "[ops][rng]") {
  // rng.hpp: element i is word (i mod 4) of the block at counter (b_lo, b_hi, stream, 0),
  // b = i div 4, key (seed_lo, seed_hi); value (word >> 8) * 2^-24. Recomputed here from
  // the block function.
  const uint64_t seed = 0x0000000500000007ull;
  const uint32_t stream = moeref::stream_id("x");
  for (uint64_t index :
       {uint64_t{0}, uint64_t{1}, uint64_t{2}, uint64_t{3}, uint64_t{4}, uint64_t{77}, (uint64_t{3} << 34) + 9}) {
    const uint64_t b = index / 4;
    const std::array<uint32_t, 4> block =
        moeref::philox4x32_10({static_cast<uint32_t>(b), static_cast<uint32_t>(b >> 32), stream, 0u}, {7u, 5u});
    const double expected = static_cast<double>(block[index % 4] >> 8) / 16777216.0;
    const float got = moeref::uniform_01(seed, stream, index);
    INFO("index " << index);
    CHECK(static_cast<double>(got) == expected);
    CHECK(got >= 0.0f);
    CHECK(got < 1.0f);
    CHECK(moeref::uniform_01_block(seed, stream, b)[index % 4] == got);
  }
  // Counter (0,0,0,0) and key (0,0) give the first KAT block {0x6627e8d5, 0xe169c58d,
  // 0xbc57ac4c, 0x9b00dbd8}, so elements 0 and 1 of stream 0 with seed 0 are
  // 0x6627e8 / 2^24 and 0xe169c5 / 2^24.
  CHECK(static_cast<double>(moeref::uniform_01(0, 0, 0)) == static_cast<double>(0x6627e8) / 16777216.0);
  CHECK(static_cast<double>(moeref::uniform_01(0, 0, 1)) == static_cast<double>(0xe169c5) / 16777216.0);
  // uniform_range maps u to lo + (hi - lo) * u: with u = 0x6627e8 / 2^24 and [-1, 1).
  CHECK(static_cast<double>(moeref::uniform_range(0, 0, 0, -1.0, 1.0)) ==
        Approx(-1.0 + 2.0 * static_cast<double>(0x6627e8) / 16777216.0).epsilon(1e-7));
}
