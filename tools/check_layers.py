#!/usr/bin/env python3
"""Fails when an #include points up the layers of spec/adding-a-variant.md ("Layers").

    tools/check_layers.py [REPO]

Each source file under include/moeref/ and src/ belongs to one layer; it may include
headers of the layers listed for it. Prints every arrow back up and exits 1 if any.
"""
import pathlib
import re
import sys

# What each layer may include (itself included).
ALLOWED = {
    "base": {"base"},
    "ops": {"base", "ops"},
    "config": {"base", "config"},
    "frame": {"base", "ops", "config", "frame"},
    "layers": {"base", "ops", "config", "frame", "layers"},
    "variants": {"base", "ops", "config", "frame", "layers"},
    "run": {"base", "ops", "config", "frame", "layers", "variants", "run"},
    "check": {"base", "ops", "config", "frame", "layers", "run", "check"},
    "teach": {"base", "ops", "config", "frame", "layers", "run", "check", "teach"},
    "cli": {"base", "ops", "config", "frame", "layers", "run", "check", "teach", "cli"},
}

# Headers and sources directly under include/moeref/ and src/, by stem.
TOP_LEVEL = {
    "tensor": "base", "tensor_buffer": "base", "rng": "base", "json_number": "base", "json_decimal": "base", "streamed_file": "base", "error": "base", "atomic_file": "base", "mapped_text": "base",
    "trace": "base", "trace_data_text": "base", "trace_files": "base", "npy": "base", "sha256": "base", "ustar": "base",
    "tolerance": "base", "run_observer": "base", "step_bounds": "check",
    "config": "config", "hparams": "config", "inputs": "config", "dims": "config",
    "near_tie": "frame", "variant": "frame",
    "registry": "run", "run": "run", "config_reader": "run", "step_selection": "run",
    "group_shards": "run",
    "check": "check",
    "moeref": "cli",  # the public API header includes every layer
}

# Folders: include/moeref/<folder>/ and src/<folder>/.
FOLDERS = {
    "ops": "ops", "config": "config", "frame": "frame", "layers": "layers", "variants": "variants",
    "run": "run", "trace": "base", "check": "check", "teach": "teach", "cli": "cli",
}


def layer_of(relative):
    """The layer of a path relative to include/moeref/ or src/, or None when unknown."""
    parts = relative.parts
    if len(parts) == 1:
        return TOP_LEVEL.get(pathlib.Path(parts[0]).stem)
    return FOLDERS.get(parts[0])


def main():
    repo = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parent.parent)
    problems = []
    files = sorted((repo / "include" / "moeref").rglob("*.hpp")) + sorted((repo / "src").rglob("*.[ch]pp"))
    for path in files:
        base = repo / "include" / "moeref" if path.is_relative_to(repo / "include") else repo / "src"
        layer = layer_of(path.relative_to(base))
        if layer is None:
            problems.append(f"{path.relative_to(repo)}: in no layer (add it to tools/check_layers.py)")
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            match = re.match(r'\s*#\s*include\s+"moeref/([^"]+)"', line)
            if not match:
                continue
            target = layer_of(pathlib.PurePosixPath(match.group(1)))
            if target is None:
                problems.append(f"{path.relative_to(repo)}:{number}: includes moeref/{match.group(1)}, in no layer")
            elif target not in ALLOWED[layer]:
                problems.append(f"{path.relative_to(repo)}:{number}: {layer} includes {target} (moeref/{match.group(1)})")
    for problem in problems:
        print(problem)
    print(f"{len(files)} files, {len(problems)} arrows back up or unplaced files")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
