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

bool force_top_k_selection(const int32_t* order, int64_t n, int64_t k, const int32_t* forced, int32_t* indices) {
  if (forced == nullptr) return false;
  std::vector<int32_t> taken(static_cast<size_t>(n), 0);
  for (int64_t i = 0; i < k; ++i) taken[static_cast<size_t>(indices[i])] = 1;
  bool any = false;
  int64_t count = 0;
  for (int64_t s = 0; s < n; ++s) {
    if (forced[s] == 0 || forced[s] == 1) {
      any = any || forced[s] != taken[static_cast<size_t>(s)];
      taken[static_cast<size_t>(s)] = forced[s];
    }
    count += taken[static_cast<size_t>(s)];
  }
  if (!any || count != k) return false;
  int64_t next = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t s = order[i];
    if (taken[static_cast<size_t>(s)] != 0) indices[next++] = s;
  }
  return true;
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

std::optional<NearTie> top_k_selection_near_tie(const Trace& reference, const std::string& selection_step,
                                                const std::string& scores_step, int64_t flat, int64_t n,
                                                int32_t candidate_value, const ToleranceFor& tolerance_for) {
  const Tensor* selection = reference.find_step(selection_step);
  const Tensor* scores = float_step(reference, scores_step, flat + 1);
  if (selection == nullptr || selection->dtype != DType::kInt32 || scores == nullptr || n <= 0) return std::nullopt;
  if (candidate_value != 0 && candidate_value != 1) return std::nullopt;
  const int64_t row = flat - flat % n;
  const float own = scores->f32[static_cast<size_t>(flat)];
  // The reference's side of the comparison: its weakest taken entry when the
  // candidate took this one, its strongest left-out entry when the candidate left
  // this one out.
  const bool candidate_took = candidate_value == 1;
  std::optional<int64_t> rival;
  for (int64_t i = row; i < row + n; ++i) {
    const bool taken = selection->i32[static_cast<size_t>(i)] != 0;
    if (taken != candidate_took || i == flat) continue;
    const float value = scores->f32[static_cast<size_t>(i)];
    if (!rival || (candidate_took ? value < scores->f32[static_cast<size_t>(*rival)]
                                  : value > scores->f32[static_cast<size_t>(*rival)])) {
      rival = i;
    }
  }
  if (!rival) return std::nullopt;
  const float other = scores->f32[static_cast<size_t>(*rival)];
  NearTie tie;
  // The reference's choice wins by (taken score) - (left-out score).
  const float winner = candidate_took ? other : own;
  const float loser = candidate_took ? own : other;
  tie.margin = static_cast<double>(winner) - static_cast<double>(loser);
  tie.tolerance = tolerance_for(scores_step).allowed(winner);
  const std::string winner_index = scores->named_index(candidate_took ? *rival : flat);
  const std::string loser_index = scores->named_index(candidate_took ? flat : *rival);
  tie.detail = scores_step + ": " + (candidate_took ? "the reference's weakest taken " : "taken by the reference ") +
               winner_index + " " + float_text(winner) + " vs " +
               (candidate_took ? "taken by the candidate " : "the reference's strongest left out ") + loser_index +
               " " + float_text(loser);
  return tie;
}

}  // namespace moeref::ops
