// The progress line of a long `moeref run`, on stderr: the stage the run is in, the
// step it has reached, the bytes of the trace written so far.
//
// It appears only once the run has taken longer than a delay (2 s, or
// MOEREF_PROGRESS_AFTER_S seconds), only when stderr is a terminal, and never with
// --quiet: a run whose stderr goes to a file, a pipe or a test stays silent. It
// rewrites one line in place and clears it when the run ends, however it ends.
#pragma once

#include <chrono>
#include <cstddef>
#include <string>

#include "moeref/run_observer.hpp"

namespace moeref::cli {

class RunProgress : public RunObserver {
 public:
  // Shows nothing unless `wanted` (not --quiet) and stderr is a terminal. Reads
  // MOEREF_PROGRESS_AFTER_S (seconds, >= 0); an invalid value is an InputError.
  explicit RunProgress(bool wanted);
  ~RunProgress() override;
  RunProgress(const RunProgress&) = delete;
  RunProgress& operator=(const RunProgress&) = delete;

  void input_started(const std::string& name) override;
  void step_recorded(const std::string& name, const Tensor& tensor) override;
  // A stage outside the variant: "formatting the trace", "writing PATH".
  void stage(const std::string& what);
  void bytes_written(size_t written, size_t total);
  // Clears the line, if one was shown.
  void clear();

 private:
  void show(const std::string& text);

  bool enabled_ = false;
  double delay_seconds_ = 2.0;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  bool line_shown_ = false;
  int steps_ = 0;
  std::string stage_;
};

}  // namespace moeref::cli
