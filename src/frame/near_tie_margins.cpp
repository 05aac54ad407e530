#include <cctype>
#include <cmath>
#include <cstdio>

#include "moeref/error.hpp"
#include "moeref/near_tie.hpp"

namespace moeref {

namespace {

// A float32 step of the reference with at least `needed` elements, or nullptr.
const Tensor* float_step(const Trace& reference, const std::string& name, int64_t needed) {
  const Tensor* tensor = reference.find_step(name);
  if (tensor == nullptr || tensor->dtype != DType::kFloat32 || tensor->num_elements() < needed) return nullptr;
  return tensor;
}

int64_t last_extent(const Tensor& tensor) { return tensor.shape.empty() ? 1 : tensor.shape.back(); }

std::string lower(std::string text) {
  for (char& ch : text) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return text;
}

}  // namespace

bool NearTieQuery::train() const {
  const nlohmann::json& config = reference.config;
  if (!config.is_object() || !config.contains("train")) return true;
  if (!config["train"].is_boolean()) fail_input("golden trace: config.train", config["train"].dump(), "true or false");
  return config["train"].get<bool>();
}

int64_t NearTieQuery::dim(const char* letter) const {
  const nlohmann::json& config = reference.config;
  const bool given = config.is_object() && config.contains("dims") && config["dims"].is_object() &&
                     config["dims"].contains(letter) && config["dims"][letter].is_number_integer();
  if (!given) {
    fail_input(std::string("golden trace: config.dims.") + letter, "missing or not an integer",
               "the resolved dims of the run that made the golden (moeref writes every one)");
  }
  return config["dims"][letter].get<int64_t>();
}

std::string float_text(double value) {
  char buffer[40];
  std::snprintf(buffer, sizeof(buffer), "%.9g", value);
  return buffer;
}

std::optional<NearTie> top_1_near_tie(const NearTieQuery& query, const std::string& scores_step) {
  const Tensor* choices = query.reference.find_step(query.step);
  const Tensor* scores_any = query.reference.find_step(scores_step);
  if (choices == nullptr || choices->dtype != DType::kInt32 || scores_any == nullptr) return std::nullopt;
  const int64_t n = last_extent(*scores_any);
  const Tensor* scores = float_step(query.reference, scores_step, (query.flat + 1) * n);
  if (scores == nullptr || query.flat >= choices->num_elements()) return std::nullopt;
  const int32_t chosen = choices->i32[static_cast<size_t>(query.flat)];
  const int32_t candidate = query.candidate;
  if (candidate < 0 || candidate >= n || chosen < 0 || chosen >= n) return std::nullopt;
  const float best = scores->f32[static_cast<size_t>(query.flat * n + chosen)];
  const float other = scores->f32[static_cast<size_t>(query.flat * n + candidate)];
  NearTie tie;
  tie.margin = static_cast<double>(best) - static_cast<double>(other);
  tie.tolerance = query.tolerance_for(scores_step).allowed(best);
  const std::string letter = scores->dims.empty() ? "i" : lower(scores->dims.back());
  tie.detail = scores_step + ": " + letter + "=" + std::to_string(chosen) + " " + float_text(best) + " vs " + letter +
               "=" + std::to_string(candidate) + " " + float_text(other);
  return tie;
}

std::optional<NearTie> ranked_choice_near_tie(const NearTieQuery& query, const std::string& scores_step,
                                              bool rank_major) {
  const Tensor* choices = query.reference.find_step(query.step);
  const Tensor* scores = query.reference.find_step(scores_step);
  if (choices == nullptr || choices->dtype != DType::kInt32 || choices->shape.empty() || scores == nullptr ||
      scores->dtype != DType::kFloat32 || query.flat >= choices->num_elements()) {
    return std::nullopt;
  }
  const int64_t K = rank_major ? choices->shape.front() : choices->shape.back();
  const int64_t rows = K > 0 ? choices->num_elements() / K : 0;
  const int64_t n = last_extent(*scores);
  if (rows <= 0 || scores->num_elements() != rows * n) return std::nullopt;
  const int64_t row = rank_major ? query.flat % rows : query.flat / K;
  const int32_t chosen = choices->i32[static_cast<size_t>(query.flat)];
  const int32_t candidate = query.candidate;
  if (candidate < 0 || candidate >= n || chosen < 0 || chosen >= n) return std::nullopt;
  const float best = scores->f32[static_cast<size_t>(row * n + chosen)];
  const float other = scores->f32[static_cast<size_t>(row * n + candidate)];
  NearTie tie;
  tie.margin = static_cast<double>(best) - static_cast<double>(other);
  tie.tolerance = query.tolerance_for(scores_step).allowed(best);
  tie.detail = scores_step + " " + scores->named_index(row * n + chosen) + " " + float_text(best) + " vs " +
               scores->named_index(row * n + candidate) + " " + float_text(other);
  return tie;
}

std::optional<NearTie> random_keep_near_tie(const NearTieQuery& query, const std::string& uniform_input,
                                            const std::string& gate_step, const std::function<float(float)>& bound,
                                            double slope, const std::string& bound_text) {
  const Tensor* gates = float_step(query.reference, gate_step, query.flat + 1);
  const Tensor* uniforms = query.reference.find_input(uniform_input);
  if (gates == nullptr || uniforms == nullptr || uniforms->dtype != DType::kFloat32 ||
      uniforms->num_elements() <= query.flat) {
    return std::nullopt;
  }
  const float gate = gates->f32[static_cast<size_t>(query.flat)];
  const float uniform = uniforms->f32[static_cast<size_t>(query.flat)];
  const float at = bound(gate);
  NearTie tie;
  tie.margin = std::fabs(static_cast<double>(uniform) - static_cast<double>(at));
  tie.tolerance = query.tolerance_for(gate_step).allowed(gate) * slope;
  tie.detail = uniform_input + " " + float_text(uniform) + " vs " + bound_text + " " + float_text(at);
  return tie;
}

std::optional<NearTie> threshold_near_tie(const NearTieQuery& query, const std::string& gate_step, float threshold) {
  const Tensor* gates = float_step(query.reference, gate_step, query.flat + 1);
  if (gates == nullptr) return std::nullopt;
  const float gate = gates->f32[static_cast<size_t>(query.flat)];
  NearTie tie;
  tie.margin = std::fabs(static_cast<double>(gate) - static_cast<double>(threshold));
  tie.tolerance = query.tolerance_for(gate_step).allowed(gate);
  tie.detail = gate_step + " " + float_text(gate) + " vs threshold " + float_text(threshold);
  return tie;
}

namespace {

// A top-k membership decision in the line of `count` entries starting at flat
// index `first`, `stride` apart: the margin between the candidate's entry and
// the reference's rival on the other side of the cut.
std::optional<NearTie> selection_near_tie(const NearTieQuery& query, const Tensor& selection, const Tensor& scores,
                                          const std::string& scores_step, int64_t first, int64_t count,
                                          int64_t stride) {
  if (query.candidate != 0 && query.candidate != 1) return std::nullopt;
  const int64_t flat = query.flat;
  const float own = scores.f32[static_cast<size_t>(flat)];
  // The reference's side of the comparison: its weakest taken entry when the
  // candidate took this one, its strongest left-out entry when the candidate left
  // this one out.
  const bool candidate_took = query.candidate == 1;
  std::optional<int64_t> rival;
  for (int64_t j = 0; j < count; ++j) {
    const int64_t i = first + j * stride;
    const bool taken = selection.i32[static_cast<size_t>(i)] != 0;
    if (taken != candidate_took || i == flat) continue;
    const float value = scores.f32[static_cast<size_t>(i)];
    if (!rival || (candidate_took ? value < scores.f32[static_cast<size_t>(*rival)]
                                  : value > scores.f32[static_cast<size_t>(*rival)])) {
      rival = i;
    }
  }
  if (!rival) return std::nullopt;
  const float other = scores.f32[static_cast<size_t>(*rival)];
  NearTie tie;
  // The reference's choice wins by (taken score) - (left-out score).
  const float winner = candidate_took ? other : own;
  const float loser = candidate_took ? own : other;
  tie.margin = static_cast<double>(winner) - static_cast<double>(loser);
  tie.tolerance = query.tolerance_for(scores_step).allowed(winner);
  const std::string winner_index = scores.named_index(candidate_took ? *rival : flat);
  const std::string loser_index = scores.named_index(candidate_took ? flat : *rival);
  tie.detail = scores_step + ": " + (candidate_took ? "the reference's weakest taken " : "taken by the reference ") +
               winner_index + " " + float_text(winner) + " vs " +
               (candidate_took ? "taken by the candidate " : "the reference's strongest left out ") + loser_index +
               " " + float_text(loser);
  return tie;
}

}  // namespace

std::optional<NearTie> top_k_selection_near_tie(const NearTieQuery& query, const std::string& scores_step) {
  const Tensor* selection = query.reference.find_step(query.step);
  const Tensor* scores = float_step(query.reference, scores_step, query.flat + 1);
  if (selection == nullptr || selection->dtype != DType::kInt32 || scores == nullptr) return std::nullopt;
  const int64_t n = last_extent(*selection);
  if (n <= 0 || query.flat >= selection->num_elements()) return std::nullopt;
  return selection_near_tie(query, *selection, *scores, scores_step, query.flat - query.flat % n, n, 1);
}

std::optional<NearTie> top_k_selection_along_s_near_tie(const NearTieQuery& query, const std::string& scores_step) {
  const Tensor* selection = query.reference.find_step(query.step);
  const Tensor* scores = float_step(query.reference, scores_step, query.flat + 1);
  if (selection == nullptr || selection->dtype != DType::kInt32 || selection->rank() != 3 || scores == nullptr ||
      scores->num_elements() != selection->num_elements() || query.flat >= selection->num_elements()) {
    return std::nullopt;
  }
  const int64_t S = selection->shape[1], E = selection->shape[2];
  const int64_t g = query.flat / (S * E), e = query.flat % E;
  return selection_near_tie(query, *selection, *scores, scores_step, g * S * E + e, S, E);
}

}  // namespace moeref
