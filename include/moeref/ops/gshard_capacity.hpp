// Expert-capacity rules of the lingvo and praxis GShard gating functions, one
// function per source rule. C0 is the `expert_capacity_dim` argument and cf the
// `capacity_factor` argument (std::nullopt for Python None). Arithmetic is Python
// double: (S * cf) / E, then int() truncating toward zero. Callers bound cf so
// that the quotient fits an int64.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace moeref::ops {

struct GshardCapacity {
  int64_t expert_capacity = 0;        // C
  bool rule_applied = false;          // the capacity_factor branch ran
  int64_t auto_expert_capacity = -1;  // int(S * cf / E) after any floor; -1 when not computed
  bool raised = false;                // C0 < auto: C = auto rounded up to a multiple of 4
};

// lingvo (tensorflow/lingvo, lingvo/core/gshard_layers.py, TokenShufflingOnlogitsV2;
// Top2GatingOnLogits has the same rule, so this delegates to ops::lingvo_expert_capacity): `if capacity_factor:`
// (truthy, so 0.0 skips it): auto = int((S * cf) / E); if auto == 0: auto = 4; if C0 < auto: C = auto rounded up to a
// multiple of 4 (a `while C % 4: C += 1` loop), else C = C0. Without a capacity factor C = C0.
GshardCapacity lingvo_token_shuffling_capacity(int64_t group_size, int64_t num_experts, int64_t expert_capacity_dim,
                                               std::optional<double> capacity_factor);

// praxis (google/praxis, praxis/gshard_utils.py, expert_choice_gating_on_logits_v2):
// `if capacity_factor is not None:` (so 0.0 runs it): auto = int(S * cf / E),
// with NO floor (auto may be 0); if C0 < auto: C = ((auto + 3) // 4) * 4, else
// C = C0.
GshardCapacity praxis_expert_choice_capacity(int64_t group_size, int64_t num_experts, int64_t expert_capacity_dim,
                                             std::optional<double> capacity_factor);

// The trace's capacity record of a rule above: expert_capacity, `rule` (the
// text of the branch that ran), expert_capacity_dim, capacity_factor as the
// config spells it (1 and 1.0 stay apart), auto_expert_capacity (null unless
// the capacity_factor branch ran), group_size and num_groups.
nlohmann::json gshard_capacity_record(const GshardCapacity& capacity, const std::string& rule,
                                      int64_t expert_capacity_dim, const nlohmann::json& capacity_factor,
                                      int64_t group_size, int64_t num_groups);

}  // namespace moeref::ops
