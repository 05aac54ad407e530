// lingvo_hash: hand-derived cases for capacity, paddings, importance, out-of-range ids and the
// slot-0 leak, in gating and layer scope. Source: tensorflow/lingvo, lingvo/core/gshard_layers.py,
// HashGatingOnLogits. (lingvo/core/gshard_layers_test.py has no gating tests at e0be5dc4ce9b, and no
// lingvo test calls HashGatingOnLogits; every expected value here is derived by hand.)
#include <filesystem>
#include <fstream>
#include <utility>

#include "gshard_test_helpers.hpp"
#include "moeref/atomic_file.hpp"

// gshard_test_helpers.hpp and test_support.hpp: run_json, step, tensor_json, int_tensor_json,
// one_group_config, f_at, i_at.
using namespace moeref::testing;

namespace {

// lingvo_hash with supplied expert ids [G = 1, S] and capacity C.
nlohmann::json hash_config(int64_t S, int64_t E, int64_t C, const std::vector<int32_t>& ids) {
  return one_group_config("lingvo_hash", S, E, {{"expert_capacity_dim", C}},
                          {{"expert_id", int_tensor_json({"G", "S"}, {1, S}, ids)}});
}

}  // namespace

TEST_CASE("lingvo_hash: tokens fill their hashed expert in token order", "[lingvo_hash]") {
  // ids [1, 0, 1, 1], C = 2, E = 2. Expert 1 gets tokens 0, 2 (slots 0, 1); token 3 overflows.
  const moeref::Trace trace = run_json(hash_config(4, 2, 2, {1, 0, 1, 1}));
  // position_in_expert_1 = exclusive cumsum of mask_1 over S, NOT multiplied by mask_1:
  //   expert 0 column: [0, 0, 1, 1]; expert 1 column: [0, 1, 1, 2].
  CHECK(step(trace, "position_in_expert_1").i32 == std::vector<int32_t>{0, 0, 0, 1, 1, 1, 1, 2});
  // mask_1 *= (position < C): token 3's expert-1 entry (position 2) is dropped.
  CHECK(step(trace, "mask_1_capacity").i32 == std::vector<int32_t>{0, 1, 1, 0, 0, 1, 0, 0});
  CHECK(step(trace, "mask_1_flat").i32 == std::vector<int32_t>{1, 1, 1, 0});
  CHECK(step(trace, "mask_1_count").i32 == std::vector<int32_t>{1, 2});
  // position_in_expert_1 = sum_E(position * mask_1): 0 for the dropped token 3.
  CHECK(step(trace, "position_in_expert_1_flat").i32 == std::vector<int32_t>{0, 0, 1, 0});
  const moeref::Tensor& combine = step(trace, "combine_tensor");  // [G, S, E, C]
  CHECK(f_at(combine, {0, 0, 1, 0}) == 1.0f);
  CHECK(f_at(combine, {0, 1, 0, 0}) == 1.0f);
  CHECK(f_at(combine, {0, 2, 1, 1}) == 1.0f);
  // The leak: the dropped token 3 is still written to slot 0 of expert 1, beside token 0.
  CHECK(f_at(combine, {0, 3, 1, 0}) == 1.0f);
  CHECK(i_at(step(trace, "dispatch_tensor"), {0, 3, 1, 0}) == 1);
  float total = 0.0f;
  for (float value : combine.f32) total += value;
  CHECK(total == 4.0f);  // every token has exactly one weight-1 entry
  CHECK(moeref::testing::loss(trace, "aux_loss") == 0.0f);
}

TEST_CASE("lingvo_hash: padded and over-capacity tokens leak into slot 0 of their expert",
          "[lingvo_hash][paddings][leak]") {
  // ids [0, 0, 1, 1, 0], paddings [0, 0, 0, 0, 1], C = 1.
  //   mask_1_nonpadding: token 4's row zeroed.
  //   expert 0: token 0 kept (slot 0); token 1 over capacity (position 1).
  //   expert 1: token 2 kept (slot 0); token 3 over capacity.
  // Every position after masking is 0, and combine = one_hot(index_1) x one_hot(0): all five tokens
  // are dispatched to slot 0 of their expert, with weight 1.
  nlohmann::json config = hash_config(5, 2, 1, {0, 0, 1, 1, 0});
  config["scope"] = "layer";
  config["seed"] = 3;
  config["dims"]["M"] = 3;
  config["dims"]["H"] = 4;
  config["inputs"]["paddings"] = tensor_json({"G", "S"}, {1, 5}, {0, 0, 0, 0, 1});
  const std::vector<float> x = {1, 0, 0, 0, 1, 0, 0, 0, 1, 0.5f, 0.5f, 0, 0, 0, 2};
  config["inputs"]["x"] = tensor_json({"G", "S", "M"}, {1, 5, 3}, x);
  const moeref::Trace trace = run_json(config);
  CHECK(step(trace, "mask_1_nonpadding").i32 == std::vector<int32_t>{1, 0, 1, 0, 0, 1, 0, 1, 0, 0});
  CHECK(step(trace, "mask_1_flat").i32 == std::vector<int32_t>{1, 0, 1, 0, 0});
  CHECK(step(trace, "b").i32 == std::vector<int32_t>{1, 1, 1, 1, 1});
  CHECK(step(trace, "dispatch_tensor").i32 == std::vector<int32_t>{1, 0, 1, 0, 0, 1, 0, 1, 1, 0});
  // Slot 0 of expert 0 receives the SUM of tokens 0, 1 (over capacity) and 4 (padded):
  // [1,0,0] + [0,1,0] + [0,0,2] = [1, 1, 2]; expert 1's slot 0 gets [0,0,1] + [0.5,0.5,0] = [0.5, 0.5, 1].
  const moeref::Tensor& expert_inputs = step(trace, "expert_inputs");  // [E, G, C, M]
  CHECK(expert_inputs.f32 == std::vector<float>{1, 1, 2, 0.5f, 0.5f, 1});
  // And that slot's output is returned, with weight 1, to every token written into it: tokens 0, 1, 4
  // get identical outputs, as do tokens 2 and 3. The kept token 0 is corrupted by the others.
  const moeref::Tensor& outputs = step(trace, "outputs");  // [G, S, N]
  const moeref::Tensor& expert_outputs = step(trace, "expert_outputs");
  for (int64_t n = 0; n < 3; ++n) {
    for (int64_t s : {0, 1, 4}) CHECK(f_at(outputs, {0, s, n}) == f_at(expert_outputs, {0, 0, 0, n}));
    for (int64_t s : {2, 3}) CHECK(f_at(outputs, {0, s, n}) == f_at(expert_outputs, {1, 0, 0, n}));
  }
}

TEST_CASE("lingvo_hash: importance replaces paddings and only importance == 1 is routed", "[lingvo_hash][importance]") {
  // importance [1, 0.5, 1, 0]: tokens 1 and 3 are masked (and still leak into slot 0). Paddings, when
  // importance is given, are ignored (the source's if/else), here all 1.
  nlohmann::json config = hash_config(4, 2, 2, {0, 0, 0, 1});
  config["inputs"]["importance"] = tensor_json({"G", "S"}, {1, 4}, {1, 0.5f, 1, 0});
  config["inputs"]["paddings"] = tensor_json({"G", "S"}, {1, 4}, {1, 1, 1, 1});
  const moeref::Trace trace = run_json(config);
  CHECK(trace.find_step("mask_1_nonpadding") == nullptr);
  CHECK(step(trace, "mask_1_important").i32 == std::vector<int32_t>{1, 0, 0, 0, 1, 0, 0, 0});
  // Expert 0: token 0 slot 0, token 2 slot 1 (token 1 was masked, so it does not count).
  CHECK(step(trace, "position_in_expert_1_flat").i32 == std::vector<int32_t>{0, 0, 1, 0});
  CHECK(f_at(step(trace, "combine_tensor"), {0, 2, 0, 1}) == 1.0f);
  CHECK(f_at(step(trace, "combine_tensor"), {0, 1, 0, 0}) == 1.0f);  // leak
  CHECK(f_at(step(trace, "combine_tensor"), {0, 3, 1, 0}) == 1.0f);  // leak
}

TEST_CASE("lingvo_hash: an id outside 0..E-1 routes nowhere and C = 0 routes nothing", "[lingvo_hash][edge]") {
  // tf.one_hot of -1 or E is an all-zero row, so a = 0 and the token has no combine entry at all.
  const moeref::Trace trace = run_json(hash_config(3, 2, 2, {-1, 2, 1}));
  CHECK(step(trace, "mask_1").i32 == std::vector<int32_t>{0, 0, 0, 0, 0, 1});
  CHECK(step(trace, "dispatch_tensor").i32 == std::vector<int32_t>{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0});
  // C = 0: one_hot(position, 0) is empty; combine is [G, S, E, 0].
  const moeref::Trace empty = run_json(hash_config(3, 2, 0, {0, 1, 1}));
  CHECK(step(empty, "combine_tensor").shape == std::vector<int64_t>{1, 3, 2, 0});
  CHECK(step(empty, "mask_1_capacity").i32 == std::vector<int32_t>(6, 0));
}

TEST_CASE("lingvo_hash: generated ids lie in 0..E-1 and are recorded as int32 and replay", "[lingvo_hash][inputs]") {
  const nlohmann::json config = {{"variant", "lingvo_hash"},
                                 {"seed", 5},
                                 {"dims", {{"G", 2}, {"S", 16}, {"E", 3}, {"M", 4}, {"H", 5}}},
                                 {"hparams", {{"expert_capacity_dim", 4}}}};
  const moeref::Trace trace = run_json(config);
  const moeref::Tensor* ids = trace.find_input("expert_id");
  REQUIRE(ids != nullptr);
  CHECK(ids->dtype == moeref::DType::kInt32);
  std::vector<int> seen(3, 0);
  for (int32_t id : ids->i32) {
    REQUIRE((id >= 0 && id < 3));
    seen[static_cast<size_t>(id)] += 1;
  }
  CHECK((seen[0] > 0 && seen[1] > 0 && seen[2] > 0));
  // Invariants: each token has exactly one weight-1 entry (the leak included); kept tokens occupy
  // distinct slots, and slots >= 1 hold only kept tokens.
  const moeref::Tensor& combine = step(trace, "combine_tensor");
  const moeref::Tensor& flat = step(trace, "mask_1_flat");
  for (int64_t g = 0; g < 2; ++g) {
    for (int64_t s = 0; s < 16; ++s) {
      float sum = 0.0f;
      for (int64_t e = 0; e < 3; ++e) {
        for (int64_t c = 0; c < 4; ++c) {
          sum += f_at(combine, {g, s, e, c});
          if (c >= 1 && f_at(combine, {g, s, e, c}) != 0.0f) CHECK(i_at(flat, {g, s}) == 1);
        }
      }
      CHECK(sum == 1.0f);
    }
    for (int64_t e = 0; e < 3; ++e) {
      for (int64_t c = 0; c < 4; ++c) {
        int kept = 0;
        for (int64_t s = 0; s < 16; ++s) kept += f_at(combine, {g, s, e, c}) != 0.0f && i_at(flat, {g, s}) == 1;
        CHECK(kept <= 1);
      }
    }
  }
  const std::string text = moeref::write_trace(trace);
  CHECK(moeref::write_trace(run_json(moeref::parse_json_text(text, "trace"))) == text);
}

TEST_CASE("lingvo_hash: bad inputs are rejected with the field named", "[lingvo_hash][errors]") {
  nlohmann::json fractional = hash_config(2, 2, 1, {0, 1});
  fractional["inputs"]["paddings"] = tensor_json({"G", "S"}, {1, 2}, {0.5f, 0});
  CHECK_THROWS_WITH(run_json(fractional), Catch::Contains("inputs.paddings[g=0, s=0]"));
  nlohmann::json float_ids = hash_config(2, 2, 1, {0, 1});
  float_ids["inputs"]["expert_id"] = tensor_json({"G", "S"}, {1, 2}, {0, 1});
  CHECK_THROWS_WITH(run_json(float_ids), Catch::Contains("inputs.expert_id.dtype"));
  nlohmann::json no_capacity = hash_config(2, 2, 1, {0, 1});
  no_capacity["hparams"] = nlohmann::json::object();
  CHECK_THROWS_WITH(run_json(no_capacity), Catch::Contains("hparams.expert_capacity_dim"));
}

TEST_CASE("lingvo_expert_choice, praxis_expert_choice and lingvo_hash traces do not depend on the thread count",
          "[lingvo_hash][lingvo_expert_choice][praxis_expert_choice][determinism]") {
  // G = 4 so that the parallel loop over groups really splits.
  const std::string dir = moeref::testing::temp_dir("gshard_threads");
  const std::vector<std::pair<std::string, std::string>> configs = {
      {"lingvo_expert_choice", R"("hparams":{"expert_capacity_dim":2,"capacity_factor":1.0})"},
      {"praxis_expert_choice", R"("hparams":{})"},
      {"lingvo_hash", R"("hparams":{"expert_capacity_dim":3})"}};
  for (const auto& [variant, hparams] : configs) {
    INFO("variant " << variant);
    const std::string config = dir + "/" + variant + ".json";
    std::ofstream(config) << R"({"variant":")" << variant << R"(","seed":5,"dims":{"G":4,"S":12,"E":4,"M":6,"H":5},)"
                          << hparams << "}";
    const auto one = moeref::testing::run_cli("run " + config + " -o " + dir + "/one.json --threads 1");
    const auto two = moeref::testing::run_cli("run " + config + " -o " + dir + "/two.json --threads 2");
    REQUIRE(one.exit_code == 0);
    REQUIRE(two.exit_code == 0);
    CHECK(moeref::read_whole_file(dir + "/one.json", "trace") == moeref::read_whole_file(dir + "/two.json", "trace"));
  }
  std::filesystem::remove_all(dir);
}
