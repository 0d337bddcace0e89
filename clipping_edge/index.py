"""Class prototypes in a usearch index, persisted as `<name>.usearch` + `<name>.json`.

The JSON sidecar records the labels, the bundle fingerprint and the index file's SHA-256, so an index
built by another model, or a damaged file, is refused before it is memory-mapped.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .atomic import write_json_atomic
from .errors import ClippingEdgeError

INDEX_DTYPES = ("f32", "f16", "i8")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sidecar_path(path: Path) -> Path:
    return path.with_suffix(".json")


class PrototypeIndex:
    """Exact cosine search over a small set of labelled vectors. Keys are 1..C: usearch reports
    missing results as key 0."""

    def __init__(self, index, labels: list[str], fingerprint: str, dtype: str):
        self.index = index
        self.labels = labels
        self.fingerprint = fingerprint
        self.dtype = dtype

    @classmethod
    def build(cls, vectors: np.ndarray, labels: Sequence[str], fingerprint: str, dtype: str = "f16") -> "PrototypeIndex":
        from usearch.index import Index

        if dtype not in INDEX_DTYPES:
            raise ClippingEdgeError(f"index dtype {dtype!r} is unknown: use one of {', '.join(INDEX_DTYPES)}")
        if len(vectors) != len(labels):
            raise ValueError(f"{len(vectors)} vectors for {len(labels)} labels")
        index = Index(ndim=vectors.shape[1], metric="cos", dtype=dtype)
        index.add(np.arange(1, len(labels) + 1, dtype=np.uint64), np.ascontiguousarray(vectors, dtype=np.float32))
        return cls(index, list(labels), fingerprint, dtype)

    def __len__(self) -> int:
        return len(self.labels)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by cosine: (label positions (B, k), cosines (B, k)), best first."""
        k = min(k, len(self.labels))
        matches = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k, exact=True)
        # One query comes back as `Matches` (1-D, no counts), several as `BatchMatches`.
        keys = np.asarray(matches.keys).reshape(len(queries), -1)[:, :k]
        dist = np.asarray(matches.distances, dtype=np.float32).reshape(len(queries), -1)[:, :k]
        counts = np.asarray(getattr(matches, "counts", [len(matches.keys)])).reshape(-1)
        if (counts < k).any():
            raise RuntimeError(f"usearch returned {counts.min()} of {k} results from an exact search")
        return keys.astype(np.int64) - 1, 1.0 - dist

    def save(self, path: str | Path) -> Path:
        """Write `path` (.usearch) and its JSON sidecar, each atomically."""
        path = Path(path).with_suffix(".usearch")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            self.index.save(str(tmp))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        write_json_atomic(sidecar_path(path), {
            "labels": self.labels, "fingerprint": self.fingerprint, "dtype": self.dtype,
            "ndim": int(self.index.ndim), "sha256": _sha256(path),
        })
        return path

    @classmethod
    def load(cls, path: str | Path, fingerprint: str | None = None, view: bool = False) -> "PrototypeIndex":
        """Open a saved index. `view=True` memory-maps it instead of reading it into memory."""
        from usearch.index import Index

        path = Path(path)
        if path.suffix != ".usearch":
            path = path.with_suffix(".usearch")
        meta_path = sidecar_path(path)
        if not path.is_file() or not meta_path.is_file():
            raise ClippingEdgeError(f"prototype index {path} (with {meta_path.name}) does not exist: build it with `clipping-edge index build`")
        try:
            meta = json.loads(meta_path.read_text())
            labels, recorded_fp, dtype, checksum = meta["labels"], meta["fingerprint"], meta["dtype"], meta["sha256"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ClippingEdgeError(f"{meta_path} is not a clipping-edge index sidecar: rebuild the index") from None
        if fingerprint is not None and recorded_fp != fingerprint:
            raise ClippingEdgeError(f"prototype index {path} was built by another model (fingerprint {recorded_fp[:12]}, "
                                    f"bundle {fingerprint[:12]}): rebuild it with this bundle")
        if _sha256(path) != checksum:
            raise ClippingEdgeError(f"prototype index {path} does not match the checksum recorded when it was built: rebuild it")
        try:
            index = Index.restore(str(path), view=view)
        except Exception as exc:
            raise ClippingEdgeError(f"{path} is not a usearch index ({exc}): rebuild it") from None
        if index is None or len(index) != len(labels):
            raise ClippingEdgeError(f"{path} is not a usearch index with {len(labels)} prototypes: rebuild it")
        return cls(index, labels, recorded_fp, dtype)
