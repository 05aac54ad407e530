// `moeref render`: the routing of a trace as one self-contained HTML page
// (render_html.hpp). Everything is inline: one <style>, no script, no external
// resource, so the page opens the same offline, in a browser or in a CI artefact.

#include "moeref/teach/render_html.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "moeref/registry.hpp"
#include "moeref/teach/routing_view.hpp"

namespace moeref {

namespace {

const char* const kStyle = R"css(
:root { --rank1: 37, 99, 235; --rank2: 234, 88, 12; --rank3: 124, 58, 237; --chosen: 22, 163, 74; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 24px 32px;
       color: #1f2937; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #e5e7eb; padding-bottom: 4px; }
code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.92em; }
.sub { color: #4b5563; margin: 2px 0; font-size: 13px; }
.stats { display: flex; flex-wrap: wrap; gap: 10px; margin: 14px 0; }
.stat { border: 1px solid #e5e7eb; border-radius: 8px; padding: 8px 14px; min-width: 120px; background: #f9fafb; }
.stat .num { display: block; font-size: 24px; font-weight: 600; }
.stat .label { font-size: 12px; color: #4b5563; }
.stat.bad .num { color: #b91c1c; }
.legend { font-size: 12px; color: #374151; display: flex; flex-wrap: wrap; gap: 14px; margin: 6px 0 10px; }
.legend span.swatch { display: inline-block; width: 14px; height: 14px; vertical-align: -2px; margin-right: 4px;
                      border-radius: 3px; }
table.grid { border-collapse: collapse; font-size: 12px; }
table.grid th, table.grid td { border: 1px solid #e5e7eb; padding: 0; text-align: center; }
table.grid th { background: #f3f4f6; padding: 4px 6px; font-weight: 600; }
table.grid th.token { text-align: left; white-space: nowrap; }
table.grid td .cell { width: 64px; height: 34px; display: flex; flex-direction: column; justify-content: center;
                      line-height: 1.15; }
table.grid td .w { font-weight: 600; }
table.grid td .slot { font-size: 10px; color: #1f2937; opacity: 0.8; }
td.seat.r1 .cell { background: rgba(var(--rank1), var(--a)); }
td.seat.r2 .cell { background: rgba(var(--rank2), var(--a)); }
td.seat.r3 .cell { background: rgba(var(--rank3), var(--a)); }
td.seat.r0 .cell { background: rgba(var(--chosen), var(--a)); }
td.drop .cell { color: #b91c1c; background: repeating-linear-gradient(45deg, #fff, #fff 4px, #fee2e2 4px, #fee2e2 8px);
                outline: 2px dashed #dc2626; outline-offset: -3px; }
tr.pad th, tr.pad td { background: #f3f4f6; color: #9ca3af; }
td.diff .cell { outline: 3px solid #dc2626; outline-offset: -3px; }
tr.group th { background: #fff; text-align: left; color: #6b7280; font-weight: 500; padding-top: 8px; }
.experts { display: grid; grid-template-columns: max-content 1fr; gap: 6px 12px; align-items: center; font-size: 12px; }
.slots { display: flex; flex-wrap: wrap; gap: 4px; align-items: center; }
.slotbox { width: 58px; height: 30px; border: 1px solid #9ca3af; border-radius: 4px; display: flex; flex-direction: column;
           justify-content: center; text-align: center; line-height: 1.1; font-size: 11px; }
.slotbox.empty { border-style: dashed; color: #9ca3af; }
.slotbox.r1 { background: rgba(var(--rank1), 0.25); }
.slotbox.r2 { background: rgba(var(--rank2), 0.25); }
.slotbox.r3 { background: rgba(var(--rank3), 0.25); }
.slotbox.r0 { background: rgba(var(--chosen), 0.25); }
.away { color: #b91c1c; margin-left: 8px; }
.away.held { color: #6b7280; }
.away.held b { border-color: #9ca3af; background: #f3f4f6; }
.away b { display: inline-block; border: 1px solid #dc2626; border-radius: 10px; padding: 0 6px; margin: 0 2px;
          font-weight: 500; background: #fee2e2; }
.bar { position: relative; height: 16px; width: 320px; background: #f3f4f6; border-radius: 4px; overflow: hidden; }
.bar > div { position: absolute; top: 0; bottom: 0; left: 0; background: rgba(var(--rank1), 0.7); }
table.plain { border-collapse: collapse; font-size: 13px; }
table.plain th, table.plain td { border: 1px solid #e5e7eb; padding: 4px 10px; text-align: left; }
table.plain td.n { text-align: right; font-variant-numeric: tabular-nums; }
.verdict { padding: 10px 14px; border-radius: 8px; font-size: 15px; margin: 12px 0; }
.verdict.pass { background: #dcfce7; border: 1px solid #16a34a; }
.verdict.fail { background: #fee2e2; border: 1px solid #dc2626; }
.side { display: flex; flex-wrap: wrap; gap: 28px; align-items: flex-start; }
.side h3 { font-size: 14px; margin: 4px 0 6px; }
ul.diffs { font-size: 13px; }
footer { margin-top: 32px; font-size: 12px; color: #6b7280; }
)css";

std::string esc(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string num(double value, int digits) {
  if (value == 0.0) return "0";
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.*g", digits, value);
  return buffer;
}

std::string stat(const std::string& id, int64_t value, const std::string& label, bool bad = false) {
  return "<div class=\"stat" + std::string(bad && value > 0 ? " bad" : "") + "\" id=\"" + id + "\" data-value=\"" +
         std::to_string(value) + "\"><span class=\"num\">" + std::to_string(value) + "</span><span class=\"label\">" +
         esc(label) + "</span></div>";
}

std::string stat_text(const std::string& id, const std::string& value, const std::string& label) {
  return "<div class=\"stat\" id=\"" + id + "\" data-value=\"" + esc(value) + "\"><span class=\"num\">" + esc(value) +
         "</span><span class=\"label\">" + esc(label) + "</span></div>";
}

// The rank (1-based) of a token's choice of `expert`, 0 when it did not choose (experts
// chose it), and the index into `requested` (or npos).
size_t rank_index(const TokenRouting& token, int32_t expert) {
  for (size_t k = 0; k < token.requested.size(); ++k) {
    if (token.requested[k] == expert) return k;
  }
  return std::string::npos;
}

std::string rank_class(size_t k) {
  if (k == std::string::npos) return "r0";
  return "r" + std::to_string(std::min<size_t>(k + 1, 3));
}

std::string ordinal(size_t k) {
  static const char* const names[] = {"first", "second", "third", "fourth"};
  return k < 4 ? names[k] : "rank-" + std::to_string(k + 1);
}

std::optional<Seat> seat_at(const TokenRouting& token, int32_t expert) {
  for (const Seat& seat : token.seats) {
    if (seat.expert == expert) return seat;
  }
  return std::nullopt;
}

// Whether two routings put a token at an expert differently.
bool cell_differs(const RoutingView& a, const RoutingView& b, int64_t g, int64_t s, int32_t e) {
  if (a.G != b.G || a.S != b.S || a.E != b.E) return true;
  const std::optional<Seat> x = seat_at(a.at(g, s), e), y = seat_at(b.at(g, s), e);
  if (x.has_value() != y.has_value()) return true;
  if (!x) return false;
  const double tolerance = 1e-5 * std::max(1.0, std::fabs(static_cast<double>(x->weight)));
  return x->slot != y->slot || std::fabs(static_cast<double>(x->weight) - static_cast<double>(y->weight)) > tolerance;
}

std::string expert_name(const RoutingView& view, int64_t e) {
  return (view.expert_dim == "X" ? "x" : "e") + std::to_string(e);
}

void counts(std::ostringstream& out, const RoutingView& view) {
  const int64_t capacity_drops = view.dropped_choices - view.policy_dropped_choices;
  const int64_t real = view.G * view.S - view.padding_tokens;
  out << "<div class=\"stats\">" << stat("routed-tokens", view.routed_tokens, "tokens routed to an expert")
      << stat("dropped-tokens", view.dropped_tokens, "tokens dropped by every expert", true)
      << stat("padding-tokens", view.padding_tokens, "padding tokens");
  if (view.requested_choices > 0) {
    out << stat("kept-choices", view.requested_choices - view.dropped_choices, "choices that got a slot")
        << stat("capacity-dropped-choices", capacity_drops, "choices dropped: expert full", true);
    if (!view.policy_from.empty()) {
      out << stat("policy-dropped-choices", view.policy_dropped_choices, "choices dropped by the policy", true);
    }
  }
  char rate[32];
  std::snprintf(rate, sizeof(rate), "%.1f%%",
                real > 0 ? 100.0 * static_cast<double>(view.dropped_tokens) / static_cast<double>(real) : 0.0);
  out << stat_text("token-drop-rate", rate, "of real tokens dropped entirely")
      << stat("capacity", view.C, "slots per expert and group (C)") << "</div>\n";
}

void legend(std::ostringstream& out, const RoutingView& view) {
  out << "<div class=\"legend\">";
  if (!view.requests_from.empty()) {
    out << "<span><span class=\"swatch\" style=\"background:rgba(37,99,235,.7)\"></span>first choice</span>"
        << "<span><span class=\"swatch\" style=\"background:rgba(234,88,12,.7)\"></span>second choice</span>"
        << "<span><span class=\"swatch\" style=\"background:rgba(124,58,237,.7)\"></span>third or later</span>"
        << "<span><span class=\"swatch\" style=\"background:rgba(22,163,74,.7)\"></span>a seat the token did not "
           "choose</span>";
  } else {
    out << "<span><span class=\"swatch\" style=\"background:rgba(22,163,74,.7)\"></span>chosen by the expert</span>";
  }
  out << "<span><span class=\"swatch\" style=\"outline:2px dashed #dc2626;background:#fee2e2\"></span>"
         "dropped choice (✕ full: no slot left; ✕ policy: the second-expert policy)</span>"
      << "<span>shade: the combine weight; small: the slot</span></div>\n";
}

// The token × expert grid; `other` marks the cells where another routing differs.
void grid(std::ostringstream& out, const RoutingView& view, const RoutingView* other, const std::string& id) {
  out << "<table class=\"grid\" id=\"" << id << "\"><thead><tr><th class=\"token\">token</th>";
  for (int64_t e = 0; e < view.E; ++e) {
    int64_t fill = 0;
    for (int64_t g = 0; g < view.G; ++g) fill += view.fill_of(g, e);
    out << "<th>" << expert_name(view, e) << "<br><span class=\"slot\">" << fill << "/" << view.C * view.G
        << "</span></th>";
  }
  out << "</tr></thead><tbody>\n";
  for (int64_t g = 0; g < view.G; ++g) {
    if (view.G > 1) out << "<tr class=\"group\"><th colspan=\"" << view.E + 1 << "\">group g" << g << "</th></tr>";
    for (int64_t s = 0; s < view.S; ++s) {
      const TokenRouting& token = view.at(g, s);
      const std::string who = token_label(view, g, s);
      out << "<tr" << (token.padding ? " class=\"pad\"" : "") << "><th class=\"token\">" << who
          << (token.padding         ? " (padding)"
              : token.seats.empty() ? " ✕"
                                    : "")
          << "</th>";
      for (int64_t e = 0; e < view.E; ++e) {
        const int32_t expert = static_cast<int32_t>(e);
        const bool differs = other != nullptr && cell_differs(view, *other, g, s, expert);
        const std::optional<Seat> seat = seat_at(token, expert);
        const size_t k = rank_index(token, expert);
        std::string classes, body, title;
        if (seat) {
          const double alpha = 0.12 + 0.78 * std::clamp(static_cast<double>(seat->weight), 0.0, 1.0);
          classes = "seat " + rank_class(k);
          body = "<span class=\"w\">" + num(seat->weight, 3) + "</span><span class=\"slot\">c" +
                 std::to_string(seat->slot) + "</span>";
          title = who + " → " + expert_name(view, e) + (k == std::string::npos ? "" : ", " + ordinal(k) + " choice") +
                  ", slot c" + std::to_string(seat->slot) + ", weight " + num(seat->weight, 8);
          out << "<td class=\"" << classes << (differs ? " diff" : "") << "\" style=\"--a:" << num(alpha, 3)
              << "\" title=\"" << esc(title) << "\"><div class=\"cell\">" << body << "</div></td>";
          continue;
        }
        if (!token.padding && k != std::string::npos) {
          const bool policy = token.dropped_by_policy(k);
          title = who + " → " + expert_name(view, e) + ", " + ordinal(k) + " choice: dropped" +
                  (policy ? " by the second-expert policy" : ", the expert was full");
          out << "<td class=\"drop" << (differs ? " diff" : "") << "\" title=\"" << esc(title)
              << "\"><div class=\"cell\"><span class=\"w\">✕ " << (policy ? "policy" : "full")
              << "</span><span class=\"slot\">" << ordinal(k) << "</span></div></td>";
          continue;
        }
        out << "<td" << (differs ? " class=\"diff\"" : "") << "><div class=\"cell\"></div></td>";
      }
      out << "</tr>\n";
    }
  }
  out << "</tbody></table>\n";
}

// Each expert's C slots per group, and the tokens it turned away.
void capacity_fill(std::ostringstream& out, const RoutingView& view) {
  out << "<div class=\"experts\">\n";
  for (int64_t g = 0; g < view.G; ++g) {
    for (int64_t e = 0; e < view.E; ++e) {
      std::vector<std::string> slots(static_cast<size_t>(view.C));
      std::vector<std::string> away;       // no slot left
      std::vector<std::string> held_back;  // the second-expert policy did not send them
      for (int64_t s = 0; s < view.S; ++s) {
        const TokenRouting& token = view.at(g, s);
        const std::optional<Seat> seat = seat_at(token, static_cast<int32_t>(e));
        const size_t k = rank_index(token, static_cast<int32_t>(e));
        if (seat && seat->slot >= 0 && seat->slot < view.C) {
          slots[static_cast<size_t>(seat->slot)] = "<div class=\"slotbox " + rank_class(k) + "\" title=\"" +
                                                   esc(token_label(view, g, s) + ", weight " + num(seat->weight, 8)) +
                                                   "\"><b>" + token_label(view, g, s) + "</b>" + num(seat->weight, 3) +
                                                   "</div>";
        } else if (!token.padding && k != std::string::npos) {
          const std::string chip =
              "<b title=\"" + esc(ordinal(k) + " choice") + "\">" + token_label(view, g, s) + "</b>";
          (token.dropped_by_policy(k) ? held_back : away).push_back(chip);
        }
      }
      const int64_t fill = view.fill_of(g, e);
      out << "<div><b>" << (view.G > 1 ? "g" + std::to_string(g) + "." : "") << expert_name(view, e) << "</b> " << fill
          << "/" << view.C << (fill >= view.C ? " full" : "") << "</div><div class=\"slots\">";
      for (int64_t c = 0; c < view.C; ++c) {
        const std::string& slot = slots[static_cast<size_t>(c)];
        out << (slot.empty() ? "<div class=\"slotbox empty\">c" + std::to_string(c) + "</div>" : slot);
      }
      if (!away.empty()) {
        out << "<span class=\"away\">turned away, full:";
        for (const std::string& chip : away) out << " " << chip;
        out << "</span>";
      }
      if (!held_back.empty()) {
        out << "<span class=\"away held\">not sent by the policy:";
        for (const std::string& chip : held_back) out << " " << chip;
        out << "</span>";
      }
      out << "</div>\n";
    }
  }
  out << "</div>\n";
}

// Large traces: per expert over every group, the fill and what it turned away.
void summary(std::ostringstream& out, const RoutingView& view) {
  out << "<p class=\"sub\">" << view.G * view.S
      << " tokens are too many for one cell each: per expert, over every group.</p>\n"
      << "<table class=\"plain\" id=\"expert-summary\"><thead><tr><th>expert</th><th>slots filled</th><th></th>"
      << "<th>choices turned away</th></tr></thead><tbody>\n";
  for (int64_t e = 0; e < view.E; ++e) {
    int64_t fill = 0, away = 0;
    for (int64_t g = 0; g < view.G; ++g) fill += view.fill_of(g, e);
    for (const TokenRouting& token : view.tokens) {
      if (token.padding) continue;
      for (int32_t choice : token.requested) away += choice == e && !token.seated_at(choice) ? 1 : 0;
    }
    const int64_t total = view.C * view.G;
    const double share = total > 0 ? static_cast<double>(fill) / static_cast<double>(total) : 0.0;
    out << "<tr><td>" << expert_name(view, e) << "</td><td class=\"n\">" << fill << " / " << total
        << "</td><td><div class=\"bar\"><div style=\"width:" << num(100.0 * share, 4) << "%\"></div></div></td>"
        << "<td class=\"n\">" << away << "</td></tr>\n";
  }
  out << "</tbody></table>\n";
}

void losses(std::ostringstream& out, const Trace& trace) {
  if (trace.losses.empty()) return;
  out << "<h2>Losses</h2><table class=\"plain\" id=\"losses\"><tbody>";
  for (const auto& [name, value] : trace.losses) {
    out << "<tr><td><code>" << esc(name) << "</code></td><td class=\"n\" data-value=\"" << num(value, 9) << "\">"
        << num(value, 6) << "</td></tr>";
  }
  out << "</tbody></table>\n";
}

void header(std::ostringstream& out, const Trace& trace, const std::string& heading, const std::string& name) {
  const std::string variant = trace.config.value("variant", std::string("?"));
  const VariantSpec* spec = find_variant(variant);
  out << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      << "<meta name=\"generator\" content=\"moeref render\"><title>" << esc(heading) << ": " << esc(variant)
      << "</title><style>" << kStyle << "</style></head>\n<body data-variant=\"" << esc(variant) << "\">\n"
      << "<header><h1>" << esc(heading) << ": <code>" << esc(variant) << "</code></h1>";
  if (spec != nullptr) out << "<p class=\"sub\">" << esc(spec->summary) << " — " << esc(spec->source) << "</p>";
  std::vector<std::string> dims;
  const nlohmann::json resolved_dims = trace.config.value("dims", nlohmann::json::object());
  // In the notation's order (spec/notation.md), then any other.
  std::vector<std::string> order = {"B", "L", "G", "S", "E", "K", "C", "X", "Y", "M", "H", "N"};
  for (const auto& item : resolved_dims.items()) {
    if (std::find(order.begin(), order.end(), item.key()) == order.end()) order.push_back(item.key());
  }
  for (const std::string& letter : order) {
    if (resolved_dims.contains(letter)) dims.push_back(letter + "=" + resolved_dims[letter].dump());
  }
  std::string dims_text;
  for (const std::string& dim : dims) dims_text += (dims_text.empty() ? "" : " ") + dim;
  out << "<p class=\"sub\">" << (trace.config.value("train", true) ? "training" : "evaluation") << ", scope "
      << esc(trace.config.value("scope", std::string("layer"))) << ", dims " << esc(dims_text);
  if (trace.capacity.contains("rule")) out << "; capacity " << esc(trace.capacity["rule"].get<std::string>());
  out << "</p>";
  if (!name.empty()) out << "<p class=\"sub\">trace: <code>" << esc(name) << "</code></p>";
  out << "</header>\n";
}

void footer(std::ostringstream& out) {
  out << "<footer>Made by <code>moeref render</code>: one self-contained page, no script, nothing fetched. "
         "Hover a cell for its exact weight. The numbers come from the trace's routing tensors "
         "(spec/trace-format.md); <code>moeref explain</code> tells the same routing step by step.</footer>\n"
         "</body></html>\n";
}

void routing_body(std::ostringstream& out, const RoutingView& view, const RenderOptions& options) {
  out << "<h2>Counts</h2>\n";
  counts(out, view);
  if (view.G * view.S > options.max_grid_tokens) {
    out << "<h2>Expert fill</h2>\n";
    summary(out, view);
    return;
  }
  out << "<h2>Tokens × experts</h2>\n";
  legend(out, view);
  grid(out, view, nullptr, "grid");
  out << "<h2>Expert capacity</h2>\n";
  capacity_fill(out, view);
}

}  // namespace

std::string render_routing_html(const Trace& trace, const RenderOptions& options) {
  std::ostringstream out;
  header(out, trace, "Routing", options.trace_name);
  const std::optional<RoutingView> view = routing_view(trace);
  if (!view) {
    out << "<p id=\"no-routing\">This trace holds no routing: neither [G, S, E, C] combine and dispatch tensors nor "
           "the index form (routing_expert, routing_slot, routing_weight).</p>\n";
  } else {
    out << "<p class=\"sub\">Seats from <code>" << esc(view->seats_from) << "</code>"
        << (view->requests_from.empty() ? "; the experts choose their tokens"
                                        : "; choices from <code>" + esc(view->requests_from) + "</code>")
        << ".</p>\n";
    routing_body(out, *view, options);
  }
  losses(out, trace);
  footer(out);
  return out.str();
}

std::string render_comparison_html(const Trace& golden, const Trace& candidate, const CheckReport& report,
                                   const RenderOptions& options) {
  std::ostringstream out;
  header(out, golden, "Routing, golden vs candidate", options.trace_name);
  if (!options.candidate_name.empty()) {
    out << "<p class=\"sub\">candidate: <code>" << esc(options.candidate_name) << "</code></p>\n";
  }
  const std::string verdict =
      report.pass ? (report.consistent_alternative ? "PASS (a consistent alternative at a near tie)" : "PASS") : "FAIL";
  out << "<div class=\"verdict " << (report.pass ? "pass" : "fail") << "\" id=\"verdict\" data-pass=\""
      << (report.pass ? "true" : "false") << "\" data-first-divergent-step=\"" << esc(report.first_divergent_step)
      << "\"><b>" << esc(verdict) << "</b>";
  if (!report.first_divergent_step.empty()) {
    out << ": the first divergent step is <code>" << esc(report.first_divergent_step) << "</code>";
  }
  out << "</div>\n";

  const std::optional<RoutingView> gold = routing_view(golden);
  const std::optional<RoutingView> cand = routing_view(candidate);
  if (gold && cand) {
    std::vector<std::string> diffs;
    const bool same_shape = gold->G == cand->G && gold->S == cand->S && gold->E == cand->E;
    if (same_shape) {
      for (int64_t g = 0; g < gold->G; ++g) {
        for (int64_t s = 0; s < gold->S; ++s) {
          for (int64_t e = 0; e < gold->E; ++e) {
            if (!cell_differs(*gold, *cand, g, s, static_cast<int32_t>(e))) continue;
            auto describe = [&](const RoutingView& view) {
              const std::optional<Seat> seat = seat_at(view.at(g, s), static_cast<int32_t>(e));
              return seat ? "slot c" + std::to_string(seat->slot) + ", weight " + num(seat->weight, 8)
                          : std::string("no slot");
            };
            diffs.push_back(token_label(*gold, g, s) + " at " + expert_name(*gold, e) + ": golden " + describe(*gold) +
                            ", candidate " + describe(*cand));
          }
        }
      }
    }
    out << "<div class=\"stats\">"
        << stat("differing-cells", static_cast<int64_t>(diffs.size()), "token × expert cells routed differently", true)
        << stat("golden-routed-tokens", gold->routed_tokens, "tokens routed (golden)")
        << stat("candidate-routed-tokens", cand->routed_tokens, "tokens routed (candidate)")
        << stat("golden-dropped-tokens", gold->dropped_tokens, "tokens dropped (golden)")
        << stat("candidate-dropped-tokens", cand->dropped_tokens, "tokens dropped (candidate)") << "</div>\n";
    if (!diffs.empty()) {
      out << "<h2>Where the routing differs</h2><ul class=\"diffs\" id=\"diffs\">";
      for (size_t i = 0; i < diffs.size() && i < 50; ++i) out << "<li>" << esc(diffs[i]) << "</li>";
      if (diffs.size() > 50) out << "<li>… and " << diffs.size() - 50 << " more</li>";
      out << "</ul>\n";
    }
    if (gold->G * gold->S <= options.max_grid_tokens && same_shape) {
      out << "<h2>Tokens × experts</h2>\n";
      legend(out, *gold);
      out << "<p class=\"sub\">A red frame marks a cell the two routings fill differently.</p><div class=\"side\">"
          << "<div><h3>golden</h3>";
      grid(out, *gold, &*cand, "grid-golden");
      out << "</div><div><h3>candidate</h3>";
      grid(out, *cand, &*gold, "grid-candidate");
      out << "</div></div>\n";
    } else {
      out << "<h2>Expert fill (golden)</h2>\n";
      summary(out, *gold);
      out << "<h2>Expert fill (candidate)</h2>\n";
      summary(out, *cand);
    }
  } else {
    out << "<p id=\"no-routing\">" << (gold ? "The candidate" : "The golden")
        << " holds no routing in either form; the checker's report follows.</p>\n";
  }

  out << "<h2>The checker's report</h2><table class=\"plain\" id=\"report\"><thead><tr><th>step</th><th>status</th>"
      << "<th>mismatches</th><th>first element</th><th>note</th></tr></thead><tbody>\n";
  for (const TensorResult& result : report.results) {
    if (result.status == TensorStatus::kMatch) continue;
    out << "<tr" << (result.name == report.first_divergent_step ? " id=\"first-divergent\"" : "") << "><td><code>"
        << esc(result.section + "." + result.name) << "</code></td><td>" << status_name(result.status)
        << (result.downstream ? " (downstream)" : "") << "</td><td class=\"n\">" << result.mismatches << " / "
        << result.total << "</td><td>";
    if (result.first) {
      out << esc(result.first->index) << ": expected " << esc(result.first->expected) << ", got "
          << esc(result.first->actual);
    }
    out << "</td><td>" << esc(result.message) << "</td></tr>\n";
  }
  out << "</tbody></table>\n";
  losses(out, golden);
  footer(out);
  return out.str();
}

}  // namespace moeref
