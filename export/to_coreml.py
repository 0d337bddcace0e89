"""Core ML target: an `mlprogram` .mlpackage per tower from a traced tower (coremltools).

The image tower takes a flexible batch (1-64) and computes in fp16 at every precision but fp32 (the
Neural Engine's precision); the text tower takes a fixed (1, L) int32 input and stays fp32, as fp16
text towers are known to collapse. `int8-weights` stores per-channel symmetric int8 weights,
`palette6`/`palette4` k-means lookup tables.

Core ML prediction needs macOS. Elsewhere the package is checked structurally (inputs, outputs,
shapes, types as the contract says) and a PyTorch stand-in runs the weights read back out of the
package at the package's compute precision.
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .job import OfflineCheck, TowerJob
from .towers import OUTPUT

MAX_IMAGE_BATCH = 64
MANIFEST_KEY = "clipping_edge.manifest"
# coremltools compresses only weights with at least this many elements (its default weight_threshold).
WEIGHT_THRESHOLD = 2048
# palette precision -> (bits per index, output channels per lookup table; None: one table per tensor)
PALETTES: dict[str, tuple[int, int | None]] = {"palette6": (6, None), "palette4": (4, 16)}


def can_predict() -> bool:
    return sys.platform == "darwin"


def _compute_precision(job: TowerJob) -> str:
    """fp16 compute for the image tower at every precision but fp32; the text tower stays fp32."""
    return "fp16" if job.kind == "image" and job.precision != "fp32" else "fp32"


def export_coreml(job: TowerJob) -> None:
    import coremltools as ct

    example = job.example(1)
    traced = torch.jit.trace(job.module.eval(), example)
    if job.kind == "image":
        shape = (ct.RangeDim(1, MAX_IMAGE_BATCH, default=1), *example.shape[1:])
        model_input = ct.TensorType(name=job.input_name, shape=shape, dtype=np.float32)
    else:
        model_input = ct.TensorType(name=job.input_name, shape=tuple(example.shape), dtype=np.int32)
    model = ct.convert(traced, inputs=[model_input], outputs=[ct.TensorType(name=OUTPUT, dtype=np.float32)],
                       convert_to="mlprogram", **conversion_options(job))
    compress(model, job.precision).save(str(job.path))


def conversion_options(job: TowerJob) -> dict:
    """Compute precision (fp16 for image graphs unless fp32) and deployment target for ct.convert."""
    import coremltools as ct

    precision = ct.precision.FLOAT16 if _compute_precision(job) == "fp16" else ct.precision.FLOAT32
    # per-grouped-channel lookup tables need iOS 18's constexpr_lut_to_dense
    grouped = job.precision in PALETTES and PALETTES[job.precision][1] is not None
    return {"compute_precision": precision, "minimum_deployment_target": ct.target.iOS18 if grouped else ct.target.iOS16}


def compress(model, precision: str):
    """The precision's weight compression of a converted model (fp32/fp16: none)."""
    from coremltools.optimize import coreml as cto

    if precision == "int8-weights":
        config = cto.OpLinearQuantizerConfig(mode="linear_symmetric", granularity="per_channel",
                                             weight_threshold=WEIGHT_THRESHOLD)
        return cto.linear_quantize_weights(model, cto.OptimizationConfig(global_config=config))
    if precision in PALETTES:
        nbits, group = PALETTES[precision]
        config = cto.OpPalettizerConfig(mode="kmeans", nbits=nbits, weight_threshold=WEIGHT_THRESHOLD,
                                        granularity="per_grouped_channel" if group else "per_tensor",
                                        group_size=group or 32)
        return cto.palettize_weights(model, cto.OptimizationConfig(global_config=config))
    if precision not in ("fp32", "fp16"):
        raise ValueError(f"coreml has no precision {precision!r}")
    return model


def write_coreml_metadata(path: Path, manifest: dict) -> None:
    import coremltools as ct

    model = ct.models.MLModel(str(path), skip_model_load=True)
    model.user_defined_metadata[MANIFEST_KEY] = json.dumps(manifest)
    model.short_description = f"clipping-edge {manifest['model_name']} {path.stem} tower ({manifest['precision']})"
    tmp = path.with_name(path.stem + ".meta.mlpackage")  # saving onto its own package would delete the source first
    model.save(str(tmp))
    shutil.rmtree(path)
    tmp.rename(path)


def _check_interface(path: Path, job: TowerJob) -> list[str]:
    """The package's input and output against the DESIGN.md contract: returns the problems found."""
    import coremltools as ct

    problems = []
    example = job.example(1)
    spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    (inp,), outputs = spec.description.input, spec.description.output
    array = inp.type.multiArrayType
    if inp.name != job.input_name:
        problems.append(f"{job.kind} input is named {inp.name!r}, not {job.input_name!r}")
    want = array.INT32 if job.kind == "text" else array.FLOAT32
    if array.dataType != want:
        problems.append(f"{job.kind} input type {array.dataType} is not {'int32' if job.kind == 'text' else 'float32'}")
    if list(array.shape)[1:] != list(example.shape[1:]):
        problems.append(f"{job.kind} input shape {list(array.shape)} does not match {list(example.shape)}")
    if [o.name for o in outputs] != [OUTPUT] or outputs[0].type.multiArrayType.dataType != array.FLOAT32:
        problems.append(f"{job.kind} output is not one float32 {OUTPUT!r}")
    return problems


@dataclass
class StoredWeight:
    value: np.ndarray  # decompressed to float32
    compressed: bool  # stored quantized or palettized (the converter skips some, e.g. embeddings)


def stored_weights(path: Path) -> dict[str, StoredWeight]:
    """Every constant in the package, keyed as the tower's parameter names with dots as underscores
    (the converter's naming, its suffixes removed)."""
    import coremltools as ct
    from coremltools.optimize.coreml import decompress_weights, get_weights_metadata

    model = ct.models.MLModel(str(path), skip_model_load=True)
    weights = {}
    for name, meta in get_weights_metadata(decompress_weights(model), weight_threshold=0).items():
        key = name.removesuffix("_palettized").removesuffix("_quantized")
        compressed = key != name
        weights[key.removesuffix("_to_fp16")] = StoredWeight(np.asarray(meta.val, np.float32), compressed)
    return weights


def _int8_round_trip(w: torch.Tensor) -> torch.Tensor:
    """Per-output-channel symmetric int8, as linear_quantize_weights(mode='linear_symmetric',
    granularity='per_channel') stores a weight."""
    scale = w.abs().flatten(1).amax(1).clamp(min=1e-12) / 127.0
    scale = scale.view(-1, *([1] * (w.ndim - 1)))
    return (w / scale).round().clamp(-127, 127) * scale


def _kmeans_round_trip(w: torch.Tensor, nbits: int, iterations: int = 20) -> torch.Tensor:
    """1-D k-means of a weight tensor onto 2**nbits values (quantile start, Lloyd steps)."""
    flat = w.flatten().float()
    centroids = torch.quantile(flat, torch.linspace(0, 1, 2 ** nbits))
    for _ in range(iterations):
        assign = (flat[:, None] - centroids[None]).abs().argmin(1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, flat)
        counts = torch.bincount(assign, minlength=len(centroids)).float()
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
    return centroids[(flat[:, None] - centroids[None]).abs().argmin(1)].view_as(w)


def _recipe_round_trip(w: torch.Tensor, precision: str) -> torch.Tensor:
    if precision == "int8-weights":
        return _int8_round_trip(w)
    if precision in PALETTES:
        nbits, group = PALETTES[precision]
        if group is None:
            return _kmeans_round_trip(w, nbits)
        return torch.cat([_kmeans_round_trip(rows, nbits) for rows in w.split(group)])
    return w


def _unique_per_lut(w: np.ndarray, precision: str) -> int:
    nbits, group = PALETTES[precision]
    rows = [w] if group is None else np.array_split(w, range(group, len(w), group))
    return max(len(np.unique(r)) for r in rows)


class _Fp16Compute(nn.Module):
    """Runs a tower in float16 (Core ML's fp16 compute) with float32 input and output."""

    def __init__(self, tower: nn.Module):
        super().__init__()
        self.tower = tower.half()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tower(x.half() if x.is_floating_point() else x).float()


def check_offline(job: TowerJob) -> OfflineCheck:
    """Where Core ML cannot predict: the interface checks, and a PyTorch stand-in that runs on the
    weights stored in the package (decompressed) with the package's compute precision.

    Weights the converter fused (the conv stem's batch norms) have no stored counterpart: the stand-in
    applies the recipe to those itself. Each stored compressed weight is also held against the recipe
    as documented (int8: the per-channel round trip, within a step; palettes: at most 2**nbits values
    per table)."""
    problems = _check_interface(job.path, job)
    stored = stored_weights(job.path)
    tower = copy.deepcopy(job.module).eval()
    loaded, simulated, steps_off, share_off = 0, [], 0.0, 0.0
    with torch.no_grad():
        for name, param in tower.named_parameters():
            entry = stored.get(name.replace(".", "_"))
            if entry is not None and entry.value.shape == tuple(param.shape):
                weight = entry.value
                if job.precision == "int8-weights" and entry.compressed:
                    # in int8 steps of each output channel: the converter's float16 scales may round a
                    # value the other way (a step, a little more), anything further is not this recipe
                    step = (param.abs().flatten(1).amax(1).clamp(min=1e-12) / 127.0).view(-1, *([1] * (param.ndim - 1)))
                    off = (torch.from_numpy(weight) - _int8_round_trip(param)).abs() / step
                    steps_off, share_off = max(steps_off, float(off.max())), max(share_off, float((off > 0.5).float().mean()))
                if job.precision in PALETTES and entry.compressed:
                    if (count := _unique_per_lut(weight, job.precision)) > 2 ** PALETTES[job.precision][0]:
                        problems.append(f"{job.kind} {name} holds {count} values per table, more than its palette")
                param.copy_(torch.from_numpy(weight))
                loaded += 1
            elif param.ndim > 1 and param.numel() >= WEIGHT_THRESHOLD:
                param.copy_(_recipe_round_trip(param, job.precision))
                simulated.append(name)
    if steps_off > 1.5 or share_off > 0.05:
        problems.append(f"{job.kind} stored int8 weights are not the per-channel round trip: up to {steps_off:.1f} steps "
                        f"off, {share_off:.1%} of a tensor off by a step")
    figures = {"stored_weights_loaded": loaded, "recipe_simulated": simulated,
               "int8_max_steps_off": steps_off, "int8_share_off_by_a_step": share_off}
    module = _Fp16Compute(tower) if _compute_precision(job) == "fp16" else tower
    return OfflineCheck(module, problems, figures)
