// StreamedFile: a file written while its contents are made, renamed into place only when
// complete, and a large inline trace written through it byte for byte as write_trace
// makes it.
#include <signal.h>
#include <sys/resource.h>

#include <filesystem>
#include <string>
#include <vector>

#include "moeref/error.hpp"
#include "moeref/streamed_file.hpp"
#include "moeref/trace_files.hpp"
#include "test_support.hpp"

using Catch::Matchers::Contains;
using moeref::testing::read_text;
using moeref::testing::temp_dir;
using moeref::testing::write_text;

namespace {

// Files in `dir` other than `keep`: temporaries left behind.
std::vector<std::string> others_in(const std::string& dir, const std::string& keep) {
  std::vector<std::string> found;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().filename() != keep) found.push_back(entry.path().string());
  }
  return found;
}

}  // namespace

TEST_CASE("streamed file: pieces in order, renamed into place by commit, the old file kept until then",
          "[files][streamed]") {
  const std::string dir = temp_dir("streamed_pieces");
  const std::string target = dir + "/out.txt";
  write_text(target, "old");
  std::string expected;
  {
    moeref::StreamedFile file(target);
    for (int i = 0; i < 300; ++i) {
      std::string piece(static_cast<size_t>(1 + (i * 7919) % 600000), static_cast<char>('a' + i % 26));
      expected += piece;
      file.put(std::move(piece));
    }
    CHECK(read_text(target) == "old");
    size_t reported = 0;
    file.commit([&reported](size_t written, size_t total) {
      CHECK(written == total);
      reported = total;
    });
    CHECK(reported == expected.size());
  }
  CHECK(read_text(target) == expected);
  CHECK(others_in(dir, "out.txt").empty());
}

TEST_CASE("streamed file: given up before commit, it leaves the target as it was and no temporary file",
          "[files][streamed]") {
  const std::string dir = temp_dir("streamed_abandoned");
  const std::string target = dir + "/out.txt";
  SECTION("a previous file") {
    write_text(target, "previous");
    {
      moeref::StreamedFile file(target);
      file.put(std::string(5000000, 'x'));
    }
    CHECK(read_text(target) == "previous");
    CHECK(others_in(dir, "out.txt").empty());
  }
  SECTION("no previous file") {
    {
      moeref::StreamedFile file(target);
      file.put("partial");
    }
    CHECK_FALSE(std::filesystem::exists(target));
    CHECK(others_in(dir, "out.txt").empty());
  }
  SECTION("a directory that does not exist") {
    CHECK_THROWS_AS(moeref::StreamedFile(dir + "/missing/out.txt"), moeref::InputError);
  }
}

TEST_CASE("streamed file: a write that fails (the file size limit) is an error naming the file, and nothing is left",
          "[files][streamed]") {
  const std::string dir = temp_dir("streamed_failing");
  const std::string target = dir + "/out.txt";
  // Past RLIMIT_FSIZE a write fails with EFBIG (SIGXFSZ ignored, as it would kill us).
  struct rlimit old_limit;
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &old_limit) == 0);
  const auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old_limit;
  small.rlim_cur = 1 << 20;
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
  std::string error;
  try {
    moeref::StreamedFile file(target);
    for (int i = 0; i < 100; ++i) file.put(std::string(100000, 'y'));
    file.commit();
  } catch (const moeref::InputError& caught) {
    error = caught.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old_limit);
  ::signal(SIGXFSZ, old_handler);
  CHECK_THAT(error, Contains("output file " + target));
  CHECK_FALSE(std::filesystem::exists(target));
  CHECK(others_in(dir, "out.txt").empty());
}

TEST_CASE("streamed file: a large inline trace is written byte for byte as write_trace makes it",
          "[files][streamed][trace]") {
  // Over 64 MiB of text: the formatting threads wait for the writer now and then.
  moeref::Trace trace;
  trace.config = {{"variant", "hand_built"}};
  uint32_t state = 8;
  for (const int64_t n : {int64_t{3800001}, int64_t{5}, int64_t{2900000}}) {
    moeref::Tensor tensor = moeref::Tensor::float32({"S"}, {n});
    for (float& value : tensor.f32) {
      state = state * 1664525u + 1013904223u;
      value = static_cast<float>(static_cast<int32_t>(state)) * 1e-9f;
    }
    trace.add_step("step_" + std::to_string(n), tensor);
  }
  // Many small tensors too (each formatted in one piece): they are handed over between
  // tensors.
  for (int i = 0; i < 40; ++i) {
    moeref::Tensor small = moeref::Tensor::float32({"S"}, {20000 + i});
    for (float& value : small.f32) value = static_cast<float>(i) * 0.25f - 3.0f;
    trace.add_step("small_" + std::to_string(i), small);
  }
  const std::string dir = temp_dir("streamed_trace");
  const std::string path = dir + "/big.json";
  REQUIRE(moeref::write_trace_files(path, trace, moeref::sidecars_above_rule(std::nullopt)) == 0);
  const std::string written = read_text(path);
  CHECK(written.size() > (size_t{64} << 20));
  CHECK(written == moeref::write_trace(trace));
  CHECK(others_in(dir, "big.json").empty());
}
