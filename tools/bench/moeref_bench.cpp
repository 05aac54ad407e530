// moeref_bench: times one variant's layer at a benchmark size on 1..N OpenMP threads.
//
//   moeref_bench [--size small|medium|large | --G 4 --S 1024 --E 16 --M 512 --H 2048]
//                [--variant mtf_top2] [--threads 1,2] [--repeats 3] [--json]
//                [--write-trace PATH] [--fast]
//
// Sizes (G, S, E, M, H), the same in tools/bench/torch_layer_bench.py:
//   small 1,64,8,64,256   medium 4,1024,16,512,2048   large 8,2048,64,1024,4096
//
// Each repeat runs the config once (train, seed 0) and reports
//   run_s     the whole run_config, as `moeref run` does it before writing;
//   inputs_s  of which generating the inputs from the seed (x, weights, draws);
//   layer_s   the rest: router, gating, experts and combine, the part PyTorch times;
// then the peak resident memory of the process. One untimed run at the small size
// comes first (thread pool, first allocations). Traces of every thread count
// must be identical: a digest of every tensor's bytes is compared (and printed).
// --json prints one JSON object per repeat, for tools/bench/run_bench.py.
// Writing a trace is timed separately, only with --write-trace.
#include <omp.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "moeref/atomic_file.hpp"
#include "moeref/config_reader.hpp"
#include "moeref/error.hpp"
#include "moeref/run.hpp"
#include "moeref/trace.hpp"

namespace {

struct Dims {
  int64_t G = 4, S = 1024, E = 16, M = 512, H = 2048;
};

const std::map<std::string, Dims>& named_sizes() {
  static const std::map<std::string, Dims> sizes = {
      {"small", {1, 64, 8, 64, 256}}, {"medium", {4, 1024, 16, 512, 2048}}, {"large", {8, 2048, 64, 1024, 4096}}};
  return sizes;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Sums the time spent taking inputs.
class InputTimer : public moeref::RunObserver {
 public:
  void input_taken(const std::string&, const moeref::Tensor&, double seconds) override { seconds_ += seconds; }
  double seconds() const { return seconds_; }

 private:
  double seconds_ = 0.0;
};

// FNV-1a over the bytes of every input, step and loss, in trace order.
uint64_t trace_digest(const moeref::Trace& trace) {
  uint64_t hash = 1469598103934665603ull;
  auto add = [&hash](const void* data, size_t bytes) {
    const unsigned char* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < bytes; ++i) hash = (hash ^ p[i]) * 1099511628211ull;
  };
  auto add_tensor = [&add](const moeref::Tensor& tensor) {
    add(tensor.f32.data(), tensor.f32.size() * sizeof(float));
    add(tensor.i32.data(), tensor.i32.size() * sizeof(int32_t));
  };
  for (const moeref::NamedTensor& input : trace.inputs) add_tensor(input.tensor);
  for (const moeref::NamedTensor& step : trace.steps) add_tensor(step.tensor);
  for (const auto& loss : trace.losses) add(&loss.second, sizeof(float));
  return hash;
}

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "moeref_bench: time one variant's layer at a benchmark size (tools/bench/run_bench.py compares "
      "it with PyTorch)"};
  std::string size;
  Dims dims;
  std::string variant = "mtf_top2";
  std::vector<int> threads = {1, 2};
  int repeats = 3;
  bool json = false;
  bool fast = false;
  std::string write_trace_path;
  std::vector<std::string> size_names;
  for (const auto& entry : named_sizes()) size_names.push_back(entry.first);
  CLI::Option* size_option = app.add_option("--size", size, "A named size: small, medium or large (G,S,E,M,H)")
                                 ->check(CLI::IsMember(size_names));
  for (auto [flag, target] : {std::pair{"--G", &dims.G}, std::pair{"--S", &dims.S}, std::pair{"--E", &dims.E},
                              std::pair{"--M", &dims.M}, std::pair{"--H", &dims.H}}) {
    app.add_option(flag, *target, std::string("Dim ") + (flag + 2) + " (default: medium)")
        ->check(CLI::PositiveNumber)
        ->excludes(size_option);
  }
  app.add_option("--variant", variant, "Variant id (default mtf_top2)");
  app.add_option("--threads", threads, "OpenMP thread counts, comma-separated (default 1,2)")
      ->delimiter(',')
      ->check(CLI::Range(1, 1024));
  app.add_option("--repeats", repeats, "Runs per thread count (default 3)")->check(CLI::Range(1, 1000));
  app.add_flag("--json", json, "One JSON object per run on stdout instead of the summary");
  app.add_option("--write-trace", write_trace_path, "Also write the trace here, timed");
  app.add_flag("--fast", fast, "The index-dispatch path (moeref run --fast) instead of the literal einsums");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? 0 : 2;
  }
  try {
    if (!size.empty()) dims = named_sizes().at(size);
    const nlohmann::json doc = {{"variant", variant},
                                {"scope", "layer"},
                                {"train", true},
                                {"seed", 0},
                                {"dims", {{"G", dims.G}, {"S", dims.S}, {"E", dims.E}, {"M", dims.M}, {"H", dims.H}}},
                                {"fast", fast}};
    const moeref::Config config = moeref::config_from_json(doc, "benchmark config");
    const std::string size_label = size.empty() ? "custom" : size;
    if (!json) {
      std::cout << "variant " << variant << ", " << size_label << ": G=" << dims.G << " S=" << dims.S << " E=" << dims.E
                << " M=" << dims.M << " H=" << dims.H << ", train, " << (fast ? "fast path, " : "") << repeats
                << " repeats\n";
    }
    // One untimed run at the small size first: the OpenMP thread pool and the first
    // allocations (torch_layer_bench.py warms up the same way).
    {
      nlohmann::json warm = doc;
      const Dims small = named_sizes().at("small");
      warm["dims"] = {{"G", small.G}, {"S", small.S}, {"E", small.E}, {"M", small.M}, {"H", small.H}};
      omp_set_num_threads(*std::max_element(threads.begin(), threads.end()));
      moeref::run_config(moeref::config_from_json(warm, "warm-up config"));
    }
    uint64_t reference_digest = 0;
    bool have_reference = false, identical = true;
    moeref::Trace last;
    for (int thread_count : threads) {
      omp_set_num_threads(thread_count);
      std::vector<double> run_times, input_times, layer_times;
      for (int r = 0; r < repeats; ++r) {
        last = moeref::Trace();  // free the previous run's tensors before timing the next
        InputTimer timer;
        const auto start = std::chrono::steady_clock::now();
        last = moeref::run_config(config, &timer);
        const double run_s = seconds_since(start);
        run_times.push_back(run_s);
        input_times.push_back(timer.seconds());
        layer_times.push_back(run_s - timer.seconds());
        const uint64_t digest = trace_digest(last);
        if (!have_reference) reference_digest = digest;
        have_reference = true;
        identical = identical && digest == reference_digest;
        if (json) {
          char digest_text[17];
          std::snprintf(digest_text, sizeof(digest_text), "%016llx", static_cast<unsigned long long>(digest));
          const nlohmann::json line = {{"tool", "moeref"},
                                       {"mode", fast ? "fast" : "literal"},
                                       {"variant", variant},
                                       {"size", size_label},
                                       {"dims", doc["dims"]},
                                       {"C", last.capacity["expert_capacity"]},
                                       {"threads", thread_count},
                                       {"repeat", r},
                                       {"run_s", run_s},
                                       {"inputs_s", timer.seconds()},
                                       {"layer_s", run_s - timer.seconds()},
                                       {"peak_rss_mb", peak_rss_mb()},
                                       {"digest", digest_text}};
          std::cout << line.dump() << std::endl;
        }
      }
      if (!json) {
        std::cout << "threads " << thread_count << ": run median " << median(run_times) << " s = inputs "
                  << median(input_times) << " s + layer " << median(layer_times) << " s (min run "
                  << *std::min_element(run_times.begin(), run_times.end())
                  << " s), C=" << last.capacity["expert_capacity"] << "\n";
      }
    }
    if (!json) {
      std::cout << "traces identical across thread counts: " << (identical ? "yes" : "NO") << "\n";
      std::cout << "peak RSS " << peak_rss_mb() << " MB\n";
    }
    if (!write_trace_path.empty()) {
      const auto start = std::chrono::steady_clock::now();
      const std::string text = moeref::write_trace(last);
      moeref::write_file_atomically(write_trace_path, text);
      const double seconds = seconds_since(start);
      std::cerr << "wrote " << text.size() / (1024 * 1024) << " MiB trace in " << seconds << " s ("
                << static_cast<double>(text.size()) / 1e6 / seconds << " MB/s)\n";
    }
    return identical ? 0 : 1;
  } catch (const moeref::InputError& error) {
    std::cerr << "moeref_bench: error: " << error.what() << "\n";
    return 2;
  }
}
