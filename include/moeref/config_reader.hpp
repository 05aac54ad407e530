// Reading a config (or a trace replayed as one): validated against the registry,
// hparams resolved from the variant's declarations (spec/trace-format.md).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "moeref/config.hpp"
#include "moeref/trace.hpp"

namespace moeref {

// Validates a config (or trace) document against the registry. `sidecars` reads the
// inputs a version-2 trace keeps in .npy files.
Config config_from_json(const nlohmann::json& doc, const std::string& source_name, const DataArrays* arrays = nullptr,
                        const SidecarStore* sidecars = nullptr);

// A config or a trace to replay, as .json or packed .tar.
Config load_config_file(const std::string& path);

// The config a trace was made from: its resolved config and recorded inputs.
Config config_from_trace(const Trace& trace, const std::string& source_name);

}  // namespace moeref
