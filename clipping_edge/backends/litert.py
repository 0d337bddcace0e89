from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ClippingEdgeError
from . import BackendOptions


class LiteRtTower:
    """A .tflite tower with one signature per fixed batch size; a batch runs as chunks of those sizes."""

    def __init__(self, path: Path, options: BackendOptions):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]
        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=options.threads)
        except (ValueError, RuntimeError) as exc:
            raise ClippingEdgeError(f"LiteRT could not load {path} ({str(exc).splitlines()[0]}): re-export the bundle") from None
        self.runners = {}
        for name in self.interpreter.get_signature_list():
            runner = self.interpreter.get_signature_runner(name)
            (detail,) = runner.get_input_details().values()
            self.runners[int(detail["shape"][0])] = (runner, detail)
        self.batches = sorted(self.runners, reverse=True)

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        runner, detail = self.runners[len(chunk)]
        (name,) = runner.get_input_details()
        (out,) = runner(**{name: np.ascontiguousarray(chunk, dtype=detail["dtype"])}).values()
        return np.asarray(out, dtype=np.float32)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        outs, start = [], 0
        while start < len(batch):
            size = next(b for b in self.batches if b <= len(batch) - start)
            outs.append(self._run(batch[start:start + size]))
            start += size
        return np.concatenate(outs)
