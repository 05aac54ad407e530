#include "moeref/layers/fairseq_top2_gating.hpp"

#include <utility>

#include "moeref/ops/fairseq_top2.hpp"
#include "moeref/ops/torch_routing.hpp"

namespace moeref {

FairseqTop2Locations fairseq_top2_locations(Frame& f, const FairseqTop2Names& names, const Tensor& mask1,
                                            const Tensor& mask2, const Tensor* padding, const Tensor* bpr_probs) {
  FairseqTop2Locations out{&mask1, &mask2, nullptr, nullptr};
  if (padding != nullptr) {
    const Tensor& kept = f.step(names.nonpadding, {padding}, ops::torch_not_bool(*padding));  // [G, S]
    out.mask1 = &f.step(names.mask1_nonpadding, {out.mask1, kept}, ops::torch_mask_rows(*out.mask1, kept));
    out.mask2 = &f.step(names.mask2_nonpadding, {out.mask2, kept}, ops::torch_mask_rows(*out.mask2, kept));
  }
  const Tensor* importance_scores =
      bpr_probs ? &f.step("importance_scores", {bpr_probs}, ops::bpr_importance_scores(*bpr_probs)) : nullptr;
  auto [locations1, locations2] = ops::top2_locations(*out.mask1, *out.mask2, importance_scores);
  out.locations1 = &f.step("locations1", {out.mask1, importance_scores}, std::move(locations1));
  out.locations2 = &f.step("locations2", {out.mask2, out.mask1, importance_scores}, std::move(locations2));
  return out;
}

}  // namespace moeref
