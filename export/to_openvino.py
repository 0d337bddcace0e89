"""OpenVINO target: IR (.xml + .bin) converted from the torch tower with a static, named input (only the
batch is dynamic); fp16 weight compression; int8 through NNCF (post-training quantization or weight
compression)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .targets import TowerJob
from .towers import OUTPUT

MANIFEST_KEY = ["clipping_edge", "manifest"]


def export_openvino(job: TowerJob, fixed_batch: int | None = None, output_name: str = OUTPUT) -> None:
    """One tower (dynamic batch), or with `fixed_batch` a graph whose every shape is fixed."""
    import openvino as ov

    example = job.example(fixed_batch or 2)
    element = ov.Type.i32 if example.dtype == torch.int32 else ov.Type.f32
    shape = ov.PartialShape([fixed_batch or -1, *example.shape[1:]])
    model = ov.convert_model(job.module.eval(), example_input=example, input=[(job.input_name, shape, element)])
    # Named as in every other target (the converter leaves the result unnamed: benchmark_app shows ***NO_NAME***).
    model.outputs[0].get_tensor().set_names({output_name})
    if job.precision == "int8":
        import nncf

        # TRANSFORMER keeps LayerNorm/Softmax/GELU in float and applies SmoothQuant to the MatMuls:
        # the default preset dropped a ViT to cosine 0.85 here, this one kept 0.997.
        # subset_size counts the dataset's items, here batches: every calibration batch is used.
        advanced = nncf.AdvancedQuantizationParameters(overflow_fix=overflow_fix(job.module))
        model = nncf.quantize(model, nncf.Dataset(list(job.calibration)), model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=len(job.calibration), advanced_parameters=advanced)
    elif job.precision == "int8-weights":
        import nncf

        model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    elif job.precision not in ("fp32", "fp16"):
        raise ValueError(f"openvino has no precision {job.precision!r}")
    ov.save_model(model, str(job.path), compress_to_fp16=job.precision == "fp16")


def overflow_fix(tower: torch.nn.Module) -> "nncf.OverflowFix":  # noqa: F821 (nncf is imported lazily)
    """7-bit weights in every layer of a convolutional tower (no attention), in the first layer only otherwise.
    Without VNNI the CPU sums u8*s8 pairs in saturating int16, and OpenVINO names MobileNet-like CNNs as the
    models this hurts; a bundle may run on such a CPU. Measured on this AVX2 CPU: EfficientNet-Lite0 image
    cosine 0.68 -> 0.78 with 7-bit weights everywhere, while MiniLM's text tower fell 0.978 -> 0.965, so
    transformers keep full 8-bit weights past their first layer."""
    import nncf

    modules = list(tower.modules())
    convolutional = any(isinstance(m, torch.nn.Conv2d) for m in modules) and \
        not any("Attention" in type(m).__name__ for m in modules)  # a ViT's conv stem does not make it a CNN
    return nncf.OverflowFix.ENABLE if convolutional else nncf.OverflowFix.FIRST_LAYER


def write_openvino_metadata(path: Path, manifest: dict, extra: dict[str, str] | None = None) -> None:
    """The manifest goes into the IR's rt_info as well; `extra` adds entries beside it under
    rt_info["clipping_edge"] (an app-ready classifier's labels)."""
    import openvino as ov

    model = ov.Core().read_model(str(path))
    model.set_rt_info(json.dumps(manifest), MANIFEST_KEY)
    for key, value in (extra or {}).items():
        model.set_rt_info(value, [MANIFEST_KEY[0], key])
    tmp = path.with_name(path.stem + ".meta.xml")
    ov.save_model(model, str(tmp), compress_to_fp16=False)
    tmp.replace(path)
    tmp.with_suffix(".bin").replace(path.with_suffix(".bin"))


def int8_weight_share(path: Path) -> float:
    """The fraction of the IR's weight elements (constants of rank ≥ 2) stored in 8 bits or fewer; see
    to_onnx.int8_weight_share."""
    import numpy as np
    import openvino as ov

    narrow = {ov.Type.i8, ov.Type.u8, ov.Type.i4, ov.Type.u4}
    sizes = {True: 0, False: 0}
    for op in ov.Core().read_model(str(path)).get_ops():
        if op.get_type_name() == "Constant" and len(op.get_output_partial_shape(0)) >= 2:
            sizes[op.get_output_element_type(0) in narrow] += int(np.prod(op.get_output_shape(0)))
    return sizes[True] / max(1, sizes[True] + sizes[False])
