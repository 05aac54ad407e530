"""Where a trace's sidecars live and how they are named (spec/trace-format.md).

The trace ``DIR/NAME.json`` keeps its sidecars in ``DIR/NAME.arrays/``: ``inputs.<name>.npy``
and ``steps.<index, 4 digits>.<name>.npy``. A tensor's "file" field is that path relative to
DIR, "/" separated; readers refuse an absolute path, a ".." component, an empty component
and a backslash. A symbolic link inside DIR is followed: what it leads to must still pass the
header checks and the sha256 the trace records.
"""

import hashlib
import re

# A name made of these characters is safe as part of a file name on every system.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]+")
# The default of `moeref run --sidecars-above`: tensors with more elements go to sidecars.
DEFAULT_SIDECARS_ABOVE = 1 << 20


def arrays_dir_name(trace_file_name):
    """The sidecar directory's name for a trace file name: "x.trace.json" -> "x.trace.arrays"."""
    has_suffix = trace_file_name.endswith(".json") and len(trace_file_name) > len(".json")
    stem = trace_file_name[: -len(".json")] if has_suffix else trace_file_name
    return stem + ".arrays"


def input_file_name(name, position):
    """inputs.<name>.npy, or inputs.<position>.npy (position in sorted order) for an unsafe name."""
    return f"inputs.{name}.npy" if _SAFE_NAME.fullmatch(name) else f"inputs.{position:04d}.npy"


def step_file_name(name, index):
    """steps.<index>.<name>.npy (index: position in the steps list), or steps.<index>.npy."""
    return f"steps.{index:04d}.{name}.npy" if _SAFE_NAME.fullmatch(name) else f"steps.{index:04d}.npy"


def check_file_field(value, field):
    """Refuses a "file" value that is not a relative "/"-separated path staying below the trace."""
    allowed = 'a relative path below the trace\'s directory, "/" separated (no "..", no "\\", not absolute)'
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field}: got {value!r}; allowed: {allowed}")
    parts = value.split("/")
    if "\\" in value or value.startswith("/") or ".." in parts or "" in parts or "\0" in value:
        raise ValueError(f"{field}: got {value!r}; allowed: {allowed}")
    return value


def check_sha256_field(value, field):
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError(f"{field}: got {value!r}; allowed: 64 lowercase hex digits (the sidecar's sha256)")
    return value


def sha256_hex(blob):
    return hashlib.sha256(blob).hexdigest()
