// Comparing a candidate trace with a golden one (`moeref check`).
//
// Order of judgement (spec/checking.md): structure (missing, extra, wrong dims,
// shape or dtype), then int32 tensors exactly, then float32 tensors with an
// absolute-and-relative rule, then the first divergent step in the golden's
// step order, with every later failing step marked as downstream of it.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "moeref/trace.hpp"

namespace moeref {

// An element fails only when |actual - expected| exceeds BOTH atol and
// rtol * |expected| (so tiny values and large values are each judged fairly).
struct Tolerance {
  double atol = 1e-6;
  double rtol = 1e-5;
};

struct CheckOptions {
  Tolerance float_tolerance;
  std::map<std::string, Tolerance> per_tensor;  // by tensor name
};

struct ElementDiff {
  int64_t flat_index = 0;
  std::string index;  // "[g=0, s=5, e=2]"
  std::string expected;
  std::string actual;
  double abs_error = 0.0;
  double rel_error = 0.0;
  std::string neighbours;  // expected vs actual along the last dim, around the element
};

enum class TensorStatus { kMatch, kMismatch, kStructure, kMissing, kExtra, kNotChecked };

struct TensorResult {
  std::string section;  // "capacity", "losses", "inputs" or "steps"
  std::string name;
  TensorStatus status = TensorStatus::kMatch;
  std::string message;
  std::string dtype;
  int64_t total = 0;
  int64_t mismatches = 0;
  std::optional<ElementDiff> first;
  std::optional<ElementDiff> worst;
  bool downstream = false;  // fails after the first divergent step
};

struct CheckReport {
  bool pass = true;
  std::string first_divergent_step;  // empty when none
  std::vector<TensorResult> results;

  nlohmann::json to_json() const;
  std::string to_text() const;
};

const char* status_name(TensorStatus status);

CheckReport compare_traces(const Trace& golden, const Trace& candidate, const CheckOptions& options);

}  // namespace moeref
