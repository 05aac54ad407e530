// Reading a trace's sidecars two files at a time. One SHA-256 stream waits on the latency
// of each round; two streams interleaved keep the core busier (Sha256::update_both), so
// the files are split into two lanes of about equal bytes and each lane's next chunk is
// hashed beside the other's. A lane goes on to its next file as soon as one ends, so the
// two streams stay side by side until one lane runs out.

#include <algorithm>
#include <array>
#include <memory>
#include <numeric>

#include "moeref/trace_files.hpp"
#include "open_sidecar.hpp"

namespace moeref {

namespace {

struct Lane {
  std::vector<size_t> files;  // indices into the reads, in the order given
  size_t next = 0;
  uint64_t bytes = 0;
  std::unique_ptr<OpenSidecar> open;
};

}  // namespace

void SidecarStore::read_all(const std::vector<SidecarRead>& reads) const {
  auto size_of = [&reads](size_t i) { return static_cast<uint64_t>(reads[i].tensor->num_elements()); };
  // The largest first, each to the lane with fewer bytes so far; then each lane in the
  // given order (errors come in the trace's order within a lane).
  std::vector<size_t> by_size(reads.size());
  std::iota(by_size.begin(), by_size.end(), size_t{0});
  std::stable_sort(by_size.begin(), by_size.end(), [&](size_t a, size_t b) { return size_of(a) > size_of(b); });
  std::array<Lane, 2> lanes;
  for (const size_t i : by_size) {
    Lane& lane = lanes[1].bytes < lanes[0].bytes ? lanes[1] : lanes[0];
    lane.files.push_back(i);
    lane.bytes += size_of(i);
  }
  for (Lane& lane : lanes) std::sort(lane.files.begin(), lane.files.end());
  // The lane's file with values still to read, after finishing (checking the sha256 of)
  // those it has read whole; nullptr once the lane is done.
  auto current = [&](Lane& lane) -> OpenSidecar* {
    while (lane.open == nullptr || lane.open->remaining() == 0) {
      if (lane.open != nullptr) {
        lane.open->finish();
        lane.open.reset();
      }
      if (lane.next == lane.files.size()) return nullptr;
      lane.open = open_sidecar(reads[lane.files[lane.next++]]);
    }
    return lane.open.get();
  };
  for (;;) {
    OpenSidecar* first = current(lanes[0]);
    OpenSidecar* second = current(lanes[1]);
    if (first == nullptr && second == nullptr) break;
    if (first != nullptr && second != nullptr) {
      const OpenSidecar::Chunk a = first->read_next(kSidecarChunkSize);
      const OpenSidecar::Chunk b = second->read_next(kSidecarChunkSize);
      Sha256::update_both(first->digest(), a.bytes, a.size, second->digest(), b.bytes, b.size);
    } else {
      OpenSidecar* only = first != nullptr ? first : second;
      const OpenSidecar::Chunk chunk = only->read_next(kSidecarChunkSize);
      only->digest().update(chunk.bytes, chunk.size);
    }
  }
}

}  // namespace moeref
