// Watching a run as it goes: which input is being taken, which step was made.
//
// run_config calls an observer, when given one, as the variant takes each input
// and records each step. The CLI's progress line and the benchmark's split of
// input generation from the layer are observers. An observer sees the run; it
// changes nothing in the trace.
#pragma once

#include <string>

#include "moeref/tensor.hpp"

namespace moeref {

class RunObserver {
 public:
  virtual ~RunObserver() = default;
  // Input `name` is about to be generated (or checked, when supplied).
  virtual void input_started(const std::string& name) { (void)name; }
  // Input `name` was taken: generated from the seed, or supplied and checked, in `seconds`.
  virtual void input_taken(const std::string& name, const Tensor& tensor, double seconds) {
    (void)name;
    (void)tensor;
    (void)seconds;
  }
  // Step `name` was recorded (a step filled in place is recorded before it is filled).
  virtual void step_recorded(const std::string& name, const Tensor& tensor) {
    (void)name;
    (void)tensor;
  }
};

}  // namespace moeref
