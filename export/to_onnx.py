"""ONNX target: torch.export-based exporter with a dynamic batch axis and weights inline, then
fp16 conversion or ONNX Runtime int8 quantization (dynamic, or static QDQ with calibration)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from .mixed_precision import keep_sensitive_float, worst_cosine
from .job import TowerJob
from .towers import OUTPUT

# Kept in float32 by the fp16 conversion: normalisation and reductions lose too much in half precision.
FP16_KEEP_FLOAT32 = ["LayerNormalization", "Softmax", "ReduceL2", "ReduceSum", "ReduceMean", "Sqrt", "Pow", "Div"]
# Static int8 quantizes only the transformer's matrix products. Quantizing every op collapsed a ViT to
# cosine 0.73 here; quantizing the conv stem too cost the worst image 0.02 cosine (0.980 vs 0.9996).
STATIC_INT8_OPS = ["MatMul", "Gemm"]


def export_fp32(tower: nn.Module, example: torch.Tensor, input_name: str, path: Path, dynamic_batch: bool = True,
                output_name: str = OUTPUT) -> Path:
    """Without a dynamic batch every shape is fixed at the example's (what ORT Mobile's NNAPI and Core ML
    providers want)."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    # The exporter narrates its passes on stdout and warns about torchvision ops we never use; onnxscript's
    # constant folder logs each Reshape it leaves unfolded (the graph is unchanged); torch's own pytree
    # warns about a deprecated spelling inside the exporter. None of it is the user's to act on.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    logging.getLogger("onnxscript.optimizer").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
        torch.onnx.export(tower.eval(), (example,), str(path), dynamo=True, external_data=False, verbose=False,
                          input_names=[input_name], output_names=[output_name],
                          dynamic_shapes=({0: batch},) if dynamic_batch else None)
    return path


def to_fp16(source: Path, out: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True, op_block_list=FP16_KEEP_FLOAT32)
    sort_topologically(model.graph)
    # The converter leaves intermediate type annotations from before (float where it made float16), which
    # the checker's shape inference rejects: they are optional, so drop them and let runtimes infer.
    del model.graph.value_info[:]
    onnx.save(model, str(out))


def sort_topologically(graph) -> None:
    """Reorder the nodes so each comes after the producers of its inputs, as the ONNX spec requires: the
    fp16 converter appends its input casts at the end (onnx.checker's full check rejects that, and
    stricter runtimes than ONNX Runtime refuse the file)."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ValueError(f"the graph has a cycle or a dangling input near {pending[0].name!r}")
        for node in ready:
            available.update(node.output)
        ordered += ready
        done = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in done]
    del graph.node[:]
    graph.node.extend(ordered)


def _preprocessed(source: Path) -> Path:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = source.with_suffix(".pre.onnx")
    # Symbolic shape inference does not understand the dynamo exporter's dynamic dims.
    quant_pre_process(str(source), str(out), skip_symbolic_shape=True)
    return out


# ONNX Runtime's dynamic int8 ops; convolutions stay float: its ConvInteger CPU kernel is slower than the
# float one (EfficientNet-Lite0 student at 224 px: 121 ms against 15 ms float, one thread; a ViT's one
# patch convolution: 22 % of its int8 call, 6.0 -> 4.5 ms at 64 px without it).
DYNAMIC_INT8_OPS = ["MatMul", "Gather", "Attention", "LSTM", "Transpose", "EmbedLayerNormalization"]  # ORT's IntegerOps


def _dynamic_int8(pre: Path, out: Path, exclude: Sequence[str]) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The dynamic quantizer first rewrites each Gemm as a MatMul named "<gemm>_MatMul" (and an Add), then
    # quantizes the MatMul: a Gemm is kept float under that name.
    exclude = [*exclude, *(f"{name}_MatMul" for name in exclude)]
    # 7-bit weights: x86 CPUs without VNNI sum u8*s8 pairs in saturating int16, and a bundle validated on a VNNI
    # CPU may run on one (ORT's own advice for per-channel dynamic int8 there). Measured on an AVX2 EPYC: one
    # int8 linear layer alone, cosine 0.894 with 8-bit weights, 0.99993 with 7-bit (tests/test_export.py).
    quantize_dynamic(str(pre), str(out), per_channel=True, reduce_range=True, weight_type=QuantType.QInt8,
                     nodes_to_exclude=exclude, op_types_to_quantize=DYNAMIC_INT8_OPS)


def _static_int8(pre: Path, out: Path, exclude: Sequence[str], input_name: str, calibration: Sequence[np.ndarray]) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    # 7-bit weights for the reason dynamic int8 has them: measured on an AVX2 EPYC, the test's int8 linear layer
    # alone scored cosine 0.893 with 8-bit weights and 0.99980 with 7-bit.
    quantize_static(str(pre), str(out), _Batches(input_name, calibration), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=STATIC_INT8_OPS, per_channel=True, reduce_range=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, nodes_to_exclude=list(exclude))


class _Batches:
    """onnxruntime.quantization.CalibrationDataReader over a list of input batches."""

    def __init__(self, input_name: str, batches: Sequence[np.ndarray]):
        self._items: Iterator[dict] = iter([{input_name: b} for b in batches])

    def get_next(self) -> dict | None:
        return next(self._items, None)


def _weighted_nodes(path: Path, op_types: Sequence[str]) -> list[str]:
    """The nodes of these types that read a stored weight: what the quantizer turns into int8."""
    import onnx

    graph = onnx.load(str(path)).graph
    weights = {t.name for t in graph.initializer}
    return [n.name for n in graph.node if n.op_type in op_types and any(i in weights for i in n.input)]


def _outputs(model: bytes, input_name: str, rows: np.ndarray) -> np.ndarray:
    """One row per call, as the runtime runs a dynamic int8 tower (its activation scale is per call)."""
    import onnxruntime as ort

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {input_name: rows[i:i + 1]})[0] for i in range(len(rows))])


def quantize_keeping_sensitive_float(pre: Path, out: Path, quantize: Callable[[Path, Path, Sequence[str]], None],
                                     op_types: Sequence[str], input_name: str, check: Sequence[np.ndarray],
                                     keep_float: Sequence[str] = ()) -> dict:
    """Quantize `pre` into `out`, keeping float32 the layers named in `keep_float` and, where the `check` rows
    ask for it, the fewest most harmful others (mixed_precision.keep_sensitive_float). Returns what was
    measured and kept, for the manifest."""
    if not check:
        quantize(pre, out, keep_float)
        return {}
    rows = np.concatenate(list(check))
    reference = _outputs(pre.read_bytes(), input_name, rows)
    trial = out.with_suffix(".trial.onnx")

    def quantized(kept: Sequence[str]) -> bytes:
        quantize(pre, trial, [*keep_float, *kept])
        return trial.read_bytes()

    try:
        chosen, record = keep_sensitive_float(quantized, lambda model: worst_cosine(_outputs(model, input_name, rows), reference),
                                              lambda _: [n for n in _weighted_nodes(pre, op_types) if n not in keep_float])
    finally:
        trial.unlink(missing_ok=True)
    out.write_bytes(chosen)
    return record


def export_onnx(job: TowerJob, fixed_batch: int | None = None, output_name: str = OUTPUT,
                rewrite: Callable[[Path], None] | None = None, keep_float: Sequence[str] = ()) -> dict:
    """One tower (dynamic batch), or with `fixed_batch` a graph whose every shape is fixed; `rewrite`
    edits the float32 graph in place before any quantization; int8 leaves the nodes named in `keep_float`.
    Returns what quantization measured and kept float (empty for float precisions)."""
    example = job.example(fixed_batch or 2)
    fp32 = job.path if job.precision == "fp32" else job.path.with_name(job.path.stem + ".fp32.onnx")
    export_fp32(job.module, example, job.input_name, fp32, fixed_batch is None, output_name)
    if rewrite is not None:
        rewrite(fp32)
    if job.precision == "fp32":
        return {}
    if job.precision == "fp16":
        try:
            to_fp16(fp32, job.path)
        finally:
            fp32.unlink(missing_ok=True)
        return {}
    if job.precision == "int8":
        quantize, op_types = _dynamic_int8, [*DYNAMIC_INT8_OPS, "Gemm"]  # Gemm: see _dynamic_int8
    elif job.precision == "int8-static":
        def quantize(pre: Path, out: Path, exclude: Sequence[str]) -> None:
            _static_int8(pre, out, exclude, job.input_name, job.calibration)
        op_types = STATIC_INT8_OPS
    else:
        fp32.unlink(missing_ok=True)
        raise ValueError(f"onnx has no precision {job.precision!r}")
    pre = _preprocessed(fp32)
    try:
        return quantize_keeping_sensitive_float(pre, job.path, quantize, op_types, job.input_name, job.check or job.calibration,
                                                keep_float)
    finally:
        pre.unlink(missing_ok=True)
        fp32.unlink(missing_ok=True)


def write_onnx_metadata(path: Path, manifest: dict, extra: dict[str, str] | None = None) -> None:
    """The manifest also goes into the model's own metadata_props, so a lone .onnx file explains itself;
    `extra` adds entries of its own (an app-ready classifier's labels)."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in {"clipping_edge.manifest": json.dumps(manifest), **(extra or {})}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def int8_weight_share(path: Path) -> float:
    """The fraction of the tower's weight elements (initializers of rank ≥ 2: matrices and kernels) stored
    in 8 bits: what a precision's name claims, measured (a static recipe that skips convolutions leaves
    a CNN tower almost all float)."""
    import onnx

    model = onnx.load(str(path))
    eight_bit = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    sizes = {True: 0, False: 0}
    for tensor in model.graph.initializer:
        if len(tensor.dims) >= 2:
            sizes[tensor.data_type in eight_bit] += int(np.prod(tensor.dims))
    return sizes[True] / max(1, sizes[True] + sizes[False])
