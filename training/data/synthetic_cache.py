"""Where the default synthetic dataset lives: generated once into the cache, reused after."""

from __future__ import annotations

from pathlib import Path

from clipping_edge.backends import cache_root as cache_dir


def default_synthetic(n_train: int = 8000, n_test: int = 960, seed: int = 0, image_size: int = 64) -> Path:
    from .synthetic import generate

    out = cache_dir() / "data" / f"synthetic-v1-s{seed}-n{n_train}-t{n_test}-px{image_size}"
    if not (out / "dataset.json").is_file():
        print(f"generating the synthetic dataset into {out}")
        generate(out, n_train=n_train, n_test=n_test, seed=seed, image_size=image_size)
    return out
