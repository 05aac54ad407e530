// The formula of a step in one line, for `moeref explain` (src/teach/step_notes.cpp
// holds the table: the variants record what each step reads, not what it computes).
#pragma once

#include <string>

namespace moeref {

// The formula of `step` in `variant`, in the source's names; "" when the table has
// none (explain then points to the variant's spec page).
std::string step_formula(const std::string& variant, const std::string& step);

}  // namespace moeref
