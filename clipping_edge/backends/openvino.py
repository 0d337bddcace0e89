from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import numpy as np

from ..errors import ClippingEdgeError
from .options import BackendOptions


def _import_runtime() -> ModuleType:
    """`import openvino`, without the model converter and telemetry that its `__init__` imports too: about
    0.15 s of an app's cold start that running a bundle never needs. openvino's own `__init__` skips the
    converter when importing it fails, so it is made to fail once; `openvino.convert_model` then imports
    it on first use, for code in the same process that converts models (our exporter, NNCF)."""
    if "openvino" in sys.modules:
        return sys.modules["openvino"]
    converter = "openvino.tools.ovc"
    sys.modules[converter] = None  # type: ignore[assignment]  # None in sys.modules makes that import fail
    try:
        import openvino
    finally:
        if converter in sys.modules and sys.modules[converter] is None:
            del sys.modules[converter]
    if not hasattr(openvino, "convert_model"):
        def convert_model(*args, **kwargs):
            from openvino.tools.ovc import convert_model as convert

            return convert(*args, **kwargs)

        openvino.convert_model = convert_model
    return openvino


ov = _import_runtime()


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
        self.shapes = tuple(tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
                            for port in (self.compiled.inputs[0], self.compiled.outputs[0]))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        out = self.compiled(np.ascontiguousarray(batch, dtype=self.input_dtype))[0]
        return np.asarray(out, dtype=np.float32)
