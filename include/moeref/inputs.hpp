// Inputs of a run: supplied in the config, or generated from the seed.
//
// A generated value depends only on (seed, input name, element index)
// (rng.hpp), so it is the same on any machine and any thread count. Every
// input a run uses, supplied or generated, is recorded in the trace, so that
// the trace alone replays the run.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "moeref/config.hpp"
#include "moeref/trace.hpp"

namespace moeref {

class InputSet {
 public:
  InputSet(const Config& config, Trace& trace) : config_(config), trace_(trace) {}

  bool supplied(const std::string& name) const;

  // The supplied tensor, checked against dims and shape, or one generated as
  // U[lo, hi). Recorded in the trace inputs either way.
  const Tensor& float_input(const std::string& name, const std::vector<std::string>& dims,
                            const std::vector<int64_t>& shape, double lo, double hi);

  // A random draw U[0,1) of a policy: generated, or supplied to replay someone
  // else's draws (then every value must lie in [0, 1)).
  const Tensor& uniform_draw(const std::string& name, const std::vector<std::string>& dims,
                             const std::vector<int64_t>& shape);

  // An int32 input (ids such as lingvo's hash `expert_id`): the supplied tensor,
  // checked against dims, shape and dtype int32 (its values are the variant's to
  // check), or one generated uniformly from the integers [lo, hi):
  // lo + floor(u * (hi - lo)) in double, u the element's U[0,1) draw (rng.hpp).
  // Recorded in the trace inputs either way.
  const Tensor& int_input(const std::string& name, const std::vector<std::string>& dims,
                          const std::vector<int64_t>& shape, int32_t lo, int32_t hi);

  // The supplied tensor, checked; nullptr when the config does not supply it.
  const Tensor* optional_input(const std::string& name, const std::vector<std::string>& dims,
                               const std::vector<int64_t>& shape);

  // Fails naming the first supplied input that the run did not use.
  void check_all_used() const;

 private:
  const Tensor& check_supplied(const std::string& name, const std::vector<std::string>& dims,
                               const std::vector<int64_t>& shape);
  const Tensor& record(const std::string& name, Tensor tensor);

  const Config& config_;
  Trace& trace_;
  std::set<std::string> used_;
};

}  // namespace moeref
