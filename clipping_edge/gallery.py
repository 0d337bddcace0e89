"""An image gallery for retrieval: images embedded by one bundle in a usearch index, searched by text
(text -> images) or by image (image -> similar images), persisted as `<name>.usearch` + `<name>.json`
and grown incrementally.

Keys are 1..N in the order images were added; the sidecar maps them back to paths and records the
bundle's fingerprint and the checksum, checked before the index is opened. `add_to_gallery` holds
the index's lock from reading to saving, so concurrent additions are all kept.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .errors import ClippingEdgeError
from .index import add_vectors, index_path, load_index, locked, new_index, save_index, search_index
from .model import EdgeModel
from .pipeline import embed_images

# Up to this many images a search is exact (brute force); above, usearch's HNSW graph answers.
EXACT_UP_TO = 20_000


@dataclass(frozen=True)
class Hit:
    path: str
    score: float  # cosine similarity to the query


class ImageGallery:
    def __init__(self, index, paths: list[str], fingerprint: str, dtype: str):
        self.index = index
        self.paths = paths
        self.fingerprint = fingerprint
        self.dtype = dtype
        self._known = set(paths)

    @classmethod
    def create(cls, model: EdgeModel, dtype: str = "f16") -> "ImageGallery":
        return cls(new_index(model.manifest.embed_dim, dtype), [], model.manifest.fingerprint, dtype)

    @classmethod
    def open(cls, path: str | Path, model: EdgeModel, view: bool = False) -> "ImageGallery":
        """Load a saved gallery for `model`. `view=True` memory-maps it (read-only: no `add`)."""
        index, meta, path = load_index(path, "image gallery", model.manifest.fingerprint, view)
        paths = meta.get("paths")
        if meta.get("kind") != "gallery" or not isinstance(paths, list) or len(paths) != len(index) \
                or not all(isinstance(p, str) for p in paths):
            raise ClippingEdgeError(f"{path} is not an image gallery (a prototype index?): build one with `clipping-edge index add`")
        return cls(index, paths, meta["fingerprint"], meta.get("dtype", "f16"))

    def __len__(self) -> int:
        return len(self.paths)

    def add(self, model: EdgeModel, images: Iterable[str | Path], batch_size: int = 32, skip_unreadable: bool = True,
            progress: Callable[[int, int], None] | None = None) -> int:
        """Embed and add the images not already in the gallery; returns how many were added.
        Unreadable images are skipped with a warning (or raise, with `skip_unreadable=False`).
        `progress(done, total)` is called after each batch."""
        if model.manifest.fingerprint != self.fingerprint:
            raise ClippingEdgeError("this gallery was built by another model: build a new one with this bundle")
        fresh = list(dict.fromkeys(str(Path(p).resolve()) for p in images if str(Path(p).resolve()) not in self._known))
        added = 0
        for paths, embeddings in embed_images(model, fresh, batch_size, skip_unreadable=skip_unreadable):
            keys = np.arange(len(self.paths) + 1, len(self.paths) + len(paths) + 1, dtype=np.uint64)
            add_vectors(self.index, keys, embeddings)
            self.paths += [str(p) for p in paths]
            self._known.update(str(p) for p in paths)
            added += len(paths)
            if progress is not None:
                progress(added, len(fresh))
        return added

    def search(self, queries: np.ndarray, k: int = 10) -> list[list[Hit]]:
        """(B, d) normalised query embeddings -> per query the k most similar images, best first."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ClippingEdgeError(f"k must be a whole number of at least 1, got {k!r}")
        if not self.paths:
            return [[] for _ in queries]
        results = search_index(self.index, queries, min(k, len(self.paths)), exact=len(self.paths) <= EXACT_UP_TO)
        return [[Hit(self.paths[key - 1], float(score)) for key, score in zip(keys, scores)] for keys, scores in results]

    def search_text(self, model: EdgeModel, texts: Sequence[str], k: int = 10) -> list[list[Hit]]:
        return self.search(model.encode_text(texts), k)

    def search_image(self, model: EdgeModel, images: Sequence[str | Path], k: int = 10) -> list[list[Hit]]:
        return self.search(model.encode_image(images), k)

    def save(self, path: str | Path, force: bool = False) -> Path:
        return save_index(self.index, path, {"kind": "gallery", "paths": self.paths, "fingerprint": self.fingerprint,
                                             "dtype": self.dtype}, force)


def open_or_create(path: str | Path, model: EdgeModel, dtype: str = "f16") -> ImageGallery:
    target = index_path(path)
    if target.exists():
        return ImageGallery.open(target, model)
    print(f"creating image gallery {target}", file=sys.stderr)
    return ImageGallery.create(model, dtype)


def add_to_gallery(path: str | Path, model: EdgeModel, images: Iterable[str | Path], dtype: str = "f16",
                   batch_size: int = 32, progress: Callable[[int, int], None] | None = None) -> tuple[ImageGallery, int, Path]:
    """Open (or create) the gallery at `path`, add `images`, save it: all under the index's lock, so a
    concurrent `index add` waits and then adds to what this one saved. Returns (gallery, added, path)."""
    with locked(path):
        gallery = open_or_create(path, model, dtype)
        added = gallery.add(model, images, batch_size=batch_size, progress=progress)
        return gallery, added, gallery.save(path)
