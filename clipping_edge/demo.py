"""The main job: built-in data -> feature banks -> CLIP-PING student -> eval -> ONNX bundle -> classify.

Imported only by `clipping-edge demo`; it pulls in torch through `training` and `export`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path


def _row(step: str, seconds: float, result: str) -> str:
    return f"| {step:<14} | {seconds:7.1f} s | {result} |"


def run_demo(out: Path, epochs: int = 8, data: str = "synthetic") -> dict:
    from export.bundle import export_bundle
    from training.data.pairs import read_pairs, resolve_split
    from training.trainer import TrainConfig, train

    from .classifier import ZeroShotClassifier
    from .model import load

    rows, t0 = [], time.perf_counter()
    train_dir, test_dir = resolve_split(data, "train"), resolve_split(data, "test")
    test = read_pairs(test_dir)
    rows.append(_row("data", time.perf_counter() - t0, f"{len(read_pairs(train_dir))} train / {len(test)} test pairs in {test.root.parent}"))

    t = time.perf_counter()
    # Synthetic scenes are 64 px: the image teacher sees them at 128 px, 3x faster than its native 224.
    cfg = TrainConfig(data=data, out=str(out / "train"), method="clip-ping", epochs=epochs, teacher_image_size=128,
                      resume=(out / "train" / "checkpoint" / "trainer_state.pt").exists())
    checkpoint = train(cfg)
    metrics = json.loads((out / "train" / "metrics.json").read_text())
    log = [json.loads(line) for line in (out / "train" / "log.jsonl").read_text().splitlines()]
    banks = json.loads((out / "train" / "banks.json").read_text())
    bank_seconds = 0.0 if banks["reused"] else banks["image_seconds"] + banks["text_seconds"]
    rows.append(_row("feature banks", bank_seconds,
                     f"{banks['n']} pairs, images at {banks['images_per_second']:.0f}/s; "
                     f"{'reused from' if banks['reused'] else 'cached in'} {banks['path']}"))
    rows.append(_row("train + eval", time.perf_counter() - t - bank_seconds,
                     f"{cfg.student} clip-ping, {epochs} epochs, {log[-1]['samples_per_second']:.0f} samples/s, final loss {log[-1]['loss']:.3f}"))
    held = f" (held-out classes {metrics['zero_shot_top1_held_out']:.1%})" if "zero_shot_top1_held_out" in metrics else ""
    rows.append(_row("  held-out", 0.0, f"zero-shot top-1 {metrics.get('zero_shot_top1', float('nan')):.1%}{held}, "
                                      f"top-5 {metrics.get('zero_shot_top5', float('nan')):.1%}; "
                                      f"R@1 image→text {metrics['image_to_text_R@1']:.1%}, text→image {metrics['text_to_image_R@1']:.1%}"))

    t = time.perf_counter()
    bundle, parity = export_bundle(checkpoint, out / "bundle", "onnx", "none", data)
    rows.append(_row("export onnx", time.perf_counter() - t,
                     f"cos image {parity['image_cosine_min']:.6f}, text {parity['text_cosine_min']:.6f}, "
                     f"top-1 agreement {parity.get('zero_shot_agreement', float('nan')):.1%} -> {bundle}"))

    t = time.perf_counter()
    model = load(bundle)
    task = test.zero_shot
    classifier = ZeroShotClassifier(model, task.classes, task.templates, task.synonyms)
    index_path = classifier.save_index(out / "prototypes.usearch")
    sample = [p for p in test.pairs if p.label in task.held_out][:3] + [p for p in test.pairs if p.label not in task.held_out][:3]
    predictions = classifier.classify([p.source() for p in sample], top_k=1)
    hits = sum(p.label == pred[0].label for p, pred in zip(sample, predictions))
    rows.append(_row("classify", time.perf_counter() - t, f"{hits}/{len(sample)} test images right (3 of never-seen classes) with the ONNX runtime, "
                                                           f"{len(task.classes)} prototypes in {index_path}"))
    for pair, pred in zip(sample, predictions):
        mark = "✓" if pair.label == pred[0].label else "✗"
        unseen = " (class never seen in training)" if pair.label in task.held_out else ""
        rows.append(f"|   {mark} {pair.image.name:<10} | {'':>9} | true: {pair.label}{unseen}; predicted: {pred[0].label} ({pred[0].score:.2f}) |")

    print("\n| step           |    time   | result |\n|----------------|-----------|--------|")
    print("\n".join(rows))
    print(f"\ntotal {time.perf_counter() - t0:.0f} s. Try: clipping-edge classify --bundle {bundle} "
          f"--labels-index {index_path} {sample[0].image}")
    summary = {"metrics": metrics, "parity": parity, "seconds": round(time.perf_counter() - t0, 1)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
