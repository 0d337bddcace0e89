"""The main job: a student that knows real objects, from data that ships inside packages.

built-in data + ImageNet-head anchors -> LiT student (locked, pretrained EfficientNet-Lite0 image tower read
through its ImageNet head, locked MiniLM text tower: only the projections train) -> eval -> ONNX bundle ->
classify real photos; then the same photos through the shipped real-data student (training/shipped/).

Imported only by `clipping-edge demo`; it pulls in torch through training and export.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

# Real photos that ship inside scikit-image, with what they show, classified against LABELS.
PHOTOS = {"astronaut": "astronaut", "chelsea": "cat", "coffee": "cup of coffee", "rocket": "rocket",
          "camera": "man with a camera", "horse": "horse"}
LABELS = ["astronaut", "cat", "dog", "cup of coffee", "rocket", "horse", "man with a camera", "car", "bird",
          "flower", "bicycle", "building", "pizza", "airplane", "boat", "clock"]
SHIPPED = "effnet-minilm-real"  # the real-data student the demo hands over (training/shipped/)
REAL_DATA_HINT = ("more real pairs: apt-get install fonts-noto-color-emoji unicode-data openclipart-png openclipart-svg, "
                  "then `clipping-edge data prepare emoji|openclipart` and train on them (README, Your own data)")


def _row(step: str, seconds: float, result: str) -> str:
    return f"| {step:<14} | {seconds:7.1f} s | {result} |"


def real_photos() -> dict[str, "object"]:
    """name -> RGB uint8 array of scikit-image's sample photos (grayscale ones as RGB)."""
    import numpy as np
    from skimage import data

    photos = {}
    for name in PHOTOS:
        image = np.asarray(getattr(data, name)())
        if image.dtype == bool:
            image = np.where(image, 0, 255).astype(np.uint8)  # the horse is a black silhouette on white
        photos[name] = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]
    return photos


def unknown_rates(classifier, photos: list) -> dict[str, int]:
    """How many real photos and how many fresh junk images (another seed than the bundle's reference) the
    junk-anchored "unknown" (`--min-cosine auto`) calls unknown, with the demo's labels."""
    from clipping_edge.junk import CHECK_SEED, junk_images

    junk = [image for images in junk_images(CHECK_SEED).values() for image in images]
    called = [sum(p[0].label == "unknown" for p in classifier.classify(images, top_k=1, min_cosine="auto"))
              for images in (photos, junk)]
    return {"photos": called[0], "junk": called[1], "junk_images": len(junk)}


def _photo_rows(rows: list[str], bundle: Path, index_file: Path, photos: dict, who: str) -> tuple[int, dict, Path]:
    """Classify the sample photos with a bundle (CLIP's ImageNet prompts, an index of LABELS), one row each."""
    start = time.perf_counter()
    from clipping_edge.classifier import ZeroShotClassifier
    from clipping_edge.model import load
    from clipping_edge.prompts import DEFAULT_TEMPLATES

    classifier = ZeroShotClassifier(load(bundle), LABELS, DEFAULT_TEMPLATES)
    index_path = classifier.save_index(index_file)
    predictions = classifier.classify(list(photos.values()), top_k=2)
    hits = sum(PHOTOS[name] == pred[0].label for name, pred in zip(photos, predictions))
    rows.append(_row("classify", time.perf_counter() - start, f"{who}: {hits}/{len(photos)} real photos (scikit-image) right among "
                                      f"{len(LABELS)} labels, ONNX runtime"))
    for name, pred in zip(photos, predictions):
        mark = "✓" if PHOTOS[name] == pred[0].label else "✗"
        rows.append(f"|   {mark} {name:<10} | {'':>9} | true: {PHOTOS[name]}; predicted: {pred[0].label} "
                    f"({pred[0].score:.2f}), then {pred[1].label} ({pred[1].score:.2f}) |")
    unknown = unknown_rates(classifier, list(photos.values()))
    rows.append(_row("  unknown", 0.0, f"--min-cosine auto calls {unknown['photos']} of the {len(photos)} photos unknown, and "
                                       f"{unknown['junk']} of {unknown['junk_images']} junk images (blank, noise, gradient, "
                                       f"pattern; not the bundle's reference)"))
    return hits, unknown, index_path


def load_student_record(name: str) -> dict:
    """A shipped student's record (training/shipped/NAME.json), read without torch."""
    from clipping_edge.training.shipped import SHIPPED_DIR

    return json.loads((SHIPPED_DIR / f"{name}.json").read_text(encoding="utf-8"))


def demo_config(out: Path, epochs: int, data: str):
    from clipping_edge.training.trainer import TrainConfig

    # Both towers are pretrained and locked: their features are computed once and cached, so a step is
    # two matrix products. The image tower reads the ImageNet head's 5 likeliest classes; one anchor per
    # ImageNet class pairs that class with its names (the prompt ensemble the locked MiniLM gives them),
    # and the built-in scenes teach colours, shapes and layouts.
    return TrainConfig(data=data, out=str(out / "train"), student="effnet-head-minilm", method="clip", epochs=epochs,
                       lock_image=True, lock_text=True, anchors="imagenet", lr=1e-3, warmup_steps=30, limit=3000,
                       resume=(out / "train" / "checkpoint" / "trainer_state.json").exists())


def run_demo(out: Path, epochs: int = 10, data: str = "synthetic") -> dict:
    from clipping_edge.shell import command_name
    from clipping_edge.training.data.pairs import read_pairs, resolve_split
    from clipping_edge.training.shipped import list_shipped
    from clipping_edge.training.trainer import train

    from .bundle import export_bundle

    rows, t0 = [], time.perf_counter()
    cfg = demo_config(out, epochs, data)
    train_dir, test_dir = resolve_split(data, "train"), resolve_split(data, "test")
    test = read_pairs(test_dir)
    rows.append(_row("data", time.perf_counter() - t0, f"{min(cfg.limit, len(read_pairs(train_dir)))} train / {len(test)} "
                                                        f"test pairs in {test.root.parent} + ImageNet-head anchors"))

    t = time.perf_counter()
    checkpoint = train(cfg)
    metrics = json.loads((out / "train" / "metrics.json").read_text())
    log = [json.loads(line) for line in (out / "train" / "log.jsonl").read_text().splitlines()]
    seconds = sum(r["seconds"] for r in log)
    rows.append(_row("train + eval", time.perf_counter() - t,
                     f"{cfg.student} (both towers locked + cached), {epochs} epochs, "
                     f"{sum(r['samples_per_second'] * r['seconds'] for r in log) / max(seconds, 1e-9):.0f} samples/s "
                     f"over the run, final loss {log[-1]['loss']:.3f}"))
    rows.append(_row("  held-out", 0.0, f"built-in scenes: zero-shot top-1 {metrics.get('zero_shot_top1', float('nan')):.1%}, "
                                      f"R@1 image→text {metrics['image_to_text_R@1']:.1%}"))

    t = time.perf_counter()
    bundle, parity = export_bundle(checkpoint, out / "bundle", "onnx", "none", data)
    rows.append(_row("export onnx", time.perf_counter() - t,
                     f"cos image {parity['image_cosine_min']:.6f}, text {parity['text_cosine_min']:.6f}, "
                     f"top-1 agreement {parity.get('zero_shot_agreement', float('nan')):.1%} -> {bundle}"))

    photos = real_photos()
    hits, unknown, index_path = _photo_rows(rows, bundle, out / "labels.usearch", photos, "the demo student")
    summary_real = None
    if SHIPPED in list_shipped():
        # The other student a user can take: the recommended one (pooled EfficientNet-Lite0 features + MiniLM,
        # both locked) with projections trained on real clip art and emoji, shipped in the repository. Side by side
        # on the same photos: each is better at what it was trained on (docs/measured.md).
        t = time.perf_counter()
        real_bundle, real_parity = export_bundle(f"shipped:{SHIPPED}", out / "real-bundle", "onnx", "none", data)
        record = load_student_record(SHIPPED)
        rows.append(_row("real student", time.perf_counter() - t,
                         f"shipped:{SHIPPED} ({record['trained_on'].split(' (')[0]}), exported: cos image "
                         f"{real_parity['image_cosine_min']:.6f}, text {real_parity['text_cosine_min']:.6f} -> {real_bundle}"))
        rows.append(_row("  held-out", 0.0, record["held_out"]))
        real_hits, real_unknown, real_index = _photo_rows(rows, real_bundle, out / "real-labels.usearch", photos,
                                                          "the real-data student")
        summary_real = {"bundle": str(real_bundle), "index": str(real_index), "photos_right": real_hits,
                        "unknown": real_unknown, "parity": real_parity}

    print("\n| step           |    time   | result |\n|----------------|-----------|--------|")
    print("\n".join(rows))
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; {REAL_DATA_HINT}")
    print(f"next: {command_name()} classify --bundle {bundle} --labels-index {index_path} YOUR_PHOTO.jpg")
    if summary_real:
        print(f"  (for drawings, clip art and emoji: --bundle {summary_real['bundle']} --labels-index {summary_real['index']})")
    summary = {"metrics": metrics, "parity": parity, "photos_right": hits, "photos": len(photos), "unknown": unknown,
               "real_student": summary_real, "seconds": round(time.perf_counter() - t0, 1)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
