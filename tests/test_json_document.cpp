// The fast reader (parse_json_document) must read exactly what the DOM reader
// (parse_json_text) reads, and reject the same bad data with a clear message.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "moeref/error.hpp"
#include "moeref/mapped_text.hpp"
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

TEST_CASE("the fast reader takes bare NaN and Infinity words in data arrays, as Python's json writes them",
          "[trace][reader]") {
  // Lifted from the text as they stand (the rest of the document is quoted after).
  const std::string text = R"({"dims":["K"],"shape":[5],"dtype":"float32","data":[NaN, Infinity, -Infinity, 2, -0.5]})";
  const moeref::ParsedDocument parsed = moeref::parse_json_document(text, "fast");
  REQUIRE(parsed.arrays.size() == 1);
  const moeref::Tensor fast = moeref::tensor_from_json(parsed.doc, "t", &parsed.arrays);
  REQUIRE(fast.f32.size() == 5);
  CHECK(std::isnan(fast.f32[0]));
  CHECK(fast.f32[1] == INFINITY);
  CHECK(fast.f32[2] == -INFINITY);
  CHECK(fast.f32[3] == 2.0f);
  CHECK(fast.f32[4] == -0.5f);
  // A bare word elsewhere (a loss written by Python) is read as the string moeref writes.
  const moeref::ParsedDocument loss = moeref::parse_json_document(R"({"loss": NaN, "data": [1]})", "fast");
  CHECK(loss.doc["loss"] == "NaN");
}

TEST_CASE("a mapped text handed back as it is read parses as the whole text does, and reports errors past it",
          "[trace][reader]") {
  // 2^24 values of 5 bytes: past the 64 MiB after which the reader hands pages back.
  const std::string dir = moeref::testing::temp_dir("mapped");
  auto write = [&](const std::string& name, const std::string& tail) {
    const std::string path = dir + "/" + name;
    std::ofstream out(path, std::ios::binary);
    out << R"({"a": {"dims":["K"],"shape":[16777216],"dtype":"float32","data":[)";
    for (int i = 0; i < 16777216; ++i) out << (i == 0 ? "" : ",") << (i % 7 == 0 ? "-1.5" : "0.25");
    out << "]}, " << tail;
    return path;
  };
  const std::string good = write("good.json", R"("b": {"dims":["K"],"shape":[2],"dtype":"int32","data":[3, 4]}})");
  std::vector<size_t> released;
  moeref::MappedText text(good, "test file");
  const moeref::ParsedDocument parsed = moeref::parse_json_document(text.text(), "mapped", [&](size_t offset) {
    released.push_back(offset);
    text.release_before(offset);
  });
  REQUIRE(!released.empty());  // pages were handed back while reading
  CHECK(std::is_sorted(released.begin(), released.end()));
  const moeref::Tensor a = moeref::tensor_from_json(parsed.doc["a"], "a", &parsed.arrays);
  REQUIRE(a.f32.size() == 16777216u);
  CHECK(a.f32[0] == -1.5f);
  CHECK(a.f32[16777215] == (16777215 % 7 == 0 ? -1.5f : 0.25f));
  CHECK(std::count(a.f32.begin(), a.f32.end(), -1.5f) == (16777216 + 6) / 7);
  CHECK(moeref::tensor_from_json(parsed.doc["b"], "b", &parsed.arrays).i32 == std::vector<int32_t>{3, 4});
  // A document that is malformed after the released part: the general reader goes over
  // the text again from the start (the released pages come back from the file) and says where.
  const std::string bad = write("bad.json", R"("b": [1, 2,]})");
  moeref::MappedText bad_text(bad, "test file");
  CHECK_THROWS_WITH(moeref::parse_json_document(bad_text.text(), "mapped bad",
                                                [&](size_t offset) { bad_text.release_before(offset); }),
                    Catch::Matchers::Contains("mapped bad") && Catch::Matchers::Contains("not valid JSON"));
}

TEST_CASE("a trace read once moves its values out of the data arrays instead of copying them", "[trace][reader]") {
  const moeref::Trace& golden = moeref::testing::tiny_mtf_top2_layer_trace();
  const std::string text = moeref::write_trace(golden);
  moeref::ParsedDocument copied = moeref::parse_json_document(text, "copied");
  moeref::ParsedDocument consumed = moeref::parse_json_document(text, "consumed");
  const moeref::Trace by_copy = moeref::trace_from_json(copied.doc, "copied", &copied.arrays);
  const moeref::Trace by_move = moeref::trace_from_json_consuming(consumed.doc, "consumed", consumed.arrays);
  CHECK(moeref::write_trace(by_move) == moeref::write_trace(by_copy));
  size_t left = 0;
  for (const moeref::DataArray& array : consumed.arrays) left += array.size();
  CHECK(left == 0);  // every tensor's values moved out (int32 ones freed once converted)
  size_t kept = 0;
  for (const moeref::DataArray& array : copied.arrays) kept += array.size();
  CHECK(kept > 0);
}

TEST_CASE("a data array of many MB, read by every thread in pieces, is what the DOM reader reads", "[trace][reader]") {
  using Catch::Matchers::Contains;
  // Over 8 MiB of text: cut at commas into pieces of about 4 MiB read side by side. The
  // values take every form a data array may hold, with spaces and line breaks between.
  uint32_t state = 31337;
  auto next = [&state]() {
    state = state * 1664525u + 1013904223u;
    return state;
  };
  const int64_t n = 1300000;
  std::vector<std::string> values;
  values.reserve(static_cast<size_t>(n));
  char buffer[64];
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t kind = next() % 20;
    float value = 0.0f;
    std::memcpy(&value, &state, sizeof value);
    if (!std::isfinite(value)) value = 1.5f;
    if (kind < 12) {
      const std::to_chars_result shortest = std::to_chars(buffer, buffer + sizeof buffer, value);
      values.emplace_back(buffer, shortest.ptr);
      if (values.back().find_first_of(".e") == std::string::npos) values.back() += ".0";
    } else if (kind < 14) {
      std::snprintf(buffer, sizeof buffer, "%.9e", static_cast<double>(value));
      values.emplace_back(buffer);
    } else if (kind < 17) {
      values.push_back(std::to_string(static_cast<int32_t>(next() % 2000001) - 1000000));  // an integer
    } else {
      const char* words[] = {"NaN", "\"NaN\"", "Infinity", "\"-Infinity\"", "-0", "-0.0", "16777216"};
      values.emplace_back(words[next() % 7]);
    }
  }
  auto document = [&](const std::vector<std::string>& items) {
    std::string text = R"({"dims":["K"],"shape":[)" + std::to_string(items.size()) + R"(],"dtype":"float32","data":[)";
    for (size_t i = 0; i < items.size(); ++i) {
      if (i > 0) text += next() % 7 == 0 ? " ,\n " : ",";
      text += items[i];
    }
    return text + " ]}";
  };
  SECTION("every value the same bits") {
    const std::string text = document(values);
    REQUIRE(text.size() > (size_t{8} << 20));
    const moeref::Tensor fast = via_fast_reader(text);
    const moeref::Tensor dom = via_dom_reader(text);
    REQUIRE(fast.f32.size() == static_cast<size_t>(n));
    REQUIRE(dom.f32.size() == static_cast<size_t>(n));
    int64_t differ = 0;
    for (size_t i = 0; i < fast.f32.size(); ++i) differ += bits_of(fast.f32[i]) != bits_of(dom.f32[i]) ? 1 : 0;
    CHECK(differ == 0);
  }
  SECTION("an integer that needs a double, far into the array, is kept as the one-by-one reader keeps it") {
    std::vector<std::string> with_large = values;
    with_large[1000003] = "16777217";
    const moeref::ParsedDocument parsed = moeref::parse_json_document(document(with_large), "fast");
    REQUIRE(parsed.arrays.size() == 1);
    CHECK(parsed.arrays[0].at(1000003) == 16777217.0);
    CHECK(parsed.arrays[0].size() == static_cast<size_t>(n));
  }
  SECTION("an integer array stays all integers") {
    std::vector<std::string> integers(static_cast<size_t>(n));
    for (std::string& item : integers) item = std::to_string(next() % 100000);
    const moeref::ParsedDocument parsed = moeref::parse_json_document(document(integers), "fast");
    REQUIRE(parsed.arrays.size() == 1);
    CHECK(parsed.arrays[0].all_integers);
    CHECK(parsed.arrays[0].at(777777) == std::stod(integers[777777]));
  }
  SECTION("a trailing comma where a piece is cut is refused, as the one-by-one reader refuses it") {
    // 2097154 values of 4 bytes "1.5,": the second piece is cut at the last comma, just
    // before the ']'.
    const size_t count = 2097154;
    std::string items;
    for (size_t i = 0; i < count; ++i) items += "1.5,";
    const std::string head = R"({"dims":["K"],"shape":[)" + std::to_string(count) + R"(],"dtype":"float32","data":[)";
    CHECK_THROWS_WITH(moeref::parse_json_document(head + items + "]}", "fast"), Contains("not valid JSON"));
    items.pop_back();
    const moeref::Tensor read = via_fast_reader(head + items + "]}");
    CHECK(read.f32.size() == count);
  }
  SECTION("a bad value far into the array is reported at its position") {
    std::vector<std::string> with_bad = values;
    with_bad[1234567] = "\"abc\"";
    CHECK_THROWS_WITH(via_fast_reader(document(with_bad)), Contains("abc") && Contains("1234567"));
  }
}
