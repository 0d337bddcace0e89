"""Parity of an exported bundle against the PyTorch student, on real inputs, through the real runtime.

Per tower: cosine between runtime and PyTorch embeddings of the same inputs (held-out images; class
prompts). Zero-shot: top-1 agreement and accuracy of both on the labelled split, plus the largest
difference in class probabilities. Thresholds are per precision; a miss fails the export.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

import clipping_edge
from clipping_edge.classifier import ZeroShotClassifier, class_prototypes, softmax
from clipping_edge.preprocess import preprocess_batch
from training.data.pairs import PairSet
from training.evaluate import TorchEncoder
from training.models import Student


@dataclass(frozen=True)
class Thresholds:
    min_cosine: float  # worst row, per tower
    min_agreement: float  # zero-shot top-1 agreement with PyTorch
    max_top1_drop: float  # accuracy points (0-100) the export may lose


THRESHOLDS: dict[str, Thresholds] = {"fp32": Thresholds(0.9999, 0.99, 0.5)}


def _row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def validate_bundle(student: Student, tokenizer, bundle: Path, pairs: PairSet, precision: str,
                    max_images: int = 256) -> dict:
    """Returns the parity record stored in the manifest; `passed` says whether every threshold held."""
    thresholds = THRESHOLDS[precision]
    model = clipping_edge.load(bundle)
    torch_encoder = TorchEncoder(student.eval(), tokenizer)
    subset = pairs.pairs[:max_images]
    pixels = preprocess_batch([p.image for p in subset], model.manifest.image_size)
    image_cos = _row_cosines(model.encode_pixels(pixels), torch_encoder.encode_pixels(pixels))

    task = pairs.zero_shot
    prompts = ([t.format(c) for c in task.classes for t in task.templates] if task else pairs.captions)[:512]
    text_cos = _row_cosines(model.encode_text(prompts), torch_encoder.encode_text(prompts))
    record = {"images": len(subset), "prompts": len(prompts),
              "image_cosine_min": float(image_cos.min()), "image_cosine_mean": float(image_cos.mean()),
              "text_cosine_min": float(text_cos.min()), "text_cosine_mean": float(text_cos.mean())}

    if task and all(p.label for p in subset):
        labels = np.asarray([task.classes.index(p.label) for p in subset])
        classifier = ZeroShotClassifier(model, task.classes, task.templates, task.synonyms, index_dtype="f32")
        runtime_probs = classifier.probabilities(model.encode_pixels(pixels))
        torch_protos = class_prototypes(torch_encoder, task.classes, task.templates, task.synonyms)
        with torch.no_grad():
            scale = student.logit_scale.exp().clamp(max=100).item()
        torch_probs = softmax(scale * torch_encoder.encode_pixels(pixels) @ torch_protos.T)
        runtime_top1, torch_top1 = runtime_probs.argmax(1), torch_probs.argmax(1)
        record.update({
            "zero_shot_agreement": float((runtime_top1 == torch_top1).mean()),
            "zero_shot_top1": float((runtime_top1 == labels).mean()),
            "zero_shot_top1_torch": float((torch_top1 == labels).mean()),
            "max_probability_diff": float(np.abs(runtime_probs - torch_probs).max()),
        })
        record["top1_drop_points"] = 100 * (record["zero_shot_top1_torch"] - record["zero_shot_top1"])
    failures = []
    if record["image_cosine_min"] < thresholds.min_cosine:
        failures.append(f"image cosine {record['image_cosine_min']:.6f} < {thresholds.min_cosine}")
    if record["text_cosine_min"] < thresholds.min_cosine:
        failures.append(f"text cosine {record['text_cosine_min']:.6f} < {thresholds.min_cosine}")
    if "zero_shot_agreement" in record:
        if record["zero_shot_agreement"] < thresholds.min_agreement:
            failures.append(f"top-1 agreement {record['zero_shot_agreement']:.3f} < {thresholds.min_agreement}")
        if record["top1_drop_points"] > thresholds.max_top1_drop:
            failures.append(f"top-1 drop {record['top1_drop_points']:.2f} pt > {thresholds.max_top1_drop}")
    record.update({"thresholds": asdict(thresholds), "passed": not failures, "failures": failures})
    return record


def describe(record: dict) -> str:
    parts = [f"image cos min {record['image_cosine_min']:.6f}", f"text cos min {record['text_cosine_min']:.6f}"]
    if "zero_shot_agreement" in record:
        parts += [f"top-1 agreement {record['zero_shot_agreement']:.1%}", f"Δtop-1 {-record['top1_drop_points']:+.2f} pt",
                  f"max |Δp| {record['max_probability_diff']:.2e}"]
    t = record["thresholds"]
    parts.append(f"(thresholds: cos ≥ {t['min_cosine']}, agreement ≥ {t['min_agreement']:.0%}, drop ≤ {t['max_top1_drop']} pt)")
    return ", ".join(parts)
