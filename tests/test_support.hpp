// Small helpers shared by the tests: build config tensors, run a config given as
// JSON, read (or edit) a step, the tiny mtf_top2 layer several tests start from,
// read and write files, run the CLI.
#pragma once

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "moeref/config_reader.hpp"
#include "moeref/run.hpp"
#include "moeref/trace.hpp"

namespace moeref::testing {

// A float32's bits, and the float32 of given bits (NaN payloads and -0 compared exactly).
inline uint32_t bits_of(float value) {
  uint32_t bits = 0;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
}

inline float float_of(uint32_t bits) {
  float value = 0.0f;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

// A float32 tensor as a config input: {"dims", "shape", "dtype": "float32", "data"}.
inline nlohmann::json tensor_json(const std::vector<std::string>& dims, const std::vector<int64_t>& shape,
                                  const std::vector<float>& data) {
  return {{"dims", dims}, {"shape", shape}, {"dtype", "float32"}, {"data", data}};
}

// The same from a tensor's own values (a template, so that a braced list still picks
// the overload above).
template <class Allocator, class = std::enable_if_t<!std::is_same_v<Allocator, std::allocator<float>>>>
nlohmann::json tensor_json(const std::vector<std::string>& dims, const std::vector<int64_t>& shape,
                           const std::vector<float, Allocator>& data) {
  return tensor_json(dims, shape, std::vector<float>(data.begin(), data.end()));
}

// An int32 tensor as a config input.
inline nlohmann::json int_tensor_json(const std::vector<std::string>& dims, const std::vector<int64_t>& shape,
                                      const std::vector<int32_t>& data) {
  return {{"dims", dims}, {"shape", shape}, {"dtype", "int32"}, {"data", data}};
}

// A config of VARIANT in scope "gating" on supplied router logits [G, S, E] (the input
// named `logits_input`), with the given hparams; "train" is left to the caller (the
// config's default unless set).
inline nlohmann::json gating_on_logits(const std::string& variant, int64_t G, int64_t S, int64_t E,
                                       const std::vector<float>& logits, nlohmann::json hparams,
                                       const std::string& logits_input = "logits") {
  return {{"variant", variant},
          {"scope", "gating"},
          {"dims", {{"G", G}, {"S", S}, {"E", E}}},
          {"hparams", std::move(hparams)},
          {"inputs", {{logits_input, tensor_json({"G", "S", "E"}, {G, S, E}, logits)}}}};
}

// The same with one group.
inline nlohmann::json gating_on_logits(const std::string& variant, int64_t S, int64_t E,
                                       const std::vector<float>& logits, nlohmann::json hparams) {
  return gating_on_logits(variant, 1, S, E, logits, std::move(hparams));
}

// exp(x - max(x)) of one row, each exp in double rounded once to float32, and the sum
// of those in double: what jax's and torch's softmax share before they divide.
struct ShiftedExps {
  std::vector<float> t;
  double sum = 0.0;
};
inline ShiftedExps shifted_exps(const std::vector<float>& x) {
  float x_max = x[0];
  for (float v : x) x_max = std::max(x_max, v);
  ShiftedExps out;
  for (float v : x) {
    out.t.push_back(static_cast<float>(std::exp(static_cast<double>(v - x_max))));
    out.sum += static_cast<double>(out.t.back());
  }
  return out;
}

inline Trace run_json(const nlohmann::json& config_doc) {
  return run_config(config_from_json(config_doc, "test config"));
}

// The named step; fails the test when the trace has no such step.
inline const Tensor& step(const Trace& trace, const std::string& name) {
  const Tensor* found = trace.find_step(name);
  INFO("step " << name);
  REQUIRE(found != nullptr);
  return *found;
}

// The named step, to edit (a hand-made candidate); fails the test when there is none.
inline Tensor& mutable_step(Trace& trace, const std::string& name) {
  for (NamedTensor& named : trace.steps) {
    if (named.name == name) return named.tensor;
  }
  FAIL("no step named " << name);
  throw std::logic_error("unreachable");
}

inline float loss(const Trace& trace, const std::string& name) {
  for (const auto& [loss_name, value] : trace.losses) {
    if (loss_name == name) return value;
  }
  FAIL("no loss named " << name);
  return 0.0f;
}

// A tiny mtf_top2 layer: B = 2, L = 4 grouped into G = 2 groups of S = 4 tokens, E = 3
// experts, M = 4, H = 5. The smoke, CLI and checker tests start from it.
inline nlohmann::json tiny_mtf_top2_layer_config() {
  return {{"variant", "mtf_top2"},
          {"seed", 3},
          {"dims", {{"B", 2}, {"L", 4}, {"E", 3}, {"M", 4}, {"H", 5}}},
          {"hparams", {{"group_size", 4}}}};
}

// The trace of tiny_mtf_top2_layer_config(), run once per test binary.
inline const Trace& tiny_mtf_top2_layer_trace() {
  static const Trace trace = run_json(tiny_mtf_top2_layer_config());
  return trace;
}

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  REQUIRE(out.good());
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

struct CommandResult {
  int exit_code;
  std::string output;  // stdout and stderr together
};

// Runs a shell command line, capturing stdout and stderr together.
inline CommandResult run_shell(const std::string& command_line) {
  const std::string command = command_line + " 2>&1";
  CommandResult result{-1, ""};
  FILE* pipe = popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buffer[4096];
  size_t got;
  while ((got = fread(buffer, 1, sizeof(buffer), pipe)) > 0) result.output.append(buffer, got);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

// Runs `moeref ARGS` through the shell; ARGS is already shell-quoted.
inline CommandResult run_cli(const std::string& args) { return run_shell(std::string(MOEREF_CLI_PATH) + " " + args); }

// Runs the CLI with extra environment assignments in front ("OMP_NUM_THREADS=2").
inline CommandResult run_cli_env(const std::string& env, const std::string& args) {
  return run_shell("env " + env + " " + std::string(MOEREF_CLI_PATH) + " " + args);
}

// Removes every directory made by temp_dir when the test binary exits.
struct TempDirCleaner {
  std::vector<std::string> paths;
  ~TempDirCleaner() {
    for (const std::string& path : paths) std::filesystem::remove_all(path);
  }
};

// A fresh empty directory under /tmp, removed when the test binary exits.
inline std::string temp_dir(const std::string& tag) {
  static TempDirCleaner cleaner;
  std::string path = "/tmp/moeref_test_" + tag + "_XXXXXX";
  REQUIRE(mkdtemp(path.data()) != nullptr);
  cleaner.paths.push_back(path);
  return path;
}

}  // namespace moeref::testing
