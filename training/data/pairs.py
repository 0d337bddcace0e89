"""The generic on-disk dataset: a split directory with images and `captions.csv` or `captions.jsonl`.

    my_data/train/captions.csv     image,caption[,label]   (image paths relative to the CSV)
    my_data/train/zeroshot.json    optional: {"classes": [...], "templates": [...], "synonyms": {...}}
    my_data/test/...

`--data` takes a dataset root with split folders, a single split folder, or the name `synthetic`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from clipping_edge.errors import ClippingEdgeError
from clipping_edge.prompts import DEFAULT_TEMPLATES

CAPTION_FILES = ("captions.csv", "captions.jsonl")


@dataclass(frozen=True)
class Pair:
    image: Path
    caption: str
    label: str | None = None


@dataclass
class ZeroShotTask:
    classes: list[str]
    templates: list[str] = field(default_factory=lambda: list(DEFAULT_TEMPLATES))
    synonyms: dict[str, list[str]] = field(default_factory=dict)
    held_out: list[str] = field(default_factory=list)  # classes never seen in training images


@dataclass
class PairSet:
    root: Path
    pairs: list[Pair]
    zero_shot: ZeroShotTask | None

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def captions(self) -> list[str]:
        return [p.caption for p in self.pairs]

    def fingerprint(self) -> str:
        """Changes when the captions or any image file (name, size, mtime) change; cheap on large sets."""
        digest = hashlib.sha256()
        for pair in self.pairs:
            st = os.stat(pair.image)
            digest.update(f"{pair.image.relative_to(self.root)}\0{st.st_size}\0{st.st_mtime_ns}\0{pair.caption}\n".encode())
        return digest.hexdigest()[:16]


def _caption_file(split_dir: Path) -> Path | None:
    return next((split_dir / n for n in CAPTION_FILES if (split_dir / n).is_file()), None)


def resolve_split(data: str | Path, split: str) -> Path:
    """Find the `split` folder of a dataset, generating the built-in synthetic set when asked for by name."""
    if str(data) == "synthetic":
        from .synthetic_cache import default_synthetic

        data = default_synthetic()
    root = Path(data)
    if not root.exists():
        raise ClippingEdgeError(f"dataset {root} does not exist: pass a folder with captions.csv/.jsonl, or 'synthetic'")
    if _caption_file(root / split):
        return root / split
    if _caption_file(root):
        return root
    raise ClippingEdgeError(f"dataset {root} has no {split}/captions.csv or captions.jsonl: "
                            "write one with columns image,caption[,label]")


def _rows(path: Path) -> list[dict[str, str]]:
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"image", "caption"} <= set(reader.fieldnames):
                raise ClippingEdgeError(f"{path} needs a header with columns image,caption (optional label), "
                                        f"found {reader.fieldnames}")
            return list(reader)
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    raise ClippingEdgeError(f"{path} line {n} is not JSON: each line must be "
                                            '{"image": ..., "caption": ...}') from None
    return rows


def read_pairs(split_dir: str | Path, limit: int | None = None) -> PairSet:
    split_dir = Path(split_dir)
    path = _caption_file(split_dir)
    if path is None:
        raise ClippingEdgeError(f"{split_dir} has no captions.csv or captions.jsonl: write one with columns image,caption")
    pairs = []
    for n, row in enumerate(_rows(path)[:limit], 2):
        if not row.get("image") or not row.get("caption"):
            raise ClippingEdgeError(f"{path} row {n} has an empty image or caption: fill it or drop the row")
        image = split_dir / row["image"]
        pairs.append(Pair(image, row["caption"], row.get("label") or None))
    if not pairs:
        raise ClippingEdgeError(f"{path} has no rows: add image,caption pairs")
    missing = [p.image for p in pairs[:1000] if not p.image.is_file()]
    if missing:
        raise ClippingEdgeError(f"{path} names images that do not exist, e.g. {missing[0]}: fix the paths (relative to the file)")
    return PairSet(split_dir, pairs, _zero_shot(split_dir))


def _zero_shot(split_dir: Path) -> ZeroShotTask | None:
    for folder in (split_dir, split_dir.parent):
        path = folder / "zeroshot.json"
        if path.is_file():
            spec = json.loads(path.read_text())
            return ZeroShotTask(classes=spec["classes"], templates=spec.get("templates") or list(DEFAULT_TEMPLATES),
                                synonyms=spec.get("synonyms", {}), held_out=spec.get("held_out", []))
    return None
