// moeref variants [ID]: list the registered variants, or one variant's hyperparameters;
// moeref variants --glossary: spec/glossary.md; moeref variants --search WORD: find a
// hyperparameter by any implementation's name for it (exit 1 when nothing matches).

#include <iostream>

#include "commands.hpp"
#include "moeref/error.hpp"
#include "moeref/registry.hpp"
#include "moeref/teach/glossary.hpp"

namespace moeref::cli {

void add_variants_command(CLI::App& app, int& exit_code) {
  auto id = std::make_shared<std::string>();
  CLI::App* variants = app.add_subcommand("variants", "List the variants, or describe one variant's hyperparameters");
  auto glossary = std::make_shared<bool>(false);
  auto search = std::make_shared<std::string>();
  variants->add_option("id", *id, "A variant id, e.g. mtf_top2");
  variants->add_flag("--glossary", *glossary,
                     "Print the glossary of every hyperparameter (spec/glossary.md; tools/regen_glossary.sh)");
  variants->add_option("--search", *search,
                       "Find hyperparameters by any implementation's name, e.g. rand_1_jitter or "
                       "second_expert_policy (exit 1 when none matches)");
  variants->callback([id, glossary, search, &exit_code]() {
    exit_code = 0;
    const int modes = (id->empty() ? 0 : 1) + (*glossary ? 1 : 0) + (search->empty() ? 0 : 1);
    if (modes > 1) fail_input("variants", "ID, --glossary and --search together", "one of them at a time");
    if (*glossary) {
      std::cout << glossary_markdown() << "\n";
      return;
    }
    if (!search->empty()) {
      const std::string found = glossary_search(*search);
      if (found.empty()) {
        std::cerr << "moeref: no hyperparameter of any implementation is called or described as \"" << *search
                  << "\" (the names: spec/glossary.md#find-a-name)\n";
        exit_code = 1;
        return;
      }
      std::cout << found;
      return;
    }
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
      if (!hparam.topic.empty()) std::cout << "      glossary: spec/glossary.md#" << hparam.topic << "\n";
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
