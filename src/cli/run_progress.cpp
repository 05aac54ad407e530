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
  if (!enabled_) return;
  // Redraws the line while a long stage (a large product, formatting the trace) runs.
  ticker_ = std::thread([this]() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stopping_) {
      wake_.wait_for(lock, std::chrono::milliseconds(250));
      if (!stopping_) draw_locked();
    }
  });
}

RunProgress::~RunProgress() { finish(); }

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

void RunProgress::formatted(const std::string& tensor, size_t done, size_t total) {
  const size_t percent = total == 0 ? 100 : done * 100 / total;
  show("formatting the trace: " + tensor + " " + std::to_string(percent) + "%");
}

void RunProgress::pause() {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mutex_);
  text_.clear();
  clear_locked();
}

void RunProgress::finish() {
  if (!enabled_) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    text_.clear();
    clear_locked();
  }
  wake_.notify_all();
  if (ticker_.joinable()) ticker_.join();
}

void RunProgress::show(const std::string& text) {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (stopping_) return;
  text_ = text;
  draw_locked();
}

void RunProgress::draw_locked() {
  if (text_.empty()) return;
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  if (elapsed < delay_seconds_) return;
  // \r and "erase to the end of the line": the line is rewritten in place.
  std::fprintf(stderr, "\rmoeref run: %.1f s, %s\033[K", elapsed, text_.c_str());
  std::fflush(stderr);
  line_shown_ = true;
}

void RunProgress::clear_locked() {
  if (!line_shown_) return;
  std::fputs("\r\033[K", stderr);
  std::fflush(stderr);
  line_shown_ = false;
}

}  // namespace moeref::cli
