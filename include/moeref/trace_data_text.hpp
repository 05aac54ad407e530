// The text of a tensor's "data" array, formatted on every thread.
//
// Formatting float32 as shortest round-trip decimals is most of the time of writing
// a large trace. Long arrays are cut into fixed-size chunks that threads format
// independently and that are joined in order, so the bytes are the same for any
// thread count.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include "moeref/tensor.hpp"

namespace moeref {

// Called with the elements formatted so far in one tensor and its element count.
using FormatProgress = std::function<void(size_t done, size_t total)>;

// Appends the values of `tensor` separated by commas (no brackets); the text of
// each float32 is append_float32's, of each int32 std::to_string's. A long array is
// formatted in batches of chunks; `after_batch` is called after each batch is appended
// (a streamed file takes what `out` holds then, so that the whole text is never held).
void append_data_values(std::string& out, const Tensor& tensor, const FormatProgress& progress = {},
                        const std::function<void()>& after_batch = {});

}  // namespace moeref
