"""Reading and writing moeref traces (format "moeref-trace", versions 1 and 2) with numpy.

The format is spec/trace-format.md. A tensor is {dims, shape, dtype, data} with data flat and
row-major; float32 values are exact decimals, or the strings "NaN", "Infinity", "-Infinity";
negative zero is written -0.0. Dims are single capitals (G S E C M H N B L). In version 2 a
tensor may instead be {dims, shape, dtype, file, sha256}: its values are in a .npy sidecar file
(npy.py), named as sidecars.py says. A packed trace is a .tar of the JSON and its sidecars.
"""

import collections
import hashlib
import json
import os
import shutil
import tempfile

import numpy as np

from . import npy
from .floats import FloatText, float32_array, float32_from_text, float32_texts
from .packed import DirectorySidecars, TarSidecars, is_packed
from .sidecars import (
    arrays_dir_name,
    check_file_field,
    check_sha256_field,
    input_file_name,
    sha256_hex,
    step_file_name,
)

TRACE_FORMAT = "moeref-trace"
# Version 1: every tensor inline. Version 2: at least one tensor in a .npy sidecar.
TRACE_FORMAT_VERSION = 1
TRACE_FORMAT_VERSION_SIDECARS = 2
READABLE_FORMAT_VERSIONS = (TRACE_FORMAT_VERSION, TRACE_FORMAT_VERSION_SIDECARS)

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
    `losses` is a dict name -> numpy.float32; `config` and `capacity` are plain JSON objects.
    `files` says which tensors were read from sidecars: "inputs.NAME" or "steps.NAME" -> the
    tensor's "file" field; `format_version` is the version the trace was read as (1 or 2)."""

    def __init__(self, config, capacity, losses, inputs, steps, generator=None, files=None, format_version=1):
        self.config = config
        self.capacity = capacity
        self.losses = losses
        self.inputs = inputs
        self.steps = steps
        self.generator = generator or {}
        self.files = files or {}
        self.format_version = format_version

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


def _tensor_from_json(obj, field, sidecar):
    """A Tensor from a trace's tensor object. `sidecar` reads a {"file", "sha256"} tensor: a
    _SidecarContext, which refuses one where the trace's version allows none."""
    if not isinstance(obj, dict):
        allowed = "a tensor object {dims, shape, dtype, data} or {dims, shape, dtype, file, sha256}"
        raise ValueError(f"{field}: got a JSON {type(obj).__name__}; allowed: {allowed}")
    for key in ("dims", "shape", "dtype"):
        if key not in obj:
            raise ValueError(f"{field}.{key}: missing; allowed: a required field")
    if "data" in obj and "file" in obj:
        raise ValueError(f'{field}: has both "data" and "file"; allowed: exactly one of them')
    if "data" not in obj and "file" not in obj:
        raise ValueError(f'{field}.data: missing; allowed: "data" (values inline) or "file" (a .npy sidecar)')
    dims, shape, dtype = obj["dims"], obj["shape"], obj["dtype"]
    if not isinstance(dims, list) or not all(isinstance(d, str) and d for d in dims):
        raise ValueError(f"{field}.dims: got {dims!r}; allowed: an array of dim names")
    if not isinstance(shape, list) or len(shape) != len(dims) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
    ):
        raise ValueError(f"{field}.shape: got {shape!r}; allowed: {len(dims)} non-negative integer extents")
    if dtype not in _DTYPES:
        raise ValueError(f'{field}.dtype: got {dtype!r}; allowed: "float32" or "int32"')
    if "file" in obj:
        return Tensor(dims, sidecar.read(obj, dtype, shape))
    data = obj["data"]
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


class _SidecarContext:
    """Reads one tensor's sidecar: checks the "file" and "sha256" fields, the .npy header against
    the trace's dtype and shape, and the file's sha256. `label` names the tensor in errors, as
    `steps[12] (combine_tensor)`; `file_field` names its "file" field, as `steps[12].file`."""

    def __init__(self, sidecars, version, label, file_field, files, key, verified):
        self.sidecars, self.version = sidecars, version
        self.label, self.file_field = label, file_field
        self.files, self.key, self.verified = files, key, verified

    def read(self, obj, dtype, shape):
        if self.version != TRACE_FORMAT_VERSION_SIDECARS:
            raise ValueError(
                f"{self.file_field}: a sidecar in a format_version {self.version} trace; "
                f'allowed: "data" (version 1), or "file" in a format_version {TRACE_FORMAT_VERSION_SIDECARS} trace'
            )
        relative = check_file_field(obj["file"], self.file_field)
        if "sha256" not in obj:
            raise ValueError(f"{self.label}.sha256: missing; allowed: required with \"file\" (64 lowercase hex digits)")
        expected_sha = check_sha256_field(obj["sha256"], f"{self.label}.sha256")
        if self.sidecars is None:
            raise ValueError(f"{self.file_field}: {relative!r} is a sidecar, but the trace was given as text; "
                             "allowed: load_trace(path), or parse_trace(text, base_dir=the trace's directory)")
        self.files[self.key] = relative
        known = (self.key, relative, dtype, tuple(shape), expected_sha)  # never one array for two tensors
        if known in self.verified:
            return self.verified[known]
        blob = self.sidecars.read(relative, self.file_field)
        where = self.sidecars.describe(relative)
        array = npy.array_from_npy(blob, dtype, shape, self.label, where)
        found_sha = sha256_hex(blob)
        if found_sha != expected_sha:
            raise ValueError(f"{self.label}.sha256: sidecar {where}: found {found_sha}; expected {expected_sha}")
        self.verified[known] = array
        return array


def _float32_data(items, field):
    array, needs_text = float32_array(items, field)
    if needs_text:
        raise _NeedsText(field)
    return array


def parse_trace(text, source="trace", base_dir=None):
    """Parses trace text. Raises ValueError with the field, the value and what is allowed.

    Every float32 is read from its decimal text exactly. Numbers are first read as doubles
    (fast); only if some double lies exactly on a float32 rounding midpoint, where rounding
    twice can go the wrong way, is the text read again keeping every number's decimal text.
    A version 2 trace's sidecars are read below `base_dir` (the directory holding the JSON).
    """
    sidecars = None if base_dir is None else DirectorySidecars(os.fspath(base_dir))
    return _parse_text(text, source, sidecars)


def _parse_text(text, source, sidecars):
    verified = {}  # sidecars already read and checked, kept for the second reading
    try:
        return _parse_trace(json.loads(text), source, sidecars, verified)
    except _NeedsText:
        return _parse_trace(json.loads(text, parse_float=FloatText), source, sidecars, verified)


def _parse_trace(doc, source, sidecars, verified):
    if not isinstance(doc, dict) or doc.get("format") != TRACE_FORMAT:
        raise ValueError(f'{source}: not a moeref trace (field "format" must be "{TRACE_FORMAT}")')
    version = doc.get("format_version")
    if type(version) is not int or version not in READABLE_FORMAT_VERSIONS:
        allowed = " or ".join(map(str, READABLE_FORMAT_VERSIONS))
        raise ValueError(f"{source}: format_version: got {version!r}; allowed: {allowed}")
    files = {}

    def sidecar(label, file_field, key):
        return _SidecarContext(sidecars, version, label, file_field, files, key, verified)

    losses = {}
    for name, value in doc.get("losses", {}).items():
        losses[name] = _float32_data([value], f"losses.{name}")[0]
    inputs = collections.OrderedDict()
    for name, obj in doc.get("inputs", {}).items():
        field = f"inputs.{name}"
        inputs[name] = _tensor_from_json(obj, field, sidecar(field, field + ".file", field))
    steps = collections.OrderedDict()
    for i, obj in enumerate(doc.get("steps", [])):
        name = obj.get("name") if isinstance(obj, dict) else None
        if not isinstance(name, str):
            raise ValueError(f"steps[{i}].name: got {name!r}; allowed: a step name string")
        if name in steps:
            raise ValueError(f"steps[{i}].name: got {name!r}; allowed: a name not used by an earlier step")
        context = sidecar(f"steps[{i}] ({name})", f"steps[{i}].file", f"steps.{name}")
        steps[name] = _tensor_from_json(obj, f"steps.{name}", context)
        reads = obj.get("reads")
        if reads is not None:
            if not isinstance(reads, list) or not all(isinstance(r, str) for r in reads):
                raise ValueError(
                    f'steps.{name}.reads: got {reads!r}; allowed: an array of step names and "inputs.NAME"'
                )
            steps[name].reads = reads
    return Trace(
        config=_plain(doc.get("config", {})),
        capacity=_plain(doc.get("capacity", {})),
        losses=losses,
        inputs=inputs,
        steps=steps,
        generator=_plain(doc.get("generator", {})),
        files=files,
        format_version=version,
    )


def load_trace(path):
    """Reads a moeref trace: a .json (format_version 1, or 2 with .npy sidecars), or a packed .tar.

    Every float32 in the JSON is read exactly from its decimal text; a sidecar's values are its
    bits, checked against the trace's dtype, shape and sha256. A tar is recognised by its content.
    """
    path = os.fspath(path)
    if is_packed(path):
        with TarSidecars(path) as members:
            return _parse_text(members.trace_text(), f"packed trace {path}", members)
    with open(path, "r", encoding="utf-8") as f:
        text = f.read()
    return _parse_text(text, f"trace file {path}", DirectorySidecars(os.path.dirname(os.path.abspath(path))))


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


def _tensor_fields(tensor, sidecar=None):
    """The tensor's JSON fields; `sidecar` = (file, sha256) writes those instead of the values."""
    dims = ",".join(json.dumps(d) for d in tensor.dims)
    shape = ",".join(str(int(n)) for n in tensor.shape)
    head = f'"dims":[{dims}],"shape":[{shape}],"dtype":"{tensor.dtype}"'
    if sidecar is not None:
        file, sha = sidecar
        return f'{head},"file":{json.dumps(file)},"sha256":"{sha}"'
    flat = tensor.array.reshape(-1)
    if tensor.dtype == "float32":
        data = ",".join(_quoted(text) for text in float32_texts(flat))
    else:
        data = ",".join(map(str, flat.tolist()))
    return f'{head},"data":[{data}]'


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
    """The trace text, laid out as moeref lays it out (one tensor per line, losses and inputs sorted).

    Every tensor is inline (format_version 1); write_trace(..., sidecars_above=N) writes sidecars.
    """
    return _trace_text(config, steps, losses, inputs, capacity, generator, place=None)


def _trace_text(config, steps, losses, inputs, capacity, generator, place):
    """format_trace's text. `place(section, position, name, tensor)` -> (file, sha256) puts a
    tensor in a sidecar ("inputs" by sorted position, "steps" by index), or None keeps it inline;
    with any sidecar the trace says format_version 2."""
    steps = [(name, _as_tensor(f"steps.{name}", value)) for name, value in _items(steps)]
    # JSON objects have no order: moeref writes losses and inputs sorted by name.
    by_name = dict(key=lambda pair: pair[0])
    inputs = sorted(((name, _as_tensor(f"inputs.{name}", value)) for name, value in _items(inputs or {})), **by_name)
    losses = sorted(((name, np.float32(value)) for name, value in _items(losses or {})), **by_name)
    if generator is None:
        generator = {"program": "moeref-python", "version": "0", "rng": "none"}
    placed = []

    def fields(section, position, name, tensor):
        sidecar = place(section, position, name, tensor) if place else None
        placed.append(sidecar is not None)
        return _tensor_fields(tensor, sidecar)

    compact = dict(separators=(",", ":"), sort_keys=True, ensure_ascii=True, allow_nan=False)
    out = ["{\n"]
    out.append(f'"format": "{TRACE_FORMAT}",\n')
    out.append(None)  # format_version: known once every tensor is placed
    out.append(f'"generator": {json.dumps(generator, **compact)},\n')
    out.append(f'"config": {json.dumps(_plain(config), **compact)},\n')
    out.append(f'"capacity": {json.dumps(_plain(capacity or {}), **compact)},\n')
    loss_texts = float32_texts(np.array([v for _, v in losses], dtype=np.float32))
    out.append('"losses": {' + ", ".join(f"{json.dumps(n)}: {_quoted(t)}" for (n, _), t in zip(losses, loss_texts)))
    out.append("},\n")
    if inputs:
        lines = (f"{json.dumps(n)}: {{{fields('inputs', i, n, t)}}}" for i, (n, t) in enumerate(inputs))
        out.append('"inputs": {\n  ' + ",\n  ".join(lines))
        out.append("\n},\n")
    else:
        out.append('"inputs": {},\n')
    if steps:
        lines = (
            f'{{"name":{json.dumps(n)},{_reads_field(t)}{fields("steps", i, n, t)}}}' for i, (n, t) in enumerate(steps)
        )
        out.append('"steps": [\n  ' + ",\n  ".join(lines))
        out.append("\n]\n}\n")
    else:
        out.append('"steps": []\n}\n')
    version = TRACE_FORMAT_VERSION_SIDECARS if any(placed) else TRACE_FORMAT_VERSION
    out[2] = f'"format_version": {version},\n'
    return "".join(out)


def _items(mapping):
    return mapping.items() if hasattr(mapping, "items") else mapping


def _current_umask():
    mask = os.umask(0)  # reading the umask means setting it: put it back at once
    os.umask(mask)
    return mask


def write_trace(
    path, config, steps, losses=None, inputs=None, capacity=None, generator=None, sidecars_above=None
):
    """Writes a candidate trace in moeref's format.

    `steps` and `inputs`: mappings (or lists of pairs) name -> Tensor or (dims, array); steps
    are written in the order given. Float arrays must be float32; integer and bool arrays are
    written as int32. `losses`: name -> scalar, written as float32. `config`: the resolved
    config (its `variant` must be the golden's). `generator`: {"program", "version", "rng"}.

    `sidecars_above`: None (the default) writes every tensor inline, format_version 1, as moeref
    lays it out. An integer N writes each tensor with more than N elements to a .npy sidecar in
    `NAME.arrays/` beside `NAME.json` (format_version 2 when there is one); moeref's own default
    is 1048576 (sidecars.DEFAULT_SIDECARS_ABOVE).

    Nothing is left half written: sidecars go to a temporary directory and the JSON to a
    temporary file in the same directory; the arrays directory is renamed into place (an old one
    removed), and the JSON last. A trace with no sidecars removes an old `NAME.arrays/` after its
    JSON is in place. Files get the mode the process umask gives a new file (0644
    under umask 022), as moeref's own traces do.
    """
    if sidecars_above is not None and (
        not isinstance(sidecars_above, (int, np.integer)) or isinstance(sidecars_above, bool) or sidecars_above < 0
    ):
        raise ValueError(f"sidecars_above: got {sidecars_above!r}; allowed: None (all inline) or an integer >= 0")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    writer = _SidecarWriter(directory, arrays_dir_name(os.path.basename(path)), sidecars_above)
    tmp = None
    try:
        text = _trace_text(config, steps, losses, inputs, capacity, generator, place=writer.place)
        fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            # mkstemp creates 0600; a golden written by one user must be readable by the next.
            os.fchmod(f.fileno(), 0o666 & ~_current_umask())
        writer.commit()
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        writer.discard()
        raise
    writer.remove_stale()


def _holds_only_sidecars(path):
    """True for a real directory holding only files named as sidecars are (inputs.*.npy,
    steps.*.npy): an earlier trace's, which a new trace at its path may replace. Anything
    else there is the user's and is never removed (moeref decides the same way)."""
    if not os.path.isdir(path) or os.path.islink(path):
        return False
    with os.scandir(path) as entries:
        for entry in entries:
            prefixed = entry.name.startswith("inputs.") or entry.name.startswith("steps.")
            named = prefixed and entry.name.endswith(".npy")
            if not named or entry.is_symlink() or not entry.is_file(follow_symlinks=False):
                return False
    return True


class _SidecarWriter:
    """Writes the sidecars of one write_trace into a temporary directory, then renames it into place."""

    def __init__(self, directory, arrays_name, sidecars_above):
        self.directory, self.arrays_name, self.sidecars_above = directory, arrays_name, sidecars_above
        self.temporary = None
        self.names = set()

    def place(self, section, position, name, tensor):
        if self.sidecars_above is None or tensor.array.size <= self.sidecars_above:
            return None
        if "\\" in self.arrays_name:
            raise ValueError(f"{self.arrays_name}: a sidecar directory name with a backslash; readers refuse it")
        file_name = input_file_name(name, position) if section == "inputs" else step_file_name(name, position)
        if file_name in self.names:
            raise ValueError(f"{section}.{name}: its sidecar name {file_name} is taken by another tensor; rename one")
        self.names.add(file_name)
        if self.temporary is None:
            self.temporary = tempfile.mkdtemp(prefix=self.arrays_name + ".", suffix=".tmp", dir=self.directory)
            os.chmod(self.temporary, 0o777 & ~_current_umask())  # mkdtemp creates 0700
        values = np.ascontiguousarray(tensor.array, dtype=npy.DESCRS[tensor.dtype])
        header = npy.header_bytes(tensor.dtype, tensor.shape)
        digest = hashlib.sha256(header)
        digest.update(memoryview(values).cast("B"))
        # O_EXCL: a fresh file in our own fresh directory; the umask sets its mode, as for the JSON.
        fd = os.open(os.path.join(self.temporary, file_name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(header)
            f.write(memoryview(values).cast("B"))
        return f"{self.arrays_name}/{file_name}", digest.hexdigest()

    def commit(self):
        """Renames the sidecar directory into place; an old one is moved aside first, then removed."""
        if self.temporary is None:
            return
        final = os.path.join(self.directory, self.arrays_name)
        aside = None
        if os.path.lexists(final) and not _holds_only_sidecars(final):
            raise ValueError(
                f"output directory {final}: got an existing directory or file that is not only sidecars; "
                "allowed: the directory of an earlier trace's sidecars (inputs.*.npy, steps.*.npy only), "
                "or no file of that name"
            )
        if os.path.lexists(final):
            aside = tempfile.mkdtemp(prefix=self.arrays_name + ".", suffix=".old", dir=self.directory)
            os.replace(final, aside)  # replaces the empty directory mkdtemp made
        try:
            os.replace(self.temporary, final)
        except BaseException:
            if aside is not None:
                os.replace(aside, final)
            raise
        self.temporary = None
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)

    def remove_stale(self):
        """After an all-inline trace is in place: an arrays directory left by an earlier trace at
        this path belongs to nothing now (moeref removes it too)."""
        final = os.path.join(self.directory, self.arrays_name)
        if self.temporary is None and not self.names and _holds_only_sidecars(final):
            shutil.rmtree(final, ignore_errors=True)

    def discard(self):
        if self.temporary is not None:
            shutil.rmtree(self.temporary, ignore_errors=True)
            self.temporary = None


__all__ = ["Tensor", "Trace", "load_trace", "parse_trace", "write_trace", "format_trace", "format_tensor"]
