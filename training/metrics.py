"""Zero-shot and retrieval metrics on embeddings: numpy only, so the benchmark of a device's bundles needs no torch."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    top = np.argsort(-scores, axis=1)[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean()) if len(labels) else float("nan")


def zero_shot_metrics(image_emb: np.ndarray, prototypes: np.ndarray, labels: np.ndarray,
                      subsets: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    scores = image_emb @ prototypes.T
    out = {"zero_shot_top1": topk_accuracy(scores, labels, 1), "zero_shot_top5": topk_accuracy(scores, labels, 5)}
    for name, mask in (subsets or {}).items():
        if mask.any():
            out[f"zero_shot_top1_{name}"] = topk_accuracy(scores[mask], labels[mask], 1)
    return out


def retrieval_metrics(image_emb: np.ndarray, text_emb: np.ndarray, captions: Sequence[str],
                      ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall@k both ways. Identical caption texts are interchangeable: retrieving any of them counts."""
    _, group = np.unique(np.asarray(captions), return_inverse=True)
    sims = image_emb @ text_emb.T
    i2t = np.argsort(-sims, axis=1)
    t2i = np.argsort(-sims.T, axis=1)
    out = {}
    for k in ks:
        out[f"image_to_text_R@{k}"] = float((group[i2t[:, :k]] == group[:, None]).any(axis=1).mean())
        out[f"text_to_image_R@{k}"] = float((group[t2i[:, :k]] == group[:, None]).any(axis=1).mean())
    return out
