"""The table of export targets. It drives the CLI choices, the export, the validation and the benchmark.

Each target offers named precisions; `--quantize` picks one (`none` means fp32). Every exporter
takes one `TowerJob` and writes one tower.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from clipping_edge.errors import ClippingEdgeError

from .chatter import progress
from .job import OfflineCheck, TowerJob

# No torch at import: the table is read by `clipping-edge --help` on devices without it.


@dataclass(frozen=True)
class PrecisionSpec:
    recipe: str  # what is done, recorded in the manifest
    calibrated: bool = False  # needs calibration batches from the training data
    compute: str = "fp32"  # the arithmetic the runtime does (fp32/fp16/int8): the benchmark's GEMM peak to compare with
    # Activations quantized with one scale per call (ONNX Runtime's dynamic int8): an input's output would depend
    # on what shares its batch, so the runtime runs such a tower one row at a time (recorded in the manifest).
    rows_alone: bool = False
    # The image tower's weights or arithmetic are 16-bit floats: what a discontinuous tower cannot take (see
    # ImageTower.refusal).
    sixteen_bit: bool = False


@dataclass(frozen=True)
class Target:
    name: str
    aliases: tuple[str, ...]
    suffix: str  # file suffix of one tower
    precisions: dict[str, PrecisionSpec]
    export_tower: Callable[[TowerJob], None]
    write_metadata: Callable[[Path, dict], None] | None
    backend: str | None  # the clipping_edge backend that runs these files here; None: cannot run on this OS
    # precisions the text tower is kept at instead of the asked one (fp16 text towers are known to collapse)
    text_override: dict[str, str] = field(default_factory=dict)
    # `--quantize auto` tries these per tower, fastest first, and keeps the first within the top-1 budget
    auto_order: tuple[str, ...] = ("fp32",)
    # Whether the runtime runs on this OS; if not, how a written tower is checked instead.
    runs_here: Callable[[], bool] = lambda: True  # noqa: E731
    check_offline: Callable[[TowerJob], OfflineCheck] | None = None
    # The fraction of a written tower's weights stored in 8 bits, where the format lets us count it.
    int8_weight_share: Callable[[Path], float] | None = None

    def tower_precision(self, kind: str, precision: str) -> str:
        return self.text_override.get(precision, precision) if kind == "text" else precision


def _record_quantization(target: str, job: TowerJob, report: dict) -> None:
    job.report.update(report)
    if report.get("kept_float"):
        progress(f"  {target} {job.kind} {job.precision}: {len(report['kept_float'])} of "
                 f"{len(report['kept_float']) + report['quantized']} int8 layers kept float32, worst check-row cosine "
                 f"{report['check_cosine_min_all_int8']:.4f} -> {report['check_cosine_min']:.4f}")


def _onnx(job: TowerJob) -> None:
    from .to_onnx import export_onnx

    _record_quantization("onnx", job, export_onnx(job))


def _onnx_metadata(path: Path, manifest: dict) -> None:
    from .to_onnx import write_onnx_metadata

    write_onnx_metadata(path, manifest)


def _onnx_int8_weight_share(path: Path) -> float:
    from .to_onnx import int8_weight_share

    return int8_weight_share(path)


def _openvino_int8_weight_share(path: Path) -> float:
    from .to_openvino import int8_weight_share

    return int8_weight_share(path)


def _openvino(job: TowerJob) -> None:
    from .to_openvino import export_openvino

    _record_quantization("openvino", job, export_openvino(job))


def _openvino_metadata(path: Path, manifest: dict) -> None:
    from .to_openvino import write_openvino_metadata

    write_openvino_metadata(path, manifest)


def _tflite(job: TowerJob) -> None:
    from .to_tflite import export_tflite

    export_tflite(job)


def _tflite_metadata(path: Path, manifest: dict) -> None:
    from .to_tflite import write_tflite_metadata

    write_tflite_metadata(path, manifest)


def _coreml(job: TowerJob) -> None:
    from .to_coreml import export_coreml

    export_coreml(job)


def _coreml_metadata(path: Path, manifest: dict) -> None:
    from .to_coreml import write_coreml_metadata

    write_coreml_metadata(path, manifest)


def _coreml_runs_here() -> bool:
    from .to_coreml import can_predict

    return can_predict()


def _coreml_check_offline(job: TowerJob) -> OfflineCheck:
    from .to_coreml import check_offline

    return check_offline(job)


TARGETS: dict[str, Target] = {
    "onnx": Target("onnx", ("ort", "onnxruntime"), ".onnx", {
        "fp32": PrecisionSpec("float32"),
        # ONNX Runtime's CPU provider has no fp16 kernels for most ops: its optimizer casts back and computes
        # float32 (measured slower than the fp32 file), so the arithmetic here is fp32.
        "fp16": PrecisionSpec("float16 weights and graph, LayerNorm, Softmax and reductions kept in float32, float32 I/O; "
                              "computed in fp16 by GPU providers, in float32 by the CPU provider (half the size, not faster)",
                              sixteen_bit=True),
        # Convolutions stay float in both int8 recipes: a ViT's patch stem only, but a CNN tower's every layer
        # (int8_weight_share in the manifest says how much is int8). ORT's dynamic ConvInteger is ~10x slower
        # than its float convolution; static int8 convolutions failed the gate on EfficientNet-Lite.
        # Both int8 recipes keep float32 the fewest most harmful layers that bring the worst check row's
        # cosine to 0.995 (mixed_precision.keep_sensitive_float; the manifest lists them).
        "int8": PrecisionSpec("dynamic int8 on MatMul/Gather/Attention, convolutions kept float: per-channel int8 weights "
                              "in 7 bits (no int16 saturation on CPUs without VNNI), "
                              "activations quantized at run time (ORT quantize_dynamic); layers that move the outputs most "
                              "kept float; run one row at a time", calibrated=True, compute="int8", rows_alone=True),
        "int8-static": PrecisionSpec("static int8 QDQ on MatMul/Gemm, convolutions kept float, per-channel weights in 7 "
                                     "bits, min-max calibration; layers that move the outputs most kept float",
                                     calibrated=True, compute="int8"),
    }, _onnx, _onnx_metadata, "onnx", auto_order=("int8-static", "int8", "fp16", "fp32"),
        int8_weight_share=_onnx_int8_weight_share),
    "openvino": Target("openvino", ("ov", "ir", "openvino-ir"), ".xml", {
        "fp32": PrecisionSpec("float32 IR"),
        "fp16": PrecisionSpec("float16-compressed weights, float32 inference", sixteen_bit=True),
        "int8": PrecisionSpec("NNCF post-training quantization, transformer model type (SmoothQuant), calibrated; "
                              "7-bit weights (overflow fix: no int16 saturation on CPUs without VNNI); layers that move the "
                              "outputs most kept float",
                              calibrated=True, compute="int8"),
        # The CPU plugin quantizes the activations of weight-compressed layers dynamically: int8 arithmetic.
        "int8-weights": PrecisionSpec("NNCF int8 weight compression (asymmetric, per-channel), float activations",
                                      compute="int8"),
    }, _openvino, _openvino_metadata, "openvino", auto_order=("int8", "int8-weights", "fp16", "fp32"),
        int8_weight_share=_openvino_int8_weight_share),
    "tflite": Target("tflite", ("litert", "tf-lite"), ".tflite", {
        "fp32": PrecisionSpec("float32; signatures for batch 1 and 8 sharing weights"),
        "int8": PrecisionSpec("ai-edge-quantizer dynamic_wi8_afp32: int8 weights, dynamic int8 activations", compute="int8"),
        "int8-weights": PrecisionSpec("ai-edge-quantizer weight_only_wi8_afp32: int8 weights, float compute"),
        "int8-static": PrecisionSpec("ai-edge-quantizer static_wi8_ai8: int8 weights and activations, calibrated "
                                     "(EfficientNet-Lite passes after `clipping-edge int8-finetune`)",
                                     calibrated=True, compute="int8"),
    }, _tflite, _tflite_metadata, "tflite",
        # The LiteRT interpreter aborts the process running a statically quantized text tower (its int32
        # embedding lookup), so that tower gets dynamic int8.
        text_override={"int8-static": "int8"}, auto_order=("int8-static", "int8", "int8-weights", "fp32")),
    "coreml": Target("coreml", ("ios", "macos", "mlpackage", "core-ml", "apple"), ".mlpackage", {
        "fp32": PrecisionSpec("mlprogram, float32 compute"),
        "fp16": PrecisionSpec("mlprogram, float16 compute for the image tower (text tower kept float32)", sixteen_bit=True),
        "int8-weights": PrecisionSpec("per-channel symmetric int8 weights (linear_quantize_weights); image tower "
                                      "computes in float16, text tower in float32", sixteen_bit=True),
        "palette6": PrecisionSpec("6-bit k-means palettized weights, one table per tensor (palettize_weights); "
                                  "image tower computes in float16", sixteen_bit=True),
        "palette4": PrecisionSpec("4-bit k-means palettized weights, one table per 16 output channels; iOS 18 / "
                                  "macOS 15; image tower computes in float16", sixteen_bit=True),
    }, _coreml, _coreml_metadata, "coreml", text_override={"fp16": "fp32"},
        auto_order=("palette4", "palette6", "int8-weights", "fp16", "fp32"), runs_here=_coreml_runs_here,
        check_offline=_coreml_check_offline),
}
QUANTIZE_ALIASES = {"none": "fp32", "float32": "fp32", "float16": "fp16", "half": "fp16"}
AUTO = "auto"  # --quantize auto: a precision per tower, chosen by measured accuracy


def _closest(name: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.4)
    return f"did you mean {close[0]!r}? " if close else ""


def get_target(name: str) -> Target:
    key = name.lower()
    for target in TARGETS.values():
        if key == target.name or key in target.aliases:
            return target
    names = [n for t in TARGETS.values() for n in (t.name, *t.aliases)]
    raise ClippingEdgeError(f"unknown target {name!r}: {_closest(key, names)}choose one of {', '.join(TARGETS)}")


TOWERS = ("image", "text")


def _one_precision(target: Target, quantize: str, whole: str) -> str:
    precision = QUANTIZE_ALIASES.get(quantize.lower(), quantize.lower())
    if precision not in target.precisions:
        choices = ["none", *target.precisions]
        raise ClippingEdgeError(f"target {target.name} does not offer --quantize {whole!r}: "
                                f"{_closest(quantize, choices)}choose one of {', '.join(choices)}, {AUTO}, "
                                "or one per tower (image=int8,text=fp32)")
    return precision


def get_precision(target: Target, quantize: str) -> str:
    """`--quantize` checked and normalised: one precision for both towers, `auto`, or one per tower
    (`image=int8,text=fp32`, a tower left out stays fp32; the device embeds labels once, so a float text tower
    often costs nothing)."""
    if quantize.lower() == AUTO:
        return AUTO
    if "=" not in quantize:
        return _one_precision(target, quantize, quantize)
    per_tower = dict.fromkeys(TOWERS, "fp32")
    for part in quantize.split(","):
        kind, _, name = part.partition("=")
        if kind.strip() not in TOWERS or not name.strip():
            raise ClippingEdgeError(f"--quantize {quantize!r}: write one precision per tower as image=P,text=Q "
                                    f"(e.g. image=int8,text=fp32)")
        per_tower[kind.strip()] = _one_precision(target, name.strip(), quantize)
    return ",".join(f"{kind}={name}" for kind, name in per_tower.items())


def tower_precisions(target: Target, precision: str) -> dict[str, str]:
    """Each tower's precision for a checked `--quantize` other than auto (the target's text overrides apply to
    one precision asked for both towers, not to one the user named for the text tower)."""
    if "=" in precision:
        return dict(part.split("=") for part in precision.split(","))
    return {kind: target.tower_precision(kind, precision) for kind in TOWERS}
