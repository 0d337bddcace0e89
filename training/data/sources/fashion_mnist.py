"""fashion-mnist: the four IDX files (`{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`) of Debian's
dataset-fashion-mnist or a download; the upstream test set stays the test split, validation is drawn from train."""

from __future__ import annotations

import gzip
import random
import struct
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from clipping_edge.errors import ClippingEdgeError

from .common import Prepared, Sample, keep_per_class, missing_source, write_generic

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
# Upstream README's class names, in label order, with the phrases captions and prompts use.
FASHION_CLASSES: dict[str, list[str]] = {
    "t-shirt/top": ["a t-shirt", "a top", "a tee"],
    "trouser": ["a pair of trousers", "a pair of pants"],
    "pullover": ["a pullover", "a sweater", "a jumper"],
    "dress": ["a dress"],
    "coat": ["a coat", "a jacket"],
    "sandal": ["a sandal"],
    "shirt": ["a shirt", "a button-up shirt"],
    "sneaker": ["a sneaker", "a trainer", "a running shoe"],
    "bag": ["a bag", "a handbag", "a purse"],
    "ankle boot": ["an ankle boot", "a boot"],
}
FASHION_CAPTIONS = ["a photo of {}.", "a black and white photo of {}.", "a low resolution photo of {}.",
                    "a grayscale picture of {}.", "{} on a black background.", "a small product photo of {}.", "{}."]
FASHION_TEMPLATES = ["a photo of {}.", "a black and white photo of {}.", "a low resolution photo of {}.", "{}."]


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (gzipped or not) as an array of its declared shape."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ClippingEdgeError(f"{path} is a damaged gzip file ({exc}): download it again") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08 or raw[3] == 0:
        raise ClippingEdgeError(f"{path} is not an IDX file of unsigned bytes (magic {raw[:4].hex()}): pass the "
                                "upstream *-ubyte.gz files")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ClippingEdgeError(f"{path} holds {data.size} bytes of data for shape {dims}: it is truncated, download it again")
    return data.reshape(dims)


def _idx_file(source: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (source / name).is_file():
            return source / name
    raise missing_source(f"Fashion-MNIST ({stem}.gz)", source, "dataset-fashion-mnist")


def _gray(image: np.ndarray) -> Callable[[], Image.Image]:
    return lambda: Image.fromarray(image, "L")


def prepare_fashion_mnist(out: str | Path, source: str | Path | None = None, seed: int = 0,
                          limit_per_class: int | None = None, progress: bool = True, force: bool = False) -> Prepared:
    """Fashion-MNIST as 28x28 grayscale PNGs. `limit_per_class` caps each upstream file per class."""
    source = Path(source) if source else FASHION_MNIST_DIR
    if not source.is_dir():
        raise missing_source("Fashion-MNIST", source, "dataset-fashion-mnist")
    names = list(FASHION_CLASSES)
    samples: list[Sample] = []
    for upstream, split in (("train", None), ("t10k", "test")):
        images = read_idx(_idx_file(source, f"{upstream}-images-idx3-ubyte"))
        labels = read_idx(_idx_file(source, f"{upstream}-labels-idx1-ubyte"))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels) or labels.max(initial=0) >= len(names):
            raise ClippingEdgeError(f"{source}: {upstream} images {images.shape} and labels {labels.shape} do not match "
                                    "(expected N x 28 x 28 and N labels 0-9): pass the upstream files")
        part = []
        for i, y in enumerate(labels.tolist()):
            rng = random.Random(f"{seed}/{upstream}/{i}")
            phrase = rng.choice(FASHION_CLASSES[names[y]])
            part.append(Sample(names[y], rng.choice(FASHION_CAPTIONS).format(phrase), _gray(images[i]), split=split))
        samples += keep_per_class(part, limit_per_class)
    zero_shot = {"classes": names, "templates": FASHION_TEMPLATES, "synonyms": FASHION_CLASSES}
    info = {"source": str(source), "upstream": "https://github.com/zalandoresearch/fashion-mnist (MIT)",
            "limit_per_class": limit_per_class}
    # The upstream test set is the test split; validation comes out of the upstream training set.
    return write_generic(out, "fashion-mnist", samples, zero_shot, seed, info, val=0.1, test=0.0, progress=progress, force=force)


# -- emoji ------------------------------------------------------------------------------------------
