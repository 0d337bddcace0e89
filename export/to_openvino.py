"""OpenVINO target: IR (.xml + .bin) converted from the torch tower with a static, named input (only the
batch is dynamic); fp16 weight compression; int8 through NNCF (post-training quantization with the layers
that move the outputs most kept float, or weight compression)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .mixed_precision import keep_sensitive_float, worst_cosine
from .job import TowerJob
from .towers import OUTPUT

MANIFEST_KEY = ["clipping_edge", "manifest"]


def export_openvino(job: TowerJob, fixed_batch: int | None = None, output_name: str = OUTPUT) -> dict:
    """One tower (dynamic batch), or with `fixed_batch` a graph whose every shape is fixed. Returns what int8
    quantization measured and kept float (empty otherwise)."""
    import openvino as ov

    example = job.example(fixed_batch or 2)
    element = ov.Type.i32 if example.dtype == torch.int32 else ov.Type.f32
    shape = ov.PartialShape([fixed_batch or -1, *example.shape[1:]])
    model = ov.convert_model(job.module.eval(), example_input=example, input=[(job.input_name, shape, element)])
    # Named as in every other target (the converter leaves the result unnamed: benchmark_app shows ***NO_NAME***).
    model.outputs[0].get_tensor().set_names({output_name})
    report: dict = {}
    if job.precision == "int8":
        model, report = int8_keeping_sensitive_float(model, job)
    elif job.precision == "int8-weights":
        import nncf

        model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    elif job.precision not in ("fp32", "fp16"):
        raise ValueError(f"openvino has no precision {job.precision!r}")
    ov.save_model(model, str(job.path), compress_to_fp16=job.precision == "fp16")
    return report


def _int8(model: "ov.Model", job: TowerJob, kept_float: Sequence[str]) -> "ov.Model":  # noqa: F821 (lazy imports)
    import nncf

    # TRANSFORMER keeps LayerNorm/Softmax/GELU in float and applies SmoothQuant to the MatMuls:
    # the default preset dropped a ViT to cosine 0.85 here, this one kept 0.997.
    # subset_size counts the dataset's items, here batches: every calibration batch is used.
    # 7-bit weights in every layer (overflow fix): x86 CPUs without VNNI sum u8*s8 pairs in saturating int16, and
    # a bundle validated on a VNNI CPU may run on one. With the fix on the first layer only (which left even a
    # transformer's MatMuls at 8 bits), this AVX2 EPYC scored an outlier test tower 0.25 all-int8 against 0.95
    # and the tiny test ViT kept every layer float; the keep-float search pays for 7-bit precision where needed.
    advanced = nncf.AdvancedQuantizationParameters(overflow_fix=nncf.OverflowFix.ENABLE)
    return nncf.quantize(model, nncf.Dataset(list(job.calibration)), model_type=nncf.ModelType.TRANSFORMER,
                         subset_size=len(job.calibration), advanced_parameters=advanced,
                         ignored_scope=nncf.IgnoredScope(names=list(kept_float)))


# What NNCF quantizes (weights and inputs) in the towers we export. An ignored one keeps both float; a layer
# that reads a FakeQuantize is not enough to find them: the converter names a convolution after the batch
# norm folded into it ("Multiply_123"), and the stem's input quantizer sits before its Pad. PyTorch's fused
# attention converts to one ScaledDotProductAttention op, whose query and key NNCF quantizes too: left out, the
# tiny test ViT lost 0.035 cosine on an AVX2 CPU with every other layer float, and no search could undo it.
QUANTIZED_LAYER_TYPES = ("Convolution", "GroupConvolution", "MatMul", "ScaledDotProductAttention")


def _quantized_layers(model: "ov.Model") -> list[str]:  # noqa: F821
    """Every convolution and matrix product, in graph order (attention's activation products included)."""
    return [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() in QUANTIZED_LAYER_TYPES]


def compile_f32(model: "ov.Model | str") -> "ov.CompiledModel":  # noqa: F821
    """Compiled for the CPU in float32, as the runtime loads a bundle: on CPUs with AVX-512 BF16 or AMX the
    plugin runs bf16 by default, which moved a tiny student's classifier probabilities by 0.04 from the
    two-tower path (an AVX-512 BF16 EPYC) and would score the int8 search against a bf16 reference."""
    import openvino as ov

    return ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})


def int8_keeping_sensitive_float(model: "ov.Model", job: TowerJob) -> tuple["ov.Model", dict]:  # noqa: F821
    """Post-training int8 keeping float32 the fewest layers that bring the worst check row's cosine to the
    float IR back to 0.995 (mixed_precision.keep_sensitive_float). The real student's EfficientNet-Lite0 tower
    (AVX-512 VNNI CPU): 0.79 all-int8, 0.995 with 17 of its 50 layers float (the stem and the first depthwise
    convolution, the projection, late pointwise ones), 0.991 on the test split."""
    def outputs(tower: "ov.Model") -> np.ndarray:  # noqa: F821
        compiled = compile_f32(tower)
        return np.concatenate([compiled(batch)[0] for batch in job.check or job.calibration])

    reference = outputs(model)
    return keep_sensitive_float(lambda kept: _int8(model, job, kept), lambda tower: worst_cosine(outputs(tower), reference),
                                _quantized_layers)


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
