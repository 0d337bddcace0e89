"""Class prototypes in a usearch index, persisted as `<name>.usearch` + `<name>.usearch.json`.

The JSON sidecar records the labels (or a gallery's paths), the bundle fingerprint and one SHA-256
over the index file and the sidecar's own contents, so an index built by another model, a damaged
file or edited labels are refused before the index is memory-mapped. The two files are replaced as
one unit: both are written complete first, and a crash between the two renames is rolled forward by
the next reader. Writers of one index take a file lock.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .atomic import exclusive_lock, remove_stale_siblings, write_json_atomic
from .errors import ClippingEdgeError
from .fewshot import FewShotHead, Shots, fit, fit_mix

INDEX_DTYPES = ("f32", "f16", "i8")
INDEX_KINDS = ("prototypes", "gallery")


def index_path(path: str | Path) -> Path:
    path = Path(path)
    return path if path.suffix == ".usearch" else path.with_suffix(".usearch")


def sidecar_path(path: Path) -> Path:
    """`x.usearch` -> `x.usearch.json`: named after the index file, so it cannot take a labels file's name."""
    return path.with_name(path.name + ".json")


def _pending_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.pending")


def _checksum(index_file: Path, sidecar: dict) -> str:
    digest = hashlib.sha256()
    with open(index_file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    body = {k: v for k, v in sidecar.items() if k != "sha256"}
    digest.update(b"\0" + json.dumps(body, sort_keys=True, ensure_ascii=True).encode())
    return digest.hexdigest()


def _read_sidecar(meta_path: Path) -> dict | None:
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (ValueError, OSError, UnicodeDecodeError):
        return None
    ok = isinstance(meta, dict) and meta.get("kind") in INDEX_KINDS and isinstance(meta.get("sha256"), str) \
        and isinstance(meta.get("fingerprint"), str)
    return meta if ok else None


@contextlib.contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """An exclusive lock on an index for a read-modify-write (two `index add` at once lose nothing)."""
    path = index_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(path.with_name(f".{path.name}.lock")):
        yield


def check_index_replaceable(path: Path, kind: str, force: bool) -> None:
    """The index and its sidecar may be replaced only if they are our own index of this kind."""
    meta_path = sidecar_path(path)
    meta = _read_sidecar(meta_path) if meta_path.exists() else None
    for item, ours in ((path, meta is not None), (meta_path, meta is not None)):
        if item.exists() and not force and not (ours and meta.get("kind") == kind):
            raise ClippingEdgeError(f"{item} already exists and is not a clipping-edge {kind} index: choose another "
                                    "--out, or pass --force to replace it")


def new_index(ndim: int, dtype: str):
    from usearch.index import Index

    if dtype not in INDEX_DTYPES:
        raise ClippingEdgeError(f"index dtype {dtype!r} is unknown: use one of {', '.join(INDEX_DTYPES)}")
    return Index(ndim=ndim, metric="cos", dtype=dtype)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """usearch notices Ctrl-C inside its own loops and raises RuntimeError('Operation has been terminated'):
    turned back into the KeyboardInterrupt it is, so the CLI says "interrupted" and nothing half-done is kept."""
    try:
        yield
    except RuntimeError as exc:
        if "terminated" in str(exc):
            raise KeyboardInterrupt from exc
        raise


def add_vectors(index, keys: np.ndarray, vectors: np.ndarray) -> None:
    with interruptible():
        index.add(keys, np.ascontiguousarray(vectors, dtype=np.float32))


def search_index(index, queries: np.ndarray, k: int, exact: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per query: (keys, cosines), best first, sliced to the results usearch found."""
    with interruptible():
        matches = index.search(np.ascontiguousarray(queries, dtype=np.float32), k, exact=exact)
    # One query comes back as `Matches` (1-D, no counts), several as `BatchMatches`.
    keys = np.asarray(matches.keys).reshape(len(queries), -1)
    dist = np.asarray(matches.distances, dtype=np.float32).reshape(len(queries), -1)
    counts = np.asarray(getattr(matches, "counts", [len(matches.keys)])).reshape(-1)
    return [(keys[i, :n].astype(np.int64), 1.0 - dist[i, :n]) for i, n in enumerate(counts)]


def save_index(index, path: str | Path, sidecar: dict, force: bool = False) -> Path:
    """Write `path` (.usearch) and its sidecar as one unit; returns the index path."""
    path = index_path(path)
    check_index_replaceable(path, sidecar["kind"], force)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_siblings(path)
    pending = _pending_path(path)
    meta = {**sidecar, "ndim": int(index.ndim)}
    try:
        # Serialised in memory and written by Python: usearch's own file writer does not report a full disk.
        with open(pending, "wb") as f:
            f.write(index.save())
        meta["sha256"] = _checksum(pending, meta)
        write_json_atomic(sidecar_path(path), meta)  # names the pending file's contents: see _roll_forward
    except OSError as exc:
        with contextlib.suppress(OSError):  # on a read-only file system even removing a missing file fails
            pending.unlink()
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise ClippingEdgeError(f"cannot write the index {path} ({exc.strerror}): choose a folder you can write") from exc
        raise OSError(exc.errno, exc.strerror, exc.filename or str(path)) from exc
    except BaseException:
        pending.unlink(missing_ok=True)
        raise
    os.replace(pending, path)
    return path


def _roll_forward(path: Path, meta: dict) -> bool:
    """A writer died between its two renames: the sidecar is new and its index is still pending."""
    pending = _pending_path(path)
    if pending.is_file() and _checksum(pending, meta) == meta["sha256"]:
        os.replace(pending, path)
        return True
    return False


def load_index(path: str | Path, what: str, fingerprint: str | None, view: bool) -> tuple[object, dict, Path]:
    """Open a saved index after checking its sidecar: the bundle fingerprint (when given) and the
    checksum, both before usearch reads or memory-maps the file. Returns (index, sidecar, path)."""
    from usearch.index import Index

    path = index_path(path)
    meta_path = sidecar_path(path)
    if not meta_path.is_file() or not (path.is_file() or _pending_path(path).is_file()):
        raise ClippingEdgeError(f"{what} {path} (with {meta_path.name}) does not exist: build it with `clipping-edge index`")
    meta = _read_sidecar(meta_path)
    if meta is None:
        raise ClippingEdgeError(f"{meta_path} is not a clipping-edge index sidecar: rebuild the index")
    if fingerprint is not None and meta["fingerprint"] != fingerprint:
        raise ClippingEdgeError(f"{what} {path} was built by another model (fingerprint {meta['fingerprint'][:12]}, "
                                f"bundle {fingerprint[:12]}): rebuild it with this bundle")
    if not (path.is_file() and _checksum(path, meta) == meta["sha256"]) and not _roll_forward(path, meta):
        raise ClippingEdgeError(f"{what} {path} or its labels do not match the checksum recorded when it was built "
                                "(damaged or edited): rebuild it")
    try:
        index = Index.restore(str(path), view=view)
    except Exception as exc:
        raise ClippingEdgeError(f"{path} is not a usearch index ({exc}): rebuild it") from None
    if index is None:
        raise ClippingEdgeError(f"{path} is not a usearch index: rebuild it")
    return index, meta, path


class PrototypeIndex:
    """Labelled class prototypes in a usearch index (keys 1..C: usearch reports missing results as key 0), and
    optionally few-shot shots (keys C+1..C+N, their classes in the sidecar) with the head chosen for them.

    Classification needs the cosine to every class (softmax normalises over all of them), so it reads
    the prototypes out of the index once and takes one matrix product per batch: 0.5 ms an image at
    21 000 classes here, where a k=C usearch search took 23 ms. `search` is the exact top-k. A class's
    prototype is its text prototype, or for a class known only from shots, its shots' normalised mean."""

    def __init__(self, index, labels: list[str], fingerprint: str, dtype: str, has_text: Sequence[bool] | None = None,
                 shot_labels: Sequence[int] = (), fewshot: dict | None = None):
        self.index = index
        self.labels = labels
        self.fingerprint = fingerprint
        self.dtype = dtype
        self.has_text = np.ones(len(labels), bool) if has_text is None else np.asarray(has_text, bool)
        self.shot_labels = np.asarray(shot_labels, np.int64)
        self.fewshot = fewshot or {}  # the method and its settings (fewshot.choose_method's record)
        self.templates: list[str] = []  # the prompts the text prototypes were built with (add-class uses them again)
        self._matrix: np.ndarray | None = None
        self._shots: np.ndarray | None = None

    def _rows(self, first: int, count: int) -> np.ndarray:
        if count == 0:
            return np.zeros((0, self.index.ndim), np.float32)
        keys = np.arange(first, first + count, dtype=np.uint64)
        rows = np.stack(self.index.get(keys, dtype=np.float32)).astype(np.float32)
        # Every stored row is a unit vector; i8 storage widens back to norms near 0.975, which would scale every
        # cosine by that, so the rows are normalised again.
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return np.ascontiguousarray(rows / np.where(norms == 0, 1, norms), dtype=np.float32)

    @property
    def matrix(self) -> np.ndarray:
        """(C, d) float32 prototypes in label order, as stored (f16/i8 values widened)."""
        if self._matrix is None:
            self._matrix = self._rows(1, len(self.labels))
        return self._matrix

    @property
    def shots(self) -> np.ndarray:
        """(N, d) float32 embeddings of the few-shot shots, as stored; their classes are `shot_labels`."""
        if self._shots is None:
            self._shots = self._rows(len(self.labels) + 1, len(self.shot_labels))
        return self._shots

    def few_shot_data(self) -> Shots:
        return Shots(self.matrix, self.has_text, self.shots, self.shot_labels)

    def head(self, logit_scale: float) -> FewShotHead:
        """The class logits: the chosen few-shot head, or zero-shot's scale x cosine without shots."""
        if not len(self.shot_labels) or not self.fewshot:
            return fit_mix(self.few_shot_data(), logit_scale, 1.0)
        return fit(self.fewshot["method"], self.few_shot_data(), logit_scale, self.fewshot["settings"])

    def cosines(self, queries: np.ndarray) -> np.ndarray:
        """(B, d) normalised queries -> (B, C) cosine to every prototype, columns in label order.
        One matrix-vector product per query: a (B, d) x (d, C) product starts BLAS threads that
        fight the backend's still-spinning threads (35 ms instead of 1 ms a batch of 32 here)."""
        queries = np.asarray(queries, dtype=np.float32)
        return np.stack([self.matrix @ q for q in queries]) if len(queries) else np.zeros((0, len(self.labels)), np.float32)

    @classmethod
    def build(cls, vectors: np.ndarray, labels: Sequence[str], fingerprint: str, dtype: str = "f16",
              has_text: Sequence[bool] | None = None, shots: np.ndarray | None = None,
              shot_labels: Sequence[int] = ()) -> "PrototypeIndex":
        """`i8` is built only if it ranks like float32 (see `check_i8`); otherwise an error says so."""
        if len(vectors) != len(labels):
            raise ValueError(f"{len(vectors)} vectors for {len(labels)} labels")
        shots = np.zeros((0, vectors.shape[1]), np.float32) if shots is None else np.asarray(shots, np.float32)
        if len(shots) != len(shot_labels):
            raise ValueError(f"{len(shots)} shots for {len(shot_labels)} shot labels")
        index = new_index(vectors.shape[1], dtype)
        rows = np.concatenate([np.asarray(vectors, np.float32), shots]) if len(shots) else vectors
        add_vectors(index, np.arange(1, len(rows) + 1, dtype=np.uint64), rows)
        built = cls(index, list(labels), fingerprint, dtype, has_text, shot_labels)
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
        """Top-k classes by cosine: (label positions (B, k), cosines (B, k)), best first."""
        k = min(k, len(self.labels))
        cosines = self.cosines(queries)
        best = np.argsort(-cosines, axis=1, kind="stable")[:, :k]
        return best, np.take_along_axis(cosines, best, 1)

    def save(self, path: str | Path, force: bool = False) -> Path:
        sidecar = {"kind": "prototypes", "labels": self.labels, "fingerprint": self.fingerprint, "dtype": self.dtype}
        if self.templates:
            sidecar["templates"] = self.templates
        if not self.has_text.all() or len(self.shot_labels):
            sidecar.update(has_text=self.has_text.tolist(), shot_labels=self.shot_labels.tolist(), fewshot=self.fewshot)
        return save_index(self.index, path, sidecar, force)

    @classmethod
    def load(cls, path: str | Path, fingerprint: str | None = None, view: bool = False) -> "PrototypeIndex":
        """Open a saved index. `view=True` memory-maps it instead of reading it into memory."""
        index, meta, path = load_index(path, "prototype index", fingerprint, view)
        labels, has_text = meta.get("labels"), meta.get("has_text")
        shot_labels, fewshot = meta.get("shot_labels", []), meta.get("fewshot", {})
        valid = meta["kind"] == "prototypes" and isinstance(labels, list) and all(isinstance(label, str) for label in labels) \
            and isinstance(shot_labels, list) and all(isinstance(c, int) and 0 <= c < len(labels) for c in shot_labels) \
            and len(index) == len(labels) + len(shot_labels) and isinstance(fewshot, dict) \
            and (has_text is None or (isinstance(has_text, list) and len(has_text) == len(labels)))
        if not valid:
            raise ClippingEdgeError(f"{path} is not a prototype index with {len(labels or [])} labels: rebuild it")
        loaded = cls(index, labels, meta["fingerprint"], meta.get("dtype", "f16"), has_text, shot_labels, fewshot)
        templates = meta.get("templates", [])
        loaded.templates = templates if isinstance(templates, list) and all(isinstance(t, str) for t in templates) else []
        return loaded
