// The fast reader (parse_json_document) must read exactly what the DOM reader
// (parse_json_text) reads, and reject the same bad data with a clear message.
#include <cmath>
#include <cstring>

#include "moeref/error.hpp"
#include "test_support.hpp"

namespace {

uint32_t bits_of(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

moeref::Tensor via_fast_reader(const std::string& tensor_text) {
  const moeref::ParsedDocument parsed = moeref::parse_json_document(tensor_text, "fast");
  return moeref::tensor_from_json(parsed.doc, "t", &parsed.arrays);
}

moeref::Tensor via_dom_reader(const std::string& tensor_text) {
  return moeref::tensor_from_json(moeref::parse_json_text(tensor_text, "dom"), "t");
}

}  // namespace

TEST_CASE("fast and DOM readers agree bit for bit on float32 data", "[trace][reader]") {
  // 7.038531e-26 reads as a different float32 through double; both readers must avoid that.
  const std::string text = R"({"dims":["K"],"shape":[9],"dtype":"float32",
    "data":[7.038531e-26, -7.038531e-26, 0.1, -0.0, 3.4028235e38, 1e-45, "NaN", "Infinity", 12]})";
  const moeref::Tensor fast = via_fast_reader(text);
  const moeref::Tensor dom = via_dom_reader(text);
  REQUIRE(fast.f32.size() == 9);
  CHECK(bits_of(fast.f32[0]) == 0x15ae43fdu);
  CHECK(bits_of(fast.f32[1]) == 0x95ae43fdu);
  CHECK(std::signbit(fast.f32[3]));
  CHECK(std::isnan(fast.f32[6]));
  CHECK(std::isinf(fast.f32[7]));
  for (size_t i = 0; i < 9; ++i) {
    INFO("element " << i);
    CHECK(bits_of(fast.f32[i]) == bits_of(dom.f32[i]));
  }
}

TEST_CASE("the fast reader keeps keys named data outside tensors and strings containing data", "[trace][reader]") {
  const std::string text = R"({"note": "a \"data\": [1,2] inside a string", "data": {"x": 1},
    "t": {"dims":["K"],"shape":[2],"dtype":"int32","data" : [ 4 , -5 ]}})";
  const moeref::ParsedDocument parsed = moeref::parse_json_document(text, "fast");
  CHECK(parsed.doc["note"] == "a \"data\": [1,2] inside a string");
  CHECK(parsed.doc["data"]["x"] == 1);
  const moeref::Tensor t = moeref::tensor_from_json(parsed.doc["t"], "t", &parsed.arrays);
  CHECK(t.i32 == std::vector<int32_t>{4, -5});
}

TEST_CASE("the fast reader rejects bad data the way the DOM reader does", "[trace][reader]") {
  using Catch::Matchers::Contains;
  const std::string wrong_count = R"({"dims":["K"],"shape":[3],"dtype":"float32","data":[1,2]})";
  CHECK_THROWS_WITH(via_fast_reader(wrong_count), Contains("t.data") && Contains("2 values"));
  const std::string bad_string = R"({"dims":["K"],"shape":[2],"dtype":"float32","data":[1,"nan"]})";
  CHECK_THROWS_AS(via_fast_reader(bad_string), moeref::InputError);
  const std::string fraction_in_int = R"({"dims":["K"],"shape":[2],"dtype":"int32","data":[1,2.5]})";
  CHECK_THROWS_WITH(via_fast_reader(fraction_in_int), Contains("int32"));
  const std::string out_of_range = R"({"dims":["K"],"shape":[1],"dtype":"int32","data":[4294967296]})";
  CHECK_THROWS_WITH(via_fast_reader(out_of_range), Contains("t[k=0]"));
  const std::string nested = R"({"dims":["K"],"shape":[1],"dtype":"float32","data":[[1]]})";
  CHECK_THROWS_AS(via_fast_reader(nested), moeref::InputError);
  CHECK_THROWS_WITH(moeref::parse_json_document(R"({"dims":["K"],"data":[1,2)", "truncated"),
                    Contains("truncated") && Contains("not valid JSON"));
}
