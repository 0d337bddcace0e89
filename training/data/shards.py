"""webdataset-style `.tar` shards, read in place: never unpacked.

A shard holds, per key, an image member (`KEY.jpg/.jpeg/.png/.webp`), a caption (`KEY.txt`) and
optionally a class label (`KEY.cls` or `KEY.label`, text) and `KEY.json` (`caption`/`label` fields,
used where the text members are missing). As in webdataset, the key is the member path up to the
first dot of its file name and the rest is the field: `a.seg.png` is field `seg.png` of key `a`,
not an image of it.

Each shard is scanned once (headers only, plus the small text members) into an index of image
member -> (offset, size); an image is read at access time with one seek and one read, so loader
workers share nothing but the shard path. Python's tar reader needs ~40 us a member, so the index
is kept on disk under the cache folder, keyed by the shard's path, size and mtime: train, eval and
export of the same shards scan them once.

`--data` may name a single `.tar`, a folder of shards (split subfolders `train/`, `test/`, or shard
names containing the split word), or a brace pattern such as `shards/train-{000000..000009}.tar`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from clipping_edge.errors import ClippingEdgeError

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
LABEL_EXTENSIONS = ("cls", "label")
SPLIT_WORDS = ("train", "val", "test")
_BLOCK = 512  # tar block size


@dataclass(frozen=True)
class TarMember:
    """Where an image's bytes lie inside its shard."""

    name: str
    offset: int
    size: int

    def read(self, shard: Path) -> bytes:
        with open(shard, "rb") as f:
            f.seek(self.offset)
            data = f.read(self.size)
        if len(data) != self.size:
            raise ClippingEdgeError(f"{shard} is truncated: member {self.name} ends past the end of the file; "
                                    "re-write the shard (clipping-edge data shard)")
        return data


@dataclass(frozen=True)
class ShardSample:
    key: str
    image: TarMember
    caption: str
    label: str | None


@dataclass(frozen=True)
class ShardSplit:
    """One split made of shards; `root` is where zeroshot.json is looked for (and its parent)."""

    shards: tuple[Path, ...]
    root: Path

    def __str__(self) -> str:
        return str(self.shards[0]) if len(self.shards) == 1 else f"{self.root} ({len(self.shards)} shards)"


@dataclass(frozen=True)
class ShardIndex:
    samples: tuple[ShardSample, ...]
    incomplete: int  # keys without an image member or without a caption


INDEX_VERSION = 1
# Within a process too (train then eval read the same split): keyed so that a rewrite is noticed.
_INDEX_CACHE: dict[tuple[str, int, int], ShardIndex] = {}


def _index_file(cache_key: tuple[str, int, int]) -> Path:
    from .synthetic_cache import cache_dir

    digest = hashlib.sha256(f"v{INDEX_VERSION}|{cache_key[0]}|{cache_key[1]}|{cache_key[2]}".encode()).hexdigest()
    return cache_dir() / "shard-index" / f"{digest[:24]}.json"


def _load_index(cache_key: tuple[str, int, int]) -> ShardIndex | None:
    try:
        data = json.loads(_index_file(cache_key).read_text())
        samples = tuple(ShardSample(key, TarMember(name, offset, size), caption, label)
                        for key, name, offset, size, caption, label in data["samples"])
        return ShardIndex(samples, data["incomplete"])
    except (OSError, ValueError, KeyError, TypeError):  # absent, or unreadable: scan again
        return None


def _save_index(cache_key: tuple[str, int, int], index: ShardIndex) -> None:
    from clipping_edge.atomic import write_bytes_atomic

    rows = [[s.key, s.image.name, s.image.offset, s.image.size, s.caption, s.label] for s in index.samples]
    try:
        write_bytes_atomic(_index_file(cache_key), json.dumps({"samples": rows, "incomplete": index.incomplete}).encode())
    except OSError:  # a read-only cache only costs the next run a scan
        pass


def _corrupt(path: Path, why: str) -> ClippingEdgeError:
    return ClippingEdgeError(f"{path} is not a readable tar shard ({why}): re-write it (clipping-edge data shard) "
                             "or leave it out of --data")


def _split_key(name: str) -> tuple[str, str]:
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), (ext.lower() if dot else "")


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace").strip()


def scan_shard(path: Path) -> ShardIndex:
    """Index one shard: its complete samples in member order, and how many keys were incomplete."""
    st = path.stat()
    cache_key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if cache_key in _INDEX_CACHE:
        return _INDEX_CACHE[cache_key]
    index = _load_index(cache_key)
    if index is None:
        index = _scan(path, st.st_size)
        _save_index(cache_key, index)
    _INDEX_CACHE[cache_key] = index
    return index


def _scan(path: Path, file_size: int) -> ShardIndex:
    images: dict[str, TarMember] = {}
    texts: dict[str, dict[str, str]] = {}
    order: dict[str, None] = {}  # keys in member order
    try:
        with open(path, "rb") as f, tarfile.open(fileobj=f, mode="r:") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                key, ext = _split_key(info.name)
                order.setdefault(key)
                if info.offset_data + info.size > file_size:
                    raise _corrupt(path, f"member {info.name} ends past the end of the file: it is truncated")
                if ext in IMAGE_EXTENSIONS:
                    images[key] = TarMember(info.name, info.offset_data, info.size)
                elif ext in ("txt", "json", *LABEL_EXTENSIONS):
                    texts.setdefault(key, {})[ext] = _text(tar.extractfile(info).read())
            # tarfile stops quietly at a damaged header after the first one: what follows the last
            # member must be the end-of-archive zeros (or nothing), or part of the shard was lost.
            f.seek(tar.offset)
            tail = f.read(_BLOCK)
    except tarfile.TarError as exc:
        raise _corrupt(path, str(exc) or type(exc).__name__) from None
    except OSError as exc:
        raise _corrupt(path, str(exc)) from None
    if tail.strip(b"\0"):
        raise _corrupt(path, f"damaged header at byte {tar.offset}")

    samples, incomplete = [], 0
    for key in order:
        meta = texts.get(key, {})
        extra = _json_fields(meta.get("json"))
        caption = meta.get("txt") or extra.get("caption")
        label = next((meta[e] for e in LABEL_EXTENSIONS if meta.get(e)), None) or extra.get("label")
        if key in images and caption:
            samples.append(ShardSample(key, images[key], caption, label or None))
        else:
            incomplete += 1
    return ShardIndex(tuple(samples), incomplete)


def _json_fields(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return {}
    if not isinstance(data, dict):
        return {}
    caption, label = data.get("caption") or data.get("text"), data.get("label", data.get("class"))
    return {k: str(v) for k, v in (("caption", caption), ("label", label)) if v not in (None, "")}


# -- finding shards ---------------------------------------------------------------------------------

_BRACE = re.compile(r"\{([^{}]*)\}")


def expand_braces(pattern: str) -> list[str]:
    """`a-{000..002}.tar` -> a-000.tar, a-001.tar, a-002.tar; `{x,y}` lists too; several braces multiply."""
    pieces, choices, pos = [], [], 0
    for match in _BRACE.finditer(pattern):
        pieces.append(pattern[pos:match.start()])
        choices.append(_brace_choices(match.group(1), pattern))
        pos = match.end()
    pieces.append(pattern[pos:])
    out = []
    for combo in itertools.product(*choices):
        out.append("".join(p + c for p, c in zip(pieces, combo)) + pieces[-1])
    return out


def _brace_choices(body: str, pattern: str) -> list[str]:
    if ".." in body:
        lo, _, hi = body.partition("..")
        if not (lo.isdigit() and hi.isdigit()) or int(lo) > int(hi):
            raise ClippingEdgeError(f"brace range {{{body}}} in {pattern} is not a rising numeric range: write e.g. {{000000..000009}}")
        width = len(lo) if lo.startswith("0") else 0  # zero-padded like its first bound
        return [str(n).zfill(width) for n in range(int(lo), int(hi) + 1)]
    return body.split(",")


def is_shard_pattern(data: str) -> bool:
    return bool(_BRACE.search(data)) and data.endswith(".tar")


def _names_split(path: Path, split: str) -> bool:
    return re.search(rf"(^|[^a-z]){split}([^a-z]|$)", path.name.lower()) is not None


def find_shards(data: str | Path, split: str) -> ShardSplit | None:
    """The shards of `split` in `data`, or None when `data` holds no shards at all."""
    text = str(data)
    if is_shard_pattern(text):
        files = [Path(p) for p in expand_braces(text)]
        missing = [f for f in files if not f.is_file()]
        if missing:
            raise ClippingEdgeError(f"shard {missing[0]} of {text} does not exist ({len(missing)} of {len(files)} "
                                    "missing): fix the pattern")
        return ShardSplit(tuple(files), Path(os.path.commonpath([f.parent for f in files])))
    path = Path(text)
    if path.is_file() and path.suffix == ".tar":
        return ShardSplit((path,), path.parent)
    if not path.is_dir():
        return None
    in_folder = sorted((path / split).glob("*.tar")) if (path / split).is_dir() else []
    if in_folder:
        return ShardSplit(tuple(in_folder), path / split)
    flat = sorted(path.glob("*.tar"))
    named = [f for f in flat if _names_split(f, split)]
    if named:
        return ShardSplit(tuple(named), path)
    if flat and not any(_names_split(f, s) for f in flat for s in SPLIT_WORDS):
        return ShardSplit(tuple(flat), path)  # unnamed shards: the folder is its own split
    others = [s for s in SPLIT_WORDS if s != split and
              (any((path / s).glob("*.tar")) or any(_names_split(f, s) for f in flat))]
    if others:
        raise ClippingEdgeError(f"{path} has shards for {', '.join(others)} but none for {split}: add {split}/*.tar "
                                f"or {split}-*.tar shards")
    return None


def read_shard_split(split: ShardSplit) -> tuple[list[tuple[Path, ShardSample]], int]:
    """Every complete sample of the split's shards, in order, and the number of incomplete keys."""
    samples, incomplete = [], 0
    for shard in split.shards:
        index = scan_shard(shard)
        samples += [(shard, s) for s in index.samples]
        incomplete += index.incomplete
    return samples, incomplete


# -- writing shards ---------------------------------------------------------------------------------
