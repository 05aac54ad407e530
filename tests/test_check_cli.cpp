// `moeref check GOLDEN CANDIDATE` as a user meets it: exit codes (0 agree,
// 1 differ, 2 bad input), the printed report, --report JSON and the tolerance
// options. Candidates are the golden trace with one defect written in.
//
// Dims: G groups, S group size, E experts. The golden is a tiny mtf_top2
// layer: G = 2 groups of S = 4 tokens, E = 3 experts.
#include <cmath>
#include <filesystem>
#include <string>

#include "test_support.hpp"

using Catch::Contains;
using moeref::Trace;

// test_support.hpp: run_cli, temp_dir, read_text, write_text, mutable_step, the tiny layer.
using namespace moeref::testing;

namespace {

// The golden of these tests: the tiny mtf_top2 layer.
const Trace& golden_trace() { return tiny_mtf_top2_layer_trace(); }

// A directory holding golden.json; candidates are written beside it.
struct CheckDir {
  std::string dir = temp_dir("check_cli");
  std::string golden = dir + "/golden.json";
  std::string candidate = dir + "/candidate.json";
  std::string report = dir + "/report.json";

  CheckDir() { write_text(golden, moeref::write_trace(golden_trace())); }

  void write_candidate(const Trace& trace) const { write_text(candidate, moeref::write_trace(trace)); }
  void write_candidate_text(const std::string& text) const { write_text(candidate, text); }

  CommandResult check(const std::string& options = "") const {
    return run_cli("check " + golden + " " + candidate + (options.empty() ? "" : " " + options));
  }
  // Runs `moeref check` with OPTIONS and checks its exit code (the output is printed when it differs).
  CommandResult check_exits(int exit_code, const std::string& options = "") const {
    const CommandResult result = check(options);
    INFO(result.output);
    CHECK(result.exit_code == exit_code);
    return result;
  }
  nlohmann::json read_report() const { return nlohmann::json::parse(read_text(report)); }
};

// The golden with raw_gates[g=0, s=0, e=0] moved by 1e-4 (a float32 in (0, 1)).
Trace raw_gates_moved() {
  Trace candidate = golden_trace();
  float& value = mutable_step(candidate, "raw_gates").f32[0];
  REQUIRE(value > 1e-3f);
  value += 1e-4f;
  return candidate;
}

}  // namespace

TEST_CASE("check cli: an identical candidate exits 0 and the report passes", "[check][cli]") {
  const CheckDir files;
  files.write_candidate(golden_trace());
  const CommandResult result = files.check_exits(0, "--report " + files.report);
  CHECK_THAT(result.output, Contains("PASS") && Contains("0 differ"));
  const nlohmann::json report = files.read_report();
  CHECK(report["pass"] == true);
  CHECK(report["first_divergent_step"].is_null());
  CHECK(report["failing"] == 0);
  REQUIRE(report["tensors"].is_array());
  CHECK(report["tensors"].size() ==
        golden_trace().steps.size() + golden_trace().inputs.size() + golden_trace().losses.size() + 1);
  for (const nlohmann::json& item : report["tensors"]) {
    INFO(item.dump());
    CHECK(item["status"] == "match");
  }
}

TEST_CASE("check cli: a changed int32 in index_1 exits 1 naming the tensor and index and values", "[check][cli]") {
  const CheckDir files;
  Trace candidate = golden_trace();
  int32_t& value = mutable_step(candidate, "index_1").i32[1];  // [g=0, s=1]
  const int32_t expected = value;
  value = (value + 1) % 3;
  const int32_t actual = value;
  files.write_candidate(candidate);
  const CommandResult result = files.check_exits(1, "--report " + files.report);
  CHECK_THAT(result.output,
             Contains("FAIL") && Contains("steps.index_1") && Contains("[g=0, s=1]") &&
                 Contains("expected " + std::to_string(expected) + ", actual " + std::to_string(actual)) &&
                 Contains("first divergent step: index_1"));
  const nlohmann::json report = files.read_report();
  CHECK(report["pass"] == false);
  CHECK(report["first_divergent_step"] == "index_1");
  bool found = false;
  for (const nlohmann::json& item : report["tensors"]) {
    if (item["section"] == "steps" && item["name"] == "index_1") {
      found = true;
      CHECK(item["status"] == "mismatch");
      CHECK(item["dtype"] == "int32");
      CHECK(item["mismatches"] == 1);
      CHECK(item["total"] == 8);
      CHECK(item["first"]["index"] == "[g=0, s=1]");
      CHECK(item["first"]["expected"] == std::to_string(expected));
      CHECK(item["first"]["actual"] == std::to_string(actual));
      CHECK(item["downstream"] == false);
    } else {
      CHECK(item["status"] == "match");
    }
  }
  CHECK(found);
}

TEST_CASE("check cli: a float beyond tolerance exits 1 with first and worst", "[check][cli]") {
  const CheckDir files;
  Trace candidate = golden_trace();
  moeref::Tensor& gate_1 = mutable_step(candidate, "gate_1");  // [G, S]
  gate_1.f32[1] += 1e-4f;
  gate_1.f32[6] += 1e-1f;
  files.write_candidate(candidate);
  const CommandResult result = files.check_exits(1, "--report " + files.report);
  CHECK_THAT(result.output, Contains("steps.gate_1: 2 of 8") && Contains("first at [g=0, s=1]") &&
                                Contains("worst at [g=1, s=2]") && Contains("neighbours:"));
  // Keep the report alive for the loop: ranging over a part of a temporary would dangle.
  const nlohmann::json report = files.read_report();
  for (const nlohmann::json& item : report["tensors"]) {
    if (item["name"] != "gate_1") continue;
    CHECK(item["first"]["index"] == "[g=0, s=1]");
    CHECK(item["worst"]["index"] == "[g=1, s=2]");
    CHECK(item["worst"]["abs_error"].get<double>() == Approx(0.1).epsilon(1e-4));
  }
}

TEST_CASE("check cli: a float within tolerance exits 0", "[check][cli]") {
  const CheckDir files;
  Trace candidate = golden_trace();
  for (float& value : mutable_step(candidate, "gate_1").f32) value = std::nextafter(value, 0.0f);
  files.write_candidate(candidate);
  files.check_exits(0);
}

TEST_CASE("check cli: the atol and rtol and tolerance options change the verdict", "[check][cli]") {
  const CheckDir files;
  files.write_candidate(raw_gates_moved());  // |diff| = 1e-4 on a value in (1e-3, 1)
  struct Case {
    std::string options;
    int exit_code;
  };
  const Case cases[] = {
      {"", 1},
      {"--atol 1e-3", 0},
      {"--rtol 0.5", 0},  // 0.5 * |expected| > 1e-3 > 1e-4
      {"--atol 1e-5", 1},
      {"--atol 1e-3 --rtol 0", 0},
      {"--tolerance raw_gates=1e-3,0", 0},
      {"--tolerance gate_1=1e-3,0", 1},              // a tolerance for another tensor
      {"--atol 1e-3 --tolerance raw_gates=0,0", 1},  // the per-tensor one wins
      {"--tolerance gate_1=1,1 --tolerance raw_gates=0,0.5", 0},
  };
  for (const Case& c : cases) {
    const CommandResult result = files.check(c.options);
    INFO("options '" << c.options << "'\n" << result.output);
    CHECK(result.exit_code == c.exit_code);
  }
}

TEST_CASE("check cli: NaN against a number fails but NaN against NaN passes", "[check][cli]") {
  const CheckDir files;
  Trace candidate = golden_trace();
  mutable_step(candidate, "raw_gates").f32[4] = std::nanf("");
  files.write_candidate(candidate);
  const CommandResult result = files.check_exits(1, "--atol 1e30");
  CHECK_THAT(result.output, Contains("steps.raw_gates") && Contains("actual NaN"));

  // A golden that holds a NaN itself.
  const CheckDir nan_files;
  Trace nan_golden = golden_trace();
  mutable_step(nan_golden, "raw_gates").f32[4] = std::nanf("");
  write_text(nan_files.golden, moeref::write_trace(nan_golden));
  nan_files.write_candidate(nan_golden);
  nan_files.check_exits(0);
}

TEST_CASE("check cli: a step missing from the candidate is reported as not checked with exit 0", "[check][cli]") {
  const CheckDir files;
  Trace candidate = golden_trace();
  for (auto it = candidate.steps.begin(); it != candidate.steps.end(); ++it) {
    if (it->name == "mask_2") {
      candidate.steps.erase(it);
      break;
    }
  }
  files.write_candidate(candidate);
  const CommandResult result = files.check_exits(0, "--report " + files.report);
  CHECK_THAT(result.output, Contains("not checked") && Contains("steps.mask_2"));
  const nlohmann::json report = files.read_report();
  CHECK(report["pass"] == true);
  CHECK(report["not_checked"] == 1);
  for (const nlohmann::json& item : report["tensors"]) {
    if (item["name"] == "mask_2") CHECK(item["status"] == "not_checked");
  }
}

TEST_CASE("check cli: an extra step or a wrong shape is a structure failure with exit 1", "[check][cli]") {
  const CheckDir files;
  SECTION("extra step") {
    Trace candidate = golden_trace();
    candidate.add_step("backend_scratch", moeref::Tensor::scalar(0.0f));
    files.write_candidate(candidate);
    const CommandResult result = files.check_exits(1);
    CHECK_THAT(result.output, Contains("structure problems") && Contains("steps.backend_scratch"));
  }
  SECTION("wrong shape") {
    Trace candidate = golden_trace();
    moeref::Tensor& mask_1 = mutable_step(candidate, "mask_1");  // [G, S, E] = [2, 4, 3]
    mask_1.shape = {2, 3, 4};
    files.write_candidate(candidate);
    const CommandResult result = files.check_exits(1, "--report " + files.report);
    CHECK_THAT(result.output, Contains("structure problems") && Contains("steps.mask_1") &&
                                  Contains("[G=2, S=4, E=3]") && Contains("[G=2, S=3, E=4]"));
    const nlohmann::json report = files.read_report();
    CHECK(report["first_divergent_step"] == "mask_1");
  }
}

TEST_CASE("check cli: later failing steps are marked downstream of the first divergent one", "[check][cli]") {
  const CheckDir files;
  Trace candidate = golden_trace();
  mutable_step(candidate, "dispatch_tensor").i32[0] ^= 1;
  mutable_step(candidate, "gate_1").f32[0] += 0.25f;
  files.write_candidate(candidate);
  const CommandResult result = files.check_exits(1, "--report " + files.report);
  CHECK_THAT(result.output, Contains("first divergent step: gate_1") && Contains("[downstream of gate_1]"));
  const nlohmann::json report = files.read_report();
  CHECK(report["first_divergent_step"] == "gate_1");
  for (const nlohmann::json& item : report["tensors"]) {
    if (item["name"] == "gate_1") CHECK(item["downstream"] == false);
    if (item["name"] == "dispatch_tensor") CHECK(item["downstream"] == true);
  }
}

TEST_CASE("check cli: a wrong loss constant is caught", "[check][cli]") {
  const CheckDir files;
  // Edit the JSON text: "loss" = gating_loss * 0.02 instead of * 0.01.
  nlohmann::json doc = moeref::parse_json_text(moeref::write_trace(golden_trace()), "golden");
  const float gating_loss = doc["losses"]["gating_loss"].get<float>();
  doc["losses"]["loss"] = gating_loss * 0.02f;
  files.write_candidate_text(doc.dump());
  const CommandResult result = files.check_exits(1, "--report " + files.report);
  CHECK_THAT(result.output, Contains("losses.loss"));
  const nlohmann::json report = files.read_report();
  CHECK(report["pass"] == false);
}

TEST_CASE("check cli: unreadable candidates and bad options exit 2", "[check][cli]") {
  const CheckDir files;
  const std::string golden_text = moeref::write_trace(golden_trace());
  std::string options = "--report " + files.report;
  std::vector<std::string> message_parts = {"moeref: error:"};

  SECTION("a config, not a trace") {
    files.write_candidate_text(R"({"variant":"mtf_top2","dims":{"B":2,"L":4,"E":3,"M":4,"H":5}})");
    message_parts.push_back("not a moeref trace");
  }
  SECTION("truncated JSON") {
    files.write_candidate_text(golden_text.substr(0, golden_text.size() / 2));
    message_parts.push_back("not valid JSON");
    message_parts.push_back(files.candidate);
  }
  SECTION("steps not an array") {
    nlohmann::json doc = moeref::parse_json_text(golden_text, "golden");
    doc["steps"] = {{"index_1", 1}};
    files.write_candidate_text(doc.dump());
    message_parts.push_back("steps");
  }
  SECTION("a tensor with data of the wrong length") {
    nlohmann::json doc = moeref::parse_json_text(golden_text, "golden");
    doc["steps"][3]["data"].erase(0);
    files.write_candidate_text(doc.dump());
    message_parts.push_back(".data");
  }
  SECTION("a candidate of another variant") {
    nlohmann::json doc = moeref::parse_json_text(golden_text, "golden");
    doc["config"]["variant"] = "switch_top1";
    files.write_candidate_text(doc.dump());
    message_parts.push_back("\"switch_top1\"");
  }
  SECTION("an empty file") { files.write_candidate_text(""); }
  SECTION("a missing candidate file") {
    std::filesystem::remove(files.candidate);
    message_parts.push_back(files.candidate);
  }
  SECTION("a --tolerance without its comma") {
    files.write_candidate(golden_trace());
    options += " --tolerance raw_gates=1e-3";
    message_parts.push_back("--tolerance");
  }
  SECTION("a negative --atol") {
    files.write_candidate(golden_trace());
    options += " --atol -1";
    message_parts = {"--atol"};
  }

  const CommandResult result = files.check_exits(2, options);
  for (const std::string& part : message_parts) CHECK_THAT(result.output, Contains(part));
  CHECK_FALSE(std::filesystem::exists(files.report));
}

// A non-string variant id is bad input: exit 2 with a message, never an abort.
TEST_CASE("check cli: a candidate whose config.variant is not a string exits 2", "[check][cli]") {
  const CheckDir files;
  nlohmann::json doc = moeref::parse_json_text(moeref::write_trace(golden_trace()), "golden");
  doc["config"]["variant"] = 5;
  files.write_candidate_text(doc.dump());
  const CommandResult result = files.check_exits(2);
  CHECK_THAT(result.output, Contains("config.variant"));
}

// A missing format_version is named as missing (reading an absent key of a
// const nlohmann::json would be undefined behaviour).
TEST_CASE("check cli: a candidate without format_version exits 2 saying it is missing", "[check][cli]") {
  const CheckDir files;
  nlohmann::json doc = moeref::parse_json_text(moeref::write_trace(golden_trace()), "golden");
  doc.erase("format_version");
  files.write_candidate_text(doc.dump());
  const CommandResult result = files.check_exits(2);
  CHECK_THAT(result.output, Contains("format_version") && Contains("missing"));
}

// Every character of a --tolerance value must be part of its numbers.
TEST_CASE("check cli: a --tolerance with trailing junk exits 2", "[check][cli]") {
  const CheckDir files;
  files.write_candidate(golden_trace());
  const CommandResult result = files.check_exits(2, "--tolerance raw_gates=1e-3junk,0");
  CHECK_THAT(result.output, Contains("--tolerance"));
}

TEST_CASE("check cli: a directory given as a trace is named as a directory, exit 2", "[check][cli]") {
  const CheckDir dir;
  const CommandResult result = run_cli("check " + dir.golden + " " + dir.dir);
  INFO(result.output);
  CHECK(result.exit_code == 2);
  CHECK(result.output.find(dir.dir + ": is a directory; a file is expected") != std::string::npos);
  CHECK(result.output.find("not valid JSON") == std::string::npos);
}
