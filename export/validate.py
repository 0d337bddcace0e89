"""Parity of an export against the PyTorch student, on real inputs.

Per tower: cosine between candidate and PyTorch embeddings of the same inputs (held-out images;
class prompts). Zero-shot: top-1 agreement (rows PyTorch itself decides) and accuracy of both on the
labelled split, and the largest difference in class probabilities. The candidate is the bundle run through the clipping_edge runtime,
or, where the target's runtime cannot run on this OS (Core ML off macOS), a PyTorch simulation of its
numerics. Thresholds are per precision; a miss fails the export.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Callable, Protocol, Sequence

import numpy as np

from clipping_edge.classifier import class_prototypes, row_cosines, softmax
from clipping_edge.prompts import fill
from clipping_edge.preprocess import Preprocess, preprocess_batch
from clipping_edge.training.data.pairs import PairSet


class Encoder(Protocol):
    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray: ...

    def encode_text(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class SplitEncoder:
    """Two towers from different places (an exported file, PyTorch, a stand-in) as one Encoder."""
    encode_pixels: Callable[[np.ndarray], np.ndarray]
    encode_text: Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True)
class Thresholds:
    min_cosine: float  # worst row, per tower
    min_agreement: float  # zero-shot top-1 agreement with PyTorch
    max_top1_drop: float  # accuracy points (0-100) the export may lose


THRESHOLDS: dict[str, Thresholds] = {
    "fp32": Thresholds(0.9999, 0.99, 0.5),
    "fp16": Thresholds(0.999, 0.97, 1.0),
    "int8": Thresholds(0.99, 0.90, 1.0),
}


# A zero-shot row whose top two PyTorch probabilities are closer than this is a tie, left out of the top-1
# agreement (a random-weight model's rows all are: its probabilities are near uniform). Accuracy still counts them.
TIE_MARGIN = 1e-3


def family(precision: str) -> str:
    """fp32 / fp16 / int8: which thresholds a precision is held to. Every compressed precision (int8,
    int8-static, int8-weights, palette6, ...) is held to int8's."""
    return precision if precision in ("fp32", "fp16") else "int8"


MAX_IMAGES = 1024  # validation images (the split's first); the prompts stop at 512


def compare(reference: Encoder, candidate: Encoder, logit_scale: float, pairs: PairSet, image_size: int | Preprocess,
            max_images: int = MAX_IMAGES) -> dict:
    subset = pairs.pairs[:max_images]
    pixels = preprocess_batch([p.source() for p in subset], image_size)
    ref_images, cand_images = reference.encode_pixels(pixels), candidate.encode_pixels(pixels)
    image_cos = row_cosines(cand_images, ref_images)
    task = pairs.zero_shot
    prompts = ([fill(t, c) for c in task.classes for t in task.templates] if task else pairs.captions)[:512]
    text_cos = row_cosines(candidate.encode_text(prompts), reference.encode_text(prompts))
    record = {"images": len(subset), "prompts": len(prompts),
              "image_cosine_min": float(image_cos.min()), "image_cosine_mean": float(image_cos.mean()),
              "text_cosine_min": float(text_cos.min()), "text_cosine_mean": float(text_cos.mean())}
    if task and all(p.label for p in subset):
        labels = np.asarray([task.classes.index(p.label) for p in subset])
        probs = {name: softmax(logit_scale * images @ class_prototypes(encoder, task.classes, task.templates, task.synonyms).T)
                 for name, encoder, images in (("ref", reference, ref_images), ("cand", candidate, cand_images))}
        ref_top1, cand_top1 = probs["ref"].argmax(1), probs["cand"].argmax(1)
        ranked = np.sort(probs["ref"], axis=1)
        decided = ranked[:, -1] - ranked[:, -2] >= TIE_MARGIN if ranked.shape[1] > 1 else np.ones(len(ranked), bool)
        record.update({
            # over the rows PyTorch itself decides: a tie may fall either way under any change of arithmetic
            "zero_shot_agreement": float((cand_top1 == ref_top1)[decided].mean()) if decided.any() else 1.0,
            "zero_shot_ties": int((~decided).sum()),
            "zero_shot_top1": float((cand_top1 == labels).mean()),
            "zero_shot_top1_torch": float((ref_top1 == labels).mean()),
            "max_probability_diff": float(np.abs(probs["cand"] - probs["ref"]).max()),
        })
        record["top1_drop_points"] = 100 * (record["zero_shot_top1_torch"] - record["zero_shot_top1"])
    return record


def gate(record: dict, image_precision: str, text_precision: str, problems: Sequence[str] = (),
         max_top1_drop: float | None = None) -> dict:
    """Apply the thresholds: each tower its own precision's cosine, the zero-shot gates the looser tower's
    (its top-1 drop replaced by `max_top1_drop` when given)."""
    image_t, text_t = THRESHOLDS[family(image_precision)], THRESHOLDS[family(text_precision)]
    zero_shot_t = min(image_t, text_t, key=lambda t: t.min_cosine)
    if max_top1_drop is not None:
        zero_shot_t = replace(zero_shot_t, max_top1_drop=max_top1_drop)
    failures = list(problems)
    # Written as "not (value passes)" so that NaN, which compares False with everything, fails.
    if not record["image_cosine_min"] >= image_t.min_cosine:
        failures.append(f"image cosine {record['image_cosine_min']:.6f} < {image_t.min_cosine}")
    if not record["text_cosine_min"] >= text_t.min_cosine:
        failures.append(f"text cosine {record['text_cosine_min']:.6f} < {text_t.min_cosine}")
    if "zero_shot_agreement" in record:
        if not record["zero_shot_agreement"] >= zero_shot_t.min_agreement:
            failures.append(f"top-1 agreement {record['zero_shot_agreement']:.3f} < {zero_shot_t.min_agreement}")
        if not record["top1_drop_points"] <= zero_shot_t.max_top1_drop:
            failures.append(f"top-1 drop {record['top1_drop_points']:.2f} pt > {zero_shot_t.max_top1_drop}")
        if not np.isfinite(record["max_probability_diff"]):
            failures.append(f"class probabilities are not finite ({record['max_probability_diff']})")
    return {**record, "thresholds": {"image": asdict(image_t), "text": asdict(text_t), "zero_shot": asdict(zero_shot_t)},
            "passed": not failures, "failures": failures}


def describe(record: dict, brief: bool = False) -> str:
    parts = [f"image cos min {record['image_cosine_min']:.6f}", f"text cos min {record['text_cosine_min']:.6f}"]
    if "zero_shot_agreement" in record:
        ties = record.get("zero_shot_ties", 0)
        agreement = (f"top-1 agreement n/a (all {ties} rows tied)" if ties == record["images"] else
                     f"top-1 agreement {record['zero_shot_agreement']:.1%}" + (f" ({ties} tied rows left out)" if ties else ""))
        parts += [agreement, f"Δtop-1 {-record['top1_drop_points']:+.2f} pt",
                  f"max |Δp| {record['max_probability_diff']:.2e}"]
    if brief:
        return ", ".join(parts) + "".join(f"; {f}" for f in record["failures"])
    t = record["thresholds"]
    parts.append(f"(thresholds: cos ≥ {t['image']['min_cosine']} image / {t['text']['min_cosine']} text, "
                 f"agreement ≥ {t['zero_shot']['min_agreement']:.0%}, drop ≤ {t['zero_shot']['max_top1_drop']} pt)")
    return ", ".join(parts) + (f"; checked by {record['checked_by']}" if "checked_by" in record else "")
