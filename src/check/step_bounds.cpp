// The float32 default bounds, per element, from the golden's own values
// (spec/trace-format.md, "Tolerances"). Each float step's bound is its own
// rounding (N ulps of the golden value, or gamma_n of a sum) plus what its reads'
// bounds can move it by, so a step never fails because an earlier step differed
// within its bound. The table of kinds is src/check/step_rules.cpp.

#include "moeref/step_bounds.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "moeref/ops/matmul.hpp"
#include "moeref/tolerance.hpp"

namespace moeref {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
// Elementwise loops over at least this many elements are shared among the threads.
constexpr int64_t kParallelElements = int64_t{1} << 16;
constexpr double u = kUnitRoundoff;

using Dims = std::vector<std::string>;
using Shape = std::vector<int64_t>;

// One tensor a step reads, with the bound of each of its elements.
struct Operand {
  std::string name;
  const Tensor* tensor = nullptr;
  const std::vector<double>* bound = nullptr;  // per element; not read when exact
  bool exact = false;                          // an input or an int32 step: every bound is 0
  Dims dims;    // the tensor's dims, with B and L read as G and S where the step has those
  Shape shape;  // its shape, with the tokens regrouped as the step groups them

  bool is_float() const { return tensor->dtype == DType::kFloat32; }
  double value(int64_t k) const {
    const size_t i = static_cast<size_t>(k);
    return tensor->dtype == DType::kFloat32 ? static_cast<double>(tensor->f32[i]) : static_cast<double>(tensor->i32[i]);
  }
  double error(int64_t k) const { return exact ? 0.0 : (*bound)[static_cast<size_t>(k)]; }
};

bool has(const Dims& dims, const std::string& dim) { return std::find(dims.begin(), dims.end(), dim) != dims.end(); }

int64_t extent_of(const Dims& dims, const Shape& shape, const std::string& dim) {
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] == dim) return shape[i];
  }
  return -1;
}

// A read recorded as [B, L, ...] (tokens before grouping) is read as [G, S, ...] when the
// step has no B or L, and a read whose leading [G, S] hold as many tokens as the step's [G, S]
// in another grouping (lingvo's ComputeGating regroups) takes the step's extents: the
// row-major layout of the tokens is the same.
void align(Operand& operand, const Tensor& out) {
  operand.dims = operand.tensor->dims;
  operand.shape = operand.tensor->shape;
  if (has(out.dims, "B") || has(out.dims, "L")) return;
  for (std::string& dim : operand.dims) {
    if (dim == "B") dim = "G";
    if (dim == "L") dim = "S";
  }
  if (!has(out.dims, "G") || !has(out.dims, "S")) return;
  const int64_t G = extent_of(out.dims, out.shape, "G"), S = extent_of(out.dims, out.shape, "S");
  if (operand.dims.size() >= 2 && operand.dims[0] == "G" && operand.dims[1] == "S" &&
      operand.shape[0] * operand.shape[1] == G * S) {
    operand.shape[0] = G;
    operand.shape[1] = S;
  }
}

Dims letters(const char* text) {
  Dims out;
  for (const char* p = text; *p != '\0'; ++p) out.push_back(std::string(1, *p));
  return out;
}

// The flat offsets into a tensor (dims `tdims`, shape `tshape`, row-major) of every
// assignment of the space `space` x `extents` in row-major order. A dim of the space
// the tensor lacks moves nothing; a tensor dim left out of the space stays at 0.
std::vector<int64_t> offsets_over(const Dims& space, const Shape& extents, const Dims& tdims, const Shape& tshape) {
  std::vector<int64_t> tstride(tdims.size(), 1);
  for (size_t i = tdims.size(); i-- > 1;) tstride[i - 1] = tstride[i] * tshape[i];
  std::vector<int64_t> stride(space.size(), 0);
  for (size_t d = 0; d < space.size(); ++d) {
    for (size_t i = 0; i < tdims.size(); ++i) {
      if (tdims[i] == space[d]) stride[d] = tstride[i];
    }
  }
  int64_t count = 1;
  for (int64_t extent : extents) count *= extent;
  std::vector<int64_t> offsets(static_cast<size_t>(std::max<int64_t>(count, 0)));
  std::vector<int64_t> coord(space.size(), 0);
  int64_t offset = 0;
  for (int64_t k = 0; k < count; ++k) {
    offsets[static_cast<size_t>(k)] = offset;
    for (size_t d = space.size(); d-- > 0;) {
      if (++coord[d] < extents[d]) {
        offset += stride[d];
        break;
      }
      offset -= stride[d] * (extents[d] - 1);
      coord[d] = 0;
    }
  }
  return offsets;
}

// An einsum's iteration: for output element i and loop assignment j, operand o sits at
// out_part[o][i] + loop_part[o][j].
struct Walk {
  int64_t n_out = 0;
  int64_t n_loop = 1;
  std::vector<std::vector<int64_t>> out_part;
  std::vector<std::vector<int64_t>> loop_part;
};

// nullopt when an operand has a dim that is neither the output's nor a loop dim, a
// loop dim no operand has, or two extents of one dim disagree. Without `offsets` only
// n_out and n_loop are filled (the offsets take 8 bytes per output element per operand).
std::optional<Walk> make_walk(const Tensor& out, const std::vector<const Operand*>& operands, const Dims& loop,
                              bool offsets = true) {
  Shape loop_extents;
  for (const std::string& dim : loop) {
    int64_t extent = -1;
    for (const Operand* operand : operands) {
      const int64_t here = extent_of(operand->dims, operand->shape, dim);
      if (here < 0) continue;
      if (extent >= 0 && here != extent) return std::nullopt;
      extent = here;
    }
    if (extent < 0 || has(out.dims, dim)) return std::nullopt;
    loop_extents.push_back(extent);
  }
  Walk walk;
  walk.n_out = out.num_elements();
  for (int64_t extent : loop_extents) walk.n_loop *= extent;
  for (const Operand* operand : operands) {
    for (size_t i = 0; i < operand->dims.size(); ++i) {
      const std::string& dim = operand->dims[i];
      const int64_t extent = operand->shape[i];
      if (has(out.dims, dim)) {
        if (extent_of(out.dims, out.shape, dim) != extent) return std::nullopt;
      } else if (!has(loop, dim)) {
        return std::nullopt;
      }
    }
    if (!offsets) continue;
    walk.out_part.push_back(offsets_over(out.dims, out.shape, operand->dims, operand->shape));
    walk.loop_part.push_back(offsets_over(loop, loop_extents, operand->dims, operand->shape));
  }
  return walk;
}

// For each output element, the largest of `per_element` (one value per element of
// `operand`) over the operand's elements that agree with it on their shared dims. A dim
// in `free` is not shared even when the output has it (the row of a softmax). Where
// the dims cannot be lined up, every output element gets the largest value overall.
std::vector<double> project_max(const Tensor& out, const Operand& operand, const std::vector<double>& per_element,
                                const Dims& free = {}) {
  const int64_t n_out = out.num_elements();
  Dims masked = operand.dims;  // the operand's dims as the output part sees them
  Dims loop;
  Shape loop_extents;
  bool lined_up = true;
  for (size_t i = 0; i < operand.dims.size(); ++i) {
    const std::string& dim = operand.dims[i];
    const bool shared = has(out.dims, dim) && !has(free, dim);
    if (shared && extent_of(out.dims, out.shape, dim) != operand.shape[i]) lined_up = false;
    if (!shared) {
      masked[i] = "";
      loop.push_back(dim);
      loop_extents.push_back(operand.shape[i]);
    }
  }
  if (!lined_up) {
    double largest = 0.0;
    for (double value : per_element) largest = std::max(largest, value);
    return std::vector<double>(static_cast<size_t>(n_out), largest);
  }
  const std::vector<int64_t> out_part = offsets_over(out.dims, out.shape, masked, operand.shape);
  const std::vector<int64_t> loop_part = offsets_over(loop, loop_extents, operand.dims, operand.shape);
  std::vector<double> result(static_cast<size_t>(n_out), 0.0);
  for (int64_t i = 0; i < n_out; ++i) {
    double largest = 0.0;
    for (int64_t offset : loop_part) {
      largest = std::max(largest, per_element[static_cast<size_t>(out_part[static_cast<size_t>(i)] + offset)]);
    }
    result[static_cast<size_t>(i)] = largest;
  }
  return result;
}

// project_max of the operand's own bounds: all zeros for an exact operand, which has no
// vector of bounds.
std::vector<double> project_bound(const Tensor& out, const Operand& operand, const Dims& free = {}) {
  if (operand.exact) return std::vector<double>(static_cast<size_t>(out.num_elements()), 0.0);
  return project_max(out, operand, *operand.bound, free);
}

// A selection (a gather, a mask, a scatter, a copy): each output element is one of the
// values its reads hold there, or an exact 0. Its bound is the bound of the read element
// it selected: the one holding the same value (the largest bound if several do). An
// element that matches no read value (a negated copy) takes the sum of the largest bounds
// it could have come from; a 0 that matches nothing was masked, and is exact.
std::vector<double> selection_bound(const Tensor& out, const std::vector<const Operand*>& reads) {
  const int64_t n_out = out.num_elements();
  // Exact reads (an input copied, a weight gathered) carry no error to select: every
  // element's bound is 0, whichever element it came from.
  if (std::all_of(reads.begin(), reads.end(), [](const Operand* read) { return read->exact; })) {
    return std::vector<double>(static_cast<size_t>(n_out), 0.0);
  }
  // Where each read's elements lie for output element k: out_part[k] + each of loop_part
  // (its dims the output lacks). A read whose dims begin the output's, with nothing to
  // loop over (a combine tensor's [G, S] gates under [G, S, E, C]), sits at k / inner and
  // needs no table; reads of the same dims and shape share one table (8 bytes an element).
  struct Placement {
    bool lined_up = true;
    int64_t inner = 0;  // > 0: at k / inner, no table
    std::vector<int64_t> out_part, loop_part;
  };
  auto place = [&](const Operand& read) {
    Placement placement;
    Dims masked = read.dims, loop;
    Shape loop_extents;
    for (size_t i = 0; i < read.dims.size(); ++i) {
      const bool shared = has(out.dims, read.dims[i]);
      if (shared && extent_of(out.dims, out.shape, read.dims[i]) != read.shape[i]) placement.lined_up = false;
      if (!shared) {
        masked[i] = "";
        loop.push_back(read.dims[i]);
        loop_extents.push_back(read.shape[i]);
      }
    }
    if (!placement.lined_up) return placement;
    // (Only where the output names each dim once: a hand-made [G, G, E] would map otherwise.)
    const bool distinct = std::all_of(out.dims.begin(), out.dims.end(), [&](const std::string& dim) {
      return std::count(out.dims.begin(), out.dims.end(), dim) == 1;
    });
    const bool prefix = loop.empty() && distinct && read.dims.size() <= out.dims.size() &&
                        std::equal(read.dims.begin(), read.dims.end(), out.dims.begin());
    if (prefix) {
      placement.inner = 1;
      for (size_t d = read.dims.size(); d < out.dims.size(); ++d) placement.inner *= out.shape[d];
      placement.loop_part = {0};
    } else {
      placement.out_part = offsets_over(out.dims, out.shape, masked, read.shape);
      placement.loop_part = offsets_over(loop, loop_extents, read.dims, read.shape);
    }
    return placement;
  };
  // visit(k, at) for each element `at` of the read that output element k could come from,
  // in parallel over k (each k is its own: the same bits on any thread count).
  auto for_each_source = [n_out](const Placement& placement, auto visit) {
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < n_out; ++k) {
      const int64_t base = placement.inner > 0 ? k / placement.inner : placement.out_part[static_cast<size_t>(k)];
      for (int64_t offset : placement.loop_part) visit(k, base + offset);
    }
  };
  // First the bound of the read element holding the same value: most elements have one
  // (and an unmatched 0 is exact), so the fallback below is made only when needed. Reads
  // of the same dims and shape, one after the other, share the last table.
  std::vector<double> matched(static_cast<size_t>(n_out), -1.0);
  Placement last;
  const Operand* last_read = nullptr;
  auto placement_of = [&](const Operand& read) -> const Placement& {
    const bool same = last_read != nullptr && last_read->dims == read.dims && last_read->shape == read.shape;
    if (!same) last = place(read);
    last_read = &read;
    return last;
  };
  for (const Operand* read : reads) {
    const Placement& placement = placement_of(*read);
    if (!placement.lined_up) continue;
    for_each_source(placement, [&](int64_t k, int64_t at) {
      if (read->value(at) == static_cast<double>(out.f32[static_cast<size_t>(k)]))
        matched[static_cast<size_t>(k)] = std::max(matched[static_cast<size_t>(k)], read->error(at));
    });
  }
  int64_t unmatched_count = 0;
#pragma omp parallel for schedule(static) reduction(+ : unmatched_count) if (n_out >= kParallelElements)
  for (int64_t k = 0; k < n_out; ++k) {
    unmatched_count += matched[static_cast<size_t>(k)] < 0.0 && out.f32[static_cast<size_t>(k)] != 0.0f ? 1 : 0;
  }
  const bool unmatched = unmatched_count > 0;
  std::vector<double> any;
  if (unmatched) {
    any.assign(static_cast<size_t>(n_out), 0.0);
    std::vector<double> largest(static_cast<size_t>(n_out));
    for (const Operand* read : reads) {
      const Placement& placement = placement_of(*read);
      if (!placement.lined_up) {
        largest = project_bound(out, *read);
      } else {
        // The largest bound over the elements it could come from.
        std::fill(largest.begin(), largest.end(), 0.0);
        for_each_source(placement, [&](int64_t k, int64_t at) {
          largest[static_cast<size_t>(k)] = std::max(largest[static_cast<size_t>(k)], read->error(at));
        });
      }
      for (size_t i = 0; i < any.size(); ++i) any[i] += largest[i];
    }
  }
  // Each element's bound replaces its own `matched` (read just before).
#pragma omp parallel for schedule(static) if (n_out >= kParallelElements)
  for (int64_t i = 0; i < n_out; ++i) {
    const size_t k = static_cast<size_t>(i);
    matched[k] = matched[k] >= 0.0 ? matched[k] : (out.f32[k] == 0.0f ? 0.0 : any[k]);
  }
  return matched;
}

std::vector<double> magnitudes(const Operand& operand) {
  std::vector<double> out(static_cast<size_t>(operand.tensor->num_elements()));
  for (size_t k = 0; k < out.size(); ++k) out[k] = std::fabs(operand.value(static_cast<int64_t>(k)));
  return out;
}

// Relative bounds: bound / |value| (0 where the value is 0).
std::vector<double> relative(const Operand& operand) {
  std::vector<double> out(static_cast<size_t>(operand.tensor->num_elements()), 0.0);
  for (size_t k = 0; k < out.size(); ++k) {
    const double value = std::fabs(operand.value(static_cast<int64_t>(k)));
    if (value > 0.0 && std::isfinite(value)) out[k] = operand.error(static_cast<int64_t>(k)) / value;
  }
  return out;
}

double ulps(const Tensor& out, int64_t i, double n) { return n * ulp_of(out.f32[static_cast<size_t>(i)]); }
double magnitude(const Tensor& out, int64_t i) {
  return std::fabs(static_cast<double>(out.f32[static_cast<size_t>(i)]));
}

std::string number_text(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.3g", value);
  return buffer;
}

// The dim a softmax, log-sum-exp or normalisation runs over: the row's `dims`, else the
// output's last dim (log-sum-exp: the read's dim the output lacks).
std::string axis_of(const StepRule& rule, const Tensor& out, const Operand& read) {
  if (rule.dims[0] != '\0') return std::string(1, rule.dims[0]);
  for (const std::string& dim : read.dims) {
    if (!has(out.dims, dim)) return dim;
  }
  return out.dims.empty() ? std::string() : out.dims.back();
}

// ---- The kinds --------------------------------------------------------------------

// Sum over dims of same-sign terms t_k (the product of the reads at k; or the first read
// squared times the rest; or -p log(p + 1e-9)): relative error
//   (gamma_{n + r} sum |t_k| + sum_k dt_k) / |sum_k t_k|,
// with n terms of r roundings each and dt_k what the reads' bounds move t_k by. The
// output is that sum scaled by a constant (a mean, a loss coefficient), so the
// relative error carries over.
std::optional<std::vector<double>> sum_bound(const Tensor& out, const std::vector<Operand>& reads, BoundKind kind,
                                             int n_ulps) {
  std::vector<const Operand*> operands;
  Dims loop;
  for (const Operand& read : reads) {
    operands.push_back(&read);
    for (const std::string& dim : read.dims) {
      if (!has(out.dims, dim) && !has(loop, dim)) loop.push_back(dim);
    }
  }
  if (operands.empty()) return std::vector<double>(static_cast<size_t>(out.num_elements()), 0.0);
  const std::optional<Walk> walk = make_walk(out, operands, loop);
  if (!walk) return std::nullopt;
  const int64_t rounds = kind == BoundKind::kSumEntropy     ? 5
                         : kind == BoundKind::kSumOfSquares ? static_cast<int64_t>(operands.size())
                                                            : static_cast<int64_t>(operands.size()) - 1;
  const double gamma = gamma_n(walk->n_loop + rounds);
  std::vector<double> bound(static_cast<size_t>(walk->n_out));
  for (int64_t i = 0; i < walk->n_out; ++i) {
    double total = 0.0, total_abs = 0.0, moved = 0.0;
    for (int64_t j = 0; j < walk->n_loop; ++j) {
      double term = 1.0, dterm = 0.0;
      for (size_t o = 0; o < operands.size(); ++o) {
        const int64_t k = walk->out_part[o][static_cast<size_t>(i)] + walk->loop_part[o][static_cast<size_t>(j)];
        const double value = operands[o]->value(k), error = operands[o]->error(k);
        double factor = value, dfactor = error;
        if (o == 0 && kind == BoundKind::kSumOfSquares) {
          factor = value * value;
          dfactor = 2.0 * std::fabs(value) * error;
        } else if (o == 0 && kind == BoundKind::kSumEntropy) {
          const double log_p = std::log(value + 1e-9);
          factor = -value * log_p;
          dfactor = (std::fabs(log_p) + 1.0) * error;
        }
        dterm = dterm * std::fabs(factor) + std::fabs(term) * dfactor;
        term *= factor;
      }
      total += term;
      total_abs += std::fabs(term);
      moved += dterm;
    }
    const double absolute = gamma * total_abs + moved;
    const double e = magnitude(out, i);
    bound[static_cast<size_t>(i)] =
        ulps(out, i, n_ulps) + (total != 0.0 ? e * absolute / std::fabs(total) : (e == 0.0 ? absolute : kInf));
  }
  return bound;
}

// The per-element sums of a product as matrix products, when its einsum is a batched
// GEMM: every output dim is a batch dim (in both operands), a row dim (in the first
// only) or a column dim (in the second only), and the contracted dims are in both.
// For each output element (flat index) it fills
//   sum_abs = sum_k |a_k b_k|,  moved = sum_k (da_k |b_k| + |a_k| db_k),  value = sum_k a_k b_k
// (value only when `want_value`). These are sums of products in double, in Eigen's
// order (or by the nonzeros of a sparse operand): a bound, not a golden value, so any
// order serves. nullopt when the layout
// does not factor so.
struct ProductSums {
  std::vector<double> sum_abs, moved, value;
  // Set when the caller asked for the sums folded: sum_abs then holds
  // fold_scale * sum_abs + moved, evaluated so, and moved is empty.
  bool folded = false;
};

using MatrixF64 = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Above this fraction of exact zeros an operand is taken as sparse (a dispatch or combine
// tensor holds one or two nonzeros per token).
constexpr double kSparseZeros = 0.9;

// A row-major matrix or a block of columns of one, without a copy.
using MatrixRef = Eigen::Ref<const MatrixF64, 0, Eigen::OuterStride<>>;

double zero_fraction(const MatrixRef& m) {
  if (m.size() == 0) return 0.0;
  Eigen::Index zeros = 0;
  for (Eigen::Index r = 0; r < m.rows(); ++r) {
    const double* row = m.row(r).data();
    for (Eigen::Index c = 0; c < m.cols(); ++c) zeros += row[c] == 0.0 ? 1 : 0;
  }
  return static_cast<double>(zeros) / static_cast<double>(m.size());
}

// The largest a product of nonnegative float32 matrices may hold for the float path:
// no product or sum of K of them can overflow.
constexpr double kFloatPathLimit = 1e15;
// Products of at least this many multiply-adds (a realistic layer's experts) take the
// float path; smaller ones, every checked-in golden's among them, sum in double.
constexpr double kFloatPathWork = 16777216.0;  // 2^24

// The next float32 above a finite f >= 0: one more in the bits (FLT_MAX's is inf).
float next_float_up(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  ++bits;
  std::memcpy(&f, &bits, sizeof bits);
  return f;
}

// The largest float32 no larger than x >= 0.
float float_at_most(double x) {
  const float f = static_cast<float>(x);
  return static_cast<double>(f) > x ? std::nextafter(f, 0.0f) : f;
}

int32_t float_bits(float f) {
  int32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return bits;
}

// Rounds x >= 0 to a float32 no smaller than x.
float float_at_least(double x) {
  const float f = static_cast<float>(x);
  return static_cast<double>(f) < x ? next_float_up(f) : f;
}

// The float path of a product's sums (spec/trace-format.md, "Tolerances"): for one batch
// of a GEMM-shaped product, sum |a| |b| and the bounds' terms da |b|, |a| db with
// ops::matmul in float32 (several times Eigen's double GEMM here) on the operands rounded
// up, then enlarge each sum by what float32 summation can lose. K nonnegative products
// summed with K + 1 roundings each come out at least (1 - gamma_{K+1}) times their exact
// sum, less 2^-150 per product that underflows; so exact <= computed / (1 - gamma_{K+1})
// + (K + 1) 2^-149, and the double arithmetic of that line is covered by one more factor
// (1 + 2^-50). A bound is so at most about (K + 2) 2^-24 wider, relative, than the double
// sums give (3e-5 for K = 512).
struct FloatSums {
  int64_t K = 0;
  double scale = 0.0, underflow = 0.0;

  explicit FloatSums(int64_t depth) : K(depth) {
    const double nu = static_cast<double>(K + 1) * 0x1p-24;
    scale = (1.0 + 0x1p-50) / (1.0 - nu / (1.0 - nu));
    underflow = static_cast<double>(K + 1) * 0x1p-149;
  }
  double upper(float computed) const { return static_cast<double>(computed) * scale + underflow; }
};

// One operand of a batch in float32: |value| and its bound, rounded up, with what
// decides whether the float path may take it.
struct FloatOperand {
  std::vector<float> magnitude, error;
  double largest = 0.0;
  int64_t zeros = 0;
  bool usable = true;  // finite, not negative, not above kFloatPathLimit
  bool exact = true;   // every bound 0
  // Some bound was at most kBoundFloor and is left out of `error` (held as 0): the
  // caller adds kBoundFloor times the other operand's sum of magnitudes instead.
  bool has_floor_bounds = false;

  // A bound no larger than the floor every bound is raised to (a combine tensor's exact
  // zeros hold it) stays out of the products: times a magnitude below 1 it underflows,
  // and subnormal results cost some CPUs (Intel's) a hundred cycles each. Left out,
  // such rows are sparse again. kBoundFloor * sum_k |other_k| covers what it adds.
  float error_entry(double bound) {
    if (bound > 0.0 && bound <= kBoundFloor) {
      has_floor_bounds = true;
      return 0.0f;
    }
    return float_at_least(bound);
  }

  void take(double value, double bound, size_t at) {
    take_exact(value, at);
    usable &= bound >= 0.0 && bound <= kFloatPathLimit;  // false for NaN
    largest = std::max(largest, bound);
    exact &= bound == 0.0;
    error[at] = error_entry(bound);
  }
  // An operand known exact (Operand::exact) leaves `error` empty.
  void take_exact(double value, size_t at) {
    const double m = std::fabs(value);
    usable &= m <= kFloatPathLimit;  // false for NaN
    largest = std::max(largest, m);
    zeros += m == 0.0 ? 1 : 0;
    magnitude[at] = float_at_least(m);
  }
  // take_exact of `count` float32 values side by side (a row of a float32 operand, its
  // last dim): |x| is a float already, so it is its own float_at_least. The limit and the
  // zeros and the largest are found on the bits of |x|, which order like the values (a
  // NaN or an infinity lies above the limit's), all in 32-bit integer lanes, so that the
  // compiler vectorises the loop: the same magnitudes and flags as one take_exact each.
  void take_exact_floats(const float* values, int64_t count, size_t at) {
    static const int32_t limit_bits = float_bits(float_at_most(kFloatPathLimit));
    float* out = magnitude.data() + at;
    int32_t row_largest = 0, row_unusable = 0, row_zeros = 0;
    for (int64_t i = 0; i < count; ++i) {
      const float m = std::fabs(values[i]);
      out[i] = m;
      int32_t bits;  // of |x|: the sign bit is clear, so they order as signed integers too
      std::memcpy(&bits, &m, sizeof bits);
      row_unusable |= bits > limit_bits ? 1 : 0;
      row_largest = bits > row_largest ? bits : row_largest;
      row_zeros += bits == 0 ? 1 : 0;
    }
    usable &= row_unusable == 0;
    if (row_unusable == 0) {  // else the largest may be a NaN's bits, and the float path is off anyway
      float row_largest_value;
      std::memcpy(&row_largest_value, &row_largest, sizeof row_largest_value);
      largest = std::max(largest, static_cast<double>(row_largest_value));
    }
    zeros += row_zeros;
  }
  // take_exact of `count` int32 values side by side (a row of a dispatch tensor).
  void take_exact_ints(const int32_t* values, int64_t count, size_t at) {
    for (int64_t i = 0; i < count; ++i) take_exact(static_cast<double>(values[i]), at + static_cast<size_t>(i));
  }
  // take of such a row with the bounds of the same elements.
  void take_floats(const float* values, const double* bounds, int64_t count, size_t at) {
    take_exact_floats(values, count, at);
    float* out = error.data() + at;
    bool row_usable = true, row_exact = true;
    double row_largest = 0.0;
    for (int64_t i = 0; i < count; ++i) {
      const double bound = bounds[i];
      row_usable &= bound >= 0.0 && bound <= kFloatPathLimit;
      row_largest = std::max(row_largest, bound);
      row_exact &= bound == 0.0;
      out[i] = error_entry(bound);
    }
    usable &= row_usable;
    largest = std::max(largest, row_largest);
    exact &= row_exact;
  }
};

// Sums of the rows ([rows, width] row-major) or the columns ([height, columns]) of a
// float matrix, in double.
std::vector<double> row_sums(const std::vector<float>& m, int64_t rows, int64_t width) {
  std::vector<double> sums(static_cast<size_t>(rows), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = m.data() + r * width;
    double sum = 0.0;
    for (int64_t k = 0; k < width; ++k) sum += static_cast<double>(row[k]);
    sums[static_cast<size_t>(r)] = sum;
  }
  return sums;
}
std::vector<double> column_sums(const std::vector<float>& m, int64_t height, int64_t columns) {
  std::vector<double> sums(static_cast<size_t>(columns), 0.0);
  for (int64_t k = 0; k < height; ++k) {
    const float* row = m.data() + k * columns;
    for (int64_t q = 0; q < columns; ++q) sums[static_cast<size_t>(q)] += static_cast<double>(row[q]);
  }
  return sums;
}

// scale |x| + dx for each element of a float operand with bounds, rounded up: the double
// sum may round down by 2^-52 of itself, which the factor 1 + 2^-50 more than covers.
std::vector<float> scaled_plus_bound(const FloatOperand& operand, double scale) {
  std::vector<float> out(operand.magnitude.size());
  for (size_t i = 0; i < out.size(); ++i) {
    const double exact_enough =
        scale * static_cast<double>(operand.magnitude[i]) + static_cast<double>(operand.error[i]);
    out[i] = float_at_least(exact_enough * (1.0 + 0x1p-50));
  }
  return out;
}

// An upper bound on sum_k floor_k |other_k| for bounds floor_k <= kBoundFloor, from the
// double sum of the |other_k|: at most K 2^-53 low for K < 2^22 terms, so 2^-30 covers it
// and the product's rounding.
double floor_term(double sum_of_magnitudes) { return kBoundFloor * sum_of_magnitudes * (1.0 + 0x1p-30); }

// to [width, height] = from [height, width] transposed, in 32 x 32 blocks: a column-by-
// column copy of a large matrix touches a new cache line with every element written.
void transpose_into(const float* from, int64_t height, int64_t width, float* to) {
  constexpr int64_t kBlock = 32;
  for (int64_t i0 = 0; i0 < height; i0 += kBlock) {
    const int64_t i1 = std::min(height, i0 + kBlock);
    for (int64_t j0 = 0; j0 < width; j0 += kBlock) {
      const int64_t j1 = std::min(width, j0 + kBlock);
      for (int64_t i = i0; i < i1; ++i) {
        for (int64_t j = j0; j < j1; ++j) to[j * height + i] = from[i * width + j];
      }
    }
  }
}

// True when offsets[i] == i: the operand's part over these dims is its last, contiguous.
bool is_identity(const std::vector<int64_t>& offsets) {
  for (size_t i = 0; i < offsets.size(); ++i) {
    if (offsets[i] != static_cast<int64_t>(i)) return false;
  }
  return true;
}

// a . b, leaving out the terms where the sparser operand is an exact zero when it is
// mostly zeros: the dense product of a one-hot [S, E*C] costs E*C/2 times the useful
// work. Those terms add +0 or -0 to sums of products, and a bound needs no sign of zero.
MatrixF64 product_skipping_zeros(const MatrixRef& a, const MatrixRef& b) {
  const double a_zeros = zero_fraction(a), b_zeros = zero_fraction(b);
  if (a_zeros < kSparseZeros && b_zeros < kSparseZeros) return a * b;
  MatrixF64 c = MatrixF64::Zero(a.rows(), b.cols());
  // Both loops add each element's terms in increasing k.
  if (a_zeros >= b_zeros) {
    for (Eigen::Index r = 0; r < a.rows(); ++r) {
      for (Eigen::Index k = 0; k < a.cols(); ++k) {
        const double v = a(r, k);
        if (v != 0.0) c.row(r) += v * b.row(k);
      }
    }
  } else {
    for (Eigen::Index k = 0; k < b.rows(); ++k) {
      for (Eigen::Index q = 0; q < b.cols(); ++q) {
        const double v = b(k, q);
        if (v != 0.0) c.col(q) += a.col(k) * v;
      }
    }
  }
  return c;
}

std::optional<ProductSums> product_sums_by_gemm(const Tensor& out, const Operand& a, const Operand& b,
                                                const Dims& contract, bool want_value,
                                                std::optional<double> fold_scale = std::nullopt) {
  Dims batch, rows, cols;
  for (const std::string& dim : out.dims) {
    const bool in_a = has(a.dims, dim), in_b = has(b.dims, dim);
    if (in_a && in_b) {
      batch.push_back(dim);
    } else if (in_a) {
      rows.push_back(dim);
    } else if (in_b) {
      cols.push_back(dim);
    } else {
      return std::nullopt;
    }
  }
  for (const std::string& dim : contract) {
    if (!has(a.dims, dim) || !has(b.dims, dim) || has(out.dims, dim)) return std::nullopt;
    if (extent_of(a.dims, a.shape, dim) != extent_of(b.dims, b.shape, dim)) return std::nullopt;
  }
  for (const Operand* operand : {&a, &b}) {
    for (const std::string& dim : operand->dims) {
      if (!has(out.dims, dim) && !has(contract, dim)) return std::nullopt;
    }
  }
  auto extents = [&](const Dims& dims, const Dims& source_dims, const Shape& source_shape) {
    Shape shape;
    for (const std::string& dim : dims) shape.push_back(extent_of(source_dims, source_shape, dim));
    return shape;
  };
  const Shape batch_x = extents(batch, out.dims, out.shape), rows_x = extents(rows, out.dims, out.shape),
              cols_x = extents(cols, out.dims, out.shape), contract_x = extents(contract, a.dims, a.shape);
  for (const std::string& dim : batch) {
    if (extent_of(a.dims, a.shape, dim) != extent_of(out.dims, out.shape, dim) ||
        extent_of(b.dims, b.shape, dim) != extent_of(out.dims, out.shape, dim)) {
      return std::nullopt;
    }
  }
  const std::vector<int64_t> out_batch = offsets_over(batch, batch_x, out.dims, out.shape),
                             out_rows = offsets_over(rows, rows_x, out.dims, out.shape),
                             out_cols = offsets_over(cols, cols_x, out.dims, out.shape),
                             a_batch = offsets_over(batch, batch_x, a.dims, a.shape),
                             a_rows = offsets_over(rows, rows_x, a.dims, a.shape),
                             a_k = offsets_over(contract, contract_x, a.dims, a.shape),
                             b_batch = offsets_over(batch, batch_x, b.dims, b.shape),
                             b_k = offsets_over(contract, contract_x, b.dims, b.shape),
                             b_cols = offsets_over(cols, cols_x, b.dims, b.shape);
  const auto R = static_cast<Eigen::Index>(out_rows.size()), Q = static_cast<Eigen::Index>(out_cols.size()),
             K = static_cast<Eigen::Index>(a_k.size());
  ProductSums sums;
  const size_t n = static_cast<size_t>(out.num_elements());
  sums.sum_abs.assign(n, 0.0);
  sums.folded = fold_scale.has_value() && !want_value;
  if (!sums.folded) sums.moved.assign(n, 0.0);
  if (want_value) sums.value.assign(n, 0.0);
  // Where element i's sums go: folded into one value (the caller's own expression), or apart.
  auto store = [&sums, &fold_scale](size_t i, double sum_abs, double moved) {
    if (sums.folded) {
      sums.sum_abs[i] = *fold_scale * sum_abs + moved;
    } else {
      sums.sum_abs[i] = sum_abs;
      sums.moved[i] = moved;
    }
  };
  using Matrix = MatrixF64;
  // Batches are independent: each thread fills its own output elements.
  // The float path, for a large batch of dense operands: true when it filled the batch's sums.
  const bool large = static_cast<double>(R) * static_cast<double>(K) * static_cast<double>(Q) >= kFloatPathWork;
  // ops::matmul picks its kernel on first use, and MOEREF_MATMUL_KERNEL may name a bad one:
  // that error must be thrown here, not inside the parallel loop (where it would terminate).
  if (large) ops::matmul_kernel();
  // Each operand's block is gathered as [K, other] ("k outer") or [other, K], whichever
  // reads its memory along contiguous rows: a as [R, K] when its contracted dims are its
  // last (an FFN's activations), else as [K, R] when its row dims are (an expert's output
  // under a combine); b as [K, Q] when its column dims are its last, else as [Q, K] when
  // its contracted dims are (a combine tensor). The product's orientation then decides
  // which block, if any, is transposed, once, in blocks.
  const bool a_k_outer = !is_identity(a_k) && is_identity(a_rows);
  const bool a_contiguous = a_k_outer || is_identity(a_k);
  const bool b_k_outer = is_identity(b_cols) || !is_identity(b_k);
  const bool b_contiguous = !b_k_outer || is_identity(b_cols);
  auto float_path = [&](size_t t) {
    // (K + 1) 2^-24 must stay well below 1 for the widening to be finite and positive.
    if (!large || want_value || static_cast<double>(K + 1) >= 0x1p22) return false;
    // The batch's block of `operand`, row-major: [K, other] when k_outer, else [other, K].
    auto gather = [t](const Operand& operand, const std::vector<int64_t>& batch_offsets,
                      const std::vector<int64_t>& k_offsets, const std::vector<int64_t>& other_offsets, bool k_outer,
                      bool rows_contiguous, FloatOperand& into) {
      const std::vector<int64_t>& outer = k_outer ? k_offsets : other_offsets;
      const std::vector<int64_t>& inner = k_outer ? other_offsets : k_offsets;
      const int64_t n_outer = static_cast<int64_t>(outer.size()), n_inner = static_cast<int64_t>(inner.size());
      into.magnitude.resize(static_cast<size_t>(n_outer * n_inner));
      if (!operand.exact) into.error.resize(static_cast<size_t>(n_outer * n_inner));
      for (int64_t o = 0; o < n_outer; ++o) {
        const int64_t row = batch_offsets[t] + outer[static_cast<size_t>(o)];
        const size_t to = static_cast<size_t>(o * n_inner);
        if (rows_contiguous && operand.is_float()) {
          const float* values = operand.tensor->f32.data() + row;
          operand.exact ? into.take_exact_floats(values, n_inner, to)
                        : into.take_floats(values, operand.bound->data() + row, n_inner, to);
          continue;
        }
        if (rows_contiguous && operand.exact) {  // int32 (a dispatch tensor)
          into.take_exact_ints(operand.tensor->i32.data() + row, n_inner, to);
          continue;
        }
        for (int64_t j = 0; j < n_inner; ++j) {
          const int64_t at = row + inner[static_cast<size_t>(j)];
          operand.exact ? into.take_exact(operand.value(at), to + static_cast<size_t>(j))
                        : into.take(operand.value(at), operand.error(at), to + static_cast<size_t>(j));
        }
      }
    };
    FloatOperand fa, fb;
    gather(a, a_batch, a_k, a_rows, a_k_outer, a_contiguous, fa);
    gather(b, b_batch, b_k, b_cols, b_k_outer, b_contiguous, fb);
    if (!fa.usable || !fb.usable || fa.largest * fb.largest * static_cast<double>(K + 1) > 1e30) return false;
    // For the bounds left out at the floor: sum_k |a_rk| (when b has some) and sum_k |b_kq|
    // (when a has some), in double, each over k in order in either layout.
    auto sums_over_k = [K](const FloatOperand& operand, bool k_outer, int64_t others) {
      return k_outer ? column_sums(operand.magnitude, K, others) : row_sums(operand.magnitude, others, K);
    };
    std::vector<double> a_row_sums, b_column_sums;
    if (fb.has_floor_bounds) a_row_sums = sums_over_k(fa, a_k_outer, R);
    if (fa.has_floor_bounds) b_column_sums = sums_over_k(fb, b_k_outer, Q);
    // ops::matmul skips the zeros of mostly-zero rows of its left operand (a dispatch or
    // combine tensor): when b has the larger share of zeros, C^T = B^T A^T is computed.
    const bool transposed =
        static_cast<double>(fb.zeros) * static_cast<double>(R) > static_cast<double>(fa.zeros) * static_cast<double>(Q);
    // Plain: a [R, K] . b [K, Q]. Transposed: b^T [Q, K] . a^T [K, R].
    auto arrange = [K](FloatOperand& operand, bool k_outer, bool want_k_outer, int64_t others) {
      if (k_outer == want_k_outer) return;
      for (std::vector<float>* m : {&operand.magnitude, &operand.error}) {
        if (m->empty()) continue;  // the bounds of an exact operand
        std::vector<float> swapped(m->size());
        k_outer ? transpose_into(m->data(), K, others, swapped.data())
                : transpose_into(m->data(), others, K, swapped.data());
        m->swap(swapped);
      }
    };
    arrange(fa, a_k_outer, transposed, R);
    arrange(fb, b_k_outer, !transposed, Q);
    // left . right over K, as [R, Q] or (transposed) [Q, R]. A product of one batch (the
    // router's [G S, M] . [M, E]) would have one thread: its rows are shared out in blocks
    // instead, each row's sums the same in any block.
    auto product = [&](const std::vector<float>& left_a, const std::vector<float>& right_b, std::vector<float>& c) {
      c.resize(static_cast<size_t>(R * Q));
      const float* left = transposed ? right_b.data() : left_a.data();
      const float* right = transposed ? left_a.data() : right_b.data();
      const int64_t left_rows = transposed ? Q : R, right_cols = transposed ? R : Q;
      constexpr int64_t kRowBlock = 64;
      const int64_t blocks = out_batch.size() == 1 ? (left_rows + kRowBlock - 1) / kRowBlock : 1;
      const int64_t block_rows = blocks == 1 ? left_rows : kRowBlock;
#pragma omp parallel for schedule(static) if (blocks > 1)
      for (int64_t block = 0; block < blocks; ++block) {
        const int64_t first = block * block_rows;
        ops::matmul(left + first * K, right, c.data() + first * right_cols, std::min(block_rows, left_rows - first), K,
                    right_cols);
      }
    };
    const FloatSums widen(K);
    std::vector<float> sum_abs, moved_a, moved_b;
    // Folded sums with one operand's bounds: scale |x| + dx per element (rounded up), so
    // one product gives scale sum |a||b| + sum dx |y| (the other operand's bounds, if
    // any, still take a product of their own): half the dense products of an expert FFN.
    const bool fold_a = sums.folded && !fa.exact, fold_b = sums.folded && fa.exact && !fb.exact;
    if (fold_a) {
      product(scaled_plus_bound(fa, *fold_scale), fb.magnitude, sum_abs);
    } else if (fold_b) {
      product(fa.magnitude, scaled_plus_bound(fb, *fold_scale), sum_abs);
    } else {
      product(fa.magnitude, fb.magnitude, sum_abs);
      if (!fa.exact) product(fa.error, fb.magnitude, moved_a);  // da |b|
    }
    if (!fb.exact && !fold_b) product(fa.magnitude, fb.error, moved_b);  // |a| db
    for (Eigen::Index r = 0; r < R; ++r) {
      for (Eigen::Index q = 0; q < Q; ++q) {
        const size_t i =
            static_cast<size_t>(out_batch[t] + out_rows[static_cast<size_t>(r)] + out_cols[static_cast<size_t>(q)]);
        const size_t rq = static_cast<size_t>(transposed ? q * R + r : r * Q + q);
        double moved =
            (moved_a.empty() ? 0.0 : widen.upper(moved_a[rq])) + (moved_b.empty() ? 0.0 : widen.upper(moved_b[rq]));
        if (!b_column_sums.empty()) moved += floor_term(b_column_sums[static_cast<size_t>(q)]);
        if (!a_row_sums.empty()) moved += floor_term(a_row_sums[static_cast<size_t>(r)]);
        if (fold_a || fold_b) {
          sums.sum_abs[i] = widen.upper(sum_abs[rq]) + moved;  // already scaled
        } else {
          store(i, widen.upper(sum_abs[rq]), moved);
        }
      }
    }
    return true;
  };
  // One batch alone (the router) shares its rows out inside the float path instead.
#pragma omp parallel for schedule(static) if (out_batch.size() > 1)
  for (size_t t = 0; t < out_batch.size(); ++t) {
    if (float_path(t)) continue;
    Matrix a_abs(R, 2 * K), b_abs(K, Q), b_both, a_val, b_val;
    if (want_value) {
      a_val.resize(R, K);
      b_val.resize(K, Q);
    }
    for (Eigen::Index r = 0; r < R; ++r) {
      for (Eigen::Index k = 0; k < K; ++k) {
        const int64_t at = a_batch[t] + a_rows[static_cast<size_t>(r)] + a_k[static_cast<size_t>(k)];
        const double v = a.value(at);
        a_abs(r, k) = std::fabs(v);
        a_abs(r, K + k) = a.error(at);
        if (want_value) a_val(r, k) = v;
      }
    }
    bool b_exact = true;
    for (Eigen::Index k = 0; k < K; ++k) {
      for (Eigen::Index q = 0; q < Q; ++q) {
        const int64_t at = b_batch[t] + b_k[static_cast<size_t>(k)] + b_cols[static_cast<size_t>(q)];
        const double v = b.value(at);
        b_abs(k, q) = std::fabs(v);
        b_exact &= b.error(at) == 0.0;
        if (want_value) b_val(k, q) = v;
      }
    }
    if (!b_exact) {  // [db; |b|], built only when b has bounds (a weight or an input has none)
      b_both.resize(2 * K, Q);
      b_both.bottomRows(K) = b_abs;
      for (Eigen::Index k = 0; k < K; ++k) {
        for (Eigen::Index q = 0; q < Q; ++q) {
          b_both(k, q) = b.error(b_batch[t] + b_k[static_cast<size_t>(k)] + b_cols[static_cast<size_t>(q)]);
        }
      }
    }
    const Matrix sum_abs = product_skipping_zeros(a_abs.leftCols(K), b_abs);
    // [|a|, da] . [db; |b|] = |a| db + da |b|; an operand given exactly (an input, a weight)
    // has no bound, and its half of the sum is left out.
    const bool a_exact = a.exact || a_abs.rightCols(K).isZero(0.0);
    Matrix moved;
    if (a_exact && b_exact) {
      moved = Matrix::Zero(R, Q);
    } else if (a_exact) {
      moved = product_skipping_zeros(a_abs.leftCols(K), b_both.topRows(K));
    } else if (b_exact) {
      moved = product_skipping_zeros(a_abs.rightCols(K), b_abs);
    } else {
      moved = product_skipping_zeros(a_abs, b_both);
    }
    Matrix value;
    if (want_value) value = product_skipping_zeros(a_val, b_val);
    for (Eigen::Index r = 0; r < R; ++r) {
      for (Eigen::Index q = 0; q < Q; ++q) {
        const size_t i =
            static_cast<size_t>(out_batch[t] + out_rows[static_cast<size_t>(r)] + out_cols[static_cast<size_t>(q)]);
        store(i, sum_abs(r, q), moved(r, q));
        if (want_value) sums.value[i] = value(r, q);
      }
    }
  }
  return sums;
}

// An einsum of reads[0] with the weight read(s) after it, over `contract` (summed) and
// `gathered` (selected by an index: the largest term counts), plus biases; for each output
// element, for one float32 sum, the candidate's and the golden's:
//   2 gamma_n sum_k |a_k b_k|  +  sum_k (da_k |b_k| + |a_k| db_k)  (+ the bias's bound),
// then through an activation (slope <= kActivationSlope, kActivationUlps of its own); GLU
// (several weights) multiplies one activated factor per weight.
std::optional<std::vector<double>> product_bound(const Tensor& out, const std::vector<Operand>& reads,
                                                 const StepRule& rule) {
  const bool activation = rule.kind == BoundKind::kProductActivation;
  // The router's golden is one rounding of an exact sum; a GEMM's golden is a float32 sum.
  const bool golden_in_double = rule.kind == BoundKind::kRouterProduct;
  const double sums = golden_in_double ? 1.0 : 2.0;
  const Dims contract = letters(rule.dims), gathered = letters(rule.gathered);
  Dims loop = gathered;
  loop.insert(loop.end(), contract.begin(), contract.end());
  const Operand& a = reads[0];
  std::vector<const Operand*> weights = {&reads[1]};
  std::vector<const Operand*> biases;
  for (size_t r = 2; r < reads.size(); ++r) {
    if (!reads[r].is_float()) continue;  // an expert index or a mask that selects
    if (activation && reads[r].dims == reads[1].dims) {
      weights.push_back(&reads[r]);  // GLU: wi_0, wi_1, ...
    } else {
      biases.push_back(&reads[r]);
    }
  }
  if (!biases.empty() && biases.size() != weights.size()) return std::nullopt;
  std::vector<Walk> walks;
  // The walks' offsets are made below only where an element-by-element sum or a bias needs them.
  auto make_walks = [&](bool offsets) {
    walks.clear();
    for (size_t w = 0; w < weights.size(); ++w) {
      std::vector<const Operand*> operands = {&a, weights[w]};
      if (!biases.empty()) operands.push_back(biases[w]);
      std::optional<Walk> walk = make_walk(out, operands, loop, offsets);
      if (!walk) return false;
      walks.push_back(std::move(*walk));
    }
    return true;
  };
  if (!make_walks(false)) return std::nullopt;
  int64_t n_contract = 1, n_gathered = 1;
  for (const std::string& dim : contract) {
    const int64_t extent =
        std::max(extent_of(a.dims, a.shape, dim), extent_of(weights[0]->dims, weights[0]->shape, dim));
    n_contract *= extent;
  }
  n_gathered = walks[0].n_loop / std::max<int64_t>(n_contract, 1);
  const double gamma = gamma_n(n_contract + (biases.empty() ? 0 : 1));
  // The same sums as matrix products where the layout allows (the realistic layer's
  // expert products would take minutes element by element).
  std::vector<ProductSums> by_gemm;
  // One weight and no bias: each element needs only sums * gamma * sum_abs + moved, so
  // the two sums are folded as they are made (one vector of the output's size, not two).
  const std::optional<double> fold_scale =
      weights.size() == 1 && biases.empty() ? std::optional<double>(sums * gamma) : std::nullopt;
  if (n_gathered == 1) {
    for (size_t w = 0; w < weights.size(); ++w) {
      std::optional<ProductSums> found =
          product_sums_by_gemm(out, a, *weights[w], contract, activation && weights.size() > 1, fold_scale);
      if (!found) break;
      by_gemm.push_back(std::move(*found));
    }
    if (by_gemm.size() != weights.size()) by_gemm.clear();
  }
  if (by_gemm.empty() || !biases.empty()) make_walks(true);
  // With one weight, element i's bound replaces its own sum_abs (read just before, in the
  // same iteration): one vector of the output's size fewer at this step's peak.
  std::vector<double> bound;
  if (by_gemm.size() == 1) {
    bound = std::move(by_gemm[0].sum_abs);
    by_gemm[0].sum_abs.clear();
  } else {
    bound.resize(static_cast<size_t>(out.num_elements()));
  }
  // Each element's bound is its own sum, in the same order on any thread count.
#pragma omp parallel
  {
    std::vector<double> pre(weights.size()), value(weights.size());  // per thread, refilled per element
#pragma omp for schedule(static)
    for (int64_t i = 0; i < out.num_elements(); ++i) {
      double worst = 0.0;
      for (int64_t g = 0; g < n_gathered; ++g) {
        for (size_t w = 0; w < weights.size(); ++w) {
          const Walk& walk = walks[w];
          double sum_abs = 0.0, sum = 0.0, moved = 0.0;
          if (!by_gemm.empty() && by_gemm[w].folded) {
            pre[w] = (by_gemm.size() == 1 ? bound : by_gemm[w].sum_abs)[static_cast<size_t>(i)];
            value[w] = 0.0;  // read only with several weights, which are never folded
            continue;
          }
          if (!by_gemm.empty()) {
            const ProductSums& found = by_gemm[w];
            sum_abs = (by_gemm.size() == 1 ? bound : found.sum_abs)[static_cast<size_t>(i)];
            moved = found.moved[static_cast<size_t>(i)];
            sum = found.value.empty() ? 0.0 : found.value[static_cast<size_t>(i)];
          }
          for (int64_t c = 0; by_gemm.empty() && c < n_contract; ++c) {
            const size_t j = static_cast<size_t>(g * n_contract + c);
            const int64_t ka = walk.out_part[0][static_cast<size_t>(i)] + walk.loop_part[0][j];
            const int64_t kb = walk.out_part[1][static_cast<size_t>(i)] + walk.loop_part[1][j];
            const double va = a.value(ka);
            // A term whose operand is an exact zero adds nothing (dispatch and combine are mostly such zeros).
            if (va == 0.0 && a.error(ka) == 0.0) continue;
            const double vb = weights[w]->value(kb);
            sum_abs += std::fabs(va * vb);
            sum += va * vb;
            moved += a.error(ka) * std::fabs(vb) + std::fabs(va) * weights[w]->error(kb);
          }
          if (!biases.empty()) {
            const int64_t kc =
                walk.out_part[2][static_cast<size_t>(i)] + walk.loop_part[2][static_cast<size_t>(g * n_contract)];
            sum_abs += std::fabs(biases[w]->value(kc));
            sum += biases[w]->value(kc);
            moved += biases[w]->error(kc);
          }
          pre[w] = sums * gamma * sum_abs + moved;
          value[w] = sum;
        }
        double here = pre[0];
        if (activation) {
          here = 0.0;
          for (size_t w = 0; w < weights.size(); ++w) {
            double others = 1.0;
            for (size_t v = 0; v < weights.size(); ++v) {
              if (v != w) others *= std::fabs(value[v]) + pre[v] + 1.0;
            }
            here += kActivationSlope * pre[w] * (weights.size() > 1 ? others : 1.0);
          }
        }
        worst = std::max(worst, here);
      }
      const double own = activation ? static_cast<double>(kActivationUlps * static_cast<int>(weights.size()))
                                    : (golden_in_double ? 1.0 : 0.0);
      bound[static_cast<size_t>(i)] = worst + ulps(out, i, own);
    }
  }
  return bound;
}

}  // namespace

double gamma_n(int64_t n) {
  const double nu = static_cast<double>(n) * u;
  return nu < 1.0 ? nu / (1.0 - nu) : kInf;
}

double ulp_of(float value) {
  if (!std::isfinite(value)) return 0.0;
  const float magnitude_f = std::fabs(value);
  return static_cast<double>(next_float_up(magnitude_f)) - static_cast<double>(magnitude_f);
}

Float32Bounds::Float32Bounds(const Trace& golden) : golden_(golden) {
  if (golden.config.is_object() && golden.config.contains("variant") && golden.config["variant"].is_string()) {
    variant_ = golden.config["variant"].get<std::string>();
  }
  // Only float steps get bounds of their own, so only they count as readers.
  for (const auto& [step, reads] : golden.reads) {
    const Tensor* reader = golden.find_step(step);
    if (reader == nullptr || reader->dtype != DType::kFloat32) continue;
    for (const std::string& read : reads) {
      if (read.rfind("inputs.", 0) != 0) ++readers_left_[read];
    }
  }
  // Losses read steps too, at the end: those are kept (they are a router's, small).
  for (const auto& [loss, value] : golden.losses) kept_for_losses_.insert(loss);
  for (const LossRule& rule : float32_loss_rules()) {
    std::stringstream list(rule.reads);
    std::string read;
    while (std::getline(list, read, ',')) kept_for_losses_.insert(read);
  }
}

void Float32Bounds::release_reads_of(const std::string& name) {
  const auto listed = golden_.reads.find(name);
  if (listed == golden_.reads.end()) return;
  for (const std::string& read : listed->second) {
    const auto left = readers_left_.find(read);
    if (left == readers_left_.end() || --left->second != 0 || kept_for_losses_.count(read) > 0) continue;
    steps_.erase(read);
  }
}

const std::vector<double>* Float32Bounds::bound_of(const std::string& read, std::vector<BoundHeld>& held) {
  const bool input = read.rfind("inputs.", 0) == 0;
  const Tensor* tensor = input ? golden_.find_input(read.substr(7)) : golden_.find_step(read);
  if (tensor == nullptr) return nullptr;
  if (!input && tensor->dtype == DType::kFloat32) {
    const std::shared_ptr<const Float32Bound> found = shared_step(read);
    if (found) {
      held.push_back(found);  // alive while the caller reads it, whatever the cache forgets meanwhile
      return &found->bound;
    }
    // A read the table does not classify: its atol/rtol default stands for its bound.
    std::vector<double>& fallback = zeros_["unclassified:" + read];
    if (fallback.empty()) {
      const Tolerance tolerance = is_product_step(read) ? Tolerance{1e-5, 1e-4} : Tolerance{};
      for (float value : tensor->f32) fallback.push_back(tolerance.allowed(static_cast<double>(value)));
    }
    return &fallback;
  }
  // Inputs are bit-exact and int32 steps exact: their operands say so (Operand::exact)
  // and no vector of zeros is made for them (the weights' alone would be hundreds of MB).
  static const std::vector<double> kExact;
  return &kExact;
}

std::optional<Float32Bound> Float32Bounds::step(const std::string& name) {
  const std::shared_ptr<const Float32Bound> found = shared_step(name);
  if (!found) return std::nullopt;
  return *found;
}

std::shared_ptr<const Float32Bound> Float32Bounds::shared_step(const std::string& name) {
  const auto it = steps_.find(name);
  if (it != steps_.end()) return it->second;
  std::optional<Float32Bound> computed = compute_step(name);
  std::shared_ptr<const Float32Bound> kept =
      computed ? std::make_shared<const Float32Bound>(std::move(*computed)) : nullptr;
  steps_[name] = kept;
  // Each step counts once as a reader: made again later, it must not free its reads twice.
  if (counted_.insert(name).second) release_reads_of(name);
  return kept;
}

std::optional<Float32Bound> Float32Bounds::compute_step(const std::string& name) {
  const Tensor* out_tensor = golden_.find_step(name);
  const StepRule* rule = find_step_rule(variant_, name);
  if (out_tensor == nullptr || out_tensor->dtype != DType::kFloat32 || rule == nullptr) return std::nullopt;
  const Tensor& out = *out_tensor;
  std::vector<BoundHeld> held;  // the reads' bounds, kept alive until this bound is made
  std::vector<Operand> reads;
  const auto listed = golden_.reads.find(name);
  if (listed != golden_.reads.end()) {
    for (const std::string& read : listed->second) {
      const std::vector<double>* bound = bound_of(read, held);
      if (bound == nullptr) continue;
      const bool input = read.rfind("inputs.", 0) == 0;
      Operand operand;
      operand.name = read;
      operand.tensor = input ? golden_.find_input(read.substr(7)) : golden_.find_step(read);
      operand.bound = bound;
      operand.exact = input || operand.tensor->dtype != DType::kFloat32;
      align(operand, out);
      reads.push_back(operand);
    }
  }
  std::vector<const Operand*> floats;
  for (const Operand& read : reads) {
    if (read.is_float()) floats.push_back(&read);
  }
  const int64_t n = out.num_elements();
  // A product's or a selection's bound comes back whole: no vector of zeros beside it.
  const bool whole_product = (rule->kind == BoundKind::kRouterProduct || rule->kind == BoundKind::kProduct ||
                              rule->kind == BoundKind::kProductActivation) &&
                             reads.size() >= 2;
  const bool made_whole = whole_product || rule->kind == BoundKind::kExact;
  std::vector<double> bound(made_whole ? 0 : static_cast<size_t>(n), 0.0);
  const std::string ulp_text = std::to_string(rule->ulps) + " ulp";
  std::string rule_text = bound_kind_name(rule->kind);
  auto add_projected = [&](const Operand& read, double factor) {
    const std::vector<double> moved = project_bound(out, read);
    for (size_t i = 0; i < bound.size(); ++i) bound[i] += factor * moved[i];
  };
  switch (rule->kind) {
    case BoundKind::kExact:
      bound = selection_bound(out, floats);
      rule_text += ": the bound of the value it selected";
      break;
    case BoundKind::kDecision:
      rule_text += ": exact";
      break;
    case BoundKind::kArith:
      for (int64_t i = 0; i < n; ++i) bound[static_cast<size_t>(i)] = ulps(out, i, rule->ulps);
      for (const Operand* read : floats) add_projected(*read, 1.0);
      rule_text += ": " + ulp_text + " + the reads' bounds";
      break;
    case BoundKind::kScaled: {
      // value = c * prod(reads) elementwise: a read's bound moves it by |value / read| times.
      for (int64_t i = 0; i < n; ++i) bound[static_cast<size_t>(i)] = ulps(out, i, rule->ulps);
      for (const Operand* read : floats) {
        for (const std::string& dim : read->dims) {
          if (!has(out.dims, dim)) return std::nullopt;
        }
        const std::vector<double> moved = project_bound(out, *read);
        const std::vector<double> size = project_max(out, *read, magnitudes(*read));
        for (int64_t i = 0; i < n; ++i) {
          const size_t k = static_cast<size_t>(i);
          const double e = magnitude(out, i);
          const double ratio = e == 0.0 ? 0.0 : (size[k] > 0.0 ? e / size[k] : 1.0);
          bound[k] += ratio * moved[k];
        }
      }
      rule_text += ": " + ulp_text + " + |value / read| x each read's bound";
      break;
    }
    case BoundKind::kRatio: {
      const double own = rule->ulps + std::max<double>(0.0, static_cast<double>(reads.size()) - 1.0);
      std::vector<double> rel(static_cast<size_t>(n), 0.0);
      for (const Operand* read : floats) {
        const std::vector<double> moved = project_max(out, *read, relative(*read));
        for (size_t i = 0; i < rel.size(); ++i) rel[i] += moved[i];
      }
      for (int64_t i = 0; i < n; ++i) {
        bound[static_cast<size_t>(i)] = ulps(out, i, own) + magnitude(out, i) * rel[static_cast<size_t>(i)];
      }
      rule_text += ": " + number_text(own) + " ulp + the reads' relative bounds";
      break;
    }
    case BoundKind::kSum:
    case BoundKind::kSumOfSquares:
    case BoundKind::kSumEntropy: {
      std::optional<std::vector<double>> found = sum_bound(out, reads, rule->kind, rule->ulps);
      if (!found) return std::nullopt;
      bound = std::move(*found);
      rule_text += ": " + ulp_text + " + gamma_n relative over the summed terms + the reads' bounds";
      break;
    }
    case BoundKind::kNormalize: {
      if (floats.empty()) return std::nullopt;
      const std::string axis = axis_of(*rule, out, *floats[0]);
      const double n_axis = static_cast<double>(std::max<int64_t>(extent_of(out.dims, out.shape, axis), 1));
      const std::vector<double> rel = project_max(out, *floats[0], relative(*floats[0]), {axis});
      for (int64_t i = 0; i < n; ++i) {
        const size_t k = static_cast<size_t>(i);
        bound[k] = ulps(out, i, rule->ulps + n_axis) + 2.0 * magnitude(out, i) * rel[k];
      }
      rule_text +=
          " over " + axis + ": (" + std::to_string(rule->ulps) + " + " + axis + ") ulp + 2 x the read's relative bound";
      break;
    }
    case BoundKind::kSoftmax: {
      if (floats.empty()) return std::nullopt;
      const std::string axis = axis_of(*rule, out, *floats[0]);
      const int64_t n_axis = std::max<int64_t>(extent_of(out.dims, out.shape, axis), 1);
      const std::vector<double> row = project_bound(out, *floats[0], {axis});
      for (int64_t i = 0; i < n; ++i) {
        const size_t k = static_cast<size_t>(i);
        const double e = magnitude(out, i);
        const double shift = e > 0.0 ? std::fabs(std::log(e)) + std::log(static_cast<double>(n_axis)) : 0.0;
        bound[k] = ulps(out, i, static_cast<double>(rule->ulps + n_axis)) + u * shift * e + 2.0 * e * row[k];
      }
      rule_text += " over " + axis + ": (" + std::to_string(rule->ulps) + " + " + axis + ") ulp + u (|ln p| + ln " +
                   axis + ") p + 2 p x the row's largest logit bound";
      break;
    }
    case BoundKind::kLogSumExp: {
      if (floats.empty()) return std::nullopt;
      const std::string axis = axis_of(*rule, out, *floats[0]);
      const int64_t n_axis = std::max<int64_t>(extent_of(floats[0]->dims, floats[0]->shape, axis), 1);
      const std::vector<double> row = project_bound(out, *floats[0], {axis});
      for (int64_t i = 0; i < n; ++i) {
        const size_t k = static_cast<size_t>(i);
        bound[k] = ulps(out, i, rule->ulps) + static_cast<double>(n_axis + 3) * u + row[k];
      }
      rule_text += " over " + axis + ": " + ulp_text + " + (" + axis + " + 3) u + the row's largest logit bound";
      break;
    }
    case BoundKind::kSquare: {
      if (floats.empty()) return std::nullopt;
      const std::vector<double> moved = project_bound(out, *floats[0]);
      const std::vector<double> size = project_max(out, *floats[0], magnitudes(*floats[0]));
      for (int64_t i = 0; i < n; ++i) {
        const size_t k = static_cast<size_t>(i);
        bound[k] = ulps(out, i, rule->ulps) + 2.0 * size[k] * moved[k];
      }
      rule_text += ": " + ulp_text + " + 2 |x| x the read's bound";
      break;
    }
    case BoundKind::kGumbel: {
      // g = -log(t), t = -log(x): dg/dx = 1 / (x t); the inner log's own error (3 ulp
      // of t, i.e. 6u relative) is 6u absolute in g.
      if (floats.empty() || floats[0]->tensor->num_elements() != n) return std::nullopt;
      for (int64_t i = 0; i < n; ++i) {
        const double x = floats[0]->value(i);
        const double t = x > 0.0 && x < 1.0 ? -std::log(x) : 0.0;
        const double moved = floats[0]->error(i) > 0.0 ? (t > 0.0 ? floats[0]->error(i) / (x * t) : kInf) : 0.0;
        bound[static_cast<size_t>(i)] = ulps(out, i, rule->ulps) + 6.0 * u + moved;
      }
      rule_text += ": " + ulp_text + " + 6u + the uniform's bound / (u |ln u|)";
      break;
    }
    case BoundKind::kAffine: {
      // value = a + c b with c a constant, measured from the golden: max |value - a| / |b|.
      if (floats.size() < 2 || floats[0]->tensor->num_elements() != n || floats[1]->tensor->num_elements() != n) {
        return std::nullopt;
      }
      double c = 0.0;
      for (int64_t i = 0; i < n; ++i) {
        const double e = static_cast<double>(out.f32[static_cast<size_t>(i)]);
        const double va = floats[0]->value(i), vb = floats[1]->value(i);
        if (std::isfinite(e) && std::isfinite(va) && std::isfinite(vb) && vb != 0.0) {
          c = std::max(c, std::fabs(e - va) / std::fabs(vb));
        }
      }
      for (int64_t i = 0; i < n; ++i) {
        bound[static_cast<size_t>(i)] = ulps(out, i, rule->ulps) + floats[0]->error(i) + c * floats[1]->error(i);
      }
      rule_text += ": " + ulp_text + " + the logits' bound + c x the noise's bound (c = " + number_text(c) + ")";
      break;
    }
    case BoundKind::kRmsNorm: {
      // y = x / |x| * sqrt(M) * gamma over the last dim M:
      // dy_i <= sqrt(M) |gamma_i| (dx_i / |x| + |x_i| sum_j |x_j| dx_j / |x|^3).
      if (floats.size() < 2 || floats[0]->tensor->num_elements() != n || out.shape.empty()) return std::nullopt;
      const Operand& x = *floats[0];
      const std::vector<double> gamma = project_max(out, *floats[1], magnitudes(*floats[1]));
      const int64_t M = out.shape.back();
      const double own = rule->ulps + static_cast<double>((M + 1) / 2);
      for (int64_t row = 0; row * M < n; ++row) {
        double norm2 = 0.0, weighted = 0.0;
        for (int64_t m = 0; m < M; ++m) {
          const double v = x.value(row * M + m);
          norm2 += v * v;
          weighted += std::fabs(v) * x.error(row * M + m);
        }
        const double norm = std::sqrt(norm2);
        for (int64_t m = 0; m < M; ++m) {
          const int64_t i = row * M + m;
          const double moved = norm > 0.0 ? std::sqrt(static_cast<double>(M)) * gamma[static_cast<size_t>(i)] *
                                                (x.error(i) / norm + std::fabs(x.value(i)) * weighted / (norm2 * norm))
                                          : 0.0;
          bound[static_cast<size_t>(i)] = ulps(out, i, own) + moved;
        }
      }
      rule_text += ": (" + std::to_string(rule->ulps) + " + M/2) ulp + the input's bound through the norm";
      break;
    }
    case BoundKind::kGeglu: {
      // gelu(gate) * x * mult_bias: d <= |mult_bias| (|x| 1.13 dgate + |gelu(gate)| dx).
      if (floats.size() < 2 || floats[0]->tensor->num_elements() != n || floats[1]->tensor->num_elements() != n) {
        return std::nullopt;
      }
      std::vector<double> scale(static_cast<size_t>(n), 1.0);
      if (floats.size() > 2) scale = project_max(out, *floats[2], magnitudes(*floats[2]));
      for (int64_t i = 0; i < n; ++i) {
        const double x = floats[0]->value(i), g = floats[1]->value(i);
        const double gelu = 0.5 * g * (1.0 + std::erf(g / std::sqrt(2.0)));
        bound[static_cast<size_t>(i)] =
            ulps(out, i, rule->ulps) +
            scale[static_cast<size_t>(i)] *
                (std::fabs(x) * kActivationSlope * floats[1]->error(i) + std::fabs(gelu) * floats[0]->error(i));
      }
      rule_text += ": " + ulp_text + " + |b| (|x| 1.13 dgate + |gelu(gate)| dx)";
      break;
    }
    case BoundKind::kCastBfloat16: {
      // A cast: the read's bound, plus one bfloat16 ulp wherever that bound lets the
      // rounding go to the neighbouring bfloat16 value. A float32 "cast" changes nothing:
      // the read's bound alone.
      if (floats.empty()) return std::nullopt;
      const Operand& read = *floats[0];
      const std::vector<double> moved = project_bound(out, read);
      bool changed = read.tensor->num_elements() != n, representable = true;
      for (int64_t i = 0; i < n; ++i) {
        const float e = out.f32[static_cast<size_t>(i)];
        if (!changed && static_cast<double>(e) != read.value(i)) changed = true;
        uint32_t bits = 0;
        std::memcpy(&bits, &e, sizeof(bits));
        if ((bits & 0xFFFFu) != 0) representable = false;
      }
      const bool cast = changed || representable;
      for (int64_t i = 0; i < n; ++i) {
        const size_t k = static_cast<size_t>(i);
        bound[k] = moved[k] + (cast && moved[k] > 0.0 ? ulp_of(out.f32[k]) * 65536.0 : 0.0);
      }
      rule_text += cast ? ": the read's bound + 1 bfloat16 ulp where it is not 0" : ": the read's bound (float32)";
      break;
    }
    case BoundKind::kRouterProduct:
    case BoundKind::kProduct:
    case BoundKind::kProductActivation: {
      if (reads.size() < 2) {
        // The config supplied this step (logits given as an input): a copy.
        for (const Operand* read : floats) add_projected(*read, 1.0);
        rule_text = "a copy of " + (reads.empty() ? std::string("an input") : reads[0].name);
        break;
      }
      std::optional<std::vector<double>> found = product_bound(out, reads, *rule);
      if (!found) return std::nullopt;
      bound = std::move(*found);
      rule_text += " over " + std::string(rule->dims) +
                   (rule->gathered[0] != '\0' ? " (" + std::string(rule->gathered) + " selected)" : "") +
                   (rule->kind == BoundKind::kRouterProduct ? ": gamma_n sum_k |a_k b_k| + 1 ulp"
                                                            : ": 2 gamma_n sum_k |a_k b_k|") +
                   " + the operands' bounds" + (rule->kind == BoundKind::kProductActivation ? ", x 1.13, + 3 ulp" : "");
      break;
    }
    case BoundKind::kWeightedSum: {
      // sum_j w_j v[selected]: v the read with the most dims, w_j the other float reads.
      if (floats.empty()) return std::nullopt;
      const Operand* v = floats[0];
      for (const Operand* read : floats) {
        if (read->dims.size() > v->dims.size()) v = read;
      }
      const std::vector<double> v_size = project_max(out, *v, magnitudes(*v));
      const std::vector<double> v_moved = project_bound(out, *v);
      int terms = 0;
      for (const Operand* w : floats) terms += w == v ? 0 : 1;
      if (terms == 0) {
        bound = v_moved;
      } else {
        const double gamma = gamma_n(terms + 1);
        for (const Operand* w : floats) {
          if (w == v) continue;
          const std::vector<double> w_size = project_max(out, *w, magnitudes(*w));
          const std::vector<double> w_moved = project_bound(out, *w);
          for (size_t k = 0; k < bound.size(); ++k) {
            bound[k] += 2.0 * gamma * v_size[k] * w_size[k] + v_moved[k] * w_size[k] + v_size[k] * w_moved[k];
          }
        }
      }
      rule_text += ": 2 gamma_J sum_j |w_j v| + the operands' bounds";
      break;
    }
  }
  // A NaN or an infinity in the golden must be matched exactly (and passes nothing on to
  // the steps that read it); elsewhere the floor. Each element is its own: any split of
  // the threads gives the same bounds.
  const int64_t n_bound = static_cast<int64_t>(bound.size());
#pragma omp parallel for schedule(static) if (n_bound >= kParallelElements)
  for (int64_t i = 0; i < n_bound; ++i) {
    const size_t k = static_cast<size_t>(i);
    const bool finite = std::isfinite(out.f32[k]);
    bound[k] = finite && !std::isnan(bound[k]) ? std::max(bound[k], kBoundFloor) : (finite ? kInf : kBoundFloor);
  }
  std::vector<double> result = std::move(bound);
  return Float32Bound{std::move(result), "float32 " + rule_text};
}

std::optional<Float32Bound> Float32Bounds::loss(const std::string& name) {
  float value = 0.0f;
  bool found = false;
  for (const auto& [loss_name, loss_value] : golden_.losses) {
    if (loss_name == name) {
      value = loss_value;
      found = true;
    }
  }
  if (!found) return std::nullopt;
  const LossRule* rule = find_loss_rule(variant_, name, golden_);
  if (rule == nullptr) {
    // The scalar step of the same name.
    const Tensor* same = golden_.find_step(name);
    if (same == nullptr || same->num_elements() != 1 || same->dtype != DType::kFloat32) return std::nullopt;
    std::optional<Float32Bound> bound = step(name);
    if (bound) bound->rule = "float32: the bound of the step " + name;
    return bound;
  }
  Tensor out = Tensor::scalar(value);
  std::vector<BoundHeld> held;  // the reads' bounds, kept alive until this bound is made
  std::vector<Operand> reads;
  std::stringstream list(rule->reads);
  std::string read;
  while (std::getline(list, read, ',')) {
    if (read.empty()) continue;
    const std::vector<double>* bound = bound_of(read, held);
    if (bound == nullptr) continue;
    Operand operand;
    operand.name = read;
    operand.tensor = golden_.find_step(read);
    operand.bound = bound;
    operand.exact = operand.tensor->dtype != DType::kFloat32;
    operand.dims = operand.tensor->dims;
    operand.shape = operand.tensor->shape;
    reads.push_back(operand);
  }
  std::vector<double> bound(1, 0.0);
  std::string text = std::string("float32 loss, ") + bound_kind_name(rule->kind) + " of " +
                     (std::string(rule->reads).empty() ? "nothing (a constant)" : rule->reads);
  if (reads.empty()) {
    // None of the steps it is computed from ran: a constant the source returns.
    bound[0] = 0.0;
  } else if (rule->kind == BoundKind::kExact) {
    for (const Operand& operand : reads) {
      if (operand.exact) continue;
      for (size_t k = 0; k < operand.bound->size(); ++k) bound[0] = std::max(bound[0], (*operand.bound)[k]);
    }
  } else if (rule->kind == BoundKind::kRatio) {
    double rel = 0.0;
    for (const Operand& operand : reads) {
      double largest = 0.0;
      for (double r : relative(operand)) largest = std::max(largest, r);
      rel += largest;
    }
    const double own = rule->ulps + static_cast<double>(reads.size()) - 1.0;
    bound[0] = own * ulp_of(value) + std::fabs(static_cast<double>(value)) * rel;
  } else {
    std::optional<std::vector<double>> summed = sum_bound(out, reads, rule->kind, rule->ulps);
    if (!summed) return std::nullopt;
    bound = std::move(*summed);
  }
  bound[0] = !std::isfinite(value) ? kBoundFloor : (std::isnan(bound[0]) ? kInf : std::max(bound[0], kBoundFloor));
  return Float32Bound{std::move(bound), text};
}

}  // namespace moeref
