#!/usr/bin/env python3
"""Validates every golden config and trace against spec/config.schema.json and
spec/trace.schema.json (Debian's python3-jsonschema). Exit 0 when all are valid.

Usage: tools/validate_schemas.py [REPO_ROOT]
"""
import json
import pathlib
import sys

import jsonschema


def to_sidecar(tensor: dict, file: str) -> None:
    """Replaces a tensor's data by a sidecar reference, as format_version 2 writes it."""
    tensor.pop("data")
    tensor.update(file=file, sha256="0123456789abcdef" * 4)


def main() -> int:
    repo = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parent.parent)
    config_schema = json.loads((repo / "spec/config.schema.json").read_text())
    trace_schema = json.loads((repo / "spec/trace.schema.json").read_text())
    # The $ids use the reserved .invalid domain: every reference resolves from this store, offline.
    store = {config_schema["$id"]: config_schema, trace_schema["$id"]: trace_schema}
    checked = failed = 0
    for schema, pattern in ((config_schema, "golden/*/cases/*.config.json"), (trace_schema, "golden/*/*.trace.json")):
        jsonschema.Draft202012Validator.check_schema(schema)
        resolver = jsonschema.RefResolver.from_schema(schema, store=store)
        validator = jsonschema.Draft202012Validator(schema, resolver=resolver)
        for path in sorted(repo.glob(pattern)):
            checked += 1
            errors = list(validator.iter_errors(json.loads(path.read_text())))
            for error in errors[:3]:
                print(f"{path.relative_to(repo)}: {'/'.join(map(str, error.absolute_path))}: {error.message[:200]}")
            failed += bool(errors)
    # The schemas must also reject what moeref rejects: break a valid trace in known ways.
    resolver = jsonschema.RefResolver.from_schema(trace_schema, store=store)
    trace_validator = jsonschema.Draft202012Validator(trace_schema, resolver=resolver)
    sample = json.loads(next(iter(sorted(repo.glob("golden/*/*.trace.json")))).read_text())
    breakages = {
        "unknown dtype": lambda t: t["steps"][0].update(dtype="float64"),
        "tensor without data": lambda t: t["steps"][0].pop("data"),
        "int32 data holding a fraction": lambda t: next(s for s in t["steps"] if s["dtype"] == "int32")["data"].__setitem__(0, 0.5),
        "wrong format name": lambda t: t.update(format="other"),
        "inputs inside config": lambda t: t["config"].update(inputs={}),
        "unknown config field": lambda t: t["config"].update(colour="blue"),
        "a sidecar in a version-1 trace": lambda t: to_sidecar(t["steps"][0], "t.arrays/steps.0000.x.npy"),
        "both data and file": lambda t: (t.update(format_version=2), t["steps"][0].update(file="t.arrays/a.npy", sha256="0" * 64)),
        "a sidecar path with '..'": lambda t: (t.update(format_version=2), to_sidecar(t["steps"][0], "t.arrays/../a.npy")),
        "an absolute sidecar path": lambda t: (t.update(format_version=2), to_sidecar(t["steps"][0], "/tmp/a.npy")),
        "a sidecar without sha256": lambda t: (t.update(format_version=2), to_sidecar(t["steps"][0], "a.npy"), t["steps"][0].pop("sha256")),
        "format_version 3": lambda t: t.update(format_version=3),
    }
    # Version 2: the same trace with a tensor in a sidecar is valid.
    sidecar_sample = json.loads(json.dumps(sample))
    sidecar_sample["format_version"] = 2
    to_sidecar(sidecar_sample["steps"][0], "t.arrays/steps.0000.x.npy")
    checked += 1
    for error in list(trace_validator.iter_errors(sidecar_sample))[:3]:
        print(f"version-2 sample: {'/'.join(map(str, error.absolute_path))}: {error.message[:200]}")
        failed += 1
    for what, breakage in breakages.items():
        broken = json.loads(json.dumps(sample))
        breakage(broken)
        checked += 1
        if trace_validator.is_valid(broken):
            print(f"schema accepted a trace with {what}")
            failed += 1
    print(f"{checked - failed} passed, {failed} failed")
    return 1 if failed or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
