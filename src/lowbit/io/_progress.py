"""A progress display for long file work: bytes done, MB/s, ETA and the current tensor (``rich``).

It shows only on a terminal (stderr) and never with ``enabled=False`` (``--quiet``); elsewhere every
call is a no-op, so pipes and logs stay clean.

Example:
    >>> with Progress(1000, "quantize", enabled=False) as bar:
    ...     bar.advance(600, "w1"); bar.advance(400, "w2")
    >>> bar.done
    1000
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["Progress"]


class Progress:
    """Bytes of input processed out of ``total``, with the tensor being worked on."""

    def __init__(self, total: int, what: str, enabled: bool | None = None) -> None:
        self.total, self.what, self.done = int(total), what, 0
        self.enabled = sys.stderr.isatty() if enabled is None else bool(enabled)
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, TextColumn, TimeRemainingColumn, TransferSpeedColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                     TransferSpeedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[tensor]}"),
                                     console=Console(stderr=True), transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.what, total=self.total, tensor="")
        return self

    def advance(self, nbytes: int, tensor: str = "") -> None:
        """Count ``nbytes`` more of input as done, while working on ``tensor``."""
        self.done += int(nbytes)
        if self._bar is not None:
            self._bar.update(self._task, advance=int(nbytes), tensor=tensor)

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
            self._bar = None
