"""Checkpoint -> bundle: export both towers for a target, write manifest + tokenizer, validate, rename."""

from __future__ import annotations

import json
import shutil
import time
from importlib import metadata
from pathlib import Path

import clipping_edge
from clipping_edge.atomic import atomic_directory
from clipping_edge.errors import ClippingEdgeError
from clipping_edge.manifest import MANIFEST_NAME, Manifest
from training.checkpoint import TOKENIZER, fingerprint, load_student
from training.data.pairs import read_pairs, resolve_split
from training.evaluate import TorchEncoder

from .calibration import calibration_batches
from .targets import TowerJob, get_precision, get_target
from .towers import IMAGE_INPUT, TEXT_INPUT, ImageTower, TextTower
from .validate import compare, describe, gate

RECORDED_PACKAGES = ("clipping-edge", "torch", "onnx", "onnxscript", "onnxruntime", "openvino", "nncf", "coremltools",
                     "litert-torch", "ai-edge-litert", "ai-edge-quantizer")


def package_versions(names: tuple[str, ...] = RECORDED_PACKAGES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def size_mb(path: Path) -> float:
    """A file, or a directory such as an .mlpackage, with an OpenVINO .xml counting its .bin."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6
    extra = path.with_suffix(".bin") if path.suffix == ".xml" else None
    return (path.stat().st_size + (extra.stat().st_size if extra and extra.exists() else 0)) / 1e6


def export_bundle(checkpoint: str | Path, out: str | Path, target: str = "onnx", quantize: str = "none",
                  data: str | None = None, allow_degraded: bool = False) -> tuple[Path, dict]:
    """Export, then validate against PyTorch on `data`'s test split (default: the training data).
    Calibrated precisions draw their calibration batches from the same data's training split."""
    tgt = get_target(target)
    precision = get_precision(tgt, quantize)
    student, tokenizer, meta = load_student(checkpoint)
    data = data or meta.get("train", {}).get("data") or "synthetic"
    test_pairs = read_pairs(resolve_split(data, "test"))
    cfg = student.config
    out = Path(out)
    start = time.perf_counter()
    towers = {"image": (ImageTower(student), IMAGE_INPUT), "text": (TextTower(student), TEXT_INPUT)}
    precisions = {kind: tgt.tower_precision(kind, precision) for kind in towers}
    files = {kind: f"{kind}{tgt.suffix}" for kind in towers}
    calibration_source = None
    with atomic_directory(out) as tmp:
        for kind, (module, input_name) in towers.items():
            calibration = ()
            if tgt.precisions[precisions[kind]].calibrated:
                train_pairs = read_pairs(resolve_split(data, "train"))
                calibration = calibration_batches(kind, train_pairs, tokenizer, cfg.vision.image_size)
                calibration_source = {"data": str(train_pairs.root), "samples": sum(len(b) for b in calibration)}
            tgt.export_tower(TowerJob(kind, module, input_name, module.example, tmp / files[kind], precisions[kind],
                                      calibration))
        shutil.copyfile(Path(checkpoint) / TOKENIZER, tmp / TOKENIZER)
        manifest = Manifest(
            model_name=cfg.name, embed_dim=cfg.embed_dim, image_size=cfg.vision.image_size,
            context_length=cfg.text.context_length,
            logit_scale=float(student.logit_scale.exp().clamp(max=100).item()),
            target=tgt.name, precision=precision, image_tower=files["image"], text_tower=files["text"],
            fingerprint=fingerprint(checkpoint),
            preprocess={"resize": "shorter side, bicubic", "crop": "centre", "size": cfg.vision.image_size,
                        "range": "[0, 1] RGB", "mean": list(cfg.vision.mean), "std": list(cfg.vision.std),
                        "mean_std_in_graph": True},
            quantization={**{kind: {"precision": p, "recipe": tgt.precisions[p].recipe} for kind, p in precisions.items()},
                          "calibration": calibration_source},
            versions=package_versions())
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest.to_json(), indent=2))
        reference = TorchEncoder(towers["image"][0], towers["text"][0], tokenizer, cfg.vision.image_size)
        if tgt.runs_here():
            candidate, problems, checked_by = clipping_edge.load(tmp), [], f"the {tgt.backend} runtime"
        else:
            candidate = TorchEncoder(tgt.simulate(towers["image"][0], "image", precisions["image"]),
                                     tgt.simulate(towers["text"][0], "text", precisions["text"]),
                                     tokenizer, cfg.vision.image_size)
            problems = [p for kind, (module, name) in towers.items() for p in tgt.check_files(tmp / files[kind], kind, name, module.example(1))]
            checked_by = (f"structural checks and a PyTorch simulation of its {precision} numerics: "
                          f"the {tgt.name} runtime cannot run on this OS")
        manifest.parity = gate(compare(reference, candidate, manifest.logit_scale, test_pairs, cfg.vision.image_size),
                               precisions["image"], precisions["text"], problems)
        manifest.parity.update(checked_by=checked_by, validated_on=str(test_pairs.root))
        manifest.parity["export_seconds"] = round(time.perf_counter() - start, 2)
        record = manifest.to_json()
        if tgt.write_metadata:
            for name in files.values():
                tgt.write_metadata(tmp / name, record)
        (tmp / MANIFEST_NAME).write_text(json.dumps(record, indent=2))
        if not manifest.parity["passed"] and not allow_degraded:
            raise ClippingEdgeError(f"{tgt.name} {precision} export failed validation ({'; '.join(manifest.parity['failures'])}): "
                                    "nothing was written; pass --allow-degraded to keep it anyway")
        sizes = {name: size_mb(tmp / name) for name in files.values()}
    status = "valid" if manifest.parity["passed"] else "DEGRADED (kept by --allow-degraded)"
    print(f"exported {tgt.name} {precision} bundle -> {out} [{status}] in {manifest.parity['export_seconds']:.1f}s")
    for kind, name in files.items():
        print(f"  {name:<16} {sizes[name]:8.2f} MB  {precisions[kind]}: {tgt.precisions[precisions[kind]].recipe}")
    print(f"  parity vs PyTorch: {describe(manifest.parity)}")
    print(f"next: clipping-edge classify --bundle {out} --labels 'red circle,blue square,green star' IMAGE.png")
    return out, manifest.parity


def export_all(checkpoint: str | Path, out: Path, quantize: str = "none", data: str | None = None,
               allow_degraded: bool = False) -> dict[str, dict | str]:
    """Every target that offers `quantize`, one bundle each under out/<target>; a summary at the end.
    A target that fails does not stop the others; the command still fails at the end."""
    from .targets import QUANTIZE_ALIASES, TARGETS

    precision = QUANTIZE_ALIASES.get(quantize.lower(), quantize.lower())
    chosen = [t for t in TARGETS.values() if precision in t.precisions]
    if not chosen:
        raise ClippingEdgeError(f"no target offers --quantize {quantize!r}: see `clipping-edge export --help`")
    results: dict[str, dict | str] = {}
    for tgt in chosen:
        try:
            results[tgt.name] = export_bundle(checkpoint, out / tgt.name, tgt.name, precision, data, allow_degraded)[1]
        except ClippingEdgeError as exc:
            results[tgt.name] = str(exc)
    print(f"\n| target | {precision} | image cos | text cos | agreement | Δtop-1 | bundle |\n|---|---|---|---|---|---|---|")
    for name, r in results.items():
        if isinstance(r, str):
            print(f"| {name} | ❌ | | | | | {r} |")
        else:
            mark = "✅" if r["passed"] else "❎"
            print(f"| {name} | {mark} | {r['image_cosine_min']:.5f} | {r['text_cosine_min']:.5f} | "
                  f"{r.get('zero_shot_agreement', float('nan')):.1%} | {-r.get('top1_drop_points', 0):+.2f} pt | {out / name} |")
    failed = [n for n, r in results.items() if isinstance(r, str)]
    if failed:
        raise ClippingEdgeError(f"export failed for {', '.join(failed)} (see the table above)")
    return results
