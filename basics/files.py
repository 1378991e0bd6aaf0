"""Writing a file so that a reader never sees half of it, and a failure is one line."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from basics.errors import BadInput

NAME_MAX = 255  # bytes in one path component on the file systems robust runs on (ext4, xfs, tmpfs, apfs)


def umask() -> int:
    """The process's file-creation mask (reading it means setting it: put it straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = ".tmp") -> Iterator[str]:
    """A temporary path beside `target` to write to; renamed onto `target` when the block
    succeeds, removed when it raises (no partial file is ever left behind).

    The file gets the permissions a plain `open` would give it (0666 less the umask), not
    mkstemp's 0600. A write the disk refuses (full, too large, read-only, a name too long)
    is a one-line `BadInput` naming the target.
    """
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    prefix = f".{target.name[:NAME_MAX - 40]}."  # leave room for mkstemp's random part and the suffix
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=suffix)
    except OSError as e:
        raise BadInput(f"{target}: cannot write in {folder} ({e.strerror or e})") from None
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, target)
    except OSError as e:
        raise BadInput(f"{target}: could not be written ({e.strerror or e}); nothing was left behind") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes(target: str | os.PathLike, data: bytes, suffix: str = ".tmp") -> None:
    """`data` into `target`, atomically (see `atomic_path`). Serialising to memory first means
    a full disk fails in Python's own write, where it is caught, never inside a library's
    writer (HDF5 segfaults on ENOSPC; torch's zip writer turns it into a RuntimeError)."""
    with atomic_path(target, suffix) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
