#include "moeref/ops/gshard_expert_choice.hpp"

#include <vector>

namespace moeref::ops {

namespace {

// One row's forced selection (see gshard_expert_choice_top_k). `order` lists all
// n indices in top_k's order; `indices` holds top_k's k picks on entry. When the
// forced memberships still take exactly k entries, `indices` becomes those
// entries in `order`'s order; otherwise (no top-k returns another number of
// entries) it is left as it was.
void force_top_k_selection(const int32_t* order, int64_t n, int64_t k, const int32_t* forced, int32_t* indices) {
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
  if (!any || count != k) return;
  int64_t next = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t s = order[i];
    if (taken[static_cast<size_t>(s)] != 0) indices[next++] = s;
  }
}

}  // namespace

Tensor gshard_expert_choice_nonpaddings(const Tensor& logits, const Tensor* paddings) {
  Tensor nonpaddings = Tensor::float32({"G", "S"}, {logits.shape[0], logits.shape[1]});  // [G, S]
  for (size_t t = 0; t < nonpaddings.f32.size(); ++t) {
    nonpaddings.f32[t] = paddings != nullptr ? 1.0f - paddings->f32[t] : 1.0f;
  }
  return nonpaddings;
}

Tensor gshard_expert_choice_token_scores(const Tensor& gates, const Tensor* nonpaddings) {
  const int64_t G = gates.shape[0], S = gates.shape[1], E = gates.shape[2];
  Tensor token_scores = Tensor::float32({"G", "E", "S"}, {G, E, S});  // [G, E, S]
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t s = 0; s < S; ++s) {
      for (int64_t e = 0; e < E; ++e) {
        const float score = gates.f32[static_cast<size_t>((g * S + s) * E + e)];
        token_scores.f32[static_cast<size_t>((g * E + e) * S + s)] =
            nonpaddings != nullptr ? score * nonpaddings->f32[static_cast<size_t>(g * S + s)] : score;
      }
    }
  }
  return token_scores;
}

ExpertChoiceTopK gshard_expert_choice_top_k(const Tensor& token_scores, int64_t k, const TopKRule& top_k,
                                            const Tensor* forced) {
  const int64_t G = token_scores.shape[0], E = token_scores.shape[1], S = token_scores.shape[2];
  const int64_t returned = top_k.returned;
  ExpertChoiceTopK out{Tensor::int32({"G", "E", "S"}, {G, E, S}),                         // [G, E, S]
                       Tensor::int32({"G", "E", top_k.returned_dim}, {G, E, returned})};  // [G, E, K]
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < G * E; ++row) {
    const float* scores = token_scores.f32.data() + row * S;
    int32_t* picked = out.token_indices.i32.data() + row * returned;
    top_k.indices(scores, S, k, picked);
    if (forced != nullptr) {
      // The forced set, in top_k's order (all S entries ranked by the same rule).
      std::vector<int32_t> order(static_cast<size_t>(S));
      top_k.indices(scores, S, S, order.data());
      force_top_k_selection(order.data(), S, returned, forced->i32.data() + row * S, picked);
    }
    // mask = one_hot(token_indices, S) [G, E, K, S], transposed and summed over K.
    for (int64_t i = 0; i < returned; ++i) out.mask_ges.i32[static_cast<size_t>(row * S + picked[i])] += 1;
  }
  return out;
}

Tensor gshard_expert_choice_mask(const Tensor& mask_ges) {
  const int64_t G = mask_ges.shape[0], E = mask_ges.shape[1], S = mask_ges.shape[2];
  Tensor mask = Tensor::int32({"G", "S", "E"}, {G, S, E});  // [G, S, E]
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t s = 0; s < S; ++s) {
      for (int64_t e = 0; e < E; ++e) {
        mask.i32[static_cast<size_t>((g * S + s) * E + e)] = mask_ges.i32[static_cast<size_t>((g * E + e) * S + s)];
      }
    }
  }
  return mask;
}

Tensor gshard_expert_choice_mask_nonpadding(const Tensor& mask, const Tensor& nonpaddings) {
  const int64_t E = mask.shape[2];
  Tensor out = Tensor::int32(mask.dims, mask.shape);  // [G, S, E]
  for (size_t k = 0; k < out.i32.size(); ++k) {
    const int32_t nonpadding_int = static_cast<int32_t>(nonpaddings.f32[k / static_cast<size_t>(E)]);
    out.i32[k] = mask.i32[k] * nonpadding_int;
  }
  return out;
}

Tensor gshard_expert_choice_expert_indices(const Tensor& mask) {
  const int64_t E = mask.shape[2];
  Tensor expert_indices = Tensor::int32(mask.dims, mask.shape);  // [G, S, E]
  for (size_t k = 0; k < expert_indices.i32.size(); ++k) {
    expert_indices.i32[k] = static_cast<int32_t>(static_cast<int64_t>(k) % E) * mask.i32[k];
  }
  return expert_indices;
}

Tensor gshard_expert_choice_position_within_capacity(const Tensor& position_in_expert, int64_t C) {
  Tensor out = Tensor::int32(position_in_expert.dims, position_in_expert.shape);  // [G, S, E]
  for (size_t k = 0; k < out.i32.size(); ++k) {
    const int32_t position = position_in_expert.i32[k];
    out.i32[k] = position * (position < C ? 1 : 0);
  }
  return out;
}

Tensor gshard_expert_choice_position_masked(const Tensor& position_in_expert, const Tensor& mask) {
  Tensor out = Tensor::int32(position_in_expert.dims, position_in_expert.shape);  // [G, S, E]
  for (size_t k = 0; k < out.i32.size(); ++k) out.i32[k] = position_in_expert.i32[k] * mask.i32[k];
  return out;
}

Tensor gshard_expert_choice_gate_i(const Tensor& gates, const Tensor& expert_indices, const Tensor& mask) {
  const int64_t E = gates.shape[2];
  Tensor gate_i = Tensor::float32(gates.dims, gates.shape);  // [G, S, E] (i along E)
  for (size_t k = 0; k < gate_i.f32.size(); ++k) {
    const size_t token = k / static_cast<size_t>(E);
    const float gate = gates.f32[token * static_cast<size_t>(E) + static_cast<size_t>(expert_indices.i32[k])];
    gate_i.f32[k] = gate * static_cast<float>(mask.i32[k]);
  }
  return gate_i;
}

Tensor gshard_expert_choice_combine_tensor(const Tensor& gate_i, const Tensor& expert_indices,
                                           const Tensor& position_in_expert, const Tensor& mask, int64_t C) {
  const int64_t G = gate_i.shape[0], S = gate_i.shape[1], E = gate_i.shape[2];
  Tensor combine_tensor = Tensor::float32({"G", "S", "E", "C"}, {G, S, E, C});  // [G, S, E, C]
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < G; ++g) {
    float* combine_g = combine_tensor.f32.data() + g * S * E * C;
    for (int64_t i = 0; i < E; ++i) {
      for (int64_t s = 0; s < S; ++s) {
        const size_t at = static_cast<size_t>((g * S + s) * E + i);
        const float selected = static_cast<float>(mask.i32[at]);
        const int32_t indicated = expert_indices.i32[at];
        const int32_t pos_i = position_in_expert.i32[at];
        for (int64_t e = 0; e < E; ++e) {
          const float gate_e = gate_i.f32[at] * (e == indicated ? 1.0f : 0.0f);
          for (int64_t c = 0; c < C; ++c) {
            const float pos_indicator = (c == pos_i ? 1.0f : 0.0f) * selected;
            combine_g[(s * E + e) * C + c] += gate_e * pos_indicator;
          }
        }
      }
    }
  }
  return combine_tensor;
}

}  // namespace moeref::ops
