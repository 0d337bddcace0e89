"""`clipping-edge benchmark`: every target x precision side by side, with PyTorch, a naive export and
the machine's limit as reference rows, so a deployer can pick what to ship.

    clipping-edge benchmark --checkpoint runs/demo/train/checkpoint --bundle-dir runs/exports

Bundles missing under --bundle-dir are exported first (from the export table). Latency is measured
in rounds; each round visits every row, so drift of the machine hits all rows alike. Outputs: a
Markdown table, OUT/benchmark.csv and .json (host and package versions), OUT/benchmark.png.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from clipping_edge.classifier import class_prototypes, softmax
from clipping_edge.prompts import fill
from clipping_edge.errors import ClippingEdgeError
from clipping_edge.manifest import Manifest, package_versions, size_mb
from clipping_edge.preprocess import Preprocess, as_preprocess, preprocess_batch

from .peak import cpu_flags, hardware_peaks

ROUNDS, CALLS_PER_ROUND, WARMUP = 5, 20, 5
EVAL_IMAGES = 960


@dataclass
class Row:
    name: str  # "onnx int8", "pytorch eager fp32", ...
    kind: str  # "bundle" or "reference"
    status: str  # ✅ valid, ❎ failed validation, ❌ failed to export, ⏭ cannot run here
    encoder: object | None = None  # encode_pixels / encode_text
    logit_scale: float = 100.0
    compute: str = "fp32"  # the arithmetic it runs (the export table's), for the GEMM peak it is compared with
    figures: dict = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)  # measure -> seconds per call


def _fmt(value: object, spec: str = ".2f") -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else format(value, spec)


# --- rows ---------------------------------------------------------------------------------------

def unique_names(found: list[tuple[str, Path | None, str, str]]) -> list[tuple[str, Path | None, str]]:
    """Rows are keyed by name: bundles of several models are told apart by the model's name, and two bundles of one
    model with the same target and precision by their folder."""
    several_models = len({model for *_, model in found if model}) > 1
    names = [f"{model} {name}" if model and several_models else name for name, _, _, model in found]
    counts = Counter(names)
    return [(name if counts[name] == 1 or path is None else f"{name} ({path.name})", path, error)
            for name, (_, path, error, _) in zip(names, found)]


def bundle_rows(checkpoint: str | None, bundle_dir: Path, bundles: Sequence[str], targets: Sequence[str],
                precisions: Sequence[str] | None, data: str | None, threads: int | None) -> list[Row]:
    """One row per bundle: given ones, or target x precision exported from the checkpoint where missing."""
    import clipping_edge
    from clipping_edge.export.targets import TARGETS, get_target

    found: list[tuple[str, Path | None, str, str]] = []  # (name, bundle, error, model name)
    if checkpoint:
        from clipping_edge.export.bundle import export_bundle
        from clipping_edge.training.checkpoint import fingerprint

        wanted_fp = fingerprint(checkpoint)
        for target in (get_target(t) for t in targets):
            for precision in [p for p in target.precisions if precisions is None or p in precisions]:
                path = bundle_dir / f"{target.name}-{precision}"
                manifest = path / "manifest.json"
                if not (manifest.is_file() and json.loads(manifest.read_text()).get("fingerprint") == wanted_fp):
                    try:
                        export_bundle(checkpoint, path, target.name, precision, data, allow_degraded=True)
                    except ClippingEdgeError as exc:
                        found.append((f"{target.name} {precision}", None, str(exc), ""))
                        continue
                found.append((f"{target.name} {precision}", path, "", ""))
    for given in map(Path, bundles):
        for manifest in sorted([given / "manifest.json"] if (given / "manifest.json").is_file() else given.glob("*/manifest.json")):
            record = json.loads(manifest.read_text())
            found.append((f"{record['target']} {record['precision']}", manifest.parent, "", record["model_name"]))
    rows = []
    found = unique_names(found)
    for name, path, error in found:
        if path is None:
            rows.append(Row(name, "bundle", "❌", figures={"error": error}))
            continue
        model = clipping_edge.load(path, threads=threads)
        manifest = model.manifest
        sizes = {f"{k}_mb": size_mb(path / getattr(manifest, f"{k}_tower")) for k in ("image", "text")}
        runs_here = TARGETS[manifest.target].runs_here()
        # A bundle that failed validation is ❎ wherever it is, also where it cannot run.
        status = "❎" if not manifest.parity.get("passed") else "✅" if runs_here else "⏭"
        precision = manifest.quantization.get("image", {}).get("precision", manifest.precision)
        compute = TARGETS[manifest.target].precisions[precision].compute
        share = manifest.quantization.get("image", {}).get("int8_weight_share")
        if compute == "int8" and share is not None and share < 0.5:
            compute = "fp32"  # an int8 recipe that left most of this tower float (e.g. ONNX static int8 on a CNN)
        rows.append(Row(name, "bundle", status, model if runs_here else None, manifest.logit_scale, compute,
                        {"bundle": str(path), **sizes, "parity_top1_drop": manifest.parity.get("top1_drop_points")}))
    return rows


def pytorch_row(checkpoint: str, threads: int | None) -> tuple[Row, object]:
    """What a user has without us: the student in PyTorch eager mode, fp32."""
    import torch

    from clipping_edge.export.towers import ImageTower, TextTower
    from clipping_edge.training.checkpoint import load_student
    from clipping_edge.training.evaluate import TorchEncoder

    if threads:
        torch.set_num_threads(threads)
    student, tokenizer, _ = load_student(checkpoint)
    encoder = TorchEncoder(ImageTower(student).eval(), TextTower(student).eval(), tokenizer, student.config.vision.preprocess())
    scale = float(student.logit_scale.exp().clamp(max=100).item())
    return Row("pytorch eager fp32", "reference", "✅", encoder, scale), student


class NaiveOnnx:
    """The hand-rolled export: an fp32 ONNX file in a default ONNX Runtime session (only the thread count
    set, as every row's), classes scored by a numpy product with the text embeddings (no index, no
    quantization)."""

    def __init__(self, bundle: Path, threads: int | None):
        import onnxruntime as ort

        from clipping_edge.tokenizer import TextTokenizer

        manifest = json.loads((bundle / "manifest.json").read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: ONNX Runtime's default, all cores

        def session(name: str) -> ort.InferenceSession:
            return ort.InferenceSession(str(bundle / manifest[name]), options, providers=["CPUExecutionProvider"])

        self.image, self.text = session("image_tower"), session("text_tower")
        self.tokenizer = TextTokenizer(bundle / manifest["tokenizer"], manifest["context_length"])
        self.image_size = Manifest.from_json(manifest).image_preprocess()

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        return self.image.run(None, {"pixels": pixels})[0]

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        return self.text.run(None, {"input_ids": self.tokenizer(texts, warn=False)})[0]


# --- measurements -------------------------------------------------------------------------------

def latency_jobs(row: Row, pixels: np.ndarray, images: list[Path | bytes], prompt: str, prototypes: np.ndarray,
                 image_size: Preprocess) -> dict[str, Callable[[int], None]]:
    """measure -> a call taking the iteration number. classify = decode + preprocess + tower + scores."""
    enc = row.encoder

    def classify(i: int) -> None:
        emb = enc.encode_pixels(preprocess_batch([images[i % len(images)]], image_size))
        softmax(row.logit_scale * np.stack([prototypes @ e for e in emb]))

    return {
        "image_b1": lambda i: enc.encode_pixels(pixels[i % len(pixels)][None]),
        "image_b8": lambda i: enc.encode_pixels(pixels[(i * 8) % (len(pixels) - 8):][:8]),
        "text_b1": lambda i: enc.encode_text([prompt]),
        "classify_b1": classify,
    }


def measure_latency(rows: list[Row], jobs: dict[str, dict[str, Callable[[int], None]]], rounds: int,
                    calls: int) -> None:
    for row in rows:  # warm-up: first-call allocations and kernel selection do not count
        for job in jobs[row.name].values():
            for i in range(WARMUP):
                job(i)
    for r in range(rounds):
        for row in rows:
            for measure, job in jobs[row.name].items():
                for i in range(calls):
                    start = time.perf_counter()
                    job(r * calls + i)
                    row.samples.setdefault(measure, []).append(time.perf_counter() - start)
    for row in rows:
        for measure, samples in row.samples.items():
            per = 8 if measure == "image_b8" else 1
            median = statistics.median(samples)
            row.figures[f"{measure}_ms"] = 1e3 * median / per
            row.figures[f"{measure}_p90_ms"] = 1e3 * float(np.percentile(samples, 90)) / per
            row.figures[f"{measure}_outliers"] = sum(s > 2 * median for s in samples)
        row.figures["images_per_s"] = 1e3 / row.figures["image_b8_ms"]


def measure_accuracy(rows: list[Row], pairs, reference_row: Row | None) -> None:
    from clipping_edge.training.metrics import retrieval_metrics

    task = pairs.zero_shot
    subset = pairs.pairs[:EVAL_IMAGES]
    labels = np.asarray([task.classes.index(p.label) for p in subset])
    predictions = {}
    for row in rows:
        pixels = preprocess_batch([p.source() for p in subset], _image_size(row))
        images = np.concatenate([row.encoder.encode_pixels(pixels[i:i + 32]) for i in range(0, len(pixels), 32)])
        prototypes = class_prototypes(row.encoder, task.classes, task.templates, task.synonyms)
        predictions[row.name] = (images @ prototypes.T).argmax(1)
        row.figures["zero_shot_top1"] = 100 * float((predictions[row.name] == labels).mean())
        captions = [p.caption for p in subset]
        texts = np.concatenate([row.encoder.encode_text(captions[i:i + 256]) for i in range(0, len(captions), 256)])
        retrieval = retrieval_metrics(images, texts, captions, ks=(1,))
        row.figures["R@1_i2t"] = 100 * retrieval["image_to_text_R@1"]
        row.figures["R@1_t2i"] = 100 * retrieval["text_to_image_R@1"]
    if reference_row is not None:
        for row in rows:
            row.figures["delta_top1"] = row.figures["zero_shot_top1"] - reference_row.figures["zero_shot_top1"]
            row.figures["agreement"] = 100 * float((predictions[row.name] == predictions[reference_row.name]).mean())


def _image_size(row: Row) -> Preprocess:
    """How this row's images reach its image tower (the size and the resize)."""
    return row.encoder.manifest.image_preprocess() if hasattr(row.encoder, "manifest") else as_preprocess(row.encoder.image_size)


def image_tower_flops(student) -> int:
    """Multiply-adds x 2 of the image tower for one image, counted by PyTorch's FLOP counter."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    size = student.config.vision.image_size
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        student.visual(torch.rand(1, 3, size, size))
    return int(counter.get_total_flops())


# Two one-node ONNX graphs, Y = A @ B on 1024 x 1024: MatMul in float32 and MatMulInteger (uint8 x int8 -> int32),
# serialised once with onnx.helper (opset 13, IR 8; tests/test_benchmark.py rebuilds them and compares). Kept as
# bytes, so a device install with onnxruntime but without the onnx package measures its peaks too.
GEMM_GRAPHS = {
    "fp32": "CAg6XgoRCgFBCgFCEgFZIgZNYXRNdWwSBGdlbW1aFQoBQRIQCg4IARIKCgMIgAgKAwiACFoVCgFCEhAKDggBEgoKAwiACAoDCIAIYhUKAVkSEAoO"
            "CAESCgoDCIAICgMIgAhCBAoAEA0=",
    "int8": "CAg6ZQoYCgFBCgFCEgFZIg1NYXRNdWxJbnRlZ2VyEgRnZW1tWhUKAUESEAoOCAISCgoDCIAICgMIgAhaFQoBQhIQCg4IAxIKCgMIgAgKAwiACGIV"
            "CgFZEhAKDggGEgoKAwiACAoDCIAIQgQKABAN",
}
GEMM_N = 1024


def gemm_peaks(threads: int | None = None, repeats: int = 10) -> dict[str, float] | None:
    """GFLOP/s of a large fp32 matrix product (ONNX Runtime's MatMul) and an int8 one (MatMulInteger) on
    the rows' thread count (default all cores): what the machine can do at best, measured in the same run.
    None without onnxruntime."""
    import base64

    try:
        import onnxruntime as ort
    except ImportError:
        return None
    n = GEMM_N

    def session(kind: str) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        return ort.InferenceSession(base64.b64decode(GEMM_GRAPHS[kind]), options, providers=["CPUExecutionProvider"])

    def best_rate(run: ort.InferenceSession, feeds: dict) -> float:  # the fastest call: a peak, not an average
        run.run(None, feeds)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run.run(None, feeds)
            times.append(time.perf_counter() - start)
        return 2 * n ** 3 / min(times) / 1e9

    rng = np.random.default_rng(0)
    return {"fp32_gflops": best_rate(session("fp32"), {"A": rng.random((n, n), dtype=np.float32),
                                                       "B": rng.random((n, n), dtype=np.float32)}),
            "int8_gops": best_rate(session("int8"), {"A": rng.integers(0, 255, (n, n), dtype=np.uint8),
                                                     "B": rng.integers(-127, 127, (n, n), dtype=np.int8)}),
            "threads": threads or os.cpu_count() or 1}


def cold_start_and_rss(row: Row, pairs, out: Path) -> None:
    """Import + load + prototype index in a fresh process, and its peak RSS (benchmarks.runtime)."""
    from clipping_edge.benchmarks.runtime import COLD_START_PHASES, cold_start
    from clipping_edge import ZeroShotClassifier

    task = pairs.zero_shot
    index = ZeroShotClassifier(row.encoder, task.classes, task.templates, task.synonyms).save_index(
        out / "indexes" / row.name.replace(" ", "-"))
    image = pairs.pairs[0].source()
    if isinstance(image, bytes):  # a shard member: the fresh process reads a file
        (out / "cold-start-image").write_bytes(image)
        image = out / "cold-start-image"
    figures = cold_start(Path(row.figures["bundle"]), index, image, row.encoder.options.threads)
    row.figures.update(cold_start_s=figures["cold_start_s"], first_launch_s=figures["first_launch_s"],
                       peak_rss_mb=figures["peak_rss_mb"])
    # Where the cold start goes, in the JSON: a runtime's import alone can decide a 0.5 s target.
    row.figures.update({f"cold_{phase}": figures[phase] for phase in COLD_START_PHASES})


# --- report -------------------------------------------------------------------------------------

COLUMNS = [("status", "valid", "s"), ("image_mb", "img MB", ".2f"), ("text_mb", "txt MB", ".2f"),
           ("image_b1_ms", "img b1 ms", ".2f"), ("image_b1_p90_ms", "p90", ".2f"), ("image_b8_ms", "img b8 ms/img", ".2f"),
           ("images_per_s", "img/s", ".0f"), ("text_b1_ms", "txt ms/prompt", ".2f"), ("classify_b1_ms", "classify ms", ".2f"),
           ("cold_start_s", "cold s", ".2f"), ("first_launch_s", "1st launch s", ".2f"), ("peak_rss_mb", "RSS MB", ".0f"),
           ("zero_shot_top1", "top-1 %", ".1f"), ("delta_top1", "Δ pt", "+.2f"), ("agreement", "agree %", ".1f"),
           ("R@1_i2t", "R@1 i→t", ".1f"), ("R@1_t2i", "R@1 t→i", ".1f"), ("speedup_b1", "× torch b1", ".2f"),
           ("gemm_fraction", "% GEMM", ".0f"), ("hardware_fraction", "% hw peak", ".0f")]


def markdown(rows: list[Row]) -> str:
    lines = ["| row | " + " | ".join(h for _, h, _ in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for row in rows:
        cells = [row.status if key == "status" else _fmt(row.figures.get(key), spec) for key, _, spec in COLUMNS]
        lines.append(f"| {row.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points no other point beats on both lower latency and higher accuracy."""
    return [i for i, (x, y) in enumerate(points)
            if not any((x2 <= x and y2 >= y) and (x2, y2) != (x, y) for x2, y2 in points)]


def plot(rows: list[Row], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install 'clipping-edge[bench]')", file=sys.stderr)
        return None
    # Rows that failed validation are in the table; here they would only squash the axis.
    measured = [r for r in rows if r.status == "✅" and "image_b1_ms" in r.figures and "zero_shot_top1" in r.figures]
    points = [(r.figures["image_b1_ms"], r.figures["zero_shot_top1"]) for r in measured]
    front = set(pareto(points))
    fig, ax = plt.subplots(figsize=(11, 5.5))
    legend = []
    for i, (row, (x, y)) in enumerate(zip(measured, points), 1):
        ax.scatter(x, y, marker="*" if i - 1 in front else "o", s=160 if i - 1 in front else 50, zorder=3,
                   color="tab:red" if row.kind == "reference" else "tab:blue")
        # Numbers on the points, names in a key beside the plot: rows of similar speed overlap otherwise.
        ax.annotate(str(i), (x, y), fontsize=8, xytext=(5, 4), textcoords="offset points")
        legend.append(f"{i:>2}  {row.name}: {x:.2f} ms, {y:.1f} %")
    ordered = sorted(points[i] for i in front)
    ax.plot([p[0] for p in ordered], [p[1] for p in ordered], "--", color="grey", linewidth=1, label="Pareto front")
    ax.set_xlabel("image tower latency, batch 1 (ms, median)")
    ax.set_ylabel("zero-shot top-1 (%)")
    ax.set_title("accuracy vs latency (red: reference rows, stars: Pareto front)")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.text(0.67, 0.5, "\n".join(legend), fontsize=8, family="monospace", va="center")
    fig.subplots_adjust(left=0.06, right=0.65)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def host() -> dict:
    """The CPU model and the instruction-set flags every figure depends on."""
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu": model, "cores": os.cpu_count(),
            "flags": cpu_flags()}


def run(checkpoint: str | None, bundles: Sequence[str], data: str | None, targets: Sequence[str],
        precisions: Sequence[str] | None, threads: int | None, out: Path, bundle_dir: Path | None,
        floor: float | None, rounds: int = ROUNDS, calls: int = CALLS_PER_ROUND) -> int:
    from clipping_edge.training.data.pairs import read_pairs, resolve_split

    if not checkpoint and not bundles:
        raise ClippingEdgeError("nothing to benchmark: pass --checkpoint C (exports what is missing) or --bundles DIR...")
    if checkpoint and not data:
        from clipping_edge.training.checkpoint import load_student

        data = load_student(checkpoint)[2].get("train", {}).get("data")
    pairs = read_pairs(resolve_split(data or "synthetic", "test"))
    if pairs.zero_shot is None or not all(p.label for p in pairs.pairs):
        raise ClippingEdgeError(f"{pairs.root} has no labelled zero-shot task: benchmark on labelled data (--data)")
    out.mkdir(parents=True, exist_ok=True)
    rows = bundle_rows(checkpoint, bundle_dir or out / "bundles", bundles, targets, precisions, data, threads)
    reference, student = pytorch_row(checkpoint, threads) if checkpoint else (None, None)
    fp32_onnx = next((Path(r.figures["bundle"]) for r in rows if r.name == "onnx fp32" and r.encoder), None)
    references = [r for r in (reference,) if r] + (
        [Row("naive onnx fp32 + numpy", "reference", "✅", NaiveOnnx(fp32_onnx, threads), rows[0].logit_scale)] if fp32_onnx else [])
    runnable = [r for r in references + rows if r.encoder is not None]
    if not runnable:
        raise ClippingEdgeError("no row can run on this machine (Core ML needs macOS)")

    print(f"accuracy on {min(len(pairs), EVAL_IMAGES)} images of {pairs.root} ...", file=sys.stderr)
    measure_accuracy(runnable, pairs, reference)
    task = pairs.zero_shot
    images = [p.source() for p in pairs.pairs[:64]]
    jobs = {}
    for row in runnable:
        size = _image_size(row)
        prototypes = class_prototypes(row.encoder, task.classes, task.templates, task.synonyms)
        jobs[row.name] = latency_jobs(row, preprocess_batch(images, size), images, fill(task.templates[0], task.classes[0]),
                                      prototypes, size)
    print(f"latency: {rounds} rounds x {len(runnable)} rows ...", file=sys.stderr)
    measure_latency(runnable, jobs, rounds, calls)
    for row in runnable:
        if row.kind == "bundle":
            cold_start_and_rss(row, pairs, out)
    machine = gemm_peaks(threads)
    # The library GEMM flatters "% of peak"; the register-resident kernels measure what the cores can do.
    hardware = hardware_peaks(threads)
    flops = image_tower_flops(student) if student is not None else None
    for row in runnable:
        if reference is not None:
            row.figures["speedup_b1"] = reference.figures["image_b1_ms"] / row.figures["image_b1_ms"]
        if flops and machine:
            achieved = flops / (row.figures["image_b8_ms"] / 1e3) / 1e9
            peak = machine["int8_gops"] if row.compute == "int8" else machine["fp32_gflops"]
            row.figures.update(achieved_gflops=achieved, gemm_fraction=100 * achieved / peak)
            limit = hardware and (hardware["int8_gops"] if row.compute == "int8" else hardware["fp32_gflops"])
            if limit:  # the higher of the two is the limit (a library can beat a naive kernel, never the hardware)
                row.figures["hardware_fraction"] = 100 * achieved / max(limit, peak)

    ordered = references + rows
    print("\n" + markdown(ordered))
    peaks = (f"GEMM peak on {machine['threads']} thread(s): fp32 {machine['fp32_gflops']:.1f} GFLOP/s, int8 "
             f"{machine['int8_gops']:.1f} GOP/s" if machine else "no GEMM peak (needs onnxruntime)")
    if hardware:
        int8 = f"{hardware['int8_gops']:.1f} GOP/s" if hardware["int8_gops"] else "no 8-bit dot kernel"
        peaks += (f"; hardware peak (register-resident kernels): fp32 {hardware['fp32_gflops']:.1f} GFLOP/s, int8 {int8}; "
                  f"flags {' '.join(hardware['flags']) or 'unknown'}")
    else:
        peaks += "; no hardware peak (needs a C compiler)"
    print(f"\nmachine: {host()['cpu']}, {os.cpu_count()} cores; {peaks}; image tower "
          + (f"{flops / 1e6:.1f} MFLOP/image" if flops else "FLOPs unknown (needs --checkpoint)"))
    with open(out / "benchmark.csv", "w", newline="") as f:
        writer = csv.writer(f)
        keys = sorted({k for r in ordered for k in r.figures})
        writer.writerow(["row", "kind", "status", *keys])
        for r in ordered:
            writer.writerow([r.name, r.kind, r.status, *[r.figures.get(k, "") for k in keys]])
    record = {"host": host(), "versions": package_versions(),
              "machine": {**(machine or {}), "hardware_peak": hardware, "image_tower_flops": flops},
              "data": str(pairs.root), "rounds": rounds, "calls_per_round": calls,
              "rows": [{"name": r.name, "kind": r.kind, "status": r.status, **r.figures} for r in ordered]}
    (out / "benchmark.json").write_text(json.dumps(record, indent=2, default=str))
    png = plot(ordered, out / "benchmark.png")
    print(f"wrote {out / 'benchmark.csv'}, {out / 'benchmark.json'}" + (f", {png}" if png else ""))
    if floor is not None:
        below = [r.name for r in rows if r.status == "✅" and r.figures.get("zero_shot_top1", 100.0) < floor]
        if below:
            print(f"error: below the top-1 floor of {floor} %: {', '.join(below)}", file=sys.stderr)
            return 1
    return 0
