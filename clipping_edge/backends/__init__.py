"""Inference backends, one per bundle target. Each is imported only when a bundle needs it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from ..errors import ClippingEdgeError
from .options import BackendOptions

__all__ = ["BackendOptions", "cache_root", "load_tower"]


def cache_root() -> Path:
    """Where clipping-edge keeps what it can recompute (feature banks, compiled towers): $CLIPPING_EDGE_CACHE."""
    return Path(os.environ.get("CLIPPING_EDGE_CACHE", Path.home() / ".cache" / "clipping-edge"))


class Tower(Protocol):
    """One exported tower: a batch in, L2-normalised embeddings (B, d) float32 out."""

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


def _onnxruntime(path: Path, options: BackendOptions) -> Tower:
    from .._native import check_onnxruntime_loadable

    check_onnxruntime_loadable()  # a clear error instead of a segfault
    from .onnxruntime import OnnxRuntimeTower

    return OnnxRuntimeTower(path, options)


def _openvino(path: Path, options: BackendOptions) -> Tower:
    from .openvino import OpenVinoTower

    return OpenVinoTower(path, options)


def _litert(path: Path, options: BackendOptions) -> Tower:
    from .litert import LiteRtTower

    return LiteRtTower(path, options)


def _coreml(path: Path, options: BackendOptions) -> Tower:
    from .coreml import CoreMlTower

    return CoreMlTower(path, options)


# target name in the manifest -> loader; the install extra that provides it
BACKENDS: dict[str, tuple[Callable[[Path, BackendOptions], Tower], str]] = {
    "onnx": (_onnxruntime, "onnx"),
    "openvino": (_openvino, "openvino"),
    "tflite": (_litert, "tflite"),
    "coreml": (_coreml, "coreml"),
}


def load_tower(target: str, path: Path, options: BackendOptions, rows_alone: bool = False) -> Tower:
    """`rows_alone`: run each row of a batch by itself, for towers that quantize a whole call's activations
    with one scale (dynamic int8), so an input's embedding does not depend on its batch."""
    if target not in BACKENDS:
        raise ClippingEdgeError(f"no runtime backend for target {target!r}; this install runs: {', '.join(BACKENDS)}")
    loader, extra = BACKENDS[target]
    try:
        tower = loader(path, options)
    except ImportError as exc:
        raise ClippingEdgeError(f"the {target} backend is not installed ({exc.name}): pip install 'clipping-edge[{extra}]'") from None
    return _RowsAlone(tower) if rows_alone else tower


class _RowsAlone:
    def __init__(self, tower: Tower):
        self.tower = tower
        self.shapes = getattr(tower, "shapes", None)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) <= 1:
            return self.tower(batch)
        return np.concatenate([self.tower(batch[i:i + 1]) for i in range(len(batch))])
