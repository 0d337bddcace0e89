"""Progress on long steps, on stderr: a bar on a terminal, and elsewhere (CI logs, nohup, a pipe) one
line every `every` seconds with the count, the rate and the time left, so no logged run is silent."""

from __future__ import annotations

import os
import sys
import time
from typing import Iterable, Iterator, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
LINE_EVERY_SECONDS = float(os.environ.get("CLIPPING_EDGE_PROGRESS_SECONDS", "30"))


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def progress_lines(iterable: Iterable[T], desc: str, total: int | None = None,
                   every: float = LINE_EVERY_SECONDS) -> Iterator[T]:
    start = last = time.perf_counter()
    done = 0
    for item in iterable:
        yield item
        done += 1
        now = time.perf_counter()
        if now - last >= every:
            last = now
            rate = done / (now - start)
            eta = f", {_duration((total - done) / rate)} left" if total and rate > 0 else ""
            of = f"/{total}" if total else ""
            print(f"{desc}: {done}{of} ({rate:.2f}/s{eta})", file=sys.stderr, flush=True)


def progress_bar(iterable: Iterable[T], desc: str, total: int | None = None, disable: bool = False) -> Iterable[T]:
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if disable or os.environ.get("TQDM_DISABLE") == "1":
        return iterable
    if not sys.stderr.isatty():
        return progress_lines(iterable, desc, total)
    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True)
