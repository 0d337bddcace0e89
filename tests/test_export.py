"""ONNX export: the contract (inputs, dynamic batch, normalised outputs, metadata) and parity gating."""

import copy
import os
import re
import sys
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import clipping_edge
import torch

from clipping_edge import ClippingEdgeError
from clipping_edge.export.bundle import export_bundle
from clipping_edge.training.checkpoint import fingerprint, load_student


def test_bundle_contract(tiny_bundle: Path, tiny_checkpoint: Path):
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    assert manifest["format_version"] == clipping_edge.FORMAT_VERSION and manifest["target"] == "onnx" and manifest["precision"] == "fp32"
    assert manifest["fingerprint"] == fingerprint(tiny_checkpoint)
    assert set(manifest["versions"]) >= {"torch", "onnx", "onnxruntime"}
    parity = manifest["parity"]
    assert parity["passed"] and parity["image_cosine_min"] >= 0.9999 and parity["text_cosine_min"] >= 0.9999
    assert parity["zero_shot_agreement"] >= 0.99 and parity["images"] > 0
    assert (tiny_bundle / "tokenizer.json").is_file()

    text = onnx.load(str(tiny_bundle / manifest["text_tower"]))
    (ids,) = text.graph.input
    assert ids.type.tensor_type.elem_type == onnx.TensorProto.INT32
    assert ids.type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    assert ids.type.tensor_type.shape.dim[1].dim_value == manifest["context_length"]
    # EOT pooling must not be an ArgMax over ids
    assert "ArgMax" not in {node.op_type for node in text.graph.node}
    meta = {p.key: p.value for p in text.metadata_props}
    assert json.loads(meta["clipping_edge.manifest"])["fingerprint"] == manifest["fingerprint"]

    image = onnx.load(str(tiny_bundle / manifest["image_tower"]))
    (pixels,) = image.graph.input
    assert pixels.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_value for d in pixels.type.tensor_type.shape.dim[1:]] == [3, manifest["image_size"], manifest["image_size"]]


@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_towers_match_pytorch_at_any_batch(tiny_bundle: Path, tiny_checkpoint: Path, batch: int):
    student, tokenizer, _ = load_student(tiny_checkpoint)
    size = student.config.vision.image_size
    pixels = np.random.default_rng(batch).random((batch, 3, size, size), dtype=np.float32)
    ids = tokenizer(["a red circle on the left", "there is a star", "x", "a small dotted blue box", "hi"][:batch])
    image = ort.InferenceSession(str(tiny_bundle / "image.onnx")).run(None, {"pixels": pixels})[0]
    text = ort.InferenceSession(str(tiny_bundle / "text.onnx")).run(None, {"input_ids": ids})[0]
    with torch.no_grad():
        np.testing.assert_allclose(image, student.visual(torch.from_numpy(pixels)).numpy(), atol=1e-5)
        np.testing.assert_allclose(text, student.text(torch.from_numpy(ids)).numpy(), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(image, axis=1), 1, atol=1e-5)


def test_a_wrong_export_fails_validation_and_writes_nothing(tiny_checkpoint: Path, small_data: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch):
    import clipping_edge.export.targets as targets
    from clipping_edge.export.to_onnx import export_onnx

    def export_with_broken_weights(job):
        if job.kind == "image":
            job.module = copy.deepcopy(job.module)  # the reference student must stay intact
            with torch.no_grad():
                job.module.visual.blocks[0].mlp[0].weight.mul_(-3.0)  # what a buggy converter might do
        export_onnx(job)

    broken = targets.Target("onnx", (), ".onnx", targets.TARGETS["onnx"].precisions, export_with_broken_weights, None, "onnx")
    monkeypatch.setitem(targets.TARGETS, "onnx", broken)
    out = tmp_path / "bundle"
    with pytest.raises(ClippingEdgeError, match="failed validation.*image cosine"):
        export_bundle(tiny_checkpoint, out, "onnx", "none", str(small_data))
    assert not out.exists() and list(tmp_path.iterdir()) == []

    kept, parity = export_bundle(tiny_checkpoint, out, "onnx", "none", str(small_data), allow_degraded=True)
    assert not parity["passed"] and parity["failures"]
    assert json.loads((kept / "manifest.json").read_text())["parity"]["passed"] is False


def test_a_converter_crash_is_one_clear_error_and_writes_nothing(tiny_checkpoint: Path, small_data: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch):
    import clipping_edge.export.to_onnx as to_onnx

    def crash(job):
        raise NotImplementedError("Traceback noise\nPyTorch convert function for op 'new_ones' not implemented.")

    monkeypatch.setattr(to_onnx, "export_onnx", crash)
    with pytest.raises(ClippingEdgeError, match=r"onnx could not convert the image tower at fp32 \(NotImplementedError: "
                                                r"PyTorch convert function for op 'new_ones' not implemented.\)"):
        export_bundle(tiny_checkpoint, tmp_path / "bundle", "onnx", "none", str(small_data))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("precision", ["int8", "int8-static"])
def test_int8_keeps_float_only_the_layers_that_move_the_outputs(outlier_tower_job, precision: str):
    from clipping_edge.export.mixed_precision import INT8_MIN_CHECK_COSINE
    from clipping_edge.export.to_onnx import export_onnx

    job = outlier_tower_job(".onnx", precision, outlier_weight=1 / 300)
    rows = np.concatenate(job.calibration)
    report = export_onnx(job)
    assert report["check_cosine_min_all_int8"] < INT8_MIN_CHECK_COSINE, report  # the case in point
    assert report["kept_float"] and report["check_cosine_min"] >= INT8_MIN_CHECK_COSINE, report
    assert len(report["kept_float"]) == 1 and report["quantized"] == 1, report  # one float layer is enough here
    graph = onnx.load(str(job.path)).graph
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    # where each recipe's int8 weight matrix is an input: the integer product's, or (QDQ) a dequantizer's
    op, slot = {"int8": ("MatMulInteger", 1), "int8-static": ("DequantizeLinear", 0)}[precision]
    int8_weights = [weights[n.input[slot]] for n in graph.node
                    if n.op_type == op and weights.get(n.input[slot], np.zeros(0)).ndim == 2]
    assert len(int8_weights) == 1 and int8_weights[0].dtype == np.int8  # the other layer is int8
    # in 7 bits: without VNNI, x86 sums u8 x s8 pairs in saturating int16 (255 * 64 * 2 < 32 767); with 8-bit
    # weights, on an AVX2 CPU, this layer alone scored cosine 0.894 dynamic and 0.893 static, and both recipes
    # kept both layers float there
    assert np.abs(int8_weights[0].astype(int)).max() <= 64
    session = ort.InferenceSession(str(job.path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = job.module(torch.from_numpy(rows)).numpy()
    got = np.concatenate([session.run(None, {"x": rows[i:i + 1]})[0] for i in range(len(rows))])
    cosine = (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() >= INT8_MIN_CHECK_COSINE - 1e-6


def test_auto_passes_over_an_int8_tower_kept_mostly_float():
    from types import SimpleNamespace

    from clipping_edge.export.bundle import _mostly_float

    shares = {"static": 0.017, "dynamic": 0.74, "image": 0.09}
    run = SimpleNamespace(reports={("text", "int8-static"): {"kept_float": ["q"] * 17}, ("text", "int8"): {"kept_float": ["q"] * 12},
                                   ("image", "int8"): {"kept_float": []}},
                          target=SimpleNamespace(int8_weight_share=lambda path: shares[path.name]))
    assert "17 layers kept float to pass leave 2% of the weights in int8" in _mostly_float(run, "text", "int8-static", Path("static"))
    assert _mostly_float(run, "text", "int8", Path("dynamic")) is None  # the embedding table alone is most of it
    assert _mostly_float(run, "image", "int8", Path("image")) is None  # nothing kept float: convolutions are float by design


def test_the_keep_float_search_scores_training_rows_the_calibration_never_saw(small_data: Path, tiny_checkpoint: Path):
    from clipping_edge.export.calibration import calibration_batches
    from clipping_edge.training.checkpoint import load_student
    from clipping_edge.training.data.pairs import read_pairs, resolve_split

    pairs = read_pairs(resolve_split(str(small_data), "train"))
    _, tokenizer, _ = load_student(tiny_checkpoint)
    calibration = np.concatenate(calibration_batches("image", pairs, tokenizer, 32))
    check = np.concatenate(calibration_batches("image", pairs, tokenizer, 32, between=True))
    assert len(calibration) == 128 and len(check) == 127
    seen = {row.tobytes() for row in calibration}
    assert not any(row.tobytes() in seen for row in check)


def test_the_keep_float_search_keeps_nothing_float_that_does_not_help():
    from clipping_edge.export.mixed_precision import keep_sensitive_float

    # Every layer float scores worse than none (the tiny ViT on an AVX2 CPU: 0.965 all-int8, 0.963 all float).
    scores = {(): 0.965}
    chosen, record = keep_sensitive_float(tuple, lambda kept: scores.get(kept, 0.963), lambda _: ["a", "b", "c"])
    assert chosen == () and record["kept_float"] == [] and record["check_cosine_min"] == 0.965, record
    # ...but a NaN all-int8 tower is never kept over a finite one.
    chosen, record = keep_sensitive_float(tuple, lambda kept: float("nan") if not kept else 0.963, lambda _: ["a", "b"])
    assert len(chosen) == 2 and record["check_cosine_min"] == 0.963, record


def test_each_tower_can_have_its_own_precision(tiny_checkpoint: Path, small_data: Path, tmp_path: Path):
    out, parity = export_bundle(tiny_checkpoint, tmp_path / "b", quantize="image=int8", data=str(small_data))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["precision"] == "image=int8,text=fp32" and parity["passed"]
    assert [manifest["quantization"][k]["precision"] for k in ("image", "text")] == ["int8", "fp32"]
    ops = {kind: {n.op_type for n in onnx.load(str(out / f"{kind}.onnx")).graph.node} for kind in ("image", "text")}
    assert "DynamicQuantizeLinear" in ops["image"] and "DynamicQuantizeLinear" not in ops["text"]


@pytest.mark.parametrize("quantize", ["image=int4", "image=int8,vision=fp16", "image=", "fp8"])
def test_an_unknown_per_tower_precision_is_refused_before_converting(tiny_checkpoint: Path, tmp_path: Path, quantize: str):
    with pytest.raises(ClippingEdgeError, match="--quantize") as info:
        export_bundle(tiny_checkpoint, tmp_path / "b", quantize=quantize)
    assert "\n" not in str(info.value) and not (tmp_path / "b").exists()


def test_converter_chatter_goes_to_the_log_and_progress_to_the_terminal(tmp_path: Path, capfd):
    from clipping_edge.export.chatter import chatter_to, phase

    log = tmp_path / "export.log"
    with chatter_to(log):
        os.write(1, b"native stdout chatter\n")
        os.write(2, b"native stderr chatter\n")
        print("python chatter")
        print("a deprecation nobody can act on", file=sys.stderr)
        with phase("converting"):
            pass
    out, err = capfd.readouterr()
    assert "chatter" not in out + err and "deprecation" not in out + err
    assert "  converting..." in out and "  converting: " in out
    text = log.read_text()
    assert all(s in text for s in ("native stdout chatter", "native stderr chatter", "python chatter", "deprecation"))
    print("after")  # the real stdout is back
    assert capfd.readouterr().out == "after\n"


def test_an_export_prints_its_phases_and_keeps_the_converters_output_in_its_log(tiny_checkpoint: Path, small_data: Path,
                                                                                 tmp_path: Path, capfd):
    out, _ = export_bundle(tiny_checkpoint, tmp_path / "b", data=str(small_data))
    printed = capfd.readouterr().out
    for phase in ("converting the image tower to onnx fp32", "converting the text tower to onnx fp32",
                  r"validating against PyTorch on \d+ test images"):
        assert re.search(rf"^  {phase}: [\d.]+ s$", printed, re.M), printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert (out / "export.log").is_file() and "export.log" not in manifest["files"]
    assert clipping_edge.load(out).manifest.fingerprint == manifest["fingerprint"]  # the unlisted log is no tampering


def test_top1_agreement_leaves_out_the_rows_pytorch_itself_calls_a_tie(small_data: Path):
    """A random-weight model's probabilities are near uniform: any arithmetic flips its top-1 (MobileCLIP2-S0's
    int8 image tower: cosine 0.9998, agreement 88.5 % over all rows). Decided rows must still agree."""
    from clipping_edge.training.data.pairs import read_pairs, resolve_split
    from clipping_edge.export.validate import SplitEncoder, compare

    pairs = read_pairs(resolve_split(str(small_data), "test"))
    rng = np.random.default_rng(0)
    texts = {}

    def text(prompts):
        return np.stack([texts.setdefault(p, rng.standard_normal(8)) for p in prompts]).astype(np.float32)

    def image(pixels, flip=0.0):
        base = np.tile(np.linspace(-1, 1, 8, dtype=np.float32), (len(pixels), 1))
        return base + flip * rng.standard_normal(base.shape).astype(np.float32)

    reference = SplitEncoder(lambda px: image(px), text)
    nearly_tied = compare(reference, SplitEncoder(lambda px: image(px, 1e-6), text), 1e-3, pairs, 32)
    assert nearly_tied["zero_shot_ties"] == nearly_tied["images"] and nearly_tied["zero_shot_agreement"] == 1.0
    decided = compare(reference, SplitEncoder(lambda px: -image(px), text), 100.0, pairs, 32)
    assert decided["zero_shot_ties"] == 0 and decided["zero_shot_agreement"] < 0.5
