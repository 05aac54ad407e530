// Expert activations as mtf defines them (tensorflow/mesh, mesh_tensorflow/ops.py):
// the names are those that mtf.layers.dense_product looks up in the mtf
// namespace. Float32 ops in the source's order; tanh, exp evaluated in double
// and rounded once.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace moeref::ops {

enum class Activation { kLinear, kRelu, kGelu, kSwish, kSigmoid, kTanh };

// Names accepted in the `activation` hparam.
const std::vector<std::string>& activation_names();

// "relu" -> {kRelu}; ["linear", "gelu"] -> {kLinear, kGelu}. The hparam was validated.
std::vector<Activation> parse_activations(const nlohmann::json& hparam);
// {"linear", "gelu"} -> {kLinear, kGelu}; the names were validated.
std::vector<Activation> activations_named(const std::vector<std::string>& names);

float apply_activation(Activation activation, float x);
// values[k] = apply_activation(activation, values[k]) for k < count, the same bits;
// the switch is taken once, so linear and relu run as plain vector loops.
void apply_activation(Activation activation, float* values, int64_t count);

}  // namespace moeref::ops
