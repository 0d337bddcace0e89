"""Feature banks: every training pair's teacher features, fp16 on disk, memory-mapped.

A bank is computed once and cached under a key of (dataset fingerprint, teacher identity with its
preprocessing); a later run with the same key reuses it, a change to any of them builds a new one.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from clipping_edge.atomic import atomic_directory

from .data.pairs import PairSet
from .data.synthetic_cache import cache_dir
from .data.transforms import EvalTransform, ImageCaptionDataset, worker_context
from .progress import progress_bar
from .teachers import ImageTeacher, TextTeacher

BANK_VERSION = 1


@dataclass
class FeatureBanks:
    image: np.ndarray  # (N, D_img) float16, memory-mapped
    text: np.ndarray  # (N, D_txt) float16, memory-mapped
    path: Path
    stats: dict
    reused: bool = False  # loaded from the cache rather than computed by this call

    def __len__(self) -> int:
        return len(self.image)


def _stack_with_indices(batch: list) -> tuple[torch.Tensor, list[int]]:
    return torch.stack([x[0] for x in batch]), [x[2] for x in batch]


def bank_key(pairs: PairSet, image_teacher: ImageTeacher, text_teacher: TextTeacher) -> str:
    ident = f"v{BANK_VERSION}|{pairs.fingerprint()}|{len(pairs)}|{image_teacher.identity}|{text_teacher.identity}"
    return hashlib.sha256(ident.encode()).hexdigest()[:20]


def open_banks(path: Path, reused: bool = True) -> FeatureBanks:
    return FeatureBanks(np.load(path / "image.npy", mmap_mode="r"), np.load(path / "text.npy", mmap_mode="r"), path,
                        json.loads((path / "meta.json").read_text()), reused)


def build_banks(pairs: PairSet, image_teacher: ImageTeacher, text_teacher: TextTeacher, root: Path | None = None,
                batch_size: int = 64, workers: int = 1) -> FeatureBanks:
    """Return the cached banks for these pairs and teachers, computing them first if needed."""
    path = (root or cache_dir() / "banks") / bank_key(pairs, image_teacher, text_teacher)
    if (path / "meta.json").is_file():
        print(f"feature banks: reusing {path}")
        return open_banks(path)
    n = len(pairs)
    with atomic_directory(path) as tmp:
        image_bank = np.lib.format.open_memmap(tmp / "image.npy", "w+", np.float16, (n, image_teacher.dim))
        text_bank = np.lib.format.open_memmap(tmp / "text.npy", "w+", np.float16, (n, text_teacher.dim))
        loader = torch.utils.data.DataLoader(
            ImageCaptionDataset(pairs.pairs, EvalTransform(image_teacher.image_size)), batch_size=batch_size,
            num_workers=workers, multiprocessing_context=worker_context(workers), collate_fn=_stack_with_indices)
        start = time.perf_counter()
        for pixels, idx in progress_bar(loader, desc=f"image bank ({image_teacher.name})"):  # in order: no shuffle
            image_bank[idx[0]:idx[-1] + 1] = image_teacher.encode(pixels).numpy()
        image_seconds = time.perf_counter() - start
        start = time.perf_counter()
        captions = pairs.captions
        for i in progress_bar(range(0, n, 256), desc=f"text bank ({text_teacher.name})"):
            text_bank[i:i + 256] = text_teacher.encode(captions[i:i + 256]).numpy()
        text_seconds = time.perf_counter() - start
        image_bank.flush()
        text_bank.flush()
        del image_bank, text_bank
        stats = {"n": n, "image_teacher": image_teacher.identity, "text_teacher": text_teacher.identity,
                 "dataset": str(pairs.root), "image_seconds": round(image_seconds, 2),
                 "text_seconds": round(text_seconds, 2), "images_per_second": round(n / image_seconds, 1)}
        (tmp / "meta.json").write_text(json.dumps(stats, indent=2))
    print(f"feature banks: {n} pairs in {image_seconds:.1f}s (images, {n / image_seconds:.0f}/s) "
          f"+ {text_seconds:.1f}s (captions) -> {path}")
    return open_banks(path, reused=False)
