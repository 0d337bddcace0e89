"""`clipping-edge data shard`: any dataset the pairs reader takes -> webdataset tar shards. The reader of shards
(`shards.py`) is what `pairs.py` calls; this writer calls `pairs.py`, so it lives apart from both."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from clipping_edge.errors import ClippingEdgeError

from .pairs import dataset_splits, read_pairs
from .shards import IMAGE_EXTENSIONS


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644  # fixed metadata: the same data gives the same bytes
    tar.addfile(info, io.BytesIO(data))


def _image_member(pair) -> tuple[str, bytes]:
    """The image's bytes as stored, or re-encoded losslessly to PNG when readers would not take its type."""
    source = pair.source()
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    suffix = Path(pair.member.name if pair.member else pair.image).suffix.lower().lstrip(".")
    if suffix in IMAGE_EXTENSIONS:
        return suffix, data
    from PIL import Image

    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).save(buffer, format="PNG")
    return "png", buffer.getvalue()


def write_shards(data: str | Path, out: str | Path, per_shard: int = 1000, force: bool = False) -> dict[str, tuple[int, int]]:
    """Write each split of a dataset as `out/<split>/<split>-NNNNNN.tar` shards of `per_shard` pairs, with
    the zeroshot.json files; returns {split: (pairs, shards)}. The output appears complete or not at all.

    A dataset that is its own split (captions.csv at its root) becomes unnamed shards directly in `out`,
    which read back as their own split again."""
    from clipping_edge.atomic import atomic_directory


    if per_shard < 1:
        raise ClippingEdgeError(f"--per-shard must be at least 1, got {per_shard}")
    root, splits = dataset_splits(data)
    written: dict[str, tuple[int, int]] = {}
    with atomic_directory(out, "dataset", inputs=[root], force=force) as tmp:
        if (root / "zeroshot.json").is_file():
            (tmp / "zeroshot.json").write_bytes((root / "zeroshot.json").read_bytes())
        for split, source in splits.items():
            pairs = read_pairs(source)
            folder, prefix = (tmp / split, split) if split else (tmp, "shard")
            folder.mkdir(exist_ok=True)
            if split and pairs.root != root and (pairs.root / "zeroshot.json").is_file():
                (folder / "zeroshot.json").write_bytes((pairs.root / "zeroshot.json").read_bytes())
            shards = 0
            for start in range(0, len(pairs), per_shard):
                with tarfile.open(folder / f"{prefix}-{shards:06d}.tar", "w", format=tarfile.PAX_FORMAT) as tar:
                    for i, pair in enumerate(pairs.pairs[start:start + per_shard], start):
                        key = f"{i:08d}"
                        ext, image = _image_member(pair)
                        _add(tar, f"{key}.{ext}", image)
                        _add(tar, f"{key}.txt", pair.caption.encode())
                        if pair.label is not None:
                            _add(tar, f"{key}.cls", pair.label.encode())
                shards += 1
            written[split or "(own split)"] = (len(pairs), shards)
    return written
