// The float32 default bounds pinned from both sides, one kind at a time
// (spec/trace-format.md, "Tolerances"). Each case restates its kind's formula here,
// independently of src/check/step_bounds.cpp, from the golden's values and the bounds of
// what the step reads, and checks that
//   1. the checker's bound is that number at every element (a bound made 10x wider, or
//      narrower, fails here), and
//   2. a candidate that moves one element to the last float32 within the bound passes,
//      and one float32 further fails, at that step.
// The bfloat16 defaults and the float32 atol/rtol fallback are pinned the same way.
//
// Dims: G groups, S group size, E experts, C capacity, M model, H hidden, N output.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "moeref/check.hpp"
#include "moeref/step_bounds.hpp"
#include "test_support.hpp"

using moeref::Tensor;
using moeref::Trace;
using moeref::testing::mutable_step;

namespace {

namespace fs = std::filesystem;

constexpr double u = 1.0 / 16777216.0;  // 2^-24
constexpr double kSlope = 1.13;         // the largest slope of the expert activations

double gamma_n(double n) { return n * u / (1.0 - n * u); }

double ulp(float value) {
  const float a = std::fabs(value);
  return static_cast<double>(std::nextafter(a, std::numeric_limits<float>::infinity())) - static_cast<double>(a);
}

// The first golden of `variant` with a step `step` whose reads satisfy `wanted`.
Trace golden_with(
    const std::string& variant, const std::string& step,
    const std::function<bool(const Trace&)>& wanted = [](const Trace&) { return true; }) {
  std::vector<fs::path> paths;
  for (const fs::directory_entry& file : fs::directory_iterator(fs::path(MOEREF_SOURCE_DIR) / "golden" / variant)) {
    if (file.path().string().find(".trace.json") != std::string::npos) paths.push_back(file.path());
  }
  std::sort(paths.begin(), paths.end());
  for (const fs::path& path : paths) {
    Trace trace = moeref::read_trace_file(path.string());
    if (trace.find_step(step) != nullptr && wanted(trace)) return trace;
  }
  FAIL("no golden of " << variant << " has " << step);
  throw std::logic_error("unreachable");
}

const Tensor& step(const Trace& trace, const std::string& name) { return moeref::testing::step(trace, name); }

// The checker's bound of every element of a step (or a loss) of `golden`.
std::vector<double> bound_of(const Trace& golden, const std::string& name, bool loss = false) {
  moeref::Float32Bounds bounds(golden);
  const std::optional<moeref::Float32Bound> found = loss ? bounds.loss(name) : bounds.step(name);
  INFO(name);
  REQUIRE(found.has_value());
  return found->bound;
}

double value(const Tensor& tensor, int64_t i) {
  return tensor.dtype == moeref::DType::kFloat32 ? static_cast<double>(tensor.f32[static_cast<size_t>(i)])
                                                 : static_cast<double>(tensor.i32[static_cast<size_t>(i)]);
}

// The last float32 at or above `expected` within `bound` of it.
float last_within(float expected, double bound) {
  float a = static_cast<float>(static_cast<double>(expected) + bound);
  while (static_cast<double>(a) - static_cast<double>(expected) > bound) a = std::nextafter(a, -INFINITY);
  while (static_cast<double>(std::nextafter(a, INFINITY)) - static_cast<double>(expected) <= bound) {
    a = std::nextafter(a, INFINITY);
  }
  return a;
}

// Checks the checker's bound against `expected` at every element, then moves the element
// with the largest bound (in ulps) to the edge: inside passes, one float32 further fails.
void pin(const Trace& golden, const std::string& name, const std::vector<double>& expected, bool loss = false) {
  const std::vector<double> actual = bound_of(golden, name, loss);
  REQUIRE(actual.size() == expected.size());
  const Tensor one = loss ? Tensor::scalar(moeref::testing::loss(golden, name)) : step(golden, name);
  size_t at = 0;
  double most = -1.0;
  for (size_t i = 0; i < actual.size(); ++i) {
    INFO(name << " element " << one.named_index(static_cast<int64_t>(i)) << " value " << one.f32[i]);
    const double want = std::max(expected[i], moeref::kBoundFloor);
    CHECK(actual[i] == Approx(want).epsilon(1e-9));
    const double in_ulps = want / ulp(one.f32[i]);
    if (std::isfinite(one.f32[i]) && in_ulps > most) {
      most = in_ulps;
      at = i;
    }
  }
  const float e = one.f32[at];
  const float inside = last_within(e, std::max(expected[at], moeref::kBoundFloor));
  const float outside = std::nextafter(inside, INFINITY);
  for (const float moved : {inside, outside}) {
    Trace candidate = golden;
    if (loss) {
      for (auto& [loss_name, loss_value] : candidate.losses) {
        if (loss_name == name) loss_value = moved;
      }
    } else {
      mutable_step(candidate, name).f32[at] = moved;
    }
    const moeref::CheckReport report = moeref::compare_traces(golden, candidate, moeref::CheckOptions{});
    INFO(name << one.named_index(static_cast<int64_t>(at)) << ": expected " << e << ", candidate " << moved
              << ", bound " << expected[at] << "\n"
              << report.to_text());
    CHECK(report.pass == (moved == inside));
    if (!loss && moved == outside) CHECK(report.first_divergent_step == name);
  }
}

// For each element of `out`, the elements of `read` that agree with it on their shared dims.
std::vector<std::vector<int64_t>> fibres(const Tensor& out, const Tensor& read) {
  std::vector<std::vector<int64_t>> result(static_cast<size_t>(out.num_elements()));
  for (int64_t k = 0; k < read.num_elements(); ++k) {
    const std::vector<int64_t> at = read.unravel(k);
    for (int64_t i = 0; i < out.num_elements(); ++i) {
      const std::vector<int64_t> here = out.unravel(i);
      bool agrees = true;
      for (size_t d = 0; d < out.dims.size(); ++d) {
        for (size_t r = 0; r < read.dims.size(); ++r) {
          if (read.dims[r] == out.dims[d] && read.shape[r] == out.shape[d] && at[r] != here[d]) agrees = false;
        }
      }
      if (agrees) result[static_cast<size_t>(i)].push_back(k);
    }
  }
  return result;
}

double largest(const std::vector<double>& values, const std::vector<int64_t>& at) {
  double most = 0.0;
  for (int64_t k : at) most = std::max(most, values[static_cast<size_t>(k)]);
  return most;
}

const Trace& tiny() { return moeref::testing::tiny_mtf_top2_layer_trace(); }

int64_t extent(const Tensor& tensor, const std::string& dim) { return tensor.dim_size(dim); }

}  // namespace

TEST_CASE("bounds: the router's product is gamma_n sum_k |a_k b_k| + 1 ulp from the golden's operands",
          "[check][bounds]") {
  // logits [G, S, E] = inputs [G, S, M] . router_weights [M, E]; both exact, n = M. The golden
  // sums in double and rounds once (1 ulp covers that and a bias); a float32 sum in any order is
  // within gamma_n sum_k |a_k b_k| of the exact one.
  const Trace& golden = tiny();
  const Tensor& x = step(golden, "inputs");
  const Tensor& w = *golden.find_input("router_weights");
  const Tensor& logits = step(golden, "logits");
  const int64_t M = extent(x, "M"), E = extent(w, "E");
  std::vector<double> expected;
  for (int64_t i = 0; i < logits.num_elements(); ++i) {
    const int64_t token = i / E, e = i % E;
    double sum = 0.0;
    for (int64_t m = 0; m < M; ++m) sum += std::fabs(value(x, token * M + m) * value(w, m * E + e));
    expected.push_back(gamma_n(static_cast<double>(M)) * sum + ulp(logits.f32[static_cast<size_t>(i)]));
  }
  pin(golden, "logits", expected);
}

// outputs [G, S, N] = sum_{e,c} expert_outputs [E, G, C, N] combine_tensor [G, S, E, C]: the golden's
// float32 GEMM and the candidate's are each within gamma_n sum_k |a_k b_k| of the exact sum, plus
// what both operands' bounds move it by; the sums in double.
std::vector<double> expected_outputs_bounds(const Trace& golden) {
  const Tensor& eo = step(golden, "expert_outputs");
  const Tensor& combine = step(golden, "combine_tensor");
  const std::vector<double> d_eo = bound_of(golden, "expert_outputs");
  const std::vector<double> d_combine = bound_of(golden, "combine_tensor");
  const int64_t E = extent(eo, "E"), G = extent(eo, "G"), C = extent(eo, "C"), N = extent(eo, "N"),
                S = extent(combine, "S");
  std::vector<double> expected;
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t s = 0; s < S; ++s) {
      for (int64_t n = 0; n < N; ++n) {
        double sum = 0.0, moved = 0.0;
        for (int64_t e = 0; e < E; ++e) {
          for (int64_t c = 0; c < C; ++c) {
            const int64_t a = ((e * G + g) * C + c) * N + n, b = ((g * S + s) * E + e) * C + c;
            sum += std::fabs(value(eo, a) * value(combine, b));
            moved += d_eo[static_cast<size_t>(a)] * std::fabs(value(combine, b)) +
                     std::fabs(value(eo, a)) * d_combine[static_cast<size_t>(b)];
          }
        }
        expected.push_back(2.0 * gamma_n(static_cast<double>(E * C)) * sum + moved);
      }
    }
  }
  return expected;
}

TEST_CASE("bounds: a GEMM is 2 gamma_n sum_k |a_k b_k| plus what its operands' bounds move it by", "[check][bounds]") {
  const std::vector<double> expected = expected_outputs_bounds(tiny());
  REQUIRE(expected.size() == static_cast<size_t>(step(tiny(), "outputs").num_elements()));
  pin(tiny(), "outputs", expected);
}

// A large product's bound from the float path against the same formula summed in double:
// never below it, at most `widest` times it, and above it somewhere (the path was taken).
void check_float_path_bounds(const Trace& golden, const std::string& name, const std::vector<double>& expected,
                             int64_t depth) {
  const std::vector<double> actual = bound_of(golden, name);
  REQUIRE(actual.size() == expected.size());
  const Tensor& out = step(golden, name);
  const double widest = 1.0 + 2.0 * static_cast<double>(depth + 1) * u;
  int64_t wider = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double want = std::max(expected[i], moeref::kBoundFloor);
    INFO(name << " element " << out.named_index(static_cast<int64_t>(i)));
    CHECK(actual[i] >= want * (1.0 - 1e-12));
    CHECK(actual[i] <= want * widest);
    wider += actual[i] > want * (1.0 + 1e-9) ? 1 : 0;
  }
  CHECK(wider > 0);  // the float path was taken: the double sums would match to the last bits
}

// expert_hidden [E, G, C, H] = act(expert_inputs [E, G, C, M] . wi [E, M, H]): the bound of
// every element, slope 1.13 times the product's bound plus 3 ulp, with the sums in double.
std::vector<double> expected_hidden_bounds(const Trace& golden) {
  const Tensor& a = step(golden, "expert_inputs");
  const Tensor& w = *golden.find_input("wi");
  const Tensor& h = step(golden, "expert_hidden");
  const std::vector<double> d_a = bound_of(golden, "expert_inputs");
  const int64_t E = extent(a, "E"), GC = extent(a, "G") * extent(a, "C"), M = extent(a, "M"), H = extent(w, "H");
  std::vector<double> expected;
  for (int64_t e = 0; e < E; ++e) {
    for (int64_t t = 0; t < GC; ++t) {
      for (int64_t j = 0; j < H; ++j) {
        double sum = 0.0, moved = 0.0;
        for (int64_t m = 0; m < M; ++m) {
          const int64_t ka = (e * GC + t) * M + m, kw = (e * M + m) * H + j;
          sum += std::fabs(value(a, ka) * value(w, kw));
          moved += d_a[static_cast<size_t>(ka)] * std::fabs(value(w, kw));
        }
        const int64_t i = (e * GC + t) * H + j;
        expected.push_back(kSlope * (2.0 * gamma_n(static_cast<double>(M)) * sum + moved) +
                           3.0 * ulp(h.f32[static_cast<size_t>(i)]));
      }
    }
  }
  return expected;
}

TEST_CASE("bounds: a product then an activation: slope 1.13 times the product's bound, plus 3 ulp", "[check][bounds]") {
  pin(tiny(), "expert_hidden", expected_hidden_bounds(tiny()));
}

TEST_CASE(
    "bounds: a large product's sums come from float32 rounded up: never below the double sums, at most "
    "(K + 1) 2^-24 above",
    "[check][bounds]") {
  // 128 slots x 256 x 1024 per expert: past the 2^24 multiply-adds where the checker
  // sums |a| |b| with ops::matmul in float32 instead of in double.
  const Trace golden = moeref::testing::run_json({{"variant", "mtf_top2"},
                                                  {"train", false},
                                                  {"seed", 3},
                                                  {"dims", {{"G", 1}, {"S", 128}, {"E", 2}, {"M", 256}, {"H", 1024}}},
                                                  {"hparams", {{"group_size", 128}}}});
  const Tensor& a = step(golden, "expert_inputs");
  const Tensor& h = step(golden, "expert_hidden");
  const int64_t M = extent(a, "M");
  REQUIRE(static_cast<double>(extent(a, "G") * extent(a, "C") * M * extent(h, "H")) >= 16777216.0);
  check_float_path_bounds(golden, "expert_hidden", expected_hidden_bounds(golden), M);
}

namespace {

// One group of 256 tokens, 4 experts, M = 256: its dispatch, combine and expert_inputs
// products pass the 2^24 multiply-adds from which bounds are summed in float32.
Trace float_path_layer() {
  return moeref::testing::run_json({{"variant", "mtf_top2"},
                                    {"train", false},
                                    {"seed", 4},
                                    {"dims", {{"G", 1}, {"S", 256}, {"E", 4}, {"M", 256}, {"H", 64}}},
                                    {"hparams", {{"group_size", 256}}}});
}

}  // namespace

TEST_CASE("bounds: a large combine product takes the float path with the sparse operand first, both bounds moving it",
          "[check][bounds]") {
  // outputs = expert_outputs . combine_tensor per group: 256 x 512 x 256 multiply-adds, with
  // the one-hot-like combine tensor the mostly-zero operand (computed transposed) and both
  // operands carrying bounds (|a| db and da |b| both summed).
  const Trace golden = float_path_layer();
  const Tensor& eo = step(golden, "expert_outputs");
  const int64_t K = extent(eo, "E") * extent(eo, "C");
  REQUIRE(static_cast<double>(extent(eo, "N") * K * 256) >= 16777216.0);
  // The combine tensor's exact zeros hold the floor bound: the float path leaves those out
  // of its products and adds kBoundFloor times the sums of |expert_outputs| instead.
  const std::vector<double> d_combine = bound_of(golden, "combine_tensor");
  CHECK(std::count(d_combine.begin(), d_combine.end(), moeref::kBoundFloor) > 0);
  check_float_path_bounds(golden, "outputs", expected_outputs_bounds(golden), K);
}

// expert_inputs [E, G, C, M] = sum_s inputs [G, S, M] dispatch_tensor [G, S, E, C]: the float
// path folds 2 gamma_S |x| + dx into one operand (dispatch is exact), and every dx here is the
// floor, left out of the product and added as kBoundFloor sum_s |dispatch|.
TEST_CASE("bounds: a large product with one operand's bounds all at the floor: never below the double sums",
          "[check][bounds]") {
  const Trace golden = float_path_layer();
  const Tensor& x = step(golden, "inputs");
  const Tensor& dispatch = step(golden, "dispatch_tensor");
  const Tensor& ei = step(golden, "expert_inputs");
  const std::vector<double> d_x = bound_of(golden, "inputs");
  REQUIRE(std::all_of(d_x.begin(), d_x.end(), [](double d) { return d == moeref::kBoundFloor; }));
  const int64_t G = extent(x, "G"), S = extent(x, "S"), M = extent(x, "M"), E = extent(dispatch, "E"),
                C = extent(dispatch, "C");
  REQUIRE(static_cast<double>(M * S * E * C) >= 16777216.0);
  std::vector<double> expected;
  for (int64_t e = 0; e < E; ++e) {
    for (int64_t g = 0; g < G; ++g) {
      for (int64_t c = 0; c < C; ++c) {
        for (int64_t m = 0; m < M; ++m) {
          double sum = 0.0, moved = 0.0;
          for (int64_t s = 0; s < S; ++s) {
            const int64_t kx = (g * S + s) * M + m, kd = ((g * S + s) * E + e) * C + c;
            sum += std::fabs(value(x, kx) * value(dispatch, kd));
            moved += d_x[static_cast<size_t>(kx)] * std::fabs(value(dispatch, kd));
          }
          expected.push_back(2.0 * gamma_n(static_cast<double>(S)) * sum + moved);
        }
      }
    }
  }
  REQUIRE(expected.size() == static_cast<size_t>(ei.num_elements()));
  check_float_path_bounds(golden, "expert_inputs", expected, S);
}

TEST_CASE("bounds: a step's bound is freed once every step reading it has its own, and made again to the same bits",
          "[check][bounds]") {
  moeref::Float32Bounds bounds(tiny());
  std::shared_ptr<const moeref::Float32Bound> first = bounds.shared_step("expert_hidden");
  REQUIRE(first != nullptr);
  const std::vector<double> first_bits = first->bound;
  const std::string first_rule = first->rule;
  const std::weak_ptr<const moeref::Float32Bound> watch = first;
  first.reset();
  CHECK(!watch.expired());  // the cache keeps it: expert_outputs, which reads it, has no bound yet
  REQUIRE(bounds.shared_step("expert_outputs") != nullptr);
  CHECK(watch.expired());  // its only reader has its bound now: freed
  // Asked for again, a freed bound is computed again, to the same bits.
  const std::shared_ptr<const moeref::Float32Bound> again = bounds.shared_step("expert_hidden");
  REQUIRE(again != nullptr);
  CHECK(again->bound == first_bits);
  CHECK(again->rule == first_rule);
}

TEST_CASE("bounds: a step made again does not count twice as a reader of what it reads", "[check][bounds]") {
  moeref::Float32Bounds bounds(tiny());
  const std::weak_ptr<const moeref::Float32Bound> inputs_bound = bounds.shared_step("inputs");
  REQUIRE(!inputs_bound.expired());  // read by logits and by expert_inputs
  REQUIRE(bounds.shared_step("logits") != nullptr);
  REQUIRE(bounds.shared_step("raw_gates") != nullptr);  // logits' only reader: logits is freed
  REQUIRE(bounds.shared_step("logits") != nullptr);     // made again
  CHECK(!inputs_bound.expired());                       // expert_inputs, its other reader, has no bound yet
  REQUIRE(bounds.shared_step("expert_inputs") != nullptr);
  CHECK(inputs_bound.expired());
}

TEST_CASE("bounds: GLU experts multiply one activated factor per weight", "[check][bounds]") {
  // expert_hidden = act(x . wi_0) * (x . wi_1): sum_j 1.13 pre_j prod_{k != j} (|p_k| + pre_k + 1) + 6 ulp.
  const Trace golden = golden_with("mtf_top2", "expert_hidden",
                                   [](const Trace& trace) { return trace.reads.at("expert_hidden").size() == 3; });
  const Tensor& a = step(golden, "expert_inputs");
  const Tensor& w0 = *golden.find_input("wi_0");
  const Tensor& w1 = *golden.find_input("wi_1");
  const Tensor& h = step(golden, "expert_hidden");
  const std::vector<double> d_a = bound_of(golden, "expert_inputs");
  const int64_t E = extent(a, "E"), GC = extent(a, "G") * extent(a, "C"), M = extent(a, "M"), H = extent(w0, "H");
  std::vector<double> expected;
  for (int64_t e = 0; e < E; ++e) {
    for (int64_t t = 0; t < GC; ++t) {
      for (int64_t j = 0; j < H; ++j) {
        double pre[2], p[2];
        const Tensor* weights[2] = {&w0, &w1};
        for (int f = 0; f < 2; ++f) {
          double sum = 0.0, moved = 0.0, signed_sum = 0.0;
          for (int64_t m = 0; m < M; ++m) {
            const int64_t ka = (e * GC + t) * M + m, kw = (e * M + m) * H + j;
            sum += std::fabs(value(a, ka) * value(*weights[f], kw));
            signed_sum += value(a, ka) * value(*weights[f], kw);
            moved += d_a[static_cast<size_t>(ka)] * std::fabs(value(*weights[f], kw));
          }
          pre[f] = 2.0 * gamma_n(static_cast<double>(M)) * sum + moved;
          p[f] = signed_sum;
        }
        const int64_t i = (e * GC + t) * H + j;
        expected.push_back(kSlope * pre[0] * (std::fabs(p[1]) + pre[1] + 1.0) +
                           kSlope * pre[1] * (std::fabs(p[0]) + pre[0] + 1.0) +
                           6.0 * ulp(h.f32[static_cast<size_t>(i)]));
      }
    }
  }
  pin(golden, "expert_hidden", expected);
}

TEST_CASE("bounds: softmax is (4 + E) ulp + u (|ln p| + ln E) p + 2 p x the row's largest logit bound",
          "[check][bounds]") {
  const Trace& golden = tiny();
  const Tensor& p = step(golden, "raw_gates");
  const std::vector<double> d_logits = bound_of(golden, "logits");
  const int64_t E = extent(p, "E");
  std::vector<double> expected;
  for (int64_t i = 0; i < p.num_elements(); ++i) {
    const double v = value(p, i);
    double row = 0.0;
    for (int64_t e = 0; e < E; ++e) row = std::max(row, d_logits[static_cast<size_t>(i / E * E + e)]);
    expected.push_back(static_cast<double>(4 + E) * ulp(p.f32[static_cast<size_t>(i)]) +
                       u * (std::fabs(std::log(v)) + std::log(static_cast<double>(E))) * v + 2.0 * v * row);
  }
  pin(golden, "raw_gates", expected);
}

TEST_CASE("bounds: a selection is exact: the bound of the value it selected", "[check][bounds]") {
  // gate_1 [G, S] = the top probability of raw_gates [G, S, E]: the bound of that element.
  const Trace& golden = tiny();
  const Tensor& p = step(golden, "raw_gates");
  const std::vector<double> d_p = bound_of(golden, "raw_gates");
  const Tensor& gate = step(golden, "gate_1");
  const int64_t E = extent(p, "E");
  std::vector<double> expected;
  for (int64_t t = 0; t < gate.num_elements(); ++t) {
    double selected = -1.0;
    for (int64_t e = 0; e < E; ++e) {
      if (p.f32[static_cast<size_t>(t * E + e)] == gate.f32[static_cast<size_t>(t)]) {
        selected = std::max(selected, d_p[static_cast<size_t>(t * E + e)]);
      }
    }
    REQUIRE(selected >= 0.0);
    expected.push_back(selected);
  }
  pin(golden, "gate_1", expected);
  // combine_tensor [G, S, E, C]: a gate at its slot carries that gate's bound only; every
  // other slot is an exact 0.
  const Tensor& combine = step(golden, "combine_tensor");
  const Tensor& g1 = step(golden, "gate_1_capacity");
  const Tensor& g2 = step(golden, "gate_2_capacity");
  const std::vector<double> d1 = bound_of(golden, "gate_1_capacity"), d2 = bound_of(golden, "gate_2_capacity");
  const int64_t EC = extent(combine, "E") * extent(combine, "C");
  std::vector<double> expected_combine;
  for (int64_t i = 0; i < combine.num_elements(); ++i) {
    const size_t t = static_cast<size_t>(i / EC);
    const float v = combine.f32[static_cast<size_t>(i)];
    double selected = v == 0.0f ? 0.0 : -1.0;
    if (v == g1.f32[t]) selected = std::max(selected, d1[t]);
    if (v == g2.f32[t]) selected = std::max(selected, d2[t]);
    REQUIRE(selected >= 0.0);
    expected_combine.push_back(selected);
  }
  pin(golden, "combine_tensor", expected_combine);
}

TEST_CASE(
    "bounds: a selected value that matches no read takes the largest bound it could come from, an unmatched 0 "
    "is exact",
    "[check][bounds]") {
  // gate_1 with one element negated (no probability of raw_gates is negative) and one set
  // to 0 (none is 0): the first takes the largest bound of its token's E probabilities,
  // the second, a masked value, is exact (the floor); the rest keep what they selected.
  Trace golden = tiny();
  const Tensor& p = step(golden, "raw_gates");
  const std::vector<double> d_p = bound_of(golden, "raw_gates");
  Tensor& gate = mutable_step(golden, "gate_1");
  REQUIRE(gate.num_elements() >= 3);
  gate.f32[0] = -gate.f32[0];
  gate.f32[1] = 0.0f;
  const int64_t E = extent(p, "E");
  std::vector<double> expected;
  for (int64_t t = 0; t < gate.num_elements(); ++t) {
    double selected = -1.0, largest = 0.0;
    for (int64_t e = 0; e < E; ++e) {
      const size_t k = static_cast<size_t>(t * E + e);
      largest = std::max(largest, d_p[k]);
      if (p.f32[k] == gate.f32[static_cast<size_t>(t)]) selected = std::max(selected, d_p[k]);
    }
    if (t < 2) REQUIRE(selected < 0.0);  // matches nothing
    expected.push_back(selected >= 0.0 ? selected : (gate.f32[static_cast<size_t>(t)] == 0.0f ? 0.0 : largest));
  }
  CHECK(expected[0] > moeref::kBoundFloor);
  const std::vector<double> actual = bound_of(golden, "gate_1");
  REQUIRE(actual.size() == expected.size());
  for (size_t i = 0; i < actual.size(); ++i) {
    INFO("gate_1 element " << i);
    CHECK(actual[i] == Approx(std::max(expected[i], moeref::kBoundFloor)).epsilon(1e-12));
  }
}

TEST_CASE("bounds: ratios add their reads' relative bounds, one ulp per operation", "[check][bounds]") {
  const Trace& golden = tiny();
  const Tensor& g1 = step(golden, "gate_1");
  const Tensor& g2 = step(golden, "gate_2");
  const Tensor& denom = step(golden, "denom");
  const Tensor& normalized = step(golden, "gate_1_normalized");
  const std::vector<double> d1 = bound_of(golden, "gate_1"), d2 = bound_of(golden, "gate_2"),
                            dd = bound_of(golden, "denom");
  std::vector<double> expected_denom, expected_normalized;
  for (int64_t t = 0; t < denom.num_elements(); ++t) {
    const size_t k = static_cast<size_t>(t);
    // denom = gate_1 + gate_2 + 1e-9: N = 1 (the epsilon), + 1 joining the two reads.
    auto rel = [](double bound, double v) { return v != 0.0 ? bound / std::fabs(v) : 0.0; };
    expected_denom.push_back(2.0 * ulp(denom.f32[k]) +
                             std::fabs(value(denom, t)) * (rel(d1[k], value(g1, t)) + rel(d2[k], value(g2, t))));
    // gate_1_normalized = gate_1 / denom: N = 0, + 1 for the division.
    expected_normalized.push_back(1.0 * ulp(normalized.f32[k]) +
                                  std::fabs(value(normalized, t)) *
                                      (rel(d1[k], value(g1, t)) + rel(dd[k], value(denom, t))));
  }
  pin(golden, "denom", expected_denom);
  pin(golden, "gate_1_normalized", expected_normalized);
}

TEST_CASE("bounds: a mean of same-sign terms is relative: gamma_n over its terms plus theirs", "[check][bounds]") {
  // density_1_proxy [G, E] = mean over S of raw_gates [G, S, E]: 1 ulp + |e| (gamma_S sum p + sum dp) / sum p.
  const Trace& golden = tiny();
  const Tensor& p = step(golden, "raw_gates");
  const Tensor& out = step(golden, "density_1_proxy");
  const std::vector<double> dp = bound_of(golden, "raw_gates");
  const int64_t S = extent(p, "S"), E = extent(p, "E");
  std::vector<double> expected;
  for (int64_t i = 0; i < out.num_elements(); ++i) {
    const int64_t g = i / E, e = i % E;
    double sum = 0.0, moved = 0.0;
    for (int64_t s = 0; s < S; ++s) {
      sum += value(p, (g * S + s) * E + e);
      moved += dp[static_cast<size_t>((g * S + s) * E + e)];
    }
    expected.push_back(ulp(out.f32[static_cast<size_t>(i)]) +
                       std::fabs(value(out, i)) * (gamma_n(static_cast<double>(S)) * sum + moved) / sum);
  }
  pin(golden, "density_1_proxy", expected);
  // loss_1 = mean over G, E of density_1_proxy * density_1 (* E^2): 3 ulp, gamma_{GE + 1}.
  const Tensor& dens = step(golden, "density_1");
  const std::vector<double> dd = bound_of(golden, "density_1");
  const std::vector<double> dprox = bound_of(golden, "density_1_proxy");
  double sum = 0.0, moved = 0.0;
  for (int64_t i = 0; i < out.num_elements(); ++i) {
    const size_t k = static_cast<size_t>(i);
    sum += value(out, i) * value(dens, i);
    moved += dprox[k] * std::fabs(value(dens, i)) + std::fabs(value(out, i)) * dd[k];
  }
  const Tensor& loss_1 = step(golden, "loss_1");
  pin(golden, "loss_1",
      std::vector<double>{3.0 * ulp(loss_1.f32[0]) +
                          std::fabs(value(loss_1, 0)) *
                              (gamma_n(static_cast<double>(out.num_elements() + 1)) * sum + moved) / sum});
}

TEST_CASE("bounds: counts made float are 2 ulp, differences and sums are N ulp plus their reads'", "[check][bounds]") {
  const Trace& golden = tiny();
  const Tensor& density = step(golden, "density_1");
  std::vector<double> expected;
  for (float v : density.f32) expected.push_back(2.0 * ulp(v));
  pin(golden, "density_1", expected);

  // jitter = lo + (hi - lo) u of an input draw: 2 ulp.
  const Trace jittered = golden_with("deepspeed_top1", "input_jittered");
  const Tensor& jitter = step(jittered, "jitter");
  std::vector<double> expected_jitter;
  for (float v : jitter.f32) expected_jitter.push_back(2.0 * ulp(v));
  pin(jittered, "jitter", expected_jitter);
  // input_jittered = inputs * jitter (inputs exact): 1 ulp + |value / jitter| x jitter's bound.
  const Tensor& x = step(jittered, "input_jittered");
  std::vector<double> expected_x;
  for (int64_t i = 0; i < x.num_elements(); ++i) {
    const size_t k = static_cast<size_t>(i);
    const double ratio = x.f32[k] == 0.0f ? 0.0 : std::fabs(value(x, i)) / std::fabs(value(jitter, i));
    expected_x.push_back(ulp(x.f32[k]) + ratio * expected_jitter[k]);
  }
  pin(jittered, "input_jittered", expected_x);
}

TEST_CASE("bounds: noise: gumbel 3 ulp + 6u, logits plus c times noise add both bounds", "[check][bounds]") {
  const Trace golden = golden_with("deepspeed_top2", "logits_noised");
  const Tensor& gumbel = step(golden, "gumbel");
  std::vector<double> expected_gumbel;
  for (float v : gumbel.f32) expected_gumbel.push_back(3.0 * ulp(v) + 6.0 * u);
  pin(golden, "gumbel", expected_gumbel);
  const Tensor& logits = step(golden, "logits");
  const Tensor& noised = step(golden, "logits_noised");
  const std::vector<double> d_logits = bound_of(golden, "logits");
  double c = 0.0;
  for (int64_t i = 0; i < noised.num_elements(); ++i) {
    c = std::max(c, std::fabs(value(noised, i) - value(logits, i)) / std::fabs(value(gumbel, i)));
  }
  CHECK(c == Approx(1.0).epsilon(1e-6));  // DeepSpeed adds the gumbel draw as it is
  std::vector<double> expected;
  for (int64_t i = 0; i < noised.num_elements(); ++i) {
    const size_t k = static_cast<size_t>(i);
    expected.push_back(2.0 * ulp(noised.f32[k]) + d_logits[k] + c * expected_gumbel[k]);
  }
  pin(golden, "logits_noised", expected);
}

TEST_CASE("bounds: log-sum-exp, its square and the mean of squares", "[check][bounds]") {
  const Trace golden = golden_with("hf_switch_top1", "log_z_squared");
  const Tensor& logits = step(golden, "logits");
  const Tensor& log_z = step(golden, "log_z");
  const Tensor& squared = step(golden, "log_z_squared");
  const std::vector<double> d_logits = bound_of(golden, "logits");
  const int64_t E = extent(logits, "E");
  std::vector<double> expected_z, expected_square;
  for (int64_t t = 0; t < log_z.num_elements(); ++t) {
    double row = 0.0;
    for (int64_t e = 0; e < E; ++e) row = std::max(row, d_logits[static_cast<size_t>(t * E + e)]);
    // log sum exp: 3 ulp + (E + 3) u + the row's largest logit bound.
    expected_z.push_back(3.0 * ulp(log_z.f32[static_cast<size_t>(t)]) + static_cast<double>(E + 3) * u + row);
    // z^2: 1 ulp + 2 |z| dz.
    expected_square.push_back(ulp(squared.f32[static_cast<size_t>(t)]) +
                              2.0 * std::fabs(value(log_z, t)) * expected_z.back());
  }
  pin(golden, "log_z", expected_z);
  pin(golden, "log_z_squared", expected_square);

  // flaxformer's router_z_loss = mean of log_z^2: 2 ulp + |e| (gamma_{n + 1} sum z^2 + sum 2 |z| dz) / sum z^2.
  const Trace flax = golden_with("flaxformer_tokens_choose", "router_z_loss");
  const Tensor& z = step(flax, "log_z");
  const std::vector<double> dz = bound_of(flax, "log_z");
  double sum = 0.0, moved = 0.0;
  for (int64_t t = 0; t < z.num_elements(); ++t) {
    sum += value(z, t) * value(z, t);
    moved += 2.0 * std::fabs(value(z, t)) * dz[static_cast<size_t>(t)];
  }
  const Tensor& loss = step(flax, "router_z_loss");
  pin(flax, "router_z_loss",
      std::vector<double>{2.0 * ulp(loss.f32[0]) +
                          std::fabs(value(loss, 0)) *
                              (gamma_n(static_cast<double>(z.num_elements() + 1)) * sum + moved) / sum});
}

TEST_CASE("bounds: entropy sums -p log(p + 1e-9) with (|log p| + 1) dp per term", "[check][bounds]") {
  const Trace golden = golden_with("mtf_switch", "entropy");
  const Tensor& p = step(golden, "raw_gates");
  const Tensor& entropy = step(golden, "entropy");
  const std::vector<double> dp = bound_of(golden, "raw_gates");
  const int64_t E = extent(p, "E");
  std::vector<double> expected;
  for (int64_t t = 0; t < entropy.num_elements(); ++t) {
    double sum = 0.0, sum_abs = 0.0, moved = 0.0;
    for (int64_t e = 0; e < E; ++e) {
      const double v = value(p, t * E + e), log_p = std::log(v + 1e-9);
      sum += -v * log_p;
      sum_abs += std::fabs(v * log_p);
      moved += (std::fabs(log_p) + 1.0) * dp[static_cast<size_t>(t * E + e)];
    }
    expected.push_back(ulp(entropy.f32[static_cast<size_t>(t)]) +
                       std::fabs(value(entropy, t)) * (gamma_n(static_cast<double>(E + 5)) * sum_abs + moved) /
                           std::fabs(sum));
  }
  pin(golden, "entropy", expected);
}

TEST_CASE("bounds: a row normalised by its sum: (1 + E) ulp + 2 |e| x the row's largest relative bound",
          "[check][bounds]") {
  const Trace golden = golden_with("mtf_top2", "normalized");
  const Tensor& x = step(golden, "gates_without_top_1");
  const Tensor& out = step(golden, "normalized");
  const std::vector<double> dx = bound_of(golden, "gates_without_top_1");
  const int64_t E = extent(x, "E");
  std::vector<double> expected;
  for (int64_t i = 0; i < out.num_elements(); ++i) {
    double rel = 0.0;
    for (int64_t e = 0; e < E; ++e) {
      const int64_t k = i / E * E + e;
      if (value(x, k) != 0.0) rel = std::max(rel, dx[static_cast<size_t>(k)] / std::fabs(value(x, k)));
    }
    expected.push_back(static_cast<double>(1 + E) * ulp(out.f32[static_cast<size_t>(i)]) +
                       2.0 * std::fabs(value(out, i)) * rel);
  }
  pin(golden, "normalized", expected);
}

TEST_CASE("bounds: stmoe's RMSNorm (5 + M/2) ulp and GEGLU 6 ulp plus their reads'", "[check][bounds]") {
  const Trace golden = golden_with("stmoe_topn", "moe_prenorm",
                                   [](const Trace& trace) { return trace.reads.at("moe_prenorm")[0] == "inputs.x"; });
  const Tensor& prenorm = step(golden, "moe_prenorm");
  const int64_t M = prenorm.shape.back();
  std::vector<double> expected;
  for (float v : prenorm.f32) expected.push_back(static_cast<double>(5 + (M + 1) / 2) * ulp(v));
  pin(golden, "moe_prenorm", expected);

  const Trace geglu = golden_with("stmoe_topn", "expert_geglu");
  const Tensor& x = step(geglu, "expert_hidden_x");
  const Tensor& gate = step(geglu, "expert_hidden_gate");
  const Tensor& bias = *geglu.find_input("expert_mult_bias");  // [E, H]
  const Tensor& out = step(geglu, "expert_geglu");             // [E, G, C, H]
  const std::vector<double> dx = bound_of(geglu, "expert_hidden_x"), dg = bound_of(geglu, "expert_hidden_gate");
  const int64_t GC = extent(out, "G") * extent(out, "C"), H = extent(out, "H");
  std::vector<double> expected_geglu;
  for (int64_t i = 0; i < out.num_elements(); ++i) {
    const size_t k = static_cast<size_t>(i);
    const int64_t e = i / (GC * H), h = i % H;
    const double g = value(gate, i), gelu = 0.5 * g * (1.0 + std::erf(g / std::sqrt(2.0)));
    expected_geglu.push_back(6.0 * ulp(out.f32[k]) +
                             std::fabs(value(bias, e * H + h)) *
                                 (std::fabs(value(x, i)) * kSlope * dg[k] + std::fabs(gelu) * dx[k]));
  }
  pin(geglu, "expert_geglu", expected_geglu);
}

TEST_CASE(
    "bounds: a bfloat16 cast adds one bfloat16 ulp where its read may move, a combine from the index "
    "form adds its terms'",
    "[check][bounds]") {
  const Trace golden = golden_with("flaxformer_experts_choose", "combine_array_dtype");
  const Tensor& out = step(golden, "combine_array_dtype");
  const std::vector<double> d_in = bound_of(golden, "combine_array");
  std::vector<double> expected;
  for (size_t k = 0; k < out.f32.size(); ++k)
    expected.push_back(d_in[k] + (d_in[k] > 0.0 ? ulp(out.f32[k]) * 65536.0 : 0.0));
  pin(golden, "combine_array_dtype", expected);

  // tutel's outputs [G, S, N] = sum_j gate_j [G, S] expert_outputs [E, G, C, N] at the token's slot j:
  // 2 gamma_{J+1} |v| |w_j| + dv |w_j| + |v| dw_j, v the largest over the slots (E, C).
  const Trace tutel = golden_with("tutel_topk", "outputs", [](const Trace& trace) {
    return trace.reads.at("outputs").size() > 5 && trace.find_step("gates_s_0_normalized") != nullptr &&
           std::count(trace.reads.at("outputs").begin(), trace.reads.at("outputs").end(), "gates_s_0_normalized");
  });
  const Tensor& v = step(tutel, "expert_outputs");
  const Tensor& result = step(tutel, "outputs");
  const std::vector<double> dv = bound_of(tutel, "expert_outputs");
  std::vector<std::string> gates;
  for (const std::string& read : tutel.reads.at("outputs")) {
    if (read.rfind("gates_s_", 0) == 0) gates.push_back(read);
  }
  REQUIRE(gates.size() >= 2);
  const std::vector<std::vector<int64_t>> slots = fibres(result, v);
  std::vector<double> expected_outputs(static_cast<size_t>(result.num_elements()), 0.0);
  std::vector<double> v_size(static_cast<size_t>(v.num_elements()));
  for (size_t k = 0; k < v_size.size(); ++k) v_size[k] = std::fabs(v.f32[k]);
  const int64_t N = extent(result, "N");
  for (const std::string& name : gates) {
    const Tensor& w = step(tutel, name);
    const std::vector<double> dw = bound_of(tutel, name);
    for (int64_t i = 0; i < result.num_elements(); ++i) {
      const size_t k = static_cast<size_t>(i);
      const double vs = largest(v_size, slots[k]), vd = largest(dv, slots[k]);
      const double ws = std::fabs(value(w, i / N)), wd = dw[static_cast<size_t>(i / N)];
      expected_outputs[k] += 2.0 * gamma_n(static_cast<double>(gates.size() + 1)) * vs * ws + vd * ws + vs * wd;
    }
  }
  pin(tutel, "outputs", expected_outputs);
}

TEST_CASE("bounds: a threshold on floats is exact, losses carry their steps' bounds", "[check][bounds]") {
  const Trace moe2d = golden_with("mtf_moe2d", "slot_importance");
  pin(moe2d, "slot_importance", std::vector<double>(step(moe2d, "slot_importance").f32.size(), 0.0));

  // mtf's loss = gating_loss * loss_coef: 1 ulp + |loss| x gating_loss's relative bound.
  const Trace& golden = tiny();
  const float loss = moeref::testing::loss(golden, "loss");
  const double d_gating = bound_of(golden, "gating_loss")[0];
  pin(golden, "loss",
      {ulp(loss) + std::fabs(static_cast<double>(loss)) * d_gating / std::fabs(value(step(golden, "gating_loss"), 0))},
      true);
  // gating_loss (the loss) is the scalar step of the same name.
  pin(golden, "gating_loss", {bound_of(golden, "gating_loss")[0]}, true);
  CHECK(bound_of(golden, "gating_loss", true) == bound_of(golden, "gating_loss"));
}

TEST_CASE("bounds: the bfloat16 defaults, elementwise and matrix products", "[check][bounds]") {
  // A candidate computed at bfloat16 keeps atol/rtol: elementwise atol 1e-3, rtol 1.6e-2;
  // matrix products atol 1e-2, rtol 3.2e-2. Each moved to just inside and just outside.
  const Trace& golden = tiny();
  for (const auto& [name, atol, rtol] :
       std::vector<std::tuple<std::string, double, double>>{{"raw_gates", 1e-3, 1.6e-2}, {"logits", 1e-2, 3.2e-2}}) {
    const Tensor& tensor = step(golden, name);
    // The element of largest magnitude: there rtol |e| is the larger of the two.
    size_t at = 0;
    for (size_t k = 0; k < tensor.f32.size(); ++k) {
      if (std::fabs(tensor.f32[k]) > std::fabs(tensor.f32[at])) at = k;
    }
    const double allowed = std::max(atol, rtol * std::fabs(static_cast<double>(tensor.f32[at])));
    INFO(name << " " << tensor.f32[at]);
    REQUIRE(rtol * std::fabs(static_cast<double>(tensor.f32[at])) > atol);
    const float inside = last_within(tensor.f32[at], allowed);
    for (const float moved : {inside, std::nextafter(inside, INFINITY)}) {
      Trace candidate = golden;
      candidate.check = {{"precision", "bfloat16"}};
      mutable_step(candidate, name).f32[at] = moved;
      const moeref::CheckReport report = moeref::compare_traces(golden, candidate, moeref::CheckOptions{});
      INFO(name << ": expected " << tensor.f32[at] << ", candidate " << moved << "\n" << report.to_text());
      CHECK(report.pass == (moved == inside));
    }
    // The atol side: a golden value of 0, where atol is the larger.
    Trace zeroed = golden;
    mutable_step(zeroed, name).f32[at] = 0.0f;
    const float inside_zero = last_within(0.0f, atol);
    for (const float moved : {inside_zero, std::nextafter(inside_zero, INFINITY)}) {
      Trace candidate = zeroed;
      candidate.check = {{"precision", "bfloat16"}};
      mutable_step(candidate, name).f32[at] = moved;
      CHECK(moeref::compare_traces(zeroed, candidate, moeref::CheckOptions{}).pass == (moved == inside_zero));
    }
  }
}

TEST_CASE("bounds: the report shows the bound next to each failing element", "[check][bounds]") {
  const Trace& golden = tiny();
  Trace candidate = golden;
  Tensor& p = mutable_step(candidate, "raw_gates");
  p.f32[4] = std::nextafter(p.f32[4], 2.0f);
  for (int i = 0; i < 40; ++i) p.f32[4] = std::nextafter(p.f32[4], 2.0f);  // 41 ulp up
  const moeref::CheckReport report = moeref::compare_traces(golden, candidate, moeref::CheckOptions{});
  REQUIRE_FALSE(report.pass);
  const double bound = bound_of(golden, "raw_gates")[4];
  const moeref::TensorResult* result = nullptr;
  for (const moeref::TensorResult& r : report.results) {
    if (r.name == "raw_gates") result = &r;
  }
  REQUIRE(result != nullptr);
  REQUIRE(result->first.has_value());
  CHECK(result->first->bound == Approx(bound));
  CHECK(result->first->ulps == Approx(41.0));
  CHECK(result->bound_used > 1.0);
  CHECK_THAT(result->tolerance, Catch::Contains("softmax over E"));
  const std::string text = report.to_text();
  CHECK_THAT(text, Catch::Contains("41 ulp; bound ") && Catch::Contains("tolerance: float32 softmax over E"));
  const nlohmann::json json = report.to_json();
  bool found = false;
  for (const nlohmann::json& item : json["tensors"]) {
    if (item["name"] != "raw_gates") continue;
    found = true;
    CHECK(item["first"]["bound"].get<double>() == Approx(bound));
    CHECK(item["first"]["ulps"].get<double>() == Approx(41.0));
    CHECK_THAT(item["tolerance"].get<std::string>(), Catch::Contains("softmax"));
  }
  CHECK(found);
}
