"""Writing cache files so that a full disk or a file-size limit is one clear error, never a crash.

HDF5 reports write failures from inside its buffers (tracebacks at every object's release, then
possibly a segfault), so every HDF5 file is checked for room before it is written (free space and
the process's file-size limit), and small files are written here with plain file I/O. (A disk
filled by another process during the write itself can still surprise HDF5.)
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
from pathlib import Path

from ser.errors import write_failure

MARGIN_BYTES = 64 * 2**10  # the file's own metadata and attributes
OBJECT_BYTES = 8 * 2**10  # HDF5 headers and chunk index of one stored utterance
MARGIN_SHARE = 0.05


def write_bytes(final: Path, temporary: Path, data: bytes) -> None:
    """Write `data` to `temporary` and rename it onto `final`; a failure leaves neither a partial
    file nor the temporary, and raises WriteError naming the path and the cause."""
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, final)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise write_failure(final, error) from None


def check_room(path: Path, payload_bytes: int, objects: int = 1) -> None:
    """WriteError unless the file system's free space and the process's file-size limit both leave
    room for an HDF5 file of `objects` utterances holding about `payload_bytes` at `path`."""
    needed = int(payload_bytes * (1 + MARGIN_SHARE)) + MARGIN_BYTES + OBJECT_BYTES * objects
    soft_limit, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft_limit != resource.RLIM_INFINITY and soft_limit < needed:
        raise write_failure(path, OSError(errno.EFBIG, os.strerror(errno.EFBIG), str(path)))
    if shutil.disk_usage(path.parent).free < needed:
        raise write_failure(path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)))
