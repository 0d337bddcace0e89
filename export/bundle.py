"""Checkpoint -> bundle: export both towers for a target, write manifest + tokenizer, validate, rename."""

from __future__ import annotations

import json
import shutil
import time
from importlib import metadata
from pathlib import Path

from clipping_edge.atomic import atomic_directory
from clipping_edge.errors import ClippingEdgeError
from clipping_edge.manifest import MANIFEST_NAME, Manifest
from training.checkpoint import TOKENIZER, fingerprint, load_student
from training.data.pairs import read_pairs, resolve_split

from .targets import get_precision, get_target
from .towers import IMAGE_INPUT, TEXT_INPUT, ImageTower, TextTower
from .validate import describe, validate_bundle


def package_versions(*names: str) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _size_mb(path: Path) -> float:
    return path.stat().st_size / 1e6


def export_bundle(checkpoint: str | Path, out: str | Path, target: str = "onnx", quantize: str = "none",
                  data: str | None = None, allow_degraded: bool = False) -> tuple[Path, dict]:
    """Export, then validate against PyTorch on `data`'s test split (default: the training data)."""
    tgt = get_target(target)
    precision = get_precision(tgt, quantize)
    student, tokenizer, meta = load_student(checkpoint)
    data = data or meta.get("train", {}).get("data") or "synthetic"
    pairs = read_pairs(resolve_split(data, "test"))
    cfg = student.config
    out = Path(out)
    start = time.perf_counter()
    with atomic_directory(out) as tmp:
        image_file, text_file = f"image{tgt.suffix}", f"text{tgt.suffix}"
        image_tower, text_tower = ImageTower(student), TextTower(student)
        tgt.export_tower(image_tower, image_tower.example(), IMAGE_INPUT, tmp / image_file)
        tgt.export_tower(text_tower, text_tower.example(), TEXT_INPUT, tmp / text_file)
        shutil.copyfile(Path(checkpoint) / TOKENIZER, tmp / TOKENIZER)
        manifest = Manifest(
            model_name=cfg.name, embed_dim=cfg.embed_dim, image_size=cfg.vision.image_size,
            context_length=cfg.text.context_length,
            logit_scale=float(student.logit_scale.exp().clamp(max=100).item()),
            target=tgt.name, precision=precision, image_tower=image_file, text_tower=text_file,
            fingerprint=fingerprint(checkpoint),
            preprocess={"resize": "shorter side, bicubic", "crop": "centre", "size": cfg.vision.image_size,
                        "range": "[0, 1] RGB", "mean": list(cfg.vision.mean), "std": list(cfg.vision.std),
                        "mean_std_in_graph": True},
            quantization={"method": "none"},
            versions=package_versions("clipping-edge", "torch", "onnx", "onnxruntime", "onnxscript"))
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest.to_json(), indent=2))
        manifest.parity = validate_bundle(student, tokenizer, tmp, pairs, precision)
        manifest.parity["validated_on"] = str(pairs.root)
        manifest.parity["export_seconds"] = round(time.perf_counter() - start, 2)
        record = manifest.to_json()
        if tgt.write_metadata:
            for name in (image_file, text_file):
                tgt.write_metadata(tmp / name, record)
        (tmp / MANIFEST_NAME).write_text(json.dumps(record, indent=2))
        if not manifest.parity["passed"] and not allow_degraded:
            raise ClippingEdgeError(f"{tgt.name} {precision} export failed validation ({'; '.join(manifest.parity['failures'])}): "
                                    "nothing was written; pass --allow-degraded to keep it anyway")
        sizes = {image_file: _size_mb(tmp / image_file), text_file: _size_mb(tmp / text_file)}
    status = "valid" if manifest.parity["passed"] else "DEGRADED (kept by --allow-degraded)"
    print(f"exported {tgt.name} {precision} bundle -> {out} [{status}]")
    for name, size in sizes.items():
        print(f"  {name:<16} {size:8.2f} MB")
    print(f"  parity vs PyTorch: {describe(manifest.parity)}")
    print(f"next: clipping-edge classify --bundle {out} --labels 'red circle,blue square,green star' IMAGE.png")
    return out, manifest.parity
