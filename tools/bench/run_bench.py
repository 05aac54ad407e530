#!/usr/bin/env python3
"""moeref against PyTorch on the same layer, interleaved in one run: `tools/dev.sh bench`.

Usage:
  tools/bench/run_bench.py --moeref-bench build/moeref_bench [--sizes small,medium,large]
                           [--threads 1,2] [--repeats 3] [--raw RESULTS.jsonl]

For every size, every repeat and every thread count it runs, one process each and one after
the other (so that a change in the machine's load hits every tool alike):
  moeref literal   moeref_bench: the literal layer (dense dispatch and combine einsums);
  moeref fast      moeref_bench --fast: index dispatch with the experts batched (when built);
  torch dense      torch_layer_bench.py --mode dense: the same layer as PyTorch einsums;
  torch index      torch_layer_bench.py --mode index: PyTorch gather, bmm, index_add.
and then prints the medians, the ratios moeref / PyTorch (below 1: moeref is faster) and each
process's peak resident memory. moeref's "layer" time excludes generating its inputs from the
seed (PyTorch's inputs are made before its clock starts too); "run" includes it.
The machine (CPU model, cores) and its load average before and after are printed with the table:
timings on a shared machine are only comparable within one run.
"""

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
PYTHON = "/usr/bin/python3" if pathlib.Path("/usr/bin/python3").exists() else sys.executable


def cpu_model():
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def run_json(command):
    """Runs one benchmark process; returns its JSON lines."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"run_bench: {' '.join(command)} exited {done.returncode}:\n{done.stderr}{done.stdout}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def fast_supported(moeref_bench):
    done = subprocess.run([moeref_bench, "--help"], capture_output=True, text=True, check=False)
    return "--fast" in done.stdout


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moeref-bench", default=str(HERE.parents[1] / "build" / "moeref_bench"))
    parser.add_argument("--sizes", default="small,medium,large")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-torch", action="store_true", help="moeref only (no PyTorch on this machine)")
    parser.add_argument("--raw", help="also append every measurement here as JSON lines")
    args = parser.parse_args(argv)
    sizes = args.sizes.split(",")
    threads = [int(t) for t in args.threads.split(",")]
    tools = [("moeref literal", [args.moeref_bench, "--json", "--repeats", "1"])]
    if fast_supported(args.moeref_bench):
        tools.append(("moeref fast", [args.moeref_bench, "--json", "--repeats", "1", "--fast"]))
    if not args.no_torch:
        torch_bench = [PYTHON, str(HERE / "torch_layer_bench.py"), "--json", "--repeats", "1"]
        tools += [("torch dense", torch_bench + ["--mode", "dense"]), ("torch index", torch_bench + ["--mode", "index"])]

    load_before = os.getloadavg()
    print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs; load average before {load_before[0]:.2f}",
          flush=True)
    results = {}  # (size, threads, tool) -> list of records
    raw = open(args.raw, "a", encoding="utf-8") if args.raw else None
    for size in sizes:
        for repeat in range(args.repeats):
            for thread_count in threads:
                for name, command in tools:
                    size_threads = ["--size", size, "--threads", str(thread_count)]
                    for record in run_json(command + size_threads):
                        results.setdefault((size, thread_count, name), []).append(record)
                        if raw:
                            raw.write(json.dumps(dict(record, bench_tool=name)) + "\n")
            print(f"  {size}: repeat {repeat + 1}/{args.repeats} done", file=sys.stderr, flush=True)
    load_after = os.getloadavg()

    def median(size, thread_count, name, key):
        records = results.get((size, thread_count, name), [])
        return statistics.median(r[key] for r in records) if records else None

    def text(value, digits=3):
        return "-" if value is None else f"{value:.{digits}f}"

    def ratio(a, b):
        return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}"

    print(f"\nmedians of {args.repeats} interleaved runs, seconds (layer: inputs made before the clock starts; "
          f"moeref run: with generating them)")
    header = ("size", "thr", "moeref run", "moeref layer", "moeref fast", "torch dense", "torch index",
              "layer/dense", "fast/index", "RSS moeref MB", "RSS torch MB")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for size in sizes:
        for thread_count in threads:
            run_s = median(size, thread_count, "moeref literal", "run_s")
            layer = median(size, thread_count, "moeref literal", "layer_s")
            fast = median(size, thread_count, "moeref fast", "layer_s")
            dense = median(size, thread_count, "torch dense", "layer_s")
            index = median(size, thread_count, "torch index", "layer_s")
            rss_moeref = median(size, thread_count, "moeref literal", "peak_rss_mb")
            rss_torch = median(size, thread_count, "torch dense", "peak_rss_mb")
            row = (size, str(thread_count), text(run_s), text(layer), text(fast), text(dense), text(index),
                   ratio(layer, dense), ratio(fast, index), text(rss_moeref, 0), text(rss_torch, 0))
            print("| " + " | ".join(row) + " |")
    print(f"\nload average after {load_after[0]:.2f} (before {load_before[0]:.2f}); moeref traces identical "
          f"across thread counts: {check_digests(results)}")
    return 0


def check_digests(results):
    by_size = {}
    for (size, _, name), records in results.items():
        if name.startswith("moeref"):
            by_size.setdefault((size, name), set()).update(r["digest"] for r in records)
    return "yes" if all(len(d) == 1 for d in by_size.values()) else "NO"


if __name__ == "__main__":
    sys.exit(main())
