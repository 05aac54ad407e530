// The routing of a trace, per token and per expert (routing_view.hpp).

#include "moeref/teach/routing_view.hpp"

#include <algorithm>
#include <string>
#include <vector>

namespace moeref {

namespace {

bool has_dims(const Tensor& tensor, const std::vector<std::string>& dims) { return tensor.dims == dims; }

// The first of `names` the trace holds as a step with the given dims.
const Tensor* first_step(const Trace& trace, const std::vector<std::string>& names,
                         const std::vector<std::vector<std::string>>& dims, std::string* found = nullptr) {
  for (const std::string& name : names) {
    const Tensor* tensor = trace.find_step(name);
    if (tensor == nullptr) continue;
    for (const std::vector<std::string>& wanted : dims) {
      if (has_dims(*tensor, wanted)) {
        if (found != nullptr) *found = name;
        return tensor;
      }
    }
  }
  return nullptr;
}

double value_at(const Tensor& tensor, size_t i) {
  return tensor.dtype == DType::kInt32 ? static_cast<double>(tensor.i32[i]) : static_cast<double>(tensor.f32[i]);
}

// Seats from [G, S, X, C] combine (and dispatch when there is one).
void seats_from_tensors(RoutingView& view, const Tensor& combine, const Tensor* dispatch) {
  const int64_t G = view.G, S = view.S, E = view.E, C = view.C;
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t s = 0; s < S; ++s) {
      TokenRouting& token = view.tokens[static_cast<size_t>(g * S + s)];
      for (int64_t e = 0; e < E; ++e) {
        for (int64_t c = 0; c < C; ++c) {
          const size_t i = static_cast<size_t>(((g * S + s) * E + e) * C + c);
          const float weight = combine.f32[i];
          const bool seated = dispatch != nullptr ? value_at(*dispatch, i) != 0.0 : weight != 0.0f;
          if (seated) token.seats.push_back({static_cast<int32_t>(e), static_cast<int32_t>(c), weight});
        }
      }
    }
  }
}

// Seats from the index form: routing_expert, routing_slot (-1: none), routing_weight.
void seats_from_index_form(RoutingView& view, const Tensor& expert, const Tensor& slot, const Tensor& weight) {
  const int64_t K = expert.shape[2];
  for (int64_t t = 0; t < view.G * view.S; ++t) {
    for (int64_t k = 0; k < K; ++k) {
      const size_t i = static_cast<size_t>(t * K + k);
      if (slot.i32[i] < 0 || slot.i32[i] >= view.C || expert.i32[i] < 0 || expert.i32[i] >= view.E) continue;
      view.tokens[static_cast<size_t>(t)].seats.push_back({expert.i32[i], slot.i32[i], weight.f32[i]});
    }
  }
}

// What each token asked for, by rank; "" when the variant has no per-token choice.
std::string read_requests(const Trace& trace, RoutingView& view) {
  const int64_t GS = view.G * view.S;
  auto take_ranked = [&](const Tensor& tensor, bool rank_first) {
    const int64_t K = rank_first ? tensor.shape[0] : (tensor.rank() == 3 ? tensor.shape[2] : 1);
    for (int64_t t = 0; t < GS; ++t) {
      for (int64_t k = 0; k < K; ++k) {
        const size_t i = static_cast<size_t>(rank_first ? k * GS + t : t * K + k);
        view.tokens[static_cast<size_t>(t)].requested.push_back(tensor.i32[i]);
      }
    }
  };
  std::string name;
  const std::string x = view.expert_dim;
  if (const Tensor* ranked =
          first_step(trace, {"routing_expert", "expert_indices", "expert_index"}, {{"G", "S", "K"}}, &name)) {
    take_ranked(*ranked, false);
    return name;
  }
  const std::string prefix = view.expert_dim == "X" ? "outer_" : "";
  if (const Tensor* first = first_step(trace, {prefix + "index_1", "expert_index"}, {{"G", "S"}}, &name)) {
    take_ranked(*first, false);
    if (const Tensor* second = first_step(trace, {prefix + "index_2"}, {{"G", "S"}})) {
      take_ranked(*second, false);
      return name + ", " + prefix + "index_2";
    }
    return name;
  }
  if (const Tensor* rank_major = first_step(trace, {"gate_indices"}, {{"K", "G", "S"}}, &name)) {
    take_ranked(*rank_major, true);
    return name;
  }
  return "";
}

// The random second-expert policy's verdict per rank, where the trace has one.
std::string read_policy(const Trace& trace, RoutingView& view) {
  const int64_t GS = view.G * view.S;
  const std::string prefix = view.expert_dim == "X" ? "outer_" : "";
  std::string name;
  for (TokenRouting& token : view.tokens) token.policy_keep.assign(token.requested.size(), -1);
  if (const Tensor* second = first_step(trace, {prefix + "second_policy_keep", "sampled_2"}, {{"G", "S"}}, &name)) {
    for (int64_t t = 0; t < GS; ++t) {
      TokenRouting& token = view.tokens[static_cast<size_t>(t)];
      if (token.policy_keep.size() >= 2) token.policy_keep[1] = second->i32[static_cast<size_t>(t)] != 0 ? 1 : 0;
    }
    return name;
  }
  if (const Tensor* route = first_step(trace, {"should_route"}, {{"K", "G", "S"}}, &name)) {
    const int64_t K = route->shape[0];
    for (int64_t t = 0; t < GS; ++t) {
      TokenRouting& token = view.tokens[static_cast<size_t>(t)];
      for (int64_t k = 0; k < K && static_cast<size_t>(k) < token.policy_keep.size(); ++k) {
        token.policy_keep[static_cast<size_t>(k)] = route->i32[static_cast<size_t>(k * GS + t)] != 0 ? 1 : 0;
      }
    }
    return name;
  }
  return "";
}

// Padding: inputs.importance == 0, inputs.paddings >= 0.5, or the padding_mask step == 0.
void read_padding(const Trace& trace, RoutingView& view) {
  const size_t GS = static_cast<size_t>(view.G * view.S);
  auto mark = [&](const Tensor* tensor, auto is_padding) {
    if (tensor == nullptr || tensor->dtype != DType::kFloat32 || tensor->f32.size() != GS) return;
    for (size_t t = 0; t < GS; ++t) view.tokens[t].padding = view.tokens[t].padding || is_padding(tensor->f32[t]);
  };
  mark(trace.find_input("importance"), [](float v) { return v == 0.0f; });
  mark(trace.find_input("paddings"), [](float v) { return v >= 0.5f; });
  mark(trace.find_step("padding_mask"), [](float v) { return v == 0.0f; });
}

}  // namespace

bool TokenRouting::seated_at(int32_t expert) const {
  return std::any_of(seats.begin(), seats.end(), [&](const Seat& seat) { return seat.expert == expert; });
}

std::optional<RoutingView> routing_view(const Trace& trace) {
  RoutingView view;
  std::string combine_name, dispatch_name;
  const std::vector<std::vector<std::string>> gsec = {{"G", "S", "E", "C"}};
  const Tensor* combine = first_step(trace, {"combine_tensor", "combine_array"}, gsec, &combine_name);
  const Tensor* dispatch = first_step(trace, {"dispatch_tensor", "dispatch_mask"}, gsec, &dispatch_name);
  if (combine == nullptr) {
    // mtf_moe2d: the outer level routes tokens to the X expert groups.
    combine = first_step(trace, {"outer_combine_tensor"}, {{"G", "S", "X", "C"}}, &combine_name);
    dispatch = first_step(trace, {"outer_dispatch_tensor"}, {{"G", "S", "X", "C"}}, &dispatch_name);
    if (combine != nullptr) view.expert_dim = "X";
  }
  const Tensor* expert = first_step(trace, {"routing_expert"}, {{"G", "S", "K"}});
  const Tensor* slot = first_step(trace, {"routing_slot"}, {{"G", "S", "K"}});
  const Tensor* weight = first_step(trace, {"routing_weight"}, {{"G", "S", "K"}});
  const bool index_form = expert != nullptr && slot != nullptr && weight != nullptr;
  if (combine == nullptr && !index_form) return std::nullopt;

  const nlohmann::json dims = trace.config.value("dims", nlohmann::json::object());
  if (combine != nullptr) {
    view.G = combine->shape[0];
    view.S = combine->shape[1];
    view.E = combine->shape[2];
    view.C = combine->shape[3];
  } else {
    view.G = expert->shape[0];
    view.S = expert->shape[1];
    view.E = dims.value("E", int64_t{0});
    view.C = trace.capacity.value("expert_capacity", dims.value("C", int64_t{0}));
  }
  view.tokens.resize(static_cast<size_t>(view.G * view.S));
  for (int64_t g = 0; g < view.G; ++g) {
    for (int64_t s = 0; s < view.S; ++s) {
      view.tokens[static_cast<size_t>(g * view.S + s)].group = g;
      view.tokens[static_cast<size_t>(g * view.S + s)].token = s;
    }
  }
  if (combine != nullptr) {
    seats_from_tensors(view, *combine, dispatch);
    view.seats_from = combine_name + (dispatch != nullptr ? " and " + dispatch_name : "");
  } else {
    seats_from_index_form(view, *expert, *slot, *weight);
    view.seats_from = "routing_expert, routing_slot, routing_weight (index form)";
  }
  view.requests_from = read_requests(trace, view);
  view.policy_from = read_policy(trace, view);
  read_padding(trace, view);

  view.fill.assign(static_cast<size_t>(view.G * view.E), 0);
  for (const TokenRouting& token : view.tokens) {
    for (const Seat& seat : token.seats) ++view.fill[static_cast<size_t>(token.group * view.E + seat.expert)];
    if (token.padding) {
      ++view.padding_tokens;
      continue;
    }
    if (token.seats.empty()) {
      ++view.dropped_tokens;
    } else {
      ++view.routed_tokens;
    }
    for (size_t k = 0; k < token.requested.size(); ++k) {
      const int32_t choice = token.requested[k];
      if (choice < 0 || choice >= view.E) continue;
      ++view.requested_choices;
      if (token.seated_at(choice)) continue;
      ++view.dropped_choices;
      if (token.dropped_by_policy(k)) ++view.policy_dropped_choices;
    }
  }
  return view;
}

std::string token_label(const RoutingView& view, int64_t g, int64_t s) {
  const std::string token = "t" + std::to_string(s);
  return view.G == 1 ? token : "g" + std::to_string(g) + "." + token;
}

}  // namespace moeref
