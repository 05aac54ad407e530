"""Reading and writing moeref traces (format "moeref-trace", version 1) with numpy.

The format is spec/trace-format.md. A tensor is {dims, shape, dtype, data} with data flat and
row-major; float32 values are exact decimals, or the strings "NaN", "Infinity", "-Infinity";
negative zero is written -0.0. Dims are single capitals (G S E C M H N B L).
"""

import collections
import json
import os
import tempfile

import numpy as np

from .floats import FloatText, float32_array, float32_from_text, float32_texts

TRACE_FORMAT = "moeref-trace"
TRACE_FORMAT_VERSION = 1

_DTYPES = {"float32": np.float32, "int32": np.int32}
_INT32 = np.iinfo(np.int32)


class _NeedsText(Exception):
    """A value lies on a float32 rounding midpoint as a double: re-read the file keeping number texts."""


class Tensor:
    """A named-dim tensor: `dims` is a tuple of dim letters, `array` a numpy float32 or int32 array.
    A step read from a trace also has `reads`: the names of the steps and inputs ("inputs.NAME") it
    read, or None when the trace does not say (spec/trace-format.md, "Step dependencies")."""

    __slots__ = ("dims", "array", "reads")

    def __init__(self, dims, array, reads=None):
        self.dims = tuple(dims)
        self.array = array
        self.reads = None if reads is None else list(reads)
        if len(self.dims) != self.array.ndim:
            raise ValueError(f"dims {self.dims} do not match an array of shape {self.array.shape}")

    @property
    def shape(self):
        return self.array.shape

    @property
    def dtype(self):
        return "int32" if self.array.dtype == np.int32 else "float32"

    def __repr__(self):
        named = ", ".join(f"{d}={n}" for d, n in zip(self.dims, self.shape))
        return f"Tensor([{named}], {self.dtype})"


class Trace:
    """A moeref trace. `inputs` and `steps` are ordered dicts name -> Tensor (steps in source order);
    `losses` is a dict name -> numpy.float32; `config` and `capacity` are plain JSON objects."""

    def __init__(self, config, capacity, losses, inputs, steps, generator=None):
        self.config = config
        self.capacity = capacity
        self.losses = losses
        self.inputs = inputs
        self.steps = steps
        self.generator = generator or {}

    def __repr__(self):
        return (
            f"Trace(variant={self.config.get('variant')!r}, inputs={list(self.inputs)}, "
            f"steps={len(self.steps)}, losses={ {k: float(v) for k, v in self.losses.items()} })"
        )


def _plain(value):
    """Config values back to plain JSON types (FloatText -> float)."""
    if isinstance(value, FloatText):
        return float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _tensor_from_json(obj, field):
    if not isinstance(obj, dict):
        allowed = "a tensor object {dims, shape, dtype, data}"
        raise ValueError(f"{field}: got a JSON {type(obj).__name__}; allowed: {allowed}")
    for key in ("dims", "shape", "dtype", "data"):
        if key not in obj:
            raise ValueError(f"{field}.{key}: missing; allowed: a required field")
    dims, shape, dtype, data = obj["dims"], obj["shape"], obj["dtype"], obj["data"]
    if not isinstance(dims, list) or not all(isinstance(d, str) and d for d in dims):
        raise ValueError(f"{field}.dims: got {dims!r}; allowed: an array of dim names")
    if not isinstance(shape, list) or len(shape) != len(dims) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
    ):
        raise ValueError(f"{field}.shape: got {shape!r}; allowed: {len(dims)} non-negative integer extents")
    if dtype not in _DTYPES:
        raise ValueError(f'{field}.dtype: got {dtype!r}; allowed: "float32" or "int32"')
    count = int(np.prod(shape, dtype=np.int64))
    if not isinstance(data, list) or len(data) != count:
        got = f"{len(data)} values" if isinstance(data, list) else type(data).__name__
        raise ValueError(f"{field}.data: got {got}; allowed: an array of {count} values (the product of shape)")
    if dtype == "float32":
        array = _float32_data(data, field + ".data")
    else:
        if set(map(type, data)) <= {int}:
            wide = np.array(data, dtype=np.int64) if data else np.zeros(0, dtype=np.int64)
            bad = np.flatnonzero((wide < _INT32.min) | (wide > _INT32.max))
        else:
            bad = [i for i, item in enumerate(data) if type(item) is not int]
        if len(bad):
            i = int(bad[0])
            raise ValueError(f"{field}.data[{i}]: got {data[i]!r}; allowed: an int32 integer")
        array = np.array(data, dtype=np.int32)
    return Tensor(dims, array.reshape(shape))


def _float32_data(items, field):
    array, needs_text = float32_array(items, field)
    if needs_text:
        raise _NeedsText(field)
    return array


def parse_trace(text, source="trace"):
    """Parses trace text. Raises ValueError with the field, the value and what is allowed.

    Every float32 is read from its decimal text exactly. Numbers are first read as doubles
    (fast); only if some double lies exactly on a float32 rounding midpoint, where rounding
    twice can go the wrong way, is the text read again keeping every number's decimal text.
    """
    try:
        return _parse_trace(json.loads(text), source)
    except _NeedsText:
        return _parse_trace(json.loads(text, parse_float=FloatText), source)


def _parse_trace(doc, source):
    if not isinstance(doc, dict) or doc.get("format") != TRACE_FORMAT:
        raise ValueError(f'{source}: not a moeref trace (field "format" must be "{TRACE_FORMAT}")')
    version = doc.get("format_version")
    if version != TRACE_FORMAT_VERSION or isinstance(version, bool):
        raise ValueError(f"{source}: format_version: got {version!r}; allowed: {TRACE_FORMAT_VERSION}")
    losses = {}
    for name, value in doc.get("losses", {}).items():
        losses[name] = _float32_data([value], f"losses.{name}")[0]
    inputs = collections.OrderedDict()
    for name, obj in doc.get("inputs", {}).items():
        inputs[name] = _tensor_from_json(obj, f"inputs.{name}")
    steps = collections.OrderedDict()
    for i, obj in enumerate(doc.get("steps", [])):
        name = obj.get("name") if isinstance(obj, dict) else None
        if not isinstance(name, str):
            raise ValueError(f"steps[{i}].name: got {name!r}; allowed: a step name string")
        if name in steps:
            raise ValueError(f"steps[{i}].name: got {name!r}; allowed: a name not used by an earlier step")
        steps[name] = _tensor_from_json(obj, f"steps.{name}")
        reads = obj.get("reads")
        if reads is not None:
            if not isinstance(reads, list) or not all(isinstance(r, str) for r in reads):
                raise ValueError(f'steps.{name}.reads: got {reads!r}; allowed: an array of step names and "inputs.NAME"')
            steps[name].reads = reads
    return Trace(
        config=_plain(doc.get("config", {})),
        capacity=_plain(doc.get("capacity", {})),
        losses=losses,
        inputs=inputs,
        steps=steps,
        generator=_plain(doc.get("generator", {})),
    )


def load_trace(path):
    """Reads a moeref trace file. Every float32 is read exactly from its decimal text."""
    with open(path, "r", encoding="utf-8") as f:
        return parse_trace(f.read(), source=f"trace file {path}")


def _as_tensor(name, value):
    """A Tensor, or a (dims, array) pair, to a Tensor with a float32 or int32 array."""
    reads = None
    if isinstance(value, Tensor):
        dims, array, reads = value.dims, value.array, value.reads
    else:
        dims, array = value
    # Torch tensors and the like: anything numpy can take.
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if array.dtype == np.bool_ or np.issubdtype(array.dtype, np.integer):
        if array.size and (array.min() < _INT32.min or array.max() > _INT32.max):
            raise ValueError(f"{name}: integer values outside int32")
        array = array.astype(np.int32)
    elif array.dtype == np.float32:
        pass
    elif np.issubdtype(array.dtype, np.floating):
        # A float64 array would be rounded silently: say so instead.
        allowed = "float32, or an integer or bool dtype (written as int32)"
        raise ValueError(f"{name}: got dtype {array.dtype}; allowed: {allowed}")
    else:
        raise ValueError(f"{name}: got dtype {array.dtype}; allowed: float32, or an integer/bool dtype")
    return Tensor(dims, array, reads)


def _tensor_fields(tensor):
    dims = ",".join(json.dumps(d) for d in tensor.dims)
    shape = ",".join(str(int(n)) for n in tensor.shape)
    flat = tensor.array.reshape(-1)
    if tensor.dtype == "float32":
        data = ",".join(_quoted(text) for text in float32_texts(flat))
    else:
        data = ",".join(map(str, flat.tolist()))
    return f'"dims":[{dims}],"shape":[{shape}],"dtype":"{tensor.dtype}","data":[{data}]'


def format_tensor(dims, array):
    """One tensor as moeref writes it: {"dims":[...],"shape":[...],"dtype":...,"data":[...]}.

    Useful for a config's "inputs" (see spec/trace-format.md, "Inputs: supplied or generated").
    """
    return "{" + _tensor_fields(_as_tensor("tensor", (dims, array))) + "}"


def _reads_field(tensor):
    """'"reads":[...],' for a step that says what it read, else nothing."""
    if tensor.reads is None:
        return ""
    return '"reads":[' + ",".join(json.dumps(r) for r in tensor.reads) + "],"


def _quoted(text):
    """JSON for a float32 text: NaN and the infinities are strings."""
    return text if text[-1].isdigit() else f'"{text}"'


def format_trace(config, steps, losses=None, inputs=None, capacity=None, generator=None):
    """The trace text, laid out as moeref lays it out (one tensor per line, losses and inputs sorted)."""
    steps = [(name, _as_tensor(f"steps.{name}", value)) for name, value in _items(steps)]
    # JSON objects have no order: moeref writes losses and inputs sorted by name.
    by_name = dict(key=lambda pair: pair[0])
    inputs = sorted(((name, _as_tensor(f"inputs.{name}", value)) for name, value in _items(inputs or {})), **by_name)
    losses = sorted(((name, np.float32(value)) for name, value in _items(losses or {})), **by_name)
    if generator is None:
        generator = {"program": "moeref-python", "version": "0", "rng": "none"}
    compact = dict(separators=(",", ":"), sort_keys=True, ensure_ascii=True, allow_nan=False)
    out = ["{\n"]
    out.append(f'"format": "{TRACE_FORMAT}",\n')
    out.append(f'"format_version": {TRACE_FORMAT_VERSION},\n')
    out.append(f'"generator": {json.dumps(generator, **compact)},\n')
    out.append(f'"config": {json.dumps(_plain(config), **compact)},\n')
    out.append(f'"capacity": {json.dumps(_plain(capacity or {}), **compact)},\n')
    loss_texts = float32_texts(np.array([v for _, v in losses], dtype=np.float32))
    out.append('"losses": {' + ", ".join(f"{json.dumps(n)}: {_quoted(t)}" for (n, _), t in zip(losses, loss_texts)))
    out.append("},\n")
    if inputs:
        out.append('"inputs": {\n  ' + ",\n  ".join(f"{json.dumps(n)}: {{{_tensor_fields(t)}}}" for n, t in inputs))
        out.append("\n},\n")
    else:
        out.append('"inputs": {},\n')
    if steps:
        out.append('"steps": [\n  ' + ",\n  ".join(f'{{"name":{json.dumps(n)},{_reads_field(t)}{_tensor_fields(t)}}}' for n, t in steps))
        out.append("\n]\n}\n")
    else:
        out.append('"steps": []\n}\n')
    return "".join(out)


def _items(mapping):
    return mapping.items() if hasattr(mapping, "items") else mapping


def _current_umask():
    mask = os.umask(0)  # reading the umask means setting it: put it back at once
    os.umask(mask)
    return mask


def write_trace(path, config, steps, losses=None, inputs=None, capacity=None, generator=None):
    """Writes a candidate trace in moeref's format.

    `steps` and `inputs`: mappings (or lists of pairs) name -> Tensor or (dims, array); steps
    are written in the order given. Float arrays must be float32; integer and bool arrays are
    written as int32. `losses`: name -> scalar, written as float32. `config`: the resolved
    config (its `variant` must be the golden's). `generator`: {"program", "version", "rng"}.
    The file is written to a temporary name in the same directory, then renamed; it gets the
    mode the process umask gives a new file (0644 under umask 022), as moeref's own traces do.
    """
    text = format_trace(config, steps, losses=losses, inputs=inputs, capacity=capacity, generator=generator)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            # mkstemp creates 0600; a golden written by one user must be readable by the next.
            os.fchmod(f.fileno(), 0o666 & ~_current_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


__all__ = ["Tensor", "Trace", "load_trace", "parse_trace", "write_trace", "format_trace", "format_tensor"]
