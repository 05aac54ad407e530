#include <cmath>
#include <cstdio>
#include <string>

#include "moeref/check.hpp"

namespace moeref {

const char* status_name(TensorStatus status) {
  switch (status) {
    case TensorStatus::kMatch:
      return "match";
    case TensorStatus::kMismatch:
      return "mismatch";
    case TensorStatus::kStructure:
      return "structure";
    case TensorStatus::kMissing:
      return "missing";
    case TensorStatus::kExtra:
      return "extra";
    case TensorStatus::kNotChecked:
      return "not_checked";
  }
  return "unknown";
}

namespace {

nlohmann::json diff_json(const ElementDiff& diff) {
  // JSON has no NaN: an integer difference has a null relative error.
  // JSON has no NaN or infinity: an integer difference has a null relative error, ulps and
  // bound, and an infinite error (a NaN where a number was expected) is written null too.
  auto number = [](double value) { return std::isfinite(value) ? nlohmann::json(value) : nlohmann::json(nullptr); };
  return {{"flat_index", diff.flat_index},       {"index", diff.index},
          {"expected", diff.expected},           {"actual", diff.actual},
          {"abs_error", number(diff.abs_error)}, {"rel_error", number(diff.rel_error)},
          {"ulps", number(diff.ulps)},           {"bound", number(diff.bound)},
          {"neighbours", diff.neighbours}};
}

std::string error_text(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.3g", value);
  return buffer;
}

// The bound in ulps of the expected value, when both are finite: " (3 ulp)".
std::string bound_ulps_text(const ElementDiff& diff) {
  if (!std::isfinite(diff.ulps) || !std::isfinite(diff.bound) || !(diff.abs_error > 0.0)) return "";
  return " = " + error_text(diff.bound * diff.ulps / diff.abs_error) + " ulp";
}

std::string diff_text(const char* label, const ElementDiff& diff) {
  // An integer decision has no relative error (rel_error is NaN): it differs by so much.
  // A float difference shows the bound it exceeded, in ulps of the expected value too.
  const std::string error =
      std::isnan(diff.rel_error)
          ? "differs by " + error_text(diff.abs_error)
          : "abs " + error_text(diff.abs_error) + ", rel " + error_text(diff.rel_error) +
                (std::isnan(diff.ulps) ? "" : ", " + error_text(diff.ulps) + " ulp") +
                (std::isnan(diff.bound) ? "" : "; bound " + error_text(diff.bound) + bound_ulps_text(diff));
  return std::string("    ") + label + " at " + diff.index + ": expected " + diff.expected + ", actual " + diff.actual +
         " (" + error + ")\n" + "      neighbours: " + diff.neighbours + "\n";
}

std::string percent_text(int64_t part, int64_t total) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.2f%%",
                total > 0 ? 100.0 * static_cast<double>(part) / static_cast<double>(total) : 0.0);
  return buffer;
}

}  // namespace

nlohmann::json CheckReport::to_json() const {
  nlohmann::json tensors = nlohmann::json::array();
  int64_t failing = 0, not_checked = 0, checked = 0;
  for (const TensorResult& result : results) {
    nlohmann::json item = {
        {"section", result.section},
        {"name", result.name},
        {"status", status_name(result.status)},
        {"dtype", result.dtype},
        {"total", result.total},
        {"mismatches", result.mismatches},
        {"message", result.message},
        {"tolerance", result.tolerance},
        {"bound_used", std::isfinite(result.bound_used) ? nlohmann::json(result.bound_used) : nlohmann::json(nullptr)},
        {"downstream", result.downstream},
        {"independent", result.independent}};
    if (result.first) item["first"] = diff_json(*result.first);
    if (result.worst) item["worst"] = diff_json(*result.worst);
    tensors.push_back(item);
    if (result.status == TensorStatus::kNotChecked) {
      ++not_checked;
    } else {
      ++checked;
      if (result.status != TensorStatus::kMatch) ++failing;
    }
  }
  nlohmann::json ties = nlohmann::json::array();
  for (const NearTieFinding& tie : near_ties) {
    ties.push_back({{"step", tie.step},
                    {"index", tie.index},
                    {"expected", tie.expected},
                    {"actual", tie.actual},
                    {"margin", tie.margin},
                    {"tolerance", tie.tolerance},
                    {"within_tolerance", tie.within_tolerance},
                    {"detail", tie.detail}});
  }
  return {{"format", "moeref-check-report"},
          {"format_version", 1},
          {"pass", pass},
          {"consistent_alternative", consistent_alternative},
          {"near_ties", ties},
          {"first_divergent_step",
           first_divergent_step.empty() ? nlohmann::json(nullptr) : nlohmann::json(first_divergent_step)},
          {"nothing_checked", nothing_checked},
          {"checked", checked},
          {"failing", failing},
          {"not_checked", not_checked},
          {"tensors", tensors}};
}

std::string CheckReport::to_text() const {
  int64_t failing = 0, not_checked = 0, checked = 0;
  for (const TensorResult& result : results) {
    if (result.status == TensorStatus::kNotChecked) {
      ++not_checked;
    } else {
      ++checked;
      if (result.status != TensorStatus::kMatch) ++failing;
    }
  }
  std::string out = std::string(pass ? "PASS" : "FAIL") + ": " + std::to_string(checked) + " tensors checked, " +
                    std::to_string(failing) + " differ, " + std::to_string(not_checked) + " not checked\n";
  if (nothing_checked) {
    out +=
        "NOTHING CHECKED: the candidate has none of the golden's inputs, steps or losses, and a check that "
        "compares nothing never passes. The golden has:";
    for (const TensorResult& result : results) {
      if (result.status == TensorStatus::kNotChecked) out += " " + result.section + "." + result.name;
    }
    out += "\n";
  }
  if (!near_ties.empty()) {
    out += consistent_alternative
               ? "consistent alternative at a near tie: the candidate decided " + std::to_string(near_ties.size()) +
                     " element(s) differently within float tolerance, and matches the reference re-run with "
                     "those decisions forced\n"
               : "decisions the candidate made differently (checked against the reference re-run with the "
                 "admissible ones forced):\n";
    for (const NearTieFinding& tie : near_ties) {
      out += "  " + tie.step + tie.index + ": reference " + std::to_string(tie.expected) + ", candidate " +
             std::to_string(tie.actual) + "; margin " + error_text(tie.margin) + " vs tolerance " +
             error_text(tie.tolerance) +
             (tie.within_tolerance ? " (near tie)" : " (NOT a near tie: a real difference)") + "; " + tie.detail + "\n";
    }
  }
  // Structure first, then exact (int32) tensors, then float32 tensors.
  const char* headings[] = {"structure problems", "integer tensors (exact)", "float tensors (abs and rel tolerance)"};
  for (int pass_number = 0; pass_number < 3; ++pass_number) {
    std::string block;
    for (const TensorResult& result : results) {
      const bool structural = result.status == TensorStatus::kStructure || result.status == TensorStatus::kExtra ||
                              result.status == TensorStatus::kMissing;
      const bool mismatch = result.status == TensorStatus::kMismatch;
      const bool wanted = pass_number == 0 ? structural : mismatch && ((pass_number == 1) == (result.dtype == "int32"));
      if (!wanted) continue;
      block += "  " + result.section + "." + result.name + ": " + result.message;
      if (mismatch) block += " (" + percent_text(result.mismatches, result.total) + ")";
      if (result.downstream) block += " [downstream of " + first_divergent_step + "]";
      if (result.independent) block += " [independent of " + first_divergent_step + ": does not read it]";
      block += "\n";
      if (mismatch && !result.tolerance.empty()) block += "    tolerance: " + result.tolerance + "\n";
      if (result.first) block += diff_text("first", *result.first);
      if (result.worst && result.worst->flat_index != result.first->flat_index)
        block += diff_text("worst", *result.worst);
    }
    if (!block.empty()) out += headings[pass_number] + std::string(":\n") + block;
  }
  if (!first_divergent_step.empty()) out += "first divergent step: " + first_divergent_step + "\n";
  if (not_checked > 0 && !nothing_checked) {
    out += "not checked (absent from the candidate):";
    for (const TensorResult& result : results) {
      if (result.status == TensorStatus::kNotChecked) out += " " + result.section + "." + result.name;
    }
    out += "\n";
  }
  return out;
}

}  // namespace moeref
