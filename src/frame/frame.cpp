#include "moeref/frame/frame.hpp"

#include <algorithm>
#include <deque>
#include <stdexcept>

#include "moeref/error.hpp"
#include "moeref/frame/group_slices.hpp"
#include "moeref/ops/matmul.hpp"

namespace moeref {

Frame::Frame(const Config& config, Trace& trace, RunObserver* observer)
    : config_(config), trace_(trace), observer_(observer), inputs_(config, trace, observer) {}

int64_t Frame::required_dim(const char* letter, const std::string& why) {
  auto it = config_.dims.find(letter);
  if (it == config_.dims.end()) fail_input(std::string("dims.") + letter, "missing", why);
  resolve(letter, it->second);
  return it->second;
}

std::optional<int64_t> Frame::optional_dim(const char* letter) {
  auto it = config_.dims.find(letter);
  if (it == config_.dims.end()) return std::nullopt;
  resolve(letter, it->second);
  return it->second;
}

void Frame::forbid_dim(const char* letter, const std::string& why) {
  auto it = config_.dims.find(letter);
  if (it != config_.dims.end()) fail_input(std::string("dims.") + letter, std::to_string(it->second), why);
}

int64_t Frame::derived_dim(const char* letter, int64_t value, const std::string& rule) {
  auto it = config_.dims.find(letter);
  if (it != config_.dims.end() && it->second != value) {
    fail_input(std::string("dims.") + letter, std::to_string(it->second), std::to_string(value) + " (" + rule + ")");
  }
  resolve(letter, value);
  return value;
}

void Frame::resolve(const char* letter, int64_t extent) {
  resolved_dims_[letter] = extent;
  const std::optional<GroupRange>& range = config_.groups;
  if (range && std::string(letter) == "G" &&
      !(range->first >= 0 && range->first < range->end && range->end <= extent)) {
    fail_input("--groups", std::to_string(range->first) + ":" + std::to_string(range->end),
               "FIRST:END with 0 <= FIRST < END <= G = " + std::to_string(extent) + " (this run's number of groups)");
  }
}

bool Frame::batch_length_layout(const std::string& grouped_by) {
  const auto& given = config_.dims;
  const bool has_bl = given.count("B") && given.count("L");
  if (!has_bl && !(given.count("G") && given.count("S"))) {
    fail_input("dims", "neither B and L nor G and S",
               "B and L (x is [B, L, M], grouped by " + grouped_by + ") or G and S");
  }
  if (given.count("B") != given.count("L")) fail_input("dims", "only one of B and L", "both B and L, or neither");
  if (has_bl) {
    required_dim("B", "the batch size");
    required_dim("L", "the length");
  } else {
    required_dim("G", "the number of groups");
    required_dim("S", "the group size");
  }
  return has_bl;
}

void Frame::resolve_model_dims(bool needs_router, const std::string& model_name, const std::string& hidden_name) {
  auto named = [](const std::string& name) { return name.empty() ? std::string() : " (" + name + ")"; };
  if (layer_scope() || needs_router) {
    required_dim("M", "the model dim" + named(model_name) + ", needed for the router or the experts");
  } else {
    optional_dim("M");
  }
  if (layer_scope()) required_dim("H", "the expert hidden dim" + named(hidden_name) + ", needed with scope \"layer\"");
}

int64_t Frame::dim(const char* letter) const {
  auto it = resolved_dims_.find(letter);
  if (it == resolved_dims_.end()) throw std::logic_error(std::string("dim ") + letter + " was never resolved");
  return it->second;
}

int64_t Frame::dim_or(const char* letter, int64_t fallback) const {
  auto it = resolved_dims_.find(letter);
  return it == resolved_dims_.end() ? fallback : it->second;
}

void Frame::check_routing_size() const {
  const int64_t C = dim("C");
  const double routing_elements = static_cast<double>(dim("G")) * static_cast<double>(dim("S")) *
                                  static_cast<double>(dim("E")) * static_cast<double>(C > 0 ? C : 1);
  if (routing_elements > static_cast<double>(kMaxRoutingElements)) {
    fail_input("dims", "G*S*E*C = " + std::to_string(static_cast<long long>(routing_elements)),
               "at most 2^31 elements in combine_tensor");
  }
}

void Frame::set_step_extent(const char* letter, int64_t extent) { step_extents_[letter] = extent; }

std::vector<int64_t> Frame::extents(const std::vector<std::string>& dims) const {
  std::vector<int64_t> shape;
  for (const std::string& letter : dims) {
    auto rebound = step_extents_.find(letter);
    shape.push_back(rebound != step_extents_.end() ? rebound->second : dim(letter.c_str()));
  }
  return shape;
}

std::vector<std::string> Frame::names_of(const Reads& reads) const {
  std::vector<std::string> names;
  for (const Read& read : reads) {
    if (read.tensor() == nullptr) continue;
    std::string name;
    for (const NamedTensor& step : trace_.steps) {
      if (&step.tensor == read.tensor()) name = step.name;
    }
    for (const NamedTensor& input : trace_.inputs) {
      if (&input.tensor == read.tensor()) name = "inputs." + input.name;
    }
    if (name.empty()) throw std::logic_error("a step reads a tensor that is neither a recorded step nor an input");
    bool seen = false;
    for (const std::string& earlier : names) seen = seen || earlier == name;
    if (!seen) names.push_back(name);
  }
  return names;
}

const Tensor& Frame::step(const std::string& name, const Reads& reads, Tensor value) {
  std::vector<std::string> names = names_of(reads);
  trace_.add_step(name, std::move(value), std::move(names));
  if (observer_ != nullptr) observer_->step_recorded(name, trace_.steps.back().tensor);
  return trace_.steps.back().tensor;
}

Tensor& Frame::float32_step(const std::string& name, const Reads& reads, const std::vector<std::string>& dims) {
  step(name, reads, Tensor::float32(dims, extents(dims)));
  return trace_.steps.back().tensor;
}

Tensor& Frame::float32_step(const std::string& name, const Reads& reads, const std::vector<std::string>& dims,
                            const std::vector<int64_t>& shape) {
  step(name, reads, Tensor::float32(dims, shape));
  return trace_.steps.back().tensor;
}

Tensor& Frame::float32_step_written_whole(const std::string& name, const Reads& reads,
                                          const std::vector<std::string>& dims, const std::vector<int64_t>& shape) {
  step(name, reads, Tensor::with_unset_values(dims, shape, DType::kFloat32));
  return trace_.steps.back().tensor;
}

Tensor& Frame::int32_step(const std::string& name, const Reads& reads, const std::vector<std::string>& dims) {
  step(name, reads, Tensor::int32(dims, extents(dims)));
  return trace_.steps.back().tensor;
}

const Tensor& Frame::scalar_step(const std::string& name, const Reads& reads, float value) {
  return step(name, reads, Tensor::scalar(value));
}

const Tensor& Frame::int32_scalar_step(const std::string& name, const Reads& reads, int32_t value) {
  Tensor scalar = Tensor::int32({}, {});
  scalar.i32[0] = value;
  return step(name, reads, std::move(scalar));
}

const Tensor* Frame::forced_decision(const std::string& step_name, const std::vector<int64_t>& shape) const {
  auto it = config_.decision_overrides.find(step_name);
  if (it == config_.decision_overrides.end()) return nullptr;
  if (it->second.shape != shape || it->second.dtype != DType::kInt32) {
    std::string extents;
    for (size_t i = 0; i < shape.size(); ++i) extents += (i > 0 ? ", " : "") + std::to_string(shape[i]);
    fail_input("decision override " + step_name, it->second.shape_string(),
               "an int32 tensor of shape [" + extents + "]");
  }
  return &it->second;
}

void Frame::finish() {
  inputs_.check_all_used();
  nlohmann::json dims = nlohmann::json::object();
  for (const auto& [letter, extent] : resolved_dims_) dims[letter] = extent;
  trace_.config = {{"variant", config_.variant}, {"scope", config_.scope}, {"train", config_.train},
                   {"seed", config_.seed},       {"dims", dims},           {"hparams", config_.hparams}};
  if (fast_path_used_) {
    trace_.config["fast"] = true;
    // The fast expert products' bits depend on whether a fused kernel ran (every fused
    // kernel gives the scalar fma loop's bits), so the trace says which.
    trace_.generator["fast_products"] = ops::fused_matmul_kernel().empty() ? "separate" : "fma";
  }
  if (config_.groups) cut_to_group_shard(*config_.groups);
}

void Frame::cut_to_group_shard(const GroupRange& range) {
  if (resolved_dims_.count("G") == 0) {
    fail_input("--groups", std::to_string(range.first) + ":" + std::to_string(range.end),
               "no group range: this run of " + config_.variant + " has no G dim");
  }
  const int64_t G = dim("G");
  // Tensors computed for every group (inputs, the gating) keep the shard's groups;
  // the expert layer's steps were computed for those groups only.
  auto cut = [&](NamedTensor& named, bool made_as_shard) {
    const int64_t axis = group_axis(named.tensor);
    if (axis < 0) return;
    const int64_t extent = named.tensor.shape[static_cast<size_t>(axis)];
    if (extent != (made_as_shard ? range.end - range.first : G)) {
      throw std::logic_error("group shard: " + named.name + " has " + std::to_string(extent) + " groups");
    }
    if (!made_as_shard) named.tensor = slice_groups(named.tensor, range.first, range.end);
  };
  const std::string digest = inputs_digest(trace_.inputs);
  // Inputs without a G dim (the weights) are the same in every shard: only the shard
  // that holds group 0 writes them, merge checks them all against the digest.
  std::deque<NamedTensor> kept_inputs;
  for (NamedTensor& input : trace_.inputs) {
    if (range.first > 0 && group_axis(input.tensor) < 0) continue;
    cut(input, false);
    kept_inputs.push_back(std::move(input));
  }
  trace_.inputs = std::move(kept_inputs);
  for (NamedTensor& step : trace_.steps) {
    cut(step, std::find(shard_steps_.begin(), shard_steps_.end(), step.name) != shard_steps_.end());
  }
  trace_.config["groups"] = {{"first", range.first}, {"end", range.end}, {"of", G}, {"inputs_digest", digest}};
}

}  // namespace moeref
