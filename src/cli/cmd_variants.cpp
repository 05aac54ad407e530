// moeref variants [ID]: list the registered variants, or one variant's hyperparameters.

#include <iostream>

#include "commands.hpp"
#include "moeref/error.hpp"
#include "moeref/registry.hpp"

namespace moeref::cli {

void add_variants_command(CLI::App& app, int& exit_code) {
  auto id = std::make_shared<std::string>();
  CLI::App* variants = app.add_subcommand("variants", "List the variants, or describe one variant's hyperparameters");
  variants->add_option("id", *id, "A variant id, e.g. mtf_top2");
  variants->callback([id, &exit_code]() {
    exit_code = 0;
    if (id->empty()) {
      for (const VariantSpec& spec : all_variants()) std::cout << spec.id << "  " << spec.summary << "\n";
      return;
    }
    const VariantSpec* spec = find_variant(*id);
    if (spec == nullptr) {
      std::string ids;
      for (const VariantSpec& known : all_variants()) ids += (ids.empty() ? "" : ", ") + known.id;
      fail_input("variant", "\"" + *id + "\"", ids);
    }
    std::cout << spec->id << ": " << spec->summary << "\n"
              << "source: " << spec->source << "\n"
              << "spec:   " << spec->spec_page << "\n\n"
              << "hyperparameters (name = default; allowed; meaning):\n";
    for (const HparamSpec& hparam : spec->hparams) {
      std::cout << "  " << hparam.name << " = " << hparam.default_value.dump() << "\n"
                << "      allowed: " << describe_allowed(hparam) << "\n"
                << "      " << hparam.meaning << "\n";
      if (hparam.mode != HparamMode::kAlways) {
        std::cout << "      read only when " << (hparam.mode == HparamMode::kTrainOnly ? "training" : "evaluating")
                  << "\n";
      }
      if (!hparam.cited_source.empty()) std::cout << "      source: " << hparam.cited_source << "\n";
      if (!hparam.aliases.empty()) {
        std::string names;
        for (const std::string& alias : hparam.aliases) names += (names.empty() ? "" : ", ") + alias;
        std::cout << "      also called: " << names << "\n";
      }
      if (!hparam.renamed_from.empty()) {
        std::string names;
        for (const std::string& old_name : hparam.renamed_from) names += (names.empty() ? "" : ", ") + old_name;
        std::cout << "      old name (accepted with a warning): " << names << ", renamed in " << hparam.renamed_when
                  << "\n";
      }
    }
  });
}

}  // namespace moeref::cli
