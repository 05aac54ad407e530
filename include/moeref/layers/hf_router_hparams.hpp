// The router fields that Hugging Face's MoE configs share (huggingface/transformers:
// SwitchTransformersConfig, NllbMoeConfig), declared once for hf_switch_top1 and
// hf_nllb_top2 under the configs' own names.
#pragma once

#include <string>

#include "moeref/frame/hparam_table.hpp"

namespace moeref {

struct HfRouterHparams {
  bool router_bias = false;
  std::string router_dtype;
  double router_aux_loss_coef = 0.0;
};

// router_bias (false), router_dtype ("float32" only: float16 and bfloat16 are not
// modelled) and router_aux_loss_coef (0.001), citing `router` and `model`.
template <typename P>
void declare_hf_router_hparams(HparamTable<P>& table, const char* router, const char* model) {
  table.flag("router_bias", &P::router_bias)
      .defaults_to(false)
      .means("Whether the router's nn.Linear has a bias (the input router_bias [E]).")
      .cites(router)
      .about("router_bias");
  table.choice("router_dtype", &P::router_dtype, {"float32"})
      .defaults_to("float32")
      .means("The router's dtype. float16 and bfloat16 (also allowed by the source) are not modelled by moeref.")
      .cites(router)
      .about("dtype");
  table.number("router_aux_loss_coef", &P::router_aux_loss_coef)
      .defaults_to(0.001)
      .at_least(0.0)
      .means("The loss aux_loss is the load-balancing loss times this.")
      .cites(model)
      .about("balance_loss_coef");
}

}  // namespace moeref
