"""Training recipes: `basic` (CLIP's preprocessing) and `improved` (after Fini et al., "Improved
baselines for vision-language pre-training", TMLR 2023).

improved = SimCLR-style strong image augmentation on extra image views, text augmentation on extra
caption views (stop-word removal; EDA random swap / deletion / insertion, with insertions drawn from
the caption's own words since no synonym source may be downloaded; word dropout), and label smoothing
on every CLIP term that involves an augmented view (ClipObjective). View 0 of each modality is the
plain one, so the (plain image, plain caption) term is unchanged.

Deviations from SimCLR's defaults, because captions name colours and sides: no horizontal flips and
no hue jitter by default (a hue shift turns a "red" object orange); both are switches.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps

from clipping_edge.preprocess import load_image

from .transforms import (
    BasicTrainTransform,
    ImageCaptionDataset,
    Transform,
    random_resized_crop,
)

RECIPES = ("basic", "improved")

# A short English stop-word list (no download): function words that rarely carry the visual content.
STOP_WORDS = frozenset("""a an the of on in at to is are was were be been and or with there this that these those
its it as by for from into onto showing shows some""".split())


@dataclass
class StrongImageAugment:
    """Random resized crop, colour jitter (p 0.8), grayscale (p 0.2), Gaussian blur (p 0.5)."""

    size: int
    crop_scale: tuple[float, float] = (0.35, 1.0)
    jitter: float = 0.4  # brightness, contrast and saturation strength
    hue: float = 0.0
    flip: bool = False

    def __call__(self, image: Image.Image, rng: random.Random) -> torch.Tensor:
        image = random_resized_crop(image, self.size, self.crop_scale, (3 / 4, 4 / 3), rng)
        if self.flip and rng.random() < 0.5:
            image = ImageOps.mirror(image)
        if rng.random() < 0.8:
            image = self._jitter(image, rng)
        if rng.random() < 0.2:
            image = ImageOps.grayscale(image).convert("RGB")
        if rng.random() < 0.5:
            image = image.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.1, 1.0) * self.size / 64))
        return torch.from_numpy(np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0)

    def _jitter(self, image: Image.Image, rng: random.Random) -> Image.Image:
        pixels = np.asarray(image, dtype=np.float32) / 255.0
        ops = ["brightness", "contrast", "saturation"] + (["hue"] if self.hue > 0 else [])
        rng.shuffle(ops)
        for op in ops:
            if op == "hue":
                hsv = np.asarray(Image.fromarray((pixels * 255).astype(np.uint8)).convert("HSV"), dtype=np.int16)
                hsv[..., 0] = (hsv[..., 0] + int(rng.uniform(-self.hue, self.hue) * 255)) % 256
                pixels = np.asarray(Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB"), dtype=np.float32) / 255.0
                continue
            factor = rng.uniform(max(0.0, 1 - self.jitter), 1 + self.jitter)
            gray = pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
            if op == "brightness":
                pixels = pixels * factor
            elif op == "contrast":
                pixels = (pixels - gray.mean()) * factor + gray.mean()
            else:
                pixels = (pixels - gray[..., None]) * factor + gray[..., None]
            pixels = np.clip(pixels, 0.0, 1.0)
        return Image.fromarray((pixels * 255 + 0.5).astype(np.uint8))


@dataclass
class TextAugment:
    """Stop-word removal (p 0.5), then one EDA operation, then word dropout; never an empty caption."""

    word_dropout: float = 0.1

    def __call__(self, caption: str, rng: random.Random) -> str:
        words = caption.rstrip(".").split()
        if rng.random() < 0.5:
            words = [w for w in words if w.lower() not in STOP_WORDS] or words
        n = max(1, len(words) // 8)
        op = rng.choice(("swap", "delete", "insert"))
        for _ in range(n):
            if op == "swap" and len(words) > 1:
                a, b = rng.sample(range(len(words)), 2)
                words[a], words[b] = words[b], words[a]
            elif op == "delete" and len(words) > 1:
                words.pop(rng.randrange(len(words)))
            elif op == "insert":
                words.insert(rng.randrange(len(words) + 1), rng.choice(words))
        kept = [w for w in words if rng.random() >= self.word_dropout]
        return " ".join(kept or words)


@dataclass
class Recipe:
    name: str
    image_views: list[Transform]  # view 0 plain, the rest augmented
    text_views: list[Callable[[str, random.Random], str] | None]  # None: the caption as written
    label_smoothing: float


def make_recipe(name: str, image_size: int, image_views: int = 2, text_views: int = 2, label_smoothing: float = 0.1,
                hue: float = 0.0, flip: bool = False) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}: choose one of {', '.join(RECIPES)}")
    if name == "basic":
        return Recipe(name, [BasicTrainTransform(image_size)], [None], 0.0)
    strong = StrongImageAugment(image_size, hue=hue, flip=flip)
    return Recipe(name, [BasicTrainTransform(image_size)] + [strong] * (image_views - 1),
                  [None] + [TextAugment()] * (text_views - 1), label_smoothing)


class MultiViewDataset(ImageCaptionDataset):
    """Yields (views (V, 3, H, W), captions [T], index); the per-sample RNG makes every view and every
    caption augmentation a pure function of (seed, epoch, index)."""

    def __init__(self, pairs, recipe: Recipe, seed: int = 0, load_images: bool = True):
        super().__init__(pairs, recipe.image_views[0], seed)
        self.recipe = recipe
        self.load_images = load_images  # False: a locked image tower's cached features stand in for pixels

    def __getitem__(self, i: int) -> tuple[torch.Tensor, list[str], int]:
        pair = self.pairs[i]
        rng = random.Random(f"{self.seed}/{self.epoch}/{i}")
        if self.load_images:
            image = load_image(pair.source())
            views = torch.stack([transform(image, rng) for transform in self.recipe.image_views])
        else:
            views = torch.zeros(len(self.recipe.image_views), 0)
        captions = [pair.caption if augment is None else augment(pair.caption, rng) for augment in self.recipe.text_views]
        return views, captions, i


def collate_views(batch: list) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    """-> pixels (V*B, 3, H, W) view-major, captions (T*B) view-major, pair indices (B,)."""
    pixels = torch.stack([x[0] for x in batch], dim=1)  # (V, B, 3, H, W)
    captions = [sample[1][t] for t in range(len(batch[0][1])) for sample in batch]
    return pixels.flatten(0, 1), captions, torch.tensor([x[2] for x in batch])
