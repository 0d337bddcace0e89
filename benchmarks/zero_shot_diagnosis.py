"""Why a student's zero-shot top-1 is what it is, on one labelled split: per-class top-1, where each
class's images go, and whether the image side or the text side is to blame (training/metrics.py's
`zero_shot_diagnosis`). Locked towers are read from their feature cache, as evaluation does.

    python -m clipping_edge.benchmarks.zero_shot_diagnosis --checkpoint runs/ablation-anchors-e4/clip-ping-basic-locked-anchors-s0/checkpoint \
        --data runs/data/fashion-mnist --split val --limit 2000
"""

from __future__ import annotations

import argparse
import sys

from clipping_edge.atomic import write_json_atomic
from clipping_edge.errors import ClippingEdgeError


def diagnose(checkpoint: str, data: str, split: str = "test", limit: int | None = None,
             templates: str = "dataset") -> tuple[list[str], dict]:
    import torch

    from clipping_edge.classifier import class_prototypes
    from clipping_edge.prompts import template_set
    from clipping_edge.training.checkpoint import load_student
    from clipping_edge.training.data.pairs import read_pairs, resolve_split
    from clipping_edge.training.evaluate import LockedCacheEncoder, class_positions
    from clipping_edge.training.locking import fully_locked
    from clipping_edge.training.metrics import zero_shot_diagnosis

    model, tokenizer, meta = load_student(checkpoint)
    model.eval()
    pairs = read_pairs(resolve_split(data, split), limit=limit)
    task = pairs.zero_shot
    if task is None or not all(p.label for p in pairs.pairs):
        raise ClippingEdgeError(f"{data} ({split}) has no zero-shot task with labels: pick a labelled dataset")
    encoder = LockedCacheEncoder(model.visual, model.text, tokenizer, model.config.vision.image_size,
                                 torch.device("cpu"), *fully_locked(meta.get("train", {})))
    labels = class_positions(task.classes, [p.label for p in pairs.pairs], pairs.root)
    prototypes = class_prototypes(encoder, task.classes, template_set(templates, task.templates), task.synonyms)
    return task.classes, zero_shot_diagnosis(encoder.encode_pairs(pairs), prototypes, labels)


def report(classes: list[str], found: dict, shown: int = 3) -> str:
    lines = [f"zero-shot top-1 {100 * found['top1']:.1f} %; nearest class centre (an oracle: it uses the labels) "
             f"{100 * found['class_mean_oracle_top1']:.1f} %",
             f"mean cosine between class centres of the images {found['image_class_mean_cosine']:.3f}, "
             f"between prototypes {found['prototype_cosine']:.3f}", "",
             "| class | images | top-1 % | most often called |", "|---|---|---|---|"]
    for c, row in enumerate(found["confusion"]):
        total = sum(row)
        if not total:
            continue
        called = sorted(((n, j) for j, n in enumerate(row) if n and j != c), reverse=True)[:shown]
        lines.append(f"| {classes[c]} | {total} | {100 * found['per_class_top1'][c]:.1f} | "
                     + ", ".join(f"{classes[j]} {100 * n / total:.0f} %" for n, j in called) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True, help="a labelled dataset with a zeroshot.json")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, help="the first N images of the split")
    parser.add_argument("--templates", default="dataset",
                        help="prompt set: dataset (its zeroshot.json templates), 7 or 80 (CLIP's ImageNet ensembles)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    try:
        classes, found = diagnose(args.checkpoint, args.data, args.split, args.limit, args.templates)
    except ClippingEdgeError as exc:
        sys.exit(f"error: {exc}")
    print(report(classes, found))
    if args.json:
        write_json_atomic(args.json, {"classes": classes, **found})


if __name__ == "__main__":
    main()
