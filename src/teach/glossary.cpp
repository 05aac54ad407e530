// The glossary of hyperparameters (spec/glossary.md), generated: the registered
// variants' declarations, grouped by their topic (.about), beside the topic
// table's names for other implementations.

#include "moeref/teach/glossary.hpp"

#include <algorithm>
#include <cctype>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "moeref/hparams.hpp"
#include "moeref/registry.hpp"
#include "moeref/teach/hparam_topics.hpp"

namespace moeref {

namespace {

// spec/glossary-intro.md, embedded by CMake (cmake/glossary_intro.inc.in).
const char* const kIntro =
#include "moeref/teach/glossary_intro.inc"
    ;

// One declaration, shared by every variant that declares it identically (the mtf
// layer's hyperparameters are declared once for six variants).
struct Row {
  const HparamSpec* spec = nullptr;
  std::vector<std::string> variants;
};

bool same_declaration(const HparamSpec& a, const HparamSpec& b) {
  return a.name == b.name && a.kind == b.kind && a.default_value == b.default_value && a.nullable == b.nullable &&
         a.choices == b.choices && a.min_value == b.min_value && a.max_value == b.max_value && a.meaning == b.meaning &&
         a.mode == b.mode && a.cited_source == b.cited_source && a.aliases == b.aliases &&
         a.renamed_from == b.renamed_from && a.renamed_when == b.renamed_when && a.topic == b.topic;
}

// The declarations about `topic`, in registry order, identical ones merged.
std::vector<Row> rows_about(const std::string& topic) {
  std::vector<Row> rows;
  for (const VariantSpec& variant : all_variants()) {
    for (const HparamSpec& spec : variant.hparams) {
      if (spec.topic != topic) continue;
      auto same =
          std::find_if(rows.begin(), rows.end(), [&](const Row& row) { return same_declaration(*row.spec, spec); });
      if (same != rows.end()) {
        same->variants.push_back(variant.id);
      } else {
        rows.push_back({&spec, {variant.id}});
      }
    }
  }
  return rows;
}

std::string join(const std::vector<std::string>& items, const std::string& separator) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i > 0 ? separator : "") + items[i];
  return out;
}

std::string code(const std::string& text) { return "`" + text + "`"; }

std::vector<std::string> coded(const std::vector<std::string>& items) {
  std::vector<std::string> out;
  for (const std::string& item : items) out.push_back(code(item));
  return out;
}

// A table cell: no line breaks, and a '|' that does not end the cell.
std::string cell(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '|') {
      out += "\\|";
    } else if (c == '\n') {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

std::string mode_text(HparamMode mode) {
  switch (mode) {
    case HparamMode::kTrainOnly:
      return "training only";
    case HparamMode::kEvalOnly:
      return "evaluation only";
    case HparamMode::kAlways:
      break;
  }
  return "both";
}

// "tensorflow/mesh b1b5364" from "tensorflow/mesh b1b5364 (2021-01-19, ...)".
std::string short_when(const std::string& when) { return when.substr(0, when.find(" (")); }

// The source's other spellings of a declaration, for its row.
std::string other_spellings(const HparamSpec& spec) {
  std::vector<std::string> parts;
  if (!spec.aliases.empty()) parts.push_back(join(coded(spec.aliases), ", "));
  if (!spec.renamed_from.empty()) {
    parts.push_back("old name " + join(coded(spec.renamed_from), ", ") + " (before " + short_when(spec.renamed_when) +
                    "; accepted with a warning)");
  }
  return parts.empty() ? "" : join(parts, "; ");
}

// The names one implementation gives a topic: its moeref declarations' names and
// spellings, then the topic table's, without repeats; and the variants declaring them.
struct ImplementationNames {
  std::vector<std::string> names;
  std::vector<std::string> variants;
  std::string note;
};

void add_unique(std::vector<std::string>& items, const std::string& item) {
  if (std::find(items.begin(), items.end(), item) == items.end()) items.push_back(item);
}

std::map<std::string, ImplementationNames> names_by_implementation(const HparamTopic& topic,
                                                                   const std::vector<Row>& rows) {
  std::map<std::string, ImplementationNames> by;
  for (const Row& row : rows) {
    for (const std::string& variant : row.variants) {
      ImplementationNames& entry = by[implementation_of_variant(variant)];
      add_unique(entry.names, row.spec->name);
      for (const std::string& alias : row.spec->aliases) add_unique(entry.names, alias);
      for (const std::string& old_name : row.spec->renamed_from) add_unique(entry.names, old_name);
      add_unique(entry.variants, variant);
    }
  }
  for (const TopicNames& names : topic.elsewhere) {
    ImplementationNames& entry = by[names.implementation];
    for (const std::string& name : names.names) add_unique(entry.names, name);
    entry.note = names.note;
  }
  return by;
}

// The implementations in glossary order, then any other origin a variant has.
std::vector<std::string> implementation_order(const std::map<std::string, ImplementationNames>& by) {
  std::vector<std::string> order;
  for (const std::string& implementation : glossary_implementations()) {
    if (by.count(implementation) > 0) order.push_back(implementation);
  }
  for (const auto& [implementation, names] : by) add_unique(order, implementation);
  return order;
}

std::string lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// Lower case, '-' read as '_', leading '_' dropped: fairseq's flag
// --moe-gate-loss-wt finds moe_gate_loss_wt and the other way round.
std::string searchable(const std::string& text) {
  std::string out = lower(text);
  std::replace(out.begin(), out.end(), '-', '_');
  const size_t start = out.find_first_not_of('_');
  return start == std::string::npos ? "" : out.substr(start);
}

void write_topic(std::ostringstream& out, const HparamTopic& topic) {
  const std::vector<Row> rows = rows_about(topic.key);
  out << "<a id=\"" << topic.key << "\"></a>\n\n### " << topic.title << "\n\n" << topic.words << "\n\n";
  if (!topic.in_moeref.empty()) out << "In moeref: " << topic.in_moeref << ".\n\n";
  if (rows.empty()) {
    out << "No moeref variant takes it as a hyperparameter.\n\n";
  } else {
    out << "| hyperparameter | variants | default | allowed | train / eval | meaning | the source's other names | "
           "read in |\n"
        << "| --- | --- | --- | --- | --- | --- | --- | --- |\n";
    for (const Row& row : rows) {
      const HparamSpec& spec = *row.spec;
      out << "| " << code(spec.name) << " | " << join(coded(row.variants), ", ") << " | "
          << cell(code(spec.default_value.dump())) << " | " << cell(describe_allowed(spec)) << " | "
          << mode_text(spec.mode) << " | " << cell(spec.meaning) << " | " << cell(other_spellings(spec)) << " | "
          << cell(spec.cited_source) << " |\n";
    }
    out << "\n";
  }
  const std::map<std::string, ImplementationNames> by = names_by_implementation(topic, rows);
  if (by.empty()) return;
  out << "The same idea in each implementation:\n\n"
      << "| implementation | names | note |\n"
      << "| --- | --- | --- |\n";
  for (const std::string& implementation : implementation_order(by)) {
    const ImplementationNames& entry = by.at(implementation);
    std::vector<std::string> notes;
    if (!entry.variants.empty()) notes.push_back("moeref: " + join(coded(entry.variants), ", "));
    if (!entry.note.empty()) notes.push_back(entry.note);
    out << "| " << implementation << " | " << (entry.names.empty() ? "—" : join(coded(entry.names), ", ")) << " | "
        << cell(join(notes, "; ")) << " |\n";
  }
  out << "\n";
}

}  // namespace

std::vector<GlossaryName> glossary_names() {
  // Keyed by (name, implementation, topic): one entry, its descriptions joined.
  std::map<std::tuple<std::string, std::string, std::string>, std::vector<std::string>> entries;
  std::map<std::tuple<std::string, std::string, std::string>, std::vector<std::string>> variants_of;
  for (const VariantSpec& variant : all_variants()) {
    const std::string implementation = implementation_of_variant(variant.id);
    for (const HparamSpec& spec : variant.hparams) {
      add_unique(variants_of[{spec.name, implementation, spec.topic}], variant.id);
      for (const std::string& alias : spec.aliases) {
        add_unique(entries[{alias, implementation, spec.topic}], "another spelling of " + spec.name);
      }
      for (const std::string& old_name : spec.renamed_from) {
        add_unique(entries[{old_name, implementation, spec.topic}],
                   "old name of " + spec.name + " (before " + short_when(spec.renamed_when) + ")");
      }
    }
  }
  for (const auto& [key, variants] : variants_of) {
    add_unique(entries[key], "moeref hyperparameter of " + join(variants, ", "));
  }
  for (const HparamTopic& topic : hparam_topics()) {
    for (const TopicNames& names : topic.elsewhere) {
      for (const std::string& name : names.names) {
        add_unique(entries[{name, names.implementation, topic.key}],
                   names.note.empty() ? "the setting's name there" : names.note);
      }
    }
  }
  std::vector<GlossaryName> out;
  for (const auto& [key, whats] : entries) {
    out.push_back({std::get<0>(key), std::get<1>(key), std::get<2>(key), join(whats, "; ")});
  }
  const std::vector<std::string>& order = glossary_implementations();
  auto rank = [&](const std::string& implementation) {
    return std::find(order.begin(), order.end(), implementation) - order.begin();
  };
  std::stable_sort(out.begin(), out.end(), [&](const GlossaryName& a, const GlossaryName& b) {
    const std::string la = searchable(a.name), lb = searchable(b.name);
    if (la != lb) return la < lb;
    if (a.name != b.name) return a.name < b.name;
    return rank(a.implementation) < rank(b.implementation);
  });
  return out;
}

std::string glossary_markdown() {
  std::ostringstream out;
  out << "<!-- Generated by `moeref variants --glossary` from the hyperparameter declarations and\n"
         "     src/teach/hparam_topics.cpp. Do not edit: change those (or spec/glossary-intro.md) and run\n"
         "     tools/regen_glossary.sh. tests/test_glossary.cpp fails while this file is stale. -->\n"
      << "# Glossary of MoE hyperparameters\n\n"
      << kIntro << "\n";

  out << "## Contents\n\n* [Find a name](#find-a-name)\n";
  for (const std::string& theme : glossary_themes()) {
    std::vector<std::string> links;
    for (const HparamTopic& topic : hparam_topics()) {
      if (topic.theme == theme) links.push_back("[" + topic.title + "](#" + topic.key + ")");
    }
    out << "* " << theme << ": " << join(links, ", ") << "\n";
  }
  out << "\n";

  out << "<a id=\"find-a-name\"></a>\n\n## Find a name\n\n"
      << "Every name below, in any implementation, leads to its topic. moeref's own hyperparameters are the "
         "names a config's `hparams` takes.\n\n"
      << "| name | implementation | topic | what it is |\n"
      << "| --- | --- | --- | --- |\n";
  for (const GlossaryName& name : glossary_names()) {
    const HparamTopic* topic = find_hparam_topic(name.topic);
    const std::string title = topic == nullptr ? name.topic : topic->title;
    out << "| " << code(name.name) << " | " << name.implementation << " | [" << title << "](#" << name.topic << ") | "
        << cell(name.what) << " |\n";
  }
  out << "\n";

  for (const std::string& theme : glossary_themes()) {
    out << "## " << theme << "\n\n";
    for (const HparamTopic& topic : hparam_topics()) {
      if (topic.theme == theme) write_topic(out, topic);
    }
  }
  std::string text = out.str();
  while (text.size() >= 2 && text.compare(text.size() - 2, 2, "\n\n") == 0) text.pop_back();
  return text;
}

std::string glossary_search(const std::string& word) {
  const std::string wanted = searchable(word);
  if (wanted.empty()) return "";
  // The topics whose names match, an exact match first.
  std::vector<std::string> exact, partial;
  std::map<std::string, std::vector<const GlossaryName*>> matched;
  const std::vector<GlossaryName> names = glossary_names();
  for (const GlossaryName& name : names) {
    const std::string have = searchable(name.name);
    if (have.find(wanted) == std::string::npos) continue;
    matched[name.topic].push_back(&name);
    if (have == wanted) {
      add_unique(exact, name.topic);
    }
  }
  std::vector<std::string> topics = exact;
  for (const HparamTopic& topic : hparam_topics()) {
    if (matched.count(topic.key) > 0) add_unique(topics, topic.key);
  }
  std::ostringstream out;
  for (const std::string& key : topics) {
    const HparamTopic* topic = find_hparam_topic(key);
    if (topic == nullptr) continue;
    const std::vector<Row> rows = rows_about(key);
    out << topic->title << " (spec/glossary.md#" << key << ")\n  " << topic->words << "\n";
    if (!topic->in_moeref.empty()) out << "  In moeref: " << topic->in_moeref << ".\n";
    out << "  matches:\n";
    for (const GlossaryName* name : matched[key]) {
      out << "    " << name->name << " (" << name->implementation << "): " << name->what << "\n";
    }
    if (!rows.empty()) out << "  moeref hyperparameters (config \"hparams\"):\n";
    for (const Row& row : rows) {
      const HparamSpec& spec = *row.spec;
      out << "    " << spec.name << " = " << spec.default_value.dump() << "  [" << join(row.variants, ", ") << "]";
      if (spec.mode != HparamMode::kAlways) out << "  (" << mode_text(spec.mode) << ")";
      out << "\n      " << spec.meaning << "\n";
      const std::string others = other_spellings(spec);
      if (!others.empty()) out << "      the source's other names: " << others << "\n";
    }
    const std::map<std::string, ImplementationNames> by = names_by_implementation(*topic, rows);
    std::vector<std::string> lines;
    for (const std::string& implementation : implementation_order(by)) {
      const ImplementationNames& entry = by.at(implementation);
      if (!entry.variants.empty() && entry.note.empty()) continue;  // listed above
      lines.push_back("    " + implementation + ": " +
                      (entry.names.empty() ? "(no setting)" : join(entry.names, ", ")) +
                      (entry.note.empty() ? "" : "  -- " + entry.note));
    }
    if (!lines.empty()) out << "  elsewhere:\n" << join(lines, "\n") << "\n";
    out << "\n";
  }
  if (!topics.empty()) return out.str();

  // No name matches: the hyperparameters whose meaning mentions the word.
  std::set<std::string> seen;
  for (const VariantSpec& variant : all_variants()) {
    for (const HparamSpec& spec : variant.hparams) {
      if (searchable(spec.meaning).find(wanted) == std::string::npos) continue;
      if (!seen.insert(variant.id + "." + spec.name).second) continue;
      out << variant.id << ": " << spec.name << " = " << spec.default_value.dump() << "\n  " << spec.meaning
          << "\n  (topic: spec/glossary.md#" << spec.topic << ")\n";
    }
  }
  if (seen.empty()) return "";
  return "No hyperparameter is called \"" + word + "\"; these mention it in their meaning:\n\n" + out.str();
}

}  // namespace moeref
