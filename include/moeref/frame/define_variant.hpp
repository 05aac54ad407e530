// Turning a variant's typed parts into its registry entry.
//
// A variant file ends with
//
//   VariantSpec mtf_top2_variant() {
//     return define_variant<MtfTop2Hparams>(
//         {"mtf_top2", "one-line summary", "repository file: functions", "spec/variants/mtf_top2.md"},
//         declare_hparams, mtf_top2, mtf_top2_near_tie);
//   }
//
// and everything else (parsing the typed hparams once per run, the frame around
// the body, the near-tie queries) is done here.
#pragma once

#include <optional>
#include <string>

#include "moeref/frame/frame.hpp"
#include "moeref/frame/hparam_table.hpp"
#include "moeref/near_tie.hpp"
#include "moeref/variant.hpp"

namespace moeref {

struct VariantDescription {
  std::string id;
  std::string summary;
  std::string source;
  std::string spec_page;
};

template <typename P>
using HparamDeclaration = void (*)(HparamTable<P>& table);
template <typename P>
using VariantBody = void (*)(Frame& frame, const P& hparams);
template <typename P>
using TypedNearTie = std::optional<NearTie> (*)(const NearTieQuery& query, const P& hparams);

template <typename P>
VariantSpec define_variant(const VariantDescription& description, HparamDeclaration<P> declare, VariantBody<P> body,
                           TypedNearTie<P> near_tie = nullptr) {
  HparamTable<P> table;
  declare(table);
  VariantSpec spec;
  spec.id = description.id;
  spec.summary = description.summary;
  spec.source = description.source;
  spec.spec_page = description.spec_page;
  spec.hparams = table.specs();
  spec.run = [table, body](const Config& config, Trace& trace, RunObserver* observer) {
    const P hparams = table.parse(config.hparams);
    Frame frame(config, trace, observer);
    body(frame, hparams);
    frame.finish();
  };
  if (near_tie != nullptr) {
    spec.near_tie = [table, near_tie](const NearTieQuery& query) -> std::optional<NearTie> {
      // The golden's hparams are validated like a config's: a hand-edited golden
      // is bad input, not a crash.
      const nlohmann::json& config = query.reference.config;
      const nlohmann::json given =
          config.is_object() && config.contains("hparams") ? config["hparams"] : nlohmann::json();
      return near_tie(query, table.parse(resolve_hparams(table.specs(), given)));
    };
  }
  return spec;
}

}  // namespace moeref
