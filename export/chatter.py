"""Converters talk: C++ logs of TFLite and OpenVINO, deprecation warnings, progress bars. An export sends all of
it to the bundle's `export.log` and prints only its own progress lines, one per phase.

The capture is at the file-descriptor level because most of the chatter comes from native code that never
sees `sys.stdout`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Iterator

EXPORT_LOG = "export.log"

_terminal: int | None = None  # a duplicate of the real stdout while chatter is captured


def progress(message: str) -> None:
    """A line for the person waiting, whether or not chatter is being captured."""
    if _terminal is None:
        print(message, flush=True)
    else:
        os.write(_terminal, (message + "\n").encode())


@contextlib.contextmanager
def chatter_to(log: Path) -> Iterator[None]:
    """Everything written to stdout and stderr inside goes to `log` (appended); nested uses share the outer log."""
    global _terminal
    if _terminal is not None:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    # Python's own streams too: they need not be the descriptors (a host application or pytest may swap them)
    with open(log, "a", buffering=1) as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        _terminal = saved[0]
        try:
            yield
        finally:
            sink.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            _terminal = None


@contextlib.contextmanager
def phase(what: str) -> Iterator[None]:
    """`what...` now, `what: N s` when done: a long export is never silent for a whole phase."""
    start = time.perf_counter()
    progress(f"  {what}...")
    yield
    progress(f"  {what}: {time.perf_counter() - start:.1f} s")
