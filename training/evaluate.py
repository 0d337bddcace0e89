"""Zero-shot classification with prompt ensembling and image<->text retrieval on a held-out split.

Class prototypes come from the runtime's own `class_prototypes`, so evaluation and deployment build
classifiers the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from clipping_edge.classifier import class_prototypes
from clipping_edge.tokenizer import TextTokenizer

from .data.pairs import PairSet
from .data.transforms import ImageCaptionDataset, eval_transform
from .models import Student


@dataclass
class TorchEncoder:
    """Two PyTorch towers behind the runtime's encode_text/encode_pixels interface (numpy in and out)."""

    image: torch.nn.Module
    text: torch.nn.Module
    tokenizer: TextTokenizer
    image_size: int
    device: torch.device = torch.device("cpu")

    @classmethod
    def from_student(cls, model: Student, tokenizer: TextTokenizer, device: torch.device | str = "cpu") -> "TorchEncoder":
        return cls(model.visual, model.text, tokenizer, model.config.vision.image_size, torch.device(device))

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        outs = [self.text(torch.from_numpy(self.tokenizer(texts[i:i + batch_size])).to(self.device)).float().cpu()
                for i in range(0, len(texts), batch_size)]
        return torch.cat(outs).numpy()

    @torch.no_grad()
    def encode_pixels(self, pixels: np.ndarray, batch_size: int = 128) -> np.ndarray:
        outs = [self.image(torch.from_numpy(pixels[i:i + batch_size]).to(self.device)).float().cpu()
                for i in range(0, len(pixels), batch_size)]
        return torch.cat(outs).numpy()

    @torch.no_grad()
    def encode_pairs(self, pairs: PairSet, batch_size: int = 128) -> np.ndarray:
        dataset = ImageCaptionDataset(pairs.pairs, eval_transform(self.image_size))
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=lambda b: torch.stack([x[0] for x in b]))
        return torch.cat([self.image(px.to(self.device)).float().cpu() for px in loader]).numpy()


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


def evaluate(model: Student, tokenizer: TextTokenizer, pairs: PairSet, device: torch.device | str = "cpu") -> dict[str, float]:
    model.eval()
    encoder = TorchEncoder.from_student(model, tokenizer, device)
    image_emb = encoder.encode_pairs(pairs)
    metrics = retrieval_metrics(image_emb, encoder.encode_text(pairs.captions), pairs.captions)
    task = pairs.zero_shot
    if task is not None and all(p.label for p in pairs.pairs):
        position = {c: i for i, c in enumerate(task.classes)}
        labels = np.asarray([position[p.label] for p in pairs.pairs])
        held_out = np.isin(labels, [position[c] for c in task.held_out])
        subsets = {"held_out": held_out, "seen": ~held_out} if task.held_out else {}
        prototypes = class_prototypes(encoder, task.classes, task.templates, task.synonyms)
        metrics.update(zero_shot_metrics(image_emb, prototypes, labels, subsets))
    return metrics


def format_metrics(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k}={v:.3f}" for k, v in metrics.items())
