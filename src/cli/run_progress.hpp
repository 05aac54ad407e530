// The progress line of a long `moeref run`, on stderr: the time so far, the stage the
// run is in, the step it has reached, the bytes of the trace written so far.
//
// It appears only once the run has taken longer than a delay (2 s, or
// MOEREF_PROGRESS_AFTER_S seconds), only when stderr is a terminal, and never with
// --quiet: a run whose stderr goes to a file, a pipe or a test stays silent. It
// rewrites one line in place, also while one long stage runs (a ticker thread redraws
// it four times a second), and clears it when the run ends, however it ends.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <string>
#include <thread>

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
  // Formatting the trace's text: `done` of `total` elements of `tensor`.
  void formatted(const std::string& tensor, size_t done, size_t total);
  // Clears the line until the next stage (for a message of one's own on stderr).
  void pause();
  // Clears the line for good and stops the ticker.
  void finish();

 private:
  void show(const std::string& text);
  // Draws `text_` when the delay has passed; the caller holds `mutex_`.
  void draw_locked();
  void clear_locked();

  bool enabled_ = false;
  double delay_seconds_ = 2.0;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  int steps_ = 0;
  std::string stage_;

  std::mutex mutex_;  // guards what follows, and stderr while the ticker runs
  std::condition_variable wake_;
  std::string text_;  // empty: nothing to show
  bool line_shown_ = false;
  bool stopping_ = false;
  std::thread ticker_;
};

}  // namespace moeref::cli
