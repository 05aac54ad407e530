"""The .npy files of a trace's sidecars: writing them byte for byte, reading them back checked.

A sidecar is NumPy's format version 1.0 (spec/trace-format.md): the magic
``\\x93NUMPY``, the bytes 1 and 0, a little-endian uint16 header length, then the header dict text
as numpy writes it, e.g. ``{'descr': '<f4', 'fortran_order': False, 'shape': (4, 1024, 16, 80), }``,
padded with spaces and a final newline so that the whole header is a multiple of 64 bytes; then
the raw little-endian values in C order. ``numpy.load`` reads it as is.
"""

import ast
import struct

import numpy as np

MAGIC = b"\x93NUMPY"
ALIGNMENT = 64
# The trace's dtype names and the numpy descr a sidecar of that dtype carries.
DESCRS = {"float32": "<f4", "int32": "<i4"}
_NUMPY_DTYPES = {"<f4": np.dtype("<f4"), "<i4": np.dtype("<i4")}
# Versions numpy writes: 1.0 has a uint16 header length; 2.0 (and 3.0, a utf-8 header) a uint32.
_LENGTH_FORMATS = {(1, 0): "<H", (2, 0): "<I", (3, 0): "<I"}


def header_bytes(dtype, shape):
    """The version 1.0 header for a C-order array of a trace dtype ("float32"/"int32") and shape."""
    shape = tuple(int(n) for n in shape)
    # repr of a tuple is numpy's spelling: "(5,)" for 1-D, "()" for 0-D.
    text = "{'descr': '%s', 'fortran_order': False, 'shape': %r, }" % (DESCRS[dtype], shape)
    unpadded = len(MAGIC) + 2 + 2 + len(text) + 1  # the final newline counts
    text += " " * (-unpadded % ALIGNMENT) + "\n"
    if len(text) > 0xFFFF:
        raise ValueError(f"shape {shape}: the .npy header would exceed a version 1.0 header's 65535 bytes")
    return MAGIC + b"\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


def npy_bytes(array):
    """A whole .npy file for a float32 or int32 array: header, then the values' bits in C order."""
    dtype = "int32" if array.dtype == np.int32 else "float32"
    values = np.ascontiguousarray(array, dtype=_NUMPY_DTYPES[DESCRS[dtype]])
    return header_bytes(dtype, array.shape) + values.tobytes()


def array_from_npy(blob, dtype, shape, field, file):
    """The array in a .npy file's bytes (a bytes-like object or uint8 array; viewed, not copied).

    Checks the magic, the version, the descr (the trace's `dtype`), fortran_order, the shape (the
    trace's `shape`) and the size. Errors name `field`, `file`, what was found and what was expected.
    """

    def refuse(what, found, expected):
        raise ValueError(f"{field}.{what}: sidecar {file}: found {found}; expected {expected}")

    view = memoryview(blob)
    if bytes(view[: len(MAGIC)]) != MAGIC:
        refuse("file", f"first bytes {bytes(view[:6])!r}", f"a .npy file starting {MAGIC!r}")
    version = tuple(view[6:8])
    if version not in _LENGTH_FORMATS:
        refuse("file", f".npy format version {version[0]}.{version[1]}", ".npy format version 1.0 (or 2.0, 3.0)")
    length_format = _LENGTH_FORMATS[version]
    prefix = len(MAGIC) + 2 + struct.calcsize(length_format)
    if len(view) < prefix:
        refuse("file", f"{len(view)} bytes", "a whole .npy header")
    (header_length,) = struct.unpack_from(length_format, view, 8)
    if len(view) < prefix + header_length:
        refuse("file", f"{len(view)} bytes", f"at least the {prefix + header_length} bytes its header says")
    text = bytes(view[prefix : prefix + header_length]).decode("utf-8" if version == (3, 0) else "latin1")
    try:
        header = ast.literal_eval(text)  # the dict literal numpy writes; literal_eval runs no code
    except (ValueError, SyntaxError):
        header = None
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        refuse("file", f"header {text.strip()!r}", "a dict with the keys descr, fortran_order and shape")
    if header["descr"] != DESCRS[dtype]:
        refuse("dtype", f"descr {header['descr']!r}", f"{DESCRS[dtype]!r} (the trace's dtype {dtype})")
    if header["fortran_order"] is not False:
        refuse("file", f"fortran_order {header['fortran_order']!r}", "False (C order)")
    expected_shape = tuple(shape)
    if header["shape"] != expected_shape:
        refuse("shape", f"shape {header['shape']!r}", f"{expected_shape!r} (the trace's shape)")
    count = int(np.prod(expected_shape, dtype=np.int64))
    expected_size = prefix + header_length + 4 * count
    if len(view) != expected_size:
        refuse("file", f"{len(view)} bytes", f"{expected_size} (the header, then {count} values of 4 bytes)")
    numpy_dtype = _NUMPY_DTYPES[DESCRS[dtype]]
    array = np.frombuffer(blob, dtype=numpy_dtype, count=count, offset=prefix + header_length)
    # The values are little-endian on disk; a big-endian machine gets native ones for arithmetic.
    return array.astype(numpy_dtype.newbyteorder("="), copy=False).reshape(expected_shape)
