#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "moeref/check.hpp"
#include "moeref/error.hpp"
#include "moeref/json_number.hpp"

namespace moeref {

namespace {

std::string value_text(const Tensor& tensor, int64_t i) {
  if (tensor.dtype == DType::kInt32) return std::to_string(tensor.i32[static_cast<size_t>(i)]);
  std::string out;
  append_float32(out, tensor.f32[static_cast<size_t>(i)]);
  if (out.front() == '"') out = out.substr(1, out.size() - 2);
  return out;
}

// Up to two neighbours either side along the last dim: "e[0]=1/1 e[1]=0.5/0.4* ...".
std::string neighbours_text(const Tensor& expected, const Tensor& actual, int64_t flat) {
  if (expected.shape.empty()) return "";
  const int64_t last = expected.shape.back();
  const int64_t position = last > 0 ? flat % last : 0;
  const int64_t row_start = flat - position;
  std::string out;
  for (int64_t p = std::max<int64_t>(0, position - 2); p < std::min<int64_t>(last, position + 3); ++p) {
    if (!out.empty()) out += "  ";
    std::string letter = expected.dims.back();
    for (char& ch : letter) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    out += letter + "=" + std::to_string(p) + ": " + value_text(expected, row_start + p) + " vs " +
           value_text(actual, row_start + p) + (p == position ? " <-" : "");
  }
  return out;
}

ElementDiff make_diff(const Tensor& expected, const Tensor& actual, int64_t i, double abs_error, double rel_error,
                      double bound) {
  ElementDiff diff;
  diff.flat_index = i;
  diff.index = expected.named_index(i);
  diff.expected = value_text(expected, i);
  diff.actual = value_text(actual, i);
  diff.abs_error = abs_error;
  diff.rel_error = rel_error;
  diff.bound = bound;
  diff.ulps = std::nan("");
  if (expected.dtype == DType::kFloat32) {
    const double ulp = ulp_of(expected.f32[static_cast<size_t>(i)]);
    diff.ulps = ulp > 0.0 ? abs_error / ulp : abs_error;
  }
  diff.neighbours = neighbours_text(expected, actual, i);
  return diff;
}

// memcmp(a, b, size) == 0; a large buffer (the weights of a layer are hundreds of MB) in
// slices shared among the threads.
bool same_bytes(const char* a, const char* b, size_t size) {
  constexpr size_t kSlice = size_t{1} << 20;
  if (size < 8 * kSlice) return size == 0 || std::memcmp(a, b, size) == 0;
  const int64_t slices = static_cast<int64_t>((size + kSlice - 1) / kSlice);
  std::atomic<bool> differ{false};
#pragma omp parallel for schedule(static)
  for (int64_t slice = 0; slice < slices; ++slice) {
    if (differ.load(std::memory_order_relaxed)) continue;
    const size_t begin = static_cast<size_t>(slice) * kSlice;
    if (std::memcmp(a + begin, b + begin, std::min(kSlice, size - begin)) != 0) {
      differ.store(true, std::memory_order_relaxed);
    }
  }
  return !differ.load();
}

// Same dims, shape, dtype and bits (so +0 and -0 differ, and a NaN matches only its own bits).
bool bit_identical(const Tensor& expected, const Tensor& actual) {
  if (expected.dims != actual.dims || expected.shape != actual.shape || expected.dtype != actual.dtype) return false;
  if (expected.dtype == DType::kFloat32) {
    return expected.f32.size() == actual.f32.size() &&
           same_bytes(reinterpret_cast<const char*>(expected.f32.data()),
                      reinterpret_cast<const char*>(actual.f32.data()), expected.f32.size() * sizeof(float));
  }
  return expected.i32.size() == actual.i32.size() &&
         same_bytes(reinterpret_cast<const char*>(expected.i32.data()),
                    reinterpret_cast<const char*>(actual.i32.data()), expected.i32.size() * sizeof(int32_t));
}

// Compares two tensors of identical structure; fills mismatches, first, worst.
void compare_values(const Tensor& expected, const Tensor& actual, const StepTolerance* tolerance,
                    TensorResult& result) {
  const int64_t n = expected.num_elements();
  result.total = n;
  // Identical bits pass under every rule and leave bound_used at 0, as the loop would:
  // skipping it makes a passing check of large traces run at memory speed.
  if (bit_identical(expected, actual)) {
    result.status = TensorStatus::kMatch;
    return;
  }
  // What one stretch of elements found; stretches merged in order give the serial
  // loop's answer (the first mismatch, the first of the worst, the largest bound used).
  struct Found {
    int64_t mismatches = 0;
    std::optional<ElementDiff> first, worst;
    double worst_score = -1.0, bound_used = 0.0;
  };
  auto scan = [&](int64_t begin, int64_t end, Found& found) {
    for (int64_t i = begin; i < end; ++i) {
      bool differs = false;
      double abs_error = 0.0, rel_error = 0.0, score = 0.0, bound = 0.0;
      if (expected.dtype == DType::kInt32) {
        const int64_t a = expected.i32[static_cast<size_t>(i)], b = actual.i32[static_cast<size_t>(i)];
        differs = a != b;
        abs_error = static_cast<double>(a > b ? a - b : b - a);
        rel_error = std::nan("");  // an integer decision has no relative error
        bound = std::nan("");
        score = abs_error;
      } else {
        const double e = expected.f32[static_cast<size_t>(i)], a = actual.f32[static_cast<size_t>(i)];
        bound = tolerance == nullptr ? 0.0 : tolerance->allowed_at(i, e);
        if (std::isnan(e) || std::isnan(a)) {
          differs = std::isnan(e) != std::isnan(a);
          score = differs ? INFINITY : 0.0;
          abs_error = differs ? INFINITY : 0.0;
          rel_error = abs_error;
        } else if (std::isinf(e) || std::isinf(a)) {
          differs = e != a;
          score = differs ? INFINITY : 0.0;
          abs_error = differs ? INFINITY : 0.0;
          rel_error = abs_error;
        } else if (tolerance == nullptr) {
          // Inputs are compared bit for bit: a replay must start from the same numbers.
          differs = std::signbit(e) != std::signbit(a) || e != a;
          abs_error = std::fabs(a - e);
          rel_error = e != 0.0 ? abs_error / std::fabs(e) : (abs_error > 0 ? INFINITY : 0.0);
          score = abs_error;
        } else {
          abs_error = std::fabs(a - e);
          rel_error = e != 0.0 ? abs_error / std::fabs(e) : (abs_error > 0 ? INFINITY : 0.0);
          differs = abs_error > bound;
          score = bound > 0.0 ? abs_error / bound : (abs_error > 0.0 ? INFINITY : 0.0);
          found.bound_used = std::max(found.bound_used, score);
        }
      }
      if (!differs) continue;
      ++found.mismatches;
      if (!found.first) found.first = make_diff(expected, actual, i, abs_error, rel_error, bound);
      if (score > found.worst_score) {
        found.worst_score = score;
        found.worst = make_diff(expected, actual, i, abs_error, rel_error, bound);
      }
    }
  };
  // Most stretches of a float step hold only finite values within their bounds, and then
  // all they report is the largest |actual - expected| / bound. This pass finds that
  // with no branch per element (so the compiler vectorises it, divisions included) and
  // says whether the stretch is so; the loop above runs only where it is not. An element
  // is plain when |a - e| is finite (neither value a NaN or an infinity) and at most its
  // bound: then the loop above finds it passing with the same score, bound > 0 ? |a - e|
  // / bound : 0.
  auto plain_scan = [&](int64_t begin, int64_t end, const auto& bound_at, Found& found) {
    constexpr int kLanes = 8;
    double largest[kLanes] = {};
    int64_t not_plain = 0;
    const float* e_values = expected.f32.data();
    const float* a_values = actual.f32.data();
    auto visit = [&](int64_t i, int lane) {
      const double e = e_values[i], a = a_values[i];
      const double bound = bound_at(i, e);
      const double abs_error = std::fabs(a - e);
      const bool plain = abs_error <= bound && abs_error < INFINITY;
      not_plain += plain ? 0 : 1;
      const double score = plain && bound > 0.0 ? abs_error / bound : 0.0;
      largest[lane] = score > largest[lane] ? score : largest[lane];
    };
    int64_t i0 = begin;
    for (; i0 + kLanes <= end; i0 += kLanes) {
      for (int lane = 0; lane < kLanes; ++lane) visit(i0 + lane, lane);
    }
    for (int lane = 0; i0 + lane < end; ++lane) visit(i0 + lane, lane);
    if (not_plain > 0) return false;
    for (const double lane_largest : largest) found.bound_used = std::max(found.bound_used, lane_largest);
    return true;
  };
  auto scan_fast = [&](int64_t begin, int64_t end, Found& found) {
    if (expected.dtype == DType::kFloat32 && tolerance != nullptr) {
      const std::vector<double>* bounds = tolerance->bounds();
      bool plain = false;
      if (bounds == nullptr) {
        const Tolerance rule = tolerance->tolerance();
        plain = plain_scan(
            begin, end, [&rule](int64_t, double e) { return rule.allowed(e); }, found);
      } else if (static_cast<int64_t>(bounds->size()) >= end) {
        const double* bound_values = bounds->data();
        plain = plain_scan(
            begin, end, [bound_values](int64_t i, double) { return bound_values[i]; }, found);
      }
      if (plain) return;
    }
    scan(begin, end, found);
  };
  // Stretches of a fixed size, so the split never depends on the thread count.
  constexpr int64_t kStretch = int64_t{1} << 16;
  const int64_t stretches = (n + kStretch - 1) / kStretch;
  std::vector<Found> found(static_cast<size_t>(stretches));
#pragma omp parallel for schedule(static) if (stretches > 1)
  for (int64_t c = 0; c < stretches; ++c) {
    scan_fast(c * kStretch, std::min(n, (c + 1) * kStretch), found[static_cast<size_t>(c)]);
  }
  double worst_score = -1.0;
  for (Found& part : found) {
    result.mismatches += part.mismatches;
    result.bound_used = std::max(result.bound_used, part.bound_used);
    if (!result.first && part.first) result.first = std::move(part.first);
    if (part.worst && part.worst_score > worst_score) {
      worst_score = part.worst_score;
      result.worst = std::move(part.worst);
    }
  }
  result.status = result.mismatches == 0 ? TensorStatus::kMatch : TensorStatus::kMismatch;
}

TensorResult compare_tensor(const std::string& section, const std::string& name, const Tensor& expected,
                            const Tensor* actual, const StepTolerance* tolerance) {
  TensorResult result;
  result.section = section;
  result.name = name;
  result.dtype = dtype_name(expected.dtype);
  result.total = expected.num_elements();
  if (actual == nullptr) {
    result.status = TensorStatus::kNotChecked;
    result.message = "absent from the candidate: not checked";
    return result;
  }
  if (actual->dims != expected.dims || actual->shape != expected.shape) {
    result.status = TensorStatus::kStructure;
    result.message = "expected shape " + expected.shape_string() + ", candidate has " + actual->shape_string();
    return result;
  }
  if (actual->dtype != expected.dtype) {
    result.status = TensorStatus::kStructure;
    result.message =
        std::string("expected dtype ") + dtype_name(expected.dtype) + ", candidate has " + dtype_name(actual->dtype);
    return result;
  }
  compare_values(expected, *actual, expected.dtype == DType::kFloat32 ? tolerance : nullptr, result);
  if (expected.dtype == DType::kFloat32 && tolerance != nullptr) result.tolerance = tolerance->rule();
  if (result.status == TensorStatus::kMismatch) {
    result.message = std::to_string(result.mismatches) + " of " + std::to_string(result.total) + " elements differ";
  }
  return result;
}

TensorResult structure_result(const std::string& section, const std::string& name, const std::string& message) {
  TensorResult result;
  result.section = section;
  result.name = name;
  result.status = TensorStatus::kStructure;
  result.message = message;
  return result;
}

// A config field that changes the numbers must agree: scope, train, every dim and
// every hparam; the seed too, unless the candidate carries every golden input (then
// nothing it would generate from the seed is used). A candidate without a config, or
// without one of these fields, is not judged on it.
void compare_configs(const Trace& golden, const Trace& candidate, std::vector<TensorResult>& results) {
  const nlohmann::json& want = golden.config;
  const nlohmann::json& got = candidate.config;
  if (!want.is_object() || !got.is_object()) return;
  auto differs = [&](const std::string& name, const nlohmann::json& expected, const nlohmann::json& actual) {
    results.push_back(structure_result(
        "config", name,
        "expected " + expected.dump() + ", candidate has " + actual.dump() + " (a config that changes the numbers)"));
  };
  for (const char* field : {"scope", "train"}) {
    if (want.contains(field) && got.contains(field) && want[field] != got[field]) {
      differs(field, want[field], got[field]);
    }
  }
  for (const char* group : {"dims", "hparams"}) {
    if (!want.contains(group) || !got.contains(group)) continue;
    const nlohmann::json& expected = want[group];
    const nlohmann::json& actual = got[group];
    if (!expected.is_object() || !actual.is_object()) {
      if (expected != actual) differs(group, expected, actual);
      continue;
    }
    for (auto it = expected.begin(); it != expected.end(); ++it) {
      const nlohmann::json absent = "(absent)";
      const nlohmann::json& other = actual.contains(it.key()) ? actual[it.key()] : absent;
      if (it.value() != other) differs(std::string(group) + "." + it.key(), it.value(), other);
    }
    for (auto it = actual.begin(); it != actual.end(); ++it) {
      if (!expected.contains(it.key())) differs(std::string(group) + "." + it.key(), "(absent)", it.value());
    }
  }
  if (want.contains("seed") && got.contains("seed") && want["seed"] != got["seed"]) {
    bool every_input = true;
    for (const NamedTensor& input : golden.inputs) every_input = every_input && candidate.find_input(input.name);
    if (!every_input) differs("seed", want["seed"], got["seed"]);
  }
}

// The golden steps that read `first`, directly or through other steps. A step whose
// reads the golden does not record counts as reading it.
std::set<std::string> steps_reading(const Trace& golden, const std::string& first) {
  std::set<std::string> dependents;
  bool after = false;
  for (const NamedTensor& step : golden.steps) {
    if (step.name == first) {
      after = true;
      continue;
    }
    if (!after) continue;
    const auto reads = golden.reads.find(step.name);
    bool reads_first = reads == golden.reads.end();
    if (!reads_first) {
      for (const std::string& read : reads->second)
        reads_first = reads_first || read == first || dependents.count(read);
    }
    if (reads_first) dependents.insert(step.name);
  }
  return dependents;
}

}  // namespace

CheckReport compare_traces(const Trace& golden, const Trace& candidate, const CheckOptions& options) {
  auto variant_of = [](const Trace& trace, const std::string& fallback, const char* which) {
    if (!trace.config.contains("variant")) return fallback;
    const nlohmann::json& variant = trace.config["variant"];
    if (!variant.is_string()) fail_input(std::string(which) + " config.variant", variant.dump(), "a variant id string");
    return variant.get<std::string>();
  };
  const std::string golden_variant = variant_of(golden, "", "golden");
  const std::string candidate_variant = variant_of(candidate, golden_variant, "candidate");
  if (candidate_variant != golden_variant) {
    fail_input("candidate config.variant", "\"" + candidate_variant + "\"",
               "\"" + golden_variant + "\" (the golden's variant)");
  }
  CheckReport report;
  compare_configs(golden, candidate, report.results);
  // Bounds are resolved only for what the candidate has (a float32 default bound needs
  // the bounds of everything its step reads, found on demand).
  Float32Bounds defaults(golden);
  std::map<std::string, StepTolerance> resolved;
  // A candidate tensor that holds the golden's bits needs no bound: deriving one costs as
  // much as the golden's own products, and every rule passes a difference of zero.
  const StepTolerance identical(Tolerance{0.0, 0.0}, "bit-identical to the golden (no bound needed)");
  auto tolerance_for = [&](const std::string& name, bool loss) -> const StepTolerance* {
    const std::string key = (loss ? "losses." : "steps.") + name;
    auto it = resolved.find(key);
    if (it == resolved.end()) {
      it = resolved.emplace(key, tolerance_for_step(options, candidate, name, defaults, loss)).first;
    }
    return &it->second;
  };

  // The capacity used is an integer decision: exact.
  if (golden.capacity.contains("expert_capacity") && candidate.capacity.contains("expert_capacity")) {
    TensorResult result;
    result.section = "capacity";
    result.name = "expert_capacity";
    result.dtype = "int32";
    result.total = 1;
    if (golden.capacity["expert_capacity"] != candidate.capacity["expert_capacity"]) {
      result.status = TensorStatus::kMismatch;
      result.mismatches = 1;
      result.message = "expected " + golden.capacity["expert_capacity"].dump() + ", candidate has " +
                       candidate.capacity["expert_capacity"].dump();
    }
    report.results.push_back(result);
  }

  for (const NamedTensor& input : golden.inputs) {
    report.results.push_back(
        compare_tensor("inputs", input.name, input.tensor, candidate.find_input(input.name), nullptr));
  }
  for (const NamedTensor& input : candidate.inputs) {
    if (golden.find_input(input.name) == nullptr) {
      TensorResult extra;
      extra.section = "inputs";
      extra.name = input.name;
      extra.status = TensorStatus::kExtra;
      extra.message = "the golden has no input of this name";
      report.results.push_back(extra);
    }
  }
  std::set<std::string> required(options.required_steps.begin(), options.required_steps.end());
  for (const std::string& name : required) {
    if (golden.find_step(name) == nullptr) {
      std::string names;
      for (const NamedTensor& step : golden.steps) names += (names.empty() ? "" : ", ") + step.name;
      fail_input("--require", name, "a step of the golden: " + names);
    }
  }
  for (const NamedTensor& step : golden.steps) {
    const Tensor* actual = candidate.find_step(step.name);
    const bool judged = actual != nullptr && step.tensor.dtype == DType::kFloat32;
    // Each step's tolerance is made where it is used and dropped after, so that its
    // bound is freed once no later step reads it (Float32Bounds keeps it until then).
    std::optional<StepTolerance> own;
    if (judged && !bit_identical(step.tensor, *actual)) {
      own = tolerance_for_step(options, candidate, step.name, defaults, false);
    }
    TensorResult result = compare_tensor("steps", step.name, step.tensor, actual,
                                         !judged ? nullptr
                                         : own   ? &*own
                                                 : &identical);
    if (result.status == TensorStatus::kNotChecked && (options.complete || required.count(step.name))) {
      result.status = TensorStatus::kMissing;
      result.message = options.complete ? "absent from the candidate, and --complete requires every golden step"
                                        : "absent from the candidate, and --require names it";
    }
    report.results.push_back(result);
  }
  for (const NamedTensor& step : candidate.steps) {
    if (golden.find_step(step.name) == nullptr) {
      TensorResult extra;
      extra.section = "steps";
      extra.name = step.name;
      extra.status = TensorStatus::kExtra;
      extra.message = "the golden has no step of this name";
      report.results.push_back(extra);
    }
  }
  for (const auto& [name, value] : golden.losses) {
    const Tensor expected = Tensor::scalar(value);
    const Tensor* actual = nullptr;
    Tensor actual_value;
    for (const auto& [candidate_name, candidate_value] : candidate.losses) {
      if (candidate_name == name) {
        actual_value = Tensor::scalar(candidate_value);
        actual = &actual_value;
      }
    }
    report.results.push_back(compare_tensor("losses", name, expected, actual,
                                            actual == nullptr                  ? nullptr
                                            : bit_identical(expected, *actual) ? &identical
                                                                               : tolerance_for(name, true)));
  }

  for (const auto& [name, value] : candidate.losses) {
    bool known = false;
    for (const auto& [golden_name, golden_value] : golden.losses) known = known || golden_name == name;
    if (!known) {
      TensorResult extra;
      extra.section = "losses";
      extra.name = name;
      extra.status = TensorStatus::kExtra;
      extra.message = "the golden has no loss of this name";
      report.results.push_back(extra);
    }
  }

  int64_t compared = 0;
  for (TensorResult& result : report.results) {
    if (result.status == TensorStatus::kMatch || result.status == TensorStatus::kMismatch) ++compared;
    const bool fails = result.status == TensorStatus::kMismatch || result.status == TensorStatus::kStructure ||
                       result.status == TensorStatus::kExtra || result.status == TensorStatus::kMissing;
    if (!fails) continue;
    report.pass = false;
    if (result.section == "steps" && report.first_divergent_step.empty()) report.first_divergent_step = result.name;
  }
  if (!report.first_divergent_step.empty()) {
    const std::set<std::string> dependents = steps_reading(golden, report.first_divergent_step);
    for (TensorResult& result : report.results) {
      const bool fails = result.status != TensorStatus::kMatch && result.status != TensorStatus::kNotChecked;
      if (result.section != "steps" || !fails || result.name == report.first_divergent_step) continue;
      result.downstream = dependents.count(result.name) > 0;
      result.independent = !result.downstream;
    }
  }
  // Nothing compared is never a pass: a backend that wrote nothing must not pass CI.
  if (compared == 0) {
    report.pass = false;
    report.nothing_checked = true;
  }
  return report;
}

}  // namespace moeref
