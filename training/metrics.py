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


def zero_shot_diagnosis(image_emb: np.ndarray, prototypes: np.ndarray, labels: np.ndarray) -> dict:
    """Why zero-shot misses: per-class top-1 and the confusion matrix (rows: true class), and whether the
    image side or the text side is to blame. `class_mean_oracle_top1` classifies by the nearest mean image
    embedding of each class, taken with the labels of these same images: what prototypes placed at the
    images' own class centres would score, an upper bound for any prompt. `image_class_mean_cosine` and
    `prototype_cosine` are the mean off-diagonal cosines between class centres and between prototypes: near
    1 on one side, the classes are hard to tell apart there."""
    n_classes = len(prototypes)
    predicted = (image_emb @ prototypes.T).argmax(1)
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    counts = confusion.sum(1)
    present = np.flatnonzero(counts)
    centres = np.stack([image_emb[labels == c].mean(0) for c in present])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    oracle = present[(image_emb @ centres.T).argmax(1)]

    def off_diagonal_mean(x: np.ndarray) -> float:
        sims = x @ x.T
        return float(sims[~np.eye(len(x), dtype=bool)].mean()) if len(x) > 1 else float("nan")

    return {"top1": float((predicted == labels).mean()),
            # None, not NaN, for a class without images: nothing to score, and the JSON stays valid
            "per_class_top1": [float(confusion[c, c] / counts[c]) if counts[c] else None for c in range(n_classes)],
            "confusion": confusion.tolist(),
            "class_mean_oracle_top1": float((oracle == labels).mean()),
            "image_class_mean_cosine": off_diagonal_mean(centres),
            "prototype_cosine": off_diagonal_mean(prototypes[present])}
