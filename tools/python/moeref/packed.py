"""Where a trace's sidecars are read from: the trace's directory, or a packed .tar.

`moeref pack TRACE -o OUT.tar` writes a POSIX ustar archive: first `trace.json`, then one member
per sidecar under `trace.arrays/`. It is uncompressed, so each member is read in place, without
unpacking anything to disk. A tar is recognised by its content (the ustar magic at offset 257),
not by its name.
"""

import os
import tarfile

import numpy as np

_USTAR_MAGIC_OFFSET = 257
PACKED_TRACE_MEMBER = "trace.json"
PACKED_ARRAYS_DIR = "trace.arrays"


def is_packed(path):
    """True when the file at `path` is a tar archive (ustar or GNU tar), whatever its name."""
    with open(path, "rb") as f:
        block = f.read(512)
    return len(block) == 512 and block[_USTAR_MAGIC_OFFSET : _USTAR_MAGIC_OFFSET + 5] == b"ustar"


def _read_exactly(f, size, what):
    """`size` bytes from `f` into a new writable uint8 array, so arrays viewing it are writable too.

    numpy.empty rather than bytearray: a bytearray is zero-filled first, which costs as much as
    the read itself on a large sidecar."""
    blob = np.empty(size, dtype=np.uint8)
    view = memoryview(blob)
    done = 0
    while done < size:
        got = f.readinto(view[done:])  # one read(2) is capped near 2 GiB: loop
        if not got:
            raise ValueError(f"{what}: ends after {done} bytes; expected {size}")
        done += got
    return blob


class DirectorySidecars:
    """Sidecars as files below the directory holding the trace JSON."""

    def __init__(self, directory):
        self.directory = directory

    def describe(self, relative):
        return os.path.join(self.directory, *relative.split("/"))

    def read(self, relative, field):
        path = self.describe(relative)
        try:
            with open(path, "rb", buffering=0) as f:
                return _read_exactly(f, os.fstat(f.fileno()).st_size, f"{field}: sidecar {path}")
        except OSError as error:
            message = f"{field}: sidecar {path}: cannot be read ({error.strerror}); expected the .npy file"
            raise ValueError(message) from None


class TarSidecars:
    """The members of a packed trace, read in place from the archive."""

    def __init__(self, path):
        self.path = path
        try:
            with tarfile.open(path, "r:") as archive:
                members = archive.getmembers()
        except tarfile.TarError as error:
            raise ValueError(f"packed trace {path}: not a readable uncompressed tar ({error})") from None
        self.members = {}
        for member in members:
            name = member.name[2:] if member.name.startswith("./") else member.name
            self.members[name] = member
        self.file = open(path, "rb", buffering=0)

    def close(self):
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def describe(self, relative):
        return f"{self.path}:{relative}"

    def read(self, relative, field):
        member = self.members.get(relative)
        where = self.describe(relative)
        if member is None:
            raise ValueError(f"{field}: sidecar {where}: no such member in the archive; expected the .npy file")
        if not member.isreg() or member.issparse():
            raise ValueError(f"{field}: sidecar {where}: a tar member of type {member.type!r}; expected a regular file")
        self.file.seek(member.offset_data)
        return _read_exactly(self.file, member.size, f"{field}: sidecar {where}")

    def trace_text(self):
        """The text of the archive's trace.json."""
        blob = self.read(PACKED_TRACE_MEMBER, f"packed trace {self.path}")
        try:
            return blob.tobytes().decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"{self.describe(PACKED_TRACE_MEMBER)}: not UTF-8 ({error})") from None
