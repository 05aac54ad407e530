// The float32 default bounds of the checker (spec/trace-format.md, "Tolerances"):
// one explicit table that says, for every float step moeref records, what kind of
// computation it is, and the bound each kind gets, computed per element from the
// golden's own values and propagated along the steps' "reads".
//
// Dims as everywhere: G groups, S group size, E experts, C capacity, M model,
// H hidden, N output, K choices (spec/notation.md).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "moeref/trace.hpp"

namespace moeref {

// What a step computes from its reads, as far as its float32 error goes. Each kind
// names how the step's own rounding (N ulps of the golden value, or a sum's
// gamma_n) and its reads' bounds combine (spec/trace-format.md has the formulas).
enum class BoundKind {
  kExact,         // a copy, reshape, selection, mask or scatter: no rounding of its own
  kDecision,      // a float that is a discrete function of its reads (a threshold): exact
  kArith,         // a sum or difference of its reads (coefficients <= 1): N ulp + sum of the reads' bounds
  kScaled,        // a product of its reads and constants, elementwise: N ulp + |value / read| x read's bound
  kRatio,         // products, quotients and sums of positive reads: relative errors add
  kSum,           // a sum over dims (mean, norm, loss) of same-sign terms: relative, with gamma_n
  kSumOfSquares,  // the same, of its first read squared (z-losses)
  kSumEntropy,    // the same, of -p log(p + eps) (mtf's entropy)
  kNormalize,     // a value divided by its row sum (mtf's `normalized`)
  kSoftmax,       // exp(x - max) / sum over a dim: relative, absolute errors of the logits count twice
  kLogSumExp,     // log sum exp over a dim: absolute
  kSquare,        // x^2 elementwise
  kGumbel,        // -log(-log(u))
  kAffine,        // a + c * b, c a constant (noise added to logits)
  kRmsNorm,       // x / |x| * sqrt(M) * gamma over the last dim
  kGeglu,         // gelu(gate) * x * mult_bias
  kCastBfloat16,  // a float32 value rounded to bfloat16 and back
  // The router's einsum, which the golden sums in double and rounds once (notation.md):
  // gamma_n * sum |a_k b_k| + 1 ulp, plus what the operands' bounds move it by.
  kRouterProduct,
  // An einsum of two reads that the golden computes as a float32 GEMM too:
  // 2 gamma_n * sum |a_k b_k|, plus what the operands' bounds move it by.
  kProduct,
  kProductActivation,  // the same, then an activation (or several factors multiplied: GLU)
  kWeightedSum,        // sum_j w_j * v[selected]: a combine from the index form
};

const char* bound_kind_name(BoundKind kind);

// One row of the table: the steps called `step` in the listed variants.
struct StepRule {
  const char* variants;  // comma-separated variant ids; "" for every variant without a row of its own
  const char* step;
  BoundKind kind;
  int ulps;              // N: roundings of the step's own, in ulps of the golden value
  const char* dims;      // kProduct*: the contracted dims; kSoftmax, kLogSumExp, kNormalize: the dim
                         // normalised over ("" for the last)
  const char* gathered;  // kProduct*: dims a token's expert index selects (the largest term counts)
};

// A loss: computed from the named steps (comma-separated) by `kind`. A loss with no
// row of its own equals the scalar step of the same name.
struct LossRule {
  const char* variants;
  const char* loss;
  const char* reads;  // "" for a constant the source returns (an absent loss term, 0)
  BoundKind kind;     // kExact, kRatio, kSum or kSumOfSquares
  int ulps;
  const char* unless_step;  // the row does not apply when the golden has this step ("" for none)
};

const std::vector<StepRule>& float32_step_rules();
const std::vector<LossRule>& float32_loss_rules();
// The row for step `step` of `variant`: its own row, else the row for every variant.
const StepRule* find_step_rule(const std::string& variant, const std::string& step);
const LossRule* find_loss_rule(const std::string& variant, const std::string& loss, const Trace& golden);
// True when some row makes `step` a matrix product (the bfloat16 defaults' wider column).
bool is_product_step(const std::string& step);

// The constants of the float32 defaults (spec/trace-format.md, "Tolerances").
inline constexpr double kUnitRoundoff = 1.0 / 16777216.0;  // u = 2^-24
// The largest slope of every expert activation moeref implements (gelu's, 1.129).
inline constexpr double kActivationSlope = 1.13;
// An activation's own error: a float32 libm call against one computed in double.
inline constexpr int kActivationUlps = 3;
// Bounds never go below the smallest normal float32: a backend that flushes
// subnormal results to zero passes.
inline constexpr double kBoundFloor = 1.1754943508222875e-38;

// gamma_n = n u / (1 - n u): the relative error bound of a float32 sum of n terms
// in any order (infinite when n u >= 1).
double gamma_n(int64_t n);
// The spacing of float32 numbers at |value| (one ulp).
double ulp_of(float value);

// The bound of every element of one float step or loss of `golden`.
struct Float32Bound {
  std::vector<double> bound;  // per element, flat
  std::string rule;           // how it was found, for reports
};

// Float32 defaults for the steps and losses of one golden, computed on demand
// (a step's bound needs the bounds of what it reads) and kept until every step that
// reads it has its own (a large trace's bounds are hundreds of MB; a bound asked for
// again after that is computed again, to the same bits).
class Float32Bounds {
 public:
  explicit Float32Bounds(const Trace& golden);
  // nullopt when the table does not classify the step (or loss): the caller falls
  // back to the atol/rtol defaults.
  std::optional<Float32Bound> step(const std::string& name);
  // The same bound without a copy (nullptr where step() gives nullopt), kept as long as
  // the pointer is.
  std::shared_ptr<const Float32Bound> shared_step(const std::string& name);
  std::optional<Float32Bound> loss(const std::string& name);
  const Trace& golden() const { return golden_; }

 private:
  using BoundHeld = std::shared_ptr<const Float32Bound>;
  // The bound of a read (a step, an input or an int32 step); a step's is added to `held`.
  const std::vector<double>* bound_of(const std::string& read, std::vector<BoundHeld>& held);
  std::optional<Float32Bound> compute_step(const std::string& name);
  // Forgets the bounds of the steps `name` reads that no other step still needs.
  void release_reads_of(const std::string& name);

  const Trace& golden_;
  std::string variant_;
  std::map<std::string, std::shared_ptr<const Float32Bound>> steps_;  // nullptr: not classified
  std::map<std::string, std::vector<double>> zeros_;  // reads the table does not classify: their atol/rtol
  std::map<std::string, int> readers_left_;           // step -> steps reading it whose bounds are not made yet
  std::set<std::string> kept_for_losses_;             // steps a loss may read: never released
  std::set<std::string> counted_;                     // steps whose reads were counted down
};

}  // namespace moeref
