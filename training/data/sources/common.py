"""What every source of `clipping-edge data prepare` shares: a sample, the stratified split, the writer of the
generic format (train/val/test folders with images/ + captions.csv, and zeroshot.json), written atomically."""

from __future__ import annotations

import csv
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from PIL import Image

from clipping_edge.errors import ClippingEdgeError

SPLITS = ("train", "val", "test")


@dataclass
class Sample:
    label: str
    caption: str
    load: Callable[[], Image.Image | None]  # decoded only when written: some sources are too big to hold
    group: str = ""  # samples of one group share a split (an emoji and its skin-tone variants)
    split: str | None = None  # a split fixed upstream (Fashion-MNIST's test set)


@dataclass
class Prepared:
    name: str
    out: Path
    counts: dict[str, int]
    classes: list[str]
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0  # reading the source and writing, set by prepare()


def missing_source(what: str, path: Path, packages: str) -> ClippingEdgeError:
    return ClippingEdgeError(f"{what} not found at {path}: install it (apt-get install -y --no-install-recommends "
                             f"{packages}) or pass --source PATH")


def with_article(phrase: str) -> str:
    """'a grinning face', 'an ankle boot'; plural heads ('folded hands') and 'the ...' take none."""
    head = re.split(r" with | in | on |[,:(]", phrase)[0].split()
    last = head[-1].lower() if head else ""
    if not phrase[:1].isalpha() or phrase.startswith("the ") or (last.endswith("s") and not last.endswith(("ss", "us", "is"))):
        return phrase
    return ("an " if phrase[0].lower() in "aeiou" else "a ") + phrase


def keep_per_class(samples: list[Sample], per_class: int | None) -> list[Sample]:
    if per_class is None:
        return samples
    seen: dict[str, int] = {}
    kept = []
    for s in samples:
        if seen.get(s.label, 0) < per_class:
            seen[s.label] = seen.get(s.label, 0) + 1
            kept.append(s)
    return kept


def assign_splits(samples: list[Sample], seed: int, val: float = 0.1, test: float = 0.1) -> list[str]:
    """A split per sample: fixed ones kept, the rest by group, stratified by label, fixed by `seed`."""
    groups: dict[str, dict[str, None]] = {}  # label -> its groups in first-seen order
    for i, s in enumerate(samples):
        if s.split is None:
            groups.setdefault(s.label, {})[s.group or f"#{i}"] = None
    where: dict[tuple[str, str], str] = {}
    for label, members in groups.items():
        order = list(members)
        random.Random(f"{seed}/{label}").shuffle(order)
        # Round, but give any class with three or more groups one test and one validation group:
        # otherwise small classes would never be evaluated.
        n = len(order)
        n_test = max(round(n * test), 1 if test > 0 and n >= 3 else 0)
        n_val = max(round(n * val), 1 if val > 0 and n >= 3 else 0)
        for k, g in enumerate(order):
            where[label, g] = "test" if k < n_test else "val" if k < n_test + n_val else "train"
    return [s.split or where[s.label, s.group or f"#{i}"] for i, s in enumerate(samples)]


def write_generic(out: str | Path, name: str, samples: list[Sample], zero_shot: dict, seed: int, info: dict,
                  val: float = 0.1, test: float = 0.1, progress: bool = True, force: bool = False) -> Prepared:
    """Split `samples` and write them as PNGs + captions.csv per split, zeroshot.json and dataset.json."""
    from clipping_edge.atomic import atomic_directory, write_json_atomic

    from ...progress import progress_bar

    if not samples:
        raise ClippingEdgeError(f"{name}: no samples to write: check --source and --limit-per-class")
    splits = assign_splits(samples, seed, val, test)
    counts = dict.fromkeys(SPLITS, 0)
    unreadable = 0
    out = Path(out)
    with atomic_directory(out, "dataset", inputs=[info.get("source")], force=force) as tmp:
        files, writers = {}, {}
        try:
            for split in SPLITS:
                (tmp / split / "images").mkdir(parents=True)
                files[split] = open(tmp / split / "captions.csv", "w", newline="", encoding="utf-8")
                writers[split] = csv.writer(files[split])
                writers[split].writerow(["image", "caption", "label"])
            for sample, split in progress_bar(zip(samples, splits), desc=f"writing {name}", total=len(samples),
                                              disable=not progress):
                image = sample.load()
                if image is None:
                    unreadable += 1
                    continue
                rel = f"images/{counts[split]:06d}.png"
                image.save(tmp / split / rel)
                writers[split].writerow([rel, sample.caption, sample.label])
                counts[split] += 1
        finally:
            for f in files.values():
                f.close()
        for split in SPLITS:
            if counts[split] == 0:  # an empty captions.csv would fail to read: leave the split out
                shutil.rmtree(tmp / split)
        write_json_atomic(tmp / "zeroshot.json", zero_shot)
        write_json_atomic(tmp / "dataset.json", {"name": name, "seed": seed, "counts": counts, **info})
    skipped = {k: v for k, v in info.get("skipped", {}).items() if v}
    if unreadable:
        skipped["unreadable"] = unreadable
    return Prepared(name, out, counts, list(zero_shot["classes"]), skipped)


# -- Fashion-MNIST ----------------------------------------------------------------------------------
