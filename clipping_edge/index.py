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


def new_index(ndim: int, dtype: str):
    from usearch.index import Index

    if dtype not in INDEX_DTYPES:
        raise ClippingEdgeError(f"index dtype {dtype!r} is unknown: use one of {', '.join(INDEX_DTYPES)}")
    return Index(ndim=ndim, metric="cos", dtype=dtype)


def search_index(index, queries: np.ndarray, k: int, exact: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per query: (keys, cosines), best first, sliced to the results usearch found."""
    matches = index.search(np.ascontiguousarray(queries, dtype=np.float32), k, exact=exact)
    # One query comes back as `Matches` (1-D, no counts), several as `BatchMatches`.
    keys = np.asarray(matches.keys).reshape(len(queries), -1)
    dist = np.asarray(matches.distances, dtype=np.float32).reshape(len(queries), -1)
    counts = np.asarray(getattr(matches, "counts", [len(matches.keys)])).reshape(-1)
    return [(keys[i, :n].astype(np.int64), 1.0 - dist[i, :n]) for i, n in enumerate(counts)]


def save_index(index, path: str | Path, sidecar: dict) -> Path:
    """Write `path` (.usearch) and its JSON sidecar (with the index file's SHA-256), each atomically."""
    path = Path(path).with_suffix(".usearch")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        index.save(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    write_json_atomic(sidecar_path(path), {**sidecar, "ndim": int(index.ndim), "sha256": _sha256(path)})
    return path


def load_index(path: str | Path, what: str, fingerprint: str | None, view: bool) -> tuple[object, dict, Path]:
    """Open a saved index after checking its sidecar: the bundle fingerprint (when given) and the
    checksum, both before usearch reads or memory-maps the file. Returns (index, sidecar, path)."""
    from usearch.index import Index

    path = Path(path)
    if path.suffix != ".usearch":
        path = path.with_suffix(".usearch")
    meta_path = sidecar_path(path)
    if not path.is_file() or not meta_path.is_file():
        raise ClippingEdgeError(f"{what} {path} (with {meta_path.name}) does not exist: build it with `clipping-edge index`")
    try:
        meta = json.loads(meta_path.read_text())
        recorded_fp, checksum = meta["fingerprint"], meta["sha256"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ClippingEdgeError(f"{meta_path} is not a clipping-edge index sidecar: rebuild the index") from None
    if fingerprint is not None and recorded_fp != fingerprint:
        raise ClippingEdgeError(f"{what} {path} was built by another model (fingerprint {recorded_fp[:12]}, "
                                f"bundle {fingerprint[:12]}): rebuild it with this bundle")
    if _sha256(path) != checksum:
        raise ClippingEdgeError(f"{what} {path} does not match the checksum recorded when it was built: rebuild it")
    try:
        index = Index.restore(str(path), view=view)
    except Exception as exc:
        raise ClippingEdgeError(f"{path} is not a usearch index ({exc}): rebuild it") from None
    if index is None:
        raise ClippingEdgeError(f"{path} is not a usearch index: rebuild it")
    return index, meta, path


class PrototypeIndex:
    """Labelled class prototypes in a usearch index (keys 1..C: usearch reports missing results as key 0).

    Classification needs the cosine to every class (softmax normalises over all of them), so it reads
    the prototypes out of the index once and takes one matrix product per batch: 0.5 ms an image at
    21 000 classes here, where a k=C usearch search took 23 ms. `search` is the exact top-k."""

    def __init__(self, index, labels: list[str], fingerprint: str, dtype: str):
        self.index = index
        self.labels = labels
        self.fingerprint = fingerprint
        self.dtype = dtype
        self._matrix: np.ndarray | None = None

    @property
    def matrix(self) -> np.ndarray:
        """(C, d) float32 prototypes in label order, as stored (f16/i8 values widened)."""
        if self._matrix is None:
            keys = np.arange(1, len(self.labels) + 1, dtype=np.uint64)
            self._matrix = np.ascontiguousarray(np.stack(self.index.get(keys, dtype=np.float32)), dtype=np.float32)
        return self._matrix

    def cosines(self, queries: np.ndarray) -> np.ndarray:
        """(B, d) normalised queries -> (B, C) cosine to every prototype, columns in label order.
        One matrix-vector product per query: a (B, d) x (d, C) product starts BLAS threads that
        fight the backend's still-spinning threads (35 ms instead of 1 ms a batch of 32 here)."""
        queries = np.asarray(queries, dtype=np.float32)
        return np.stack([self.matrix @ q for q in queries]) if len(queries) else np.zeros((0, len(self.labels)), np.float32)

    @classmethod
    def build(cls, vectors: np.ndarray, labels: Sequence[str], fingerprint: str, dtype: str = "f16") -> "PrototypeIndex":
        """`i8` is built only if it ranks like float32 (see `check_i8`); otherwise an error says so."""
        if len(vectors) != len(labels):
            raise ValueError(f"{len(vectors)} vectors for {len(labels)} labels")
        index = new_index(vectors.shape[1], dtype)
        index.add(np.arange(1, len(labels) + 1, dtype=np.uint64), np.ascontiguousarray(vectors, dtype=np.float32))
        built = cls(index, list(labels), fingerprint, dtype)
        if dtype == "i8":
            problem = built.check_against(cls.build(vectors, labels, fingerprint, "f32"), vectors)
            if problem:
                raise ClippingEdgeError(f"an i8 prototype index would change results ({problem}): use --dtype f16")
        return built

    def check_against(self, reference: "PrototypeIndex", vectors: np.ndarray, seed: int = 0,
                      min_agreement: float = 0.995, max_cosine_error: float = 0.02) -> str | None:
        """Compare top-1 and cosines with `reference` on queries near the prototypes (each prototype
        mixed with another, as an image between two classes would be). Returns what failed, or None."""
        rng = np.random.default_rng(seed)
        others = vectors[rng.integers(0, len(vectors), size=len(vectors))]
        mix = rng.uniform(0.5, 1.0, size=(len(vectors), 1)).astype(np.float32)
        queries = mix * vectors + (1 - mix) * others
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        mine, ref = self.search(queries, 1), reference.search(queries, 1)
        agreement = float((mine[0][:, 0] == ref[0][:, 0]).mean())
        error = float(np.abs(mine[1][:, 0] - ref[1][:, 0]).max())
        if agreement < min_agreement or error > max_cosine_error:
            return f"top-1 agreement with f32 {agreement:.1%}, largest cosine error {error:.3f}"
        return None

    def __len__(self) -> int:
        return len(self.labels)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by cosine: (label positions (B, k), cosines (B, k)), best first."""
        k = min(k, len(self.labels))
        results = search_index(self.index, queries, k, exact=True)
        if any(len(keys) < k for keys, _ in results):
            raise RuntimeError(f"usearch returned fewer than {k} results from an exact search")
        return np.stack([keys for keys, _ in results]) - 1, np.stack([cos for _, cos in results])

    def save(self, path: str | Path) -> Path:
        return save_index(self.index, path, {"kind": "prototypes", "labels": self.labels,
                                             "fingerprint": self.fingerprint, "dtype": self.dtype})

    @classmethod
    def load(cls, path: str | Path, fingerprint: str | None = None, view: bool = False) -> "PrototypeIndex":
        """Open a saved index. `view=True` memory-maps it instead of reading it into memory."""
        index, meta, path = load_index(path, "prototype index", fingerprint, view)
        labels = meta.get("labels")
        if not isinstance(labels, list) or len(index) != len(labels):
            raise ClippingEdgeError(f"{path} is not a prototype index with {len(labels or [])} labels: rebuild it")
        return cls(index, labels, meta["fingerprint"], meta.get("dtype", "f16"))
