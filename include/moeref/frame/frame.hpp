// The variant frame: everything a run needs that is not the source function.
//
// A variant's body receives a Frame and its typed hparams, and reads like its
// source: resolve the dims, take the inputs, then one step after another, each
// named once where it is computed, with the earlier steps and inputs it reads:
//
//   const Tensor& raw_gates = f.step("raw_gates", {logits}, ops::mtf_softmax(logits));
//   Tensor& mask_1 = f.int32_step("mask_1", {index_1}, {"G", "S", "E"});   // filled below
//
// The frame owns:
//   - dims: which must be given, which are derived (and must then agree), the
//     size guard, and the resolved dims written to the trace's config;
//   - inputs: supplied or generated from the seed, every one recorded (inputs.hpp);
//   - the step recorder: steps land in the trace in the order they are made,
//     each with the names it reads ("reads", spec/trace-format.md);
//   - losses and the capacity record;
//   - the decision-forcing hook of the checker's near-tie replay.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "moeref/config.hpp"
#include "moeref/inputs.hpp"
#include "moeref/run_observer.hpp"
#include "moeref/tensor.hpp"
#include "moeref/trace.hpp"

namespace moeref {

// One tensor a step reads: a recorded step or input. A null pointer is skipped,
// so optional tensors can be listed as they are.
class Read {
 public:
  Read(const Tensor& tensor) : tensor_(&tensor) {}  // NOLINT: implicit by design
  Read(const Tensor* tensor) : tensor_(tensor) {}   // NOLINT: implicit by design
  const Tensor* tensor() const { return tensor_; }

 private:
  const Tensor* tensor_;
};
using Reads = std::vector<Read>;

// The largest [G, S, E, C] routing tensor moeref will build.
inline constexpr int64_t kMaxRoutingElements = int64_t{1} << 31;

class Frame {
 public:
  // `observer` (may be null) sees every input taken and step recorded.
  Frame(const Config& config, Trace& trace, RunObserver* observer = nullptr);

  const Config& config() const { return config_; }
  bool train() const { return config_.train; }
  // scope "layer": the whole MoE layer; "gating": the gating function only.
  bool layer_scope() const { return config_.scope == "layer"; }
  // True when the config supplies this input (before it is taken).
  bool supplied(const std::string& input) const { return config_.inputs.count(input) > 0; }

  // ---- Dims ----------------------------------------------------------------------
  // The given extent; fails naming dims.LETTER and `why` when it is not given.
  int64_t required_dim(const char* letter, const std::string& why);
  // The given extent, or nullopt (then the dim is not part of the resolved config).
  std::optional<int64_t> optional_dim(const char* letter);
  // Fails naming dims.LETTER and `why` when the config gives it.
  void forbid_dim(const char* letter, const std::string& why);
  // A dim the source derives by `rule`. A config may give it too (a trace's
  // resolved config gives every dim); then it must agree.
  int64_t derived_dim(const char* letter, int64_t value, const std::string& rule);
  // Tokens given as B and L (true; B and L are resolved, the caller derives G and
  // S by its source's grouping rule `grouped_by`) or as G and S (false; both
  // resolved). Fails when neither pair, or only one of B and L, is given.
  bool batch_length_layout(const std::string& grouped_by);
  // M and H as every layer resolves them: M is required in scope "layer" or when
  // the router runs (`needs_router`), optional otherwise; H is required in scope
  // "layer". The names are the source's, for messages ("input_dims").
  void resolve_model_dims(bool needs_router, const std::string& model_name, const std::string& hidden_name);
  // A resolved dim; throws std::logic_error when the variant never resolved it.
  int64_t dim(const char* letter) const;
  // A resolved dim, or `fallback` when the variant did not resolve it.
  int64_t dim_or(const char* letter, int64_t fallback) const;
  // Fails when G*S*E*max(C, 1) exceeds kMaxRoutingElements (all four resolved).
  void check_routing_size() const;
  // Shapes of later steps take `letter` from here instead of the resolved dims:
  // for a source that regroups (lingvo ComputeGating without local_dispatch).
  void set_step_extent(const char* letter, int64_t extent);

  // ---- Inputs --------------------------------------------------------------------
  InputSet& inputs() { return inputs_; }

  // ---- Steps ---------------------------------------------------------------------
  // Records `value` as step `name`, reading `reads`; returns the recorded tensor.
  const Tensor& step(const std::string& name, const Reads& reads, Tensor value);
  // Records a zero-filled step of named dims (extents from the resolved dims or
  // set_step_extent) and returns it to be filled in place, right where it is made.
  Tensor& float32_step(const std::string& name, const Reads& reads, const std::vector<std::string>& dims);
  Tensor& int32_step(const std::string& name, const Reads& reads, const std::vector<std::string>& dims);
  // The same with explicit extents (shared layers that take them from their operands).
  Tensor& float32_step(const std::string& name, const Reads& reads, const std::vector<std::string>& dims,
                       const std::vector<int64_t>& shape);
  // A float32 step whose values start unset: for a large step whose every element the
  // caller writes, so that it is written once instead of zeroed first. A step not wholly
  // written would leave whatever the memory held in the trace: use float32_step then.
  Tensor& float32_step_written_whole(const std::string& name, const Reads& reads, const std::vector<std::string>& dims,
                                     const std::vector<int64_t>& shape);
  const Tensor& scalar_step(const std::string& name, const Reads& reads, float value);
  const Tensor& int32_scalar_step(const std::string& name, const Reads& reads, int32_t value);
  // The extents of named dims, as float32_step uses them.
  std::vector<int64_t> extents(const std::vector<std::string>& dims) const;

  // ---- Results -------------------------------------------------------------------
  void loss(const std::string& name, float value) { trace_.add_loss(name, value); }
  void capacity(nlohmann::json record) { trace_.capacity = std::move(record); }

  // ---- Near ties -----------------------------------------------------------------
  // The checker's forced choices for decision `step` (Config::decision_overrides),
  // or nullptr when it forces nothing there; fails when it is not int32 of `shape`.
  const Tensor* forced_decision(const std::string& step, const std::vector<int64_t>& shape) const;

  // The mtf expert layer took the index-dispatch path (Config::fast): the trace's
  // config will say "fast": true.
  void note_fast_path() { fast_path_used_ = true; }

  // ---- Group shards (`moeref run --groups`, spec/sharding.md) ----------------------
  // The groups whose experts this run computes; nullopt: every group. The range is
  // checked against G when G is resolved.
  const std::optional<GroupRange>& group_shard() const { return config_.groups; }
  // A step recorded with only the shard's groups (the expert layer's); finish()
  // cuts every other tensor with a G dim to the shard's groups.
  void recorded_as_shard(const std::string& step) { shard_steps_.push_back(step); }

  // Writes the resolved config into the trace and fails on a supplied input the
  // run did not use; in a shard, cuts the trace to its groups and records them as
  // config "groups". Called by the frame's driver after the body returns.
  void finish();

 private:
  std::vector<std::string> names_of(const Reads& reads) const;
  // Every dim is resolved here; G is checked against the group shard.
  void resolve(const char* letter, int64_t extent);
  void cut_to_group_shard(const GroupRange& range);

  const Config& config_;
  Trace& trace_;
  RunObserver* observer_;
  InputSet inputs_;
  std::map<std::string, int64_t> resolved_dims_;
  std::map<std::string, int64_t> step_extents_;
  bool fast_path_used_ = false;
  std::vector<std::string> shard_steps_;
};

}  // namespace moeref
