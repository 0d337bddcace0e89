from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..errors import ClippingEdgeError
from .options import BackendOptions


class CoreMlTower:
    """An .mlpackage tower; Core ML predicts on macOS only. The text tower's input has a fixed batch of 1."""

    def __init__(self, path: Path, options: BackendOptions):
        if sys.platform != "darwin":
            raise ClippingEdgeError(f"Core ML bundles run on macOS/iOS only; on {sys.platform} export --target onnx, "
                                    "openvino or tflite instead")
        import coremltools as ct

        units = {"all": ct.ComputeUnit.ALL, "cpu_only": ct.ComputeUnit.CPU_ONLY, "cpu": ct.ComputeUnit.CPU_ONLY,
                 "cpu_and_gpu": ct.ComputeUnit.CPU_AND_GPU, "cpu_and_ne": ct.ComputeUnit.CPU_AND_NE}
        if (options.device or "all") not in units:
            raise ClippingEdgeError(f"--device {options.device!r} is not a Core ML compute unit: pass one of {', '.join(units)}")
        self.model = ct.models.MLModel(str(path), compute_units=units[options.device or "all"])
        spec = self.model.get_spec()
        (inp,) = spec.description.input
        self.input_name = inp.name
        array = inp.type.multiArrayType
        self.input_dtype = np.int32 if array.dataType == array.INT32 else np.float32
        ranges = array.shapeRange.sizeRanges
        self.max_batch = int(ranges[0].upperBound) if len(ranges) and ranges[0].upperBound > 0 else int(array.shape[0])

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        outs = []
        for start in range(0, len(batch), self.max_batch):
            chunk = np.ascontiguousarray(batch[start:start + self.max_batch], dtype=self.input_dtype)
            (out,) = self.model.predict({self.input_name: chunk}).values()
            outs.append(np.asarray(out, dtype=np.float32))
        return np.concatenate(outs)
