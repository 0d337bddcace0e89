"""TFLite target via litert-torch (no TensorFlow): one .tflite per tower holding two signatures that
share weights, batch 1 and batch 8 (a dynamic batch does not convert); int8 via ai-edge-quantizer."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .job import TowerJob
from .towers import IMAGE_INPUT, OUTPUT, TEXT_INPUT

SIGNATURE_BATCHES = (1, 8)
RECIPES = {"int8": "dynamic_wi8_afp32", "int8-weights": "weight_only_wi8_afp32", "int8-static": "static_wi8_ai8"}
MANIFEST_KEY = "clipping_edge.manifest"


def signature_name(batch: int) -> str:
    return f"batch{batch}"


def _calibration_by_signature(job: TowerJob) -> dict[str, list[dict[str, np.ndarray]]]:
    """Calibration inputs reshaped to each signature's fixed batch."""
    rows = np.concatenate(list(job.calibration))
    return {signature_name(b): [{job.input_name: rows[i:i + b]} for i in range(0, len(rows) - b + 1, b)]
            for b in SIGNATURE_BATCHES}


class _NamedImageOutput(torch.nn.Module):
    """The tower returning {"embeddings": ...}: litert-torch names a signature's outputs by the dict's keys
    (a bare tensor becomes "output_0"), so every target's output has the same name. The argument keeps the
    input's name, which the signature binds its sample by."""

    def __init__(self, tower: torch.nn.Module, output: str = OUTPUT):
        super().__init__()
        self.tower = tower
        self.output = output

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {self.output: self.tower(pixels)}


class _NamedTextOutput(_NamedImageOutput):
    def forward(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return {self.output: self.tower(input_ids)}


NAMED_OUTPUT = {IMAGE_INPUT: _NamedImageOutput, TEXT_INPUT: _NamedTextOutput}


def export_tflite(job: TowerJob) -> None:
    import litert_torch

    logging.getLogger("absl").setLevel(logging.ERROR)
    converter = None
    for batch in SIGNATURE_BATCHES:
        args = (signature_name(batch), NAMED_OUTPUT[job.input_name](job.module.eval()))
        kwargs = {"sample_kwargs": {job.input_name: job.example(batch)}}
        converter = litert_torch.signature(*args, **kwargs) if converter is None else converter.signature(*args, **kwargs)
    with contextlib.redirect_stdout(io.StringIO()):
        model = converter.convert()
    export_at_precision(model, job.path, job.precision,
                        lambda: _calibration_by_signature(job) if job.precision == "int8-static" else None)


def export_at_precision(model, path: Path, precision: str, calibration: Callable[[], dict | None]) -> None:
    """Write a converted litert-torch model at `precision`: float32 as is, int8 through ai-edge-quantizer's
    recipe (`calibration()`: signature -> input samples, for the static recipe)."""
    if precision == "fp32":
        model.export(str(path))
        return
    if precision not in RECIPES:
        raise ValueError(f"tflite has no precision {precision!r}")
    from ai_edge_quantizer import quantizer, recipe

    fp32 = path.with_name(path.stem + ".fp32.tflite")
    model.export(str(fp32))
    try:
        q = quantizer.Quantizer(str(fp32))
        q.load_quantization_recipe(getattr(recipe, RECIPES[precision])())
        with contextlib.redirect_stdout(io.StringIO()):
            samples = calibration()
            q.quantize(q.calibrate(samples) if samples is not None else None).export_model(str(path), overwrite=True)
    finally:
        fp32.unlink(missing_ok=True)


def write_tflite_metadata(path: Path, manifest: dict | str | bytes, key: str = MANIFEST_KEY) -> None:
    """The manifest (or another entry: bytes as they are, text as UTF-8) goes into the flatbuffer's
    Model.metadata, the slot TFLite reserves for it."""
    import json

    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    data = manifest if isinstance(manifest, bytes) else (manifest if isinstance(manifest, str) else json.dumps(manifest)).encode()
    model = flatbuffer_utils.read_model(str(path))
    model.metadata = [m for m in (model.metadata or []) if m.name.decode() != key]
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(data, dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = key.encode(), len(model.buffers) - 1
    model.metadata.append(entry)
    tmp = path.with_name(path.stem + ".meta.tflite")
    flatbuffer_utils.write_model(model, str(tmp))
    tmp.replace(path)
