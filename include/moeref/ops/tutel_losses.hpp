// Tutel's auxiliary losses (microsoft/tutel, tutel/impls/losses.py at 82af7aa).
//
// Dims: G = 1 group, S tokens, E experts. float32 ops in the source's order; sums
// accumulate in double and round once (notation §4.3); erf in double, rounded once.
#pragma once

#include "moeref/tensor.hpp"

namespace moeref::ops {

// gshard_loss(scores_w_noise, top_ids): mask = one_hot(top_ids[:, 0]) with
// hot_value f32(E / S); me = sum(scores, dim=0); ce = sum(mask, dim=0);
// l_aux = sum(me * ce) / S. scores float32 [G, S, E], top1 int32 [G, S].
float tutel_gshard_loss(const Tensor& scores, const Tensor& top1);

// load_importance_loss(scores_wo_noise, topk_logits, E, gate_noise):
// importance: Impi = sum(scores_wo_noise, dim=0), l_imp = var(Impi) / (mean(Impi)^2
// + 1e-10) (unbiased variance); load: threshold = the token's k-th noisy logit
// ([G, S]), diff = scores_wo_noise - threshold (probabilities minus a logit, as
// written), prob = Normal(0, gate_noise / E).cdf(diff) = 0.5 * (1 + erf(diff *
// (1 / scale) / sqrt(2))), Load = sum(prob, dim=0), l_load likewise;
// (l_imp + l_load) / 2.
float tutel_load_importance_loss(const Tensor& scores_wo_noise, const Tensor& threshold, double gate_noise);

}  // namespace moeref::ops
