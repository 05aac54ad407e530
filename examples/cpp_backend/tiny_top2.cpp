// A tiny top-2 router in plain C++, checked against a moeref golden through the
// installed moeref package.
//
//   tiny_top2 GOLDEN.trace.json [--plant-bug]
//
// It reads the golden's router logits [G, S, E], computes the softmax and the two
// top choices its own way (max-subtracted exp, one division, a first-index argmax),
// writes them as a candidate trace, and checks that candidate against the golden.
// Exit status: 0 when moeref passes it, 1 when it differs (the report says where).
// With --plant-bug the second choice may repeat the first, and the exit status is
// 0 only when moeref catches that at index_2, its first divergent step.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "moeref/moeref.hpp"

namespace {

struct Top2 {
  std::vector<float> raw_gates;           // [G, S, E]
  std::vector<int32_t> index_1, index_2;  // [G, S]
  std::vector<float> gate_1, gate_2;      // [G, S]
};

Top2 route(const moeref::FloatBuffer& logits, size_t tokens, size_t experts, bool plant_bug) {
  Top2 out;
  out.raw_gates.resize(tokens * experts);
  for (size_t t = 0; t < tokens; ++t) {
    const float* row = logits.data() + t * experts;
    float top = row[0];
    for (size_t e = 1; e < experts; ++e) top = std::max(top, row[e]);
    double sum = 0.0;
    for (size_t e = 0; e < experts; ++e) sum += std::exp(static_cast<double>(row[e] - top));
    int32_t first = 0, second = -1;
    for (size_t e = 0; e < experts; ++e) {
      const float gate = static_cast<float>(std::exp(static_cast<double>(row[e] - top)) / sum);
      out.raw_gates[t * experts + e] = gate;
      if (gate > out.raw_gates[t * experts + static_cast<size_t>(first)]) first = static_cast<int32_t>(e);
    }
    for (size_t e = 0; e < experts; ++e) {
      const bool skip = !plant_bug && static_cast<int32_t>(e) == first;
      if (skip) continue;
      if (second < 0 || out.raw_gates[t * experts + e] > out.raw_gates[t * experts + static_cast<size_t>(second)]) {
        second = static_cast<int32_t>(e);
      }
    }
    out.index_1.push_back(first);
    out.index_2.push_back(second);
    out.gate_1.push_back(out.raw_gates[t * experts + static_cast<size_t>(first)]);
    out.gate_2.push_back(out.raw_gates[t * experts + static_cast<size_t>(second)]);
  }
  return out;
}

moeref::Tensor tensor(std::vector<std::string> dims, std::vector<int64_t> shape, const std::vector<float>& data) {
  moeref::Tensor t = moeref::Tensor::float32(std::move(dims), std::move(shape));
  t.f32.assign(data.begin(), data.end());
  return t;
}

moeref::Tensor tensor(std::vector<std::string> dims, std::vector<int64_t> shape, const std::vector<int32_t>& data) {
  moeref::Tensor t = moeref::Tensor::int32(std::move(dims), std::move(shape));
  t.i32.assign(data.begin(), data.end());
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: tiny_top2 GOLDEN.trace.json [--plant-bug]\n");
    return 2;
  }
  const bool plant_bug = argc > 2 && std::string(argv[2]) == "--plant-bug";
  try {
    const moeref::Trace golden = moeref::read_trace_file(argv[1]);
    const moeref::Tensor* logits = golden.find_step("logits");
    if (logits == nullptr) throw moeref::InputError(std::string(argv[1]) + ": the golden has no logits step");
    const int64_t G = logits->shape[0], S = logits->shape[1], E = logits->shape[2];
    const Top2 routed = route(logits->f32, static_cast<size_t>(G * S), static_cast<size_t>(E), plant_bug);

    moeref::Trace candidate;
    candidate.generator = {{"program", "tiny_top2"}, {"version", "1"}, {"rng", "replayed"}};
    candidate.config = golden.config;
    candidate.add_step("raw_gates", tensor({"G", "S", "E"}, {G, S, E}, routed.raw_gates));
    candidate.add_step("index_1", tensor({"G", "S"}, {G, S}, routed.index_1));
    candidate.add_step("gate_1", tensor({"G", "S"}, {G, S}, routed.gate_1));
    candidate.add_step("index_2", tensor({"G", "S"}, {G, S}, routed.index_2));
    candidate.add_step("gate_2", tensor({"G", "S"}, {G, S}, routed.gate_2));

    const moeref::CheckReport report = moeref::check_traces(golden, candidate, moeref::CheckOptions{});
    std::printf("%s", report.to_text().c_str());
    if (plant_bug) return !report.pass && report.first_divergent_step == "index_2" ? 0 : 1;
    return report.pass ? 0 : 1;
  } catch (const moeref::InputError& error) {
    std::fprintf(stderr, "tiny_top2: %s\n", error.what());
    return 2;
  }
}
