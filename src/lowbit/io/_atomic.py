"""Files that appear complete or not at all (not public).

:func:`atomic_file` hands out a temporary path in the destination folder; leaving the block normally
fsyncs it, renames it over the destination and fsyncs the folder, and an exception removes it, so the
destination is either the previous file or the complete new one.  The streaming safetensors writer
(:class:`lowbit.io._safetensors.SafetensorsWriter`) follows the same steps with its own handle.

Example:
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "doc.txt"
    >>> with atomic_file(target) as tmp:
    ...     _ = tmp.write_text("done")
    >>> target.read_text(), [p.name for p in target.parent.iterdir()]
    ('done', ['doc.txt'])
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lowbit.io._safetensors import _fsync_dir, temp_beside

__all__ = ["atomic_file"]


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` that becomes ``path`` when the block ends without an exception."""
    fd, name = temp_beside(path)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
