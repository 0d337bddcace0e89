"""ONNX target: both towers with the torch.export-based exporter, a dynamic batch axis, weights inline."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path

import torch
from torch import nn

from .towers import OUTPUT


def export_onnx(tower: nn.Module, example: torch.Tensor, input_name: str, path: Path) -> Path:
    batch = torch.export.Dim("batch", min=1, max=4096)
    # The exporter narrates its passes on stdout and warns about torchvision ops we never use.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(tower.eval(), (example,), str(path), dynamo=True, external_data=False, verbose=False,
                          input_names=[input_name], output_names=[OUTPUT], dynamic_shapes=({0: batch},))
    return path


def write_onnx_metadata(path: Path, manifest: dict) -> None:
    """The manifest also goes into the model's own metadata_props, so a lone .onnx file explains itself."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = "clipping_edge.manifest", json.dumps(manifest)
    onnx.save(model, str(path))
