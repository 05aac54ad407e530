// moeref_bench: times one variant at a realistic size on 1..N OpenMP threads.
//
//   moeref_bench [--variant mtf_top2] [--G 4 --S 1024 --E 16 --M 512 --H 2048]
//                [--threads 1,2] [--repeats 3] [--write-trace PATH]
//
// Prints the median wall time of run_config (inputs generated from the seed,
// gating, experts, combine) per thread count, and whether all traces were
// byte-identical. Writing a trace of this size is timed separately, only when
// --write-trace is given (the text is hundreds of megabytes).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "moeref/atomic_file.hpp"
#include "moeref/config_reader.hpp"
#include "moeref/error.hpp"
#include "moeref/run.hpp"
#include "moeref/trace.hpp"

namespace {

struct BenchOptions {
  std::string variant = "mtf_top2";
  int64_t G = 4, S = 1024, E = 16, M = 512, H = 2048;
  std::vector<int> threads = {1, 2};
  int repeats = 3;
  std::string write_trace_path;
};

BenchOptions parse(int argc, char** argv) {
  BenchOptions options;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) throw moeref::InputError(flag + ": needs a value");
    const std::string value = argv[++i];
    if (flag == "--variant")
      options.variant = value;
    else if (flag == "--G")
      options.G = std::stoll(value);
    else if (flag == "--S")
      options.S = std::stoll(value);
    else if (flag == "--E")
      options.E = std::stoll(value);
    else if (flag == "--M")
      options.M = std::stoll(value);
    else if (flag == "--H")
      options.H = std::stoll(value);
    else if (flag == "--repeats")
      options.repeats = std::max(1, std::stoi(value));
    else if (flag == "--write-trace")
      options.write_trace_path = value;
    else if (flag == "--threads") {
      options.threads.clear();
      std::stringstream list(value);
      std::string item;
      while (std::getline(list, item, ',')) options.threads.push_back(std::stoi(item));
    } else {
      throw moeref::InputError(flag +
                               ": unknown flag (--variant --G --S --E --M --H --threads --repeats --write-trace)");
    }
  }
  return options;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const BenchOptions options = parse(argc, argv);
    const nlohmann::json doc = {
        {"variant", options.variant},
        {"scope", "layer"},
        {"train", true},
        {"seed", 0},
        {"dims", {{"G", options.G}, {"S", options.S}, {"E", options.E}, {"M", options.M}, {"H", options.H}}}};
    const moeref::Config config = moeref::config_from_json(doc, "benchmark config");
    std::cout << "variant " << options.variant << ", G=" << options.G << " S=" << options.S << " E=" << options.E
              << " M=" << options.M << " H=" << options.H << ", train, " << options.repeats << " repeats\n";
    std::string reference_text;
    bool identical = true;
    for (int threads : options.threads) {
      omp_set_num_threads(threads);
      std::vector<double> times;
      moeref::Trace trace;
      for (int r = 0; r < options.repeats; ++r) {
        const auto start = std::chrono::steady_clock::now();
        trace = moeref::run_config(config);
        times.push_back(seconds_since(start));
      }
      std::sort(times.begin(), times.end());
      std::cout << "threads " << threads << ": median " << times[times.size() / 2] << " s (min " << times.front()
                << " s), C=" << trace.capacity["expert_capacity"] << "\n";
      // Byte identity across thread counts, checked on the full trace text.
      const std::string text = moeref::write_trace(trace);
      if (reference_text.empty()) {
        reference_text = text;
      } else {
        identical = identical && text == reference_text;
      }
    }
    std::cout << "traces byte-identical across thread counts: " << (identical ? "yes" : "NO") << "\n";
    if (!options.write_trace_path.empty()) {
      const auto start = std::chrono::steady_clock::now();
      moeref::write_file_atomically(options.write_trace_path, reference_text);
      std::cout << "wrote " << reference_text.size() / (1024 * 1024) << " MiB trace in " << seconds_since(start)
                << " s\n";
    }
    return identical ? 0 : 1;
  } catch (const std::exception& error) {
    std::cerr << "moeref_bench: error: " << error.what() << "\n";
    return 2;
  }
}
