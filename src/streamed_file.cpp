#include "moeref/streamed_file.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "moeref/error.hpp"

namespace moeref {

namespace {

constexpr size_t kMostQueuedBytes = size_t{64} << 20;

}  // namespace

StreamedFile::StreamedFile(const std::string& path) : path_(path) {
  fd_ = create_temporary_file_beside(path, tmp_path_);
  try {
    writer_ = std::thread([this] { write_pieces(); });
  } catch (const std::exception& error) {
    ::close(fd_);
    std::remove(tmp_path_.c_str());
    throw InputError("output file " + path + ": cannot start the thread that writes it (" + error.what() + ")");
  }
}

StreamedFile::~StreamedFile() {
  if (fd_ >= 0) {
    // Given up: what still waits is not written.
    std::lock_guard<std::mutex> lock(mutex_);
    if (error_.empty()) error_ = "given up";
  }
  stop_writer();
  if (fd_ >= 0) {
    ::close(fd_);
    std::remove(tmp_path_.c_str());
  }
}

void StreamedFile::stop_writer() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    closing_ = true;
  }
  queued_.notify_all();
  if (writer_.joinable()) writer_.join();
}

void StreamedFile::write_pieces() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    queued_.wait(lock, [this] { return closing_ || !queue_.empty(); });
    if (queue_.empty()) return;  // closing, and everything given is written
    std::string piece = std::move(queue_.front());
    queue_.pop_front();
    const bool wanted = error_.empty();  // after an error, or given up, the rest is dropped
    lock.unlock();
    std::string failure;
    if (wanted) {
      try {
        write_all(fd_, piece.data(), piece.size(), "output file " + path_);
      } catch (const std::exception& error) {
        failure = error.what();
      }
    }
    lock.lock();
    if (!failure.empty()) error_ = failure;
    queued_bytes_ -= piece.size();
    drained_.notify_all();
  }
}

void StreamedFile::put(std::string piece) {
  if (piece.empty()) return;
  std::unique_lock<std::mutex> lock(mutex_);
  if (closing_) throw std::logic_error("StreamedFile::put after commit");
  drained_.wait(lock, [this] { return queued_bytes_ < kMostQueuedBytes || !error_.empty(); });
  if (!error_.empty()) throw InputError(error_);
  given_ += piece.size();
  queued_bytes_ += piece.size();
  queue_.push_back(std::move(piece));
  lock.unlock();
  queued_.notify_one();
}

void StreamedFile::commit(const WriteProgressFn& progress) {
  stop_writer();
  if (!error_.empty()) throw InputError(error_);
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) {
    const std::string reason = std::strerror(errno);
    std::remove(tmp_path_.c_str());
    throw InputError("output file " + path_ + ": cannot write it (" + reason + ")");
  }
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    std::remove(tmp_path_.c_str());
    throw InputError("output file " + path_ + ": cannot write it (" + reason + ")");
  }
  if (progress) progress(given_, given_);
}

}  // namespace moeref
