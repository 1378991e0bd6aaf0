"""Writing a file so that a reader never sees half of it."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = ".tmp") -> Iterator[str]:
    """A temporary path beside `target` to write to; renamed onto `target` when the block
    succeeds, removed when it raises (no partial file is ever left behind)."""
    folder = Path(target).parent
    fd, tmp = tempfile.mkstemp(dir=folder if str(folder) else ".", prefix=f".{Path(target).name}.", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
