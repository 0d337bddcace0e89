"""Core ML target: an `mlprogram` .mlpackage per tower from a traced tower (coremltools).

The image tower takes a flexible batch (1-64) and computes in fp16 for `fp16` (the Neural Engine's
precision); the text tower takes a fixed (1, L) int32 input and stays fp32 by default, as fp16 text
towers are known to collapse. `int8-weights` stores per-channel symmetric int8 weights.

Core ML prediction needs macOS. Elsewhere the package is checked structurally (it loads, inputs,
outputs, shapes, types and metadata are as the contract says) and its numerics are simulated in
PyTorch: the same fp16 rounding and int8 weight quantization applied to the student.
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .targets import TowerJob
from .towers import OUTPUT

MAX_IMAGE_BATCH = 64
MANIFEST_KEY = "clipping_edge.manifest"


def can_predict() -> bool:
    return sys.platform == "darwin"


def _compute_precision(job: TowerJob) -> str:
    """fp16 compute for the image tower at fp16 and int8-weights; everything else fp32."""
    return "fp16" if job.kind == "image" and job.precision in ("fp16", "int8-weights") else "fp32"


def export_coreml(job: TowerJob) -> None:
    import coremltools as ct

    example = job.example(1)
    traced = torch.jit.trace(job.module.eval(), example)
    if job.kind == "image":
        shape = (ct.RangeDim(1, MAX_IMAGE_BATCH, default=1), *example.shape[1:])
        model_input = ct.TensorType(name=job.input_name, shape=shape, dtype=np.float32)
    else:
        model_input = ct.TensorType(name=job.input_name, shape=tuple(example.shape), dtype=np.int32)
    precision = ct.precision.FLOAT16 if _compute_precision(job) == "fp16" else ct.precision.FLOAT32
    model = ct.convert(traced, inputs=[model_input], outputs=[ct.TensorType(name=OUTPUT, dtype=np.float32)],
                       convert_to="mlprogram", compute_precision=precision, minimum_deployment_target=ct.target.iOS16)
    if job.precision == "int8-weights":
        from coremltools.optimize.coreml import OpLinearQuantizerConfig, OptimizationConfig, linear_quantize_weights

        config = OptimizationConfig(global_config=OpLinearQuantizerConfig(mode="linear_symmetric", granularity="per_channel"))
        model = linear_quantize_weights(model, config)
    elif job.precision not in ("fp32", "fp16"):
        raise ValueError(f"coreml has no precision {job.precision!r}")
    model.save(str(job.path))


def write_coreml_metadata(path: Path, manifest: dict) -> None:
    import coremltools as ct

    model = ct.models.MLModel(str(path), skip_model_load=True)
    model.user_defined_metadata[MANIFEST_KEY] = json.dumps(manifest)
    model.short_description = f"clipping-edge {manifest['model_name']} {path.stem} tower ({manifest['precision']})"
    tmp = path.with_name(path.stem + ".meta.mlpackage")  # saving onto its own package would delete the source first
    model.save(str(tmp))
    shutil.rmtree(path)
    tmp.rename(path)


def check_package(path: Path, kind: str, input_name: str, example: torch.Tensor) -> list[str]:
    """Structural checks that need no prediction: returns the problems found."""
    import coremltools as ct

    problems = []
    spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    (inp,), outputs = spec.description.input, spec.description.output
    array = inp.type.multiArrayType
    if inp.name != input_name:
        problems.append(f"{kind} input is named {inp.name!r}, not {input_name!r}")
    want = array.INT32 if kind == "text" else array.FLOAT32
    if array.dataType != want:
        problems.append(f"{kind} input type {array.dataType} is not {'int32' if kind == 'text' else 'float32'}")
    if list(array.shape) != list(example.shape[:1]) + list(example.shape[1:]) and list(array.shape)[1:] != list(example.shape[1:]):
        problems.append(f"{kind} input shape {list(array.shape)} does not match {list(example.shape)}")
    if [o.name for o in outputs] != [OUTPUT] or outputs[0].type.multiArrayType.dataType != array.FLOAT32:
        problems.append(f"{kind} output is not one float32 {OUTPUT!r}")
    return problems


def _quantize_weights_int8(module: nn.Module) -> None:
    """Per-output-channel symmetric int8 round trip of every Linear/Conv/Embedding weight, as
    linear_quantize_weights(mode='linear_symmetric', granularity='per_channel') stores them."""
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, (nn.Linear, nn.Conv2d, nn.Embedding)):
                w = layer.weight
                scale = w.abs().flatten(1).amax(1).clamp(min=1e-12) / 127.0
                scale = scale.view(-1, *([1] * (w.ndim - 1)))
                w.copy_((w / scale).round().clamp(-127, 127) * scale)


class _Fp16Compute(nn.Module):
    """Runs a tower in float16 (Core ML's fp16 compute) with float32 input and output."""

    def __init__(self, tower: nn.Module):
        super().__init__()
        self.tower = tower.half()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tower(x.half() if x.is_floating_point() else x).float()


def simulate(tower: nn.Module, kind: str, precision: str) -> nn.Module:
    """A PyTorch stand-in with the numerics the .mlpackage will have on a device."""
    tower = copy.deepcopy(tower).eval()
    if precision == "int8-weights":
        _quantize_weights_int8(tower)
    job = TowerJob(kind, tower, "", lambda b: torch.empty(0), Path(), precision)
    return _Fp16Compute(tower) if _compute_precision(job) == "fp16" else tower
