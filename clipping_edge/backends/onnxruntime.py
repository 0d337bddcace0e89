from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..errors import ClippingEdgeError
from .options import BackendOptions


# --device shorthands; anything else is a comma-separated list of provider names.
PROVIDER_SHORTHANDS = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
                       "gpu": ["CUDAExecutionProvider", "CPUExecutionProvider"]}


def execution_providers(device: str | None) -> list[str]:
    """The providers a --device names, each checked against this ONNX Runtime build's."""
    wanted = PROVIDER_SHORTHANDS.get((device or "cpu").lower()) or [p.strip() for p in device.split(",") if p.strip()]
    available = ort.get_available_providers()
    missing = [p for p in wanted if p not in available]
    if missing:
        raise ClippingEdgeError(f"--device {device}: this onnxruntime has no {', '.join(missing)}; pass --device cpu, "
                                f"one of {', '.join(PROVIDER_SHORTHANDS)} or provider names it has ({', '.join(available)}), or "
                                "install the onnxruntime build for that device (e.g. onnxruntime-gpu)")
    return wanted


class OnnxRuntimeTower:
    def __init__(self, path: Path, options: BackendOptions):
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if options.threads:
            so.intra_op_num_threads = options.threads
            so.inter_op_num_threads = 1
        providers = options.providers or execution_providers(options.device)
        try:
            self.session = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as exc:  # ORT raises its own exception types for corrupt or unsupported files
            raise ClippingEdgeError(f"ONNX Runtime could not load {path} ({str(exc).splitlines()[0]}): re-export the bundle") from None
        (model_input,) = self.session.get_inputs()
        self.input_name = model_input.name
        self.input_dtype = np.int32 if "int32" in model_input.type else np.float32
        output = self.session.get_outputs()[0]
        self.shapes = tuple(tuple(d if isinstance(d, int) else None for d in io.shape) for io in (model_input, output))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        (out,) = self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=self.input_dtype)})
        return out.astype(np.float32, copy=False)
