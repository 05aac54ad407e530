#include "moeref/frame/routing_index_form.hpp"

namespace moeref {

void record_routing_index_form(Frame& frame, const std::vector<RankRouting>& ranks) {
  const int64_t G = ranks.at(0).expert->shape[0], S = ranks.at(0).expert->shape[1];
  const int64_t K = static_cast<int64_t>(ranks.size());
  Reads expert_reads, slot_reads, weight_reads;
  for (const RankRouting& rank : ranks) {
    expert_reads.push_back(rank.expert);
    slot_reads.insert(slot_reads.end(), {rank.position, rank.occupies_slot});
    weight_reads.insert(weight_reads.end(), {rank.occupies_slot, rank.weight});
  }
  Tensor routing_expert = Tensor::int32({"G", "S", "K"}, {G, S, K});    // [G, S, K]
  Tensor routing_slot = Tensor::int32({"G", "S", "K"}, {G, S, K});      // [G, S, K]
  Tensor routing_weight = Tensor::float32({"G", "S", "K"}, {G, S, K});  // [G, S, K]
  for (int64_t t = 0; t < G * S; ++t) {
    for (int64_t k = 0; k < K; ++k) {
      const RankRouting& rank = ranks[static_cast<size_t>(k)];
      const size_t at = static_cast<size_t>(t * K + k);
      const bool occupies = rank.occupies_slot->i32[static_cast<size_t>(t)] != 0;
      routing_expert.i32[at] = rank.expert->i32[static_cast<size_t>(t)];
      routing_slot.i32[at] = occupies ? rank.position->i32[static_cast<size_t>(t)] : -1;
      routing_weight.f32[at] = occupies ? rank.weight->f32[static_cast<size_t>(t)] : 0.0f;
    }
  }
  frame.step("routing_expert", expert_reads, std::move(routing_expert));
  frame.step("routing_slot", slot_reads, std::move(routing_slot));
  frame.step("routing_weight", weight_reads, std::move(routing_weight));
}

void record_routing_index_form_rank_major(Frame& frame, const Tensor& expert, const Tensor& position,
                                          const Tensor& occupies_slot, const Tensor& weight) {
  const int64_t K = expert.shape.at(0), G = expert.shape.at(1), S = expert.shape.at(2);
  Tensor routing_expert = Tensor::int32({"G", "S", "K"}, {G, S, K});    // [G, S, K]
  Tensor routing_slot = Tensor::int32({"G", "S", "K"}, {G, S, K});      // [G, S, K]
  Tensor routing_weight = Tensor::float32({"G", "S", "K"}, {G, S, K});  // [G, S, K]
  for (int64_t k = 0; k < K; ++k) {
    for (int64_t t = 0; t < G * S; ++t) {
      const size_t from = static_cast<size_t>(k * G * S + t);
      const size_t at = static_cast<size_t>(t * K + k);
      const bool occupies = occupies_slot.i32[from] != 0;
      routing_expert.i32[at] = expert.i32[from];
      routing_slot.i32[at] = occupies ? position.i32[from] : -1;
      routing_weight.f32[at] = occupies ? weight.f32[from] : 0.0f;
    }
  }
  frame.step("routing_expert", {expert}, std::move(routing_expert));
  frame.step("routing_slot", {position, occupies_slot}, std::move(routing_slot));
  frame.step("routing_weight", {occupies_slot, weight}, std::move(routing_weight));
}

}  // namespace moeref
