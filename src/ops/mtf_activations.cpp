#include "moeref/ops/mtf_activations.hpp"

#include <cmath>

namespace moeref::ops {

namespace {

float rounded_tanh(float x) { return static_cast<float>(std::tanh(static_cast<double>(x))); }

float rounded_sigmoid(float x) { return static_cast<float>(1.0 / (1.0 + std::exp(-static_cast<double>(x)))); }

// mtf.gelu: cdf = 0.5 * (1.0 + tanh(sqrt(2/pi) * (x + 0.044715 * x * x * x))); x * cdf.
// Python evaluates `0.044715 * x * x * x` left to right; every scalar is a float32 constant.
float mtf_gelu(float x) {
  const float kCubicCoef = 0.044715f;
  const float kSqrtTwoOverPi = static_cast<float>(std::sqrt(2.0 / M_PI));
  const float cubic = ((kCubicCoef * x) * x) * x;
  const float inner = kSqrtTwoOverPi * (x + cubic);
  const float cdf = 0.5f * (1.0f + rounded_tanh(inner));
  return x * cdf;
}

Activation from_name(const std::string& name) {
  if (name == "relu") return Activation::kRelu;
  if (name == "gelu") return Activation::kGelu;
  if (name == "swish") return Activation::kSwish;
  if (name == "sigmoid") return Activation::kSigmoid;
  if (name == "tanh") return Activation::kTanh;
  return Activation::kLinear;
}

}  // namespace

const std::vector<std::string>& activation_names() {
  static const std::vector<std::string> names = {"linear", "relu", "gelu", "swish", "sigmoid", "tanh"};
  return names;
}

std::vector<Activation> parse_activations(const nlohmann::json& hparam) {
  std::vector<Activation> out;
  if (hparam.is_string()) {
    out.push_back(from_name(hparam.get<std::string>()));
  } else {
    for (const nlohmann::json& item : hparam) out.push_back(from_name(item.get<std::string>()));
  }
  return out;
}

std::vector<Activation> activations_named(const std::vector<std::string>& names) {
  std::vector<Activation> out;
  for (const std::string& name : names) out.push_back(from_name(name));
  return out;
}

float apply_activation(Activation activation, float x) {
  switch (activation) {
    case Activation::kLinear:
      return x;
    case Activation::kRelu:
      return x > 0.0f ? x : 0.0f;
    case Activation::kGelu:
      return mtf_gelu(x);
    case Activation::kSwish:
      return x * rounded_sigmoid(x);  // mtf.swish: x * sigmoid(x)
    case Activation::kSigmoid:
      return rounded_sigmoid(x);
    case Activation::kTanh:
      return rounded_tanh(x);
  }
  return x;
}

void apply_activation(Activation activation, float* values, int64_t count) {
  switch (activation) {
    case Activation::kLinear:
      return;
    case Activation::kRelu:
      for (int64_t k = 0; k < count; ++k) values[k] = values[k] > 0.0f ? values[k] : 0.0f;
      return;
    default:
      for (int64_t k = 0; k < count; ++k) values[k] = apply_activation(activation, values[k]);
      return;
  }
}

}  // namespace moeref::ops
