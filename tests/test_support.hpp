// Small helpers shared by the tests: run a config given as JSON text, read a
// step, run the CLI.
#pragma once

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "moeref/config_reader.hpp"
#include "moeref/run.hpp"
#include "moeref/trace.hpp"

namespace moeref::testing {

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

inline float loss(const Trace& trace, const std::string& name) {
  for (const auto& [loss_name, value] : trace.losses) {
    if (loss_name == name) return value;
  }
  FAIL("no loss named " << name);
  return 0.0f;
}

struct CommandResult {
  int exit_code;
  std::string output;  // stdout and stderr together
};

// Runs `moeref ARGS` through the shell; ARGS is already shell-quoted.
inline CommandResult run_cli(const std::string& args) {
  const std::string command = std::string(MOEREF_CLI_PATH) + " " + args + " 2>&1";
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
