// `moeref explain`: a trace told step by step (explain.hpp).
//
// Everything here is read from the trace: the steps in their order, each step's
// `reads`, the resolved config and capacity, the inputs (random draws included)
// and the losses. What a step did is found by comparing it with what it read:
//   - the tensor it refines (a read of the same dims): which values changed, with
//     the other reads' values at each changed element as the reason;
//   - the scores it decides on (a read with one more dim): which rows tied;
//   - the random draws it reads (inputs.*_uniform): the draw beside each result.

#include "moeref/teach/explain.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "moeref/config_reader.hpp"
#include "moeref/registry.hpp"
#include "moeref/run.hpp"
#include "moeref/teach/routing_view.hpp"
#include "moeref/teach/step_notes.hpp"
#include "moeref/teach/tiny_examples.hpp"

namespace moeref {

namespace {

// ---- A small document model: the same content as text or Markdown ----------------------

class Doc {
 public:
  explicit Doc(ExplainFormat format) : markdown_(format == ExplainFormat::kMarkdown) {}

  void title(const std::string& text) {
    if (markdown_) {
      out_ << "# " << text << "\n\n";
    } else {
      out_ << text << "\n" << std::string(text.size(), '=') << "\n\n";
    }
  }
  void section(const std::string& text) {
    if (markdown_) {
      out_ << "## " << text << "\n\n";
    } else {
      out_ << text << "\n" << std::string(text.size(), '-') << "\n\n";
    }
  }
  void para(const std::string& text) { out_ << text << "\n\n"; }
  // "key: value" lines, kept together.
  void fields(const std::vector<std::pair<std::string, std::string>>& items) {
    size_t width = 0;
    for (const auto& item : items) width = std::max(width, item.first.size());
    for (const auto& [key, value] : items) {
      if (markdown_) {
        out_ << "* **" << key << "**: " << value << "\n";
      } else {
        out_ << "  " << key << std::string(width - key.size(), ' ') << "  " << value << "\n";
      }
    }
    out_ << "\n";
  }
  void bullets(const std::vector<std::string>& items) {
    if (items.empty()) return;
    for (const std::string& item : items) {
      // An item starting with two spaces continues the one before it, indented.
      const bool nested = item.rfind("  ", 0) == 0;
      if (markdown_) {
        out_ << (nested ? "  * " + item.substr(2) : "* " + item) << "\n";
      } else {
        out_ << (nested ? "      " + item.substr(2) : "  - " + item) << "\n";
      }
    }
    out_ << "\n";
  }
  void code(const std::string& text) {
    if (markdown_) {
      out_ << "```\n" << text << "\n```\n\n";
    } else {
      std::istringstream lines(text);
      std::string line;
      while (std::getline(lines, line)) out_ << "    " << line << "\n";
      out_ << "\n";
    }
  }
  // The first column is a label (left-aligned), the others values (right-aligned).
  void table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows) {
    if (markdown_) {
      out_ << "|";
      for (const std::string& cell : header) out_ << " " << (cell.empty() ? " " : cell) << " |";
      out_ << "\n|";
      for (size_t i = 0; i < header.size(); ++i) out_ << (i == 0 ? " --- |" : " ---: |");
      out_ << "\n";
      for (const auto& row : rows) {
        out_ << "|";
        for (const std::string& cell : row) out_ << " " << cell << " |";
        out_ << "\n";
      }
      out_ << "\n";
      return;
    }
    std::vector<size_t> widths(header.size(), 0);
    auto measure = [&](const std::vector<std::string>& row) {
      for (size_t i = 0; i < row.size() && i < widths.size(); ++i) widths[i] = std::max(widths[i], length(row[i]));
    };
    measure(header);
    for (const auto& row : rows) measure(row);
    auto write = [&](const std::vector<std::string>& row) {
      out_ << "   ";
      for (size_t i = 0; i < row.size() && i < widths.size(); ++i) {
        const std::string pad(widths[i] - length(row[i]), ' ');
        out_ << " " << (i == 0 ? row[i] + pad : pad + row[i]);
      }
      out_ << "\n";
    };
    write(header);
    for (const auto& row : rows) write(row);
    out_ << "\n";
  }
  std::string str() const { return out_.str(); }
  bool markdown() const { return markdown_; }

 private:
  // Display width: UTF-8 continuation bytes take no column.
  static size_t length(const std::string& text) {
    size_t n = 0;
    for (unsigned char c : text) n += (c & 0xC0) != 0x80 ? 1 : 0;
    return n;
  }

  bool markdown_;
  std::ostringstream out_;
};

// ---- Names and numbers -------------------------------------------------------------------

// The letter a dim's indices carry in labels: tokens t, experts e, slots c.
std::string index_letter(const std::string& dim) {
  if (dim == "S") return "t";
  if (dim.size() == 1) return std::string(1, static_cast<char>(std::tolower(static_cast<unsigned char>(dim[0]))));
  return dim + "=";
}

std::string number(double value, bool integer) {
  if (integer) return std::to_string(static_cast<int64_t>(value));
  if (value == 0.0) return "0";
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.6g", value);
  return buffer;
}

double value_at(const Tensor& tensor, size_t i) {
  return tensor.dtype == DType::kInt32 ? static_cast<double>(tensor.i32[i]) : static_cast<double>(tensor.f32[i]);
}

std::string value_text(const Tensor& tensor, size_t i) {
  return number(value_at(tensor, i), tensor.dtype == DType::kInt32);
}

// "t3 e1" for an element, naming the dims of size > 1 (or every dim of a one-element tensor).
std::string element_label(const Tensor& tensor, const std::vector<int64_t>& index) {
  std::string label;
  for (size_t d = 0; d < index.size(); ++d) {
    if (tensor.shape[d] == 1) continue;
    label += (label.empty() ? "" : " ") + index_letter(tensor.dims[d]) + std::to_string(index[d]);
  }
  return label.empty() ? "the value" : label;
}

bool is_random_draw(const std::string& read) {
  return read.rfind("inputs.", 0) == 0 && read.find("uniform") != std::string::npos;
}

std::string join(const std::vector<std::string>& items, const std::string& separator) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i > 0 ? separator : "") + items[i];
  return out;
}

// ---- Reading the trace ---------------------------------------------------------------------

struct Context {
  const Trace& trace;
  const ExplainOptions& options;
  std::string variant;
  std::optional<int64_t> capacity;
  std::map<std::string, size_t> step_number;  // 1-based
};

const Tensor* resolve(const Context& context, const std::string& read) {
  if (read.rfind("inputs.", 0) == 0) return context.trace.find_input(read.substr(7));
  return context.trace.find_step(read);
}

// The flat offset in `to` of element `index` of `from`, when every dim of `to` is a
// dim of `from` with the same extent (a scalar projects anywhere).
std::optional<size_t> project(const Tensor& from, const std::vector<int64_t>& index, const Tensor& to) {
  size_t flat = 0;
  for (size_t d = 0; d < to.dims.size(); ++d) {
    auto at = std::find(from.dims.begin(), from.dims.end(), to.dims[d]);
    if (at == from.dims.end()) return std::nullopt;
    const size_t p = static_cast<size_t>(at - from.dims.begin());
    if (from.shape[p] != to.shape[d]) return std::nullopt;
    flat = flat * static_cast<size_t>(to.shape[d]) + static_cast<size_t>(index[p]);
  }
  return flat;
}

// "position_in_expert_1 = 2 ≥ C = 2" and the like: the other reads at this element.
std::string reasons(const Context& context, const Tensor& tensor, const std::vector<int64_t>& index,
                    const std::vector<std::string>& reads, const std::string& skip) {
  std::vector<std::string> parts;
  for (const std::string& read : reads) {
    if (read == skip) continue;
    const Tensor* other = resolve(context, read);
    if (other == nullptr) continue;
    const std::optional<size_t> at = project(tensor, index, *other);
    if (!at) continue;
    const double value = value_at(*other, *at);
    std::string part = is_random_draw(read) ? "draw U = " + value_text(*other, *at) + " from " + read
                                            : read + " = " + value_text(*other, *at);
    if (read.find("position") != std::string::npos && context.capacity &&
        value >= static_cast<double>(*context.capacity)) {
      part += " ≥ C = " + std::to_string(*context.capacity) + ": no slot left";
    }
    parts.push_back(part);
  }
  return parts.empty() ? "" : " (" + join(parts, ", ") + ")";
}

void add_capped(std::vector<std::string>& notes, int64_t& shown, int64_t cap, const std::string& note) {
  if (shown++ < cap) notes.push_back(note);
}

// Rule A: a read of the same dims is the tensor this step refines.
enum class Refines { kNo, kSameTensor, kSameStem };
// kSameTensor when step `name` is a later stage of `read`: mask_1_capacity of
// mask_1_important, gate_2_normalized of gate_2, router_probs_masked of router_probs (the
// first two words of the read's name agree, "inputs." aside). kSameStem when all but the
// read's last word agree (fairseq's mask2_capacity of mask2_sampled), which a new tensor
// of the same stem also does (router_probs of router_logits, mask_cumsum of mask_routed):
// the caller then lists the changes only when they drop values (to 0 or to an infinity,
// as masks do) and some values stayed.
Refines refines(const std::string& name, std::string read) {
  if (read.rfind("inputs.", 0) == 0) read = read.substr(7);
  auto words = [](const std::string& text) {
    std::vector<std::string> out;
    std::stringstream stream(text);
    std::string word;
    while (std::getline(stream, word, '_')) out.push_back(word);
    return out;
  };
  const std::vector<std::string> a = words(name), b = words(read);
  auto leading_words_agree = [&](size_t n) {
    return n > 0 && a.size() >= n && std::equal(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(n), a.begin());
  };
  if (leading_words_agree(std::min<size_t>(2, b.size()))) return Refines::kSameTensor;
  return leading_words_agree(b.size() - 1) ? Refines::kSameStem : Refines::kNo;
}

bool changes_since(const Context& context, const std::string& name, const Tensor& tensor,
                   const std::vector<std::string>& reads, std::vector<std::string>& notes) {
  for (const std::string& read : reads) {
    const Tensor* before = resolve(context, read);
    if (before == nullptr || before->dims != tensor.dims || before->shape != tensor.shape) continue;
    const Refines how = refines(name, read);
    if (how == Refines::kNo || is_random_draw(read) || before->dtype != tensor.dtype) continue;
    std::vector<std::string> lines;
    int64_t changed = 0;
    bool only_drops = true;
    const int64_t n = tensor.num_elements();
    for (int64_t i = 0; i < n; ++i) {
      const size_t k = static_cast<size_t>(i);
      const double was = value_at(*before, k), now = value_at(tensor, k);
      if (was == now || (std::isnan(was) && std::isnan(now))) continue;
      only_drops = only_drops && (now == 0.0 || std::isinf(now));
      const std::vector<int64_t> index = tensor.unravel(i);
      add_capped(lines, changed, context.options.max_notes,
                 element_label(tensor, index) + ": " + value_text(*before, k) + " → " + value_text(tensor, k) +
                     reasons(context, tensor, index, reads, read));
    }
    if (how == Refines::kSameStem && (changed == n || !only_drops)) continue;  // a new tensor, not a later stage
    if (changed == 0) {
      notes.push_back("no value changed since `" + read + "`");
    } else {
      notes.push_back(std::to_string(changed) + " of " + std::to_string(n) + " values changed since `" + read + "`:");
      for (const std::string& line : lines) notes.push_back("  " + line);
      if (changed > context.options.max_notes) {
        notes.push_back("  ... and " + std::to_string(changed - context.options.max_notes) + " more");
      }
    }
    return true;
  }
  return false;
}

// Rules B and C: an int32 step choosing along the last dim of a float read: an argmax
// (the read has one more dim) or a top-k (the same rank, a different last dim). A mask
// (hf_nllb's router_mask_k: 1 where a choice is dispatched) is no choice, although its
// 0s and 1s could pass for expert indices.
bool decisions(const Context& context, const std::string& name, const Tensor& tensor,
               const std::vector<std::string>& reads, std::vector<std::string>& notes) {
  if (tensor.dtype != DType::kInt32 || tensor.rank() == 0 || name.find("mask") != std::string::npos) return false;
  for (const std::string& read : reads) {
    const Tensor* scores = resolve(context, read);
    if (scores == nullptr || scores->dtype != DType::kFloat32 || scores->rank() == 0) continue;
    const size_t r = static_cast<size_t>(scores->rank());
    const bool argmax = scores->rank() == tensor.rank() + 1 &&
                        std::equal(tensor.dims.begin(), tensor.dims.end(), scores->dims.begin()) &&
                        std::equal(tensor.shape.begin(), tensor.shape.end(), scores->shape.begin());
    const bool top_k = scores->rank() == tensor.rank() && tensor.dims.back() != scores->dims.back() &&
                       std::equal(tensor.dims.begin(), tensor.dims.end() - 1, scores->dims.begin()) &&
                       std::equal(tensor.shape.begin(), tensor.shape.end() - 1, scores->shape.begin());
    if (!argmax && !top_k) continue;
    const int64_t X = scores->shape[r - 1];
    // The values must index that last dim (-1: no choice), or this is not a choice along it.
    if (!std::all_of(tensor.i32.begin(), tensor.i32.end(), [&](int32_t v) { return v >= -1 && v < X; })) continue;
    const std::string letter = index_letter(scores->dims[r - 1]);
    const int64_t K = argmax ? 1 : tensor.shape.back();
    const int64_t rows = tensor.num_elements() / K;
    bool any_random = false;
    for (const std::string& other : reads) any_random = any_random || is_random_draw(other);
    std::vector<std::string> lines;
    int64_t shown = 0;
    for (int64_t row = 0; row < rows; ++row) {
      const float* v = scores->f32.data() + row * X;
      std::vector<int64_t> chosen;
      for (int64_t k = 0; k < K; ++k) {
        const int32_t c = tensor.i32[static_cast<size_t>(row * K + k)];
        if (c >= 0 && c < X) chosen.push_back(c);
      }
      if (chosen.empty()) continue;
      std::vector<int64_t> label_index = tensor.unravel(row * K);
      if (!argmax) label_index.pop_back();
      Tensor row_tensor = tensor;
      if (!argmax) {
        row_tensor.dims.pop_back();
        row_tensor.shape.pop_back();
      }
      const std::string who = element_label(row_tensor, label_index);
      // The value that decided: the smallest chosen one (the cut).
      float cut = v[chosen[0]];
      for (int64_t c : chosen) cut = std::min(cut, v[c]);
      std::vector<int64_t> tied_out;
      float best_left = -INFINITY;
      int64_t best_left_index = -1;
      for (int64_t j = 0; j < X; ++j) {
        if (std::find(chosen.begin(), chosen.end(), j) != chosen.end()) continue;
        if (v[j] == cut) tied_out.push_back(j);
        if (v[j] > best_left) {
          best_left = v[j];
          best_left_index = j;
        }
      }
      if (!tied_out.empty()) {
        std::vector<std::string> names;
        int64_t winner = -1;
        for (int64_t c : chosen) {
          if (v[c] != cut) continue;
          names.push_back(letter + std::to_string(c));
          if (winner < 0) winner = c;
        }
        std::vector<std::string> losers;
        for (int64_t j : tied_out) losers.push_back(letter + std::to_string(j));
        add_capped(lines, shown, context.options.max_notes,
                   who + ": a tie at " + number(cut, false) + " between " + join(names, ", ") + " and " +
                       join(losers, ", ") + "; " + join(names, ", ") + " won (" +
                       (tied_out.front() > winner ? "the lower index" : "the higher index") + ")");
      } else if (best_left > cut) {
        add_capped(lines, shown, context.options.max_notes,
                   who + ": chose " + letter + std::to_string(chosen.back()) + " (" + number(cut, false) + ") over " +
                       letter + std::to_string(best_left_index) + " (" + number(best_left, false) + ")" +
                       (any_random ? ": decided by the random draw" : ": not the largest score"));
      } else if (best_left_index >= 0 && cut - best_left <= 1e-6f * std::fabs(cut)) {
        add_capped(lines, shown, context.options.max_notes,
                   who + ": a near tie, " + letter + std::to_string(chosen.back()) + " " + number(cut, false) +
                       " against " + letter + std::to_string(best_left_index) + " " + number(best_left, false) +
                       " (another implementation's rounding may choose the other)");
      }
    }
    const std::string what = argmax ? "the largest value of `" + read + "` in each row"
                                    : "the " + std::to_string(K) + " largest values of `" + read + "` in each row";
    if (shown == 0) {
      notes.push_back("chose " + what + "; no ties");
    } else {
      notes.push_back("chose " + what + ":");
      for (const std::string& line : lines) notes.push_back("  " + line);
      if (shown > context.options.max_notes) {
        notes.push_back("  ... and " + std::to_string(shown - context.options.max_notes) + " more");
      }
    }
    return true;
  }
  return false;
}

// Rule E: an order of the tokens (batch-prioritized routing's argsort): say it.
void token_order(const Tensor& tensor, const std::string& name, std::vector<std::string>& notes) {
  if (tensor.dtype != DType::kInt32 || tensor.dims.empty() || tensor.dims.back() != "S") return;
  if (name.find("perm") == std::string::npos && name.find("order") == std::string::npos) return;
  const int64_t S = tensor.shape.back();
  for (int64_t g = 0; g < tensor.num_elements() / S && g < 4; ++g) {
    std::vector<std::string> order;
    for (int64_t s = 0; s < S && s < 32; ++s)
      order.push_back("t" + std::to_string(tensor.i32[static_cast<size_t>(g * S + s)]));
    notes.push_back(std::string(tensor.num_elements() > S ? "group g" + std::to_string(g) + ": " : "") +
                    "tokens claim their slots in the order " + join(order, ", ") + (S > 32 ? ", ..." : ""));
  }
}

// Rule D: the random draws a step reads, beside its result.
void draws(const Context& context, const Tensor& tensor, const std::vector<std::string>& reads,
           std::vector<std::string>& notes, bool listed) {
  for (const std::string& read : reads) {
    if (!is_random_draw(read)) continue;
    notes.push_back("uses the random draw `" + read +
                    "`, recorded in the trace so that any implementation can replay it");
    if (listed || tensor.num_elements() > context.options.max_notes * 2) continue;
    for (int64_t i = 0; i < tensor.num_elements(); ++i) {
      const std::vector<int64_t> index = tensor.unravel(i);
      notes.push_back("  " + element_label(tensor, index) + ": " + value_text(tensor, static_cast<size_t>(i)) +
                      reasons(context, tensor, index, reads, ""));
    }
    return;
  }
}

// ---- Tables ----------------------------------------------------------------------------------

void tensor_table(Doc& doc, const Context& context, const Tensor& tensor) {
  if (tensor.rank() == 0) {
    doc.para((doc.markdown() ? "Value: `" : "  value: ") + value_text(tensor, 0) + (doc.markdown() ? "`" : ""));
    return;
  }
  const size_t rank = static_cast<size_t>(tensor.rank());
  // Columns: the last dim, or the last two (E and C of a routing tensor) when the rows
  // would not fit otherwise and the columns do.
  size_t column_dims = 1;
  if (rank >= 3 && tensor.dims[rank - 2] != "S" &&
      tensor.num_elements() / tensor.shape[rank - 1] > context.options.max_rows &&
      tensor.shape[rank - 1] * tensor.shape[rank - 2] <= context.options.max_columns) {
    column_dims = 2;
  }
  int64_t columns = 1;
  for (size_t d = rank - column_dims; d < rank; ++d) columns *= tensor.shape[d];
  const int64_t rows = tensor.num_elements() / columns;
  const int64_t shown_columns = std::min(columns, context.options.max_columns);
  const bool dots = rank >= 3;  // sparse routing tensors read better with zeros as dots

  std::vector<std::string> header = {rank == column_dims ? "" : " "};
  for (int64_t c = 0; c < shown_columns; ++c) {
    std::string label;
    int64_t rest = c;
    std::vector<int64_t> parts(column_dims);
    for (size_t d = rank; d-- > rank - column_dims;) {
      parts[d - (rank - column_dims)] = rest % tensor.shape[d];
      rest /= tensor.shape[d];
    }
    for (size_t j = 0; j < column_dims; ++j)
      label += index_letter(tensor.dims[rank - column_dims + j]) + std::to_string(parts[j]);
    header.push_back(label);
  }
  if (shown_columns < columns) header.push_back("…");
  header[0] = "";

  std::vector<std::vector<std::string>> body;
  const int64_t shown_rows = std::min(rows, context.options.max_rows);
  for (int64_t row = 0; row < shown_rows; ++row) {
    std::vector<int64_t> index = tensor.unravel(row * columns);
    Tensor row_dims = tensor;
    row_dims.dims.resize(rank - column_dims);
    row_dims.shape.resize(rank - column_dims);
    index.resize(rank - column_dims);
    std::vector<std::string> cells = {rank == column_dims ? std::string("value") : element_label(row_dims, index)};
    if (cells[0] == "the value") cells[0] = "all";
    for (int64_t c = 0; c < shown_columns; ++c) {
      const size_t i = static_cast<size_t>(row * columns + c);
      cells.push_back(dots && value_at(tensor, i) == 0.0 ? "·" : value_text(tensor, i));
    }
    if (shown_columns < columns) cells.push_back("…");
    body.push_back(cells);
  }
  doc.table(header, body);
  if (shown_rows < rows) doc.para("... " + std::to_string(rows - shown_rows) + " more rows (the trace holds them all)");
}

// A config with one top-level key per line, each value on its line.
std::string compact_config(const nlohmann::json& config) {
  std::vector<std::string> order = {"variant", "scope", "train", "seed", "dims", "hparams", "inputs"};
  for (const auto& item : config.items()) {
    if (std::find(order.begin(), order.end(), item.key()) == order.end()) order.push_back(item.key());
  }
  std::vector<std::string> lines;
  for (const std::string& key : order) {
    if (!config.contains(key)) continue;
    if (key == "inputs" && config[key].is_object()) {
      std::vector<std::string> inputs;
      for (const auto& item : config[key].items()) {
        inputs.push_back("    " + nlohmann::json(item.key()).dump() + ": " + item.value().dump());
      }
      lines.push_back("  \"inputs\": {\n" + join(inputs, ",\n") + "\n  }");
      continue;
    }
    lines.push_back("  " + nlohmann::json(key).dump() + ": " + config[key].dump());
  }
  return "{\n" + join(lines, ",\n") + "\n}";
}

// ---- The sections ------------------------------------------------------------------------------

std::string dims_text(const Tensor& tensor) {
  return std::string(dtype_name(tensor.dtype)) + " " + tensor.shape_string();
}

void setup_section(Doc& doc, const Context& context, const VariantSpec* spec) {
  const nlohmann::json& config = context.trace.config;
  std::vector<std::pair<std::string, std::string>> fields;
  if (spec != nullptr) {
    fields.push_back({"variant", spec->id + ": " + spec->summary});
    fields.push_back({"source", spec->source});
    fields.push_back({"spec", spec->spec_page});
  } else {
    fields.push_back({"variant", context.variant + " (not registered in this moeref)"});
  }
  std::vector<std::string> dims;
  const nlohmann::json resolved_dims = config.value("dims", nlohmann::json::object());
  // In the notation's order (spec/notation.md), then any other.
  std::vector<std::string> order = {"B", "L", "G", "S", "E", "K", "C", "X", "Y", "M", "H", "N"};
  for (const auto& item : resolved_dims.items()) {
    if (std::find(order.begin(), order.end(), item.key()) == order.end()) order.push_back(item.key());
  }
  for (const std::string& letter : order) {
    if (resolved_dims.contains(letter))
      dims.push_back(letter + "=" + std::to_string(resolved_dims[letter].get<int64_t>()));
  }
  fields.push_back({"run", std::string(config.value("train", true) ? "training" : "evaluation") + ", scope " +
                               config.value("scope", std::string("layer")) + ", seed " +
                               std::to_string(config.value("seed", uint64_t{0})) + ", dims " + join(dims, " ")});
  std::vector<std::string> changed;
  const nlohmann::json hparams = config.value("hparams", nlohmann::json::object());
  if (spec != nullptr) {
    for (const HparamSpec& hparam : spec->hparams) {
      if (hparams.contains(hparam.name) && hparams[hparam.name] != hparam.default_value) {
        changed.push_back(hparam.name + " = " + hparams[hparam.name].dump() + " (default " +
                          hparam.default_value.dump() + ")");
      }
    }
  }
  fields.push_back({"hparams", changed.empty() ? "all at their defaults" : join(changed, "; ")});
  if (!context.trace.capacity.empty()) {
    std::string text;
    if (context.capacity) text = "C = " + std::to_string(*context.capacity) + " slots per expert and group";
    if (context.trace.capacity.contains("rule")) {
      text += (text.empty() ? "" : ", by ") + context.trace.capacity["rule"].get<std::string>();
    }
    fields.push_back({"capacity", text});
  }
  std::vector<std::string> inputs;
  for (const NamedTensor& input : context.trace.inputs) {
    inputs.push_back(input.name + " " + input.tensor.shape_string() +
                     (is_random_draw("inputs." + input.name) ? " (random draw)" : ""));
  }
  fields.push_back({"inputs", join(inputs, ", ")});
  doc.fields(fields);
  doc.para(
      "Tokens are t0, t1, ... in group order (g0, g1, ... when there are several groups), experts e0, e1, ..., "
      "slots c0, c1, ...; ranks k0, k1, ... are a token's first, second, ... choice. Numbers are rounded to 6 "
      "significant digits; the trace holds them exactly. Each step lists what it reads: earlier steps by "
      "number, and inputs as inputs.NAME.");
}

void step_section(Doc& doc, const Context& context, size_t number_of, const NamedTensor& step) {
  const size_t total = context.trace.steps.size();
  const std::string heading = "Step " + std::to_string(number_of) + " of " + std::to_string(total) + ": " + step.name;
  if (doc.markdown()) {
    doc.para("### " + std::to_string(number_of) + ". `" + step.name + "`");
  } else {
    doc.para(heading);
  }
  auto found = context.trace.reads.find(step.name);
  const std::vector<std::string> reads =
      found != context.trace.reads.end() ? found->second : std::vector<std::string>{};
  std::vector<std::string> read_names;
  for (const std::string& read : reads) {
    auto at = context.step_number.find(read);
    read_names.push_back(read + (at != context.step_number.end() ? " (step " + std::to_string(at->second) + ")" : ""));
  }
  std::string formula = step_formula(context.variant, step.name);
  if (formula.empty()) formula = "(no formula in moeref's table; see the variant's spec page)";
  doc.fields({{"tensor", dims_text(step.tensor)},
              {"formula", doc.markdown() ? "`" + formula + "`" : formula},
              {"reads", read_names.empty() ? "(not recorded)" : join(read_names, ", ")}});

  std::vector<std::string> notes;
  const bool listed = changes_since(context, step.name, step.tensor, reads, notes);
  decisions(context, step.name, step.tensor, reads, notes);
  token_order(step.tensor, step.name, notes);
  draws(context, step.tensor, reads, notes, listed);
  if (!notes.empty()) {
    if (doc.markdown()) {
      doc.para("What happened:");
      // Nested lines ("  ...") become nested bullets.
      std::vector<std::string> items;
      for (const std::string& note : notes) items.push_back(note);
      std::string text;
      for (const std::string& note : items) {
        text += (note.rfind("  ", 0) == 0 ? "  * " + note.substr(2) : "* " + note) + "\n";
      }
      doc.para(text.substr(0, text.size() - 1));
    } else {
      doc.bullets(notes);
    }
  }
  tensor_table(doc, context, step.tensor);
}

void routing_section(Doc& doc, const Context& context) {
  const std::optional<RoutingView> found = routing_view(context.trace);
  if (!found) return;
  const RoutingView& view = *found;
  doc.section("Who sits where");
  const std::string x = view.expert_dim == "X" ? "x" : "e";
  doc.para("From " + view.seats_from + (view.requests_from.empty() ? "" : "; the choices from " + view.requests_from) +
           (view.policy_from.empty() ? "" : "; the policy's draws from " + view.policy_from) +
           (view.expert_dim == "X" ? "; the outer level of mtf_moe2d (x = outer expert group)" : "") + ".");
  const bool small = view.G * view.S <= 64;
  if (small) {
    std::vector<std::string> lines;
    for (const TokenRouting& token : view.tokens) {
      const std::string who = token_label(view, token.group, token.token);
      if (token.padding) {
        lines.push_back(who + ": padding" + (token.seats.empty() ? "" : " (yet it holds a slot)"));
        continue;
      }
      std::vector<std::string> parts;
      std::vector<int32_t> shown;
      for (size_t k = 0; k < token.requested.size(); ++k) {
        const int32_t expert = token.requested[k];
        if (expert < 0 || expert >= view.E) continue;
        auto seat =
            std::find_if(token.seats.begin(), token.seats.end(), [&](const Seat& s) { return s.expert == expert; });
        const std::string rank = "choice " + std::to_string(k + 1) + " " + x + std::to_string(expert);
        if (seat != token.seats.end() && std::find(shown.begin(), shown.end(), expert) == shown.end()) {
          parts.push_back(rank + " → slot c" + std::to_string(seat->slot) + ", weight " + number(seat->weight, false));
          shown.push_back(expert);
        } else {
          parts.push_back(rank + (token.dropped_by_policy(k) ? " → dropped by the second-expert policy"
                                                             : " → dropped: its expert's slots went to other tokens"));
        }
      }
      for (const Seat& seat : token.seats) {
        if (std::find(shown.begin(), shown.end(), seat.expert) != shown.end()) continue;
        parts.push_back(x + std::to_string(seat.expert) + " slot c" + std::to_string(seat.slot) + ", weight " +
                        number(seat.weight, false));
      }
      if (token.seats.empty()) parts.push_back("no expert: the layer's output for it is 0 (the residual carries it)");
      lines.push_back(who + ": " + join(parts, "; "));
    }
    doc.bullets(lines);
  }
  std::vector<std::string> experts;
  for (int64_t g = 0; g < view.G && (small || g < 4); ++g) {
    for (int64_t e = 0; e < view.E; ++e) {
      std::vector<std::string> seats;
      std::vector<std::string> turned_away;
      for (int64_t s = 0; s < view.S; ++s) {
        const TokenRouting& token = view.at(g, s);
        for (const Seat& seat : token.seats) {
          if (seat.expert == e) seats.push_back("c" + std::to_string(seat.slot) + " " + token_label(view, g, s));
        }
        // Turned away: asked for this expert and found it full (a policy drop never asked).
        for (size_t k = 0; k < token.requested.size(); ++k) {
          if (token.requested[k] != e || token.padding || token.seated_at(static_cast<int32_t>(e))) continue;
          if (!token.dropped_by_policy(k)) turned_away.push_back(token_label(view, g, s));
          break;
        }
      }
      std::sort(seats.begin(), seats.end());
      const int64_t fill = view.fill_of(g, e);
      std::string line = (view.G == 1 ? "" : "g" + std::to_string(g) + ".") + x + std::to_string(e) + ": " +
                         std::to_string(fill) + " of " + std::to_string(view.C) + " slots" +
                         (fill >= view.C ? " (full)" : "");
      if (small && !seats.empty()) line += ": " + join(seats, ", ");
      if (!turned_away.empty()) line += "; turned away: " + join(turned_away, ", ");
      experts.push_back(line);
    }
  }
  doc.bullets(experts);
  const int64_t real = view.G * view.S - view.padding_tokens;
  std::string totals = std::to_string(real) + " real tokens: " + std::to_string(view.routed_tokens) + " routed, " +
                       std::to_string(view.dropped_tokens) + " dropped from every expert";
  if (view.padding_tokens > 0) totals += "; " + std::to_string(view.padding_tokens) + " padding";
  if (view.requested_choices > 0) {
    totals += ". Of their " + std::to_string(view.requested_choices) + " choices, " +
              std::to_string(view.requested_choices - view.dropped_choices) + " got a slot, " +
              std::to_string(view.dropped_choices - view.policy_dropped_choices) +
              " found their expert's slots taken by other tokens" +
              (view.policy_from.empty() ? ""
                                        : " and " + std::to_string(view.policy_dropped_choices) +
                                              " were dropped by the second-expert policy (" + view.policy_from + ")");
  }
  doc.para(totals + ".");
}

}  // namespace

std::string explain_trace(const Trace& trace, const ExplainOptions& options) {
  Context context{trace, options, trace.config.value("variant", std::string("?")), std::nullopt, {}};
  if (trace.capacity.contains("expert_capacity") && trace.capacity["expert_capacity"].is_number_integer()) {
    context.capacity = trace.capacity["expert_capacity"].get<int64_t>();
  }
  for (size_t i = 0; i < trace.steps.size(); ++i) context.step_number.emplace(trace.steps[i].name, i + 1);
  const VariantSpec* spec = find_variant(context.variant);

  Doc doc(options.format);
  if (options.format == ExplainFormat::kMarkdown) {
    doc.para(
        "<!-- Generated by moeref explain; tools/regen_walkthroughs.sh rewrites spec/walkthroughs/ and "
        "tests/test_walkthroughs.cpp checks them: edit src/teach/ instead. -->");
  }
  doc.title((options.format == ExplainFormat::kMarkdown ? "Walkthrough: " : "moeref explain: ") + context.variant +
            ", step by step");
  if (!options.reproduce.empty()) {
    doc.para(options.format == ExplainFormat::kMarkdown ? "Reproduce it with `" + options.reproduce + "`."
                                                        : "Reproduce: " + options.reproduce);
  }
  doc.section("The example");
  if (!options.introduction.empty()) doc.para(options.introduction);
  setup_section(doc, context, spec);
  if (!options.config.is_null()) {
    doc.para("The config (inputs it does not give are generated from the seed):");
    doc.code(compact_config(options.config));
  }
  doc.section("The steps");
  for (size_t i = 0; i < trace.steps.size(); ++i) step_section(doc, context, i + 1, trace.steps[i]);
  routing_section(doc, context);
  if (!trace.losses.empty()) {
    doc.section("Losses");
    std::vector<std::string> losses;
    for (const auto& [name, value] : trace.losses) losses.push_back(name + " = " + number(value, false));
    doc.bullets(losses);
  }
  std::string text = doc.str();
  while (text.size() >= 2 && text.compare(text.size() - 2, 2, "\n\n") == 0) text.pop_back();
  return text;
}

std::string explain_variant_example(const std::string& variant, ExplainFormat format) {
  ExplainOptions options;
  options.format = format;
  options.config = tiny_example_config(variant);
  options.reproduce = "build/moeref explain --variant " + variant;
  for (const TinyExample& known : tiny_examples()) {
    if (known.variant == variant) options.introduction = known.why;
  }
  const Trace trace = run_config(config_from_json(options.config, "the tiny example of " + variant));
  return explain_trace(trace, options);
}

}  // namespace moeref
