// The glossary of hyperparameters, generated from the registered variants'
// declarations and the topic table (hparam_topics.hpp): spec/glossary.md is its
// output, checked by tests/test_glossary.cpp; `moeref variants --glossary`
// prints it and `moeref variants --search WORD` searches its names.
#pragma once

#include <string>
#include <vector>

namespace moeref {

// The whole page: the hand-written introduction (spec/glossary-intro.md, embedded
// at build time), then one section per topic.
std::string glossary_markdown();

// One name of one implementation for one topic.
struct GlossaryName {
  std::string name;            // as that implementation spells it
  std::string implementation;  // glossary_implementations(), or a variant's origin
  std::string topic;           // a topic key
  std::string what;            // "hyperparameter of mtf_top2, mtf_switch", "old name of switch_jitter", ...
};

// Every name the glossary knows: moeref's hyperparameters, the sources' other
// spellings and old names, and the names in the topic table. Sorted by name.
std::vector<GlossaryName> glossary_names();

// The text `moeref variants --search WORD` prints: every topic one of whose
// names contains `word` (case-insensitive; an exact name first), with the names
// that matched, the moeref hyperparameters of the topic and the names in other
// implementations. When no name matches, the hyperparameters whose meaning
// mentions `word`. Empty when nothing matches at all.
std::string glossary_search(const std::string& word);

}  // namespace moeref
