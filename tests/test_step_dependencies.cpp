// Step dependencies ("reads", spec/trace-format.md): every step of every golden
// says what it read, and every name it reads is an earlier step or a recorded input.

#include <catch2/catch.hpp>
#include <filesystem>
#include <set>
#include <string>

#include "moeref/trace.hpp"

namespace fs = std::filesystem;

TEST_CASE("step dependencies: each golden step reads only earlier steps and recorded inputs", "[golden][reads]") {
  int traces_with_reads = 0;
  for (const fs::directory_entry& variant : fs::directory_iterator(fs::path(MOEREF_SOURCE_DIR) / "golden")) {
    for (const fs::directory_entry& file : fs::directory_iterator(variant.path())) {
      const std::string name = file.path().filename().string();
      if (name.size() < 11 || name.compare(name.size() - 11, 11, ".trace.json") != 0) continue;
      INFO("golden " << file.path().string());
      const moeref::Trace trace = moeref::read_trace_file(file.path().string());
      // Every variant runs on the frame, which records what each step reads.
      CHECK_FALSE(trace.reads.empty());
      ++traces_with_reads;
      std::set<std::string> earlier;
      for (const moeref::NamedTensor& step : trace.steps) {
        INFO("step " << step.name);
        const auto reads = trace.reads.find(step.name);
        REQUIRE(reads != trace.reads.end());
        for (const std::string& read : reads->second) {
          INFO("reads " << read);
          if (read.rfind("inputs.", 0) == 0) {
            CHECK(trace.find_input(read.substr(7)) != nullptr);
          } else {
            CHECK(earlier.count(read) == 1);
          }
        }
        earlier.insert(step.name);
      }
    }
  }
  CHECK(traces_with_reads >= 5);
}

TEST_CASE("step dependencies: reads survive a write and a read", "[trace][reads]") {
  moeref::Trace trace;
  trace.add_step("logits", moeref::Tensor::scalar(1.0f), {"inputs.x"});
  trace.add_step("raw_gates", moeref::Tensor::scalar(0.5f), {"logits"});
  trace.add_step("no_record", moeref::Tensor::scalar(0.25f));
  const std::string text = moeref::write_trace(trace);
  CHECK(text.find(R"({"name":"raw_gates","reads":["logits"],"dims":[])") != std::string::npos);
  CHECK(text.find(R"({"name":"no_record","dims":[])") != std::string::npos);
  const moeref::ParsedDocument parsed = moeref::parse_json_document(text, "test trace");
  const moeref::Trace again = moeref::trace_from_json(parsed.doc, "test trace", &parsed.arrays);
  CHECK(again.reads.at("logits") == std::vector<std::string>{"inputs.x"});
  CHECK(again.reads.at("raw_gates") == std::vector<std::string>{"logits"});
  CHECK(again.reads.count("no_record") == 0);
  CHECK(moeref::write_trace(again) == text);
}
