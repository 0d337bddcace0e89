"""A loaded bundle: two towers behind one backend, the tokenizer and the preprocessing."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .backends import BackendOptions, Tower, load_tower
from .manifest import Manifest, read_manifest, resolve_inside
from .preprocess import ImageInput, preprocess_batch
from .tokenizer import TextTokenizer


class EdgeModel:
    """Embeds images and texts with an exported bundle. Towers load on first use, so a device that
    ships a prototype index never loads the text tower."""

    def __init__(self, manifest: Manifest, root: Path, options: BackendOptions, backend: str | None = None):
        self.manifest = manifest
        self.root = root
        self.options = options
        self.backend = backend or manifest.target
        self._image: Tower | None = None
        self._text: Tower | None = None
        self._tokenizer: TextTokenizer | None = None

    @property
    def image_tower(self) -> Tower:
        if self._image is None:
            self._image = load_tower(self.backend, resolve_inside(self.root, self.manifest.image_tower), self.options)
        return self._image

    @property
    def text_tower(self) -> Tower:
        if self._text is None:
            self._text = load_tower(self.backend, resolve_inside(self.root, self.manifest.text_tower), self.options)
        return self._text

    @property
    def tokenizer(self) -> TextTokenizer:
        if self._tokenizer is None:
            self._tokenizer = TextTokenizer(resolve_inside(self.root, self.manifest.tokenizer), self.manifest.context_length)
        return self._tokenizer

    @property
    def logit_scale(self) -> float:
        return float(self.manifest.logit_scale)

    def encode_pixels(self, pixels: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """(B, 3, H, W) float32 in [0, 1] -> (B, d) L2-normalised embeddings."""
        outs = [self.image_tower(pixels[i:i + batch_size]) for i in range(0, len(pixels), batch_size)]
        return np.concatenate(outs) if outs else np.zeros((0, self.manifest.embed_dim), np.float32)

    def encode_image(self, images: Sequence[ImageInput], batch_size: int = 32) -> np.ndarray:
        outs = [self.encode_pixels(preprocess_batch(images[i:i + batch_size], self.manifest.image_size))
                for i in range(0, len(images), batch_size)]
        return np.concatenate(outs) if outs else np.zeros((0, self.manifest.embed_dim), np.float32)

    def encode_text(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        outs = [self.text_tower(self.tokenizer(texts[i:i + batch_size])) for i in range(0, len(texts), batch_size)]
        return np.concatenate(outs) if outs else np.zeros((0, self.manifest.embed_dim), np.float32)


def load(bundle: str | Path, backend: str | None = None, threads: int | None = None,
         providers: Sequence[str] = ()) -> EdgeModel:
    """Open a bundle directory written by `clipping-edge export`; the backend comes from its manifest."""
    manifest, root = read_manifest(bundle)
    return EdgeModel(manifest, root, BackendOptions(threads=threads, providers=list(providers)), backend)
