// The topics of the glossary: one idea each ("capacity factor", "second-expert
// policy"), in plain words, with the names every implementation gives it.
//
// A variant's hyperparameter declares its topic with .about("KEY") (hparams.hpp).
// The glossary (spec/glossary.md, `moeref variants --glossary`) lists, for each
// topic, every moeref hyperparameter about it and the names of the same idea in
// the implementations moeref restates and those it does not run yet (DeepSpeed,
// Hugging Face, fairseq, Tutel, ...). The table lives in src/teach/hparam_topics.cpp.
#pragma once

#include <string>
#include <vector>

namespace moeref {

// The implementations the glossary names, in its column order.
const std::vector<std::string>& glossary_implementations();

// The implementation a variant restates, from its id's origin prefix
// ("mtf_top2" -> "mtf", "stmoe_topn" -> "st-moe-pytorch", "hf_nllb_top2" ->
// "Hugging Face"); the prefix itself when it is not a known origin.
std::string implementation_of_variant(const std::string& variant_id);

// The names one implementation gives a topic. `names` may be empty when it has
// no such setting; `note` then says why (fixed by the algorithm, an input, ...).
struct TopicNames {
  std::string implementation;  // one of glossary_implementations()
  std::vector<std::string> names;
  std::string note;
};

struct HparamTopic {
  std::string key;    // what .about() names, e.g. "capacity_factor"
  std::string title;  // "Capacity factor"
  std::string theme;  // the glossary section: "Capacity", "Choosing experts", ...
  std::string words;  // the idea in plain words, for a newcomer
  // Where moeref takes this setting other than as a hyperparameter (a dim, the
  // variant id, an input); empty when every moeref spelling is a hyperparameter.
  std::string in_moeref;
  // Names in other implementations, beyond those moeref's own declarations give.
  std::vector<TopicNames> elsewhere;
};

// Every topic, in glossary order (by theme, then as listed).
const std::vector<HparamTopic>& hparam_topics();

// The themes, in glossary order.
const std::vector<std::string>& glossary_themes();

// nullptr when no topic has this key.
const HparamTopic* find_hparam_topic(const std::string& key);

}  // namespace moeref
