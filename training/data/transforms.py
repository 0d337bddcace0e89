"""Train and eval image transforms in Pillow/numpy (no torchvision: it has no CPU build here).

The eval transform is the runtime's preprocessing, called as is, so exported models see the same pixels.
"""

from __future__ import annotations

import math
import multiprocessing
import multiprocessing.context
import random
from typing import Callable

import numpy as np
import torch
from PIL import Image

from clipping_edge.preprocess import (
    Preprocess,
    load_image,
    resize_center_crop,
    resize_image,
    to_chw_float,
)

# (image, per-sample RNG) -> (3, H, W) float32 in [0, 1]. Deterministic transforms ignore the RNG.
Transform = Callable[[Image.Image, random.Random], torch.Tensor]


class EvalTransform:
    """Resize (the shorter side and centre crop, unless the model squashes), [0, 1] CHW: the runtime's preprocessing."""

    def __init__(self, size: int | Preprocess):
        self.size = size

    def __call__(self, image: Image.Image, rng: random.Random | None = None) -> torch.Tensor:
        return torch.from_numpy(to_chw_float(resize_image(image, self.size)))


def eval_transform(size: int | Preprocess) -> Transform:
    return EvalTransform(size)


def random_resized_crop(image: Image.Image, size: int, scale: tuple[float, float], ratio: tuple[float, float],
                        rng: random.Random) -> Image.Image:
    w, h = image.size
    for _ in range(10):
        area = w * h * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
            return image.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + cw, top + ch))
    return resize_center_crop(image, size)


class BasicTrainTransform:
    """CLIP's training preprocessing: a mild random resized crop (90-100 % of the area), no flips
    (captions name left and right)."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, image: Image.Image, rng: random.Random) -> torch.Tensor:
        crop = random_resized_crop(image, self.size, (0.9, 1.0), (3 / 4, 4 / 3), rng)
        return torch.from_numpy(np.asarray(crop, dtype=np.float32).transpose(2, 0, 1) / 255.0)


def basic_train_transform(size: int) -> Transform:
    return BasicTrainTransform(size)


def worker_context(workers: int) -> multiprocessing.context.BaseContext | None:
    """Loader workers start from a fork server, not by forking this process: once a converter runtime
    (jax, LiteRT, OpenVINO) has started threads here, a plain fork can crash the worker or us."""
    if workers == 0:
        return None
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "clipping_edge.training.data.transforms"])
    return context


class ImageCaptionDataset(torch.utils.data.Dataset):
    """Yields (pixels, caption, index); the collate function tokenizes whole batches at once.

    Each sample's augmentation RNG is derived from (seed, epoch, index), so a resumed run and any
    number of loader workers see exactly the augmentations of one uninterrupted run.
    """

    def __init__(self, pairs, transform: Transform, seed: int = 0):
        self.pairs = pairs
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str, int]:
        pair = self.pairs[i]
        rng = random.Random(f"{self.seed}/{self.epoch}/{i}")
        return self.transform(load_image(pair.source()), rng), pair.caption, i
