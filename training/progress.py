"""Progress bars on long steps, written to stderr and silent when it is not a terminal (CI logs)."""

from __future__ import annotations

import sys
from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_bar(iterable: Iterable[T], desc: str, total: int | None = None, disable: bool = False) -> Iterable[T]:
    return tqdm(iterable, desc=desc, total=total, disable=disable or not sys.stderr.isatty(), leave=False,
                dynamic_ncols=True)
