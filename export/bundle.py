"""Checkpoint -> bundle: export both towers for a target, write manifest + tokenizer, validate, rename."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Sequence

import numpy as np
from torch import nn

from clipping_edge.atomic import atomic_directory, is_disk_full
from clipping_edge.backends import BackendOptions, load_tower
from clipping_edge.classifier import check_labels, class_prototypes
from clipping_edge.errors import ClippingEdgeError
from clipping_edge.golden import GOLDEN_DIR, GOLDEN_JSON, write_golden
from clipping_edge.index import PrototypeIndex
from clipping_edge.junk import (JUNK_FAMILIES, JUNK_FILE, REFERENCE_PER_FAMILY, REFERENCE_SEED, UNKNOWN_RULE, junk_images,
                                measure_unknown)
from clipping_edge.manifest import MANIFEST_NAME, Manifest, file_sha256, package_versions, size_mb
from clipping_edge.model import IMAGE_BATCH, TEXT_BATCH
from clipping_edge.preprocess import Preprocess, preprocess_batch
from clipping_edge.shell import command_name
from clipping_edge.prompts import DEFAULT_TEMPLATES
from clipping_edge.tokenizer import TextTokenizer
from clipping_edge.training.checkpoint import TOKENIZER, fingerprint, load_student
from clipping_edge.training.clip_import import imported_checkpoint, is_spec
from clipping_edge.training.data.pairs import PairSet, read_pairs, resolve_split
from clipping_edge.training.evaluate import TorchEncoder
from clipping_edge.training.shipped import is_shipped, shipped_checkpoint

from .calibration import calibration_batches
from .chatter import EXPORT_LOG, chatter_to, phase, progress
from .classifier import CLASSIFIER_TEST_IMAGES, describe_classifier
from .targets import AUTO, Target, TowerJob, get_precision, get_target, tower_precisions
from .towers import IMAGE_INPUT, TEXT_INPUT, ImageTower, TextTower
from .validate import MAX_IMAGES, THRESHOLDS, SplitEncoder, compare, describe, family, gate

def _tower_files(path: Path) -> list[Path]:
    """The files one written tower occupies (an OpenVINO .xml has its .bin)."""
    return [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]


def _remove_tower(path: Path) -> None:
    for item in _tower_files(path):
        shutil.rmtree(item) if item.is_dir() else item.unlink(missing_ok=True)


def _move_tower(source: Path, dest: Path) -> None:
    for src, dst in zip(_tower_files(source), _tower_files(dest)):
        if src.exists():
            src.rename(dst)


LOW_DISK_BYTES = 32 << 20  # a converter that failed with less free space than this most likely ran out of it


@dataclass
class ExportRun:
    """One bundle being written: the student's towers, the data that calibrates and validates them."""
    target: Target
    towers: dict[str, tuple[nn.Module, str]]  # kind -> (module, input name)
    reference: TorchEncoder
    tokenizer: TextTokenizer
    data: str
    test_pairs: PairSet
    preprocess: Preprocess  # how images reach the image tower's input size
    logit_scale: float
    calibration_source: dict | None = None
    convert_seconds: dict[str, float] = field(default_factory=dict)
    reports: dict[tuple[str, str], dict] = field(default_factory=dict)  # (tower, precision) -> TowerJob.report

    def job(self, kind: str, precision: str, path: Path) -> TowerJob:
        module, input_name = self.towers[kind]
        return TowerJob(kind, module, input_name, module.example, path, precision)

    def write_tower(self, kind: str, precision: str, path: Path) -> None:
        refusal = getattr(self.towers[kind][0], "refusal", lambda _: None)(self.target.precisions[precision].sixteen_bit)
        if refusal:
            raise ClippingEdgeError(f"{self.target.name} {precision} cannot hold the {kind} tower: {refusal}")
        job = self.job(kind, precision, path)
        start = time.perf_counter()
        if self.target.precisions[precision].calibrated:
            job.calibration, job.check = self.calibration(kind), self.calibration(kind, between=True)
        try:
            with phase(f"converting the {kind} tower to {self.target.name} {precision}"):
                self.target.export_tower(job)
        except Exception as exc:  # a converter's own failure: one line naming target, tower and cause
            if is_disk_full(exc) or shutil.disk_usage(path.parent).free < LOW_DISK_BYTES:  # converters wrap ENOSPC
                raise ClippingEdgeError(f"the disk is full writing the {kind} tower to {path.parent}: free some space "
                                        "or export somewhere else") from exc
            cause = (str(exc).strip().splitlines() or [""])[-1][:300]
            raise ClippingEdgeError(f"{self.target.name} could not convert the {kind} tower at {precision} "
                                    f"({type(exc).__name__}: {cause}): export to another target or precision, or "
                                    "report it with the student's config.json") from exc
        self.convert_seconds[kind] = round(time.perf_counter() - start, 2)
        self.reports[(kind, precision)] = job.report

    def tower_encoder(self, kind: str, precision: str, path: Path) -> tuple[Callable, list[str], dict]:
        """The written tower as numpy in, embeddings out: its runtime here, or where that cannot run,
        the target's PyTorch stand-in. Also the structural problems found and the offline figures."""
        if self.target.runs_here():
            tower = load_tower(self.target.backend, path, BackendOptions(), self.target.precisions[precision].rows_alone)
            if kind == "image":
                return lambda px: np.concatenate([tower(px[i:i + IMAGE_BATCH]) for i in range(0, len(px), IMAGE_BATCH)]), [], {}
            return lambda texts: np.concatenate([tower(self.tokenizer(texts[i:i + TEXT_BATCH], warn=False))
                                                 for i in range(0, len(texts), TEXT_BATCH)]), [], {}
        check = self.target.check_offline(self.job(kind, precision, path))
        stand_in = TorchEncoder(check.simulated, check.simulated, self.tokenizer, self.preprocess)
        return (stand_in.encode_pixels if kind == "image" else stand_in.encode_text), check.problems, check.figures

    @cached_property
    def train_pairs(self) -> PairSet:
        """Read once: each calibrated tower draws its calibration rows and its check rows from it."""
        return read_pairs(resolve_split(self.data, "train"))

    def calibration(self, kind: str, between: bool = False) -> list[np.ndarray]:
        batches = calibration_batches(kind, self.train_pairs, self.tokenizer, self.preprocess, between=between)
        if not between:
            self.calibration_source = {"data": str(self.train_pairs.root), "samples": sum(len(b) for b in batches)}
        return batches

    def write_classifier(self, folder: Path, precision: str, labels: Sequence[str] | None, labels_index: str | None,
                         encoders: dict[str, Callable], manifest: Manifest) -> dict:
        """`--labels`/`--labels-index`: the fused image -> probabilities graph, checked against the towers."""
        from .classifier import WRITERS, write_classifier

        if self.target.name not in WRITERS:
            raise ClippingEdgeError(f"--labels: {self.target.name} has no app-ready classifier yet (those with one: "
                                    f"{', '.join(WRITERS)}): export without --labels")
        bias, fewshot = None, None
        if labels_index is not None:
            index = PrototypeIndex.load(labels_index, fingerprint=manifest.fingerprint)
            labels, prototypes = index.labels, index.matrix
            if len(index.shot_labels):
                prototypes, bias, fewshot = linear_fewshot_head(index, self.logit_scale)
        else:
            labels = check_labels(labels or [])
            text = SimpleNamespace(encode_text=encoders["text"])
            prototypes = class_prototypes(text, labels, manifest.templates or DEFAULT_TEMPLATES, manifest.synonyms)
        pixels = preprocess_batch([p.source() for p in self.test_pairs.pairs[:CLASSIFIER_TEST_IMAGES]], self.preprocess)
        calibration = self.calibration("image") if self.target.precisions[precision].calibrated else []
        return write_classifier(self.target.name, self.towers["image"][0], prototypes, list(labels), self.logit_scale,
                                self.preprocess.size, precision, folder / f"classifier{self.target.suffix}", calibration,
                                manifest.to_json(), pixels, encoders["image"](pixels), bias, fewshot)

    def validate(self, encoders: dict[str, Callable], precisions: dict[str, str], problems: list[str],
                 max_top1_drop: float | None) -> dict:
        candidate = SplitEncoder(encoders["image"], encoders["text"])
        record = compare(self.reference, candidate, self.logit_scale, self.test_pairs, self.preprocess)
        return gate(record, precisions["image"], precisions["text"], problems, max_top1_drop)


def sigmoid_record(student, meta: dict) -> dict[str, float]:
    """An imported sigmoid model's scale and bias (manifest.sigmoid); a trained checkpoint has none, its loss was
    softmax."""
    bias = meta.get("imported", {}).get("logit_bias")
    return {} if bias is None else {"logit_scale": float(student.logit_scale.exp().item()), "logit_bias": float(bias)}


def linear_fewshot_head(index: PrototypeIndex, logit_scale: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """A few-shot index's head as prototypes and a bias in cosine units (the graph multiplies by the logit scale).
    Prototype mixing and LDA are linear; Tip-Adapter's cache is not, and is refused in one line."""
    method = index.fewshot.get("method")
    if method not in ("mix", "lda"):
        raise ClippingEdgeError(f"--labels-index: the index's few-shot head is {method!r}, whose cache of shots the app-ready "
                                "classifier does not hold: rebuild the index with --fewshot mix or --fewshot lda")
    head = index.head(logit_scale)
    return head.weights / logit_scale, head.bias / logit_scale, {"method": method, **index.fewshot["settings"],
                                                                 "shots": int(len(index.shot_labels))}


def choose_precisions(run: ExportRun, tmp: Path, files: dict[str, str], budget: float) -> tuple[dict[str, str], list[dict]]:
    """`--quantize auto`: per tower, the target's precisions fastest first; the first whose export passes
    the gates with at most `budget` points of top-1 lost is kept. The image tower is chosen with the text
    tower in PyTorch, then the text tower with the chosen image tower, so the pair meets the budget."""
    encoders: dict[str, Callable] = {"image": run.reference.encode_pixels, "text": run.reference.encode_text}
    precisions, tries = {"image": "fp32", "text": "fp32"}, []
    for kind in ("image", "text"):
        order = dict.fromkeys(run.target.tower_precision(kind, p) for p in run.target.auto_order)
        for precision in order:
            path = tmp / f"{kind}.{precision}{run.target.suffix}"
            try:
                run.write_tower(kind, precision, path)
            except ClippingEdgeError as exc:  # a precision the converter cannot make is a rejected try
                tries.append({"tower": kind, "precision": precision, "passed": False, "failures": [str(exc)]})
                progress(f"  auto: {kind} {precision:<13} rejected: {exc}")
                _remove_tower(path)
                continue
            encoder, problems, _ = run.tower_encoder(kind, precision, path)
            record = run.validate({**encoders, kind: encoder}, {**precisions, kind: precision}, problems, budget)
            hollow = _mostly_float(run, kind, precision, path)
            if hollow:
                record.update(passed=False, failures=[*record["failures"], hollow])
            tries.append({"tower": kind, "precision": precision, "passed": record["passed"],
                          "cosine_min": record[f"{kind}_cosine_min"], "top1_drop_points": record.get("top1_drop_points"),
                          "failures": record["failures"], "convert_seconds": run.convert_seconds[kind]})
            progress(f"  auto: {kind} {precision:<13} {'kept' if record['passed'] else 'rejected'}: {describe(record, brief=True)}")
            if record["passed"]:
                _move_tower(path, tmp / files[kind])
                encoders[kind], precisions[kind] = encoder, precision
                break
            _remove_tower(path)
        else:
            raise ClippingEdgeError(f"--quantize auto: no {run.target.name} precision of the {kind} tower met the "
                                    f"budget of {budget} pt (tries: {tries}); raise --max-top1-drop")
    return precisions, tries


# `auto` passes over an int8 try that met the gates only by keeping so many layers float that less than this
# share of the weights is int8 (static int8 of a MiniLM text tower: 17 of 19 layers, 2 %): no smaller or faster.
AUTO_MIN_INT8_SHARE = 0.5


def _mostly_float(run: ExportRun, kind: str, precision: str, path: Path) -> str | None:
    kept = run.reports.get((kind, precision), {}).get("kept_float")
    if not kept or run.target.int8_weight_share is None:
        return None
    share = run.target.int8_weight_share(path)
    if share >= AUTO_MIN_INT8_SHARE:
        return None
    return f"{len(kept)} layers kept float to pass leave {share:.0%} of the weights in int8 (auto wants {AUTO_MIN_INT8_SHARE:.0%})"


GOLDEN_IMAGES, GOLDEN_LABELS = 4, 16  # small: the golden vectors travel inside every bundle
# How far a port's class probabilities may be from the golden ones. int8 kernels differ between runtimes
# (onnxruntime-web's WebAssembly against ONNX Runtime's x86 CPU: scores 0.027 apart on the test student, same top-1).
GOLDEN_SCORE_MAX_ABS = {"float": 0.02, "int8": 0.05}


GOLDEN_SHOTS = 2  # per class, for the first GOLDEN_SHOT_CLASSES golden labels that have them


GOLDEN_SHOT_CLASSES = 4


def golden_shots(pairs: Sequence, chosen: Sequence, labels: Sequence[str]) -> list[tuple[bytes, str, int]]:
    """Few-shot golden shots: a couple of other validation images of the first golden labels (file bytes, suffix, label)."""
    used, shots = {id(p) for p in chosen}, []
    for position, label in enumerate(labels[:GOLDEN_SHOT_CLASSES]):
        for pair in [p for p in pairs if p.label == label and id(p) not in used][:GOLDEN_SHOTS]:
            source = pair.source()
            data = source if isinstance(source, bytes) else Path(source).read_bytes()
            shots.append((data, Path(pair.image if pair.member is None else pair.member.name).suffix or ".png", position))
    return shots


def write_bundle_golden(run: ExportRun, folder: Path, encoders: dict[str, Callable], precisions: dict[str, str]) -> str:
    """Golden vectors from the first validation images (one per label where it can) and the bundle's prompts."""
    pairs, task = run.test_pairs.pairs, run.test_pairs.zero_shot
    chosen, seen = [], set()
    for pair in pairs:
        if len(chosen) < GOLDEN_IMAGES and (pair.label not in seen or task is None):
            chosen.append(pair)
            seen.add(pair.label)
    images = [source if isinstance(source, bytes) else Path(source).read_bytes() for source in (p.source() for p in chosen)]
    suffixes = [Path(p.image if p.member is None else p.member.name).suffix or ".png" for p in chosen]
    if task is not None:
        labels = list(dict.fromkeys([p.label for p in chosen] + task.classes))[:GOLDEN_LABELS]
        templates, synonyms = task.templates, task.synonyms or {}
    else:
        labels, templates, synonyms = list(dict.fromkeys(p.caption for p in chosen)), ["{}"], {}
    write_golden(folder, images, suffixes, labels, templates, synonyms, run.preprocess, run.logit_scale,
                 encoders["image"], encoders["text"], lambda texts: run.tokenizer(texts, warn=False),
                 {kind: THRESHOLDS[family(precisions[kind])].min_cosine for kind in ("image", "text")},
                 GOLDEN_SCORE_MAX_ABS["int8" if "int8" in {family(p) for p in precisions.values()} else "float"],
                 golden_shots(pairs, chosen, labels) if task is not None else ())
    return GOLDEN_JSON


def write_junk(run: ExportRun, folder: Path, encoders: dict[str, Callable]) -> dict:
    """The reference of `--min-cosine auto`: the exported image tower's embeddings of the junk images, and how
    the rule does on the validation images (with their label set) and on junk it was not given."""
    def encode(images: Sequence[np.ndarray]) -> np.ndarray:
        return encoders["image"](preprocess_batch(list(images), run.preprocess))

    reference = encode([image for images in junk_images(REFERENCE_SEED, REFERENCE_PER_FAMILY).values() for image in images])
    (folder / JUNK_FILE).write_bytes(np.ascontiguousarray(reference, dtype="<f4").tobytes())
    record = {"junk": JUNK_FILE, "images": len(reference), "seed": REFERENCE_SEED, "families": list(JUNK_FAMILIES),
              "rule": UNKNOWN_RULE}
    task = run.test_pairs.zero_shot
    if task is not None:
        pixels = preprocess_batch([p.source() for p in run.test_pairs.pairs[:UNKNOWN_CHECK_IMAGES]], run.preprocess)
        prototypes = class_prototypes(SimpleNamespace(encode_text=encoders["text"]), task.classes, task.templates,
                                      task.synonyms)
        record["measured"] = {"on": f"{run.test_pairs.root} with its {len(task.classes)} classes",
                              **measure_unknown(encode, prototypes, encoders["image"](pixels), reference)}
    return record


UNKNOWN_CHECK_IMAGES = 256


def manifest_preprocess(spec: Preprocess) -> dict[str, Any]:
    """The runtime's preprocessing as manifest data: `mode` and `interpolation` are read, `resize` is for people."""
    if spec.resize == "squash":
        return {"mode": "squash", "interpolation": spec.interpolation, "resize": f"both sides to the size, {spec.interpolation}"}
    return {"mode": "shortest", "interpolation": spec.interpolation, "resize": f"shorter side (longer truncated), "
            f"{spec.interpolation}", "crop": "centre"}


def validation_prompts(pairs: PairSet) -> dict[str, Any]:
    """The templates and synonyms parity was measured with, for the manifest (none without a zero-shot task)."""
    task = pairs.zero_shot
    if task is None:
        return {}
    return {"templates": list(task.templates), "synonyms": {k: list(v) for k, v in (task.synonyms or {}).items()}}


def export_bundle(checkpoint: str | Path, out: str | Path, target: str = "onnx", quantize: str = "none",
                  data: str | None = None, allow_degraded: bool = False,
                  max_top1_drop: float | None = None, force: bool = False, labels: Sequence[str] | None = None,
                  labels_index: str | None = None) -> tuple[Path, dict]:
    """Export, then validate against PyTorch on `data`'s test split (default: the training data).
    Calibrated precisions draw their calibration batches from the same data's training split.
    `max_top1_drop` replaces the precision's top-1 threshold (and is the budget of `auto`, default 1 pt).
    With `labels` (or a prototype index) the bundle also holds an app-ready classifier for those classes."""
    tgt = get_target(target)
    precision = get_precision(tgt, quantize)
    if labels is not None:  # refused now, not after minutes of converting
        labels = check_labels(labels)
    if is_shipped(checkpoint):
        checkpoint = shipped_checkpoint(checkpoint)
    elif is_spec(checkpoint):
        checkpoint = imported_checkpoint(checkpoint)
    student, tokenizer, meta = load_student(checkpoint)
    if labels_index is not None:  # an index of another model, or a head the graph cannot hold: refused before converting
        index = PrototypeIndex.load(labels_index, fingerprint=fingerprint(checkpoint))
        if len(index.shot_labels):
            linear_fewshot_head(index, 1.0)
    data = data or meta.get("train", {}).get("data") or "synthetic"
    cfg = student.config
    out = Path(out)
    start = time.perf_counter()
    towers = {"image": (ImageTower(student), IMAGE_INPUT), "text": (TextTower(student), TEXT_INPUT)}
    # The reference is the student as trained (unfused), so validation also checks re-parameterization.
    run = ExportRun(tgt, towers, TorchEncoder.from_student(student, tokenizer),
                    tokenizer, data, read_pairs(resolve_split(data, "test")), cfg.vision.preprocess(),
                    float(student.logit_scale.exp().clamp(max=100).item()))
    files = {kind: f"{kind}{tgt.suffix}" for kind in towers}
    progress(f"exporting {cfg.name} to {tgt.name} {precision} (converter output goes to {out / EXPORT_LOG})")
    with atomic_directory(out, "bundle", inputs=[checkpoint, data], force=force) as tmp, chatter_to(tmp / EXPORT_LOG):
        shutil.copyfile(Path(checkpoint) / TOKENIZER, tmp / TOKENIZER)
        tries = None
        if precision == AUTO:
            max_top1_drop = 1.0 if max_top1_drop is None else max_top1_drop
            precisions, tries = choose_precisions(run, tmp, files, max_top1_drop)
        else:
            precisions = tower_precisions(tgt, precision)
            for kind in towers:
                run.write_tower(kind, precisions[kind], tmp / files[kind])
        encoders, problems, offline = {}, [], {}
        for kind in towers:
            encoders[kind], tower_problems, offline[kind] = run.tower_encoder(kind, precisions[kind], tmp / files[kind])
            problems += tower_problems
        with phase(f"validating against PyTorch on {min(len(run.test_pairs.pairs), MAX_IMAGES)} test images"):
            parity = run.validate(encoders, precisions, problems, max_top1_drop)
        if tgt.runs_here():
            parity["checked_by"] = f"the {tgt.backend} runtime"
        else:
            parity.update(checked_by=f"structural checks and a PyTorch stand-in running the weights stored in the "
                                     f"files at the target's compute precision: the {tgt.name} runtime cannot run on this OS",
                          offline=offline)
        parity.update(validated_on=str(run.test_pairs.root), export_seconds=round(time.perf_counter() - start, 2))
        quantization = {kind: {"precision": p, "recipe": tgt.precisions[p].recipe, "convert_seconds": run.convert_seconds[kind],
                               "rows_alone": tgt.precisions[p].rows_alone, **run.reports.get((kind, p), {})}
                        for kind, p in precisions.items()}
        if tgt.int8_weight_share is not None:
            for kind in towers:
                quantization[kind]["int8_weight_share"] = round(tgt.int8_weight_share(tmp / files[kind]), 4)
        quantization["calibration"] = run.calibration_source
        if tries is not None:
            quantization["auto"] = {"max_top1_drop": max_top1_drop, "order": list(tgt.auto_order), "tries": tries}
        with phase("golden vectors and the junk images that calibrate 'unknown'"):
            golden = write_bundle_golden(run, tmp / GOLDEN_DIR, encoders, precisions)
            unknown = write_junk(run, tmp, encoders)
        manifest = Manifest(
            model_name=cfg.name, embed_dim=cfg.embed_dim, image_size=cfg.vision.image_size,
            context_length=cfg.text.context_length, logit_scale=run.logit_scale,
            target=tgt.name, precision=precision, image_tower=files["image"], text_tower=files["text"],
            fingerprint=fingerprint(checkpoint),
            preprocess={**manifest_preprocess(run.preprocess), "size": cfg.vision.image_size,
                        "range": "[0, 1] RGB", "mean": list(cfg.vision.mean), "std": list(cfg.vision.std),
                        "mean_std_in_graph": True},
            quantization=quantization, parity=parity, versions=package_versions(),
            trained_token_ids=meta.get("trained_token_ids"), golden=golden, sigmoid=sigmoid_record(student, meta),
            unknown=unknown, **validation_prompts(run.test_pairs))
        if tgt.write_metadata:  # the copy inside each format's slot cannot hold the files' own hashes
            for name in files.values():
                tgt.write_metadata(tmp / name, manifest.to_json())
        if labels is not None or labels_index is not None:
            with phase("the app-ready classifier"):
                manifest.classifier = run.write_classifier(tmp, precisions["image"], labels, labels_index, encoders, manifest)
            if not manifest.classifier["parity"]["passed"]:
                parity["failures"] += manifest.classifier["parity"]["failures"]
                parity["passed"] = False
        manifest.files = {p.name: file_sha256(p) for p in sorted(tmp.iterdir()) if p.name not in (MANIFEST_NAME, EXPORT_LOG)}
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest.to_json(), indent=2))
        if not parity["passed"] and not allow_degraded:
            raise ClippingEdgeError(f"{tgt.name} {precision} export failed validation ({describe(parity, brief=True)}): "
                                    "nothing was written; pass --allow-degraded to keep it anyway")
        sizes = {name: size_mb(tmp / name) for name in [*files.values(), manifest.classifier.get("file")] if name}
    status = "valid" if parity["passed"] else "DEGRADED (kept by --allow-degraded)"
    print(f"exported {tgt.name} {precision} bundle -> {out} [{status}] in {parity['export_seconds']:.1f}s")
    for kind, name in files.items():
        share = quantization[kind].get("int8_weight_share")
        stored = f" ({100 * share:.0f} % of the weights in int8)" if share is not None and "int8" in precisions[kind] else ""
        print(f"  {name:<16} {sizes[name]:8.2f} MB  {precisions[kind]}: {tgt.precisions[precisions[kind]].recipe}{stored}")
    print(f"  parity vs PyTorch: {describe(parity)}")
    if "measured" in manifest.unknown:
        m = manifest.unknown["measured"]
        rejected = ", ".join(f"{family} {rate:.0%}" for family, rate in m["fresh_junk_rejected"].items())
        print(f"  unknown (--min-cosine auto): {m['in_domain_accepted']:.0%} of {m['in_domain_images']} validation images "
              f"answered, fresh junk called unknown: {rejected}")
    if manifest.classifier:
        print(describe_classifier(manifest.classifier, sizes[manifest.classifier["file"]]))
    task = run.test_pairs.zero_shot
    labels = ",".join(task.classes[:3]) if task and len(task.classes) >= 2 else "cat,dog,cup of coffee"
    print(f"next: {command_name()} classify --bundle {out} --labels '{labels}' IMAGE.png")
    return out, parity


def export_all(checkpoint: str | Path, out: Path, quantize: str = "none", data: str | None = None,
               allow_degraded: bool = False, max_top1_drop: float | None = None,
               force: bool = False, labels: Sequence[str] | None = None,
               labels_index: str | None = None) -> dict[str, dict | str]:
    """Every target that offers `quantize`, one bundle each under out/<target>; a summary at the end.
    A target that fails does not stop the others; the command still fails at the end."""
    from .targets import TARGETS

    chosen = []
    for tgt in TARGETS.values():
        try:
            chosen.append((tgt, get_precision(tgt, quantize)))
        except ClippingEdgeError:
            pass
    if not chosen:
        raise ClippingEdgeError(f"no target offers --quantize {quantize!r}: see `clipping-edge export --help`")
    results: dict[str, dict | str] = {}
    for tgt, precision in chosen:
        try:
            results[tgt.name] = export_bundle(checkpoint, out / tgt.name, tgt.name, precision, data, allow_degraded,
                                              max_top1_drop, force, labels, labels_index)[1]
        except ClippingEdgeError as exc:
            results[tgt.name] = str(exc)
    print(f"\n| target | {quantize} | MB | image cos | text cos | agreement | Δtop-1 | seconds | bundle |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        if isinstance(r, str):
            print(f"| {name} | ❌ | | | | | | | {r} |")
        else:
            mark = "✅" if r["passed"] else "❎"
            print(f"| {name} | {mark} | {size_mb(out / name):.2f} | {r['image_cosine_min']:.5f} | {r['text_cosine_min']:.5f} | "
                  f"{r.get('zero_shot_agreement', float('nan')):.1%} | {-r.get('top1_drop_points', 0):+.2f} pt | "
                  f"{r['export_seconds']:.0f} | {out / name} |")
    failed = [n for n, r in results.items() if isinstance(r, str)]
    if failed:
        raise ClippingEdgeError(f"export failed for {', '.join(failed)} (see the table above)")
    return results
