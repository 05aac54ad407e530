// Trace format version 2: tensors in .npy sidecars with their sha256, the packed .tar,
// and readers that take every form (spec/trace-format.md, "Version 2: sidecars").
//
// Dims of the hand-built tensors: G groups, S group size, E experts.
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "moeref/error.hpp"
#include "moeref/npy.hpp"
#include "moeref/sha256.hpp"
#include "moeref/trace_files.hpp"
#include "test_support.hpp"

using Catch::Contains;
using moeref::testing::bits_of;
using moeref::testing::float_of;
using moeref::testing::read_text;
using moeref::testing::run_cli;
using moeref::testing::run_shell;
using moeref::testing::temp_dir;
using moeref::testing::write_text;

namespace {

// Equal field by field, float32 values compared by their bits.
void require_same_tensor(const moeref::Tensor& a, const moeref::Tensor& b, const std::string& name) {
  INFO("tensor " << name);
  REQUIRE(a.dims == b.dims);
  REQUIRE(a.shape == b.shape);
  REQUIRE(a.dtype == b.dtype);
  REQUIRE(a.i32 == b.i32);
  REQUIRE(a.f32.size() == b.f32.size());
  for (size_t i = 0; i < a.f32.size(); ++i) {
    if (bits_of(a.f32[i]) != bits_of(b.f32[i])) FAIL("element " << i << " differs in its bits");
  }
}

void require_same_trace(const moeref::Trace& a, const moeref::Trace& b) {
  REQUIRE(a.generator == b.generator);
  REQUIRE(a.config == b.config);
  REQUIRE(a.capacity == b.capacity);
  REQUIRE(a.check == b.check);
  REQUIRE(a.reads == b.reads);
  REQUIRE(a.losses.size() == b.losses.size());
  REQUIRE(a.inputs.size() == b.inputs.size());
  REQUIRE(a.steps.size() == b.steps.size());
  for (const moeref::NamedTensor& input : a.inputs) {
    const moeref::Tensor* other = b.find_input(input.name);
    REQUIRE(other != nullptr);
    require_same_tensor(input.tensor, *other, "inputs." + input.name);
  }
  for (size_t i = 0; i < a.steps.size(); ++i) {
    REQUIRE(a.steps[i].name == b.steps[i].name);
    require_same_tensor(a.steps[i].tensor, b.steps[i].tensor, "steps." + a.steps[i].name);
  }
}

// A trace with the values text cannot carry: a NaN payload, -0, extremes, and int32s.
moeref::Trace awkward_trace() {
  moeref::Trace trace;
  trace.config = {{"variant", "hand_built"}};
  moeref::Tensor logits = moeref::Tensor::float32({"G", "S", "E"}, {2, 3, 4});
  const uint32_t specials[] = {0x7fc00001u, 0xffc12345u, 0x80000000u, 0x00000001u, 0x7f7fffffu, 0xff800000u};
  for (size_t i = 0; i < logits.f32.size(); ++i) {
    logits.f32[i] = i < 6 ? float_of(specials[i]) : static_cast<float>(i) * 0.1f - 1.0f;
  }
  trace.inputs.push_back({"logits", logits});
  trace.inputs.push_back({"odd name/with slash", moeref::Tensor::float32({"E"}, {4})});
  moeref::Tensor index = moeref::Tensor::int32({"G", "S"}, {2, 3});
  index.i32 = {0, -1, std::numeric_limits<int32_t>::max(), std::numeric_limits<int32_t>::min(), 7, 3};
  trace.add_step("index_1", index, {"inputs.logits"});
  trace.add_step("scalar", moeref::Tensor::scalar(-0.0f));
  trace.add_loss("aux_loss", 0.25f);
  return trace;
}

std::string npy_path_of(const std::string& json_path, const std::string& file) {
  return std::filesystem::path(json_path).parent_path().string() + "/" + file;
}

std::string sidecar_file_of(const std::string& json_path, const std::string& key) {
  const nlohmann::json doc = nlohmann::json::parse(read_text(json_path));
  if (key.rfind("inputs.", 0) == 0) return doc["inputs"][key.substr(7)]["file"].get<std::string>();
  for (const nlohmann::json& step : doc["steps"]) {
    if (step["name"] == key.substr(6)) return step["file"].get<std::string>();
  }
  FAIL("no sidecar for " << key);
  return "";
}

std::string error_of_reading(const std::string& path) {
  try {
    moeref::read_trace_file(path);
  } catch (const moeref::InputError& error) {
    return error.what();
  }
  return "no error";
}

bool have_program(const std::string& test) { return run_shell(test).exit_code == 0; }

// `count` bytes of a linear congruential sequence from `seed` (the same on every run).
std::vector<unsigned char> pseudo_random_bytes(size_t count, uint32_t seed) {
  std::vector<unsigned char> bytes(count);
  uint32_t state = seed;
  for (unsigned char& byte : bytes) {
    state = state * 1664525u + 1013904223u;
    byte = static_cast<unsigned char>(state >> 24);
  }
  return bytes;
}

}  // namespace

TEST_CASE("sha256: the FIPS 180-2 test vectors", "[sidecars][sha256]") {
  const std::string abc = "abc";
  const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  const std::string million(1000000, 'a');
  for (const bool portable : {false, true}) {
    INFO("portable " << portable << ", SHA extensions in use " << moeref::sha256_uses_cpu_extensions());
    const auto hash = [portable](const std::string& text) {
      return portable ? moeref::sha256_hex_portable(text.data(), text.size())
                      : moeref::sha256_hex(text.data(), text.size());
    };
    CHECK(hash(abc) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(hash(two_blocks) == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    CHECK(hash(million) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    CHECK(hash("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  }
}

TEST_CASE("sha256: streamed in uneven pieces, every length, equals the portable digest", "[sidecars][sha256]") {
  const std::vector<unsigned char> bytes = pseudo_random_bytes(1500, 12345);
  for (size_t size = 0; size <= bytes.size(); size += 7) {
    moeref::Sha256 streamed;
    for (size_t done = 0; done < size;) {
      const size_t piece = std::min(size - done, 1 + (done * 13) % 150);
      streamed.update(bytes.data() + done, piece);
      done += piece;
    }
    REQUIRE(streamed.finish_hex() == moeref::sha256_hex_portable(bytes.data(), size));
  }
}

TEST_CASE("sha256: two messages hashed side by side keep their own digests", "[sidecars][sha256]") {
  const std::vector<unsigned char> bytes = pseudo_random_bytes(2000, 777);
  const unsigned char* first = bytes.data();
  const unsigned char* second = bytes.data() + 1000;  // another message, not the first one again
  INFO("SHA extensions in use " << moeref::sha256_uses_cpu_extensions());
  // Lengths of either, and a first update of one of them that leaves a block pending
  // (or not), so the pair starts from every mix of pending and whole blocks.
  for (size_t first_size = 0; first_size <= 1000; first_size += 61) {
    for (size_t second_size = 0; second_size <= 1000; second_size += 97) {
      for (const size_t head : {size_t{0}, size_t{5}, size_t{64}}) {
        CAPTURE(first_size, second_size, head);
        moeref::Sha256 a, b;
        const size_t first_head = std::min(head, first_size);
        a.update(first, first_head);
        moeref::Sha256::update_both(a, first + first_head, first_size - first_head, b, second, second_size);
        REQUIRE(a.finish_hex() == moeref::sha256_hex_portable(first, first_size));
        REQUIRE(b.finish_hex() == moeref::sha256_hex_portable(second, second_size));
      }
    }
  }
}

TEST_CASE("npy: headers are numpy's own, 64-byte aligned, and parse back", "[sidecars][npy]") {
  const moeref::Tensor big = moeref::Tensor::float32({"G", "S", "E", "C"}, {4, 1024, 16, 80});
  const std::string header = moeref::npy_header(big);
  CHECK(header.size() % 64 == 0);
  CHECK(header.substr(0, 8) == std::string("\x93NUMPY\x01\x00", 8));
  CHECK(header.find("{'descr': '<f4', 'fortran_order': False, 'shape': (4, 1024, 16, 80), }") == 10);
  CHECK(header.back() == '\n');
  CHECK(moeref::npy_shape_text({7}) == "(7,)");
  CHECK(moeref::npy_shape_text({}) == "()");
  const moeref::NpyHeader parsed = moeref::parse_npy_header(header.data(), header.size(), "test");
  CHECK(parsed.descr == "<f4");
  CHECK(!parsed.fortran_order);
  CHECK(parsed.shape == big.shape);
  CHECK(parsed.data_offset == header.size());
  const std::string int_header = moeref::npy_header(moeref::Tensor::int32({"G"}, {3}));
  CHECK(int_header.find("{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }") == 10);
  const std::string bad = std::string("\x93NUMPY\x01\x00\x10\x00{'descr': 7}   \n", 26);
  CHECK_THROWS_WITH(moeref::parse_npy_header(bad.data(), bad.size(), "bad.npy"), Contains("bad.npy .npy header"));
}

TEST_CASE("sidecars: a round trip is bit-exact (NaN payloads, -0, int32 extremes)", "[sidecars]") {
  const std::string dir = temp_dir("sidecars_roundtrip");
  const moeref::Trace trace = awkward_trace();
  const std::string path = dir + "/awkward.trace.json";
  REQUIRE(moeref::write_trace_files(path, trace, moeref::sidecars_above_rule(0)) == 4);
  const std::string text = read_text(path);
  CHECK_THAT(text, Contains("\"format_version\": 2"));
  CHECK_THAT(text, Contains("\"file\":\"awkward.trace.arrays/inputs.logits.npy\""));
  // A name with a '/' is written by its position among the sorted inputs only.
  CHECK_THAT(text, Contains("\"file\":\"awkward.trace.arrays/inputs.0001.npy\""));
  CHECK_THAT(text, Contains("\"file\":\"awkward.trace.arrays/steps.0000.index_1.npy\""));
  CHECK_THAT(text,
             Contains("{\"name\":\"index_1\",\"reads\":[\"inputs.logits\"],\"dims\":[\"G\",\"S\"],\"shape\":[2,3],"
                      "\"dtype\":\"int32\",\"file\":"));
  CHECK(std::filesystem::is_regular_file(dir + "/awkward.trace.arrays/steps.0001.scalar.npy"));
  const moeref::Trace back = moeref::read_trace_file(path);
  require_same_trace(trace, back);
  CHECK(bits_of(back.find_input("logits")->f32[0]) == 0x7fc00001u);
  CHECK(bits_of(back.find_step("scalar")->f32[0]) == 0x80000000u);
  // Written again from what was read: the same bytes.
  const std::string again = dir + "/again.json";
  moeref::write_trace_files(again, back, moeref::sidecars_above_rule(0));
  CHECK(read_text(again) == [&] {
    std::string expected = text;
    for (size_t at; (at = expected.find("awkward.trace.arrays/")) != std::string::npos;) {
      expected.replace(at, 21, "again.arrays/");
    }
    return expected;
  }());
}

TEST_CASE("sidecars: files of uneven sizes, read two at a time across chunks, come back bit-exact", "[sidecars]") {
  // The reader splits the files into two lanes and hashes their 4 MiB chunks side by
  // side: these sizes put file ends in the middle of the other lane's chunks.
  const std::string dir = temp_dir("sidecars_lanes");
  moeref::Trace trace;
  trace.config = {{"variant", "hand_built"}};
  const std::vector<int64_t> sizes = {1500001, 3, 3000000, 1, 1048577, 700};
  uint32_t state = 99;
  for (size_t s = 0; s < sizes.size(); ++s) {
    moeref::Tensor tensor = moeref::Tensor::float32({"S"}, {sizes[s]});
    for (float& value : tensor.f32) {
      state = state * 1664525u + 1013904223u;
      value = float_of(state);
    }
    trace.add_step("step_" + std::to_string(s), tensor);
  }
  const std::string path = dir + "/lanes.json";
  REQUIRE(moeref::write_trace_files(path, trace, moeref::sidecars_above_rule(0)) == sizes.size());
  require_same_trace(trace, moeref::read_trace_file(path));

  // A byte changed late in a large file or in a small one is found, named by its step.
  for (const size_t bad : {size_t{2}, size_t{5}}) {
    const std::string npy = npy_path_of(path, sidecar_file_of(path, "steps.step_" + std::to_string(bad)));
    std::string bytes = read_text(npy);
    const std::string original = bytes;
    bytes[bytes.size() - 2] = static_cast<char>(bytes[bytes.size() - 2] ^ 1);
    write_text(npy, bytes);
    const std::string error = error_of_reading(path);
    CHECK_THAT(error, Contains("steps[" + std::to_string(bad) + "] (step_" + std::to_string(bad) + ").sha256"));
    write_text(npy, original);
  }
  require_same_trace(trace, moeref::read_trace_file(path));
}

TEST_CASE("sidecars: inline and sidecar forms of a run read back to the same trace", "[sidecars]") {
  const std::string dir = temp_dir("sidecars_forms");
  const moeref::Trace& trace = moeref::testing::tiny_mtf_top2_layer_trace();
  moeref::write_trace_files(dir + "/inline.json", trace, moeref::sidecars_above_rule(std::nullopt));
  REQUIRE(moeref::write_trace_files(dir + "/split.json", trace, moeref::sidecars_above_rule(10)) > 0);
  CHECK(!std::filesystem::exists(dir + "/inline.arrays"));
  CHECK(read_text(dir + "/inline.json") == moeref::write_trace(trace));
  const moeref::Trace from_inline = moeref::read_trace_file(dir + "/inline.json");
  const moeref::Trace from_split = moeref::read_trace_file(dir + "/split.json");
  require_same_trace(from_inline, from_split);
  require_same_trace(trace, from_split);
  // Only tensors of more than 10 elements went out.
  for (const auto& entry : std::filesystem::directory_iterator(dir + "/split.arrays")) {
    const moeref::NpyHeader header = moeref::parse_npy_header(read_text(entry.path().string()).data(), 128, "x");
    int64_t count = 1;
    for (const int64_t extent : header.shape) count *= extent;
    CHECK(count > 10);
  }
}

TEST_CASE("sidecars: a trace with nothing above the threshold stays version 1, byte for byte", "[sidecars]") {
  const std::string dir = temp_dir("sidecars_v1");
  const std::string golden = std::string(MOEREF_SOURCE_DIR) + "/golden/mtf_top2/default_layer_train.trace.json";
  const moeref::Trace trace = moeref::read_trace_file(golden);
  REQUIRE(moeref::write_trace_files(dir + "/again.trace.json", trace,
                                    moeref::sidecars_above_rule(moeref::kDefaultSidecarsAbove)) == 0);
  CHECK(read_text(dir + "/again.trace.json") == read_text(golden));
  CHECK(!std::filesystem::exists(dir + "/again.trace.arrays"));
}

TEST_CASE("sidecars: rewriting a trace replaces its arrays, and a version-1 rewrite removes them", "[sidecars]") {
  const std::string dir = temp_dir("sidecars_replace");
  const moeref::Trace trace = awkward_trace();
  const std::string path = dir + "/t.json";
  moeref::write_trace_files(path, trace, moeref::sidecars_above_rule(0));
  moeref::write_trace_files(path, trace, moeref::sidecars_above_rule(10));
  size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir + "/t.arrays")) files += entry.is_regular_file();
  CHECK(files == 1);  // logits only: 24 elements
  require_same_trace(trace, moeref::read_trace_file(path));
  moeref::write_trace_files(path, trace, moeref::sidecars_above_rule(std::nullopt));
  CHECK(!std::filesystem::exists(dir + "/t.arrays"));
  size_t entries = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    INFO(entry.path().string());
    ++entries;
  }
  CHECK(entries == 1);  // no temporary file or directory is left behind
}

TEST_CASE("sidecars: a run that fails while writing sidecars leaves the old trace as it was", "[sidecars][files]") {
  const std::string dir = temp_dir("sidecars_atomic");
  nlohmann::json config = moeref::testing::tiny_mtf_top2_layer_config();
  config["dims"]["M"] = 256;
  config["dims"]["H"] = 1024;  // wi and wo: 3 * 256 * 1024 values, 3 MiB each
  write_text(dir + "/config.json", config.dump());
  write_text(dir + "/tiny.json", moeref::testing::tiny_mtf_top2_layer_config().dump());
  REQUIRE(run_cli("run " + dir + "/tiny.json -o " + dir + "/t.json --sidecars-above 10").exit_code == 0);
  const std::string old_json = read_text(dir + "/t.json");
  const std::string old_npy = read_text(dir + "/t.arrays/inputs.x.npy");
  // Files beyond 1 MiB fail to write (EFBIG: the signal is ignored, so moeref sees the error).
  const moeref::testing::CommandResult failed =
      run_shell("bash -c \"ulimit -f 1024; trap '' XFSZ; " + std::string(MOEREF_CLI_PATH) + " run " + dir +
                "/config.json -o " + dir + "/t.json --sidecars-above 10\"");
  CHECK(failed.exit_code == 2);
  CHECK_THAT(failed.output, Contains("cannot write it"));
  CHECK(read_text(dir + "/t.json") == old_json);
  CHECK(read_text(dir + "/t.arrays/inputs.x.npy") == old_npy);
  std::vector<std::string> left;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) left.push_back(entry.path().filename().string());
  std::sort(left.begin(), left.end());
  CHECK(left == std::vector<std::string>{"config.json", "t.arrays", "t.json", "tiny.json"});
  // A file where the arrays directory would go is not the trace's to replace.
  write_text(dir + "/u.arrays", "mine");
  const moeref::testing::CommandResult refused =
      run_cli("run " + dir + "/tiny.json -o " + dir + "/u.json --sidecars-above 10");
  CHECK(refused.exit_code == 2);
  CHECK_THAT(refused.output, Contains("u.arrays: got an existing file that is not a directory"));
  CHECK(read_text(dir + "/u.arrays") == "mine");
  CHECK(!std::filesystem::exists(dir + "/u.json"));
}

TEST_CASE("sidecars: sidecar files and their directory get the umask's mode", "[sidecars][files]") {
  const std::string dir = temp_dir("sidecars_mode");
  const mode_t previous = ::umask(027);
  moeref::write_trace_files(dir + "/t.json", awkward_trace(), moeref::sidecars_above_rule(0));
  ::umask(previous);
  struct stat info;
  REQUIRE(::stat((dir + "/t.arrays").c_str(), &info) == 0);
  CHECK((info.st_mode & 07777) == 0750);
  REQUIRE(::stat((dir + "/t.arrays/inputs.logits.npy").c_str(), &info) == 0);
  CHECK((info.st_mode & 07777) == 0640);
  REQUIRE(::stat((dir + "/t.json").c_str(), &info) == 0);
  CHECK((info.st_mode & 07777) == 0640);
}

TEST_CASE("sidecars: every broken sidecar is an error naming the field, the file and the value", "[sidecars]") {
  const std::string dir = temp_dir("sidecars_errors");
  const std::string path = dir + "/t.json";
  moeref::write_trace_files(path, awkward_trace(), moeref::sidecars_above_rule(0));
  const std::string text = read_text(path);
  const std::string logits_file = sidecar_file_of(path, "inputs.logits");
  const std::string index_file = sidecar_file_of(path, "steps.index_1");
  const std::string logits_npy = read_text(npy_path_of(path, logits_file));
  const auto with_text = [&](const std::string& from, const std::string& to) {
    std::string edited = text;
    const size_t at = edited.find(from);
    REQUIRE(at != std::string::npos);
    edited.replace(at, from.size(), to);
    write_text(path, edited);
  };
  const auto restore = [&]() {
    write_text(path, text);
    write_text(npy_path_of(path, logits_file), logits_npy);
  };

  SECTION("a missing file") {
    std::filesystem::remove(npy_path_of(path, index_file));
    const std::string error = error_of_reading(path);
    CHECK_THAT(error, Contains("steps[0] (index_1).file"));
    CHECK_THAT(error, Contains("steps.0000.index_1.npy"));
  }
  SECTION("a sha256 that does not match") {
    std::string changed = logits_npy;
    changed.back() = static_cast<char>(changed.back() ^ 1);
    write_text(npy_path_of(path, logits_file), changed);
    const std::string error = error_of_reading(path);
    CHECK_THAT(error, Contains("inputs.logits.sha256"));
    CHECK_THAT(error, Contains(moeref::sha256_hex(changed.data(), changed.size())));
    CHECK_THAT(error, Contains(moeref::sha256_hex(logits_npy.data(), logits_npy.size())));
  }
  SECTION("a shape other than the trace's") {
    moeref::Tensor other = moeref::Tensor::float32({"G", "S", "E"}, {2, 4, 3});
    const std::string npy = moeref::npy_header(other) + logits_npy.substr(moeref::npy_header(other).size());
    write_text(npy_path_of(path, logits_file), npy);
    const std::string sha = moeref::sha256_hex(npy.data(), npy.size());
    with_text(moeref::sha256_hex(logits_npy.data(), logits_npy.size()), sha);
    const std::string error = error_of_reading(path);
    CHECK_THAT(error, Contains("inputs.logits.file"));
    CHECK_THAT(error, Contains("shape (2, 4, 3)"));
    CHECK_THAT(error, Contains("shape (2, 3, 4)"));
  }
  SECTION("a descr other than the trace's dtype") {
    std::string npy = logits_npy;
    npy.replace(npy.find("<f4"), 3, "<i4");
    write_text(npy_path_of(path, logits_file), npy);
    with_text(moeref::sha256_hex(logits_npy.data(), logits_npy.size()), moeref::sha256_hex(npy.data(), npy.size()));
    const std::string error = error_of_reading(path);
    CHECK_THAT(error, Contains("inputs.logits.file"));
    CHECK_THAT(error, Contains("descr '<i4'"));
  }
  SECTION("a file of the wrong size") {
    write_text(npy_path_of(path, logits_file), logits_npy + "xxxx");
    CHECK_THAT(error_of_reading(path), Contains("bytes"));
  }
  SECTION("paths that leave the directory") {
    for (const std::string bad :
         {"../t.arrays/inputs.logits.npy", "/etc/passwd", "t.arrays\\\\inputs.logits.npy", "t.arrays/../../x.npy"}) {
      INFO(bad);
      restore();
      with_text("\"" + logits_file + "\"", "\"" + bad + "\"");
      const std::string error = error_of_reading(path);
      CHECK_THAT(error, Contains("inputs.logits.file"));
      CHECK_THAT(error, Contains("without \"..\""));
    }
  }
  SECTION("both data and file") {
    with_text("\"file\":\"" + logits_file + "\"", "\"file\":\"" + logits_file + "\",\"data\":[1]");
    CHECK_THAT(error_of_reading(path), Contains("both \"data\" and \"file\""));
  }
  SECTION("neither data nor file") {
    const std::string sha = moeref::sha256_hex(logits_npy.data(), logits_npy.size());
    with_text(",\"file\":\"" + logits_file + "\"", "");
    CHECK_THAT(error_of_reading(path), Contains("inputs.logits.sha256: got present without \"file\""));
    restore();
    with_text(",\"file\":\"" + logits_file + "\",\"sha256\":\"" + sha + "\"", "");
    CHECK_THAT(error_of_reading(path), Contains("inputs.logits.data: got missing"));
  }
  SECTION("a sha256 that is not 64 hex digits") {
    with_text(moeref::sha256_hex(logits_npy.data(), logits_npy.size()), "ABC");
    CHECK_THAT(error_of_reading(path), Contains("inputs.logits.sha256: got \"ABC\""));
  }
  SECTION("a sidecar in a version-1 trace, and an unknown version") {
    with_text("\"format_version\": 2", "\"format_version\": 1");
    CHECK_THAT(error_of_reading(path), Contains("format_version 1 trace"));
    restore();
    with_text("\"format_version\": 2", "\"format_version\": 3");
    CHECK_THAT(error_of_reading(path), Contains("format_version: got 3; allowed: 1"));
  }
  SECTION("sidecars in text that was not read from a file") {
    CHECK_THROWS_WITH(moeref::trace_from_json(nlohmann::json::parse(text), "text"), Contains("inputs.logits.file"));
  }
}

TEST_CASE("pack: a packed trace reads back equal, its bytes are reproducible and tar lists them", "[sidecars][pack]") {
  const std::string dir = temp_dir("sidecars_pack");
  const moeref::Trace trace = awkward_trace();
  moeref::write_trace_files(dir + "/t.json", trace, moeref::sidecars_above_rule(4));
  REQUIRE(run_cli("pack " + dir + "/t.json -o " + dir + "/one.tar").exit_code == 0);
  REQUIRE(run_cli("pack " + dir + "/t.json -o " + dir + "/two.tar").exit_code == 0);
  // Packing the archive itself gives the same archive too.
  REQUIRE(run_cli("pack " + dir + "/one.tar -o " + dir + "/three.tar").exit_code == 0);
  const std::string packed = read_text(dir + "/one.tar");
  CHECK(packed.size() % 512 == 0);
  CHECK(packed == read_text(dir + "/two.tar"));
  CHECK(packed == read_text(dir + "/three.tar"));
  CHECK(moeref::is_tar_file(dir + "/one.tar"));
  CHECK(!moeref::is_tar_file(dir + "/t.json"));
  require_same_trace(trace, moeref::read_trace_file(dir + "/one.tar"));
  // The archive's name does not matter, only its magic.
  std::filesystem::copy_file(dir + "/one.tar", dir + "/named.json");
  require_same_trace(trace, moeref::read_trace_file(dir + "/named.json"));
  // Each member is the sidecar, byte for byte.
  const std::string npy = read_text(dir + "/t.arrays/inputs.logits.npy");
  CHECK(packed.find(npy) != std::string::npos);

  REQUIRE(run_cli("pack " + dir + "/one.tar --inline -o " + dir + "/inline.json").exit_code == 0);
  CHECK_THAT(read_text(dir + "/inline.json"), Contains("\"format_version\": 1"));
  CHECK(read_text(dir + "/inline.json") == moeref::write_trace(moeref::read_trace_file(dir + "/t.json")));

  if (!have_program("tar --version >/dev/null")) {
    WARN("tar is not installed: the archive's listing and unpacking are not tested");
    return;
  }
  const moeref::testing::CommandResult listing = run_shell("tar -tf " + dir + "/one.tar");
  REQUIRE(listing.exit_code == 0);
  // Above 4 elements: logits (24) and index_1 (6), not the 4 values of "odd name/with slash".
  CHECK(listing.output == "trace.json\ntrace.arrays/inputs.logits.npy\ntrace.arrays/steps.0000.index_1.npy\n");
  std::filesystem::create_directory(dir + "/unpacked");
  REQUIRE(run_shell("tar -xf " + dir + "/one.tar -C " + dir + "/unpacked").exit_code == 0);
  require_same_trace(trace, moeref::read_trace_file(dir + "/unpacked/trace.json"));
}

TEST_CASE("pack: bad inputs are refused and leave no output", "[sidecars][pack]") {
  const std::string dir = temp_dir("sidecars_pack_bad");
  write_text(dir + "/bad.json", "{\"format\": \"moeref-trace\", \"format_version\": 9}");
  const moeref::testing::CommandResult result = run_cli("pack " + dir + "/bad.json -o " + dir + "/out.tar");
  CHECK(result.exit_code == 2);
  CHECK_THAT(result.output, Contains("format_version: got 9"));
  CHECK(!std::filesystem::exists(dir + "/out.tar"));
  // A truncated archive: its first header is intact, its members are not.
  moeref::write_trace_files(dir + "/t.json", awkward_trace(), moeref::sidecars_above_rule(0));
  REQUIRE(run_cli("pack " + dir + "/t.json -o " + dir + "/whole.tar").exit_code == 0);
  write_text(dir + "/broken.tar", read_text(dir + "/whole.tar").substr(0, 1500));
  REQUIRE(moeref::is_tar_file(dir + "/broken.tar"));
  const moeref::testing::CommandResult broken = run_cli("check " + dir + "/broken.tar " + dir + "/t.json");
  CHECK(broken.exit_code == 2);
  CHECK_THAT(broken.output, Contains("trace archive " + dir + "/broken.tar"));
  // "ustar" at byte 257 of a text file is not enough to make it an archive.
  write_text(dir + "/chance.json", std::string(257, ' ') + "ustar" + std::string(250, ' '));
  CHECK(!moeref::is_tar_file(dir + "/chance.json"));
}

TEST_CASE("sidecars: numpy loads a sidecar as is", "[sidecars][python]") {
  if (!have_program("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1")) {
    WARN("/usr/bin/python3 with numpy is not available: numpy.load of a sidecar is not tested");
    return;
  }
  const std::string dir = temp_dir("sidecars_numpy");
  const moeref::Trace trace = awkward_trace();
  moeref::write_trace_files(dir + "/t.json", trace, moeref::sidecars_above_rule(0));
  const auto loaded = [&](const std::string& file) {
    return run_shell(
        "/usr/bin/python3 -c \"import numpy, sys; a = numpy.load(sys.argv[1]); "
        "print(a.dtype, a.shape, a.tobytes().hex())\" " +
        dir + "/" + file);
  };
  const moeref::testing::CommandResult logits = loaded("t.arrays/inputs.logits.npy");
  REQUIRE(logits.exit_code == 0);
  CHECK_THAT(logits.output, Contains("float32 (2, 3, 4) 0100c07f4523c1ff00000080"));
  const moeref::testing::CommandResult index = loaded("t.arrays/steps.0000.index_1.npy");
  REQUIRE(index.exit_code == 0);
  CHECK_THAT(index.output, Contains("int32 (2, 3) 00000000ffffffffffffff7f0000008007000000"));
  const moeref::testing::CommandResult scalar = loaded("t.arrays/steps.0001.scalar.npy");
  REQUIRE(scalar.exit_code == 0);
  CHECK_THAT(scalar.output, Contains("float32 () 00000080"));
}

TEST_CASE("sidecars: check compares an inline golden with a sidecar candidate, and finds one ulp",
          "[sidecars][check][cli]") {
  const std::string dir = temp_dir("sidecars_check");
  write_text(dir + "/config.json", moeref::testing::tiny_mtf_top2_layer_config().dump());
  REQUIRE(run_cli("run " + dir + "/config.json -o " + dir + "/golden.json --inline").exit_code == 0);
  const moeref::testing::CommandResult run =
      run_cli("run " + dir + "/config.json -o " + dir + "/candidate.json --sidecars-above 0");
  REQUIRE(run.exit_code == 0);
  CHECK_THAT(run.output, Contains("tensors in candidate.arrays/"));
  CHECK_THAT(read_text(dir + "/golden.json"), Contains("\"format_version\": 1"));
  CHECK(run_cli("check " + dir + "/golden.json " + dir + "/candidate.json").exit_code == 0);
  CHECK(run_cli("check " + dir + "/candidate.json " + dir + "/golden.json").exit_code == 0);
  REQUIRE(run_cli("pack " + dir + "/candidate.json -o " + dir + "/candidate.tar").exit_code == 0);
  CHECK(run_cli("check " + dir + "/candidate.tar " + dir + "/candidate.json").exit_code == 0);

  // One ulp up in the first nonzero output, the sha256 made to match: check finds it.
  const std::string outputs_file = sidecar_file_of(dir + "/candidate.json", "steps.outputs");
  std::string npy = read_text(dir + "/" + outputs_file);
  const std::string old_sha = moeref::sha256_hex(npy.data(), npy.size());
  const size_t data_offset = moeref::parse_npy_header(npy.data(), npy.size(), "outputs").data_offset;
  size_t at = data_offset;
  while (at < npy.size() && npy.compare(at, 4, std::string(4, '\0')) == 0) at += 4;
  REQUIRE(at < npy.size());
  uint32_t bits = 0;
  std::memcpy(&bits, npy.data() + at, 4);
  bits += 1;
  std::memcpy(npy.data() + at, &bits, 4);
  write_text(dir + "/" + outputs_file, npy);
  std::string json = read_text(dir + "/candidate.json");
  json.replace(json.find(old_sha), old_sha.size(), moeref::sha256_hex(npy.data(), npy.size()));
  write_text(dir + "/candidate.json", json);
  const moeref::testing::CommandResult check =
      run_cli("check " + dir + "/golden.json " + dir + "/candidate.json --atol 0 --rtol 0");
  CHECK(check.exit_code == 1);
  CHECK_THAT(check.output, Contains("outputs"));
}

TEST_CASE("sidecars: traces with sidecars are the same bytes for 1 and 2 threads", "[sidecars][cli]") {
  const std::string dir = temp_dir("sidecars_threads");
  write_text(dir + "/config.json", moeref::testing::tiny_mtf_top2_layer_config().dump());
  for (const std::string threads : {"1", "2"}) {
    REQUIRE(run_cli("run " + dir + "/config.json --sidecars-above 0 --threads " + threads + " -o " + dir + "/t" +
                    threads + ".json")
                .exit_code == 0);
  }
  std::string t1 = read_text(dir + "/t1.json");
  const std::string t2 = read_text(dir + "/t2.json");
  for (size_t at; (at = t1.find("t1.arrays/")) != std::string::npos;) t1.replace(at, 10, "t2.arrays/");
  CHECK(t1 == t2);
  size_t compared = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir + "/t1.arrays")) {
    const std::string other = dir + "/t2.arrays/" + entry.path().filename().string();
    CHECK(read_text(entry.path().string()) == read_text(other));
    ++compared;
  }
  CHECK(compared > 10);
  CHECK(run_cli("run " + dir + "/config.json --inline --sidecars-above 3 -o " + dir + "/x.json").exit_code != 0);
}

TEST_CASE("sidecars: a sidecar trace replays, and explain and render read it", "[sidecars][cli]") {
  const std::string dir = temp_dir("sidecars_replay");
  write_text(dir + "/config.json", moeref::testing::tiny_mtf_top2_layer_config().dump());
  REQUIRE(run_cli("run " + dir + "/config.json --sidecars-above 0 -o " + dir + "/first.json").exit_code == 0);
  REQUIRE(run_cli("pack " + dir + "/first.json -o " + dir + "/first.tar").exit_code == 0);
  REQUIRE(run_cli("run " + dir + "/first.tar --inline -o " + dir + "/again.json").exit_code == 0);
  CHECK(read_text(dir + "/again.json") == moeref::write_trace(moeref::read_trace_file(dir + "/first.json")));
  CHECK(run_cli("explain " + dir + "/first.json > /dev/null").exit_code == 0);
  CHECK(run_cli("render " + dir + "/first.tar -o " + dir + "/page.html").exit_code == 0);
}

TEST_CASE("sidecars: two inputs that would share a sidecar file are refused, naming both", "[sidecars]") {
  const std::string dir = temp_dir("sidecars_clash");
  moeref::Trace trace = awkward_trace();
  // Sorted, the inputs are 0002, logits, "odd name/with slash": the last is named by its
  // position, inputs.0002.npy.
  trace.inputs.push_back({"0002", moeref::Tensor::float32({"E"}, {4})});
  const std::string path = dir + "/t.json";
  try {
    moeref::write_trace_files(path, trace, moeref::sidecars_above_rule(0));
    FAIL("the clash was not refused");
  } catch (const moeref::InputError& error) {
    CHECK_THAT(error.what(), Contains("inputs.0002") && Contains("inputs.odd name/with slash") &&
                                 Contains("rename one of the two inputs"));
  }
  CHECK(!std::filesystem::exists(path));
  CHECK(!std::filesystem::exists(dir + "/t.arrays"));
}

TEST_CASE("sidecars: a directory of the user's where the arrays go is never removed", "[sidecars][files]") {
  const std::string dir = temp_dir("sidecars_user_dir");
  const std::string path = dir + "/t.json";
  std::filesystem::create_directory(dir + "/t.arrays");
  write_text(dir + "/t.arrays/keep.txt", "mine");
  // An inline trace leaves it alone; a trace with sidecars is refused rather than replace it.
  moeref::write_trace_files(path, awkward_trace(), moeref::sidecars_above_rule(std::nullopt));
  CHECK(read_text(dir + "/t.arrays/keep.txt") == "mine");
  try {
    moeref::write_trace_files(path, awkward_trace(), moeref::sidecars_above_rule(0));
    FAIL("the user's directory was replaced");
  } catch (const moeref::InputError& error) {
    CHECK_THAT(error.what(), Contains("t.arrays") && Contains("other files than sidecars"));
  }
  CHECK(read_text(dir + "/t.arrays/keep.txt") == "mine");
  CHECK(moeref::read_trace_file(path).inputs.size() == 2);  // the inline trace is still there
}

TEST_CASE("sidecars: a file path with an empty part is refused", "[sidecars]") {
  const std::string dir = temp_dir("sidecars_empty_part");
  const std::string path = dir + "/t.json";
  moeref::write_trace_files(path, awkward_trace(), moeref::sidecars_above_rule(0));
  std::string text = read_text(path);
  const std::string file = sidecar_file_of(path, "inputs.logits");
  const std::string doubled = "t.arrays//" + file.substr(std::string("t.arrays/").size());
  text.replace(text.find("\"" + file + "\""), file.size() + 2, "\"" + doubled + "\"");
  write_text(path, text);
  CHECK_THAT(error_of_reading(path), Contains("inputs.logits.file") && Contains("empty parts"));
}
