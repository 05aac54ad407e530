#include "moeref/ops/decisions.hpp"

#include <cctype>
#include <cmath>
#include <cstdio>

#include "moeref/error.hpp"

namespace moeref::ops {

namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

// A float32 step of the reference with at least `needed` elements, or nullptr.
const Tensor* float_step(const Trace& reference, const std::string& name, int64_t needed) {
  const Tensor* tensor = reference.find_step(name);
  if (tensor == nullptr || tensor->dtype != DType::kFloat32 || tensor->num_elements() < needed) return nullptr;
  return tensor;
}

std::string lower(std::string text) {
  for (char& ch : text) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return text;
}

}  // namespace

const Tensor* forced_decision(const Config& config, const std::string& step, const std::vector<int64_t>& shape) {
  auto it = config.decision_overrides.find(step);
  if (it == config.decision_overrides.end()) return nullptr;
  if (it->second.shape != shape || it->second.dtype != DType::kInt32) {
    fail_input("decision override " + step, it->second.shape_string(), "an int32 tensor of shape " + shape_text(shape));
  }
  return &it->second;
}

void force_top_1(const int32_t* forced, int64_t rows, int64_t n, int32_t* index) {
  if (forced == nullptr) return;
  for (int64_t r = 0; r < rows; ++r) {
    if (forced[r] >= 0 && forced[r] < n) index[r] = forced[r];
  }
}

std::string float_text(double value) {
  char buffer[40];
  std::snprintf(buffer, sizeof(buffer), "%.9g", value);
  return buffer;
}

std::optional<NearTie> top_1_near_tie(const Trace& reference, const std::string& step, const std::string& scores_step,
                                      int64_t flat, int64_t n, int32_t candidate_value,
                                      const ToleranceFor& tolerance_for) {
  const Tensor* choices = reference.find_step(step);
  const Tensor* scores = float_step(reference, scores_step, (flat + 1) * n);
  if (choices == nullptr || choices->dtype != DType::kInt32 || scores == nullptr) return std::nullopt;
  const int32_t chosen = choices->i32[static_cast<size_t>(flat)];
  if (candidate_value < 0 || candidate_value >= n || chosen < 0 || chosen >= n) return std::nullopt;
  const float best = scores->f32[static_cast<size_t>(flat * n + chosen)];
  const float other = scores->f32[static_cast<size_t>(flat * n + candidate_value)];
  NearTie tie;
  tie.margin = static_cast<double>(best) - static_cast<double>(other);
  tie.tolerance = tolerance_for(scores_step).allowed(best);
  const std::string letter = scores->dims.empty() ? "i" : lower(scores->dims.back());
  tie.detail = scores_step + ": " + letter + "=" + std::to_string(chosen) + " " + float_text(best) + " vs " + letter +
               "=" + std::to_string(candidate_value) + " " + float_text(other);
  return tie;
}

std::optional<NearTie> random_keep_near_tie(const Trace& reference, const std::string& uniform_input,
                                            const std::string& gate_step, int64_t flat, float divisor,
                                            const ToleranceFor& tolerance_for) {
  const Tensor* gates = float_step(reference, gate_step, flat + 1);
  const Tensor* uniforms = reference.find_input(uniform_input);
  if (gates == nullptr || uniforms == nullptr || uniforms->dtype != DType::kFloat32 ||
      uniforms->num_elements() <= flat) {
    return std::nullopt;
  }
  const float gate = gates->f32[static_cast<size_t>(flat)];
  const float uniform = uniforms->f32[static_cast<size_t>(flat)];
  const float bound = gate / divisor;
  NearTie tie;
  tie.margin = std::fabs(static_cast<double>(uniform) - static_cast<double>(bound));
  tie.tolerance = tolerance_for(gate_step).allowed(gate) / static_cast<double>(divisor);
  tie.detail =
      uniform_input + " " + float_text(uniform) + " vs " + gate_step + " / max(threshold, 1e-9) " + float_text(bound);
  return tie;
}

}  // namespace moeref::ops
