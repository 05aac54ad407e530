// hf_nllb_top2: the numbers of the source's NllbMoeRouterTest, then hand-derived cases for the
// quirks of NllbMoeTop2Router: 'random' keeps the RAW second probability, padding_mask applies
// only when router_ignore_padding_tokens is false, the capacity rules, the loss on combine
// weights, and the sparse MLP with its token dropout.
//
// Source tests: huggingface/transformers, tests/models/nllb_moe/test_modeling_nllb_moe.py at 052b1dc
// (052b1dcdbe751ed16e8da95261021318f170a130), NllbMoeRouterTest.test_second_expert_policy
// (EXPECTED_ROUTER_ALL, EXPECTED_ROUTER_SP, EXPECTED_ROUTER, EXPECTED_TOP_1_ALL, EXPECTED_TOP_1_SP,
// compared there with rtol = atol = 1e-4) and test_batch_prioritized_routing. Their logits and
// random draws come from torch's CPU generator after set_seed(0); torch_cpu_rand reproduces that
// stream (tools/source_tests/torch_rand_stream.py says which words each draw takes). The test runs
// 'random', then 'sampling' (which adds the Gumbel noise to the logits IN PLACE), then 'all' on
// those noised logits, and so does this one. test_top_2_routing is not restated: it needs about
// 5,600 framework-initialised weights and uses bare nn.Linear experts, which NLLB-MoE does not.
#include <cmath>
#include <vector>

#include "torch_test_helpers.hpp"

using namespace moeref::testing;

namespace {

const std::vector<float> kExpectedRouterAll = {
    0.3902f, 0,       0,       0.6098f, 0,       0,       0.777f,  0.223f,  0,       0,       0.2726f, 0.7274f, 0.4221f,
    0,       0.5779f, 0,       0,       0,       0.781f,  0.219f,  0.5518f, 0.4482f, 0,       0,       0,       0.406f,
    0.594f,  0,       0.734f,  0,       0,       0.266f,  0.4778f, 0.5222f, 0,       0,       0,       0.3984f, 0,
    0.6016f, 0,       0.0548f, 0.9452f, 0,       0.6796f, 0,       0,       0.3204f, 0.07f,   0,       0.93f,   0,
    0.1854f, 0,       0.8146f, 0,       0.6775f, 0.3225f, 0,       0,       0,       0,       0.5027f, 0.4973f, 0,
    0.6577f, 0,       0.3423f, 0,       0.7767f, 0,       0.2233f, 0.1944f, 0.8056f, 0,       0,       0,       0.3073f,
    0,       0.6927f, 0,       0.5655f, 0.4345f, 0,       0.5791f, 0,       0,       0.4209f, 0.044f,  0,       0.956f,
    0,       0.0083f, 0.9917f, 0,       0,       0,       0.8395f, 0,       0.1605f, 0,       0.1458f, 0,       0.8542f,
    0,       0.8534f, 0.1466f, 0,       0.4938f, 0,       0,       0.5062f, 0.1329f, 0.8671f, 0,       0,       0.3058f,
    0,       0.6942f, 0,       0.4458f, 0,       0,       0.5542f, 0.9053f, 0.0947f, 0,       0,       0,       0.7563f,
    0.2437f, 0,       0,       0,       0.4096f, 0.5904f, 0.4551f, 0,       0,       0.5449f, 0.8502f, 0.1498f, 0,
    0,       0,       0.6312f, 0.3688f, 0,       0.892f,  0,       0,       0.108f,  0.1913f, 0,       0,       0.8087f,
    0.2491f, 0.7509f, 0,       0};
const std::vector<float> kExpectedRouterSampling = {
    0,       0.6539f, 0,       0.3461f, 0,       0,       0.3998f, 0.6002f, 0,       0.5574f, 0,       0.4426f, 0,
    0,       0.4441f, 0.5559f, 0,       0.6545f, 0.3455f, 0,       0.4419f, 0.5581f, 0,       0,       0,       0.4014f,
    0.5986f, 0,       0.3215f, 0,       0,       0.6785f, 0.4765f, 0.5235f, 0,       0,       0,       0.5467f, 0,
    0.4533f, 0,       0.4156f, 0.5844f, 0,       0.337f,  0,       0.663f,  0,       0,       0,       0.4558f, 0.5442f,
    0.4659f, 0,       0.5341f, 0,       0.6179f, 0.3821f, 0,       0,       0.6277f, 0,       0.3723f, 0,       0.5836f,
    0.4164f, 0,       0,       0,       0.66f,   0,       0.34f,   0,       0.4933f, 0,       0.5067f, 0.6016f, 0,
    0,       0.3984f, 0,       0.516f,  0.484f,  0,       0.5799f, 0,       0,       0.4201f, 0,       0,       0.4826f,
    0.5174f, 0.5426f, 0.4574f, 0,       0,       0.5362f, 0.4638f, 0,       0,       0.6448f, 0,       0,       0.3552f,
    0,       0.5909f, 0.4091f, 0,       0.4196f, 0,       0,       0.5804f, 0.3191f, 0.6809f, 0,       0,       0,
    0,       0.4886f, 0.5114f, 0.4899f, 0,       0,       0.5101f, 0.4123f, 0,       0.5877f, 0,       0,       0.3736f,
    0,       0.6264f, 0,       0,       0.6009f, 0.3991f, 0.4246f, 0,       0,       0.5754f, 0.4997f, 0,       0.5003f,
    0,       0,       0.3595f, 0.6405f, 0,       0.5433f, 0,       0,       0.4567f, 0,       0.6806f, 0,       0.3194f,
    0.6689f, 0.3311f, 0,       0};
const std::vector<float> kExpectedRouterRandom = {
    0.4324f, 0.5676f, 0,       0,       0,       0.4348f, 0,       0.5652f, 0.4559f, 0.5441f, 0,       0,       0,
    0,       0,       1,       0.4744f, 0.5256f, 0,       0,       0,       0.5103f, 0,       0.4897f, 0,       0,
    1,       0,       0,       0,       0,       1,       0,       1,       0,       0,       0,       0.5467f, 0,
    0.4533f, 0,       0,       1,       0,       0,       0,       1,       0,       0,       0,       0,       1,
    0,       0,       1,       0,       1,       0,       0,       0,       0.5063f, 0.4937f, 0,       0,       0.5396f,
    0,       0,       0.4604f, 0.4576f, 0.5424f, 0,       0,       0,       0,       0,       1,       0.5134f, 0,
    0.4866f, 0,       0,       0.516f,  0.484f,  0,       0.5439f, 0,       0.4561f, 0,       0.4849f, 0,       0,
    0.5151f, 0.5426f, 0.4574f, 0,       0,       0.5362f, 0.4638f, 0,       0,       1,       0,       0,       0,
    0,       1,       0,       0,       0,       0.4448f, 0,       0.5552f, 0,       1,       0,       0,       0,
    0,       0.4886f, 0.5114f, 0.4899f, 0,       0,       0.5101f, 0,       0,       0.5296f, 0.4704f, 0,       0,
    0.4469f, 0.5531f, 0,       0.4053f, 0.5947f, 0,       0,       0,       0.446f,  0.554f,  0.4997f, 0,       0.5003f,
    0,       0,       0,       0.5851f, 0.4149f, 1,       0,       0,       0,       0,       0.501f,  0.499f,  0,
    1,       0,       0,       0};
const std::vector<int32_t> kExpectedTop1All = {
    0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0,
    0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0,
    0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0,
    0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0,
    0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0};
const std::vector<int32_t> kExpectedTop1Sampling = {
    0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1,
    0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0,
    1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0,
    1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0,
    0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0};

// hf_nllb_top2 in scope "gating" on supplied logits [1, S, E], training (NllbMoeTop2Router's default).
nlohmann::json nllb_gating(int64_t S, int64_t E, const std::vector<float>& logits, nlohmann::json hparams) {
  nlohmann::json config = gating_on_logits("hf_nllb_top2", S, E, logits, std::move(hparams));
  config["train"] = true;
  return config;
}

void check_close(const moeref::FloatBuffer& actual, const std::vector<float>& expected) {
  REQUIRE(actual.size() == expected.size());
  for (size_t i = 0; i < actual.size(); ++i) {
    INFO("element " << i);
    // torch.testing.assert_close(rtol=1e-4, atol=1e-4); the expected values are printed to 4 places.
    CHECK(std::fabs(actual[i] - expected[i]) <= 1e-4f + 1e-4f * std::fabs(expected[i]));
  }
}

}  // namespace

TEST_CASE("hf_nllb_top2: NllbMoeRouterTest.test_second_expert_policy", "[hf_nllb_top2][source]") {
  // set_seed(0); logits = torch.rand((40, 4)); expert_capacity=40, no padding (mask all False).
  const std::vector<float> logits = torch_cpu_rand(0, 0, 160);
  const nlohmann::json padding = tensor_json({"G", "S"}, {1, 40}, std::vector<float>(40, 0.0f));
  // 'random': set_seed(0), the router's Linear(32, 4) takes 128 words, rand_like the next 40.
  nlohmann::json random = nllb_gating(40, 4, logits, {{"expert_capacity", 40}, {"second_expert_policy", "random"}});
  random["inputs"]["padding_mask"] = padding;
  random["inputs"]["random_uniform"] = tensor_json({"G", "S"}, {1, 40}, torch_cpu_rand(0, 128, 40));
  const moeref::Trace by_random = run_json(random);
  check_close(step(by_random, "router_probs_combined").f32, kExpectedRouterRandom);
  CHECK(step(by_random, "top_1_mask_capacity").i32 == kExpectedTop1Sampling);
  // 'sampling': the Gumbel draw takes words 128..287 and is added to the logits in place.
  nlohmann::json sampling = nllb_gating(40, 4, logits, {{"expert_capacity", 40}, {"second_expert_policy", "sampling"}});
  sampling["inputs"]["padding_mask"] = padding;
  sampling["inputs"]["gumbel_uniform"] = tensor_json({"G", "S", "E"}, {1, 40, 4}, torch_cpu_rand(0, 128, 160));
  const moeref::Trace by_sampling = run_json(sampling);
  check_close(step(by_sampling, "router_probs_combined").f32, kExpectedRouterSampling);
  CHECK(step(by_sampling, "top_1_mask_capacity").i32 == kExpectedTop1Sampling);
  // 'all' on the logits the sampling call left behind.
  const moeref::FloatBuffer& noised = step(by_sampling, "router_logits_noised").f32;
  nlohmann::json all = nllb_gating(40, 4, std::vector<float>(noised.begin(), noised.end()),
                                   {{"expert_capacity", 40}, {"second_expert_policy", "all"}});
  all["inputs"]["padding_mask"] = padding;
  const moeref::Trace by_all = run_json(all);
  check_close(step(by_all, "router_probs_combined").f32, kExpectedRouterAll);
  CHECK(step(by_all, "top_1_mask_capacity").i32 == kExpectedTop1All);
}

TEST_CASE("hf_nllb_top2: NllbMoeRouterTest.test_batch_prioritized_routing", "[hf_nllb_top2][source]") {
  // set_seed(0); logits = torch.rand((40, 4)) (words 0..159); the router's Linear takes 160..287;
  // 'random' draws 288..327. expert_capacity=4, batch_prioritized_routing: the last token, routed
  // by its high top probability although it comes last, keeps expert 0.
  nlohmann::json config =
      nllb_gating(40, 4, torch_cpu_rand(0, 0, 160),
                  {{"expert_capacity", 4}, {"second_expert_policy", "random"}, {"batch_prioritized_routing", true}});
  config["inputs"]["padding_mask"] = tensor_json({"G", "S"}, {1, 40}, std::vector<float>(40, 0.0f));
  config["inputs"]["random_uniform"] = tensor_json({"G", "S"}, {1, 40}, torch_cpu_rand(0, 288, 40));
  const moeref::Trace trace = run_json(config);
  CHECK(step(trace, "top_1_mask_capacity").i32[39 * 4 + 0] == 1);
  // Without the prioritisation, expert 0's four slots go to the first four tokens choosing it.
  config["hparams"]["batch_prioritized_routing"] = false;
  CHECK(step(run_json(config), "top_1_mask_capacity").i32[39 * 4 + 0] == 0);
}

TEST_CASE("hf_nllb_top2: 'random' compares and keeps the RAW second probability", "[hf_nllb_top2][random]") {
  // One token, logits [1, 0.5, 0]: p = [0.50648, 0.30719, 0.18632]. 'random' keeps the second
  // expert iff 2 * p2 = 0.61439 > U.
  nlohmann::json config = nllb_gating(
      1, 3, {1, 0.5f, 0}, {{"second_expert_policy", "random"}, {"normalize_router_prob_before_dropping", true}});
  config["inputs"]["random_uniform"] = tensor_json({"G", "S"}, {1, 1}, {0.6f});
  const moeref::Trace kept = run_json(config);
  CHECK(step(kept, "sampled").i32 == std::vector<int32_t>{1});
  // normalize_router_prob_before_dropping: g1 = p1 / (p1 + p2) = 0.6224593, but 'random' then
  // overwrites g2 with the raw p2 = 0.3071959: the two weights sum to 0.93, not 1.
  const auto& combined = step(kept, "router_probs_combined").f32;
  CHECK(combined[0] == Approx(0.6224593f).epsilon(1e-6));
  CHECK(combined[1] == Approx(0.3071959f).epsilon(1e-6));
  // Renormalising after the drop instead gives 0.6224593 and 0.3775407.
  config["hparams"]["normalize_router_prob_before_dropping"] = false;
  CHECK(step(run_json(config), "router_probs_combined").f32[1] == Approx(0.3775407f).epsilon(1e-6));
  // U = 0.62 > 0.61439: the second expert is dropped and the first gets weight 1.
  config["inputs"]["random_uniform"] = tensor_json({"G", "S"}, {1, 1}, {0.62f});
  const moeref::Trace dropped = run_json(config);
  CHECK(step(dropped, "sampled").i32 == std::vector<int32_t>{0});
  CHECK(step(dropped, "router_probs_combined").f32 == std::vector<float>{1, 0, 0});
}

TEST_CASE("hf_nllb_top2: padding_mask removes padded tokens unless router_ignore_padding_tokens",
          "[hf_nllb_top2][padding]") {
  // Two tokens, both [2, 1, 0]; token 0 padded (nonzero). Its masks are zeroed before the
  // locations, so token 1 takes slot 0 of both experts and token 0 gets no weight.
  nlohmann::json config = nllb_gating(2, 3, {2, 1, 0, 2, 1, 0}, nlohmann::json::object());
  config["inputs"]["padding_mask"] = tensor_json({"G", "S"}, {1, 2}, {1, 0});
  const moeref::Trace trace = run_json(config);
  CHECK(step(trace, "non_padding").i32 == std::vector<int32_t>{0, 1});
  CHECK(step(trace, "routing_slot").i32 == std::vector<int32_t>{-1, -1, 0, 0});
  CHECK(step(trace, "router_probs_combined").f32[0] == 0.0f);
  // The flag's name reads backwards: true IGNORES the padding mask.
  config["hparams"]["router_ignore_padding_tokens"] = true;
  const moeref::Trace ignored = run_json(config);
  CHECK(ignored.find_step("non_padding") == nullptr);
  CHECK(step(ignored, "routing_slot").i32 == std::vector<int32_t>{0, 0, 1, 1});
}

TEST_CASE("hf_nllb_top2: capacity rules", "[hf_nllb_top2][capacity]") {
  const std::vector<float> logits = {2, 1, 0, 2, 1, 0, 2, 1, 0, 2, 1, 0, 2, 1, 0};
  // Training, expert_capacity null: C = 2 * ceil(5 / 3) = 4. All five tokens choose e0 then e1:
  // first choices take e0's slots 0..3 and token 4 is dropped; second choices queue behind e1's
  // first choices (none), so they take e1's slots 0..3 and token 4 is dropped again.
  const moeref::Trace null_capacity = run_json(nllb_gating(5, 3, logits, {{"expert_capacity", nullptr}}));
  CHECK(null_capacity.capacity["expert_capacity"] == 4);
  CHECK(step(null_capacity, "routing_slot").i32 == std::vector<int32_t>{0, 0, 1, 1, 2, 2, 3, 3, -1, -1});
  // The fifth token lost both choices: weight 0 everywhere, and the loss counts it as expert 0.
  CHECK(step(null_capacity, "expert_indexes").i32 == std::vector<int32_t>{0, 0, 0, 0, 0});
  // Evaluation: ceil(moe_eval_capacity_token_fraction * S) = ceil(0.25 * 5) = 2.
  nlohmann::json eval = nllb_gating(5, 3, logits, {{"moe_eval_capacity_token_fraction", 0.25}});
  eval["train"] = false;
  CHECK(run_json(eval).capacity["expert_capacity"] == 2);
  // The default fraction 1.0 in evaluation: C = S, nothing dropped.
  eval["hparams"].erase("moe_eval_capacity_token_fraction");
  CHECK(run_json(eval).capacity["expert_capacity"] == 5);
}

TEST_CASE("hf_nllb_top2: the loss averages the combine weights, counting dropped tokens as expert 0",
          "[hf_nllb_top2][loss]") {
  // expert_capacity 1, three tokens [2, 1, 0]: token 0 keeps e0 (w 0.7310586) and e1 (w 0.2689414);
  // tokens 1 and 2 lose both (their second choices queue behind three first choices on e1... e1 has
  // no first choice, so token 1's second sits at slot 1 >= 1). combine rows: t0 [0.7310586,
  // 0.2689414, 0], t1 = t2 = 0. P = mean over tokens = [0.2436862, 0.0896471, 0];
  // expert_indexes [0, 0, 0]; loss = mean over 3 x 3 of mask * P * 9 = (3 * 0.2436862) / 9 * 9 =
  // 0.7310586.
  const moeref::Trace trace = run_json(nllb_gating(3, 3, {2, 1, 0, 2, 1, 0, 2, 1, 0}, {{"expert_capacity", 1}}));
  CHECK(step(trace, "routing_slot").i32 == std::vector<int32_t>{0, 0, -1, -1, -1, -1});
  CHECK(loss(trace, "encoder_aux_loss") == Approx(0.7310586f).epsilon(1e-6));
  CHECK(loss(trace, "aux_loss") == Approx(0.001f * 0.7310586f).epsilon(1e-6));
}

TEST_CASE("hf_nllb_top2: the sparse MLP adds the two weighted fc1-relu-fc2 outputs, eval scales by 1 - p",
          "[hf_nllb_top2][layer]") {
  // One token, E = 2, M = 1, H = 1: logits [ln 3, 0] -> weights 0.75 (e0) and 0.25 (e1).
  // expert e0: fc1 w 1 b 0, fc2 w 2 b 1 -> x = 1: relu(1) * 2 + 1 = 3; e1: fc1 w 1 b -3 -> relu(-2) = 0,
  // fc2 b 0.5 -> 0.5. Evaluation with moe_token_dropout 0.2: each output times f32(0.8).
  // outputs = 0.75 * 3 * 0.8 + 0.25 * 0.5 * 0.8 = 1.8 + 0.1 = 1.9.
  const float ln3 = static_cast<float>(std::log(3.0));
  nlohmann::json config = {{"variant", "hf_nllb_top2"},
                           {"train", false},
                           {"dims", {{"G", 1}, {"S", 1}, {"E", 2}, {"M", 1}, {"H", 1}}},
                           {"inputs",
                            {{"logits", tensor_json({"G", "S", "E"}, {1, 1, 2}, {ln3, 0})},
                             {"x", tensor_json({"G", "S", "M"}, {1, 1, 1}, {1})},
                             {"wi", tensor_json({"E", "M", "H"}, {2, 1, 1}, {1, 1})},
                             {"wi_bias", tensor_json({"E", "H"}, {2, 1}, {0, -3})},
                             {"wo", tensor_json({"E", "H", "N"}, {2, 1, 1}, {2, 7})},
                             {"wo_bias", tensor_json({"E", "N"}, {2, 1}, {1, 0.5f})}}}};
  const moeref::Trace trace = run_json(config);
  CHECK(step(trace, "expert_outputs").f32 == std::vector<float>{3, 0.5f});
  CHECK(step(trace, "expert_outputs_token_dropout").f32 == std::vector<float>{3 * 0.8f, 0.5f * 0.8f});
  CHECK(step(trace, "outputs").f32[0] == Approx(1.9f).epsilon(1e-6));
}
