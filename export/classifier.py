"""App-ready classifiers: one graph from an image straight to class probabilities, per target.

`clipping-edge export ... --labels labels.txt` (or `--labels-index INDEX`) also writes
`classifier.<suffix>` into the bundle: the image tower, the labels' prototypes as a constant (C, d)
matrix, the logit scale and a softmax, at batch 1 with every shape fixed (what mobile accelerators
want), with the labels where each format's own tooling looks for them:

- ONNX: `metadata_props["labels"]` (a JSON list), an ORT-format copy (`classifier.ort`) for ORT Mobile,
  the graph rewritten into ops ORT Mobile's NNAPI and Core ML providers take, and ORT's mobile usability
  verdict for both in the manifest;
- OpenVINO: `rt_info["clipping_edge"]["labels"]`;
- TFLite: NHWC input with the TFLite Support metadata MediaPipe's ImageClassifier and Android Studio read
  (normalisation, and labels.txt packed into the model);
- Core ML: an image input (`ImageType`) and a classifier config, so Vision returns classification
  observations; checked structurally where Core ML cannot run.

The prototypes are the bundle's own text tower's (every template x synonym, as the runtime builds them)
or an index's. Each classifier is run by its runtime on the held-out images and held against the
two-tower path (the bundle's image tower, then the same prototypes): same top-1 on at least the
precision's agreement gate and class probabilities within CLASSIFIER_MAX_PROBABILITY_DIFF.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from clipping_edge.classifier import softmax

from .targets import TowerJob
from .towers import IMAGE_INPUT
from .validate import THRESHOLDS, family

SCORES = "scores"
# Largest |probability difference| from the two-tower path, per precision family: a float graph differs
# only by summation order; a quantized one is calibrated on its own and may move a probability further.
CLASSIFIER_MAX_PROBABILITY_DIFF = {"fp32": 1e-3, "fp16": 0.02, "int8": 0.15}
LABELS_KEY = "labels"
HEAD_NODE = "classifier_head"
# Held-out images the classifier is run on (one at a time: batch 1) to compare with the towers.
CLASSIFIER_TEST_IMAGES = 256


class FusedClassifier(nn.Module):
    """pixels (1, 3, S, S) RGB in [0, 1] (or (1, S, S, 3) with `channels_last`) -> (1, C) probabilities."""

    def __init__(self, image_tower: nn.Module, prototypes: np.ndarray, logit_scale: float, image_size: int,
                 channels_last: bool = False, bias: np.ndarray | None = None):
        super().__init__()
        self.image = image_tower
        self.register_buffer("prototypes_t", torch.from_numpy(np.ascontiguousarray(prototypes.T, np.float32)))
        # A linear few-shot head (LDA) adds a per-class bias; zero-shot and prototype mixing have none, and no node.
        self.register_buffer("bias", None if bias is None or not np.any(bias) else torch.from_numpy(np.asarray(bias, np.float32)))
        self.logit_scale = float(logit_scale)
        self.image_size = image_size
        self.channels_last = channels_last

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            pixels = pixels.permute(0, 3, 1, 2)
        scores = self.image(pixels) @ self.prototypes_t
        if self.bias is not None:
            scores = scores + self.bias
        return torch.softmax(self.logit_scale * scores, dim=-1)

    def example(self, batch: int = 1) -> torch.Tensor:
        shape = (batch, self.image_size, self.image_size, 3) if self.channels_last else (batch, 3, self.image_size, self.image_size)
        return torch.rand(shape)


@dataclass
class ClassifierJob:
    tower: TowerJob  # the fused module as a batch-1 "tower" of the target
    labels: list[str]
    manifest: dict  # the bundle's manifest (without file hashes), for the format's metadata slot


def _onnx_mobile_verdict(path: Path) -> dict:
    """ORT's mobile usability checker (as `python -m onnxruntime.tools.check_onnx_model_mobile_usability`
    runs it: on the model optimized at the level the ORT format keeps), per execution provider: YES / MAYBE /
    NO, the share of nodes it takes and the ops it cannot."""
    import tempfile

    from onnxruntime.tools.mobile_helpers import usability_checker as checker

    coreml = lambda model, fixed: checker.check_coreml_partitions(model, fixed, "coreml_supported_mlprogram_ops.md")  # noqa: E731
    verdicts = {}
    with tempfile.TemporaryDirectory() as tmp:
        optimized = Path(tmp) / path.name
        checker.optimize_model(path, optimized, use_external_initializers=True)
        model = checker.ModelProtoWithShapeInfo(optimized).model_with_shape_info
        for provider, check in (("NNAPI", checker.check_nnapi_partitions), ("CoreML MLProgram", coreml)):
            info = check(model, True)
            verdicts[provider] = {"verdict": info.suitability().name, "unsupported_ops": sorted(info.unsupported_ops),
                                  "supported_nodes": f"{info.num_supported_nodes}/{info.num_nodes}",
                                  "partitions": info.num_partitions}
    return verdicts


def for_mobile_providers(path: Path, prototypes_shape: tuple[int, ...] | None = None) -> None:
    """Rewrite ops ORT Mobile's NNAPI and Core ML providers do not take into equivalent ones they do, in place:
    ReduceL2 -> sqrt(n * ReduceMean(x * x)); LayerNormalization -> its ReduceMean/Sub/Mul/Sqrt/Div definition;
    GreaterOrEqual -> arithmetic (a 0/1 float mask; a Where on it -> y + mask * (x - y)); ReduceMax over the last
    axis -> GlobalMaxPool; a zero Pad before a Conv -> the Conv's pads; a Gather of one constant index -> Slice +
    Squeeze; an Expand feeding only broadcasting arithmetic -> nothing (the arithmetic broadcasts). The float
    results are the same up to summation order (the export's parity check holds them to it). The product with the prototypes (a (d, C) constant) is named HEAD_NODE, which
    int8 leaves in float: quantizing the scores' own matrix moved probabilities by 0.2 here."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    shapes = {v.name: [d.dim_value or None for d in v.type.tensor_type.shape.dim]
              for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    for node in graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    counter = iter(range(10**9))
    taken = {name for node in graph.node for name in (*node.input, *node.output)} | set(constants)

    def tmp() -> str:
        name = next(n for n in (f"mobile_{i}" for i in counter) if n not in taken)
        taken.add(name)
        return name

    def const(values, dtype=np.int64) -> str:
        name = tmp()
        graph.initializer.append(numpy_helper.from_array(np.asarray(values, dtype), name))
        return name

    def reduced_size(node) -> int | None:
        """How many values a reduction over constant axes of a known shape sums (None: unknown)."""
        shape = shapes.get(node.input[0])
        if shape is None or len(node.input) < 2 or node.input[1] not in constants:
            return None
        sizes = [shape[int(a)] for a in np.atleast_1d(constants[node.input[1]])]
        return int(np.prod(sizes)) if all(sizes) else None

    def pad_folds_into(node):
        """The Conv a constant Pad of only the spatial dims feeds alone (EfficientNet-Lite's TF-style "same"
        padding), the pads it adds and the padding value; None if the Pad cannot be folded."""
        pads = constants.get(node.input[1]) if len(node.input) > 1 else None
        value = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros((), np.float32)
        users = consumers.get(node.output[0], [])
        if pads is None or value is None or value.size != 1 or len(users) != 1 or users[0].op_type != "Conv" \
                or users[0].input[0] != node.output[0] or len(pads) != 8 or np.any(pads[[0, 1, 4, 5]] != 0) \
                or any(a.name == "auto_pad" and a.s not in (b"", b"NOTSET") for a in users[0].attribute) \
                or (value != 0 and users[0].input[1] not in constants) \
                or (value != 0 and len(users[0].input) > 2 and users[0].input[2] not in constants):
            return None
        return users[0], [int(v) for v in (*pads[2:4], *pads[6:8])], float(value)

    aliases: dict[str, str] = {}  # a value replaced by an equal one (a Cast of a mask already in float)
    float_masks: dict[str, str] = {}  # a rewritten comparison's bool output -> the same mask as 0.0/1.0 floats
    bool_users = {name: [c for c in users if not (c.op_type == "Where" or (c.op_type == "Cast" and any(
        a.name == "to" and a.i == onnx.TensorProto.FLOAT for a in c.attribute)))] for name, users in consumers.items()}
    rewritten = []
    for node in graph.node:
        node.input[:] = [aliases.get(name, name) for name in node.input]
        if node.op_type == "MatMul" and any(name in constants and constants[name].shape == prototypes_shape
                                            for name in node.input):
            node.name = HEAD_NODE
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        out = node.output[0]
        if node.op_type == "ReduceL2" and reduced_size(node) is not None:
            # NNAPI has no ReduceSum: sqrt(n * mean(x * x)) with n the reduced axes' size.
            keep = attrs.get("keepdims", 1)
            square, mean, total = tmp(), tmp(), tmp()
            rewritten += [helper.make_node("Mul", [node.input[0], node.input[0]], [square]),
                          helper.make_node("ReduceMean", [square, *node.input[1:]], [mean], keepdims=keep),
                          helper.make_node("Mul", [mean, const(np.float32(reduced_size(node)), np.float32)], [total]),
                          helper.make_node("Sqrt", [total], [out])]
        elif node.op_type == "LayerNormalization" and attrs.get("axis", -1) == -1:
            x, weight, bias = node.input[0], node.input[1], node.input[2] if len(node.input) > 2 else ""
            axes, mean, centred, square, var, shifted, std, normed = const([-1]), *(tmp() for _ in range(7))
            eps = const(np.float32(attrs.get("epsilon", 1e-5)), np.float32)
            rewritten += [helper.make_node("ReduceMean", [x, axes], [mean], keepdims=1),
                          helper.make_node("Sub", [x, mean], [centred]),
                          helper.make_node("Mul", [centred, centred], [square]),
                          helper.make_node("ReduceMean", [square, axes], [var], keepdims=1),
                          helper.make_node("Add", [var, eps], [shifted]),
                          helper.make_node("Sqrt", [shifted], [std]),
                          helper.make_node("Div", [centred, std], [normed])]
            scaled = tmp() if bias else out
            rewritten.append(helper.make_node("Mul", [normed, weight], [scaled]))
            if bias:
                rewritten.append(helper.make_node("Add", [scaled, bias], [out]))
        elif node.op_type == "GreaterOrEqual" and shapes.get(node.input[0]) is not None:
            # Core ML's provider takes no comparison: a >= b as clip((a - b) * 3e38 + 1, 0, 1) cast to bool, exact
            # unless a and b differ by less than 3e-39 (the top-k mask of a head-probability tower uses this).
            difference, scaled, shifted, clipped = tmp(), tmp(), tmp(), tmp()
            rewritten += [helper.make_node("Sub", [node.input[0], node.input[1]], [difference]),
                          helper.make_node("Mul", [difference, const(np.float32(3e38), np.float32)], [scaled]),
                          helper.make_node("Add", [scaled, const(np.float32(1.0), np.float32)], [shifted]),
                          helper.make_node("Clip", [shifted, const(np.float32(0.0), np.float32),
                                                    const(np.float32(1.0), np.float32)], [clipped])]
            float_masks[out] = clipped
            if bool_users.get(out) or out in {o.name for o in graph.output}:
                rewritten.append(helper.make_node("Cast", [clipped], [out], to=onnx.TensorProto.BOOL))
        elif node.op_type == "Cast" and node.input[0] in float_masks and attrs.get("to") == onnx.TensorProto.FLOAT:
            aliases[out] = float_masks[node.input[0]]
        elif node.op_type == "Where" and node.input[0] in float_masks:
            # NNAPI has no Where: y + mask * (x - y), exact where the mask is 0 and within an ulp where it is 1.
            x, y = node.input[1], node.input[2]
            gap, picked = tmp(), tmp()
            rewritten += [helper.make_node("Sub", [x, y], [gap]),
                          helper.make_node("Mul", [float_masks[node.input[0]], gap], [picked]),
                          helper.make_node("Add", [y, picked], [out])]
        elif node.op_type == "ReduceMax" and len(shapes.get(node.input[0]) or []) == 2 and len(node.input) > 1 \
                and node.input[1] in constants and [int(a) % 2 for a in np.atleast_1d(constants[node.input[1]])] == [1]:
            # NNAPI has no ReduceMax: the maximum over the last axis of (B, C) as a GlobalMaxPool of (B, 1, 1, C).
            image, pooled = tmp(), tmp()
            kept = [0, 1] if attrs.get("keepdims", 1) else [0]
            rewritten += [helper.make_node("Reshape", [node.input[0], const([0, 1, 1, -1])], [image]),
                          helper.make_node("GlobalMaxPool", [image], [pooled]),
                          helper.make_node("Reshape", [pooled, const(kept)], [out])]
        elif node.op_type == "Pad" and attrs.get("mode", b"constant") == b"constant" and (fold := pad_folds_into(node)):
            # Core ML's ML Program provider takes no Pad: a Pad feeding a Conv becomes the Conv's own (zero) pads.
            # Padding with c (the stem's, where the normalisation is folded into the weights) is the same as
            # padding x - c with zeros and adding c times each filter's sum to its bias.
            conv, extra, value = fold
            pads = next((a for a in conv.attribute if a.name == "pads"), None)
            total = [e + v for e, v in zip(extra, helper.get_attribute_value(pads) if pads else [0] * 4)]
            if pads is not None:
                conv.attribute.remove(pads)
            conv.attribute.append(helper.make_attribute("pads", total))
            aliases[out] = node.input[0]
            if value != 0:
                weight = constants[conv.input[1]]
                bias = constants[conv.input[2]] if len(conv.input) > 2 and conv.input[2] else np.zeros(len(weight), np.float32)
                shifted_input = tmp()
                rewritten.append(helper.make_node("Sub", [node.input[0], const(np.float32(value), np.float32)], [shifted_input]))
                aliases[out] = shifted_input
                conv.input[2:] = [const((bias + value * weight.sum((1, 2, 3))).astype(np.float32), np.float32)]
        elif node.op_type == "Gather" and node.input[1] in constants and constants[node.input[1]].ndim == 0:
            index, axis = int(constants[node.input[1]]), attrs.get("axis", 0)
            sliced = tmp()
            rewritten += [helper.make_node("Slice", [node.input[0], const([index]), const([index + 1]), const([axis])], [sliced]),
                          helper.make_node("Squeeze", [sliced, const([axis])], [out])]
        elif node.op_type == "Expand" and all(c.op_type in ("Add", "Sub", "Mul", "Div") or (c.op_type == "Where" and out in c.input[1:])
                                              for c in consumers.get(out, [])) \
                and out not in {o.name for o in graph.output}:
            for consumer in consumers[out]:
                consumer.input[:] = [node.input[0] if name == out else name for name in consumer.input]
        else:
            rewritten.append(node)
    del graph.node[:]
    graph.node.extend(rewritten)
    used = {name for node in rewritten for name in node.input}
    kept = [t for t in graph.initializer if t.name in used]  # the replaced nodes' constants would be dead weight
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.value_info[:]  # shapes of removed values; runtimes infer them again
    onnx.save(model, str(path))


def write_onnx(job: ClassifierJob) -> dict:
    import onnx
    import onnxruntime as ort

    from .to_onnx import export_onnx, write_onnx_metadata

    head = tuple(job.tower.module.prototypes_t.shape)
    export_onnx(job.tower, fixed_batch=1, output_name=SCORES, keep_float=[HEAD_NODE],
                rewrite=lambda fp32: for_mobile_providers(fp32, head))
    path = job.tower.path
    write_onnx_metadata(path, job.manifest, {LABELS_KEY: json.dumps(job.labels)})
    onnx.checker.check_model(str(path), full_check=True)
    # The ORT format (what ORT Mobile loads): ORT's own converter writes it from an optimized session.
    ort_path = path.with_suffix(".ort")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(ort_path)
    options.add_session_config_entry("session.save_model_format", "ORT")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    logging.getLogger("usability_checker").setLevel(logging.ERROR)
    return {"ort_file": ort_path.name, "mobile_usability": _onnx_mobile_verdict(path)}


def write_openvino(job: ClassifierJob) -> dict:
    from .to_openvino import export_openvino, write_openvino_metadata

    export_openvino(job.tower, fixed_batch=1, output_name=SCORES)
    write_openvino_metadata(job.tower.path, job.manifest, {LABELS_KEY: json.dumps(job.labels)})
    return {}


def write_coreml(job: ClassifierJob) -> dict:
    """An image input that Vision feeds camera frames to (ImageType, pixel values scaled by 1/255 as the
    graph expects [0, 1]) and a classifier config, so VNCoreMLRequest returns VNClassificationObservation."""
    import coremltools as ct

    from .to_coreml import MANIFEST_KEY, compress, conversion_options

    module, size = job.tower.module, job.tower.module.image_size
    traced = torch.jit.trace(module, module.example(1))
    image = ct.ImageType(name=IMAGE_INPUT, shape=(1, 3, size, size), scale=1 / 255.0, bias=[0.0, 0.0, 0.0],
                         color_layout=ct.colorlayout.RGB)
    model = ct.convert(traced, inputs=[image], classifier_config=ct.ClassifierConfig(job.labels, predicted_feature_name="label"),
                       convert_to="mlprogram", **conversion_options(job.tower))
    model = compress(model, job.tower.precision)
    model.user_defined_metadata[MANIFEST_KEY] = json.dumps(job.manifest)
    model.user_defined_metadata[LABELS_KEY] = json.dumps(job.labels)
    model.short_description = f"clipping-edge {job.manifest['model_name']}: zero-shot classifier of {len(job.labels)} labels"
    model.save(str(job.tower.path))
    return {"structure": _coreml_classifier_problems(job)}


def _coreml_classifier_problems(job: ClassifierJob) -> list[str]:
    """What Vision needs, read back from the saved package: an RGB image input of the graph's size, the
    predicted label and probabilities outputs, and the labels themselves."""
    import coremltools as ct

    spec = ct.models.MLModel(str(job.tower.path), skip_model_load=True).get_spec()
    problems, size = [], job.tower.module.image_size
    (image,) = spec.description.input
    kind = image.type.WhichOneof("Type")
    if kind != "imageType" or image.type.imageType.width != size or image.type.imageType.height != size \
            or image.type.imageType.colorSpace != ct.proto.FeatureTypes_pb2.ImageFeatureType.RGB:
        problems.append(f"input {image.name!r} is not an RGB {size}x{size} image ({kind})")
    if spec.description.predictedFeatureName != "label" or not spec.description.predictedProbabilitiesName:
        problems.append("the model does not declare a predicted label and its probabilities (no classifier config)")
    stored = str(spec.mlProgram)
    missing = [label for label in job.labels if json.dumps(label)[1:-1] not in stored]
    if missing:
        problems.append(f"labels missing from the program: {missing[:5]}")
    return problems


def _mediapipe_metadata(labels_file: str, name: str, labels: int) -> bytes:
    """TFLite model metadata (the TFLite Support schema) as MediaPipe's ImageClassifier and Android Studio's
    model binding read it: an RGB image input whose float values are uint8 / 255, and scores whose axis is
    named by an associated labels file."""
    import flatbuffers
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb

    def stats(low: float, high: float):
        value = fb.StatsT()
        value.min, value.max = [low], [high]
        return value

    image = fb.TensorMetadataT()
    image.name, image.description = "image", "RGB image, height x width x 3, values in [0, 1] (uint8 / 255)"
    image.content = fb.ContentT()
    image.content.contentPropertiesType = fb.ContentProperties.ImageProperties
    image.content.contentProperties = fb.ImagePropertiesT()
    image.content.contentProperties.colorSpace = fb.ColorSpaceType.RGB
    normalization = fb.ProcessUnitT()
    normalization.optionsType = fb.ProcessUnitOptions.NormalizationOptions
    normalization.options = fb.NormalizationOptionsT()
    normalization.options.mean, normalization.options.std = [0.0], [255.0]
    image.processUnits, image.stats = [normalization], stats(0.0, 1.0)
    scores = fb.TensorMetadataT()
    scores.name, scores.description = "probability", f"probabilities of the {labels} labels (softmax of scaled cosines)"
    scores.content = fb.ContentT()
    scores.content.contentPropertiesType = fb.ContentProperties.FeatureProperties
    scores.content.contentProperties = fb.FeaturePropertiesT()
    scores.stats = stats(0.0, 1.0)
    label_file = fb.AssociatedFileT()
    label_file.name, label_file.description = labels_file, "the labels, one a line, in score order"
    label_file.type = fb.AssociatedFileType.TENSOR_AXIS_LABELS
    scores.associatedFiles = [label_file]
    graph = fb.SubGraphMetadataT()
    graph.inputTensorMetadata, graph.outputTensorMetadata = [image], [scores]
    model = fb.ModelMetadataT()
    model.name, model.description = name, "clipping-edge zero-shot image classifier"
    model.subgraphMetadata, model.minParserVersion = [graph], "1.0.0"
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), b"M001")
    return bytes(builder.Output())


def write_tflite(job: ClassifierJob) -> dict:
    """NHWC float input (what MediaPipe feeds), the TFLite Support metadata MediaPipe's ImageClassifier and
    Android Studio's model binding read, and the labels file packed into the model (a zip appended to the
    flatbuffer, where those readers look for associated files)."""
    import contextlib
    import io
    import zipfile

    import litert_torch

    from .to_tflite import NAMED_OUTPUT, export_at_precision, write_tflite_metadata

    path, module = job.tower.path, job.tower.module
    logging.getLogger("absl").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()):
        model = litert_torch.signature("serving_default", NAMED_OUTPUT[IMAGE_INPUT](module.eval(), SCORES),
                                       sample_kwargs={IMAGE_INPUT: module.example(1)}).convert()
    samples = [{IMAGE_INPUT: np.ascontiguousarray(b.transpose(0, 2, 3, 1))} for b in job.tower.calibration]
    export_at_precision(model, path, job.tower.precision,
                        lambda: {"serving_default": samples} if job.tower.precision == "int8-static" else None)
    write_tflite_metadata(path, job.manifest)
    write_tflite_metadata(path, json.dumps(job.labels), key=LABELS_KEY)
    write_tflite_metadata(path, _mediapipe_metadata("labels.txt", job.manifest["model_name"], len(job.labels)),
                          key="TFLITE_METADATA")
    with zipfile.ZipFile(path, "a") as packed:
        packed.writestr("labels.txt", "\n".join(job.labels) + "\n")
    return {"mediapipe_metadata": True, "input": {"name": IMAGE_INPUT, "shape": list(module.example().shape),
                                                  "range": "[0, 1] RGB (uint8 / 255 per the metadata)"}}


# Runners of the written files here: file name -> pixels (1, 3, S, S) -> probabilities (1, C).
Runner = Callable[[np.ndarray], np.ndarray]


def _onnx_runners(path: Path) -> dict[str, Runner]:
    import onnxruntime as ort

    # The ORT-format copy is what ships to ORT Mobile: it is checked like the .onnx itself.
    sessions = {p.name: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (path, path.with_suffix(".ort"))}
    return {name: (lambda pixels, s=session: s.run(None, {IMAGE_INPUT: pixels})[0]) for name, session in sessions.items()}


def _tflite_runners(path: Path) -> dict[str, Runner]:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner("serving_default")
    return {path.name: lambda pixels: runner(**{IMAGE_INPUT: np.ascontiguousarray(pixels.transpose(0, 2, 3, 1))})[SCORES]}


def _openvino_runners(path: Path) -> dict[str, Runner]:
    from .to_openvino import compile_f32

    compiled = compile_f32(str(path))
    return {path.name: lambda pixels: np.asarray(compiled(pixels)[0])}


# target -> (writer, runners of what it wrote)
WRITERS: dict[str, tuple[Callable[[ClassifierJob], dict], Callable[[Path], dict[str, Runner]]]] = {
    "onnx": (write_onnx, _onnx_runners),
    "openvino": (write_openvino, _openvino_runners),
    "tflite": (write_tflite, _tflite_runners),
    # Core ML cannot predict on Linux: its classifier is checked structurally (what Vision reads) only.
    "coreml": (write_coreml, lambda path: {}),
}


def check_against_towers(probabilities: np.ndarray, embeddings: np.ndarray, prototypes: np.ndarray,
                         logit_scale: float, precision: str, bias: np.ndarray | None = None) -> dict:
    """The classifier's probabilities against the two-tower path's on the same images."""
    reference = softmax(logit_scale * (embeddings @ prototypes.T + (0 if bias is None else bias)))
    agreement = float((probabilities.argmax(1) == reference.argmax(1)).mean())
    max_diff = float(np.abs(probabilities - reference).max())
    threshold = THRESHOLDS[family(precision)]
    limit = CLASSIFIER_MAX_PROBABILITY_DIFF[family(precision)]
    failures = []
    if not agreement >= threshold.min_agreement:  # "not (passes)": NaN fails
        failures.append(f"classifier top-1 agreement with the two-tower path {agreement:.3f} < {threshold.min_agreement}")
    if not max_diff <= limit:
        failures.append(f"classifier probabilities differ from the two-tower path by {max_diff:.2e} > {limit}")
    return {"images": len(probabilities), "top1_agreement": agreement, "max_probability_diff": max_diff,
            "thresholds": {"min_agreement": threshold.min_agreement, "max_probability_diff": limit},
            "failures": failures, "passed": not failures}


def write_classifier(target: str, image_tower: nn.Module, prototypes: np.ndarray, labels: list[str], logit_scale: float,
                     image_size: int, precision: str, path: Path, calibration, manifest: dict,
                     test_pixels: np.ndarray, test_embeddings: np.ndarray, bias: np.ndarray | None = None,
                     fewshot: dict | None = None) -> dict:
    """Write the fused classifier for `target` at `path`, run it here on `test_pixels` and compare with the
    two-tower path (`test_embeddings` from the bundle's image tower). Returns the manifest's record.
    The head is softmax(logit_scale * (x @ prototypesᵀ + bias)): zero-shot, or a linear few-shot head."""
    if target not in WRITERS:
        raise ValueError(f"no app-ready classifier for {target}")
    write, runners = WRITERS[target]
    # MediaPipe and Android feed TFLite image models height x width x channels.
    module = FusedClassifier(image_tower, prototypes, logit_scale, image_size, channels_last=target == "tflite",
                             bias=bias).eval()
    calibration = [batch[i:i + 1] for batch in calibration for i in range(len(batch))]  # the graph takes batch 1
    start = time.perf_counter()
    extra = write(ClassifierJob(TowerJob("image", module, IMAGE_INPUT, module.example, path, precision, calibration),
                                labels, manifest))
    seconds = round(time.perf_counter() - start, 2)
    checks = {}
    for name, run in runners(path).items():
        probabilities = np.concatenate([run(test_pixels[i:i + 1]) for i in range(len(test_pixels))])
        checks[name] = check_against_towers(probabilities, test_embeddings, prototypes, logit_scale, precision, bias)
    if checks:  # the parity record is the worst file's; each file's is kept too
        check = {**min(checks.values(), key=lambda c: (c["passed"], c["top1_agreement"], -c["max_probability_diff"])),
                 "failures": [f"{name}: {f}" for name, c in checks.items() for f in c["failures"]],
                 "passed": all(c["passed"] for c in checks.values()), "files": checks}
    else:  # nothing runs it here (Core ML off macOS): what its structure check found
        problems = extra.get("structure", [])
        check = {"images": 0, "checked_by": "structure only: this OS cannot run the target", "failures": problems,
                 "passed": not problems}
    return {"file": path.name, "labels": labels, "input": {"name": IMAGE_INPUT, "shape": list(module.example().shape),
            "range": "[0, 1] RGB"}, "output": {"name": SCORES, "shape": [1, len(labels)],
                                               "what": "softmax(logit_scale * (embedding · prototypes + bias))" if fewshot
                                               else "softmax(logit_scale * cos)"},
            "precision": precision, "convert_seconds": seconds, **({"fewshot": fewshot} if fewshot else {}), **extra,
            "parity": check}


def describe_classifier(record: dict, size_mb: float) -> str:
    check = record["parity"]
    verdict = "passed" if check["passed"] else f"FAILED: {'; '.join(check['failures'])}"
    figures = (f"top-1 agreement with the towers {check['top1_agreement']:.1%}, max |Δp| {check['max_probability_diff']:.1e}"
               if check["images"] else check["checked_by"])
    line = (f"  {record['file']:<16} {size_mb:8.2f} MB  app-ready classifier of {len(record['labels'])} labels, input "
            f"{record['input']['shape']}: {figures} ({verdict})")
    for provider, verdict in record.get("mobile_usability", {}).items():
        ops = f", unsupported ops: {', '.join(verdict['unsupported_ops'])}" if verdict["unsupported_ops"] else ""
        line += f"\n    ORT Mobile {provider}: {verdict['verdict']} ({verdict['supported_nodes']} nodes{ops})"
    return line
