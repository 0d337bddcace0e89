from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov

from ..errors import ClippingEdgeError
from . import BackendOptions


class OpenVinoTower:
    def __init__(self, path: Path, options: BackendOptions):
        # f32 inference by default: on CPUs with AMX/AVX-512 BF16 OpenVINO would otherwise run bf16
        # and drift from the validated figures. Pass precision_hint="bf16" for speed.
        config = {"INFERENCE_PRECISION_HINT": options.precision_hint or "f32"}
        if options.threads:
            config["INFERENCE_NUM_THREADS"] = str(options.threads)
        if options.compile_cache is not None:
            try:
                options.compile_cache.mkdir(parents=True, exist_ok=True)
                config["CACHE_DIR"] = str(options.compile_cache)
            except OSError:  # a read-only home: compiling at every load is slower, not wrong
                pass
        core = ov.Core()
        device = (options.device or "CPU").upper()
        # AUTO, HETERO:..., MULTI:... pick among the real devices themselves.
        if device.split(":")[0] not in ("AUTO", "HETERO", "MULTI", "BATCH") and device not in core.available_devices:
            raise ClippingEdgeError(f"OpenVINO sees no device {device!r} here (it has {', '.join(core.available_devices)}): "
                                    "install that device's driver, or pass --device CPU or AUTO")
        try:
            self.compiled = core.compile_model(str(path), device, config)
        except Exception as exc:
            raise ClippingEdgeError(f"OpenVINO could not load {path} ({str(exc).splitlines()[0]}): re-export the bundle") from None
        element = self.compiled.inputs[0].get_element_type()
        self.input_dtype = np.int32 if element == ov.Type.i32 else np.float32

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        out = self.compiled(np.ascontiguousarray(batch, dtype=self.input_dtype))[0]
        return np.asarray(out, dtype=np.float32)
