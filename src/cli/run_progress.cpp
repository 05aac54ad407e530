#include "run_progress.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "moeref/error.hpp"

namespace moeref::cli {

namespace {

double delay_from_environment() {
  const char* text = std::getenv("MOEREF_PROGRESS_AFTER_S");
  if (text == nullptr || *text == '\0') return 2.0;
  char* end = nullptr;
  const double seconds = std::strtod(text, &end);
  if (end == text || *end != '\0' || !(seconds >= 0.0)) {
    fail_input("MOEREF_PROGRESS_AFTER_S", "\"" + std::string(text) + "\"", "a number of seconds >= 0");
  }
  return seconds;
}

std::string megabytes(size_t bytes) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f MB", static_cast<double>(bytes) / 1e6);
  return text;
}

}  // namespace

RunProgress::RunProgress(bool wanted) {
  delay_seconds_ = delay_from_environment();
  enabled_ = wanted && ::isatty(STDERR_FILENO) == 1;
}

RunProgress::~RunProgress() { clear(); }

void RunProgress::input_started(const std::string& name) { show("input " + name); }

void RunProgress::step_recorded(const std::string& name, const Tensor& tensor) {
  (void)tensor;
  ++steps_;
  show("step " + std::to_string(steps_) + " " + name);
}

void RunProgress::stage(const std::string& what) {
  stage_ = what;
  show(what);
}

void RunProgress::bytes_written(size_t written, size_t total) {
  show(stage_ + ": " + megabytes(written) + " of " + megabytes(total));
}

void RunProgress::clear() {
  if (!line_shown_) return;
  std::fputs("\r\033[K", stderr);
  std::fflush(stderr);
  line_shown_ = false;
}

void RunProgress::show(const std::string& text) {
  if (!enabled_) return;
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  if (elapsed < delay_seconds_) return;
  // \r and "erase to the end of the line": the line is rewritten in place.
  std::fprintf(stderr, "\rmoeref run: %.1f s, %s\033[K", elapsed, text.c_str());
  std::fflush(stderr);
  line_shown_ = true;
}

}  // namespace moeref::cli
