"""moeref for Python: read and write moeref traces with numpy, and run `moeref check`.

    import moeref
    golden = moeref.load_trace("golden/mtf_top2/default_layer_train.trace.json")
    golden.steps["raw_gates"].dims    # ('G', 'S', 'E')
    golden.steps["raw_gates"].array   # numpy float32, shape (2, 8, 4), read exactly
    moeref.write_trace("cand.json", golden.config, {"raw_gates": (("G", "S", "E"), my_gates)})
    moeref.write_trace("big.json", config, steps, sidecars_above=1 << 20)   # big tensors as .npy
    result = moeref.check("golden.json", "cand.json")   # result.exit_code, result["first_divergent_step"]

Only numpy is needed. See tools/python/README.md and spec/trace-format.md.
"""

from .check import CheckResult, check, find_moeref
from .floats import float32_array, float32_from_text, float32_text
from .pack import pack_trace
from .packed import is_packed
from .sidecars import DEFAULT_SIDECARS_ABOVE
from .trace import (
    READABLE_FORMAT_VERSIONS,
    TRACE_FORMAT,
    TRACE_FORMAT_VERSION,
    TRACE_FORMAT_VERSION_SIDECARS,
    Tensor,
    Trace,
    format_tensor,
    format_trace,
    load_trace,
    parse_trace,
    write_trace,
)

__version__ = "0.1.0"

__all__ = [
    "CheckResult",
    "DEFAULT_SIDECARS_ABOVE",
    "READABLE_FORMAT_VERSIONS",
    "Tensor",
    "Trace",
    "TRACE_FORMAT",
    "TRACE_FORMAT_VERSION",
    "TRACE_FORMAT_VERSION_SIDECARS",
    "check",
    "find_moeref",
    "float32_array",
    "float32_from_text",
    "float32_text",
    "format_tensor",
    "format_trace",
    "is_packed",
    "pack_trace",
    "load_trace",
    "parse_trace",
    "write_trace",
]
