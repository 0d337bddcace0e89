"""The generic on-disk dataset: a split directory with images and `captions.csv` or `captions.jsonl`.

    my_data/train/captions.csv     image,caption[,label]   (image paths relative to the CSV)
    my_data/train/zeroshot.json    optional: {"classes": [...], "templates": [...], "synonyms": {...}}
    my_data/test/...

`--data` takes a dataset root with split folders, a single split folder, the name `synthetic`,
webdataset-style `.tar` shards (see shards.py), or several of these joined with `+`: a mixture that
trains on all their training splits and evaluates on the first one's test split and zero-shot task.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from clipping_edge.errors import ClippingEdgeError
from clipping_edge.prompts import DEFAULT_TEMPLATES, check_synonyms, check_templates

from .shards import (
    SPLIT_WORDS,
    ShardSplit,
    TarMember,
    find_shards,
    is_shard_pattern,
    read_shard_split,
)

CAPTION_FILES = ("captions.csv", "captions.jsonl")


@dataclass(frozen=True)
class Pair:
    image: Path  # the image file, or the shard that holds it as `member`
    caption: str
    label: str | None = None
    member: TarMember | None = None

    def source(self) -> Path | bytes:
        """What load_image reads: the file's path, or the shard member's bytes (one seek, one read)."""
        return self.image if self.member is None else self.member.read(self.image)

    @property
    def name(self) -> str:
        return str(self.image) if self.member is None else f"{self.image}:{self.member.name}"


@dataclass(frozen=True)
class Mixture:
    """`--data a+b`: the training splits of several datasets, read as one."""

    parts: tuple["SplitSource", ...]

    def __str__(self) -> str:
        return " + ".join(str(p) for p in self.parts)


# What resolve_split finds and read_pairs reads.
SplitSource = Union[Path, ShardSplit, Mixture]


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
    parts: list["PairSet"] = field(default_factory=list)  # a mixture's datasets, in order; root is the first's

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def captions(self) -> list[str]:
        return [p.caption for p in self.pairs]

    def fingerprint(self) -> str:
        """Changes when the captions or any image file (name, size, mtime) change; cheap on large sets.
        A shard member counts by its shard's size and mtime and its member name; a mixture by its parts."""
        digest = hashlib.sha256()
        if self.parts:
            for part in self.parts:
                digest.update(f"{part.fingerprint()}\0{len(part)}\n".encode())
            return "mix-" + digest.hexdigest()[:12]
        shard_stats: dict[Path, os.stat_result] = {}
        for pair in self.pairs:
            if pair.member is None:
                st, name = os.stat(pair.image), _relative(pair.image, self.root)
            else:
                st = shard_stats.get(pair.image) or shard_stats.setdefault(pair.image, os.stat(pair.image))
                name = f"{_relative(pair.image, self.root)}:{pair.member.name}"
            digest.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\0{pair.caption}\n".encode())
        return digest.hexdigest()[:16]


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:  # a PairSet built by hand with its images elsewhere
        return str(path)


def _caption_file(split_dir: Path) -> Path | None:
    return next((split_dir / n for n in CAPTION_FILES if (split_dir / n).is_file()), None)


def resolve_split(data: str | Path, split: str) -> SplitSource:
    """Find the `split` of a dataset (a folder, shards, or `a+b` mixture), generating the built-in
    synthetic set when asked for by name. The result is what read_pairs reads."""
    text = str(data)
    if text == "synthetic":
        from .synthetic_cache import default_synthetic

        data = text = str(default_synthetic())
    if "+" in text and not Path(text).exists():
        names = text.split("+")
        if not all(n.strip() for n in names):
            raise ClippingEdgeError(f"dataset {text!r} has an empty part: join datasets as a+b")
        if split != "train":  # a mixture trains on all, but is evaluated on its first dataset
            return resolve_split(names[0].strip(), split)
        return Mixture(tuple(resolve_split(n.strip(), split) for n in names))
    root = Path(text)
    if not root.exists() and not is_shard_pattern(text):
        raise ClippingEdgeError(f"dataset {root} does not exist: pass a folder with captions.csv/.jsonl, .tar shards, "
                                "or 'synthetic'")
    if _caption_file(root / split):
        return root / split
    shards = find_shards(text, split)
    if shards is not None:
        return shards
    if _caption_file(root):
        return root
    raise ClippingEdgeError(f"dataset {root} has no {split}/captions.csv or captions.jsonl: "
                            "write one with columns image,caption[,label]")


def dataset_splits(data: str | Path) -> tuple[Path, dict[str, Path]]:
    """A generic-format dataset's root and split folders by name ('' when the folder is its own split)."""
    text = str(data)
    if text == "synthetic":
        from .synthetic_cache import default_synthetic

        text = str(default_synthetic())
    root = Path(text)
    if not root.is_dir():
        raise ClippingEdgeError(f"dataset {root} is not a folder: pass a dataset in the generic format "
                                "(split folders with captions.csv)")
    splits = {s: root / s for s in SPLIT_WORDS if _caption_file(root / s)}
    if not splits and _caption_file(root):
        splits = {"": root}
    if not splits:
        raise ClippingEdgeError(f"dataset {root} has no train/, val/ or test/ folder with captions.csv or "
                                "captions.jsonl: write one with columns image,caption[,label]")
    return root, splits


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
                    row = json.loads(line)
                except json.JSONDecodeError:
                    row = None
                if not isinstance(row, dict) or not isinstance(row.get("image"), str) or not isinstance(row.get("caption"), str):
                    raise ClippingEdgeError(f"{path} line {n} is not a JSON object with an image and a caption: each line "
                                            'must be {"image": ..., "caption": ...}')
                rows.append(row)
    return rows


def read_pairs(split: SplitSource | str, limit: int | None = None) -> PairSet:
    """Read one split: a folder with captions.csv/.jsonl, shards (a .tar, a brace pattern, a folder of
    .tar files, or what resolve_split found) or a mixture. `limit` keeps the first pairs (of each
    dataset of a mixture, in equal shares)."""
    if isinstance(split, Mixture):
        return _read_mixture(split, limit)
    if isinstance(split, ShardSplit):
        return _read_shards(split, limit)
    text, split_dir = str(split), Path(split)
    if is_shard_pattern(text) or (split_dir.suffix == ".tar" and split_dir.is_file()):
        return _read_shards(find_shards(text, "train"), limit)
    path = _caption_file(split_dir)
    if path is None and split_dir.is_dir() and any(split_dir.glob("*.tar")):
        return _read_shards(ShardSplit(tuple(sorted(split_dir.glob("*.tar"))), split_dir), limit)
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


def _read_shards(split: ShardSplit, limit: int | None) -> PairSet:
    samples, incomplete = read_shard_split(split)
    if incomplete:
        warnings.warn(f"{split}: skipped {incomplete} shard key(s) without an image member (.jpg/.jpeg/.png/.webp) "
                      "or without a .txt caption", stacklevel=3)
    pairs = [Pair(shard, s.caption, s.label, s.image) for shard, s in samples[:limit]]
    if not pairs:
        raise ClippingEdgeError(f"{split} holds no image-caption pairs: each key needs an image member "
                                "(.jpg/.jpeg/.png/.webp) and a .txt caption")
    return PairSet(split.root, pairs, _zero_shot(split.root))


def _read_mixture(mixture: Mixture, limit: int | None) -> PairSet:
    k = len(mixture.parts)
    shares = [None] * k if limit is None else [max(1, limit // k + (i < limit % k)) for i in range(k)]
    parts = [read_pairs(part, share) for part, share in zip(mixture.parts, shares)]
    pairs = [pair for part in parts for pair in part.pairs]
    return PairSet(parts[0].root, pairs, parts[0].zero_shot, parts)


def _zero_shot(split_dir: Path) -> ZeroShotTask | None:
    for folder in (split_dir, split_dir.parent):
        path = folder / "zeroshot.json"
        if path.is_file():
            try:
                spec = json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise ClippingEdgeError(f"{path} is not valid UTF-8 JSON ({exc}): write "
                                        '{"classes": ["cat", "dog"], "templates": ["a photo of a {}."]}') from None
            classes = spec.get("classes") if isinstance(spec, dict) else None
            if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
                raise ClippingEdgeError(f"{path} needs a non-empty list of class names under \"classes\": write "
                                        '{"classes": ["cat", "dog"], "templates": ["a photo of a {}."]}')
            return ZeroShotTask(classes=classes, templates=check_templates(spec.get("templates") or list(DEFAULT_TEMPLATES)),
                                synonyms=check_synonyms(spec.get("synonyms") or {}), held_out=spec.get("held_out", []))
    return None
