from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ClippingEdgeError
from .options import BackendOptions


def _scale_and_zero_point(detail: dict) -> tuple[float, int] | None:
    """A quantized tensor's (scale, zero point); None for a float or a plain integer tensor (token ids)."""
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return (float(scale), int(zero_point)) if scale else None


def quantize(values: np.ndarray, detail: dict) -> np.ndarray:
    """Feed a tensor as the input expects it: a statically quantized input takes round(x / scale) + zero
    point, clipped to its integer type (a plain cast would make every [0, 1] pixel 0 or 1)."""
    params = _scale_and_zero_point(detail)
    if params is None or not np.issubdtype(detail["dtype"], np.integer):
        return np.ascontiguousarray(values, dtype=detail["dtype"])
    scale, zero_point = params
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(values / scale) + zero_point, info.min, info.max).astype(detail["dtype"])


def dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    params = _scale_and_zero_point(detail)
    if params is None or not np.issubdtype(np.asarray(values).dtype, np.integer):
        return np.asarray(values, dtype=np.float32)
    scale, zero_point = params
    return ((np.asarray(values, dtype=np.float32) - zero_point) * scale).astype(np.float32)


class LiteRtTower:
    """A .tflite tower with one signature per fixed batch size; a batch runs as chunks of those sizes."""

    def __init__(self, path: Path, options: BackendOptions):
        try:
            from ai_edge_litert.interpreter import Interpreter, load_delegate
        except ImportError:
            from tflite_runtime.interpreter import Interpreter, load_delegate  # type: ignore[no-redef]
        delegates = []
        device = options.device or "cpu"
        if device.startswith("delegate:"):
            library = device.split(":", 1)[1]
            try:
                delegates.append(load_delegate(library))
            except (ValueError, OSError, RuntimeError) as exc:
                raise ClippingEdgeError(f"LiteRT could not load the delegate {library!r} ({str(exc).splitlines()[0]}): "
                                        "pass the path of a delegate library built for this device, or --device cpu") from None
        elif device != "cpu":
            raise ClippingEdgeError(f"--device {device!r} means nothing to LiteRT: pass cpu, or delegate:PATH of a "
                                    "delegate library (e.g. libtensorflowlite_gpu_delegate.so)")
        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=options.threads,
                                           experimental_delegates=delegates or None)
        except (ValueError, RuntimeError) as exc:
            raise ClippingEdgeError(f"LiteRT could not load {path} ({str(exc).splitlines()[0]}): re-export the bundle") from None
        self.runners = {}
        for name in self.interpreter.get_signature_list():
            runner = self.interpreter.get_signature_runner(name)
            (detail,) = runner.get_input_details().values()
            self.runners[int(detail["shape"][0])] = (runner, detail)
        self.batches = sorted(self.runners, reverse=True)
        runner, detail = self.runners[self.batches[-1]]
        (output,) = runner.get_output_details().values()
        self.shapes = (tuple(int(d) for d in detail["shape"]), tuple(int(d) for d in output["shape"]))

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        runner, detail = self.runners[len(chunk)]
        (name,) = runner.get_input_details()
        (output,) = runner.get_output_details().values()
        (out,) = runner(**{name: quantize(chunk, detail)}).values()
        return dequantize(out, output)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        outs, start = [], 0
        while start < len(batch):
            size = next(b for b in self.batches if b <= len(batch) - start)
            outs.append(self._run(batch[start:start + size]))
            start += size
        return np.concatenate(outs)
