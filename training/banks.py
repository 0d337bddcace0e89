"""Feature banks: every training pair's teacher features, fp16 on disk, memory-mapped.

A bank is computed once and cached under a key of (dataset fingerprint, teacher identity with its
preprocessing); a later run with the same key reuses it, a change to any of them builds a new one.
Extraction is split into shards that ranks of a distributed run share and that survive a kill.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from clipping_edge.atomic import atomic_directory, write_bytes_atomic

from .data.pairs import PairSet
from .data.synthetic_cache import cache_dir
from .data.transforms import EvalTransform, ImageCaptionDataset, worker_context
from .distributed import Distributed
from .progress import progress_bar
from .teachers import ImageTeacher, TextTeacher

try:
    import fcntl
except ImportError:  # Windows: no lock, so two runs started at once must not share a cache there
    fcntl = None

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


def bank_key(fingerprint: str, n: int, image_teacher: ImageTeacher, text_teacher: TextTeacher) -> str:
    """`fingerprint`, `n`: the pairs' `PairSet.fingerprint()` and count."""
    ident = f"v{BANK_VERSION}|{fingerprint}|{n}|{image_teacher.identity}|{text_teacher.identity}"
    return hashlib.sha256(ident.encode()).hexdigest()[:20]


def open_banks(path: Path, reused: bool = True) -> FeatureBanks:
    return FeatureBanks(np.load(path / "image.npy", mmap_mode="r"), np.load(path / "text.npy", mmap_mode="r"), path,
                        json.loads((path / "meta.json").read_text()), reused)


SHARD_ROWS = 8192  # rows per bank shard: the unit of resumption and of the work split across ranks


def _encode_captions(subset: list, text_teacher: TextTeacher, timing: dict[str, float]) -> np.ndarray:
    start = time.perf_counter()
    captions = [p.caption for p in subset]
    texts = [text_teacher.encode(captions[i:i + 256]).cpu().numpy() for i in range(0, len(captions), 256)]
    timing["text_seconds"] += time.perf_counter() - start
    return np.concatenate(texts).astype(np.float16)


def _extract_shard(pairs: PairSet, rows: range, image_teacher: ImageTeacher, text_teacher: TextTeacher, batch_size: int,
                   workers: int, device: torch.device, timing: dict[str, float],
                   known_images: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    subset = [pairs.pairs[i] for i in rows]
    if known_images is not None:
        return np.asarray(known_images[rows.start:rows.stop], np.float16), _encode_captions(subset, text_teacher, timing)
    if not image_teacher.reads_pixels:  # a text-only cache: no image is decoded
        return np.ones((len(rows), image_teacher.dim), np.float16), _encode_captions(subset, text_teacher, timing)
    loader = torch.utils.data.DataLoader(
        ImageCaptionDataset(subset, EvalTransform(image_teacher.preprocess or image_teacher.image_size)), batch_size=batch_size,
        num_workers=workers, multiprocessing_context=worker_context(workers), collate_fn=_stack_with_indices)
    batches = iter(loader)  # the workers start and decode the first images while the captions are embedded
    texts = _encode_captions(subset, text_teacher, timing)
    start = time.perf_counter()
    images = [image_teacher.encode(pixels.to(device, non_blocking=True)).cpu().numpy()
              for pixels, _ in progress_bar(batches, desc=f"image bank ({image_teacher.name}) rows {rows.start}-{rows.stop}",
                                            total=len(loader))]
    timing["image_seconds"] += time.perf_counter() - start
    timing["images"] += len(rows)
    return np.concatenate(images).astype(np.float16), texts


def reproduces_rows(teacher: ImageTeacher, pairs: PairSet, bank: np.ndarray, device: torch.device, probe: int = 8) -> bool:
    """Whether `teacher` gives `bank`'s first rows (float16) on the first `probe` pairs. Another encoder
    differs by far more than float16 rounding."""
    subset = pairs.pairs[:min(probe, len(pairs))]
    if not subset or len(bank) < len(subset) or bank.ndim != 2 or bank.shape[1] != teacher.dim:
        return False
    dataset = ImageCaptionDataset(subset, EvalTransform(teacher.preprocess or teacher.image_size))
    pixels = torch.stack([dataset[i][0] for i in range(len(subset))])
    with torch.no_grad():
        mine = teacher.encode(pixels.to(device)).cpu().numpy().astype(np.float16).astype(np.float32)
    return bool(np.allclose(mine, np.asarray(bank[:len(subset)], dtype=np.float32), rtol=4e-3, atol=1e-3))


def image_rows_elsewhere(pairs: PairSet, fingerprint: str, teacher: ImageTeacher, root: Path,
                         device: torch.device) -> tuple[np.ndarray, Path] | None:
    """The image rows of another cached bank of the same pairs that `teacher` reproduces, so extraction can
    skip the images: a locked image tower initialised from the image teacher computes the teacher's features
    (EfficientNet-Lite0 at 224 px: 11 min for 5 600 pairs here, spent once instead of twice)."""
    for meta_path in sorted(root.glob("*/meta.json")):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            continue
        if meta.get("pairs") != fingerprint or meta.get("n") != len(pairs) or meta.get("image_teacher") == teacher.identity:
            continue
        rows = np.load(meta_path.parent / "image.npy", mmap_mode="r")
        if reproduces_rows(teacher, pairs, rows, device):
            return rows, meta_path.parent
    return None


_ANNOUNCED: set[Path] = set()  # caches this process has already said it reuses


@contextmanager
def sole_builder(parts: Path, locked: bool) -> Iterator[None]:
    """Hold an exclusive lock on the bank's shard folder while this process extracts and merges it. Two runs
    started at once that need the same bank (the ablation's parallel runs) would otherwise both extract it,
    and the first to finish would remove the shards the other was merging. The lock is on the folder itself,
    so it leaves no file behind; a process that waited finds the bank built."""
    parts.mkdir(parents=True, exist_ok=True)
    if not locked or fcntl is None:
        yield
        return
    while True:
        try:
            folder = os.open(parts, os.O_RDONLY)
            break
        except FileNotFoundError:  # the builder we raced just finished and removed it
            parts.mkdir(parents=True, exist_ok=True)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        yield
    finally:
        os.close(folder)  # releases the lock


def _reuse(path: Path, dist: Distributed) -> FeatureBanks:
    if dist.is_main and path not in _ANNOUNCED:  # a validation curve reopens its sets' caches every epoch
        print(f"feature banks: reusing {path}")
        _ANNOUNCED.add(path)
    return open_banks(path)


def build_banks(pairs: PairSet, image_teacher: ImageTeacher, text_teacher: TextTeacher, root: Path | None = None,
                batch_size: int = 64, workers: int = 1, dist: Distributed | None = None,
                device: torch.device | str = "cpu", shard_rows: int = SHARD_ROWS) -> FeatureBanks:
    """Return the cached banks for these pairs and teachers, computing them first if needed.

    The rows are cut into shards of `shard_rows`; rank r of a distributed run extracts shards r, r + world,
    ... Each finished shard is saved at once under `<bank>.partial/`, so an interrupted extraction
    resumes where it stopped (with any world size); rank 0 then merges the shards into one bank."""
    dist = dist or Distributed()
    fingerprint = pairs.fingerprint()  # stats every image file: taken once, for the key and the donor search
    path = (root or cache_dir() / "banks") / bank_key(fingerprint, len(pairs), image_teacher, text_teacher)
    if (path / "meta.json").is_file():
        return _reuse(path, dist)
    parts = path.with_name(path.name + ".partial")
    # The ranks of one distributed run share the shards between them; only separate runs are kept apart.
    with sole_builder(parts, locked=dist.world == 1):
        if (path / "meta.json").is_file():  # built by the run this one waited for
            shutil.rmtree(parts, ignore_errors=True)
            return _reuse(path, dist)
        return _extract_and_merge(pairs, image_teacher, text_teacher, path, parts, fingerprint, batch_size, workers,
                                  dist, device, shard_rows)


def _extract_and_merge(pairs: PairSet, image_teacher: ImageTeacher, text_teacher: TextTeacher, path: Path, parts: Path,
                       fingerprint: str, batch_size: int, workers: int, dist: Distributed, device: torch.device | str,
                       shard_rows: int) -> FeatureBanks:
    n = len(pairs)
    shards = [range(start, min(n, start + shard_rows)) for start in range(0, n, shard_rows)]
    image_teacher.to(torch.device(device))
    text_teacher.to(torch.device(device))
    donor = (image_rows_elsewhere(pairs, fingerprint, image_teacher, path.parent, torch.device(device))
             if image_teacher.reads_pixels else None)
    if donor is not None and dist.is_main:
        print(f"feature banks: {image_teacher.name} gives the image rows of {donor[1]} (checked on the first pairs): "
              "copying them, not extracting")
    timing = {"image_seconds": 0.0, "text_seconds": 0.0, "images": 0}
    done_before = 0
    for s, rows in enumerate(shards):
        if s % dist.world != dist.rank:
            continue
        if (parts / f"{s:05d}.npz").is_file():
            done_before += 1
            continue
        image, text = _extract_shard(pairs, rows, image_teacher, text_teacher, batch_size, workers, torch.device(device), timing,
                                     None if donor is None else donor[0])
        buffer = io.BytesIO()
        np.savez(buffer, image=image, text=text)
        write_bytes_atomic(parts / f"{s:05d}.npz", buffer.getvalue())
    dist.barrier()
    if dist.is_main:
        with atomic_directory(path, "banks") as tmp:
            image_bank = np.lib.format.open_memmap(tmp / "image.npy", "w+", np.float16, (n, image_teacher.dim))
            text_bank = np.lib.format.open_memmap(tmp / "text.npy", "w+", np.float16, (n, text_teacher.dim))
            for s, rows in enumerate(shards):
                with np.load(parts / f"{s:05d}.npz") as shard:
                    image_bank[rows.start:rows.stop], text_bank[rows.start:rows.stop] = shard["image"], shard["text"]
            image_bank.flush()
            text_bank.flush()
            del image_bank, text_bank
            # Throughput of this process's share (rank 0), which is what one process of the run achieved.
            stats = {"n": n, "image_teacher": image_teacher.identity, "text_teacher": text_teacher.identity,
                     "dataset": str(pairs.root), "pairs": fingerprint, "shards": len(shards), "world": dist.world,
                     "image_rows_from": None if donor is None else str(donor[1]),
                     "resumed_shards": done_before, "image_seconds": round(timing["image_seconds"], 2),
                     "text_seconds": round(timing["text_seconds"], 2),
                     "images_per_second": round(timing["images"] / timing["image_seconds"], 1) if timing["images"] else None}
            (tmp / "meta.json").write_text(json.dumps(stats, indent=2))
        shutil.rmtree(parts, ignore_errors=True)
        print(f"feature banks: {n} pairs, {len(shards)} shard(s) on {dist.world} process(es); this one: images "
              f"{timing['image_seconds']:.1f}s, captions {timing['text_seconds']:.1f}s -> {path}")
    dist.barrier()
    return open_banks(path, reused=False)
