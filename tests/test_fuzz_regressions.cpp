// Inputs that crashed, overflowed or were silently misread by the readers and the checker
// (tools/fuzz/). Each must now be refused with an InputError that names the field, or be
// read correctly. The same inputs are under tests/data/fuzz/<target>/, which CTest also
// replays through the fuzz targets (fuzz_replay_*).
#include <string>

#include "moeref/check.hpp"
#include "moeref/config_reader.hpp"
#include "moeref/error.hpp"
#include "test_support.hpp"

using Catch::Matchers::Contains;

namespace {

moeref::Trace read_trace_text(const std::string& text) {
  const moeref::ParsedDocument parsed = moeref::parse_json_document(text, "test trace");
  return moeref::trace_from_json(parsed.doc, "test trace", &parsed.arrays);
}

moeref::Config read_config_text(const std::string& text) {
  const moeref::ParsedDocument parsed = moeref::parse_json_document(text, "test config");
  return moeref::config_from_json(parsed.doc, "test config", &parsed.arrays);
}

// A trace with one step whose "data" is `data` (JSON text).
std::string one_step_trace(const std::string& dtype, const std::string& shape, const std::string& data) {
  return R"({"format":"moeref-trace","format_version":1,"steps":[{"name":"a","dims":["E"],"shape":)" + shape +
         R"(,"dtype":")" + dtype + R"(","data":)" + data + "}]}";
}

std::string nested_arrays(int depth) {
  return std::string(static_cast<size_t>(depth), '[') + std::string(static_cast<size_t>(depth), ']');
}

}  // namespace

TEST_CASE("fuzz regression: a hand-written $data_array placeholder is refused, never followed out of bounds",
          "[trace][reader][fuzz]") {
  // {"$data_array": k} is what parse_json_document leaves for a lifted data array; written
  // by hand, index 7 of no arrays read past the end of a vector (UBSan, stl_vector.h).
  for (const char* placeholder : {R"({"$data_array":7})", R"({"$data_array":0})", R"({"$data_array":-1})",
                                  R"({"$data_array":"x"})", R"({"\u0024data_array":0})"}) {
    INFO(placeholder);
    CHECK_THROWS_WITH(read_trace_text(one_step_trace("float32", "[1]", placeholder)),
                      Contains("\"$data_array\"") && Contains("reserves"));
  }
  // Beside a real data array, whose placeholder it would otherwise have aliased.
  const std::string aliased = R"({"format":"moeref-trace","format_version":1,"steps":[)"
                              R"({"name":"a","dims":["E"],"shape":[1],"dtype":"float32","data":{"$data_array":0}},)"
                              R"({"name":"b","dims":["E"],"shape":[1],"dtype":"float32","data":[1.5]}]})";
  CHECK_THROWS_WITH(read_trace_text(aliased), Contains("\"$data_array\""));
  // The config reader shares tensor_from_json for supplied inputs.
  const std::string config = R"({"variant":"mtf_top2","dims":{"B":2,"L":4,"E":3,"M":4,"H":5},)"
                             R"("hparams":{"group_size":4},)"
                             R"("inputs":{"x":{"dims":["B","L","M"],"shape":[2,4,4],"dtype":"float32",)"
                             R"("data":{"$data_array":3}}}})";
  CHECK_THROWS_WITH(read_config_text(config), Contains("\"$data_array\""));
  // Without parse_json_document's arrays at hand, a placeholder is just a wrong type of data.
  CHECK_THROWS_WITH(moeref::tensor_from_json(nlohmann::json::parse(R"({"dims":["E"],"shape":[1],"dtype":"float32",)"
                                                                   R"("data":{"$data_array":0}})"),
                                             "t", nullptr),
                    Contains("t.data") && Contains("an array of 1 values"));
}

TEST_CASE("fuzz regression: an int32 value beyond int64 is refused with its value", "[trace][reader][fuzz]") {
  // The message cast the double 1.8446744073709552e19 to int64 (UBSan: outside the range
  // of representable values of type 'long').
  CHECK_THROWS_WITH(read_trace_text(one_step_trace("int32", "[1]", "[18446744073709551615]")),
                    Contains("steps.a[e=0]") && Contains("18446744073709551616") && Contains("an int32 integer"));
  CHECK_THROWS_WITH(read_trace_text(one_step_trace("int32", "[2]", "[0, -9223372036854775808]")),
                    Contains("steps.a[e=1]") && Contains("-9223372036854775808"));
}

TEST_CASE("fuzz regression: JSON nested 200000 deep is refused, not a stack overflow", "[trace][reader][fuzz]") {
  // Copying the parsed generator recursed once per level and overflowed the stack
  // (moeref run and moeref check died with SIGSEGV).
  const std::string deep =
      R"({"format":"moeref-trace","format_version":1,"generator":)" + nested_arrays(200000) + R"(,"steps":[]})";
  CHECK_THROWS_WITH(read_trace_text(deep), Contains("test trace") && Contains("nested more than 256 levels"));
  CHECK_THROWS_WITH(moeref::parse_json_text(deep, "dom"), Contains("dom") && Contains("at most 256 levels"));
  const std::string deep_config = R"({"variant":"mtf_top2","dims":{"B":2,"L":4,"E":3,"M":4,"H":5},)"
                                  R"("hparams":{"group_size":)" +
                                  nested_arrays(200000) + "}}";
  CHECK_THROWS_WITH(read_config_text(deep_config), Contains("nested more than 256 levels"));
  // Inside a data array too, on both reading paths.
  CHECK_THROWS_AS(read_trace_text(one_step_trace("float32", "[1]", nested_arrays(200000))), moeref::InputError);
  // 256 levels still read.
  const std::string deepest =
      R"({"format":"moeref-trace","format_version":1,"generator":)" + nested_arrays(255) + R"(,"steps":[]})";
  CHECK(read_trace_text(deepest).generator.is_array());
}

TEST_CASE("fuzz regression: a data array outside tensors reads back as numbers, not as a placeholder",
          "[trace][reader][fuzz]") {
  // parse_json_document lifts every array under a "data" key; a backend's generator record
  // kept {"$data_array": 0} in its place, and write_trace wrote that out.
  const std::string text = R"({"format":"moeref-trace","format_version":1,)"
                           R"("generator":{"program":"b","data":[1,2.5,"NaN"],"runs":[{"data":[3]}]},)"
                           R"("steps":[{"name":"a","dims":["E"],"shape":[1],"dtype":"float32","data":[0.5]}]})";
  const moeref::Trace trace = read_trace_text(text);
  CHECK(trace.generator["data"] == nlohmann::json::parse(R"([1, 2.5, "NaN"])"));
  CHECK(trace.generator["runs"][0]["data"] == nlohmann::json::parse("[3]"));
  CHECK(trace.find_step("a")->f32 == std::vector<float>{0.5f});
  const std::string written = moeref::write_trace(trace);
  CHECK_THAT(written, !Contains("$data_array"));
  CHECK(moeref::write_trace(read_trace_text(written)) == written);
  // A "data" array there that is not numbers cannot be kept: it is refused, naming it.
  const std::string strings = R"({"format":"moeref-trace","format_version":1,"generator":{"data":["a"]}})";
  CHECK_THROWS_WITH(read_trace_text(strings), Contains("generator.data") && Contains("numbers"));
}

TEST_CASE("fuzz regression: an index-form candidate with other G, S than the golden is bad input", "[check][fuzz]") {
  // The dense combine_tensor was sized [G, S] of the candidate times [E, C] of the golden:
  // 30000 x 30000 x 100 x 100 floats (36 TB) threw std::bad_alloc.
  const std::string golden = R"({"format":"moeref-trace","format_version":1,"config":{"variant":"mtf_top2"},)"
                             R"("steps":[{"name":"combine_tensor","dims":["G","S","E","C"],)"
                             R"("shape":[0,0,100,100],"dtype":"float32","data":[]}]})";
  const std::string routing = R"("dims":["G","S","K"],"shape":[30000,30000,0],"data":[])";
  const std::string candidate =
      R"({"format":"moeref-trace","format_version":1,"config":{"variant":"mtf_top2"},"steps":[)"
      R"({"name":"routing_expert",)" +
      routing + R"(,"dtype":"int32"},{"name":"routing_slot",)" + routing +
      R"(,"dtype":"int32"},{"name":"routing_weight",)" + routing + R"(,"dtype":"float32"}]})";
  CHECK_THROWS_WITH(moeref::check_traces(read_trace_text(golden), read_trace_text(candidate), moeref::CheckOptions{}),
                    Contains("candidate routing_expert") && Contains("G=0") && Contains("S=0"));
}

TEST_CASE("fuzz regression: a golden without dims or with bad hparams is bad input in the near-tie analysis",
          "[check][near_tie][fuzz]") {
  // Found by fuzz_check: the near-tie rules read the golden's config. A golden whose
  // config lacks dims (and the scores that decided) is an ordinary difference; one
  // that holds a hparam of the wrong type is refused by name.
  const std::string index_1 = R"("steps":[{"name":"index_1","dims":["G","S"],"shape":[1,1],"dtype":"int32","data":)";
  for (const std::string variant : {"lingvo_top2", "mtf_top2", "praxis_top2"}) {
    INFO("variant " << variant);
    const std::string head = R"({"format":"moeref-trace","format_version":1,"config":{"variant":")" + variant + "\"";
    const moeref::Trace golden = read_trace_text(head + "}," + index_1 + "[0]}]}");
    const moeref::Trace candidate = read_trace_text(head + "}," + index_1 + "[1]}]}");
    const moeref::CheckReport report = moeref::check_traces(golden, candidate, moeref::CheckOptions{});
    CHECK_FALSE(report.pass);
    CHECK(report.first_divergent_step == "index_1");
    CHECK(report.near_ties.empty());
    const moeref::Trace bad_hparam =
        read_trace_text(head + R"(,"dims":{"E":2},"hparams":{"legacy_mtf_behavior":"yes","second_policy_train":3,)" +
                        R"("second_expert_policy":3}},)" + index_1 + "[0]}]}");
    CHECK_THROWS_AS(moeref::check_traces(bad_hparam, candidate, moeref::CheckOptions{}), moeref::InputError);
  }
}
