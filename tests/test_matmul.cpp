// ops::matmul: every kernel this CPU runs gives the bits of a plain scalar loop that
// sums in the documented order (k = 0 .. depth-1, float32, no FMA), for any shape,
// any way of addressing A, and any thread count.
//
// Dims: rows x depth times depth x cols (the expert layer's [G*C, M] x [M, H] and
// the dispatch/combine products are instances).
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "moeref/ops/matmul.hpp"
#include "moeref/ops/router.hpp"
#include "portable_random.hpp"
#include "test_support.hpp"

using moeref::testing::pick;
using moeref::testing::uniform_float;

namespace {

// The documented order, written as plainly as possible: the ground truth.
std::vector<float> scalar_matmul(const std::vector<float>& a, const std::vector<float>& b, int64_t rows, int64_t depth,
                                 int64_t cols) {
  std::vector<float> c(static_cast<size_t>(rows * cols));
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      float acc = 0.0f;
      for (int64_t k = 0; k < depth; ++k) {
        const float product = a[static_cast<size_t>(i * depth + k)] * b[static_cast<size_t>(k * cols + j)];
        acc = acc + product;
      }
      c[static_cast<size_t>(i * cols + j)] = acc;
    }
  }
  return c;
}

// Products::kFused, as plainly: one rounding a step, acc = fma(a, b, acc), in the same order.
std::vector<float> scalar_matmul_fused(const std::vector<float>& a, const std::vector<float>& b, int64_t rows,
                                       int64_t depth, int64_t cols) {
  std::vector<float> c(static_cast<size_t>(rows * cols));
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      float acc = 0.0f;
      for (int64_t k = 0; k < depth; ++k) {
        acc = std::fma(a[static_cast<size_t>(i * depth + k)], b[static_cast<size_t>(k * cols + j)], acc);
      }
      c[static_cast<size_t>(i * cols + j)] = acc;
    }
  }
  return c;
}

// Values with mixed signs and magnitudes (so that the order of the sum shows in the
// last bits), exact zeros of both signs, and a few subnormals.
std::vector<float> awkward_values(size_t count, uint64_t seed) {
  uint64_t state = seed;
  std::vector<float> values(count);
  for (size_t i = 0; i < count; ++i) {
    const double scale = (i % 7 == 0) ? 1000.0 : (i % 5 == 0 ? 0.001 : 1.0);
    values[i] = uniform_float(state, -scale, scale);
    if (i % 23 == 0) values[i] = 0.0f;
    if (i % 29 == 0) values[i] = -0.0f;
    if (i % 31 == 0) values[i] = std::numeric_limits<float>::denorm_min() * 3.0f;
  }
  return values;
}

bool same_bits(const std::vector<float>& x, const std::vector<float>& y) {
  return x.size() == y.size() && (x.empty() || std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0);
}

// Bits equal, except that any two NaNs match: which NaN's payload and sign survive
// NaN + NaN depends on the operand order the compiler picks for one add (x86 keeps the
// first operand's), so neither the plain loop nor a kernel fixes it. Traces write every
// NaN as "NaN".
bool same_bits_any_nan(const std::vector<float>& x, const std::vector<float>& y) {
  if (x.size() != y.size()) return false;
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i]) && std::isnan(y[i])) continue;
    if (std::memcmp(&x[i], &y[i], sizeof(float)) != 0) return false;
  }
  return true;
}

// Index of the first element whose bits differ, or -1.
int64_t first_difference(const std::vector<float>& x, const std::vector<float>& y) {
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
    if (std::memcmp(&x[i], &y[i], sizeof(float)) != 0) return static_cast<int64_t>(i);
  }
  return x.size() == y.size() ? -1 : static_cast<int64_t>(std::min(x.size(), y.size()));
}

// Restores the kernel a test started with, however it ends.
struct KernelGuard {
  std::string saved = moeref::ops::matmul_kernel();
  ~KernelGuard() { moeref::ops::select_matmul_kernel(saved); }
};

struct Shape {
  int64_t rows, depth, cols;
};

// Edge sizes (0, 1, odd, one off each tile size), a few that span several tiles, and
// depths over one block of k (256, 512 and more: whole and edge tiles carry their sums
// from block to block).
std::vector<Shape> test_shapes() {
  std::vector<Shape> shapes = {{0, 0, 0},     {0, 5, 3},    {4, 0, 3},    {3, 5, 0},      {1, 1, 1},
                               {1, 7, 1},     {7, 1, 9},    {5, 3, 7},    {6, 8, 16},     {8, 13, 48},
                               {9, 17, 49},   {13, 33, 47}, {7, 64, 8},   {17, 2, 97},    {25, 100, 65},
                               {48, 31, 130}, {3, 257, 5},  {9, 256, 97}, {13, 513, 100}, {6, 700, 33}};
  // Random shapes, reproducible: each dim in [1, 70].
  uint64_t state = 99;
  for (int i = 0; i < 12; ++i) {
    const int64_t rows = pick(state, 1, 70), depth = pick(state, 1, 70), cols = pick(state, 1, 70);
    shapes.push_back({rows, depth, cols});
  }
  return shapes;
}

}  // namespace

TEST_CASE("matmul: every kernel on this CPU gives the scalar loop's bits", "[ops][matmul]") {
  KernelGuard guard;
  const std::vector<std::string> kernels = moeref::ops::matmul_kernels_available();
  REQUIRE(!kernels.empty());
  CHECK(kernels.back() == "generic");
  uint64_t seed = 1;
  for (const Shape& shape : test_shapes()) {
    const std::vector<float> a = awkward_values(static_cast<size_t>(shape.rows * shape.depth), seed++);
    const std::vector<float> b = awkward_values(static_cast<size_t>(shape.depth * shape.cols), seed++);
    const std::vector<float> expected = scalar_matmul(a, b, shape.rows, shape.depth, shape.cols);
    for (const std::string& kernel : kernels) {
      INFO("kernel " << kernel << ", rows " << shape.rows << ", depth " << shape.depth << ", cols " << shape.cols);
      REQUIRE(moeref::ops::select_matmul_kernel(kernel));
      // NaN-filled output: every element must be written.
      std::vector<float> c(expected.size(), std::numeric_limits<float>::quiet_NaN());
      moeref::ops::matmul(a.data(), b.data(), c.data(), shape.rows, shape.depth, shape.cols);
      INFO("first differing element " << first_difference(c, expected));
      CHECK(same_bits(c, expected));
    }
  }
}

TEST_CASE("matmul: A as int32, transposed, and rows gathered and scattered", "[ops][matmul]") {
  KernelGuard guard;
  // A [rows, depth] stored transposed as int32 0/1 values (a dispatch tensor [S, E*C]
  // read as [E*C, S]); B's rows and C's rows in reversed order in memory.
  // Depth 530: three blocks of k, each A value read through the transposed int32 view.
  const int64_t depth = GENERATE(11, 530);
  const int64_t rows = 19, cols = 23;
  std::vector<int32_t> a_stored(static_cast<size_t>(depth * rows));  // [depth, rows]
  std::vector<float> a(static_cast<size_t>(rows * depth));           // [rows, depth]
  uint64_t state = 5;
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t k = 0; k < depth; ++k) {
      const int32_t value = pick(state, 0, 2) == 0 ? 1 : 0;
      a_stored[static_cast<size_t>(k * rows + i)] = value;
      a[static_cast<size_t>(i * depth + k)] = static_cast<float>(value);
    }
  }
  const std::vector<float> b = awkward_values(static_cast<size_t>(depth * cols), 6);
  const std::vector<float> expected = scalar_matmul(a, b, rows, depth, cols);

  std::vector<const float*> b_rows(static_cast<size_t>(depth));
  std::vector<float> b_reversed(b.size());  // row k of B at row depth-1-k
  for (int64_t k = 0; k < depth; ++k) {
    std::memcpy(b_reversed.data() + (depth - 1 - k) * cols, b.data() + k * cols, static_cast<size_t>(cols) * 4);
  }
  for (int64_t k = 0; k < depth; ++k) b_rows[static_cast<size_t>(k)] = b_reversed.data() + (depth - 1 - k) * cols;

  for (const std::string& kernel : moeref::ops::matmul_kernels_available()) {
    INFO("kernel " << kernel);
    REQUIRE(moeref::ops::select_matmul_kernel(kernel));
    std::vector<float> c_reversed(expected.size(), std::numeric_limits<float>::quiet_NaN());
    std::vector<float*> c_rows(static_cast<size_t>(rows));
    for (int64_t i = 0; i < rows; ++i) c_rows[static_cast<size_t>(i)] = c_reversed.data() + (rows - 1 - i) * cols;
    const moeref::ops::MatmulLhs a_transposed{nullptr, a_stored.data(), 1, rows};
    moeref::ops::matmul(rows, depth, cols, a_transposed, b_rows.data(), c_rows.data());
    std::vector<float> c(expected.size());
    for (int64_t i = 0; i < rows; ++i) {
      std::memcpy(c.data() + i * cols, c_rows[static_cast<size_t>(i)], static_cast<size_t>(cols) * 4);
    }
    INFO("first differing element " << first_difference(c, expected));
    CHECK(same_bits(c, expected));
  }
}

// A [rows, depth] whose rows are mostly zeros in every way ops::matmul tells apart:
// all zeros (+0 and -0), one nonzero, exactly depth / 8 nonzeros (the most a row may
// have and still be summed from its nonzeros), one more, and a full row; with a NaN,
// an infinity and a product that underflows to -0 among the nonzeros.
std::vector<float> mostly_zero_rows(int64_t rows, int64_t depth, uint64_t seed) {
  const std::vector<float> values = awkward_values(static_cast<size_t>(rows * depth), seed);
  std::vector<float> a(values.size(), 0.0f);
  uint64_t state = seed;
  for (int64_t i = 0; i < rows; ++i) {
    float* row = a.data() + i * depth;
    const int64_t kind = i % 6;
    const int64_t nonzeros = kind == 0 ? 0 : kind == 1 ? 1 : kind == 2 ? depth / 8 : kind == 3 ? depth / 8 + 1 : depth;
    for (int64_t k = 0; k < depth; ++k) row[k] = k % 3 == 0 ? -0.0f : 0.0f;
    for (int64_t n = 0; n < nonzeros; ++n) {
      const int64_t k = nonzeros == depth ? n : pick(state, 0, depth - 1);
      const float value = values[static_cast<size_t>(i * depth + k)];
      row[k] = value != 0.0f ? value : 0.25f;
    }
    if (kind == 4) row[pick(state, 0, depth - 1)] = -std::numeric_limits<float>::denorm_min();  // * 0.5 is -0
  }
  a[static_cast<size_t>(7 * depth + 3)] = std::numeric_limits<float>::quiet_NaN();
  a[static_cast<size_t>(13 * depth + 5)] = std::numeric_limits<float>::infinity();
  return a;
}

TEST_CASE("matmul: rows of A that are mostly zeros give the dense sum's bits, non-finite values included",
          "[ops][matmul]") {
  KernelGuard guard;
  // 21 columns: every tile at the edge of C; 130: whole 4 x 96 tiles written straight into
  // the rows of C that the busy rows of A own, between the sparse ones.
  const int64_t cols = GENERATE(21, 130);
  // Depth 600: the dense rows' sums carried from block to block of k, non-finite ones too.
  const int64_t depth = GENERATE(64, 600);
  const int64_t rows = 37;
  const std::vector<float> a = mostly_zero_rows(rows, depth, 41);
  std::vector<float> a_transposed(a.size());  // [depth, rows], as a dispatch tensor is read
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t k = 0; k < depth; ++k)
      a_transposed[static_cast<size_t>(k * rows + i)] = a[static_cast<size_t>(i * depth + k)];
  }
  std::vector<float> b = awkward_values(static_cast<size_t>(depth * cols), 42);
  b[5] = 0.5f;  // the row with -denorm_min meets 0.5 somewhere
  std::vector<float> b_with_inf = b, b_with_nan = b;
  b_with_inf[static_cast<size_t>(9 * cols + 4)] = -std::numeric_limits<float>::infinity();
  b_with_nan[static_cast<size_t>(30 * cols + 11)] = std::numeric_limits<float>::quiet_NaN();

  for (const std::vector<float>* rhs : {&b, &b_with_inf, &b_with_nan}) {
    const std::vector<float> expected = scalar_matmul(a, *rhs, rows, depth, cols);
    std::vector<const float*> b_rows(static_cast<size_t>(depth));
    for (int64_t k = 0; k < depth; ++k) b_rows[static_cast<size_t>(k)] = rhs->data() + k * cols;
    for (const std::string& kernel : moeref::ops::matmul_kernels_available()) {
      REQUIRE(moeref::ops::select_matmul_kernel(kernel));
      for (const bool transposed : {false, true}) {
        INFO("kernel " << kernel << ", B "
                       << (rhs == &b            ? "finite"
                           : rhs == &b_with_inf ? "with -inf"
                                                : "with NaN")
                       << (transposed ? ", A transposed" : ""));
        std::vector<float> c(expected.size(), std::numeric_limits<float>::quiet_NaN());
        std::vector<float*> c_rows(static_cast<size_t>(rows));
        for (int64_t i = 0; i < rows; ++i) c_rows[static_cast<size_t>(i)] = c.data() + i * cols;
        const moeref::ops::MatmulLhs lhs = transposed ? moeref::ops::MatmulLhs{a_transposed.data(), nullptr, 1, rows}
                                                      : moeref::ops::MatmulLhs{a.data(), nullptr, depth, 1};
        moeref::ops::matmul(rows, depth, cols, lhs, b_rows.data(), c_rows.data());
        INFO("first differing element " << first_difference(c, expected));
        CHECK(same_bits_any_nan(c, expected));
      }
    }
  }
  // The cases are real: the finite product has +0 rows and a NaN row, the one with
  // -inf a NaN where a zero row meets it.
  const std::vector<float> finite = scalar_matmul(a, b, rows, depth, cols);
  CHECK(std::signbit(finite[0]) == false);
  CHECK(finite[0] == 0.0f);
  CHECK(std::isnan(finite[static_cast<size_t>(7 * cols)]));
  CHECK(std::isnan(scalar_matmul(a, b_with_inf, rows, depth, cols)[static_cast<size_t>(4)]));
}

TEST_CASE("matmul: fused products give the scalar fma loop's bits where the kernel fuses, the separate sum elsewhere",
          "[ops][matmul][fast]") {
  KernelGuard guard;
  bool some_kernel_fuses = false, fusing_changed_a_bit = false;
  std::vector<Shape> shapes = test_shapes();
  shapes.push_back({37, 64, 130});  // with mostly-zero rows below: sparse rows fused too
  uint64_t seed = 500;
  for (size_t s = 0; s < shapes.size(); ++s) {
    const Shape& shape = shapes[s];
    const bool sparse = s + 1 == shapes.size();
    const std::vector<float> a = sparse ? mostly_zero_rows(shape.rows, shape.depth, seed++)
                                        : awkward_values(static_cast<size_t>(shape.rows * shape.depth), seed++);
    const std::vector<float> b = awkward_values(static_cast<size_t>(shape.depth * shape.cols), seed++);
    const std::vector<float> separate = scalar_matmul(a, b, shape.rows, shape.depth, shape.cols);
    const std::vector<float> fused = scalar_matmul_fused(a, b, shape.rows, shape.depth, shape.cols);
    fusing_changed_a_bit = fusing_changed_a_bit || !same_bits_any_nan(separate, fused);
    for (const std::string& kernel : moeref::ops::matmul_kernels_available()) {
      REQUIRE(moeref::ops::select_matmul_kernel(kernel));
      const std::string fused_kernel = moeref::ops::fused_matmul_kernel();
      INFO("kernel " << kernel << " (fused: " << fused_kernel << "), rows " << shape.rows << ", depth " << shape.depth
                     << ", cols " << shape.cols);
      CHECK((fused_kernel.empty() || fused_kernel == kernel + "-fma"));
      CHECK((kernel != "generic" || fused_kernel.empty()));
      some_kernel_fuses = some_kernel_fuses || !fused_kernel.empty();
      std::vector<float> c(separate.size(), std::numeric_limits<float>::quiet_NaN());
      moeref::ops::matmul(a.data(), b.data(), c.data(), shape.rows, shape.depth, shape.cols,
                          moeref::ops::Products::kFused);
      const std::vector<float>& expected = fused_kernel.empty() ? separate : fused;
      INFO("first differing element " << first_difference(c, expected));
      CHECK(same_bits_any_nan(c, expected));
    }
  }
  // The two sums really differ on these values, so the comparison tells them apart.
  CHECK(fusing_changed_a_bit);
  // AVX-512F has fused multiply-adds of its own: where it runs, the fused tiles were tested.
  const std::vector<std::string> kernels = moeref::ops::matmul_kernels_available();
  if (std::find(kernels.begin(), kernels.end(), "avx512") != kernels.end()) CHECK(some_kernel_fuses);
}

TEST_CASE("matmul: a one-hot int32 A read transposed (a dispatch tensor) gives the dense sum's bits", "[ops][matmul]") {
  KernelGuard guard;
  // dispatch [S, E*C] read as A [E*C, S]: each slot row holds at most one 1, and some none.
  const int64_t slots = 45, tokens = 30, cols = 130;
  std::vector<int32_t> dispatch(static_cast<size_t>(tokens * slots), 0);  // [S, E*C]
  std::vector<float> a(static_cast<size_t>(slots * tokens), 0.0f);        // [E*C, S]
  for (int64_t slot = 0; slot < slots; slot += 1) {
    if (slot % 4 == 3) continue;  // an empty slot
    const int64_t token = (slot * 7) % tokens;
    dispatch[static_cast<size_t>(token * slots + slot)] = 1;
    a[static_cast<size_t>(slot * tokens + token)] = 1.0f;
  }
  const std::vector<float> b = awkward_values(static_cast<size_t>(tokens * cols), 8);
  const std::vector<float> expected = scalar_matmul(a, b, slots, tokens, cols);
  std::vector<const float*> b_rows(static_cast<size_t>(tokens));
  for (int64_t k = 0; k < tokens; ++k) b_rows[static_cast<size_t>(k)] = b.data() + k * cols;
  for (const std::string& kernel : moeref::ops::matmul_kernels_available()) {
    INFO("kernel " << kernel);
    REQUIRE(moeref::ops::select_matmul_kernel(kernel));
    std::vector<float> c(expected.size(), std::numeric_limits<float>::quiet_NaN());
    std::vector<float*> c_rows(static_cast<size_t>(slots));
    for (int64_t i = 0; i < slots; ++i) c_rows[static_cast<size_t>(i)] = c.data() + i * cols;
    moeref::ops::matmul(slots, tokens, cols, moeref::ops::MatmulLhs{nullptr, dispatch.data(), 1, slots}, b_rows.data(),
                        c_rows.data());
    INFO("first differing element " << first_difference(c, expected));
    CHECK(same_bits(c, expected));
  }
}

TEST_CASE("matmul: products on 1 and 2 threads give the same bits", "[ops][matmul]") {
  // Independent products in a parallel loop, as the expert layer runs them: each
  // thread packs into its own workspace, reused across calls of different sizes.
  const int64_t problems = 6;
  std::vector<Shape> shapes;
  std::vector<std::vector<float>> as, bs;
  for (int64_t p = 0; p < problems; ++p) {
    shapes.push_back({10 + 7 * p, 30 + 110 * p, 20 + 13 * p});  // depths up to 580: several blocks of k
    const Shape& shape = shapes.back();
    as.push_back(awkward_values(static_cast<size_t>(shape.rows * shape.depth), static_cast<uint64_t>(40 + 2 * p)));
    bs.push_back(awkward_values(static_cast<size_t>(shape.depth * shape.cols), static_cast<uint64_t>(41 + 2 * p)));
  }
  const auto run_all = [&](int threads) {
    std::vector<std::vector<float>> cs(static_cast<size_t>(problems));
#pragma omp parallel for schedule(static, 1) num_threads(threads)
    for (int64_t p = 0; p < problems; ++p) {
      const Shape& shape = shapes[static_cast<size_t>(p)];
      std::vector<float>& c = cs[static_cast<size_t>(p)];
      c.assign(static_cast<size_t>(shape.rows * shape.cols), std::numeric_limits<float>::quiet_NaN());
      moeref::ops::matmul(as[static_cast<size_t>(p)].data(), bs[static_cast<size_t>(p)].data(), c.data(), shape.rows,
                          shape.depth, shape.cols);
    }
    return cs;
  };
  const std::vector<std::vector<float>> one = run_all(1);
  const std::vector<std::vector<float>> two = run_all(2);
  for (int64_t p = 0; p < problems; ++p) {
    const Shape& shape = shapes[static_cast<size_t>(p)];
    INFO("problem " << p);
    CHECK(same_bits(one[static_cast<size_t>(p)], two[static_cast<size_t>(p)]));
    CHECK(same_bits(one[static_cast<size_t>(p)], scalar_matmul(as[static_cast<size_t>(p)], bs[static_cast<size_t>(p)],
                                                               shape.rows, shape.depth, shape.cols)));
  }
}

TEST_CASE("matmul: MOEREF_MATMUL_KERNEL=generic writes the same trace bytes as the default kernel",
          "[ops][matmul][cli]") {
  const std::string dir = moeref::testing::temp_dir("matmul_kernel_env");
  nlohmann::json config = moeref::testing::tiny_mtf_top2_layer_config();
  config["dims"]["M"] = 13;  // odd sizes: partial tiles everywhere
  config["dims"]["H"] = 21;
  moeref::testing::write_text(dir + "/config.json", config.dump());
  const std::string run = "run " + dir + "/config.json -o " + dir;
  const auto widest = moeref::testing::run_cli(run + "/default.json");
  const auto generic = moeref::testing::run_cli_env("MOEREF_MATMUL_KERNEL=generic", run + "/generic.json");
  INFO(widest.output << generic.output);
  REQUIRE(widest.exit_code == 0);
  REQUIRE(generic.exit_code == 0);
  CHECK(moeref::testing::read_text(dir + "/generic.json") == moeref::testing::read_text(dir + "/default.json"));

  const auto unknown = moeref::testing::run_cli_env("MOEREF_MATMUL_KERNEL=sse9", run + "/unknown.json");
  CHECK(unknown.exit_code == 2);
  CHECK_THAT(unknown.output,
             Catch::Contains("MOEREF_MATMUL_KERNEL") && Catch::Contains("sse9") && Catch::Contains("generic"));
}

TEST_CASE("router logits: every kernel on this CPU gives the plain double sum's bits", "[ops][matmul][router]") {
  KernelGuard guard;
  // 37 experts: two wide blocks of 16 and 5 left to the plain loop; 19 tokens: whole
  // groups of the wide kernels' tokens and some left over.
  const int64_t tokens = 19, model_dim = 300, num_experts = 37;
  const std::vector<float> x = awkward_values(static_cast<size_t>(tokens * model_dim), 71);
  const std::vector<float> w = awkward_values(static_cast<size_t>(model_dim * num_experts), 72);
  std::vector<float> expected(static_cast<size_t>(tokens * num_experts));
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t e = 0; e < num_experts; ++e) {
      double sum = 0.0;
      for (int64_t m = 0; m < model_dim; ++m) {
        sum = sum + static_cast<double>(x[static_cast<size_t>(t * model_dim + m)]) *
                        static_cast<double>(w[static_cast<size_t>(m * num_experts + e)]);
      }
      expected[static_cast<size_t>(t * num_experts + e)] = static_cast<float>(sum);
    }
  }
  for (const std::string& kernel : moeref::ops::matmul_kernels_available()) {
    INFO("kernel " << kernel);
    REQUIRE(moeref::ops::select_matmul_kernel(kernel));
    std::vector<float> logits(expected.size(), std::numeric_limits<float>::quiet_NaN());
    moeref::ops::router_logits(x.data(), w.data(), tokens, model_dim, num_experts, logits.data());
    INFO("first differing element " << first_difference(logits, expected));
    CHECK(same_bits(logits, expected));
  }
}
