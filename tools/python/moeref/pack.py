"""pack_trace: a trace and its sidecars as one uncompressed tar, as `moeref pack` writes it.

The archive (POSIX ustar) holds `trace.json` first, then one member per sidecar under
`trace.arrays/`, in trace order; trace.json's "file" fields say `trace.arrays/...`, and each
member's bytes are the sidecar's (same sha256). Every member has mtime 0, uid/gid 0, no owner
names and mode 0644, so packing the same trace twice gives the same bytes. `tar -xf` unpacks it
into a trace anyone can read; load_trace reads it in place.
"""

import io
import json
import os
import tarfile
import tempfile

from .packed import PACKED_ARRAYS_DIR, PACKED_TRACE_MEMBER, is_packed
from .trace import _current_umask, load_trace


def _member(name, size):
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def pack_trace(path, out):
    """Packs the trace JSON at `path` (version 1 or 2) and its sidecars into the tar `out`.

    The trace is read and checked first (every sidecar's sha256). The tar is written to a
    temporary file beside `out`, then renamed; it gets the mode the umask gives a new file.
    """
    path, out = os.fspath(path), os.fspath(out)
    if is_packed(path):
        raise ValueError(f"pack_trace: {path} is already a packed trace; allowed: a trace .json")
    trace = load_trace(path)
    with open(path, "r", encoding="utf-8") as f:
        text = f.read()
    renamed = {}
    for key, relative in trace.files.items():
        member = f"{PACKED_ARRAYS_DIR}/{relative.split('/')[-1]}"
        if member in renamed.values():
            raise ValueError(f"pack_trace: {key}: a second sidecar named {member}; allowed: distinct file names")
        # moeref lays a tensor out as {"dims":...,"file":"...","sha256":...}: rewrite that field only.
        field = '"file":' + json.dumps(relative)
        if text.count(field) != 1:
            raise ValueError(f"pack_trace: {key}: its {field} is not written once, as moeref writes it")
        text = text.replace(field, '"file":' + json.dumps(member))
        renamed[relative] = member
    directory = os.path.dirname(os.path.abspath(path))
    out_directory = os.path.dirname(os.path.abspath(out))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(out) + ".", suffix=".tmp", dir=out_directory)
    try:
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as archive:
                encoded = text.encode("utf-8")
                archive.addfile(_member(PACKED_TRACE_MEMBER, len(encoded)), io.BytesIO(encoded))
                for relative, member in renamed.items():
                    with open(os.path.join(directory, *relative.split("/")), "rb") as sidecar:
                        size = os.fstat(sidecar.fileno()).st_size
                        archive.addfile(_member(member, size), sidecar)
            os.fchmod(raw.fileno(), 0o666 & ~_current_umask())
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
