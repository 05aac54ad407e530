// Trace text: every float32 is written exactly and read back bit for bit, a
// trace survives write -> parse -> read -> write byte for byte, and a malformed
// tensor is refused with a message naming the field.
//
// Dims used by the hand-built tensors: G groups, S group size, E experts.
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "moeref/error.hpp"
#include "moeref/json_number.hpp"
#include "test_support.hpp"

using Catch::Contains;
using moeref::testing::bits_of;
using moeref::testing::float_of;
using moeref::testing::run_json;

namespace {

std::string text_of(float value) {
  std::string out;
  moeref::append_float32(out, value);
  return out;
}

std::string hex(uint32_t bits) {
  char buffer[16];
  std::snprintf(buffer, sizeof(buffer), "0x%08x", bits);
  return buffer;
}

// Writes all values as one JSON array with append_float32, parses it with
// parse_json_text and reads every element back with read_float32.
std::vector<float> round_trip_all(const std::vector<float>& values) {
  std::string text = "[";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) text += ',';
    moeref::append_float32(text, values[i]);
  }
  text += ']';
  const nlohmann::json doc = moeref::parse_json_text(text, "sweep");
  REQUIRE(doc.is_array());
  REQUIRE(doc.size() == values.size());
  std::vector<float> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = moeref::read_float32(doc[i], "sweep");
  return out;
}

// Checks a bit-exact round trip of every non-NaN pattern; counts failures so a
// broken writer reports one summary line instead of thousands.
void check_bits_round_trip(const std::vector<uint32_t>& patterns) {
  std::vector<float> values;
  values.reserve(patterns.size());
  for (uint32_t bits : patterns) values.push_back(float_of(bits));
  const std::vector<float> back = round_trip_all(values);
  size_t failures = 0;
  std::string first_failure;
  for (size_t i = 0; i < patterns.size(); ++i) {
    if (std::isnan(values[i])) {
      if (!std::isnan(back[i])) ++failures;
      continue;
    }
    if (bits_of(back[i]) != patterns[i]) {
      if (failures == 0) {
        first_failure =
            hex(patterns[i]) + " written as " + text_of(values[i]) + " read back as " + hex(bits_of(back[i]));
      }
      ++failures;
    }
  }
  INFO("first failure: " << first_failure);
  CHECK(failures == 0);
}

nlohmann::json base_config() {
  return {{"variant", "mtf_top2"},
          {"seed", 3},
          {"dims", {{"B", 2}, {"L", 4}, {"E", 3}, {"M", 4}, {"H", 5}}},
          {"hparams", {{"group_size", 4}}}};
}

nlohmann::json tensor_doc(const std::string& dtype, nlohmann::json data) {
  return {{"dims", {"G", "S"}}, {"shape", {2, 2}}, {"dtype", dtype}, {"data", std::move(data)}};
}

// Field-by-field equality of two traces, floats compared by their bits.
void check_same_tensor(const moeref::Tensor& a, const moeref::Tensor& b, const std::string& what) {
  INFO(what);
  CHECK(a.dims == b.dims);
  CHECK(a.shape == b.shape);
  CHECK(a.dtype == b.dtype);
  CHECK(a.i32 == b.i32);
  REQUIRE(a.f32.size() == b.f32.size());
  for (size_t i = 0; i < a.f32.size(); ++i) {
    if (std::isnan(a.f32[i])) {
      CHECK(std::isnan(b.f32[i]));
    } else {
      CHECK(bits_of(a.f32[i]) == bits_of(b.f32[i]));
    }
  }
}

// A trace holding every awkward number, its inputs and losses in alphabetical order.
moeref::Trace awkward_trace() {
  moeref::Trace trace;
  trace.generator = {{"program", "hand-made"}};
  trace.config = {{"variant", "mtf_top2"}, {"note", "7.038531e-26 as text"}, {"ratio", 0.1}};
  trace.capacity = {{"expert_capacity", 2}};
  moeref::Tensor specials = moeref::Tensor::float32({"G", "S", "E"}, {1, 3, 4});  // [G, S, E]
  const float values[] = {0.0f,         -0.0f, FLT_MIN,       -FLT_MIN, FLT_MAX,   -FLT_MAX,
                          FLT_TRUE_MIN, 0.1f,  std::nanf(""), INFINITY, -INFINITY, float_of(0x15ae43fd)};
  for (size_t i = 0; i < specials.f32.size(); ++i) specials.f32[i] = values[i];
  moeref::Tensor extremes = moeref::Tensor::int32({"G", "S"}, {2, 2});  // [G, S]
  extremes.i32 = {std::numeric_limits<int32_t>::min(), -1, 0, std::numeric_limits<int32_t>::max()};
  moeref::Tensor empty = moeref::Tensor::float32({"G", "E"}, {0, 3});  // [G, E], no elements
  trace.inputs.push_back({"a_input", specials});
  trace.inputs.push_back({"b_input", extremes});
  trace.add_step("specials", specials);
  trace.add_step("extremes", extremes);
  trace.add_step("empty", empty);
  trace.add_step("scalar", moeref::Tensor::scalar(-0.0f));
  trace.add_loss("a_loss", float_of(0x95ae43fd));
  trace.add_loss("b_loss", std::nanf(""));
  trace.add_loss("c_loss", -INFINITY);
  return trace;
}

std::string rewrite(const std::string& text) {
  const moeref::Trace read = moeref::trace_from_json(moeref::parse_json_text(text, "trace"), "trace");
  return moeref::write_trace(read);
}

}  // namespace

TEST_CASE("trace: special float32 values round-trip bit-exactly", "[trace][float32]") {
  const std::vector<uint32_t> patterns = {
      0x00000000, 0x80000000,                          // +0, -0
      0x00000001, 0x80000001,                          // smallest denormals
      0x00000002, 0x00000003, 0x000fffff,              // denormals
      0x00400000, 0x007ffffe, 0x007fffff,              // largest denormals
      0x807fffff, 0x00800000, 0x80800000,              // FLT_MIN
      0x00800001, 0x7f7fffff, 0xff7fffff,              // FLT_MAX
      0x7f7ffffe, 0x3dcccccd, 0xbdcccccd,              // 0.1f
      0x3f800000, 0x3f800001, 0x3f7fffff,              // around 1
      0x4b800000, 0x4b800001, 0x4b7fffff,              // around 2^24
      0x5f000000, 0x5f800000, 0x5effffff,              // around 2^63, 2^64
      0x15ae43fd, 0x95ae43fd, 0x15ae43fe, 0x15ae43fc,  // 7.038531e-26 and neighbours
      0x7f800000, 0xff800000,                          // infinities
  };
  check_bits_round_trip(patterns);
  // Each value also as a whole JSON document on its own.
  for (uint32_t bits : patterns) {
    const std::string text = text_of(float_of(bits));
    INFO(hex(bits) << " written as " << text);
    CHECK(bits_of(moeref::read_float32(moeref::parse_json_text(text, "one value"), "v")) == bits);
  }
  CHECK(text_of(FLT_MAX) == "3.4028235e+38");
  CHECK(text_of(FLT_MIN) == "1.1754944e-38");
  CHECK(text_of(FLT_TRUE_MIN) == "1e-45");
  CHECK(text_of(0.1f) == "0.1");
}

TEST_CASE("trace: zero and negative zero and non-finite values have exact text", "[trace][float32]") {
  CHECK(text_of(0.0f) == "0");
  CHECK(text_of(-0.0f) == "-0.0");
  CHECK(text_of(std::nanf("")) == "\"NaN\"");
  CHECK(text_of(-std::nanf("")) == "\"NaN\"");
  CHECK(text_of(INFINITY) == "\"Infinity\"");
  CHECK(text_of(-INFINITY) == "\"-Infinity\"");

  // "-0.0" keeps its sign through the parser; "-0" read as the integer 0 would not.
  const float negative_zero = moeref::read_float32(moeref::parse_json_text("-0.0", "z"), "z");
  CHECK(negative_zero == 0.0f);
  CHECK(std::signbit(negative_zero));
  CHECK_FALSE(std::signbit(moeref::read_float32(moeref::parse_json_text("0", "z"), "z")));

  const nlohmann::json strings = moeref::parse_json_text(R"(["NaN", "Infinity", "-Infinity"])", "s");
  CHECK(std::isnan(moeref::read_float32(strings[0], "s")));
  CHECK(moeref::read_float32(strings[1], "s") == INFINITY);
  CHECK(moeref::read_float32(strings[2], "s") == -INFINITY);

  // Anything else is refused, naming the field, the value and what is allowed.
  for (const char* bad : {R"("nan")", R"("inf")", R"("+Infinity")", R"("1.5")", "null", "true", "[1]", "{}"}) {
    const nlohmann::json value = moeref::parse_json_text(bad, "bad");
    INFO("value " << bad);
    REQUIRE_THROWS_AS(moeref::read_float32(value, "steps.x[g=0]"), moeref::InputError);
    REQUIRE_THROWS_WITH(moeref::read_float32(value, "steps.x[g=0]"),
                        Contains("steps.x[g=0]") && Contains(value.dump()) && Contains("\"Infinity\""));
  }
}

TEST_CASE("trace: random and swept float32 bit patterns round-trip bit-exactly", "[trace][float32]") {
  std::vector<uint32_t> patterns;
  // Random bit patterns over the whole range, NaNs included (only NaN-ness must survive).
  std::mt19937 generator(20240611u);
  for (int i = 0; i < 100000; ++i) patterns.push_back(static_cast<uint32_t>(generator()));
  // The first and last mantissas of every exponent, both signs: where shortest
  // decimals are most often mis-rounded.
  for (uint32_t exponent = 0; exponent < 255; ++exponent) {
    for (uint32_t mantissa : {0u, 1u, 2u, 0x400000u, 0x7ffffdu, 0x7ffffeu, 0x7fffffu}) {
      const uint32_t bits = (exponent << 23) | mantissa;
      patterns.push_back(bits);
      patterns.push_back(bits | 0x80000000u);
    }
  }
  // A stride through the denormals.
  for (uint32_t bits = 1; bits < 0x00800000u; bits += 4099) patterns.push_back(bits);
  check_bits_round_trip(patterns);
}

TEST_CASE("trace: 7.038531e-26 parses to the nearest float32 0x15ae43fd", "[trace][float32]") {
  // Why parse_json_text needs care: decimal -> double -> float32 rounds twice.
  const float twice_rounded = static_cast<float>(nlohmann::json::parse("7.038531e-26").get<double>());
  CHECK(hex(bits_of(twice_rounded)) == hex(0x15ae43fe));

  CHECK(text_of(float_of(0x15ae43fd)) == "7.038531e-26");
  CHECK(hex(bits_of(moeref::read_float32(moeref::parse_json_text("7.038531e-26", "t"), "t"))) == hex(0x15ae43fd));
  CHECK(hex(bits_of(moeref::read_float32(moeref::parse_json_text("-7.038531e-26", "t"), "t"))) == hex(0x95ae43fd));
  // The same text inside a tensor, and in other spellings of the same decimal.
  const nlohmann::json doc = moeref::parse_json_text(
      R"({"dims":["G","S"],"shape":[1,3],"dtype":"float32","data":[7.038531e-26,-7.038531E-26,70.38531e-27]})", "t");
  const moeref::Tensor tensor = moeref::tensor_from_json(doc, "inputs.t");
  CHECK(hex(bits_of(tensor.f32[0])) == hex(0x15ae43fd));
  CHECK(hex(bits_of(tensor.f32[1])) == hex(0x95ae43fd));
  CHECK(hex(bits_of(tensor.f32[2])) == hex(0x15ae43fd));
}

TEST_CASE("trace: a hand-made trace of awkward numbers re-writes byte for byte", "[trace][roundtrip]") {
  const moeref::Trace trace = awkward_trace();
  const std::string text = moeref::write_trace(trace);
  CHECK_THAT(text, Contains("-0.0") && Contains("\"NaN\"") && Contains("\"-Infinity\"") && Contains("7.038531e-26"));
  CHECK(rewrite(text) == text);

  const moeref::Trace read = moeref::trace_from_json(moeref::parse_json_text(text, "trace"), "trace");
  REQUIRE(read.steps.size() == trace.steps.size());
  for (size_t i = 0; i < trace.steps.size(); ++i) {
    CHECK(read.steps[i].name == trace.steps[i].name);
    check_same_tensor(read.steps[i].tensor, trace.steps[i].tensor, "step " + trace.steps[i].name);
  }
  for (const moeref::NamedTensor& input : trace.inputs) {
    const moeref::Tensor* found = read.find_input(input.name);
    REQUIRE(found != nullptr);
    check_same_tensor(*found, input.tensor, "input " + input.name);
  }
  REQUIRE(read.losses.size() == 3);
  CHECK(bits_of(read.losses[0].second) == 0x95ae43fdu);
  CHECK(std::isnan(read.losses[1].second));
  CHECK(read.losses[2].second == -INFINITY);
  CHECK(read.generator == trace.generator);
  CHECK(read.config == trace.config);
  CHECK(read.capacity == trace.capacity);
}

TEST_CASE("trace: a run's trace keeps every value and the step order through write and read", "[trace][roundtrip]") {
  nlohmann::json config = base_config();
  config["hparams"]["use_second_place_loss"] = true;
  const moeref::Trace trace = run_json(config);
  const moeref::Trace read =
      moeref::trace_from_json(moeref::parse_json_text(moeref::write_trace(trace), "trace"), "trace");
  REQUIRE(read.steps.size() == trace.steps.size());
  for (size_t i = 0; i < trace.steps.size(); ++i) {
    CHECK(read.steps[i].name == trace.steps[i].name);
    check_same_tensor(read.steps[i].tensor, trace.steps[i].tensor, "step " + trace.steps[i].name);
  }
  REQUIRE(read.inputs.size() == trace.inputs.size());
  for (const moeref::NamedTensor& input : trace.inputs) {
    const moeref::Tensor* found = read.find_input(input.name);
    REQUIRE(found != nullptr);
    check_same_tensor(*found, input.tensor, "input " + input.name);
  }
  REQUIRE(read.losses.size() == trace.losses.size());
  CHECK(read.config == trace.config);
  CHECK(read.capacity == trace.capacity);
}

// JSON objects are unordered and readers sort their keys, so the writer puts
// "inputs" and "losses" in name order: re-writing a read trace gives the same bytes.
TEST_CASE("trace: write_trace -> parse_json_text -> trace_from_json -> write_trace is byte-identical for a run",
          "[trace][roundtrip]") {
  const std::string text = moeref::write_trace(run_json(base_config()));
  CHECK(rewrite(text) == text);
  const moeref::Trace read = moeref::trace_from_json(moeref::parse_json_text(text, "trace"), "trace");
  REQUIRE(read.inputs.size() >= 5);
  for (size_t i = 1; i < read.inputs.size(); ++i) CHECK(read.inputs[i - 1].name < read.inputs[i].name);
}

TEST_CASE("trace: losses are written in name order and survive a round trip", "[trace][roundtrip]") {
  moeref::Trace trace;
  trace.add_loss("loss_2", 0.5f);
  trace.add_loss("gating_loss", 1.5f);
  const std::string text = moeref::write_trace(trace);
  CHECK(text.find("\"gating_loss\": 1.5, \"loss_2\": 0.5") != std::string::npos);
  const moeref::Trace read = moeref::trace_from_json(moeref::parse_json_text(text, "trace"), "trace");
  REQUIRE(read.losses.size() == 2);
  CHECK(read.losses[0] == std::make_pair(std::string("gating_loss"), 1.5f));
  CHECK(read.losses[1] == std::make_pair(std::string("loss_2"), 0.5f));
  CHECK(moeref::write_trace(read) == text);
}

TEST_CASE("trace: a hyperparameter whose decimal rounds twice is stable after one run", "[trace][roundtrip]") {
  // second_threshold_train = 7.038531e-26: parse_json_text moves the double by
  // an ulp so that it rounds to the right float32; from the written trace on,
  // the text must not move again.
  const std::string config_text =
      std::string(R"({"variant":"mtf_top2","seed":3,"dims":{"B":2,"L":4,"E":3,"M":4,"H":5},)") +
      R"("hparams":{"group_size":4,"second_threshold_train":7.038531e-26}})";
  const moeref::Trace first = run_json(moeref::parse_json_text(config_text, "config"));
  const std::string first_text = moeref::write_trace(first);
  const double threshold = first.config["hparams"]["second_threshold_train"].get<double>();
  CHECK(hex(bits_of(static_cast<float>(threshold))) == hex(0x15ae43fd));
  const moeref::Trace replayed = run_json(moeref::parse_json_text(first_text, "trace"));
  CHECK(replayed.config == first.config);
  CHECK(moeref::write_trace(replayed) == first_text);
}

TEST_CASE("trace: tensor_from_json reads a well-formed tensor", "[trace][tensor]") {
  const moeref::Tensor f = moeref::tensor_from_json(tensor_doc("float32", {0.5, -1, "NaN", "-Infinity"}), "inputs.t");
  CHECK(f.dims == std::vector<std::string>{"G", "S"});
  CHECK(f.shape == std::vector<int64_t>{2, 2});
  CHECK(f.dtype == moeref::DType::kFloat32);
  REQUIRE(f.f32.size() == 4);
  CHECK(f.f32[0] == 0.5f);
  CHECK(f.f32[1] == -1.0f);
  CHECK(std::isnan(f.f32[2]));
  CHECK(f.f32[3] == -INFINITY);
  const moeref::Tensor i = moeref::tensor_from_json(
      tensor_doc("int32", {std::numeric_limits<int32_t>::min(), 0, 7, std::numeric_limits<int32_t>::max()}),
      "inputs.t");
  CHECK(i.dtype == moeref::DType::kInt32);
  CHECK(i.i32 == std::vector<int32_t>{std::numeric_limits<int32_t>::min(), 0, 7, std::numeric_limits<int32_t>::max()});
  nlohmann::json named = tensor_doc("int32", {1, 2, 3, 4});
  named["name"] = "index_1";  // a step object carries its name beside the tensor fields
  CHECK(moeref::tensor_from_json(named, "steps.index_1").i32 == std::vector<int32_t>{1, 2, 3, 4});
}

TEST_CASE("trace: tensor_from_json rejects malformed tensors naming the field", "[trace][tensor]") {
  const std::string field = "inputs.t";
  auto rejects = [&field](const nlohmann::json& doc, const std::vector<std::string>& parts) {
    INFO("tensor " << doc.dump());
    std::string message;
    try {
      moeref::tensor_from_json(doc, field);
    } catch (const moeref::InputError& error) {
      message = error.what();
    }
    REQUIRE_FALSE(message.empty());
    for (const std::string& part : parts) CHECK_THAT(message, Contains(part));
  };

  SECTION("wrong data length") {
    rejects(tensor_doc("float32", {1, 2, 3}), {"inputs.t.data", "3 values", "4 values"});
    rejects(tensor_doc("int32", {1, 2, 3, 4, 5}), {"inputs.t.data", "5 values", "4 values"});
  }
  SECTION("shape and dims of different lengths") {
    nlohmann::json doc = tensor_doc("float32", {1, 2, 3, 4});
    doc["shape"] = {4};
    rejects(doc, {"inputs.t.shape", "[4]", "2 extents"});
    doc["shape"] = {1, 2, 2};
    rejects(doc, {"inputs.t.shape", "[1,2,2]", "2 extents"});
  }
  SECTION("negative or non-integer extent") {
    nlohmann::json doc = tensor_doc("float32", nlohmann::json::array());
    doc["shape"] = {2, -2};
    rejects(doc, {"inputs.t.shape", "[2,-2]", "non-negative"});
    doc["shape"] = {2, 1.5};
    rejects(doc, {"inputs.t.shape", "1.5", "non-negative integer"});
    doc["shape"] = {2, "2"};
    rejects(doc, {"inputs.t.shape", "non-negative integer"});
  }
  SECTION("unknown dtype") {
    rejects(tensor_doc("float64", {1, 2, 3, 4}), {"inputs.t.dtype", "\"float64\"", "\"float32\" or \"int32\""});
    rejects(tensor_doc("Float32", {1, 2, 3, 4}), {"inputs.t.dtype", "\"Float32\""});
  }
  SECTION("int32 value out of range or not an integer") {
    rejects(tensor_doc("int32", {0, 2147483648LL, 0, 0}), {"inputs.t[g=0, s=1]", "2147483648", "int32"});
    rejects(tensor_doc("int32", {0, 0, -2147483649LL, 0}), {"inputs.t[g=1, s=0]", "-2147483649", "int32"});
    rejects(tensor_doc("int32", {0, 0, 0, 1.5}), {"inputs.t[g=1, s=1]", "1.5", "int32"});
    rejects(tensor_doc("int32", {0, 0, 0, "1"}), {"inputs.t[g=1, s=1]", "\"1\"", "int32"});
  }
  SECTION("unknown field") {
    nlohmann::json doc = tensor_doc("float32", {1, 2, 3, 4});
    doc["strides"] = {2, 1};
    rejects(doc, {"inputs.t.strides", "unknown", "dims, shape, dtype, data"});
  }
  SECTION("missing field") {
    for (const char* key : {"dims", "shape", "dtype", "data"}) {
      nlohmann::json doc = tensor_doc("float32", {1, 2, 3, 4});
      doc.erase(key);
      rejects(doc, {std::string("inputs.t.") + key, "missing"});
    }
  }
  SECTION("float data that is not a number") {
    rejects(tensor_doc("float32", {1, 2, "abc", 4}), {"inputs.t[g=1, s=0]", "\"abc\"", "a JSON number"});
    rejects(tensor_doc("float32", {1, nullptr, 3, 4}), {"inputs.t[g=0, s=1]", "null"});
    rejects(tensor_doc("float32", {1, 2, 3, true}), {"inputs.t[g=1, s=1]", "true"});
    rejects(tensor_doc("float32", {1, 2, 3, {4}}), {"inputs.t[g=1, s=1]", "[4]"});
    rejects(tensor_doc("float32", {"nan", 2, 3, 4}), {"inputs.t[g=0, s=0]", "\"nan\""});
  }
  SECTION("data or tensor of the wrong JSON type") {
    rejects(tensor_doc("float32", "1,2,3,4"), {"inputs.t.data", "an array of 4 values"});
    rejects(nlohmann::json::array({1, 2}), {"inputs.t", "array", "tensor object"});
    nlohmann::json doc = tensor_doc("float32", {1, 2, 3, 4});
    doc["dims"] = {"G", ""};
    rejects(doc, {"inputs.t.dims", "non-empty"});
  }
}

// nlohmann stores 18446744073709551615 as an unsigned integer, which
// get<int64_t>() would wrap to -1: the reader must reject it, not read -1.
TEST_CASE("trace: tensor_from_json rejects int32 values beyond int64", "[trace][tensor]") {
  const nlohmann::json doc = moeref::parse_json_text(
      R"({"dims":["G","S"],"shape":[1,2],"dtype":"int32","data":[18446744073709551615,18446744071562067968]})", "t");
  REQUIRE_THROWS_AS(moeref::tensor_from_json(doc, "steps.index_1"), moeref::InputError);
  REQUIRE_THROWS_WITH(moeref::tensor_from_json(doc, "steps.index_1"),
                      Contains("steps.index_1[g=0, s=0]") && Contains("18446744073709551615"));
}

TEST_CASE("trace: trace_from_json refuses documents that are not version-1 or version-2 traces", "[trace]") {
  const std::string text = moeref::write_trace(awkward_trace());
  const nlohmann::json good = moeref::parse_json_text(text, "trace");
  auto message_of = [](const nlohmann::json& doc) {
    try {
      moeref::trace_from_json(doc, "cand.json");
    } catch (const moeref::InputError& error) {
      return std::string(error.what());
    }
    return std::string();
  };
  nlohmann::json doc = good;
  doc["format"] = "other-trace";
  CHECK_THAT(message_of(doc), Contains("cand.json") && Contains("not a moeref trace"));
  doc = good;
  doc["format_version"] = 3;  // 1 and 2 (sidecars) are read
  CHECK_THAT(message_of(doc), Contains("format_version: got 3"));
  doc = good;
  doc["steps"] = {{"a", 1}};
  CHECK_THAT(message_of(doc), Contains("steps") && Contains("array"));
  doc = good;
  doc["steps"][1]["name"] = "specials";
  CHECK_THAT(message_of(doc), Contains("steps[1].name") && Contains("\"specials\""));
  doc = good;
  doc["steps"][0].erase("name");
  CHECK_THAT(message_of(doc), Contains("steps[0].name") && Contains("missing"));
  doc = good;
  doc["losses"]["a_loss"] = "zero";
  CHECK_THAT(message_of(doc), Contains("losses.a_loss") && Contains("\"zero\""));
  doc = good;
  doc["inputs"]["b_input"]["dtype"] = "int64";
  CHECK_THAT(message_of(doc), Contains("inputs.b_input.dtype") && Contains("\"int64\""));
  CHECK_THROWS_AS(moeref::parse_json_text(text.substr(0, text.size() / 2), "half.json"), moeref::InputError);
  CHECK_THROWS_WITH(moeref::parse_json_text(text.substr(0, text.size() / 2), "half.json"),
                    Contains("half.json") && Contains("not valid JSON"));
}
