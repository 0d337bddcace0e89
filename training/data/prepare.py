"""`clipping-edge data prepare NAME`: real image-text sets that ship in Debian packages, written in the
generic format (train/val/test folders with images/ + captions.csv, and zeroshot.json).

Each preparer reads the upstream file formats, so a user's own download works through `source`:

- fashion-mnist: the four IDX files (`{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`); the
  upstream test set stays the test split, the validation split is drawn from the training set.
- emoji: Unicode's `emoji-test.txt` (fully-qualified lines), rendered with Noto Color Emoji;
  labels are the CLDR subgroups (or groups).
- openclipart: `png/<category>/...png` with titles, keywords and descriptions from the RDF
  metadata of the matching `svg/<category>/...svg`; labels are the top-level categories.
- tuxpaint: Tux Paint's stamps, `<category>/.../<stamp>.png` beside `<stamp>.txt`, whose first line is
  the stamp's English description; labels are the top-level categories.

Splits are drawn by a seed, stratified by label; everything is written atomically.
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import Callable

from clipping_edge.errors import ClippingEdgeError

from .sources.common import Prepared
from .sources.emoji import prepare_emoji
from .sources.fashion_mnist import prepare_fashion_mnist
from .sources.openclipart import prepare_openclipart
from .sources.tuxpaint import prepare_tuxpaint

PREPARERS: dict[str, Callable[..., Prepared]] = {
    "fashion-mnist": prepare_fashion_mnist,
    "emoji": prepare_emoji,
    "openclipart": prepare_openclipart,
    "tuxpaint": prepare_tuxpaint,
}


def prepare(name: str, out: str | Path, **options) -> Prepared:
    """Run the preparer called `name`; options it does not take are an error, not silently ignored."""
    if name not in PREPARERS:
        raise ClippingEdgeError(f"unknown dataset {name!r}: choose one of {', '.join(PREPARERS)}")
    preparer = PREPARERS[name]
    accepted = set(inspect.signature(preparer).parameters)
    unknown = sorted(set(options) - accepted)
    if unknown:
        flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
        raise ClippingEdgeError(f"{flags} does not apply to {name}: drop it")
    from clipping_edge.atomic import check_replaceable

    # Before reading thousands of source files: a refusal should cost nothing.
    check_replaceable(out, "dataset", [options.get("source")], options.get("force", False))
    start = time.perf_counter()
    done = preparer(out, **options)
    done.seconds = time.perf_counter() - start
    return done
