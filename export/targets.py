"""The table of export targets. It drives the CLI choices, the export, the validation and the benchmark."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from clipping_edge.errors import ClippingEdgeError

from .to_onnx import export_onnx, write_onnx_metadata

# (tower, example input, input name, output path) -> written path
TowerExporter = Callable[[nn.Module, torch.Tensor, str, Path], Path]


@dataclass(frozen=True)
class Target:
    name: str
    aliases: tuple[str, ...]
    suffix: str  # file suffix of one tower
    precisions: tuple[str, ...]
    export_tower: TowerExporter
    write_metadata: Callable[[Path, dict], None] | None
    # the clipping_edge backend that runs this target's files for validation
    backend: str


TARGETS: dict[str, Target] = {
    "onnx": Target("onnx", ("ort", "onnxruntime"), ".onnx", ("fp32",), export_onnx, write_onnx_metadata, "onnx"),
}
PRECISION_ALIASES = {"none": "fp32", "fp32": "fp32"}


def _closest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.4)
    return f"did you mean {close[0]!r}? " if close else ""


def get_target(name: str) -> Target:
    key = name.lower()
    for target in TARGETS.values():
        if key == target.name or key in target.aliases:
            return target
    names = [n for t in TARGETS.values() for n in (t.name, *t.aliases)]
    raise ClippingEdgeError(f"unknown target {name!r}: {_closest(key, names)}choose one of {', '.join(TARGETS)}")


def get_precision(target: Target, quantize: str) -> str:
    precision = PRECISION_ALIASES.get(quantize.lower(), quantize.lower())
    if precision not in target.precisions:
        choices = sorted({k for k, v in PRECISION_ALIASES.items() if v in target.precisions} | set(target.precisions))
        raise ClippingEdgeError(f"target {target.name} does not offer --quantize {quantize!r}: "
                                f"{_closest(quantize, choices)}choose one of {', '.join(choices)}")
    return precision
