"""A loaded bundle: two towers behind one backend, the tokenizer and the preprocessing."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .backends import BackendOptions, Tower, cache_root, load_tower
from .errors import ClippingEdgeError
from .manifest import Manifest, read_manifest, resolve_inside, verified_file
from .preprocess import ImageInput, as_image_list, preprocess_batch
from .tokenizer import TextTokenizer


# Batch sizes of the runtime. A tower whose activations are quantized per call (dynamic int8) runs its rows
# one at a time instead (manifest quantization.<tower>.rows_alone), so no output depends on its batch.
IMAGE_BATCH, TEXT_BATCH = 32, 256


def check_batch_size(batch_size: object) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ClippingEdgeError(f"batch_size must be a whole number of at least 1, got {batch_size!r}")


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

    def rows_alone(self, kind: str) -> bool:
        """Whether the export marked this tower to run one row at a time (dynamic int8)."""
        return bool(self.manifest.quantization.get(kind, {}).get("rows_alone"))

    def _file(self, relative: str) -> Path:
        return verified_file(self.manifest, self.root, relative)

    def _check_graph(self, kind: str, tower: Tower) -> Tower:
        """The manifest against the graph's own input and output shapes, once at load: a manifest that does not
        belong to its towers (another image size or context length, the towers swapped, another embedding
        width) is one error here, not a runtime's traceback at the first image."""
        shapes = getattr(tower, "shapes", None)
        if shapes is None:  # a backend that does not say (Core ML)
            return tower
        m = self.manifest
        wanted = (3, m.image_size, m.image_size) if kind == "image" else (m.context_length,)
        taken, given = shapes
        what = f"{m.image_size}-px RGB images" if kind == "image" else f"{m.context_length} token ids"
        if len(taken) != len(wanted) + 1 or any(t is not None and t != w for t, w in zip(taken[1:], wanted)) \
                or not given or (given[-1] is not None and given[-1] != m.embed_dim):
            raise ClippingEdgeError(f"bundle {self.root}: the manifest says its {kind} tower takes {what} and gives "
                                    f"{m.embed_dim}-d embeddings, but the graph takes {list(taken)} and gives {list(given)}: "
                                    "the manifest does not belong to these files; re-export the bundle")
        return tower

    @property
    def image_tower(self) -> Tower:
        if self._image is None:
            self._image = self._check_graph("image", load_tower(self.backend, self._file(self.manifest.image_tower),
                                                                self.options, self.rows_alone("image")))
        return self._image

    @property
    def has_text_tower(self) -> bool:
        return resolve_inside(self.root, self.manifest.text_tower, must_exist=False).exists()

    @property
    def text_tower(self) -> Tower:
        if self._text is None:
            if not self.has_text_tower:
                raise ClippingEdgeError(f"bundle {self.root} ships no text tower ({self.manifest.text_tower}): classify "
                                        "with a prototype index (--labels-index), or copy the text tower into the bundle")
            self._text = self._check_graph("text", load_tower(self.backend, self._file(self.manifest.text_tower), self.options,
                                                              self.rows_alone("text")))
        return self._text

    @property
    def tokenizer(self) -> TextTokenizer:
        if self._tokenizer is None:
            self._tokenizer = TextTokenizer(self._file(self.manifest.tokenizer), self.manifest.context_length)
        return self._tokenizer

    def junk_embeddings(self) -> np.ndarray:
        """The image tower's embeddings of the junk images (junk.py) its export stored: the reference of "unknown"."""
        unknown = self.manifest.unknown
        if not unknown.get("junk"):
            raise ClippingEdgeError(f"bundle {self.root} holds no junk embeddings for --min-cosine auto (exported before "
                                    "they existed): re-export it, or pass a cosine such as --min-cosine 0.2")
        data = np.frombuffer(self._file(unknown["junk"]).read_bytes(), dtype="<f4")
        if data.size == 0 or data.size % self.manifest.embed_dim:
            raise ClippingEdgeError(f"{unknown['junk']} in {self.root} holds {data.size} values, not rows of "
                                    f"{self.manifest.embed_dim}: re-export the bundle")
        return data.reshape(-1, self.manifest.embed_dim).astype(np.float32)

    @property
    def logit_scale(self) -> float:
        return float(self.manifest.logit_scale)

    def encode_pixels(self, pixels: np.ndarray, batch_size: int = IMAGE_BATCH) -> np.ndarray:
        """(B, 3, H, W) float32 in [0, 1] -> (B, d) L2-normalised embeddings."""
        check_batch_size(batch_size)
        size = self.manifest.image_size
        pixels = np.asarray(pixels)
        if pixels.ndim != 4 or pixels.shape[1:] != (3, size, size) or not np.issubdtype(pixels.dtype, np.floating):
            raise ClippingEdgeError(f"pixels must be a float array of shape (B, 3, {size}, {size}) in [0, 1], got "
                                    f"{pixels.dtype} {pixels.shape}: use encode_image for image files or frames")
        pixels = pixels.astype(np.float32, copy=False)
        outs = [self.image_tower(pixels[i:i + batch_size]) for i in range(0, len(pixels), batch_size)]
        return np.concatenate(outs) if outs else np.zeros((0, self.manifest.embed_dim), np.float32)

    def encode_image(self, images: Sequence[ImageInput] | ImageInput, batch_size: int = IMAGE_BATCH) -> np.ndarray:
        """Image files, bytes, Pillow images or RGB uint8 HxWx3 frames (one, or a list) -> (B, d)."""
        check_batch_size(batch_size)
        images = as_image_list(images)
        _ = self.image_tower  # loaded (and checked against the manifest) before any image is decoded
        spec = self.manifest.image_preprocess()
        outs = [self.encode_pixels(preprocess_batch(images[i:i + batch_size], spec))
                for i in range(0, len(images), batch_size)]
        return np.concatenate(outs) if outs else np.zeros((0, self.manifest.embed_dim), np.float32)

    def encode_text(self, texts: Sequence[str] | str, batch_size: int = TEXT_BATCH) -> np.ndarray:
        """One text or a list -> (B, d) L2-normalised embeddings."""
        check_batch_size(batch_size)
        texts = [texts] if isinstance(texts, str) else list(texts)
        outs = [self.text_tower(self.tokenizer(texts[i:i + batch_size])) for i in range(0, len(texts), batch_size)]
        return np.concatenate(outs) if outs else np.zeros((0, self.manifest.embed_dim), np.float32)


def load(bundle: str | Path, backend: str | None = None, threads: int | None = None,
         providers: Sequence[str] = (), device: str | None = None, compile_cache: str | Path | bool = True) -> EdgeModel:
    """Open a bundle directory written by `clipping-edge export`; the backend comes from its manifest.
    `device` says where its towers run, in the backend's terms (see BackendOptions; None: the CPU).
    `compile_cache`: where backends that compile at load (OpenVINO) keep the result for the next process;
    True: $CLIPPING_EDGE_CACHE/compiled (~/.cache/clipping-edge/compiled), False: compile at every load."""
    manifest, root = read_manifest(bundle)
    cache = cache_root() / "compiled" if compile_cache is True else Path(compile_cache) if compile_cache else None
    options = BackendOptions(threads=threads, providers=list(providers), device=device, compile_cache=cache)
    return EdgeModel(manifest, root, options, backend)
