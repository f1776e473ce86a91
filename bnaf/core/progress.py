r"""Progress of long loops (conventions, item 10): UCI and VAE epochs, toy iterations.

On a terminal (``stderr`` is a TTY) a bar with the time left is drawn on ``stderr`` and each
log line is printed above it; anywhere else (a Snakemake log file) nothing is drawn and each
log line is printed as it is, so a log holds exactly the loop's own lines.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any, TextIO

__all__ = ["Progress", "print_line"]


def print_line(line: str) -> None:
    r"""Print ``line`` to ``stdout`` at once (a log file shows it as soon as it is written)."""
    print(line, flush=True)


class Progress:
    r"""A progress bar on a terminal, a plain log elsewhere.

    Arguments:
        total: the number of steps of the whole loop (epochs, iterations).
        desc: a short name shown before the bar.
        unit: what a step is (``"epoch"``, ``"it"``).
        initial: steps already done (a resumed run).
        log: what prints one log line (:func:`print_line` by default).
        stream: where the bar goes; ``stderr`` by default.

    Example:
        >>> with Progress(3, "demo", "epoch", log=lambda line: None) as progress:
        ...     for epoch in range(3):
        ...         progress.advance()
        ...         progress.log(f"epoch {epoch + 1}")
    """

    def __init__(
        self,
        total: int,
        desc: str,
        unit: str,
        initial: int = 0,
        log: Callable[[str], Any] = print_line,
        stream: TextIO | None = None,
    ) -> None:
        stream = sys.stderr if stream is None else stream
        self._log = log
        self.bar: Any = None
        isatty = getattr(stream, "isatty", None)
        if isatty is not None and isatty():
            from tqdm import tqdm

            # leave=False: the log lines stay on the screen, the finished bar goes.
            self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, file=stream,
                            dynamic_ncols=True, leave=False)  # fmt: skip

    def advance(self, steps: int = 1) -> None:
        r"""Count ``steps`` more steps done (nothing to do without a bar)."""
        if self.bar is not None:
            self.bar.update(steps)

    def log(self, line: str) -> None:
        r"""Print one log line; on a terminal the bar is cleared first and redrawn after."""
        if self.bar is None:
            self._log(line)
            return
        with self.bar.external_write_mode():
            self._log(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
