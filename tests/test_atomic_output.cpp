// Output files as another process sees them: `moeref run` killed with SIGKILL while
// it writes a large trace leaves the target absent or as the previous complete file,
// and files it does write get the permissions of the process umask (0644 under 022).
//
// Dims: B batch, L length, E experts, M model dim, H expert hidden dim.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "moeref/atomic_file.hpp"
#include "moeref/mapped_text.hpp"
#include "test_support.hpp"

extern char** environ;

using moeref::testing::CommandResult;
using moeref::testing::run_cli;
using moeref::testing::temp_dir;

namespace {

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  REQUIRE(out.good());
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// The permission bits of a file.
mode_t file_mode(const std::string& path) {
  struct stat info;
  REQUIRE(::stat(path.c_str(), &info) == 0);
  return info.st_mode & 07777;
}

// Sets the process umask for one scope (the CLI, started through the shell, inherits it).
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask) : previous_(::umask(mask)) {}
  ~ScopedUmask() { ::umask(previous_); }
  ScopedUmask(const ScopedUmask&) = delete;
  ScopedUmask& operator=(const ScopedUmask&) = delete;

 private:
  mode_t previous_;
};

// The temporary files write_file_atomically leaves beside `target` (TARGET.tmp.XXXXXX).
std::vector<std::string> temporaries_of(const std::string& dir, const std::string& target_name) {
  std::vector<std::string> found;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(target_name + ".tmp.", 0) == 0) found.push_back(entry.path().string());
  }
  return found;
}

// A gating run whose trace is about 50 MB (B*L = 8192 tokens, E = 16, C = 128):
// writing it takes a tenth of a second or more, long enough to kill mid-write.
std::string large_config() {
  return R"({"variant": "mtf_top2", "scope": "gating", "seed": 1,)"
         R"( "dims": {"B": 2, "L": 4096, "E": 16, "M": 8, "H": 8}, "hparams": {"group_size": 1024}})";
}

std::string small_config() {
  return R"({"variant": "mtf_top2", "seed": 3, "dims": {"B": 2, "L": 4, "E": 3, "M": 4, "H": 5},)"
         R"( "hparams": {"group_size": 4}})";
}

// Starts `moeref run CONFIG -o OUTPUT` on one thread, with stdout and stderr discarded.
pid_t spawn_run(const std::string& config, const std::string& output) {
  std::vector<std::string> args = {MOEREF_CLI_PATH, "run", config, "-o", output};
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_strings = {"OMP_NUM_THREADS=1"};
  for (char** entry = environ; *entry != nullptr; ++entry) {
    if (std::string(*entry).rfind("OMP_NUM_THREADS=", 0) != 0) env_strings.emplace_back(*entry);
  }
  std::vector<char*> envp;
  for (std::string& entry : env_strings) envp.push_back(entry.data());
  envp.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  REQUIRE(posix_spawn_file_actions_init(&actions) == 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid = -1;
  const int spawned = posix_spawn(&pid, MOEREF_CLI_PATH, &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  REQUIRE(spawned == 0);
  return pid;
}

}  // namespace

TEST_CASE("atomic output: files written get mode 0666 & ~umask", "[cli][files]") {
  const std::string dir = temp_dir("atomic_mode");
  write_text(dir + "/config.json", small_config());
  for (const mode_t mask : {mode_t{022}, mode_t{027}, mode_t{077}, mode_t{0}}) {
    INFO("umask 0" << std::oct << mask);
    const std::string trace = dir + "/trace_" + std::to_string(mask) + ".json";
    const std::string report = dir + "/report_" + std::to_string(mask) + ".json";
    ScopedUmask scoped(mask);
    const CommandResult run = run_cli("run " + dir + "/config.json -o " + trace);
    INFO(run.output);
    REQUIRE(run.exit_code == 0);
    CHECK(file_mode(trace) == (0666 & ~mask));
    const CommandResult check = run_cli("check " + trace + " " + trace + " --report " + report);
    INFO(check.output);
    REQUIRE(check.exit_code == 0);
    CHECK(file_mode(report) == (0666 & ~mask));
  }
}

TEST_CASE("atomic output: SIGKILL while writing a large trace leaves no partial target", "[cli][files]") {
  const std::string dir = temp_dir("atomic_kill");
  write_text(dir + "/large.json", large_config());
  write_text(dir + "/small.json", small_config());
  const std::string target = dir + "/trace.json";
  std::string previous;  // empty: the target does not exist before the killed run

  SECTION("no previous file") {}
  SECTION("a previous complete file") {
    const CommandResult first = run_cli("run " + dir + "/small.json -o " + target);
    INFO(first.output);
    REQUIRE(first.exit_code == 0);
    previous = read_text(target);
    REQUIRE(!previous.empty());
  }

  const pid_t pid = spawn_run(dir + "/large.json", target);
  // Poll until the temporary file appears (the run has computed its trace and is
  // writing it), then kill. Give up after 30 s, or if the run ends first.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  bool killed = false;
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!temporaries_of(dir, "trace.json").empty()) {
      REQUIRE(::kill(pid, SIGKILL) == 0);
      killed = true;
      break;
    }
    if (::waitpid(pid, &status, WNOHANG) == pid) break;  // finished before we saw it
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  if (!killed) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    FAIL("the run ended (or took over 30 s) before its temporary file was seen; status " << status);
  }
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);

  // The kill landed between creating the temporary file and renaming it: it is still there.
  const std::vector<std::string> left = temporaries_of(dir, "trace.json");
  REQUIRE(left.size() == 1);
  INFO("temporary file left behind: " << left[0] << ", " << std::filesystem::file_size(left[0]) << " bytes");
  if (previous.empty()) {
    CHECK_FALSE(std::filesystem::exists(target));
  } else {
    REQUIRE(std::filesystem::exists(target));
    const std::string now = read_text(target);
    CHECK(now.size() == previous.size());
    CHECK(now == previous);
  }
  std::filesystem::remove(left[0]);
}

TEST_CASE("read_whole_file: regular, empty and larger-than-a-chunk files, a FIFO, and a directory", "[files]") {
  const std::string dir = temp_dir("read_whole_file");
  // A regular file is read into one buffer of its size; past 64 KiB a pipe takes several chunks.
  std::string large(200000, 'x');
  for (size_t i = 0; i < large.size(); i += 997) large[i] = static_cast<char>('a' + i % 26);
  write_text(dir + "/large.txt", large);
  CHECK(moeref::read_whole_file(dir + "/large.txt", "test file") == large);
  write_text(dir + "/empty.txt", "");
  CHECK(moeref::read_whole_file(dir + "/empty.txt", "test file").empty());

  // A FIFO has no size: it is read in chunks until its writer closes it.
  const std::string fifo = dir + "/pipe";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  std::thread writer([&] {
    std::ofstream out(fifo, std::ios::binary);
    out << large;
  });
  const std::string from_pipe = moeref::read_whole_file(fifo, "test pipe");
  writer.join();
  CHECK(from_pipe == large);

  CHECK_THROWS_WITH(moeref::read_whole_file(dir, "test file"), Catch::Contains("is a directory"));
  CHECK_THROWS_WITH(moeref::read_whole_file(dir + "/absent.txt", "test file"), Catch::Contains("cannot open"));
}

TEST_CASE(
    "MappedText: a regular file is mapped, a FIFO read once to its end, and a file written in place is "
    "refused",
    "[files]") {
  const std::string dir = temp_dir("mapped_text");
  std::string large(200000, 'x');
  for (size_t i = 0; i < large.size(); i += 997) large[i] = static_cast<char>('a' + i % 26);
  write_text(dir + "/large.txt", large);
  {
    moeref::MappedText text(dir + "/large.txt", "test file");
    CHECK(text.text() == large);
    text.release_before(150000);  // handed back: read again from the file, the same bytes
    CHECK(text.text() == large);
    CHECK_NOTHROW(text.check_unchanged());
  }
  // A FIFO is opened once (a second open would wait for a writer that has gone).
  const std::string fifo = dir + "/pipe";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  std::thread writer([&] {
    std::ofstream out(fifo, std::ios::binary);
    out << large;
  });
  {
    const moeref::MappedText from_pipe(fifo, "test pipe");
    writer.join();
    CHECK(from_pipe.text() == large);
  }
  write_text(dir + "/empty.txt", "");
  CHECK(moeref::MappedText(dir + "/empty.txt", "test file").text().empty());
  CHECK_THROWS_WITH(moeref::MappedText(dir, "test file"), Catch::Contains("is a directory"));
  CHECK_THROWS_WITH(moeref::MappedText(dir + "/absent.txt", "test file"), Catch::Contains("cannot open"));
  // Rewritten in place while mapped (a longer text: its size differs): refused.
  moeref::MappedText text(dir + "/large.txt", "test file");
  {
    std::ofstream out(dir + "/large.txt", std::ios::binary | std::ios::app);
    out << "more";
  }
  CHECK_THROWS_WITH(text.check_unchanged(), Catch::Contains("changed while it was being read"));
}
