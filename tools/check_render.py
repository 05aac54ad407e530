#!/usr/bin/env python3
"""Opens pages of `moeref render` in headless Chromium and checks what it rendered.

    tools/check_render.py MOEREF_BIN SOURCE_DIR OUT_DIR

For three pages (a small routing with drops and padding, a routing too large for the
grid, and a golden against a candidate with one token moved), it runs `moeref render`,
loads the page with `chromium --headless --dump-dom`, and checks that the rendered DOM
shows the numbers of routed and dropped tokens that this script counts itself from the
trace's dispatch tensor and padding, and, for the comparison, the checker's first
divergent step (`moeref check --report`) and the number of cells moved. Each page is
also screenshot to OUT_DIR/*.png, kept as test artefacts for a human to look at.

Exits 77 (CTest's SKIP_RETURN_CODE) when no chromium is installed: tools/dev.sh test
installs Debian's `chromium`.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

SKIP = 77


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, **kwargs)
    if result.returncode != 0:
        raise SystemExit(f"FAIL: {' '.join(command)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result.stdout


def browser(binary, profile, *args):
    # --no-sandbox: CI containers run as root; a profile of our own: tests may run side by side.
    return [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
            f"--user-data-dir={profile}", *args]


def dump_dom(binary, profile, page):
    return run(browser(binary, profile, "--dump-dom", "file://" + os.path.abspath(page)))


def screenshot(binary, profile, page, png, height):
    run(browser(binary, profile, f"--screenshot={png}", f"--window-size=1300,{height}",
                "file://" + os.path.abspath(page)))
    size = os.path.getsize(png) if os.path.exists(png) else 0
    if size < 10000:
        raise SystemExit(f"FAIL: the screenshot {png} has {size} bytes: nothing rendered?")


def shown(dom, element_id):
    match = re.search(r'id="%s"[^>]*data-value="([^"]*)"' % re.escape(element_id), dom)
    if not match:
        raise SystemExit(f"FAIL: the rendered page shows no #{element_id}")
    return match.group(1)


def tensor(trace, section, name):
    """A step (a list of named tensors) or an input (an object by name) of a trace."""
    if isinstance(trace[section], dict):
        return trace[section].get(name)
    for entry in trace[section]:
        if entry["name"] == name:
            return entry
    return None


def expected_counts(trace):
    """Routed and dropped real tokens, counted from the trace itself."""
    dispatch = tensor(trace, "steps", "dispatch_tensor") or tensor(trace, "steps", "dispatch_mask")
    G, S, E, C = dispatch["shape"]
    data = dispatch["data"]
    padding = [False] * (G * S)
    importance = tensor(trace, "inputs", "importance")
    if importance is not None:
        padding = [p or v == 0 for p, v in zip(padding, importance["data"])]
    paddings = tensor(trace, "inputs", "paddings")
    if paddings is not None:
        padding = [p or v >= 0.5 for p, v in zip(padding, paddings["data"])]
    routed = dropped = 0
    for t in range(G * S):
        if padding[t]:
            continue
        if any(data[t * E * C: (t + 1) * E * C]):
            routed += 1
        else:
            dropped += 1
    return routed, dropped


def check_counts(dom, trace, what):
    routed, dropped = expected_counts(trace)
    got = (int(shown(dom, "routed-tokens")), int(shown(dom, "dropped-tokens")))
    if got != (routed, dropped):
        raise SystemExit(f"FAIL: {what}: the page shows routed, dropped = {got}; the trace has {(routed, dropped)}")
    print(f"{what}: {routed} tokens routed and {dropped} dropped, as in the trace")


def self_contained(page):
    text = open(page, encoding="utf-8").read()
    for needle in ("http://", "https://", "<script", " src=", "@import", "url("):
        if needle in text:
            raise SystemExit(f"FAIL: {page} is not self-contained: it contains {needle!r}")


def main():
    moeref, source, out = sys.argv[1], sys.argv[2], sys.argv[3]
    binary = chromium()
    if binary is None:
        print("SKIP: no chromium (Debian package `chromium`; tools/dev.sh test installs it)")
        return SKIP
    os.makedirs(out, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="moeref_chromium_")
    try:
        # 1. A small routing: a golden with drops and a padding token.
        small = os.path.join(source, "golden", "mtf_top2", "eval_threshold_padding_gelu.trace.json")
        page = os.path.join(out, "routing.html")
        run([moeref, "render", small, "-o", page])
        self_contained(page)
        trace = json.load(open(small))
        dom = dump_dom(binary, profile, page)
        check_counts(dom, trace, "small routing")
        if 'id="grid"' not in dom or "turned away" not in dom:
            raise SystemExit("FAIL: the small routing shows no token x expert grid or no turned-away tokens")
        screenshot(binary, profile, page, os.path.join(out, "routing.png"), 1300)

        # 2. A large routing: 2 x 512 tokens get the per-expert summary, not 1024 rows.
        large_config = os.path.join(out, "large.config.json")
        json.dump({"variant": "mtf_switch", "scope": "gating", "seed": 1,
                   "dims": {"G": 2, "S": 512, "E": 8, "M": 4},
                   "hparams": {"capacity_factor_train": 1.0, "min_expert_capacity": 1},
                   "inputs": {"importance": {"dims": ["G", "S"], "shape": [2, 512], "dtype": "float32",
                                             "data": [1.0] * 1000 + [0.0] * 24}}}, open(large_config, "w"))
        large = os.path.join(out, "large.trace.json")
        run([moeref, "run", large_config, "-o", large])
        page = os.path.join(out, "summary.html")
        run([moeref, "render", large, "-o", page])
        self_contained(page)
        dom = dump_dom(binary, profile, page)
        check_counts(dom, json.load(open(large)), "large routing")
        if 'id="expert-summary"' not in dom or 'id="grid"' in dom:
            raise SystemExit("FAIL: the large routing should show the per-expert summary instead of the grid")
        screenshot(binary, profile, page, os.path.join(out, "summary.png"), 900)

        # 3. Golden against a candidate that swapped the seats of tokens 2 and 3 of group 0.
        candidate = json.load(open(small))
        for name in ("dispatch_tensor", "combine_tensor"):
            entry = tensor(candidate, "steps", name)
            G, S, E, C = entry["shape"]
            row = E * C
            data = entry["data"]
            data[2 * row:3 * row], data[3 * row:4 * row] = data[3 * row:4 * row], data[2 * row:3 * row]
        combine = tensor(trace, "steps", "combine_tensor")["data"]
        cells = lambda t: [tuple(combine[(t * E + e) * C:(t * E + e + 1) * C]) for e in range(E)]
        moved = sum(a != b for a, b in zip(cells(2), cells(3))) * 2
        candidate["generator"] = {"program": "check_render.py", "version": "1", "rng": "replayed"}
        candidate_path = os.path.join(out, "candidate.trace.json")
        json.dump(candidate, open(candidate_path, "w"))
        report_path = os.path.join(out, "report.json")
        subprocess.run([moeref, "check", small, candidate_path, "--report", report_path], capture_output=True)
        first = json.load(open(report_path))["first_divergent_step"]
        page = os.path.join(out, "comparison.html")
        run([moeref, "render", small, "--candidate", candidate_path, "-o", page])
        self_contained(page)
        dom = dump_dom(binary, profile, page)
        match = re.search(r'id="verdict"[^>]*data-first-divergent-step="([^"]*)"', dom)
        if not match or match.group(1) != first or not first:
            raise SystemExit(f"FAIL: the comparison shows first divergent step {match and match.group(1)!r}; "
                             f"moeref check says {first!r}")
        differing = int(shown(dom, "differing-cells"))
        if differing == 0 or differing != moved:
            raise SystemExit(f"FAIL: the comparison marks {differing} differing cells; the candidate moved {moved}")
        print(f"comparison: first divergent step {first}, {differing} token x expert cells marked")
        screenshot(binary, profile, page, os.path.join(out, "comparison.png"), 1300)
        print(f"screenshots: {out}/routing.png, summary.png, comparison.png")
        return 0
    finally:
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
